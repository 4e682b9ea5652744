//! The embedded back end: executes what the edge allowed against our own
//! log engine, group coordinator and transaction coordinator. One module
//! per API family.

pub mod configs;
pub mod fetch;
pub mod group_offsets;
pub mod groups;
pub mod log_dirs;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod topics;
pub mod txn;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::edge::backend::{Allowed, Backend, Executed, Execution, Lookup};
use crate::edge::RequestContext;

/// The embedded engine; its state is the broker's (`ctx.broker`).
pub struct Engine;

impl Backend for Engine {
    fn execute<'a>(&'a self, ctx: &'a RequestContext<'_>, allowed: Allowed) -> Execution<'a> {
        Box::pin(async move {
            if let RequestKind::Produce(r) = allowed.body {
                return match produce::handle(ctx, r) {
                    produce::Produced::Nothing => Executed::Silent,
                    produce::Produced::Now(r) => Executed::Answer(ResponseKind::Produce(r)),
                    produce::Produced::Durable(pending) => Executed::Later(Box::pin(async move {
                        Executed::Answer(ResponseKind::Produce(pending.await))
                    })),
                };
            }
            match dispatch(ctx, allowed.body).await {
                Some(resp) => Executed::Answer(resp),
                None => Executed::Close(format!("{:?} is not served here", ctx.api)),
            }
        })
    }

    fn topic_name(&self, ctx: &RequestContext<'_>, id: uuid::Uuid) -> Lookup {
        match ctx.broker.logs.topic_by_id(id) {
            Some(t) => Lookup::Found(t.name.to_string()),
            None => Lookup::Absent,
        }
    }
}

async fn dispatch(ctx: &RequestContext<'_>, body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle_metadata(ctx, r)),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::handle_describe_cluster(ctx, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe(ctx, r))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r)),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r)),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, r))
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(offsets::list_offsets(ctx, r)),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(offsets::delete_records(ctx, r))
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter_legacy(ctx, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(ctx, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(ctx, r).await),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(groups::consumer_heartbeat(ctx, r))
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(groups::consumer_describe(ctx, r))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group_offsets::commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(group_offsets::fetch(ctx, r)),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(group_offsets::delete(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producers::init_producer_id(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end(ctx, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe(ctx, r))
        }
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list(ctx, r)),
        // The edge serves everything else itself.
        _ => return None,
    })
}
