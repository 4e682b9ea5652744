//! Per-topic configuration: Kafka's key names, validation, and the effective
//! values after falling back to the broker defaults.

use std::collections::BTreeMap;

use super::LogConfig;

use super::LogError;

/// The topic keys Portcullis understands. Anything else is refused by name
/// rather than stored and ignored.
pub const KNOWN_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Effective values used by the log engine.
#[derive(Debug, Clone)]
pub struct EffectiveConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    /// The codec batches are stored in (`compression.type`); `None`:
    /// as the producer sent them.
    pub compression: Option<i16>,
}

fn bad(key: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn int(key: &str, v: &str, min: i64) -> Result<i64, LogError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("`{v}` is not an integer")))?;
    if n < min {
        return Err(bad(key, format!("{n} is below the minimum {min}")));
    }
    Ok(n)
}

/// Checks one key/value pair the way Kafka's `LogConfig` would.
pub fn validate(key: &str, value: &str) -> Result<(), LogError> {
    match key {
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            "compact" | "compact,delete" | "delete,compact" => Err(bad(
                key,
                "log compaction is not supported by Portcullis; use `delete`",
            )),
            _ => Err(bad(key, format!("`{value}` is not delete"))),
        },
        "compression.type" => super::recompress::target_codec(value)
            .map(|_| ())
            .ok_or_else(|| {
                bad(
                    key,
                    "must be one of producer, uncompressed, gzip, snappy, lz4, zstd",
                )
            }),
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(bad(key, "must be CreateTime or LogAppendTime")),
        },
        "max.message.bytes" => int(key, value, 0).map(|_| ()),
        "min.insync.replicas" => match int(key, value, 1)? {
            1 => Ok(()),
            _ => Err(bad(key, "a single broker has one in-sync replica")),
        },
        "retention.bytes" | "retention.ms" => int(key, value, -1).map(|_| ()),
        "segment.bytes" => int(key, value, 1024).map(|_| ()),
        "segment.ms" => int(key, value, 1).map(|_| ()),
        _ => Err(bad(key, "unknown topic config")),
    }
}

pub fn validate_all(overrides: &BTreeMap<String, String>) -> Result<(), LogError> {
    overrides.iter().try_for_each(|(k, v)| validate(k, v))
}

/// Default value of `key` from the broker's log settings, as Kafka shows it.
pub fn default_value(defaults: &LogConfig, key: &str) -> String {
    match key {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => defaults.retention_bytes.to_string(),
        "retention.ms" => defaults.retention_ms.to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        _ => String::new(),
    }
}

pub fn effective(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> EffectiveConfig {
    let get = |k: &str| -> i64 {
        overrides
            .get(k)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| default_value(defaults, k).parse().unwrap_or(-1))
    };
    EffectiveConfig {
        retention_ms: get("retention.ms"),
        retention_bytes: get("retention.bytes"),
        segment_bytes: get("segment.bytes").max(1024) as u64,
        segment_ms: get("segment.ms").max(1),
        max_message_bytes: get("max.message.bytes").max(0) as usize,
        timestamp_type: match overrides.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        },
        compression: overrides
            .get("compression.type")
            .and_then(|v| super::recompress::target_codec(v))
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_effective_values() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("cleanup.policy", "compact").is_err());
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let e = effective(&LogConfig::default(), &o);
        assert_eq!(e.retention_ms, 1000);
        assert_eq!(e.retention_bytes, -1);
        assert_eq!(e.timestamp_type, TimestampType::LogAppendTime);
    }
}
