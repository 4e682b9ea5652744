//! Kafka error codes used by the handlers, and the mapping from log-engine
//! errors. Numbers are Kafka's (`org.apache.kafka.common.protocol.Errors`).

use crate::log::LogError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const RECORD_LIST_TOO_LARGE: i16 = 18;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const INVALID_RECORD: i16 = 87;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// The code a client sees for a log-engine failure.
pub fn code_for(e: &LogError) -> i16 {
    match e {
        LogError::CorruptBatch(_) => CORRUPT_MESSAGE,
        LogError::InvalidRecord(_) => INVALID_RECORD,
        LogError::UnsupportedMagic(_) => UNSUPPORTED_FOR_MESSAGE_FORMAT,
        LogError::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::UnknownTopic(_) | LogError::Deleted => UNKNOWN_TOPIC_OR_PARTITION,
        LogError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        LogError::InvalidTopic { .. } => INVALID_TOPIC_EXCEPTION,
        LogError::InvalidPartitions(_) => INVALID_PARTITIONS,
        LogError::InvalidConfig { .. } => INVALID_CONFIG,
        LogError::Io { .. } => KAFKA_STORAGE_ERROR,
        LogError::OutOfOrderSequence(_) => OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
        LogError::UnknownProducerId(_) => UNKNOWN_PRODUCER_ID,
        LogError::TransactionalWithoutId => TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
}
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const PRODUCER_FENCED: i16 = 90;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// KIP-447: a transaction holds uncommitted offsets for the partition.
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
/// The request failed as a whole before this part was tried.
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
