//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups, DeleteGroups, and KIP-848's ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe. This broker coordinates every group.

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::consumer::assignor::Assignment;
use crate::group::consumer::Heartbeat;
use crate::group::coordinator::{JoinOutcome, JoinRequest, JoinResult};
use crate::group::GroupState;

use crate::edge::errors;
use crate::edge::RequestContext;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn find_coordinator(
    ctx: &RequestContext<'_>,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let l = ctx.listener;
    let node = BrokerId(ctx.broker.config.node_id);
    // v4+ batches keys; older versions ask for one.
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let check = |_key: &str| -> i16 {
        match req.key_type {
            // The edge let through only keys the client may describe.
            0 | 1 => errors::NONE,
            _ => ResponseError::InvalidRequest.code(),
        }
    };
    if ctx.version >= 4 {
        let coordinators = keys
            .iter()
            .map(|k| {
                let code = check(k);
                let mut c = CoordinatorEntry::default()
                    .with_key(k.clone())
                    .with_error_code(code);
                if code == errors::NONE {
                    c = c
                        .with_node_id(node)
                        .with_host(s(l.advertised_host.clone()))
                        .with_port(l.advertised_port as i32);
                } else {
                    c = c.with_node_id(BrokerId(-1)).with_port(-1);
                }
                c
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let code = check(&req.key);
    let mut r = FindCoordinatorResponse::default().with_error_code(code);
    if code == errors::NONE {
        r = r
            .with_node_id(node)
            .with_host(s(l.advertised_host.clone()))
            .with_port(l.advertised_port as i32);
    } else {
        r = r.with_node_id(BrokerId(-1)).with_port(-1);
    }
    r
}

fn join_response(ctx: &RequestContext<'_>, r: JoinResult) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_protocol_name(Some(s(r.protocol.unwrap_or_default())));
    if ctx.version >= 7 {
        resp.protocol_type = r.protocol_type.map(s);
    }
    if ctx.version >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    resp.members = r
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            let mut m = JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(meta);
            if ctx.version >= 5 {
                m.group_instance_id = inst.map(s);
            }
            m
        })
        .collect();
    resp
}

pub async fn join(ctx: &RequestContext<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let fail = |code: i16| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone())
    };
    if req.group_id.is_empty() {
        return fail(ResponseError::InvalidGroupId.code());
    }
    let jr = JoinRequest {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let result = match ctx.broker.groups.join(jr) {
        JoinOutcome::Now(r) => r,
        JoinOutcome::Wait(rx, max) => match tokio::time::timeout(max, rx).await {
            Ok(Ok(r)) => r,
            _ => JoinResult {
                error: ResponseError::RebalanceInProgress.code(),
                generation: -1,
                member_id: req.member_id.to_string(),
                ..Default::default()
            },
        },
    };
    join_response(ctx, result)
}

