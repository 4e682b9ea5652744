//! Transactions: AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, DescribeTransactions, ListTransactions.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::group::offsets::{Committed, Key};

use crate::edge::errors;
use crate::edge::RequestContext;

pub async fn add_partitions(
    ctx: &RequestContext<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    // v0-v3 carry one transaction at the top level (clients); v4+ batches
    // them for brokers, which we are not.
    let id = req.v3_and_below_transactional_id.to_string();
    let topics = &req.v3_and_below_topics;
    let parts: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    let code = match ctx
        .broker
        .txns
        .add_partitions(
            &id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &parts,
        )
        .await
    {
        Ok(()) => errors::NONE,
        Err(c) => c,
    };
    crate::edge::txn::add_partitions_result(topics, &|_| code)
}

pub async fn add_offsets(
    ctx: &RequestContext<'_>,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let code = {
        match ctx
            .broker
            .txns
            .add_offsets(
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                &req.group_id,
            )
            .await
        {
            Ok(()) => errors::NONE,
            Err(c) => c,
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn txn_offset_commit(
    ctx: &RequestContext<'_>,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let now = crate::log::segment::now_ms();
    let mut staged = Vec::new();
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if ctx
                        .broker
                        .logs
                        .partition(&t.name, p.partition_index)
                        .is_none()
                    {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        staged.push((
                            Key {
                                group: group.clone(),
                                topic: t.name.to_string(),
                                partition: p.partition_index,
                            },
                            Committed::from_client(
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.committed_metadata.as_deref(),
                                now,
                            ),
                        ));
                        errors::NONE
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    if !staged.is_empty() {
        if let Err(code) = ctx
            .broker
            .txns
            .stage_offsets(
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                &group,
                staged,
            )
            .await
        {
            for t in &mut topics {
                for p in &mut t.partitions {
                    if p.error_code == errors::NONE {
                        p.error_code = code;
                    }
                }
            }
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub async fn end(ctx: &RequestContext<'_>, req: EndTxnRequest) -> EndTxnResponse {
    match ctx
        .broker
        .txns
        .end(
            &req.transactional_id,
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await
    {
        Ok(_) => EndTxnResponse::default(),
        Err(code) => EndTxnResponse::default().with_error_code(code),
    }
}

pub fn describe(
    ctx: &RequestContext<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let mut s = TransactionState::default().with_transactional_id(id.clone());
            match ctx.broker.txns.describe(id) {
                None => s.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(m) => {
                    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> =
                        Default::default();
                    for (t, p) in &m.partitions {
                        by_topic.entry(t.clone()).or_default().push(*p);
                    }
                    s.transaction_state = StrBytes::from_static_str(m.state.as_str());
                    s.transaction_timeout_ms = m.timeout_ms;
                    s.transaction_start_time_ms =
                        if m.state == crate::txn::coordinator::TxnState::Ongoing {
                            m.start_ms
                        } else {
                            -1
                        };
                    s.producer_id = ProducerId(m.producer_id);
                    s.producer_epoch = m.epoch;
                    s.topics = by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(t)))
                                .with_partitions(ps)
                        })
                        .collect();
                    s
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub fn list(ctx: &RequestContext<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let now = crate::log::segment::now_ms();
    let states = ctx
        .broker
        .txns
        .list()
        .into_iter()
        .filter(|(_, m)| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == m.state.as_str())
        })
        .filter(|(_, m)| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        .filter(|(_, m)| {
            req.duration_filter < 0
                || ctx.version < 1
                || (m.state == crate::txn::coordinator::TxnState::Ongoing
                    && now - m.start_ms >= req.duration_filter)
        })
        .map(|(id, m)| {
            ListedTxn::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.as_str()))
        })
        .collect();
    ListTransactionsResponse::default().with_transaction_states(states)
}
