//! The set of topics on this broker: creation, deletion, lookup. (Long-poll
//! fetches wait on the partitions they read: see `watch`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::LogConfig;

use super::files::FileCache;
use super::permissions::{create_private_dir, tighten_tree, FILE_MODE};
use super::topic_config;
use super::{LogError, Partition, Topic};
use crate::util::atomic_file::{sync_dir, write_atomic};

pub struct LogManager {
    topics_dir: PathBuf,
    /// Swapped whole when a dynamic broker config changes (`set_defaults`);
    /// readers take a snapshot, so none holds a lock.
    defaults: arc_swap::ArcSwap<LogConfig>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    pub cluster_id: String,
    /// Open segment descriptors, shared by every partition.
    files: Arc<FileCache>,
}

pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopic {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl LogManager {
    /// Opens every topic under `data_dir/topics`, recovering each partition.
    pub fn open(data_dir: &Path, defaults: LogConfig) -> Result<Arc<LogManager>, LogError> {
        let topics_dir = data_dir.join("topics");
        create_private_dir(&topics_dir).map_err(|e| LogError::io(&topics_dir, e))?;
        // A data dir written by an older version has world-readable topic
        // data: data dir, topics, partitions and their files.
        let t = tighten_tree(data_dir, 4);
        if t.changed > 0 {
            tracing::info!(
                data_dir = %data_dir.display(),
                "made {} data files and directories private (0600/0700)",
                t.changed
            );
        }
        if t.failed > 0 {
            tracing::warn!(
                data_dir = %data_dir.display(),
                "could not check or restrict the permissions of {} entries",
                t.failed
            );
        }
        let files = open_file_cache(defaults.max_open_files);
        let cluster_id = load_cluster_id(data_dir)?;
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&topics_dir).map_err(|e| LogError::io(&topics_dir, e))? {
            let entry = entry.map_err(|e| LogError::io(&topics_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".deleted") {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if validate_topic_name(&name).is_err() || !path.join("topic.json").exists() {
                continue;
            }
            let topic = Topic::open(path, &name, &defaults, &files)?;
            topics.insert(name, topic);
        }
        Ok(Arc::new(LogManager {
            topics_dir,
            defaults: arc_swap::ArcSwap::from_pointee(defaults),
            topics: RwLock::new(topics),
            cluster_id,
            files,
        }))
    }

    /// The broker-wide log defaults in force (the `log:` section, with any
    /// dynamic broker configs applied).
    pub fn defaults(&self) -> Arc<LogConfig> {
        self.defaults.load_full()
    }

    /// Replaces the defaults (a dynamic broker config change): every topic
    /// without its own override follows at once, as in Kafka.
    pub fn set_defaults(&self, defaults: LogConfig) {
        let defaults = Arc::new(defaults);
        self.defaults.store(defaults.clone());
        for t in self.topics() {
            t.follow_defaults(&defaults);
        }
    }

    /// The shared cache of open segment files.
    /// The directory holding every partition's directory: the one log dir
    /// DescribeLogDirs reports.
    pub fn topics_dir(&self) -> &Path {
        &self.topics_dir
    }

    pub fn files(&self) -> &Arc<FileCache> {
        &self.files
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics().into_iter().find(|t| t.id == id)
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic).and_then(|t| t.partition(index))
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, LogError> {
        validate_topic_name(name)?;
        let max = self.defaults().max_partitions_per_topic;
        if !(1..=max).contains(&partitions) {
            return Err(LogError::InvalidPartitions(format!(
                "{partitions} partitions requested for topic `{name}`; 1..={max} allowed per topic (log.max_partitions_per_topic)"
            )));
        }
        topic_config::validate_all(&overrides)?;
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        // Kafka refuses names that collide once '.' and '_' are unified,
        // because metric names would clash.
        let folded = name.replace('.', "_");
        if let Some(other) = topics.keys().find(|k| k.replace('.', "_") == folded) {
            return Err(LogError::InvalidTopic {
                name: name.to_string(),
                reason: format!("collides with existing topic `{other}`"),
            });
        }
        if validate_only {
            return Ok(None);
        }
        let dir = self.topics_dir.join(name);
        let topic = Topic::create(
            dir,
            name,
            partitions,
            overrides,
            &self.defaults(),
            &self.files,
        )?;
        sync_dir(&self.topics_dir).map_err(|e| LogError::io(&self.topics_dir, e))?;
        topics.insert(name.to_string(), topic.clone());
        Ok(Some(topic))
    }

    pub fn delete_topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        let topic = {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            topics
                .remove(name)
                .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?
        };
        topic.mark_deleted();
        let grave = self
            .topics_dir
            .join(format!("{name}-{}.deleted", topic.id.simple()));
        std::fs::rename(topic.dir(), &grave).map_err(|e| LogError::io(topic.dir(), e))?;
        std::thread::spawn(move || {
            let _ = std::fs::remove_dir_all(grave);
        });
        Ok(topic)
    }

    /// Clean shutdown: fsyncs every partition and leaves the snapshot that
    /// lets the next start skip recovery.
    pub fn flush_all(&self) {
        for t in self.topics() {
            for p in t.partitions() {
                if let Err(e) = p.close_clean() {
                    tracing::error!("flush on shutdown failed: {e}");
                }
            }
        }
    }
}

/// The shared segment-file cache, its limit lowered (with a warning) when
/// the fd soft limit would otherwise let segments crowd out connections.
fn open_file_cache(configured: usize) -> Arc<FileCache> {
    let (limit, lowered_for) = FileCache::effective_limit(configured);
    if let Some(soft) = lowered_for {
        tracing::warn!(
            "log.max_open_files {configured} lowered to {limit}: a quarter of the open-file soft limit ({soft})"
        );
    }
    FileCache::new(limit)
}

fn load_cluster_id(data_dir: &Path) -> Result<String, LogError> {
    let path = data_dir.join("cluster-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    use base64::Engine;
    let id =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    write_atomic(&path, id.as_bytes(), FILE_MODE).map_err(|e| LogError::io(&path, e))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
