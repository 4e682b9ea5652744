//! InitProducerId and the transaction APIs.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ProducerId, RequestKind, ResponseKind, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use super::plan::{merge_into, refuse_or_forward, split, Fix, Fixup, Plan};
use super::refusals;
use crate::acl::{Operation, ResourceType};
use crate::edge::RequestContext;

/// AddPartitionsToTxn's per-partition answer, one code per topic.
pub fn add_partitions_result(
    topics: &[kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    code_for: &dyn Fn(&str) -> i16,
) -> AddPartitionsToTxnResponse {
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        topics
            .iter()
            .map(|t| {
                let code = code_for(&t.name);
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The edge's part of AddPartitionsToTxn (embedded and gateway alike):
/// the refusal, if the ACLs refuse. Kafka fails the whole request when one
/// topic is denied: that topic with 29, the others "not attempted".
fn add_partitions_refusal(
    ctx: &RequestContext<'_>,
    req: &AddPartitionsToTxnRequest,
) -> Option<AddPartitionsToTxnResponse> {
    let topics = &req.v3_and_below_topics;
    if !txn_ok(ctx, Operation::Write, &req.v3_and_below_transactional_id) {
        return Some(add_partitions_result(topics, &|_| {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        }));
    }
    let denied: Vec<String> = topics
        .iter()
        .filter(|t| !ctx.authorize_topic(Operation::Write, &t.name))
        .map(|t| t.name.to_string())
        .collect();
    if denied.is_empty() {
        return None;
    }
    Some(add_partitions_result(topics, &|t| {
        if denied.iter().any(|d| d == t) {
            ResponseError::TopicAuthorizationFailed.code()
        } else {
            ResponseError::OperationNotAttempted.code()
        }
    }))
}

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
            return fail(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        return Plan::unchanged(RequestKind::InitProducerId(r));
    }
    if !ctx.may_write_idempotently() {
        return fail(ResponseError::ClusterAuthorizationFailed.code());
    }
    Plan::unchanged(RequestKind::InitProducerId(r))
}

pub fn add_partitions(ctx: &RequestContext<'_>, r: AddPartitionsToTxnRequest) -> Plan {
    // v4+ (batched, broker to broker) is not admitted by `versions`.
    match add_partitions_refusal(ctx, &r) {
        Some(refused) => Plan::local(ResponseKind::AddPartitionsToTxn(refused)),
        None => Plan::unchanged(RequestKind::AddPartitionsToTxn(r)),
    }
}

pub fn add_offsets(ctx: &RequestContext<'_>, r: AddOffsetsToTxnRequest) -> Plan {
    let code = if !txn_ok(ctx, Operation::Write, &r.transactional_id) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !ctx.authorize(Operation::Read, ResourceType::Group, &r.group_id) {
        ResponseError::GroupAuthorizationFailed.code()
    } else {
        return Plan::unchanged(RequestKind::AddOffsetsToTxn(r));
    };
    Plan::local(ResponseKind::AddOffsetsToTxn(
        AddOffsetsToTxnResponse::default().with_error_code(code),
    ))
}

pub fn txn_offset_commit(ctx: &RequestContext<'_>, mut r: TxnOffsetCommitRequest) -> Plan {
    let base = if !txn_ok(ctx, Operation::Write, &r.transactional_id) {
        Some(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if !ctx.authorize(Operation::Read, ResourceType::Group, &r.group_id) {
        Some(ResponseError::GroupAuthorizationFailed.code())
    } else if super::groups::consume_policy(ctx, &r.group_id).is_some() {
        Some(ResponseError::PolicyViolation.code())
    } else {
        None
    };
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        base.is_none() && ctx.authorize_topic(Operation::Read, &t.name)
    });
    let code = base.unwrap_or(ResponseError::TopicAuthorizationFailed.code());
    let refused = refusals::txn_offset_commit(&denied, code);
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
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
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
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.transactional_ids = allowed;
    refuse_or_forward!(
        DescribeTransactions,
        DescribeTransactionsResponse,
        transaction_states,
        refused,
        nothing_left,
        r
    )
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
        fix: Some(Fix::Filter(fix)),
    }
}
