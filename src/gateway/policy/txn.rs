//! InitProducerId and the transaction APIs.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ProducerId, RequestKind, ResponseKind, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

use super::{merge_into, split, Fixup, Plan};
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::api::{errors, RequestContext};

/// Kafka: a topic denied in AddPartitionsToTxn fails the whole request;
/// the other partitions are "not attempted".
const OPERATION_NOT_ATTEMPTED: i16 = 55;

fn txn_ok(ctx: &RequestContext<'_>, op: Operation, id: &str) -> bool {
    ctx.authorize(op, ResourceType::TransactionalId, id)
}

pub fn init_producer_id(ctx: &RequestContext<'_>, r: InitProducerIdRequest) -> Plan {
    let fail = |code| {
        Plan::local(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ))
    };
    if let Some(tid) = &r.transactional_id {
        if !txn_ok(ctx, Operation::Write, tid) {
            return fail(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        return Plan::unchanged(RequestKind::InitProducerId(r));
    }
    // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
    let allowed = ctx.authorize_quiet(
        Operation::IdempotentWrite,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) || ctx.acls.any_allow(
        ctx.principal,
        ctx.peer.ip(),
        Operation::Write,
        ResourceType::Topic,
    );
    if !allowed {
        ctx.authorize_cluster(Operation::IdempotentWrite);
        return fail(errors::CLUSTER_AUTHORIZATION_FAILED);
    }
    Plan::unchanged(RequestKind::InitProducerId(r))
}

pub fn add_partitions(ctx: &RequestContext<'_>, r: AddPartitionsToTxnRequest) -> Plan {
    // v4+ (batched, broker to broker) is not admitted by `versions`.
    let topics = &r.v3_and_below_topics;
    let result = |code: &dyn Fn(&str) -> i16| {
        Plan::local(ResponseKind::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                topics
                    .iter()
                    .map(|t| {
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(t.name.clone())
                            .with_results_by_partition(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        AddPartitionsToTxnPartitionResult::default()
                                            .with_partition_index(*p)
                                            .with_partition_error_code(code(&t.name))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ))
    };
    if !txn_ok(ctx, Operation::Write, &r.v3_and_below_transactional_id) {
        return result(&|_| errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let denied: Vec<String> = topics
        .iter()
        .filter(|t| !ctx.authorize_topic(Operation::Write, &t.name))
        .map(|t| t.name.to_string())
        .collect();
    if !denied.is_empty() {
        return result(&|t| {
            if denied.iter().any(|d| d == t) {
                errors::TOPIC_AUTHORIZATION_FAILED
            } else {
                OPERATION_NOT_ATTEMPTED
            }
        });
    }
    Plan::unchanged(RequestKind::AddPartitionsToTxn(r))
}

pub fn add_offsets(ctx: &RequestContext<'_>, r: AddOffsetsToTxnRequest) -> Plan {
    let code = if !txn_ok(ctx, Operation::Write, &r.transactional_id) {
        errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !ctx.authorize(Operation::Read, ResourceType::Group, &r.group_id) {
        errors::GROUP_AUTHORIZATION_FAILED
    } else {
        return Plan::unchanged(RequestKind::AddOffsetsToTxn(r));
    };
    Plan::local(ResponseKind::AddOffsetsToTxn(
        AddOffsetsToTxnResponse::default().with_error_code(code),
    ))
}

pub fn txn_offset_commit(ctx: &RequestContext<'_>, mut r: TxnOffsetCommitRequest) -> Plan {
    let base = if !txn_ok(ctx, Operation::Write, &r.transactional_id) {
        Some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !ctx.authorize(Operation::Read, ResourceType::Group, &r.group_id) {
        Some(errors::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        base.is_none() && ctx.authorize_topic(Operation::Read, &t.name)
    });
    let code = base.unwrap_or(errors::TOPIC_AUTHORIZATION_FAILED);
    let refused: Vec<TxnOffsetCommitResponseTopic> = denied
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    if allowed.is_empty() && (base.is_some() || !refused.is_empty()) {
        return Plan::local(ResponseKind::TxnOffsetCommit(
            TxnOffsetCommitResponse::default().with_topics(refused),
        ));
    }
    r.topics = allowed;
    Plan::Forward {
        changed: !denied.is_empty(),
        fix: merge_into!(TxnOffsetCommit, topics, refused),
        body: RequestKind::TxnOffsetCommit(r),
    }
}

pub fn end(ctx: &RequestContext<'_>, r: EndTxnRequest) -> Plan {
    if !txn_ok(ctx, Operation::Write, &r.transactional_id) {
        return Plan::local(ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        ));
    }
    Plan::unchanged(RequestKind::EndTxn(r))
}

pub fn describe(ctx: &RequestContext<'_>, mut r: DescribeTransactionsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.transactional_ids), |t| {
        txn_ok(ctx, Operation::Describe, t)
    });
    let refused: Vec<TransactionState> = denied
        .iter()
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(t.clone())
                .with_error_code(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        })
        .collect();
    if allowed.is_empty() && !refused.is_empty() {
        return Plan::local(ResponseKind::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(refused),
        ));
    }
    r.transactional_ids = allowed;
    Plan::Forward {
        changed: !denied.is_empty(),
        fix: merge_into!(DescribeTransactions, transaction_states, refused),
        body: RequestKind::DescribeTransactions(r),
    }
}

pub fn list(_ctx: &RequestContext<'_>, r: ListTransactionsRequest) -> Plan {
    let fix: Fixup = Box::new(|resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        if let ResponseKind::ListTransactions(l) = resp {
            l.transaction_states.retain(|t| {
                ctx.authorize_quiet(
                    Operation::Describe,
                    ResourceType::TransactionalId,
                    &t.transactional_id,
                )
            });
        }
    });
    Plan::Forward {
        body: RequestKind::ListTransactions(r),
        changed: false,
        fix: Some(fix),
    }
}
