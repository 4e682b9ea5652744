//! Fetch with long polling: answer at once when `min_bytes` are available or
//! an error occurred, otherwise wait until `max_wait_ms` for appends to the
//! partitions read (only those wake it: `log::watch`). Each partition is
//! served under one lock (`Partition::read_for_fetch`); stored batch bytes
//! are returned as they are on disk.

use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};

use crate::log::watch::FetchWatch;
use crate::log::{LogManager, Partition};

use crate::edge::errors::code_for;
use crate::edge::RequestContext;

/// Upper bound on a long poll, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(ctx: &RequestContext<'_>, req: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let done = |bytes: usize, had_error: bool| {
        had_error || bytes >= min_bytes || tokio::time::Instant::now() >= deadline
    };
    // Most fetches are answered at once: they register nowhere.
    let (resp, bytes, had_error) = read_once(ctx, &req);
    if done(bytes, had_error) {
        return resp;
    }
    // Register on the partitions read, then read again: an append before
    // the registration is in this read, any later one wakes the wait.
    let watch = FetchWatch::new(partitions(&ctx.broker.logs, &req));
    let timeout = tokio::time::sleep_until(deadline);
    tokio::pin!(timeout);
    loop {
        let (resp, bytes, had_error) = read_once(ctx, &req);
        if done(bytes, had_error) {
            return resp;
        }
        tokio::select! {
            _ = watch.changed() => {}
            _ = &mut timeout => return read_once(ctx, &req).0,
        }
    }
}

/// The partitions a Fetch names that exist (a missing one answers at once).
fn partitions<'a>(
    logs: &'a LogManager,
    req: &'a FetchRequest,
) -> impl Iterator<Item = Arc<Partition>> + 'a {
    req.topics.iter().flat_map(move |ft| {
        let topic = logs.topic(&ft.topic);
        ft.partitions
            .iter()
            .filter_map(move |fp| topic.as_ref().and_then(|t| t.partition(fp.partition)))
    })
}

fn read_once(ctx: &RequestContext<'_>, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let logs = &ctx.broker.logs;
    let mut remaining = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut had_error = false;
    let read_committed = req.isolation_level == 1;
    let mut topics = Vec::with_capacity(req.topics.len());
    for ft in &req.topics {
        let topic = logs.topic(&ft.topic);
        let mut parts = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_aborted_transactions(Some(Vec::new()));
            let Some(p) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                pd.error_code = ResponseError::UnknownTopicOrPartition.code();
                had_error = true;
                parts.push(pd);
                continue;
            };
            // Once the response is full, later partitions report their
            // offsets but carry no data (KIP-74 keeps the first batch whole).
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let max_bytes = (limit > 0 || total == 0).then_some(limit.max(1));
            match p.read_for_fetch(fp.fetch_offset, max_bytes, read_committed) {
                Ok(r) => {
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = r.last_stable_offset;
                    if ctx.version >= 5 {
                        pd.log_start_offset = r.log_start_offset;
                    }
                    if !r.aborted.is_empty() {
                        // Which producers' records in this range belong to
                        // aborted transactions (read_committed only).
                        pd.aborted_transactions = Some(
                            r.aborted
                                .iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect(),
                        );
                    }
                    let n = r.records.as_ref().map_or(0, Vec::len);
                    total += n;
                    remaining = remaining.saturating_sub(n);
                    pd.records = Some(r.records.map(Bytes::from).unwrap_or_default());
                }
                Err(e) => {
                    pd.error_code = code_for(&e);
                    pd.high_watermark = p.end_offset();
                    pd.last_stable_offset = p.end_offset();
                    if ctx.version >= 5 {
                        pd.log_start_offset = p.log_start_offset();
                    }
                    had_error = true;
                }
            }
            parts.push(pd);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(ft.topic.clone())
                .with_partitions(parts),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        had_error,
    )
}
