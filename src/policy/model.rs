//! The policy file as serde sees it: what an operator writes, before any
//! validation beyond the shape (every key known, every name in its set).
//! `file.rs` checks the values and `set.rs` compiles them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    #[serde(default)]
    pub rules: Vec<RuleModel>,
}

/// What a violated rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse the request (POLICY_VIOLATION or the API's nearest code).
    Block,
    /// Let it through and record the violation (for rolling a rule out).
    Audit,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Block => "block",
            Action::Audit => "audit",
        })
    }
}

/// One rule: who and which topics it covers, what it checks, and what a
/// violation does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleModel {
    pub name: String,
    pub action: Action,
    /// `User:alice`, `User:*` (everyone), `User:team-*` (a prefix);
    /// absent: everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// Absent: every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<TopicsModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_topic: Option<CreateTopicModel>,
    /// Bounds on config changes only (IncrementalAlterConfigs and
    /// AlterConfigs), in addition to `create_topic.configs`, which bound
    /// both creation and changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alter_configs: Option<ConfigsModel>,
    /// Partition-count bounds for CreatePartitions (the new total); absent:
    /// `create_topic.partitions` bound it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_partitions: Option<RangeModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce: Option<ProduceModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume: Option<ConsumeModel>,
}

/// Exactly one of the three.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A regular expression (Rust's `regex` syntax); anchor it with `^...$`
    /// to match whole names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Inclusive bounds; either may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<RangeModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<RangeModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configs: Option<ConfigsModel>,
}

/// Bounds on one config's value: numeric `min`/`max`, or a set of
/// `values` (a comma-separated value such as `compact,delete` must have
/// every item in the set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueBoundModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// `allowed: [keys]` and one bound per config key (`retention.ms: {min:
/// 86400000}`). Deserialized by hand rather than with `#[serde(flatten)]`,
/// which buffers the map and loses the line numbers of errors inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigsModel {
    pub allowed: Option<Vec<String>>,
    pub bounds: BTreeMap<String, ValueBoundModel>,
}

impl Serialize for ConfigsModel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(a) = &self.allowed {
            m.serialize_entry("allowed", a)?;
        }
        for (k, v) in &self.bounds {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for ConfigsModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigsModel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of `allowed` and config names to bounds")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigsModel, A::Error> {
                let mut out = ConfigsModel::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "allowed" {
                        if out.allowed.is_some() {
                            return Err(de::Error::duplicate_field("allowed"));
                        }
                        out.allowed = Some(map.next_value()?);
                    } else {
                        let bound: ValueBoundModel = map.next_value()?;
                        if out.bounds.insert(key, bound).is_some() {
                            return Err(de::Error::custom("duplicate config key"));
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A compression codec as named in `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of a batch's attribute bits 0-2.
    pub fn from_id(id: i16) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn id(self) -> i16 {
        self as i16
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Codec, String> {
        Ok(match s {
            "none" => Codec::None,
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => return Err("expected one of none, gzip, snappy, lz4, zstd".into()),
        })
    }
}

/// A Produce `acks` value: `all` (or -1), 1 or 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Acks(pub i16);

impl Acks {
    pub fn name(self) -> &'static str {
        match self.0 {
            -1 => "all",
            1 => "1",
            0 => "0",
            _ => "?",
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Acks, String> {
        match s {
            "all" | "-1" => Ok(Acks(-1)),
            "1" => Ok(Acks(1)),
            "0" => Ok(Acks(0)),
            _ => Err("acks is one of all (-1), 1, 0".into()),
        }
    }
}

impl Serialize for Acks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Acks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("all, -1, 1 or 0")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Acks, E> {
                match v {
                    -1..=1 => Ok(Acks(v as i16)),
                    _ => Err(E::invalid_value(de::Unexpected::Other("number"), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Acks, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Acks, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(de::Unexpected::Other("string"), &self))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceModel {
    /// Allowed `acks` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<Vec<Acks>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotence_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactions_required: bool,
    /// Allowed codecs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Vec<Codec>>,
    /// The largest record value, in bytes (after decompression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_bytes: Option<u64>,
    /// Header keys every record must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_headers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeModel {
    /// Checked when the request names a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_id_required: bool,
    /// Checked when the client names itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_pattern: Option<String>,
}
