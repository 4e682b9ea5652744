//! A topic: its id, its partitions and its config overrides, persisted in
//! `topic.json` beside the partition directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::LogConfig;

use super::files::FileCache;
use super::permissions::{create_private_dir, FILE_MODE};
use super::topic_config::{self, EffectiveConfig};
use super::{LogError, Partition};
use crate::util::atomic_file::write_atomic;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    dir: PathBuf,
    index_interval: u32,
    files: Arc<FileCache>,
    partitions: RwLock<Vec<Arc<Partition>>>,
    overrides: RwLock<BTreeMap<String, String>>,
    effective: ArcSwap<EffectiveConfig>,
}

const META_FILE: &str = "topic.json";

impl Topic {
    pub fn create(
        dir: PathBuf,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        defaults: &LogConfig,
        files: &Arc<FileCache>,
    ) -> Result<Arc<Topic>, LogError> {
        create_private_dir(&dir).map_err(|e| LogError::io(&dir, e))?;
        let meta = TopicMeta {
            id: Uuid::new_v4(),
            partitions,
            configs: overrides,
        };
        write_meta(&dir, &meta)?;
        Self::from_meta(dir, name, meta, defaults, files)
    }

    pub fn open(
        dir: PathBuf,
        name: &str,
        defaults: &LogConfig,
        files: &Arc<FileCache>,
    ) -> Result<Arc<Topic>, LogError> {
        let meta = read_meta(&dir)?;
        Self::from_meta(dir, name, meta, defaults, files)
    }

    fn from_meta(
        dir: PathBuf,
        name: &str,
        meta: TopicMeta,
        defaults: &LogConfig,
        files: &Arc<FileCache>,
    ) -> Result<Arc<Topic>, LogError> {
        let name: Arc<str> = Arc::from(name);
        let mut parts = Vec::with_capacity(meta.partitions as usize);
        for i in 0..meta.partitions {
            parts.push(Partition::open(
                name.clone(),
                i,
                dir.join(i.to_string()),
                defaults.index_interval_bytes,
                files,
            )?);
        }
        Ok(Arc::new(Topic {
            name,
            id: meta.id,
            effective: ArcSwap::from_pointee(topic_config::effective(defaults, &meta.configs)),
            overrides: RwLock::new(meta.configs),
            dir,
            index_interval: defaults.index_interval_bytes,
            files: files.clone(),
            partitions: RwLock::new(parts),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        if index < 0 {
            return None;
        }
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(index as usize)
            .cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i32
    }

    pub fn config(&self) -> Arc<EffectiveConfig> {
        self.effective.load_full()
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn persist(&self, partitions: i32, configs: &BTreeMap<String, String>) -> Result<(), LogError> {
        write_meta(
            &self.dir,
            &TopicMeta {
                id: self.id,
                partitions,
                configs: configs.clone(),
            },
        )
    }

    /// Grows the topic to `total` partitions (Kafka never shrinks them),
    /// at most `max` (`log.max_partitions_per_topic`).
    pub fn add_partitions(
        &self,
        total: i32,
        max: i32,
        validate_only: bool,
    ) -> Result<(), LogError> {
        let mut parts = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        let current = parts.len() as i32;
        if total <= current {
            return Err(LogError::InvalidPartitions(format!(
                "topic currently has {current} partitions, {total} would not be an increase"
            )));
        }
        if total > max {
            return Err(LogError::InvalidPartitions(format!(
                "{total} partitions requested for topic `{}`; at most {max} allowed per topic (log.max_partitions_per_topic)",
                self.name
            )));
        }
        if validate_only {
            return Ok(());
        }
        let configs = self.overrides();
        self.persist(total, &configs)?;
        for i in current..total {
            parts.push(Partition::open(
                self.name.clone(),
                i,
                self.dir.join(i.to_string()),
                self.index_interval,
                &self.files,
            )?);
        }
        Ok(())
    }

    /// Replaces the override set after validating it as a whole.
    pub fn set_overrides(
        &self,
        configs: BTreeMap<String, String>,
        defaults: &LogConfig,
    ) -> Result<(), LogError> {
        topic_config::validate_all(&configs)?;
        let mut cur = self.overrides.write().unwrap_or_else(|p| p.into_inner());
        self.persist(self.partition_count(), &configs)?;
        self.effective
            .store(Arc::new(topic_config::effective(defaults, &configs)));
        *cur = configs;
        Ok(())
    }

    /// Recomputes the effective config after the broker defaults changed
    /// (under the overrides lock, so a concurrent override change is not
    /// lost).
    pub fn follow_defaults(&self, defaults: &LogConfig) {
        let cur = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        self.effective
            .store(Arc::new(topic_config::effective(defaults, &cur)));
    }

    pub fn mark_deleted(&self) {
        for p in self.partitions() {
            p.mark_deleted();
        }
    }
}

fn read_meta(dir: &Path) -> Result<TopicMeta, LogError> {
    let path = dir.join(META_FILE);
    let text = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
    serde_json::from_slice(&text).map_err(|e| {
        LogError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// A topic directory's partition count and config overrides, read from
/// its files without opening it (for commands run beside a live broker).
pub fn stored_meta(dir: &Path) -> Result<(i32, BTreeMap<String, String>), LogError> {
    read_meta(dir).map(|m| (m.partitions, m.configs))
}

fn write_meta(dir: &Path, meta: &TopicMeta) -> Result<(), LogError> {
    let path = dir.join(META_FILE);
    let data = serde_json::to_vec_pretty(meta)
        .map_err(|e| LogError::io(&path, std::io::Error::other(e)))?;
    write_atomic(&path, &data, FILE_MODE).map_err(|e| LogError::io(&path, e))
}
