//! Per-group configs (KIP-848's GROUP config resource, Kafka 4.x's
//! `GroupConfig`): `consumer.session.timeout.ms`, `consumer.heartbeat.interval.ms`
//! and the share/streams keys, each a per-group override of a broker
//! `group.*` default, set with IncrementalAlterConfigs on a GROUP resource
//! and kept in `<data_dir>/group-configs.json` (written atomically).
//!
//! The group coordinator reads them through `GroupConfigs::consumer_session_timeout_ms`
//! and `consumer_heartbeat_interval_ms` (`Broker::group_configs`). Portcullis
//! runs neither share nor streams groups; their keys are stored and
//! described like Kafka's so that tools and scripts work unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::config::GroupsConfig;
use crate::util::atomic_file::write_atomic;

pub const FILE_NAME: &str = "group-configs.json";

/// Groups that may have overrides at once: every change rewrites the whole
/// file, so a client with ALTER_CONFIGS on `*` must not grow it without
/// bound (Kafka has no such cap; its metadata log bounds it instead).
pub const MAX_GROUPS_WITH_CONFIGS: usize = 10_000;

/// Longest value accepted (the free-text keys: topic and assignor names,
/// tag lists).
pub const MAX_VALUE_BYTES: usize = 1024;

/// Kafka's DescribeConfigs config types.
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LIST: i8 = 7;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Inclusive bounds.
    Int(i64, i64),
    Bool,
    OneOf(&'static [&'static str]),
    Text,
    List,
}

/// One group config: its name, its broker synonym and how it is checked.
struct Key {
    name: &'static str,
    broker: Option<&'static str>,
    kind: Kind,
    doc: &'static str,
}

const UNBOUNDED: i64 = i32::MAX as i64;

/// Kafka 4.4's non-internal group configs (the 21 its DescribeConfigs lists). The consumer
/// session and heartbeat bounds come from the broker's settings
/// (`bounds`); the others are Kafka's default bounds.
const KEYS: &[Key] = &[
    Key {
        name: "consumer.session.timeout.ms",
        broker: Some("group.consumer.session.timeout.ms"),
        kind: Kind::Int(0, 0),
        doc: "The timeout to detect client failures when using the consumer group protocol.",
    },
    Key {
        name: "consumer.heartbeat.interval.ms",
        broker: Some("group.consumer.heartbeat.interval.ms"),
        kind: Kind::Int(0, 0),
        doc: "The heartbeat interval given to the members of a consumer group.",
    },
    Key {
        name: "consumer.assignment.interval.ms",
        broker: Some("group.consumer.assignment.interval.ms"),
        kind: Kind::Int(0, 15_000),
        doc: "The minimum interval between assignment computations of a consumer group.",
    },
    Key {
        name: "share.session.timeout.ms",
        broker: Some("group.share.session.timeout.ms"),
        kind: Kind::Int(45_000, 60_000),
        doc: "The timeout to detect client failures when using the share group protocol.",
    },
    Key {
        name: "share.heartbeat.interval.ms",
        broker: Some("group.share.heartbeat.interval.ms"),
        kind: Kind::Int(5_000, 15_000),
        doc: "The heartbeat interval given to the members of a share group.",
    },
    Key {
        name: "share.record.lock.duration.ms",
        broker: Some("group.share.record.lock.duration.ms"),
        kind: Kind::Int(15_000, 60_000),
        doc: "The record acquisition lock duration in milliseconds for share groups.",
    },
    Key {
        name: "share.delivery.count.limit",
        broker: Some("group.share.delivery.count.limit"),
        kind: Kind::Int(2, 10),
        doc: "The maximum number of delivery attempts for a record delivered to a share group.",
    },
    Key {
        name: "share.partition.max.record.locks",
        broker: Some("group.share.partition.max.record.locks"),
        kind: Kind::Int(100, 4_000),
        doc: "Share-group record lock limit per share-partition.",
    },
    Key {
        name: "share.auto.offset.reset",
        broker: None,
        kind: Kind::Text,
        doc: "The strategy to initialize the share-partition start offset.",
    },
    Key {
        name: "share.isolation.level",
        broker: None,
        kind: Kind::OneOf(&["read_committed", "read_uncommitted"]),
        doc: "Controls how to read records written transactionally.",
    },
    Key {
        name: "share.renew.acknowledge.enable",
        broker: None,
        kind: Kind::Bool,
        doc: "Whether the renew acknowledge type is enabled for the share group.",
    },
    Key {
        name: "share.assignment.interval.ms",
        broker: Some("group.share.assignment.interval.ms"),
        kind: Kind::Int(0, 15_000),
        doc: "The minimum interval between assignment computations of a share group.",
    },
    Key {
        name: "streams.session.timeout.ms",
        broker: Some("group.streams.session.timeout.ms"),
        kind: Kind::Int(45_000, 60_000),
        doc: "The timeout to detect client failures when using the streams group protocol.",
    },
    Key {
        name: "streams.heartbeat.interval.ms",
        broker: Some("group.streams.heartbeat.interval.ms"),
        kind: Kind::Int(5_000, 15_000),
        doc: "The heartbeat interval given to the members of a streams group.",
    },
    Key {
        name: "streams.num.standby.replicas",
        broker: Some("group.streams.num.standby.replicas"),
        kind: Kind::Int(0, 2),
        doc: "The number of standby replicas for each task.",
    },
    Key {
        name: "streams.initial.rebalance.delay.ms",
        broker: Some("group.streams.initial.rebalance.delay.ms"),
        kind: Kind::Int(0, UNBOUNDED),
        doc: "The delay before the first rebalance of a new streams group.",
    },
    Key {
        name: "streams.assignment.interval.ms",
        broker: Some("group.streams.assignment.interval.ms"),
        kind: Kind::Int(0, 15_000),
        doc: "The minimum interval between assignment computations of a streams group.",
    },
    Key {
        name: "streams.rack.aware.assignment.tags",
        broker: Some("group.streams.rack.aware.assignment.tags"),
        kind: Kind::List,
        doc: "The client tags used for rack-aware standby task assignment.",
    },
    Key {
        name: "streams.assignor.name",
        broker: Some("group.streams.assignors"),
        kind: Kind::Text,
        doc: "The task assignor of this streams group, by short name.",
    },
    Key {
        name: "errors.deadletterqueue.topic.name",
        broker: None,
        kind: Kind::Text,
        doc: "The dead letter queue topic of the group.",
    },
    Key {
        name: "errors.deadletterqueue.copy.record.enable",
        broker: None,
        kind: Kind::Bool,
        doc: "Whether records are copied to the dead letter queue.",
    },
];

fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The config type Kafka reports for a group config.
pub fn config_type(name: &str) -> i8 {
    match key(name).map(|k| k.kind) {
        Some(Kind::Int(..)) => TYPE_INT,
        Some(Kind::Bool) => TYPE_BOOLEAN,
        Some(Kind::List) => TYPE_LIST,
        _ => TYPE_STRING,
    }
}

pub fn is_list(name: &str) -> bool {
    config_type(name) == TYPE_LIST
}

/// Bounds of the consumer keys, from the broker's `group.consumer.*`.
fn bounds(k: &Key, g: &GroupsConfig) -> Kind {
    match k.name {
        "consumer.session.timeout.ms" => Kind::Int(
            g.consumer_min_session_timeout_ms.into(),
            g.consumer_max_session_timeout_ms.into(),
        ),
        "consumer.heartbeat.interval.ms" => Kind::Int(
            g.consumer_min_heartbeat_interval_ms.into(),
            g.consumer_max_heartbeat_interval_ms.into(),
        ),
        _ => k.kind,
    }
}

/// The broker default of a group config, as Kafka shows it.
pub fn default_value(name: &str, g: &GroupsConfig) -> String {
    match name {
        "consumer.session.timeout.ms" => g.consumer_session_timeout_ms.to_string(),
        "consumer.heartbeat.interval.ms" => g.consumer_heartbeat_interval_ms.to_string(),
        "consumer.assignment.interval.ms"
        | "share.assignment.interval.ms"
        | "streams.assignment.interval.ms" => "1000".into(),
        "share.session.timeout.ms" | "streams.session.timeout.ms" => "45000".into(),
        "share.heartbeat.interval.ms" | "streams.heartbeat.interval.ms" => "5000".into(),
        "share.record.lock.duration.ms" => "30000".into(),
        "share.delivery.count.limit" => "5".into(),
        "share.partition.max.record.locks" => "2000".into(),
        "share.auto.offset.reset" => "latest".into(),
        "share.isolation.level" => "read_uncommitted".into(),
        "share.renew.acknowledge.enable" => "true".into(),
        "streams.num.standby.replicas" => "0".into(),
        "streams.initial.rebalance.delay.ms" => "3000".into(),
        "streams.assignor.name" => "sticky".into(),
        "errors.deadletterqueue.copy.record.enable" => "false".into(),
        _ => String::new(),
    }
}

