//! FindCoordinator, the group membership APIs (classic, and KIP-848's
//! ConsumerGroupHeartbeat), group listing and description (with
//! ConsumerGroupDescribe), and committed offsets.

use crate::audit::coalesce::CodeSink;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerGroupDescribedGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::plan::{merge_into, refuse_or_forward, split, Fix, Fixup, Plan};
use super::refusals;
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::edge::{errors, RequestContext};

fn group_ok(ctx: &RequestContext<'_>, op: Operation, group: &str) -> bool {
    ctx.authorize(op, ResourceType::Group, group)
}

/// Group coordinators (key type 0) need Describe on the group,
/// transaction coordinators (1) on the transactional id.
fn coordinator_denial(ctx: &RequestContext<'_>, key_type: i8, key: &str) -> Option<i16> {
    match key_type {
        0 if !group_ok(ctx, Operation::Describe, key) => {
            Some(ResponseError::GroupAuthorizationFailed.code())
        }
        1 if !ctx.authorize(Operation::Describe, ResourceType::TransactionalId, key) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed.code())
        }
        _ => None,
    }
}

pub fn find_coordinator(ctx: &RequestContext<'_>, mut r: FindCoordinatorRequest) -> Plan {
    if ctx.version < 4 {
        if let Some(code) = coordinator_denial(ctx, r.key_type, &r.key) {
            return Plan::local(ResponseKind::FindCoordinator(
                FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_node_id((-1).into())
                    .with_host(StrBytes::default())
                    .with_port(-1),
            ));
        }
        return Plan::unchanged(RequestKind::FindCoordinator(r));
    }
    let key_type = r.key_type;
    let mut refused = Vec::new();
    let keys = std::mem::take(&mut r.coordinator_keys);
    for k in keys {
        match coordinator_denial(ctx, key_type, &k) {
            Some(code) => refused.push(
                Coordinator::default()
                    .with_key(k)
                    .with_node_id((-1).into())
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(code),
            ),
            None => r.coordinator_keys.push(k),
        }
    }
    refuse_or_forward!(
        FindCoordinator,
        FindCoordinatorResponse,
        coordinators,
        refused,
        r.coordinator_keys.is_empty(),
        r
    )
}

pub fn join(ctx: &RequestContext<'_>, r: JoinGroupRequest) -> Plan {
    let code = if !group_ok(ctx, Operation::Read, &r.group_id) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else {
        // JoinGroup has no error message: the audit record names the rule.
        consume_policy(ctx, &r.group_id).map(|_| ResponseError::PolicyViolation.code())
    };
    if let Some(code) = code {
        return Plan::local(ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(r.member_id),
        ));
    }
    Plan::unchanged(RequestKind::JoinGroup(r))
}

/// The consumer rules for a client using `group` (group id pattern, client
/// id required and pattern), checked when it joins and when it commits
/// offsets (a consumer assigning partitions itself only commits): the
/// other group requests need a membership or offsets the refusal denied.
pub(super) fn consume_policy(
    ctx: &RequestContext<'_>,
    group: &str,
) -> Option<crate::policy::Violation> {
    if ctx.policies.is_empty() {
        return None;
    }
    let client_id = ctx.header.client_id.as_deref();
    let decision = ctx.policies.consume(ctx.principal, Some(group), client_id);
    ctx.policy(decision, "group", group)
}

pub fn sync(ctx: &RequestContext<'_>, r: SyncGroupRequest) -> Plan {
    if !group_ok(ctx, Operation::Read, &r.group_id) {
        return Plan::local(ResponseKind::SyncGroup(
            SyncGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ));
    }
    Plan::unchanged(RequestKind::SyncGroup(r))
}

pub fn heartbeat(ctx: &RequestContext<'_>, r: HeartbeatRequest) -> Plan {
    if !group_ok(ctx, Operation::Read, &r.group_id) {
        return Plan::local(ResponseKind::Heartbeat(
            HeartbeatResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ));
    }
    Plan::unchanged(RequestKind::Heartbeat(r))
}

pub fn leave(ctx: &RequestContext<'_>, r: LeaveGroupRequest) -> Plan {
    if !group_ok(ctx, Operation::Read, &r.group_id) {
        return Plan::local(ResponseKind::LeaveGroup(
            LeaveGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ));
    }
    Plan::unchanged(RequestKind::LeaveGroup(r))
}

