//! Kafka's dynamic broker configs (KIP-226) for the settings Portcullis can
//! change without a restart: the log defaults and the connection limits.
//!
//! Two layers, as in Kafka: the cluster-wide default (resource name `""`,
//! DYNAMIC_DEFAULT_BROKER_CONFIG) and this broker's own (resource name
//! `"<node_id>"`, DYNAMIC_BROKER_CONFIG), which wins. Both override
//! `portcullis.yaml`, are kept in `<data_dir>/dynamic-broker-configs.json`
//! (written atomically) and are loaded at start. Every other broker setting
//! is static: changing it is refused with Kafka's INVALID_REQUEST "Cannot
//! update these configs dynamically".

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::util::atomic_file::write_atomic;

pub const FILE_NAME: &str = "dynamic-broker-configs.json";

/// The broker configs Kafka treats as dynamic and Portcullis applies live,
/// with the YAML key each one overrides.
pub const DYNAMIC_KEYS: &[(&str, &str)] = &[
    ("log.retention.ms", "log.retention_ms"),
    ("log.retention.bytes", "log.retention_bytes"),
    ("log.segment.bytes", "log.segment_bytes"),
    ("log.roll.ms", "log.segment_ms"),
    ("message.max.bytes", "log.max_message_bytes"),
    ("max.connections", "connections.max_connections"),
    (
        "max.connections.per.ip",
        "connections.max_connections_per_ip",
    ),
    (
        "max.connections.per.ip.overrides",
        "connections.max_connections_per_ip_overrides",
    ),
];

pub fn is_dynamic(name: &str) -> bool {
    DYNAMIC_KEYS.iter().any(|(k, _)| *k == name)
}

#[derive(Debug, thiserror::Error)]
pub enum DynamicConfigError {
    /// Kafka 4.4's message (DynamicBrokerConfig.validateConfigs), answered
    /// with INVALID_REQUEST like Kafka's broker does.
    #[error("Cannot update these configs dynamically: [{0}]")]
    NotDynamic(String),
    /// A bad value; Kafka answers INVALID_REQUEST for these too (KAFKA-13609).
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Rejected(String),
    #[error("cannot read {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The two dynamic layers, as persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// Cluster-wide defaults (resource name "").
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    /// This broker's own (resource name "<node_id>").
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
}

impl Layers {
    pub fn layer(&self, per_broker: bool) -> &BTreeMap<String, String> {
        if per_broker {
            &self.broker
        } else {
            &self.cluster
        }
    }

    /// `base` with the cluster layer, then the broker layer, applied.
    pub fn apply(&self, base: &Config) -> Result<Config, DynamicConfigError> {
        let mut cfg = base.clone();
        for (k, v) in self.cluster.iter().chain(self.broker.iter()) {
            set(&mut cfg, k, v)?;
        }
        cfg.validate()
            .map_err(|e| DynamicConfigError::Rejected(e.to_string()))?;
        Ok(cfg)
    }
}

/// A name or value as echoed to the client and the log: cut short.
fn cut(v: &str) -> String {
    match v.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_string(),
    }
}

fn bad(key: &str, value: &str, reason: &str) -> DynamicConfigError {
    DynamicConfigError::InvalidValue {
        key: key.to_string(),
        value: cut(value),
        reason: reason.to_string(),
    }
}

fn num<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    key: &str,
    value: &str,
    min: T,
) -> Result<T, DynamicConfigError> {
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "not a number of the config's type"))?;
    if n < min {
        return Err(bad(key, value, &format!("must be at least {min}")));
    }
    Ok(n)
}

/// Kafka's `max.connections.per.ip.overrides` syntax: `host:count,...`
/// (Portcullis takes IP addresses only; IPv6 as `[::1]:5` or `::1:5`).
pub fn parse_overrides(value: &str) -> Result<BTreeMap<IpAddr, usize>, DynamicConfigError> {
    let key = "max.connections.per.ip.overrides";
    // Persisted and re-parsed on every change: bounded like any input.
    if value.len() > 64 * 1024 {
        return Err(bad(key, "(too long)", "longer than 65536 bytes"));
    }
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (ip, n) = item
            .rsplit_once(':')
            .ok_or_else(|| bad(key, value, "expected ip:count entries"))?;
        let ip: IpAddr = ip
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| bad(key, value, "Portcullis takes IP addresses, not host names"))?;
        out.insert(ip, num::<usize>(key, n, 1)?);
    }
    Ok(out)
}