/// The broker setting a group config falls back to (`group.consumer.*`),
/// and its YAML key when Portcullis has one.
pub fn broker_synonym(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    let k = key(name)?;
    let yaml = match name {
        "consumer.session.timeout.ms" => Some("groups.consumer_session_timeout_ms"),
        "consumer.heartbeat.interval.ms" => Some("groups.consumer_heartbeat_interval_ms"),
        _ => None,
    };
    k.broker.map(|b| (b, yaml))
}

pub fn documentation(name: &str) -> Option<&'static str> {
    key(name).map(|k| k.doc)
}

/// Every group config name, in Kafka's order.
pub fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.name)
}

#[derive(Debug, thiserror::Error)]
pub enum GroupConfigError {
    /// Kafka's InvalidConfigurationException (INVALID_CONFIG).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A value as echoed in an error: cut short (values are at most
/// `MAX_VALUE_BYTES`, but a message needs less).
fn short(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &value[..i]),
        None => value.to_string(),
    }
}

fn invalid(m: impl Into<String>) -> GroupConfigError {
    GroupConfigError::Invalid(m.into())
}

/// Checks one group's overrides as a whole, the way Kafka's
/// `GroupConfig.validate` does (names, types, bounds, session above
/// heartbeat).
pub fn validate(
    overrides: &BTreeMap<String, String>,
    g: &GroupsConfig,
) -> Result<(), GroupConfigError> {
    for (name, value) in overrides {
        let k = key(name)
            .ok_or_else(|| invalid(format!("Unknown group config name: {}", short(name))))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(invalid(format!(
                "Invalid value for configuration {name}: longer than {MAX_VALUE_BYTES} bytes"
            )));
        }
        let v = value.trim();
        match bounds(k, g) {
            Kind::Int(min, max) => {
                let n: i64 = v.parse().map_err(|_| {
                    invalid(format!(
                        "Invalid value {} for configuration {name}: Not a number of type INT",
                        short(value)
                    ))
                })?;
                if n < min {
                    return Err(invalid(format!(
                        "{name} must be greater than or equal to {min}"
                    )));
                }
                if n > max {
                    return Err(invalid(format!(
                        "{name} must be less than or equal to {max}"
                    )));
                }
            }
            Kind::Bool => {
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                    return Err(invalid(format!(
                        "Invalid value {} for configuration {name}: Expected value to be either true or false",
                        short(value)
                    )));
                }
            }
            Kind::OneOf(allowed) => {
                if !allowed.contains(&v) {
                    return Err(invalid(format!(
                        "Invalid value {} for configuration {name}: must be one of {}",
                        short(value),
                        allowed.join(", ")
                    )));
                }
            }
            Kind::Text if name == "share.auto.offset.reset" => {
                if !(v == "latest" || v == "earliest" || v.starts_with("by_duration:")) {
                    return Err(invalid(format!(
                        "Invalid value {} for configuration {name}: must be latest, earliest or by_duration:<ISO-8601 duration>",
                        short(value)
                    )));
                }
            }
            Kind::Text | Kind::List => {}
        }
    }
    let int = |name: &str| -> i64 {
        overrides
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| default_value(name, g).parse().unwrap_or(0))
    };
    for p in ["consumer", "share", "streams"] {
        let (session, heartbeat) = (
            format!("{p}.session.timeout.ms"),
            format!("{p}.heartbeat.interval.ms"),
        );
        if int(&session) <= int(&heartbeat) {
            return Err(invalid(format!(
                "{session} must be greater than {heartbeat}"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    groups: BTreeMap<String, BTreeMap<String, String>>,
}

/// One IncrementalAlterConfigs operation on a group.
pub enum Op<'a> {
    Set(&'a str, &'a str),
    Delete(&'a str),
    Append(&'a str, &'a str),
    Subtract(&'a str, &'a str),
}

/// Every group's overrides.
pub struct GroupConfigs {
    path: PathBuf,
    defaults: GroupsConfig,
    groups: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
}

impl GroupConfigs {
    pub fn load(data_dir: &Path, defaults: GroupsConfig) -> Result<GroupConfigs, GroupConfigError> {
        let path = data_dir.join(FILE_NAME);
        let file: FileFormat = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| GroupConfigError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileFormat::default(),
            Err(e) => {
                return Err(GroupConfigError::Load {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Ok(GroupConfigs {
            path,
            defaults,
            groups: RwLock::new(file.groups),
        })
    }

    pub fn defaults(&self) -> &GroupsConfig {
        &self.defaults
    }

    /// The overrides set for `group` (none: empty).
    pub fn overrides(&self, group: &str) -> BTreeMap<String, String> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    fn int(&self, group: &str, name: &str, default: i32) -> i32 {
        self.overrides(group)
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// The session timeout a KIP-848 consumer group's members get.
    pub fn consumer_session_timeout_ms(&self, group: &str) -> i32 {
        self.int(
            group,
            "consumer.session.timeout.ms",
            self.defaults.consumer_session_timeout_ms,
        )
    }

    /// The heartbeat interval a KIP-848 consumer group's members are given.
    pub fn consumer_heartbeat_interval_ms(&self, group: &str) -> i32 {
        self.int(
            group,
            "consumer.heartbeat.interval.ms",
            self.defaults.consumer_heartbeat_interval_ms,
        )
    }

    /// Applies `ops` to `group`'s overrides, validated as a whole; persists
    /// unless `validate_only`.
    pub fn alter(
        &self,
        group: &str,
        ops: &[Op<'_>],
        validate_only: bool,
    ) -> Result<(), GroupConfigError> {
        let mut all = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let mut next = all.get(group).cloned().unwrap_or_default();
        for op in ops {
            match *op {
                Op::Set(k, v) => {
                    next.insert(k.to_string(), v.to_string());
                }
                Op::Delete(k) => {
                    next.remove(k);
                }
                Op::Append(k, v) | Op::Subtract(k, v) => {
                    if !is_list(k) {
                        return Err(invalid(format!(
                            "Config value append is not allowed for config key: {k}"
                        )));
                    }
                    let mut items: Vec<String> = next
                        .get(k)
                        .map(|c| {
                            c.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    let values: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
                    if matches!(op, Op::Append(..)) {
                        for v in values {
                            if !items.iter().any(|i| i == v) {
                                items.push(v.to_string());
                            }
                        }
                    } else {
                        items.retain(|i| !values.contains(&i.as_str()));
                    }
                    next.insert(k.to_string(), items.join(","));
                }
            }
        }
        validate(&next, &self.defaults)?;
        if validate_only {
            return Ok(());
        }
        if !next.is_empty() && !all.contains_key(group) && all.len() >= MAX_GROUPS_WITH_CONFIGS {
            return Err(invalid(format!(
                "at most {MAX_GROUPS_WITH_CONFIGS} groups may have group configs; delete some first"
            )));
        }
        let mut updated = all.clone();
        if next.is_empty() {
            updated.remove(group);
        } else {
            updated.insert(group.to_string(), next);
        }
        let data = serde_json::to_vec_pretty(&FileFormat {
            groups: updated.clone(),
        })
        .map_err(|e| GroupConfigError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &data, 0o600).map_err(|source| GroupConfigError::Write {
            path: self.path.clone(),
            source,
        })?;
        *all = updated;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_persisted_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let g = GroupsConfig::default();
        let s = GroupConfigs::load(dir.path(), g.clone()).unwrap();
        assert_eq!(s.consumer_session_timeout_ms("g1"), 45_000);
        s.alter(
            "g1",
            &[Op::Set("consumer.session.timeout.ms", "50000")],
            false,
        )
        .unwrap();
        assert_eq!(s.consumer_session_timeout_ms("g1"), 50_000);
        assert_eq!(s.consumer_session_timeout_ms("g2"), 45_000);
        let err = s
            .alter(
                "g1",
                &[Op::Set("consumer.session.timeout.ms", "1000")],
                false,
            )
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "consumer.session.timeout.ms must be greater than or equal to 45000"
        );
        assert!(s
            .alter("g1", &[Op::Set("no.such", "1")], false)
            .unwrap_err()
            .to_string()
            .contains("Unknown group config name: no.such"));
        assert!(s
            .alter("g1", &[Op::Set("share.isolation.level", "dirty")], false)
            .is_err());
        s.alter(
            "g1",
            &[Op::Append("streams.rack.aware.assignment.tags", "zone")],
            true,
        )
        .unwrap();
        assert!(s.overrides("g1").len() == 1, "validate-only stores nothing");
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(s
            .alter(
                "g1",
                &[Op::Set("errors.deadletterqueue.topic.name", &long)],
                false
            )
            .is_err());
        let again = GroupConfigs::load(dir.path(), g).unwrap();
        assert_eq!(again.consumer_session_timeout_ms("g1"), 50_000);
        again
            .alter("g1", &[Op::Delete("consumer.session.timeout.ms")], false)
            .unwrap();
        assert!(again.overrides("g1").is_empty());
    }
}
