use std::path::PathBuf;

/// Errors of the log engine; `api` maps each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds the limit of {limit}")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid config `{key}`: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("storage error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("partition is being deleted")]
    Deleted,
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    #[error("producer epoch {got} is older than the current {current}")]
    InvalidProducerEpoch { got: i16, current: i16 },
    #[error("unknown producer id {0} (no state for a non-zero sequence)")]
    UnknownProducerId(i64),
    #[error("transactional records need a transactional id")]
    TransactionalWithoutId,
}

impl LogError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }
}
