//! Committed offsets: an in-memory map, made durable in the internal topic
//! `__consumer_offsets` of our own log engine. A commit is acknowledged only
//! after its record is fsynced; on start the topic is replayed. A deletion
//! is a record with a null value (a tombstone).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use crate::log::{batch, LogError, LogManager, Partition};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

pub struct OffsetStore {
    log: Arc<Partition>,
    logs: Arc<LogManager>,
    map: Mutex<HashMap<String, GroupOffsets>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot encode offset records: {0}")]
    Encode(String),
    #[error("offsets topic record unreadable: {0}")]
    Decode(String),
}

impl OffsetStore {
    /// Opens (creating if needed) the offsets topic and replays it.
    pub fn open(logs: Arc<LogManager>) -> Result<OffsetStore, OffsetError> {
        if logs.topic(OFFSETS_TOPIC).is_none() {
            let mut cfg = BTreeMap::new();
            // The only copy of every committed offset: never expire it.
            cfg.insert("retention.ms".to_string(), "-1".to_string());
            cfg.insert("retention.bytes".to_string(), "-1".to_string());
            match logs.create_topic(OFFSETS_TOPIC, 1, cfg, false) {
                Ok(_) | Err(LogError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let log = logs
            .partition(OFFSETS_TOPIC, 0)
            .ok_or_else(|| LogError::UnknownTopic(OFFSETS_TOPIC.into()))?;
        let store = OffsetStore {
            log,
            logs,
            map: Mutex::new(HashMap::new()),
        };
        store.replay()?;
        Ok(store)
    }

    fn replay(&self) -> Result<(), OffsetError> {
        let mut offset = self.log.log_start_offset();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let r = self.log.read(offset, 1 << 20)?;
            let Some(data) = r.records else { break };
            let mut buf = Bytes::from(data);
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| OffsetError::Decode(e.to_string()))?;
            let mut last = offset;
            for set in sets {
                for rec in set.records {
                    last = rec.offset;
                    let Some(key) = rec
                        .key
                        .as_ref()
                        .and_then(|k| serde_json::from_slice::<Key>(k).ok())
                    else {
                        continue;
                    };
                    let value = rec
                        .value
                        .as_ref()
                        .and_then(|v| serde_json::from_slice::<Committed>(v).ok());
                    apply(&mut map, key, value);
                }
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        Ok(())
    }

    /// Writes the commits (or tombstones) durably, then makes them visible.
    pub async fn commit(&self, entries: Vec<(Key, Option<Committed>)>) -> Result<(), OffsetError> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = crate::log::segment::now_ms();
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
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
                key: serde_json::to_vec(k).ok().map(Bytes::from),
                value: v
                    .as_ref()
                    .and_then(|v| serde_json::to_vec(v).ok())
                    .map(Bytes::from),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &opts)
            .map_err(|e| OffsetError::Encode(e.to_string()))?;
        let topic = self
            .logs
            .topic(OFFSETS_TOPIC)
            .ok_or_else(|| LogError::UnknownTopic(OFFSETS_TOPIC.into()))?;
        let spans = batch::validate_produce_records(&buf, usize::MAX)?;
        let res = self.log.append(&buf, &spans, &topic.config())?;
        self.log.wait_durable(res.end_offset).await?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in entries {
            apply(&mut map, k, v);
        }
        Ok(())
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)).cloned())
    }

    /// Every committed offset of a group, sorted by topic and partition.
    pub fn group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn groups_with_offsets(&self) -> Vec<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Tombstones for all of a group's offsets (or one topic's).
    pub fn deletions(&self, group: &str, topic: Option<&str>) -> Vec<(Key, Option<Committed>)> {
        self.group(group)
            .into_iter()
            .filter(|(t, _, _)| topic.is_none_or(|x| x == t))
            .map(|(t, p, _)| {
                (
                    Key {
                        group: group.to_string(),
                        topic: t,
                        partition: p,
                    },
                    None,
                )
            })
            .collect()
    }
}

fn apply(map: &mut HashMap<String, GroupOffsets>, key: Key, value: Option<Committed>) {
    let g = map.entry(key.group).or_default();
    match value {
        Some(v) => {
            g.insert((key.topic, key.partition), v);
        }
        None => {
            g.remove(&(key.topic, key.partition));
        }
    }
}
