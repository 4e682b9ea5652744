//! An internal single-partition topic used as a durable state log by the
//! group and transaction coordinators: records are appended and fsynced
//! before the change they describe is acknowledged, and replayed on start.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{batch, LogError, LogManager, Partition};

pub struct InternalLog {
    logs: Arc<LogManager>,
    topic: &'static str,
    partition: Arc<Partition>,
}

impl InternalLog {
    /// Opens `topic`, creating it (one partition, never expiring) if needed.
    pub fn open(logs: Arc<LogManager>, topic: &'static str) -> Result<InternalLog, LogError> {
        if logs.topic(topic).is_none() {
            let mut cfg = BTreeMap::new();
            // The only copy of coordinator state: never expire it.
            cfg.insert("retention.ms".to_string(), "-1".to_string());
            cfg.insert("retention.bytes".to_string(), "-1".to_string());
            match logs.create_topic(topic, 1, cfg, false) {
                Ok(_) | Err(LogError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let partition = logs
            .partition(topic, 0)
            .ok_or_else(|| LogError::UnknownTopic(topic.into()))?;
        Ok(InternalLog {
            logs,
            topic,
            partition,
        })
    }

    /// Calls `f(key, value)` for every record, oldest first.
    pub fn replay(
        &self,
        mut f: impl FnMut(Option<&Bytes>, Option<&Bytes>),
    ) -> Result<(), LogError> {
        let mut offset = self.partition.log_start_offset();
        loop {
            let r = self.partition.read(offset, 1 << 20)?;
            let Some(data) = r.records else { break };
            let mut buf = Bytes::from(data);
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| LogError::CorruptBatch(format!("{}: {e}", self.topic)))?;
            let mut last = offset;
            for rec in sets.into_iter().flat_map(|s| s.records) {
                last = rec.offset;
                f(rec.key.as_ref(), rec.value.as_ref());
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        Ok(())
    }

    /// Appends (key, value) records as one batch and waits until it is on
    /// disk. A `None` value is a tombstone.
    pub async fn append(&self, entries: Vec<(Bytes, Option<Bytes>)>) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let buf = encode_batch(entries.into_iter().map(|(k, v)| (Some(k), v)).collect())?;
        let topic = self
            .logs
            .topic(self.topic)
            .ok_or_else(|| LogError::UnknownTopic(self.topic.into()))?;
        let spans = batch::validate_produce_records(&buf, usize::MAX)?;
        let res = self.partition.append(&buf, &spans, &topic.config())?;
        self.partition.wait_durable(res.end_offset).await
    }
}

/// Encodes (key, value) pairs as one uncompressed v2 record batch, the form
/// the broker itself writes into its own topics.
pub fn encode_batch(entries: Vec<(Option<Bytes>, Option<Bytes>)>) -> Result<BytesMut, LogError> {
    let now = super::segment::now_ms();
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key,
            value,
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts)
        .map_err(|e| LogError::InvalidRecord(format!("cannot encode records: {e}")))?;
    Ok(buf)
}
