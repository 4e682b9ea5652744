//! What a client quota is in Kafka's model: a value for one of five keys,
//! set on an entity (a user and/or a client id, each named or `<default>`,
//! or an IP address), and which entity applies to a client.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Kafka's quota keys (`QuotaConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKey {
    ProducerByteRate,
    ConsumerByteRate,
    RequestPercentage,
    ControllerMutationRate,
    ConnectionCreationRate,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 5] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
        QuotaKey::ControllerMutationRate,
        QuotaKey::ConnectionCreationRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
            QuotaKey::ControllerMutationRate => "controller_mutation_rate",
            QuotaKey::ConnectionCreationRate => "connection_creation_rate",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Kafka types the byte rates as longs: a fraction is refused.
    fn integral(self) -> bool {
        matches!(
            self,
            QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate
        )
    }

    /// Only `connection_creation_rate` is set on IP entities, and only
    /// there (Kafka's rule).
    fn for_ip(self) -> bool {
        self == QuotaKey::ConnectionCreationRate
    }
}

impl fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One part of an entity: a name, or Kafka's `<default>` (every name that
/// has no entry of its own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Name {
    Default,
    Named(String),
}

/// How `<default>` is written in the config file and the data dir, as in
/// Kafka's `kafka-configs --entity-default` output.
pub const DEFAULT_NAME: &str = "<default>";

impl Name {
    pub fn from_wire(name: Option<&str>) -> Name {
        match name {
            None => Name::Default,
            Some(n) => Name::Named(n.to_string()),
        }
    }

    pub fn as_wire(&self) -> Option<&str> {
        match self {
            Name::Default => None,
            Name::Named(n) => Some(n),
        }
    }

    fn from_text(text: &str) -> Name {
        if text == DEFAULT_NAME {
            Name::Default
        } else {
            Name::Named(text.to_string())
        }
    }

    fn text(&self) -> &str {
        self.as_wire().unwrap_or(DEFAULT_NAME)
    }
}

/// A quota entity. Valid shapes (Kafka's): user, client id, user and
/// client id, or ip alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Entity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
    pub ip: Option<Name>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuotaError {
    #[error("Invalid quota entity: {0}")]
    Entity(String),
    #[error("Unknown quota key: {0}")]
    UnknownKey(String),
    #[error("Quota key {key} cannot be set on {entity}")]
    KeyNotForEntity { key: QuotaKey, entity: String },
    #[error("Invalid value {value} for quota {key}: {reason}")]
    Value {
        key: QuotaKey,
        value: f64,
        reason: &'static str,
    },
}

impl Entity {
    pub fn check(&self) -> Result<(), QuotaError> {
        let named_empty = |n: &Option<Name>| matches!(n, Some(Name::Named(s)) if s.is_empty());
        if self.user.is_none() && self.client_id.is_none() && self.ip.is_none() {
            return Err(QuotaError::Entity("no entity type given".into()));
        }
        if self.ip.is_some() && (self.user.is_some() || self.client_id.is_some()) {
            return Err(QuotaError::Entity(
                "ip cannot be combined with user or client-id".into(),
            ));
        }
        if named_empty(&self.user) || named_empty(&self.ip) {
            return Err(QuotaError::Entity("empty entity name".into()));
        }
        if let Some(Name::Named(ip)) = &self.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(QuotaError::Entity(format!(
                    "{} is not an IP address",
                    shorten(ip)
                )));
            }
        }
        Ok(())
    }

    /// Checks that `key` may be set on this entity with `value`.
    pub fn check_value(&self, key: QuotaKey, value: f64) -> Result<(), QuotaError> {
        if key.for_ip() != self.ip.is_some() {
            return Err(QuotaError::KeyNotForEntity {
                key,
                entity: self.to_string(),
            });
        }
        let reason = if !value.is_finite() || value <= 0.0 {
            "must be a positive number"
        } else if key.integral() && value.fract() != 0.0 {
            "must be a whole number of bytes per second"
        } else {
            return Ok(());
        };
        Err(QuotaError::Value { key, value, reason })
    }

    /// Kafka's entity types and names, in `DescribeClientQuotas` order.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push(("user", u.as_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push(("client-id", c.as_wire()));
        }
        if let Some(i) = &self.ip {
            out.push(("ip", i.as_wire()));
        }
        out
    }

    /// The principal the user part stands for (`User:alice`), or
    /// `<default>`.
    pub fn principal_text(&self) -> Option<String> {
        self.user.as_ref().map(|u| match u {
            Name::Default => DEFAULT_NAME.to_string(),
            Name::Named(n) => format!("User:{n}"),
        })
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts()
            .into_iter()
            .map(|(t, n)| format!("{t}={}", shorten(n.unwrap_or(DEFAULT_NAME))))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A client-chosen string in a message, bounded.
fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// One entity's quotas as written in `portcullis.yaml` and in the data
/// dir: `principal: User:alice` (or `<default>`), `client_id`, `ip`, and
/// the values by Kafka's key names.
// No `deny_unknown_fields` (serde does not combine it with `flatten`): an
// unknown key still fails, as it is not a `QuotaKey`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityQuotas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Values in force; `None` (persisted as null) removes a value the
    /// config file sets, so that a removal through the API sticks.
    #[serde(flatten)]
    pub values: BTreeMap<QuotaKey, Option<f64>>,
}

