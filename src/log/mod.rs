//! The disk log engine: topics, partitions, segments, indexes, retention,
//! compaction (`cleaner/`) and crash recovery. Record batches are stored exactly as clients sent them
//! (magic v2) apart from the broker-assigned base offset, so Fetch serves the
//! stored bytes without re-encoding.

pub mod batch;
pub mod cleaner;
pub mod error;
pub mod files;
pub mod index;
pub mod internal;
pub mod manager;
pub mod partition;
pub mod permissions;
pub mod producer_state;
pub mod recompress;
pub mod records;
pub mod retention;
pub mod segment;
pub mod settings;
pub mod state_snapshot;
pub mod topic;
pub mod topic_config;
pub mod txn_index;
pub mod txn_markers;
pub mod watch;

pub use error::LogError;
pub use manager::LogManager;
pub use partition::Partition;
pub use settings::LogConfig;
pub use topic::Topic;
