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
    /// Opens `topic`, creating it (one partition, compacted, never
    /// expiring) if needed. A topic made by an older version, which did not
    /// compact, is switched to compaction.
    pub fn open(logs: Arc<LogManager>, topic: &'static str) -> Result<InternalLog, LogError> {
        // The only copy of coordinator state: never expire it, and keep
        // only the latest record per key (a group's offset for a partition,
        // a transactional id's state), so the log's size and the replay at
        // start follow the number of keys, not the history.
        // Segments of 16 MiB (Kafka's offsets.topic.segment.bytes is 100 MiB):
        // only sealed segments are cleaned, and the whole log is replayed at
        // start, so the active one bounds both the disk used beyond the live
        // keys and the start time.
        let wanted = [
            ("cleanup.policy", "compact"),
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "16777216"),
        ];
        match logs.topic(topic) {
            None => {
                let cfg: BTreeMap<String, String> = wanted
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                match logs.create_topic(topic, 1, cfg, false) {
                    Ok(_) | Err(LogError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(t) => {
                let mut cfg = t.overrides();
                let before = cfg.clone();
                for (k, v) in wanted {
                    cfg.insert(k.to_string(), v.to_string());
                }
                if cfg != before {
                    t.set_overrides(cfg, &logs.defaults())?;
                }
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
            // Advance by batch headers, not records: a cleaned log has gaps
            // and may hold batches the cleaner emptied.
            let next = batch::whole_batches(&data)
                .0
                .last()
                .map(|(_, h)| h.last_offset() + 1);
            let mut buf = Bytes::from(data);
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| LogError::CorruptBatch(format!("{}: {e}", self.topic)))?;
            for rec in sets.into_iter().flat_map(|s| s.records) {
                f(rec.key.as_ref(), rec.value.as_ref());
            }
            match next {
                Some(n) if n > offset => offset = n,
                _ => break,
            }
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
