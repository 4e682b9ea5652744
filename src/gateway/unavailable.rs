//! Answers for a request the upstream could not take (broker down,
//! restarting, unreachable): the retriable codes a client gets from a
//! Kafka broker that lost leadership or a coordinator that moved, in the
//! shape Kafka's own error answer has at the request's version
//! (`getErrorResponse` of Kafka's request classes). A closed connection
//! instead tells a client nothing: these codes tell it to look the leader
//! or coordinator up again and retry there.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::edge::refusals;

/// `None`: no per-request error fits; the connection is closed instead.
/// `version` is the request's: some answers carry their error in
/// different places across versions.
pub fn unavailable(body: &RequestKind, version: i16) -> Option<ResponseKind> {
    // Every group and transaction API: the coordinator (or, for the
    // per-broker listings, the broker's coordinator) is not available, so
    // clients look it up again and retry; Kafka answers the same while a
    // coordinator is starting or shutting down.
    let c = ResponseError::CoordinatorNotAvailable.code();
    Some(match body {
        RequestKind::Produce(r) => {
            ResponseKind::Produce(ProduceResponse::default().with_responses(refusals::produce(
                &r.topic_data,
                ResponseError::NotLeaderOrFollower.code(),
            )))
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(FetchResponse::default().with_responses(
            refusals::fetch(&r.topics, ResponseError::NotLeaderOrFollower.code()),
        )),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(
                refusals::list_offsets(&r.topics, ResponseError::NotLeaderOrFollower.code()),
            ))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_error_code(c)
                .with_node_id((-1).into())
                .with_port(-1)
                .with_coordinators(
                    r.coordinator_keys
                        .iter()
                        .map(|k| {
                            find_coordinator_response::Coordinator::default()
                                .with_key(k.clone())
                                .with_node_id((-1).into())
                                .with_port(-1)
                                .with_error_code(c)
                        })
                        .collect(),
                ),
        ),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(c)
                .with_generation_id(-1)
                .with_member_id(r.member_id.clone()),
        ),
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(c))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(c))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(c))
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(refusals::offset_commit(&r.topics, c)),
        ),
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(c)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        RequestKind::AddOffsetsToTxn(_) => {
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(c))
        }
        RequestKind::EndTxn(_) => {
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(c))
        }
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
            TxnOffsetCommitResponse::default()
                .with_topics(refusals::txn_offset_commit(&r.topics, c)),
        ),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch(r, version, c)),
        // KIP-848: the member looks the coordinator up again and keeps
        // its epoch (Kafka's ConsumerGroupHeartbeat error answer).
        RequestKind::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(c)
                .with_member_epoch(-1)
                .with_heartbeat_interval_ms(0),
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(
                r.group_ids
                    .iter()
                    .map(|g| {
                        consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(c)
                            .with_authorized_operations(i32::MIN)
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| {
                        // Kafka's `groupError`: unknown state, protocol
                        // and authorized operations.
                        describe_groups_response::DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(c)
                            .with_authorized_operations(i32::MIN)
                    })
                    .collect(),
            ),
        ),
        // Per broker: the broker's coordinator is not available.
        RequestKind::ListGroups(_) => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(c))
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .iter()
                    .map(|g| {
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(c)
                    })
                    .collect(),
            ),
        ),
        RequestKind::OffsetDelete(_) => {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(c))
        }
        // v0-v3 (v4+, between brokers, is not admitted): per partition.
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            crate::edge::txn::add_partitions_result(&r.v3_and_below_topics, &|_| c),
        ),
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(
                r.transactional_ids
                    .iter()
                    .map(|t| {
                        describe_transactions_response::TransactionState::default()
                            .with_transactional_id(t.clone())
                            .with_error_code(c)
                    })
                    .collect(),
            ),
        ),
        // Per broker, like ListGroups.
        RequestKind::ListTransactions(_) => ResponseKind::ListTransactions(
            ListTransactionsResponse::default().with_error_code(c),
        ),
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(
            DeleteRecordsResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        delete_records_response::DeleteRecordsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        delete_records_response::DeleteRecordsPartitionResult::default()
                                            .with_partition_index(p.partition_index)
                                            .with_low_watermark(-1)
                                            .with_error_code(
                                                ResponseError::NotLeaderOrFollower.code(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        _ => return None,
    })
}

