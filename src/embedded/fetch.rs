//! Fetch with long polling: answer at once when `min_bytes` are available or
//! an error occurred, otherwise wait for appends until `max_wait_ms`.
//! Stored batch bytes are returned as they are on disk.

use kafka_protocol::ResponseError;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::edge::errors::code_for;
use crate::edge::RequestContext;

/// Upper bound on a long poll, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(ctx: &RequestContext<'_>, req: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = ctx.broker.logs.appended().notified();
        tokio::pin!(notified);
        // Register interest before reading so an append in between wakes us.
        notified.as_mut().enable();
        let (resp, bytes, had_error) = read_once(ctx, &req);
        if had_error
            || bytes >= req.min_bytes.max(0) as usize
            || tokio::time::Instant::now() >= deadline
        {
            return resp;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                return read_once(ctx, &req).0;
            }
        }
    }
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
            let result = if limit == 0 && total > 0 {
                Ok(crate::log::partition::ReadResult {
                    records: None,
                    high_watermark: p.end_offset(),
                    log_start_offset: p.log_start_offset(),
                })
            } else {
                p.read_isolated(fp.fetch_offset, limit.max(1), read_committed)
            };
            match result {
                Ok(r) => {
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = p.last_stable_offset();
                    if ctx.version >= 5 {
                        pd.log_start_offset = r.log_start_offset;
                    }
                    let n = r.records.as_ref().map_or(0, Vec::len);
                    if read_committed {
                        // Tell the client which producers' records in this
                        // range belong to aborted transactions.
                        let to = match &r.records {
                            Some(b) => crate::log::batch::whole_batches(b)
                                .0
                                .last()
                                .map(|(_, h)| h.last_offset() + 1)
                                .unwrap_or(fp.fetch_offset),
                            None => fp.fetch_offset,
                        };
                        let aborted = p.aborted_between(fp.fetch_offset, to);
                        pd.aborted_transactions = Some(
                            aborted
                                .into_iter()
                                .map(|a| {
                                    kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                                        .with_producer_id(kafka_protocol::messages::ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect(),
                        );
                    }
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
