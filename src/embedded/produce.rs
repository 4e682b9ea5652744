//! Produce: validate each partition's record batches, append them, and for
//! acks=all wait until the data is fsynced (group commit) before answering.

use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use crate::log::{batch, recompress, LogError, Partition};

use crate::edge::errors::code_for;
use crate::edge::RequestContext;

struct Pending {
    topic_idx: usize,
    part_idx: usize,
    partition: Arc<Partition>,
    end_offset: i64,
}

/// What a Produce request leads to.
pub enum Produced {
    /// acks=0: no response at all.
    Nothing,
    Now(ProduceResponse),
    /// acks=all: the records are appended; the answer comes once they are
    /// durable. The connection reads (and appends) the client's next
    /// requests meanwhile, so in-flight requests share fsyncs.
    Durable(std::pin::Pin<Box<dyn std::future::Future<Output = ProduceResponse> + Send>>),
}

/// Appends what the edge allowed, in request order (the caller handles one request at a time, so
/// a connection's batches reach each partition in the order sent).
pub fn handle(ctx: &RequestContext<'_>, req: ProduceRequest) -> Produced {
    let acks = req.acks;
    let logs = &ctx.broker.logs;
    let valid_acks = matches!(acks, -1..=1);
    let req_txn = req.transactional_id.clone();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut pending = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        // As in Kafka, Produce never creates a topic (Metadata may).
        let topic = logs.topic(&td.name);
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            let mut r = PartitionProduceResponse::default().with_index(pd.index);
            let result = if !valid_acks {
                Err((ResponseError::InvalidRequiredAcks.code(), None))
            } else if is_internal_topic(&td.name) {
                // The coordinators own these logs; no client writes them.
                Err((ResponseError::InvalidTopicException.code(), None))
            } else {
                match topic
                    .as_ref()
                    .and_then(|t| t.partition(pd.index).map(|p| (t, p)))
                {
                    None => Err((ResponseError::UnknownTopicOrPartition.code(), None)),
                    Some((t, p)) => {
                        let cfg = t.config();
                        let records = pd.records.as_deref().unwrap_or(&[]);
                        batch::validate_produce_records_keyed(
                            records,
                            cfg.max_message_bytes,
                            cfg.cleanup.compact,
                        )
                        .and_then(|spans| {
                            // Only the transaction coordinator writes markers.
                            if spans.iter().any(|s| s.header.is_control()) {
                                return Err(LogError::InvalidRecord(
                                    "clients may not write control batches".into(),
                                ));
                            }
                            // Transactional records need an authorized
                            // transactional id (Kafka answers 53).
                            if req_txn.is_none()
                                && spans
                                    .iter()
                                    .any(|s| s.header.attributes & batch::ATTR_TRANSACTIONAL != 0)
                            {
                                return Err(LogError::TransactionalWithoutId);
                            }
                            match cfg.compression.filter(|&c| recompress::needed(&spans, c)) {
                                // The common path: stored as sent, no copy.
                                None => p.append(records, &spans, &cfg),
                                Some(codec) => {
                                    let (bytes, spans) =
                                        recompress::to_codec(records, &spans, codec)?;
                                    p.append(&bytes, &spans, &cfg)
                                }
                            }
                        })
                        .map(|res| (res, p))
                        .map_err(|e| (code_for(&e), Some(e)))
                    }
                }
            };
            match result {
                Ok((res, p)) => {
                    r.base_offset = res.base_offset;
                    r.log_append_time_ms = res.log_append_time;
                    if ctx.version >= 5 {
                        r.log_start_offset = res.log_start_offset;
                    }
                    if acks == -1 {
                        pending.push(Pending {
                            topic_idx: ti,
                            part_idx: pi,
                            partition: p,
                            end_offset: res.end_offset,
                        });
                    }
                }
                Err((code, err)) => {
                    if let Some(e) = &err {
                        if !matches!(e, LogError::Deleted) {
                            tracing::debug!(topic = %&*td.name, partition = pd.index, "produce refused: {e}");
                        }
                        if ctx.version >= 8 {
                            r.error_message = Some(StrBytes::from_string(e.to_string()));
                        }
                    }
                    r.error_code = code;
                    r.base_offset = -1;
                }
            }
            parts.push(r);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(parts),
        );
    }
    if acks == 0 {
        return Produced::Nothing;
    }
    if pending.is_empty() {
        return Produced::Now(ProduceResponse::default().with_responses(topics));
    }
    // Ask every flusher first so the partitions fsync in parallel.
    for p in &pending {
        p.partition.request_flush();
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    Produced::Durable(Box::pin(async move {
        for p in &pending {
            let outcome =
                tokio::time::timeout_at(deadline, p.partition.wait_durable(p.end_offset)).await;
            let code = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => code_for(&e),
                Err(_) => ResponseError::RequestTimedOut.code(),
            };
            let r = &mut topics[p.topic_idx].partition_responses[p.part_idx];
            r.error_code = code;
        }
        ProduceResponse::default().with_responses(topics)
    }))
}

fn is_internal_topic(name: &str) -> bool {
    name == crate::group::offsets::OFFSETS_TOPIC || name == crate::txn::coordinator::TXN_TOPIC
}
