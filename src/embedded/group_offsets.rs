//! OffsetCommit, OffsetFetch (incl. multi-group) and OffsetDelete.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::offsets::{Committed, Key};
use crate::group::GroupState;

use crate::edge::errors;
use crate::edge::RequestContext;
const MAX_METADATA: usize = 4096;

pub async fn commit(ctx: &RequestContext<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let group_code = match ctx.broker.groups.check_member(
        &group,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id_or_member_epoch,
    ) {
        // KIP-848: a member of a consumer-protocol group commits with
        // v9+, which carries its member epoch (older versions carry a
        // generation, which it has not got).
        Ok(())
            if ctx.version < 9
                && !req.member_id.is_empty()
                && ctx.broker.groups.consumer.contains(&group) =>
        {
            ResponseError::UnsupportedVersion.code()
        }
        Ok(()) => errors::NONE,
        Err(code) => code,
    };
    let now = crate::log::segment::now_ms();
    let mut entries = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = if group_code == errors::NONE {
            ctx.broker.logs.topic(&t.name)
        } else {
            None
        };
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let code = if group_code != errors::NONE {
                    group_code
                } else if topic
                    .as_ref()
                    .and_then(|x| x.partition(p.partition_index))
                    .is_none()
                {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > MAX_METADATA)
                {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else {
                    entries.push((
                        Key {
                            group: group.clone(),
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                        },
                        Some(Committed::from_client(
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.committed_metadata.as_deref(),
                            now,
                        )),
                    ));
                    errors::NONE
                };
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    let result = ctx.broker.offsets.commit(entries).await;
    if let Err(e) = result {
        tracing::error!(group = %group, "offset commit failed: {e}");
        for t in &mut topics {
            for p in &mut t.partitions {
                if p.error_code == errors::NONE {
                    p.error_code = ResponseError::KafkaStorageError.code();
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// (topic, partition, offset, leader epoch, metadata, error) rows for one group.
type Row = (String, i32, i64, i32, Option<String>, i16);

fn fetch_group(
    ctx: &RequestContext<'_>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<Row>, i16> {
    let store = &ctx.broker.offsets;
    // KIP-447: a read_committed consumer must not resume from an offset an
    // open transaction is about to replace, or it re-processes that input.
    let unstable =
        |topic: &str, p: i32| require_stable && ctx.broker.txns.has_pending_offset(group, topic, p);
    let stable_or = |row: Row| -> Row {
        if unstable(&row.0, row.1) {
            (
                row.0,
                row.1,
                -1,
                -1,
                Some(String::new()),
                ResponseError::UnstableOffsetCommit.code(),
            )
        } else {
            row
        }
    };
    Ok(match wanted {
        // All topics (the edge leaves out what the principal may not
        // describe).
        None => store
            .group(group)
            .into_iter()
            .map(|(t, p, c)| {
                (
                    t,
                    p,
                    c.offset,
                    c.leader_epoch,
                    Some(c.metadata),
                    errors::NONE,
                )
            })
            .map(stable_or)
            .collect(),
        Some(list) => {
            let mut rows = Vec::new();
            for (topic, parts) in list {
                for p in parts {
                    match store.get(group, &topic, p) {
                        Some(c) => rows.push((
                            topic.clone(),
                            p,
                            c.offset,
                            c.leader_epoch,
                            Some(c.metadata),
                            errors::NONE,
                        )),
                        None => {
                            rows.push((topic.clone(), p, -1, -1, Some(String::new()), errors::NONE))
                        }
                    }
                }
            }
            rows.into_iter().map(stable_or).collect()
        }
    })
}

fn group_rows<T>(rows: Vec<Row>, mut make: impl FnMut(String, Vec<Row>) -> T) -> Vec<T> {
    let mut by_topic: indexmap::IndexMap<String, Vec<Row>> = indexmap::IndexMap::new();
    for r in rows {
        by_topic.entry(r.0.clone()).or_default().push(r);
    }
    by_topic.into_iter().map(|(t, rs)| make(t, rs)).collect()
}

pub fn fetch(ctx: &RequestContext<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let s = |v: String| StrBytes::from_string(v);
    if ctx.version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                // v9: a consumer-protocol member fetches at its current
                // epoch (Kafka's validateOffsetFetch); tools send neither.
                let member = g.member_id.as_deref().filter(|m| !m.is_empty());
                if member.is_some() || g.member_epoch >= 0 {
                    if let Some(Err(code)) = ctx.broker.groups.consumer.check_offsets_member(
                        &g.group_id,
                        member.unwrap_or_default(),
                        g.member_epoch,
                    ) {
                        out.error_code = code;
                        return out;
                    }
                }
                match fetch_group(ctx, &g.group_id, wanted, req.require_stable) {
                    Err(code) => out.error_code = code,
                    Ok(rows) => {
                        out.topics = group_rows(rows, |t, rs| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    rs.into_iter()
                                        .map(|r| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(r.1)
                                                .with_committed_offset(r.2)
                                                .with_committed_leader_epoch(r.3)
                                                .with_metadata(r.4.map(s))
                                                .with_error_code(r.5)
                                        })
                                        .collect(),
                                )
                        });
                    }
                }
                out
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let mut resp = OffsetFetchResponse::default();
    match fetch_group(ctx, &req.group_id, wanted, req.require_stable) {
        Err(code) => {
            if ctx.version >= 2 {
                resp.error_code = code;
            }
        }
        Ok(rows) => {
            resp.topics = group_rows(rows, |t, rs| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(
                        rs.into_iter()
                            .map(|r| {
                                let mut p = OffsetFetchResponsePartition::default()
                                    .with_partition_index(r.1)
                                    .with_committed_offset(r.2)
                                    .with_metadata(r.4.map(s))
                                    .with_error_code(r.5);
                                if ctx.version >= 5 {
                                    p.committed_leader_epoch = r.3;
                                }
                                p
                            })
                            .collect(),
                    )
            });
        }
    }
    resp
}

pub async fn delete(ctx: &RequestContext<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    let active = ctx
        .broker
        .groups
        .snapshot(&group)
        .is_some_and(|g| g.state != GroupState::Empty);
    let mut entries = Vec::new();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if active {
                        // We do not parse subscriptions: while the group has
                        // members, every topic counts as subscribed.
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        entries.push((
                            Key {
                                group: group.clone(),
                                topic: t.name.to_string(),
                                partition: p.partition_index,
                            },
                            None,
                        ));
                        errors::NONE
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    if let Err(e) = ctx.broker.offsets.commit(entries).await {
        tracing::error!(group = %group, "offset delete failed: {e}");
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::KafkaStorageError.code());
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