/// Sets one dynamic key on `cfg` (Kafka name and syntax).
fn set(cfg: &mut Config, key: &str, value: &str) -> Result<(), DynamicConfigError> {
    match key {
        "log.retention.ms" => {
            let v = num::<i64>(key, value, -1)?;
            if v == 0 {
                return Err(bad(key, value, "must be positive or -1"));
            }
            cfg.log.retention_ms = v;
        }
        "log.retention.bytes" => cfg.log.retention_bytes = num::<i64>(key, value, -1)?,
        "log.segment.bytes" => {
            cfg.log.segment_bytes = num::<i32>(key, value, 1024)? as u64;
        }
        "log.roll.ms" => cfg.log.segment_ms = num::<i64>(key, value, 1)?,
        "message.max.bytes" => cfg.log.max_message_bytes = num::<i32>(key, value, 1024)?,
        "max.connections" => {
            cfg.connections.max_connections = Some(num::<i32>(key, value, 1)? as usize);
        }
        "max.connections.per.ip" => {
            cfg.connections.max_connections_per_ip = Some(num::<i32>(key, value, 1)? as usize);
        }
        "max.connections.per.ip.overrides" => {
            cfg.connections.max_connections_per_ip_overrides = parse_overrides(value)?;
        }
        other => return Err(DynamicConfigError::NotDynamic(other.to_string())),
    }
    Ok(())
}

/// One IncrementalAlterConfigs operation on a broker resource.
pub enum Op<'a> {
    Set(&'a str, &'a str),
    Delete(&'a str),
}

/// The dynamic layers in force; changes are validated against the static
/// config, persisted, then handed to the caller to apply.
pub struct DynamicConfigs {
    path: PathBuf,
    layers: Mutex<Layers>,
}

