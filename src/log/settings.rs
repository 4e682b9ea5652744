//! The log engine's settings: the `log:` section of the broker
//! configuration. Defined here rather than in `config.rs`, which gathers
//! every layer's settings (gateway, TLS, audit) and so sits above them all:
//! the log engine needs only its own.

use serde::Deserialize;

/// Log engine defaults; topics may override the retention and segment keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1 keeps data forever.
    pub retention_ms: i64,
    /// -1 means no size limit.
    pub retention_bytes: i64,
    pub retention_check_interval_ms: u64,
    pub index_interval_bytes: u32,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    /// Largest record batch accepted, like Kafka's `message.max.bytes`.
    pub max_message_bytes: i32,
    /// Open segment files kept by the shared LRU cache; lowered to a
    /// quarter of the fd soft limit when that is smaller.
    pub max_open_files: usize,
    /// Most partitions one topic may have (CreateTopics, CreatePartitions).
    pub max_partitions_per_topic: i32,
    /// Runs the log cleaner (compaction of `cleanup.policy=compact` topics).
    pub cleaner_enabled: bool,
    /// How long the cleaner sleeps when no log needs cleaning.
    pub cleaner_backoff_ms: u64,
    /// Memory for the cleaner's key -> offset map (Kafka's
    /// `log.cleaner.dedupe.buffer.size`); a log with more keys in its dirty
    /// part than fit is cleaned in several passes.
    pub cleaner_dedupe_buffer_bytes: u64,
    /// Bytes per second the cleaner may read plus write (0: unlimited).
    /// Kafka's default is unlimited; ours is 32 MiB/s, because unthrottled
    /// the rewrite phase of a pass took produce and fetch p99 to 2.5-5x of
    /// an idle broker's on a 2-core machine, and at 32 MiB/s they stayed
    /// within 2x (BENCHMARKS.md, "Log cleaner").
    pub cleaner_io_max_bytes_per_second: u64,
    /// Broker defaults of the compaction topic configs.
    pub cleaner_min_cleanable_ratio: f64,
    pub cleaner_delete_retention_ms: i64,
    pub cleaner_min_compaction_lag_ms: i64,
    pub cleaner_max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_check_interval_ms: 300_000,
            index_interval_bytes: 4096,
            default_partitions: 1,
            auto_create_topics: false,
            max_message_bytes: 1_048_588,
            max_open_files: 1024,
            max_partitions_per_topic: 1000,
            cleaner_enabled: true,
            cleaner_backoff_ms: 15_000,
            cleaner_dedupe_buffer_bytes: 128 << 20,
            cleaner_io_max_bytes_per_second: 32 << 20,
            cleaner_min_cleanable_ratio: 0.5,
            cleaner_delete_retention_ms: 24 * 3600 * 1000,
            cleaner_min_compaction_lag_ms: 0,
            cleaner_max_compaction_lag_ms: i64::MAX,
        }
    }
}