pub fn list(_ctx: &RequestContext<'_>, r: ListGroupsRequest) -> Plan {
    let fix: Fixup = Box::new(|resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::ListGroups(l) = resp else {
            return;
        };
        // Listing is filtering, like Metadata: no audit record per group.
        if ctx.authorize_quiet(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
            return;
        }
        l.groups
            .retain(|g| ctx.authorize_quiet(Operation::Describe, ResourceType::Group, &g.group_id));
    });
    Plan::Forward {
        body: RequestKind::ListGroups(r),
        changed: false,
        fix: Some(Fix::Filter(fix)),
    }
}

pub fn describe(ctx: &RequestContext<'_>, mut r: DescribeGroupsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.groups), |g| {
        group_ok(ctx, Operation::Describe, g)
    });
    let refused: Vec<DescribedGroup> = denied
        .iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_authorized_operations(i32::MIN)
        })
        .collect();
    if allowed.is_empty() && !refused.is_empty() {
        return Plan::local(ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(refused),
        ));
    }
    r.groups = allowed;
    // Computed here for the client when asked (v3+): the upstream's
    // authorized operations describe the service principal.
    let include = r.include_authorized_operations;
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        if let ResponseKind::DescribeGroups(d) = resp {
            for g in &mut d.groups {
                g.authorized_operations = if include && g.error_code == errors::NONE {
                    ctx.authorized_operations(ResourceType::Group, &g.group_id)
                } else {
                    i32::MIN
                };
            }
            d.groups.extend(refused);
        }
    });
    Plan::Forward {
        changed: !denied.is_empty(),
        fix: Some(Fix::Filter(fix)),
        body: RequestKind::DescribeGroups(r),
    }
}

pub fn delete(ctx: &RequestContext<'_>, mut r: DeleteGroupsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.groups_names), |g| {
        group_ok(ctx, Operation::Delete, g)
    });
    let refused: Vec<DeletableGroupResult> = denied
        .iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.groups_names = allowed;
    refuse_or_forward!(
        DeleteGroups,
        DeleteGroupsResponse,
        results,
        refused,
        nothing_left,
        r
    )
    .recording(|resp, ctx| {
        if let ResponseKind::DeleteGroups(resp) = resp {
            for g in resp.results.iter().filter(|g| g.error_code == errors::NONE) {
                ctx.admin_action("delete_group", "group", &g.group_id, None);
            }
        }
    })
}

pub fn offset_commit(ctx: &RequestContext<'_>, mut r: OffsetCommitRequest) -> Plan {
    let group_code = if !group_ok(ctx, Operation::Read, &r.group_id) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else if consume_policy(ctx, &r.group_id).is_some() {
        Some(ResponseError::PolicyViolation.code())
    } else {
        None
    };
    let group_denied = group_code.is_some();
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        !group_denied && ctx.authorize_topic(Operation::Read, &t.name)
    });
    let code = group_code.unwrap_or(ResponseError::TopicAuthorizationFailed.code());
    let refused = refusals::offset_commit(&denied, code);
    if allowed.is_empty() && (group_denied || !refused.is_empty()) {
        return Plan::local(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(refused),
        ));
    }
    r.topics = allowed;
    // A commit from outside the group protocol is how tools reset offsets:
    // an admin action worth a record.
    let reset = r.generation_id_or_member_epoch < 0 && r.member_id.is_empty();
    let group = r.group_id.to_string();
    Plan::Forward {
        changed: !denied.is_empty(),
        fix: merge_into!(OffsetCommit, topics, refused),
        body: RequestKind::OffsetCommit(r),
    }
    .recording(move |resp, ctx| {
        let ResponseKind::OffsetCommit(resp) = resp else {
            return;
        };
        let n = committed(resp.topics.iter().map(|t| &t.partitions[..]), |p| {
            p.error_code
        });
        if reset && n > 0 {
            ctx.admin_action(
                "reset_offsets",
                "group",
                &group,
                Some(serde_json::json!({ "partitions": n })),
            );
        }
    })
}

/// How many partitions an answer reports done.
fn committed<'a, P: 'a>(topics: impl Iterator<Item = &'a [P]>, code: impl Fn(&P) -> i16) -> usize {
    topics
        .flat_map(|ps| ps.iter())
        .filter(|p| code(p) == errors::NONE)
        .count()
}

fn no_offset(p: i32) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(p)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_metadata(Some(StrBytes::default()))
        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
}

