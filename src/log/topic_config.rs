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
    "delete.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
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
    pub cleanup: CleanupPolicy,
    pub delete_retention_ms: i64,
    pub min_cleanable_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
}

/// `cleanup.policy`: what happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention by time and size deletes old segments.
    pub delete: bool,
    /// The cleaner keeps the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's list syntax: `delete`, `compact`, `compact,delete` (any order,
    /// spaces allowed); `None` for anything else.
    pub fn parse(v: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in v.split(',').map(str::trim) {
            match part {
                "delete" if !p.delete => p.delete = true,
                "compact" if !p.compact => p.compact = true,
                _ => return None,
            }
        }
        Some(p)
    }
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
        "cleanup.policy" => CleanupPolicy::parse(value).map(|_| ()).ok_or_else(|| {
            bad(
                key,
                format!("`{value}` is not delete, compact or compact,delete"),
            )
        }),
        "delete.retention.ms" | "min.compaction.lag.ms" => int(key, value, 0).map(|_| ()),
        "max.compaction.lag.ms" => int(key, value, 1).map(|_| ()),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err(bad(
                key,
                format!("`{value}` is not a number between 0 and 1"),
            )),
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
        "delete.retention.ms" => defaults.cleaner_delete_retention_ms.to_string(),
        "max.compaction.lag.ms" => defaults.cleaner_max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => defaults.cleaner_min_cleanable_ratio.to_string(),
        "min.compaction.lag.ms" => defaults.cleaner_min_compaction_lag_ms.to_string(),
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
        cleanup: overrides
            .get("cleanup.policy")
            .and_then(|v| CleanupPolicy::parse(v))
            .unwrap_or(CleanupPolicy {
                delete: true,
                compact: false,
            }),
        delete_retention_ms: get("delete.retention.ms").max(0),
        min_cleanable_ratio: overrides
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(defaults.cleaner_min_cleanable_ratio),
        min_compaction_lag_ms: get("min.compaction.lag.ms").max(0),
        max_compaction_lag_ms: get("max.compaction.lag.ms").max(1),
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
        assert!(validate("cleanup.policy", "compact").is_ok());
        assert!(validate("cleanup.policy", "delete, compact").is_ok());
        assert!(validate("cleanup.policy", "compact,compact").is_err());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.01").is_ok());
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
        assert!(e.cleanup.delete && !e.cleanup.compact);
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        let e = effective(&LogConfig::default(), &o);
        assert!(!e.cleanup.delete && e.cleanup.compact);
    }
}