impl DynamicConfigs {
    /// Reads `<data_dir>/dynamic-broker-configs.json` (none: no layers).
    pub fn load(data_dir: &Path) -> Result<DynamicConfigs, DynamicConfigError> {
        let path = data_dir.join(FILE_NAME);
        let layers = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DynamicConfigError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Layers::default(),
            Err(e) => {
                return Err(DynamicConfigError::Load {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Ok(DynamicConfigs {
            path,
            layers: Mutex::new(layers),
        })
    }

    /// Layers that were never persisted (tests, tools).
    pub fn empty(data_dir: &Path) -> DynamicConfigs {
        DynamicConfigs {
            path: data_dir.join(FILE_NAME),
            layers: Mutex::new(Layers::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn layers(&self) -> Layers {
        self.lock().clone()
    }

    /// Applies `ops` to one layer: refuses any static key (all named, as
    /// Kafka does), checks the result against `base`, persists it unless
    /// `validate_only`, and calls `apply` with the new effective config
    /// while changes are still serialised (so two changes cannot apply out
    /// of order). No lock is held across an await: all of this is sync.
    pub fn change(
        &self,
        base: &Config,
        per_broker: bool,
        ops: &[Op<'_>],
        validate_only: bool,
        apply: impl FnOnce(&Config),
    ) -> Result<(), DynamicConfigError> {
        let statics: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                Op::Set(k, _) | Op::Delete(k) => *k,
            })
            .filter(|k| !is_dynamic(k))
            .collect();
        if !statics.is_empty() {
            // Names are echoed: each cut short, at most 20 of them.
            let mut named: Vec<String> = statics.iter().take(20).map(|k| cut(k)).collect();
            if statics.len() > 20 {
                named.push("...".into());
            }
            return Err(DynamicConfigError::NotDynamic(named.join(", ")));
        }
        let mut layers = self.lock();
        let mut next = layers.clone();
        let layer = if per_broker {
            &mut next.broker
        } else {
            &mut next.cluster
        };
        for op in ops {
            match op {
                Op::Set(k, v) => {
                    layer.insert(k.to_string(), v.trim().to_string());
                }
                Op::Delete(k) => {
                    layer.remove(*k);
                }
            }
        }
        let effective = next.apply(base)?;
        if validate_only || next == *layers {
            return Ok(());
        }
        let data = serde_json::to_vec_pretty(&next).map_err(|e| DynamicConfigError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &data, 0o600).map_err(|source| DynamicConfigError::Write {
            path: self.path.clone(),
            source,
        })?;
        *layers = next;
        apply(&effective);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::parse("listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\n")
            .unwrap()
    }

    #[test]
    fn layers_override_in_order_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let d = DynamicConfigs::load(dir.path()).unwrap();
        let mut seen = None;
        d.change(
            &base(),
            false,
            &[Op::Set("log.retention.ms", "1000")],
            false,
            |c| seen = Some(c.log.retention_ms),
        )
        .unwrap();
        assert_eq!(seen, Some(1000));
        d.change(
            &base(),
            true,
            &[
                Op::Set("log.retention.ms", "2000"),
                Op::Set("max.connections", "50"),
            ],
            false,
            |c| seen = Some(c.log.retention_ms),
        )
        .unwrap();
        assert_eq!(seen, Some(2000), "the broker layer wins");
        let again = DynamicConfigs::load(dir.path()).unwrap();
        let cfg = again.layers().apply(&base()).unwrap();
        assert_eq!(cfg.log.retention_ms, 2000);
        assert_eq!(cfg.connections.max_connections, Some(50));
        // Validate-only changes nothing.
        d.change(
            &base(),
            false,
            &[Op::Delete("log.retention.ms")],
            true,
            |_| panic!("validate-only must not apply"),
        )
        .unwrap();
        assert_eq!(d.layers().cluster.len(), 1);
    }

    // A runtime: partitions spawn their flusher.
    #[tokio::test]
    async fn topics_without_an_override_follow_changed_log_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let logs = crate::log::LogManager::open(dir.path(), base().log).unwrap();
        let follow = logs
            .create_topic("follow", 1, Default::default(), false)
            .unwrap()
            .unwrap();
        let own = logs
            .create_topic(
                "own",
                1,
                [("retention.ms".to_string(), "5000".to_string())].into(),
                false,
            )
            .unwrap()
            .unwrap();
        let d = DynamicConfigs::load(dir.path()).unwrap();
        d.change(
            &base(),
            false,
            &[
                Op::Set("log.retention.ms", "1234"),
                Op::Set("message.max.bytes", "2048"),
            ],
            false,
            |c| logs.set_defaults(c.log.clone()),
        )
        .unwrap();
        assert_eq!(follow.config().retention_ms, 1234);
        assert_eq!(follow.config().max_message_bytes, 2048);
        assert_eq!(own.config().retention_ms, 5000, "an override stays");
        assert_eq!(own.config().max_message_bytes, 2048);
        assert_eq!(logs.defaults().retention_ms, 1234);
    }

    #[test]
    fn static_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = DynamicConfigs::load(dir.path()).unwrap();
        let err = d
            .change(
                &base(),
                false,
                &[Op::Set("num.partitions", "3"), Op::Set("listeners", "x")],
                false,
                |_| {},
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot update these configs dynamically: [num.partitions, listeners]"
        );
        for (k, v) in [
            ("log.retention.ms", "0"),
            ("log.segment.bytes", "10"),
            ("max.connections", "abc"),
            ("max.connections.per.ip.overrides", "host.example:5"),
        ] {
            assert!(
                matches!(
                    d.change(&base(), false, &[Op::Set(k, v)], false, |_| {}),
                    Err(DynamicConfigError::InvalidValue { .. })
                ),
                "{k}={v}"
            );
        }
        assert!(!dir.path().join(FILE_NAME).exists());
        let o = parse_overrides("10.0.0.1:5, [::1]:7").unwrap();
        assert_eq!(o.len(), 2);
    }
}
