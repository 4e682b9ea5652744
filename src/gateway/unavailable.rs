//! Answers for a request the upstream could not take (broker down,
//! restarting, unreachable): the retriable codes a client gets from a
//! Kafka broker that lost leadership or a coordinator that moved.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::edge::refusals;

/// `None`: no per-request error fits; the connection is closed instead.
pub fn unavailable(body: &RequestKind) -> Option<ResponseKind> {
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
        _ => return None,
    })
}