pub fn offset_fetch(ctx: &RequestContext<'_>, r: OffsetFetchRequest) -> Plan {
    if ctx.version >= 8 {
        return offset_fetch_groups(ctx, r);
    }
    let mut r = r;
    if !group_ok(ctx, Operation::Describe, &r.group_id) {
        let mut resp = OffsetFetchResponse::default();
        if ctx.version >= 2 {
            resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        }
        return Plan::local(ResponseKind::OffsetFetch(resp));
    }
    let mut refused = Vec::new();
    if let Some(topics) = r.topics.take() {
        let (allowed, denied) = split(topics, |t| {
            ctx.authorize_topic(Operation::Describe, &t.name)
        });
        refused = denied
            .iter()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(t.partition_indexes.iter().map(|p| no_offset(*p)).collect())
            })
            .collect();
        if allowed.is_empty() && !refused.is_empty() {
            return Plan::local(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_topics(refused),
            ));
        }
        r.topics = Some(allowed);
    }
    let all = r.topics.is_none();
    let changed = !refused.is_empty();
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::OffsetFetch(o) = resp else {
            return;
        };
        if all {
            o.topics
                .retain(|t| ctx.authorize_quiet(Operation::Describe, ResourceType::Topic, &t.name));
        }
        o.topics.extend(refused);
    });
    Plan::Forward {
        body: RequestKind::OffsetFetch(r),
        changed,
        fix: Some(Fix::Filter(fix)),
    }
}

/// OffsetFetch v8+: several groups per request.
fn offset_fetch_groups(ctx: &RequestContext<'_>, mut r: OffsetFetchRequest) -> Plan {
    let mut refused_groups = Vec::new();
    // (group, refused topics, whether all topics were asked)
    let mut per_group: Vec<(String, Vec<OffsetFetchResponseTopics>, bool)> = Vec::new();
    let mut changed = false;
    for mut g in std::mem::take(&mut r.groups) {
        if !group_ok(ctx, Operation::Describe, &g.group_id) {
            refused_groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
            );
            changed = true;
            continue;
        }
        let mut refused = Vec::new();
        let all = g.topics.is_none();
        if let Some(topics) = g.topics.take() {
            let (allowed, denied) = split(topics, |t| {
                ctx.authorize_topic(Operation::Describe, &t.name)
            });
            changed |= !denied.is_empty();
            refused = denied
                .iter()
                .map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(StrBytes::default()))
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            g.topics = Some(allowed);
        }
        per_group.push((g.group_id.to_string(), refused, all));
        r.groups.push(g);
    }
    if r.groups.is_empty() && !refused_groups.is_empty() {
        return Plan::local(ResponseKind::OffsetFetch(
            OffsetFetchResponse::default().with_groups(refused_groups),
        ));
    }
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::OffsetFetch(o) = resp else {
            return;
        };
        for (group, refused, all) in per_group {
            if let Some(g) = o.groups.iter_mut().find(|g| g.group_id.as_str() == group) {
                if all {
                    g.topics.retain(|t| {
                        ctx.authorize_quiet(Operation::Describe, ResourceType::Topic, &t.name)
                    });
                }
                g.topics.extend(refused);
            }
        }
        o.groups.extend(refused_groups);
    });
    Plan::Forward {
        body: RequestKind::OffsetFetch(r),
        changed,
        fix: Some(Fix::Filter(fix)),
    }
}

pub fn offset_delete(ctx: &RequestContext<'_>, mut r: OffsetDeleteRequest) -> Plan {
    if !group_ok(ctx, Operation::Delete, &r.group_id) {
        return Plan::local(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ));
    }
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Read, &t.name)
    });
    let refused: Vec<OffsetDeleteResponseTopic> = denied
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        })
                        .collect(),
                )
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    let group = r.group_id.to_string();
    refuse_or_forward!(
        OffsetDelete,
        OffsetDeleteResponse,
        topics,
        refused,
        nothing_left,
        r
    )
    .recording(move |resp, ctx| {
        let ResponseKind::OffsetDelete(resp) = resp else {
            return;
        };
        let n = committed(resp.topics.iter().map(|t| &t.partitions[..]), |p| {
            p.error_code
        });
        if resp.error_code == errors::NONE && n > 0 {
            ctx.admin_action(
                "delete_offsets",
                "group",
                &group,
                Some(serde_json::json!({ "partitions": n })),
            );
        }
    })
}

