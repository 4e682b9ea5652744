//! Committed offsets: an in-memory map, made durable in the internal topic
//! `__consumer_offsets` of our own log engine. A commit is acknowledged only
//! after its record is fsynced; on start the topic is replayed. A deletion
//! is a record with a null value (a tombstone).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::log::internal::InternalLog;
use crate::log::{LogError, LogManager};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

impl Committed {
    /// A client's commit, as OffsetCommit and TxnOffsetCommit both carry it.
    pub fn from_client(
        offset: i64,
        leader_epoch: i32,
        metadata: Option<&str>,
        now_ms: i64,
    ) -> Committed {
        Committed {
            offset,
            leader_epoch,
            metadata: metadata.unwrap_or_default().to_string(),
            commit_ms: now_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

pub struct OffsetStore {
    log: InternalLog,
    map: Mutex<HashMap<String, GroupOffsets>>,
    commit_order: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(transparent)]
    Log(#[from] LogError),
}

impl OffsetStore {
    /// Opens (creating if needed) the offsets topic and replays it.
    pub fn open(logs: Arc<LogManager>) -> Result<OffsetStore, OffsetError> {
        let log = InternalLog::open(logs, OFFSETS_TOPIC)?;
        let mut map = HashMap::new();
        log.replay(|k, v| {
            let Some(key) = k.and_then(|k| serde_json::from_slice::<Key>(k).ok()) else {
                return;
            };
            let value = v.and_then(|v| serde_json::from_slice::<Committed>(v).ok());
            apply(&mut map, key, value);
        })?;
        Ok(OffsetStore {
            log,
            map: Mutex::new(map),
            commit_order: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes the commits (or tombstones) durably, then makes them visible.
    pub async fn commit(&self, entries: Vec<(Key, Option<Committed>)>) -> Result<(), OffsetError> {
        if entries.is_empty() {
            return Ok(());
        }
        let records = entries
            .iter()
            .filter_map(|(k, v)| {
                let key = Bytes::from(serde_json::to_vec(k).ok()?);
                let value = v
                    .as_ref()
                    .and_then(|v| serde_json::to_vec(v).ok())
                    .map(Bytes::from);
                Some((key, value))
            })
            .collect();
        // Appends and map updates happen in the same order, so the map never
        // ends on an older commit than the log.
        let _order = self.commit_order.lock().await;
        self.log.append(records).await?;
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