pub async fn sync(ctx: &RequestContext<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let result = match ctx.broker.groups.sync(
        &req.group_id,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        assignments,
    ) {
        Ok(r) => r,
        Err(rx) => match tokio::time::timeout(std::time::Duration::from_secs(300), rx).await {
            Ok(Ok(r)) => r,
            _ => crate::group::coordinator::SyncResult {
                error: ResponseError::RebalanceInProgress.code(),
                ..Default::default()
            },
        },
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if ctx.version >= 5 {
        resp.protocol_type = result.protocol_type.map(s);
        resp.protocol_name = result.protocol.map(s);
    }
    resp
}

pub fn heartbeat(ctx: &RequestContext<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = ctx.broker.groups.heartbeat(
        &req.group_id,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(ctx: &RequestContext<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if ctx.version < 3 {
        let codes = ctx
            .broker
            .groups
            .leave(&req.group_id, &[(req.member_id.to_string(), None)]);
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let codes = ctx.broker.groups.leave(&req.group_id, &members);
    let responses = req
        .members
        .iter()
        .zip(codes)
        .map(|(m, code)| {
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

/// A group's state as ListGroups/DescribeGroups report it: groups known
/// only from committed offsets are Empty.
fn state_of(ctx: &RequestContext<'_>, id: &str) -> Option<(String, String)> {
    if let Some(v) = ctx.broker.groups.consumer.snapshot(id) {
        return Some((v.state.as_str().to_string(), "consumer".into()));
    }
    match ctx.broker.groups.snapshot(id) {
        Some(v) => Some((v.state.as_str().to_string(), v.protocol_type)),
        None if !ctx.broker.offsets.group(id).is_empty() => {
            Some(("Empty".into(), "consumer".into()))
        }
        None => None,
    }
}

pub fn list(ctx: &RequestContext<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let all = crate::group::coordinator::known_groups(
        &ctx.broker.groups,
        ctx.broker.offsets.groups_with_offsets(),
    );
    let groups = all
        .into_iter()
        .filter_map(|g| {
            let (state, ptype) = state_of(ctx, &g)?;
            // Groups known only from offsets count as classic, as Kafka
            // lists them after their members are gone.
            let kind = if ctx.broker.groups.consumer.contains(&g) {
                "consumer"
            } else {
                "classic"
            };
            if !req.states_filter.is_empty()
                && !req
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&state))
            {
                return None;
            }
            if !req.types_filter.is_empty()
                && !req
                    .types_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(kind))
            {
                return None;
            }
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(s(g)))
                .with_protocol_type(s(ptype));
            if ctx.version >= 4 {
                l.group_state = s(state);
            }
            if ctx.version >= 5 {
                l.group_type = s(kind);
            }
            Some(l)
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe(ctx: &RequestContext<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|gid| {
            let mut d = DescribedGroup::default().with_group_id(gid.clone());
            if ctx.broker.groups.consumer.contains(gid) {
                // Kafka (DescribeGroups v0-v5) describes only classic
                // groups: any other is Dead, without an error.
                d.group_state = s("Dead");
                return d;
            }
            match ctx.broker.groups.snapshot(gid) {
                None => {
                    let (state, ptype) =
                        state_of(ctx, gid).unwrap_or(("Dead".into(), String::new()));
                    d.group_state = s(state);
                    d.protocol_type = s(ptype);
                }
                Some(v) => {
                    d.group_state = s(v.state.as_str());
                    d.protocol_type = s(v.protocol_type);
                    d.protocol_data = s(v.protocol);
                    d.members = v
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default()
                                .with_member_id(s(m.id))
                                .with_client_id(s(m.client_id))
                                .with_client_host(s(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(if v.state == GroupState::Stable {
                                    m.assignment
                                } else {
                                    Bytes::new()
                                });
                            if ctx.version >= 4 {
                                dm.group_instance_id = m.instance_id.map(s);
                            }
                            dm
                        })
                        .collect();
                }
            }
            d
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete(ctx: &RequestContext<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for gid in &req.groups_names {
        let code = if state_of(ctx, gid).is_none() {
            ResponseError::GroupIdNotFound.code()
        } else {
            match ctx.broker.groups.delete_if_empty(gid) {
                Err(_) => ResponseError::NonEmptyGroup.code(),
                Ok(()) => {
                    let tombstones = ctx.broker.offsets.deletions(gid, None);
                    match ctx.broker.offsets.commit(tombstones).await {
                        Ok(()) => errors::NONE,
                        Err(e) => {
                            tracing::error!(group = %gid.as_str(), "cannot delete offsets: {e}");
                            ResponseError::KafkaStorageError.code()
                        }
                    }
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(gid.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// Topic ids in a heartbeat's owned partitions become names; an id no
/// topic has becomes a name no topic can have, so it never matches.
fn owned_by_name(
    ctx: &RequestContext<'_>,
    owned: &[consumer_group_heartbeat_request::TopicPartitions],
) -> Assignment {
    let mut out = Assignment::new();
    for t in owned {
        let name = match ctx.broker.logs.topic_by_id(t.topic_id) {
            Some(topic) => topic.name.to_string(),
            None => format!("\0{}", t.topic_id),
        };
        out.entry(name)
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    out
}

pub fn consumer_heartbeat(
    ctx: &RequestContext<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let hb = Heartbeat {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        // librdkafka sends "" for "no regex", which Kafka accepts as such.
        subscribed_regex: req
            .subscribed_topic_regex
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|s| s.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req
            .topic_partitions
            .as_ref()
            .map(|tps| owned_by_name(ctx, tps)),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    let logs = &ctx.broker.logs;
    let topics = |name: &str| logs.topic(name).map(|t| t.partition_count());
    match ctx.broker.groups.consumer_heartbeat(hb, &topics) {
        Ok(ok) => {
            let assignment = ok.assignment.map(|a| {
                consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .filter_map(|(t, ps)| {
                            let topic = logs.topic(&t)?;
                            Some(
                                consumer_group_heartbeat_response::TopicPartitions::default()
                                    .with_topic_id(topic.id)
                                    .with_partitions(ps.into_iter().collect()),
                            )
                        })
                        .collect(),
                )
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(s(ok.member_id)))
                .with_member_epoch(ok.member_epoch)
                .with_heartbeat_interval_ms(ok.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
        Err(e) => {
            tracing::debug!(group = %req.group_id.as_str(), member = %req.member_id.as_str(),
                epoch = req.member_epoch, "consumer group heartbeat refused: {e}");
            // Kafka's error answer: the member epoch left at its default.
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(s(e.to_string())))
        }
    }
}

fn describe_assignment(
    ctx: &RequestContext<'_>,
    a: &Assignment,
) -> consumer_group_describe_response::Assignment {
    consumer_group_describe_response::Assignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                consumer_group_describe_response::TopicPartitions::default()
                    .with_topic_id(ctx.broker.logs.topic(t).map(|x| x.id).unwrap_or_default())
                    .with_topic_name(TopicName(s(t.clone())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// ConsumerGroupDescribe: a classic group or an unknown id is
/// GROUP_ID_NOT_FOUND, as in Kafka.
pub fn consumer_describe(
    ctx: &RequestContext<'_>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let groups = req
        .group_ids
        .iter()
        .map(|gid| {
            let d = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_authorized_operations(i32::MIN);
            let Some(v) = ctx.broker.groups.consumer.snapshot(gid) else {
                let msg = if ctx.broker.groups.get(gid).is_some() {
                    format!("Group {} is not a consumer group.", gid.as_str())
                } else {
                    format!("Group {} not found.", gid.as_str())
                };
                return d
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(s(msg)));
            };
            d.with_group_state(s(v.state.as_str()))
                .with_group_epoch(v.group_epoch)
                .with_assignment_epoch(v.assignment_epoch)
                .with_assignor_name(s(v.assignor))
                .with_members(
                    v.members
                        .iter()
                        .map(|m| {
                            consumer_group_describe_response::Member::default()
                                .with_member_id(s(m.id.clone()))
                                .with_instance_id(m.instance_id.clone().map(s))
                                .with_rack_id(m.rack_id.clone().map(s))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(s(m.client_id.clone()))
                                .with_client_host(s(m.client_host.clone()))
                                .with_subscribed_topic_names(
                                    m.subscribed
                                        .iter()
                                        .map(|t| TopicName(s(t.clone())))
                                        .collect(),
                                )
                                .with_assignment(describe_assignment(ctx, &m.assigned))
                                .with_target_assignment(describe_assignment(ctx, &m.target))
                                // v1: 1 is a member of the consumer protocol.
                                .with_member_type(if ctx.version >= 1 { 1 } else { -1 })
                        })
                        .collect(),
                )
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