/// The code the client got for each group it named.
pub(super) fn codes(resp: &ResponseKind, f: &mut CodeSink<'_>) {
    match resp {
        ResponseKind::DescribeGroups(r) => {
            for g in &r.groups {
                f("group", &g.group_id, g.error_code);
            }
        }
        ResponseKind::DeleteGroups(r) => {
            for g in &r.results {
                f("group", &g.group_id, g.error_code);
            }
        }
        ResponseKind::ConsumerGroupDescribe(r) => {
            for g in &r.groups {
                f("group", &g.group_id, g.error_code);
            }
        }
        _ => {}
    }
}

/// ConsumerGroupHeartbeat (KIP-848): Read on the group, as JoinGroup; and,
/// as Kafka 4 checks it, Describe on every subscribed topic: a member may
/// not subscribe (and so learn the partitions of) a topic it cannot
/// describe, and the whole heartbeat fails with TOPIC_AUTHORIZATION_FAILED.
pub fn consumer_group_heartbeat(
    ctx: &RequestContext<'_>,
    r: ConsumerGroupHeartbeatRequest,
) -> Plan {
    let refuse = |code: i16, message: Option<String>| {
        Plan::local(ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        ))
    };
    if !group_ok(ctx, Operation::Read, &r.group_id) {
        return refuse(ResponseError::GroupAuthorizationFailed.code(), None);
    }
    // A member leaving (epoch -1 or -2) is let go even if a rule added
    // since refuses it: refusing would keep it in the group until its
    // session times out.
    if r.member_epoch >= 0 {
        if let Some(v) = consume_policy(ctx, &r.group_id) {
            return refuse(ResponseError::PolicyViolation.code(), Some(v.message));
        }
    }
    if let Some(topics) = &r.subscribed_topic_names {
        // Every topic is decided (and audited), not just up to the first
        // refusal: the audit shows all that were refused.
        let denied: Vec<&str> = topics
            .iter()
            .filter(|t| !ctx.authorize_topic(Operation::Describe, t))
            .map(|t| t.as_str())
            .collect();
        if !denied.is_empty() {
            return refuse(
                ResponseError::TopicAuthorizationFailed.code(),
                Some(format!(
                    "The group has subscribed to topics it may not describe: {}",
                    denied.join(", ")
                )),
            );
        }
    }
    Plan::unchanged(RequestKind::ConsumerGroupHeartbeat(r))
}

/// ConsumerGroupDescribe (KIP-848): Describe on each group
/// (GROUP_AUTHORIZATION_FAILED per group otherwise); authorized operations
/// computed here; and, as Kafka 4 does, a group whose members name a topic
/// the client may not describe is answered TOPIC_AUTHORIZATION_FAILED
/// without its members.
pub fn consumer_group_describe(
    ctx: &RequestContext<'_>,
    mut r: ConsumerGroupDescribeRequest,
) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.group_ids), |g| {
        group_ok(ctx, Operation::Describe, g)
    });
    let refused: Vec<ConsumerGroupDescribedGroup> = denied
        .iter()
        .map(|g| {
            ConsumerGroupDescribedGroup::default()
                .with_group_id(g.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_authorized_operations(i32::MIN)
        })
        .collect();
    if allowed.is_empty() && !refused.is_empty() {
        return Plan::local(ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(refused),
        ));
    }
    r.group_ids = allowed;
    let include = r.include_authorized_operations;
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::ConsumerGroupDescribe(d) = resp else {
            return;
        };
        for g in &mut d.groups {
            if g.error_code != errors::NONE {
                g.authorized_operations = i32::MIN;
                continue;
            }
            let hidden = g.members.iter().any(|m| {
                m.subscribed_topic_names
                    .iter()
                    .chain(m.assignment.topic_partitions.iter().map(|t| &t.topic_name))
                    .chain(
                        m.target_assignment
                            .topic_partitions
                            .iter()
                            .map(|t| &t.topic_name),
                    )
                    .any(|t| !ctx.authorize_quiet(Operation::Describe, ResourceType::Topic, t))
            });
            if hidden {
                g.members.clear();
                g.error_code = ResponseError::TopicAuthorizationFailed.code();
                g.error_message = Some(StrBytes::from_static_str(
                    "The group has members with topics the client may not describe.",
                ));
            }
            g.authorized_operations = if include && g.error_code == errors::NONE {
                ctx.authorized_operations(ResourceType::Group, &g.group_id)
            } else {
                i32::MIN
            };
        }
        d.groups.extend(refused);
    });
    Plan::Forward {
        changed: !denied.is_empty(),
        fix: Some(Fix::Filter(fix)),
        body: RequestKind::ConsumerGroupDescribe(r),
    }
}
