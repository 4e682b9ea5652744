//! The mapping from log-engine errors to the Kafka error codes clients see.
//! Codes come from kafka-protocol's `ResponseError` everywhere; `NONE` (no
//! error) is the one code that enum has no variant for.

use crate::log::LogError;
use kafka_protocol::ResponseError;

pub const NONE: i16 = 0;

/// The code a client sees for a log-engine failure.
pub fn code_for(e: &LogError) -> i16 {
    match e {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage.code(),
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        LogError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        LogError::UnknownTopic(_) | LogError::Deleted => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        LogError::InvalidTopic { .. } => ResponseError::InvalidTopicException.code(),
        LogError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig.code(),
        LogError::Io { .. } => ResponseError::KafkaStorageError.code(),
        LogError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber.code(),
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        LogError::UnknownProducerId(_) => ResponseError::UnknownProducerId.code(),
        LogError::TransactionalWithoutId => {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        }
    }
}