/// OffsetFetch's error answer moved twice: per partition (v0-v1, no
/// top-level code yet), top level (v2-v7), per group (v8+, several groups
/// per request). Kafka's `OffsetFetchRequest.getErrorResponse`.
fn offset_fetch(r: &OffsetFetchRequest, version: i16, code: i16) -> OffsetFetchResponse {
    if version >= 8 {
        return OffsetFetchResponse::default().with_groups(
            r.groups
                .iter()
                .map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code)
                })
                .collect(),
        );
    }
    if version >= 2 {
        return OffsetFetchResponse::default().with_error_code(code);
    }
    OffsetFetchResponse::default().with_topics(
        r.topics
            .iter()
            .flatten()
            .map(|t| {
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                offset_fetch_response::OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(StrBytes::default()))
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    /// Every answer encodes at every version the edge admits (a field set
    /// that a version does not have fails the encoding, and the client
    /// would lose its connection after all), and carries the error where
    /// that version has it.
    #[test]
    fn group_answers_encode_at_every_admitted_version_with_the_error_in_place() {
        let c = ResponseError::CoordinatorNotAvailable.code();
        let topics = || {
            vec![offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1])]
        };
        let requests = vec![
            (
                ApiKey::OffsetFetch,
                RequestKind::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_topics(Some(topics()))
                        .with_groups(vec![
                            offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(s("g")))
                                .with_topics(None),
                            offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(s("h"))),
                        ]),
                ),
            ),
            (
                ApiKey::DescribeGroups,
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
                ),
            ),
            (
                ApiKey::ListGroups,
                RequestKind::ListGroups(ListGroupsRequest::default()),
            ),
            (
                ApiKey::DeleteGroups,
                RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
                ),
            ),
            (
                ApiKey::OffsetDelete,
                RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
            ),
            (
                ApiKey::ConsumerGroupHeartbeat,
                RequestKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default().with_group_id(GroupId(s("g"))),
                ),
            ),
            (
                ApiKey::ConsumerGroupDescribe,
                RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g"))]),
                ),
            ),
            (
                ApiKey::AddPartitionsToTxn,
                RequestKind::AddPartitionsToTxn(
                    AddPartitionsToTxnRequest::default().with_v3_and_below_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partitions(vec![0]),
                    ]),
                ),
            ),
            (
                ApiKey::DescribeTransactions,
                RequestKind::DescribeTransactions(
                    DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![TransactionalId(s("x"))]),
                ),
            ),
            (
                ApiKey::ListTransactions,
                RequestKind::ListTransactions(ListTransactionsRequest::default()),
            ),
            (
                ApiKey::DeleteRecords,
                RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default(),
                    ]),
            ])),
            ),
        ];
        for (api, body) in &requests {
            let api = *api;
            let (min, max) = crate::edge::versions::supported(api).unwrap();
            for v in min..=max {
                let resp = unavailable(body, v).unwrap_or_else(|| panic!("{api:?}: no answer"));
                let mut buf = bytes::BytesMut::new();
                resp.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
                let codes: Vec<i16> = match &resp {
                    ResponseKind::OffsetFetch(o) if v < 2 => o
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .collect(),
                    ResponseKind::OffsetFetch(o) if v < 8 => vec![o.error_code],
                    ResponseKind::OffsetFetch(o) => o.groups.iter().map(|g| g.error_code).collect(),
                    ResponseKind::DescribeGroups(d) => {
                        d.groups.iter().map(|g| g.error_code).collect()
                    }
                    ResponseKind::ListGroups(l) => vec![l.error_code],
                    ResponseKind::DeleteGroups(d) => {
                        d.results.iter().map(|g| g.error_code).collect()
                    }
                    ResponseKind::OffsetDelete(o) => vec![o.error_code],
                    ResponseKind::ConsumerGroupHeartbeat(h) => vec![h.error_code],
                    ResponseKind::ConsumerGroupDescribe(d) => {
                        d.groups.iter().map(|g| g.error_code).collect()
                    }
                    ResponseKind::AddPartitionsToTxn(a) => a
                        .results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|t| {
                            t.results_by_partition
                                .iter()
                                .map(|p| p.partition_error_code)
                        })
                        .collect(),
                    ResponseKind::DescribeTransactions(d) => {
                        d.transaction_states.iter().map(|t| t.error_code).collect()
                    }
                    ResponseKind::ListTransactions(l) => vec![l.error_code],
                    ResponseKind::DeleteRecords(d) => d
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .collect(),
                    other => panic!("{other:?}"),
                };
                let want = match api {
                    ApiKey::DeleteRecords => ResponseError::NotLeaderOrFollower.code(),
                    _ => c,
                };
                assert!(
                    !codes.is_empty() && codes.iter().all(|x| *x == want),
                    "{api:?} v{v}: codes {codes:?}"
                );
                // OffsetFetch names every group (v8+) and every partition
                // (v0-v1) it was asked for.
                if let ResponseKind::OffsetFetch(o) = &resp {
                    let n = match v {
                        0..=1 => 2,
                        2..=7 => 1,
                        _ => 2,
                    };
                    assert_eq!(codes.len(), n, "OffsetFetch v{v}: {o:?}");
                }
            }
        }
    }
}