impl EntityQuotas {
    pub fn entity(&self) -> Result<Entity, QuotaError> {
        let user = match self.principal.as_deref() {
            None => None,
            Some(DEFAULT_NAME) => Some(Name::Default),
            Some(p) => match p.strip_prefix("User:") {
                Some(u) => Some(Name::Named(u.to_string())),
                None => {
                    return Err(QuotaError::Entity(format!(
                        "principal {} must be User:<name> or {DEFAULT_NAME}",
                        shorten(p)
                    )))
                }
            },
        };
        let entity = Entity {
            user,
            client_id: self.client_id.as_deref().map(Name::from_text),
            ip: self.ip.as_deref().map(Name::from_text),
        };
        entity.check()?;
        Ok(entity)
    }

    pub fn of(entity: &Entity, values: BTreeMap<QuotaKey, Option<f64>>) -> EntityQuotas {
        EntityQuotas {
            principal: entity.principal_text(),
            client_id: entity.client_id.as_ref().map(|c| c.text().to_string()),
            ip: entity.ip.as_ref().map(|i| i.text().to_string()),
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(s: &str) -> Option<Name> {
        Some(Name::Named(s.into()))
    }

    #[test]
    fn entity_shapes_and_values_follow_kafka() {
        let user = Entity {
            user: named("alice"),
            ..Default::default()
        };
        assert!(user.check().is_ok());
        assert!(Entity::default().check().is_err());
        let mixed = Entity {
            user: named("alice"),
            ip: named("10.0.0.1"),
            ..Default::default()
        };
        assert!(mixed.check().is_err());
        let bad_ip = Entity {
            ip: named("not-an-ip"),
            ..Default::default()
        };
        assert!(bad_ip.check().is_err());
        assert!(user.check_value(QuotaKey::ProducerByteRate, 1024.0).is_ok());
        assert!(user.check_value(QuotaKey::ProducerByteRate, 1.5).is_err());
        assert!(user.check_value(QuotaKey::RequestPercentage, 0.5).is_ok());
        assert!(user.check_value(QuotaKey::ConsumerByteRate, 0.0).is_err());
        assert!(user
            .check_value(QuotaKey::ConnectionCreationRate, 5.0)
            .is_err());
        let ip = Entity {
            ip: Some(Name::Default),
            ..Default::default()
        };
        assert!(ip
            .check_value(QuotaKey::ConnectionCreationRate, 5.0)
            .is_ok());
        assert!(ip.check_value(QuotaKey::ProducerByteRate, 5.0).is_err());
    }

    #[test]
    fn file_entries_round_trip() {
        let yaml = "principal: User:alice\nclient_id: <default>\nproducer_byte_rate: 1048576\nrequest_percentage: null\n";
        let e: EntityQuotas = serde_yaml_ng::from_str(yaml).unwrap();
        let entity = e.entity().unwrap();
        assert_eq!(entity.user, named("alice"));
        assert_eq!(entity.client_id, Some(Name::Default));
        assert_eq!(
            e.values.get(&QuotaKey::ProducerByteRate),
            Some(&Some(1048576.0))
        );
        assert_eq!(e.values.get(&QuotaKey::RequestPercentage), Some(&None));
        let back = EntityQuotas::of(&entity, e.values.clone());
        assert_eq!(back, e);
        let bad: Result<EntityQuotas, _> = serde_yaml_ng::from_str("principal: alice\nfoo: 1\n");
        assert!(bad.is_err());
        let no_prefix: EntityQuotas = serde_yaml_ng::from_str("principal: alice\n").unwrap();
        assert!(no_prefix.entity().is_err());
    }
}
