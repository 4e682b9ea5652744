//! The BROKER config resource: every Portcullis broker setting under its
//! Kafka 4.x name, with Kafka's sources (dynamic broker, dynamic default,
//! static file, built-in default), read-only and sensitive flags; and
//! IncrementalAlterConfigs / AlterConfigs on the dynamic ones.
//!
//! Naming: a setting Kafka has is reported under Kafka's name, with Kafka's
//! unit (`offsets.retention.minutes` from `groups.offsets_retention_ms`).
//! A Portcullis-only setting that a client or operator may want to see
//! (file-cache size, partition cap, login deadline) is reported as
//! `portcullis.<yaml key with dots>`, always read-only; purely local ones
//! (file paths of the ACL, audit and credential stores, dev certificates,
//! the login throttle, the gateway) are not reported.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::{Entry, Synonym};
use super::{
    TYPE_BOOLEAN, TYPE_DOUBLE, TYPE_INT, TYPE_LIST, TYPE_LONG, TYPE_PASSWORD, TYPE_SHORT,
    TYPE_STRING, TYPE_UNKNOWN,
};
use crate::config::{Config, LogConfig};
use crate::dynamic_config::{is_dynamic, DynamicConfigError, Layers, Op};
use crate::edge::RequestContext;
use crate::server::limits::ConnectionTracker;
use crate::tls::ClientAuth;

/// Kafka's ConfigSource ids (DescribeConfigsResponse): 1 is TOPIC_CONFIG.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

type ValueFn = fn(&Config, &ConnectionTracker) -> Option<String>;

/// One broker setting: Kafka's name, the YAML key whose presence in the
/// file makes it STATIC_BROKER_CONFIG, its type, how to read it, whether it
/// is sensitive (its value is never sent, as in Kafka).
struct Key {
    name: &'static str,
    yaml: Option<&'static str>,
    config_type: i8,
    value: ValueFn,
    sensitive: bool,
    doc: &'static str,
}

fn listener_names(c: &Config) -> Vec<String> {
    c.listeners.iter().map(|l| l.display_name()).collect()
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>, sep: &str) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

macro_rules! key {
    ($name:expr, $yaml:expr, $ty:expr, $doc:expr, $f:expr) => {
        Key {
            name: $name,
            yaml: $yaml,
            config_type: $ty,
            value: $f,
            sensitive: false,
            doc: $doc,
        }
    };
}

const KEYS: &[Key] = &[
    key!("advertised.listeners", Some("listeners"), TYPE_LIST,
        "Listeners published to clients (Metadata, FindCoordinator).",
        |c, _| {
            Some(join(
                c.listeners.iter().map(|l| {
                    format!(
                        "{}://{}",
                        l.display_name(),
                        l.advertised_address.as_deref().unwrap_or(&l.address)
                    )
                }),
                ",",
            ))
        }),
    key!("auto.create.topics.enable", Some("log.auto_create_topics"), TYPE_BOOLEAN,
        "Enable auto creation of topics on the broker.",
        |c, _| Some(c.log.auto_create_topics.to_string())),
    key!("broker.id", Some("node_id"), TYPE_INT, "The broker's id (node.id).",
        |c, _| Some(c.node_id.to_string())),
    key!("compression.type", None, TYPE_STRING,
        "The broker-wide default for the topic config compression.type (not settable).",
        |_, _| Some("producer".into())),
    key!("connection.failed.authentication.delay.ms", Some("sasl.failed_authentication_delay_ms"),
        TYPE_INT, "Delay before closing a connection after a failed login.",
        |c, _| Some(c.sasl.failed_authentication_delay_ms.to_string())),
    key!("connections.max.idle.ms", Some("connections.connections_max_idle_ms"), TYPE_LONG,
        "Idle connections are closed after this many milliseconds (0: never).",
        |c, _| Some(c.connections.connections_max_idle_ms.to_string())),
    key!("connections.max.reauth.ms", Some("sasl.connections_max_reauth_ms"), TYPE_LONG,
        "KIP-368 session lifetime: clients re-authenticate before it ends (0: sessions never expire).",
        |c, _| Some(c.sasl.connections_max_reauth_ms.to_string())),
    key!("default.replication.factor", None, TYPE_INT,
        "Replication factor of automatically created topics (one broker: 1).",
        |_, _| Some("1".into())),
    key!("group.consumer.heartbeat.interval.ms", Some("groups.consumer_heartbeat_interval_ms"),
        TYPE_INT, "Default heartbeat interval of KIP-848 consumer groups.",
        |c, _| Some(c.groups.consumer_heartbeat_interval_ms.to_string())),
    key!("group.consumer.max.heartbeat.interval.ms", Some("groups.consumer_max_heartbeat_interval_ms"),
        TYPE_INT, "Largest heartbeat interval a consumer group config may set.",
        |c, _| Some(c.groups.consumer_max_heartbeat_interval_ms.to_string())),
    key!("group.consumer.max.session.timeout.ms", Some("groups.consumer_max_session_timeout_ms"),
        TYPE_INT, "Largest session timeout a consumer group config may set.",
        |c, _| Some(c.groups.consumer_max_session_timeout_ms.to_string())),
    key!("group.consumer.min.heartbeat.interval.ms", Some("groups.consumer_min_heartbeat_interval_ms"),
        TYPE_INT, "Smallest heartbeat interval a consumer group config may set.",
        |c, _| Some(c.groups.consumer_min_heartbeat_interval_ms.to_string())),
    key!("group.consumer.min.session.timeout.ms", Some("groups.consumer_min_session_timeout_ms"),
        TYPE_INT, "Smallest session timeout a consumer group config may set.",
        |c, _| Some(c.groups.consumer_min_session_timeout_ms.to_string())),
    key!("group.consumer.session.timeout.ms", Some("groups.consumer_session_timeout_ms"),
        TYPE_INT, "Default session timeout of KIP-848 consumer groups.",
        |c, _| Some(c.groups.consumer_session_timeout_ms.to_string())),
    key!("group.initial.rebalance.delay.ms", Some("groups.initial_rebalance_delay_ms"), TYPE_INT,
        "How long a new classic group waits for more members before its first rebalance.",
        |c, _| Some(c.groups.initial_rebalance_delay_ms.to_string())),
    key!("group.max.session.timeout.ms", Some("groups.max_session_timeout_ms"), TYPE_INT,
        "Largest session timeout a classic group member may ask for.",
        |c, _| Some(c.groups.max_session_timeout_ms.to_string())),
    key!("group.min.session.timeout.ms", Some("groups.min_session_timeout_ms"), TYPE_INT,
        "Smallest session timeout a classic group member may ask for.",
        |c, _| Some(c.groups.min_session_timeout_ms.to_string())),
    key!("listener.security.protocol.map", Some("listeners"), TYPE_STRING,
        "Listener name to security protocol.",
        |c, _| {
            Some(join(
                c.listeners
                    .iter()
                    .map(|l| format!("{}:{}", l.display_name(), l.security_protocol)),
                ",",
            ))
        }),
    key!("listeners", Some("listeners"), TYPE_LIST, "The addresses the broker listens on.",
        |c, _| {
            Some(join(
                c.listeners
                    .iter()
                    .zip(listener_names(c))
                    .map(|(l, n)| format!("{n}://{}", l.address)),
                ",",
            ))
        }),
    key!("log.cleaner.backoff.ms", Some("log.cleaner_backoff_ms"), TYPE_LONG,
        "How long the cleaner sleeps when no log needs cleaning.",
        |c, _| Some(c.log.cleaner_backoff_ms.to_string())),
    key!("log.cleaner.dedupe.buffer.size", Some("log.cleaner_dedupe_buffer_bytes"), TYPE_LONG,
        "Memory for the cleaner's key to offset map.",
        |c, _| Some(c.log.cleaner_dedupe_buffer_bytes.to_string())),
    key!("log.cleaner.delete.retention.ms", Some("log.cleaner_delete_retention_ms"), TYPE_LONG,
        "Default delete.retention.ms of topics.",
        |c, _| Some(c.log.cleaner_delete_retention_ms.to_string())),
    key!("log.cleaner.enable", Some("log.cleaner_enabled"), TYPE_BOOLEAN,
        "Whether the log cleaner runs.",
        |c, _| Some(c.log.cleaner_enabled.to_string())),
    key!("log.cleaner.io.max.bytes.per.second", Some("log.cleaner_io_max_bytes_per_second"),
        TYPE_DOUBLE, "Bytes per second the cleaner may read plus write (0: unlimited).",
        |c, _| Some(c.log.cleaner_io_max_bytes_per_second.to_string())),
    key!("log.cleaner.max.compaction.lag.ms", Some("log.cleaner_max_compaction_lag_ms"),
        TYPE_LONG, "Default max.compaction.lag.ms of topics.",
        |c, _| Some(c.log.cleaner_max_compaction_lag_ms.to_string())),
    key!("log.cleaner.min.cleanable.ratio", Some("log.cleaner_min_cleanable_ratio"), TYPE_DOUBLE,
        "Default min.cleanable.dirty.ratio of topics.",
        |c, _| Some(c.log.cleaner_min_cleanable_ratio.to_string())),
    key!("log.cleaner.min.compaction.lag.ms", Some("log.cleaner_min_compaction_lag_ms"),
        TYPE_LONG, "Default min.compaction.lag.ms of topics.",
        |c, _| Some(c.log.cleaner_min_compaction_lag_ms.to_string())),
    key!("log.cleanup.policy", None, TYPE_LIST,
        "Default cleanup policy of topics.",
        |_, _| Some("delete".into())),
    key!("log.dirs", Some("data_dir"), TYPE_LIST, "The data directory.",
        |c, _| Some(c.data_dir.display().to_string())),
    key!("log.index.interval.bytes", Some("log.index_interval_bytes"), TYPE_INT,
        "Bytes of log between two offset index entries.",
        |c, _| Some(c.log.index_interval_bytes.to_string())),
    key!("log.message.timestamp.type", None, TYPE_STRING,
        "Default message.timestamp.type of topics.",
        |_, _| Some("CreateTime".into())),
    key!("log.retention.bytes", Some("log.retention_bytes"), TYPE_LONG,
        "Default retention.bytes of topics (-1: no size limit).",
        |c, _| Some(c.log.retention_bytes.to_string())),
    key!("log.retention.check.interval.ms", Some("log.retention_check_interval_ms"), TYPE_LONG,
        "How often retention is enforced.",
        |c, _| Some(c.log.retention_check_interval_ms.to_string())),
    key!("log.retention.ms", Some("log.retention_ms"), TYPE_LONG,
        "Default retention.ms of topics (-1: forever).",
        |c, _| Some(c.log.retention_ms.to_string())),
    key!("log.roll.ms", Some("log.segment_ms"), TYPE_LONG,
        "Default segment.ms of topics.",
        |c, _| Some(c.log.segment_ms.to_string())),
    key!("log.segment.bytes", Some("log.segment_bytes"), TYPE_INT,
        "Default segment.bytes of topics.",
        |c, _| Some(c.log.segment_bytes.to_string())),
    key!("max.connections", Some("connections.max_connections"), TYPE_INT,
        "Connections open at once, all listeners together (derived from the open-file limit when unset).",
        |c, t| Some(t.derive_for(&c.connections).max_connections.to_string())),
    key!("max.connections.per.ip", Some("connections.max_connections_per_ip"), TYPE_INT,
        "Connections open at once from one address (half of max.connections when unset).",
        |c, t| Some(t.derive_for(&c.connections).max_connections_per_ip.to_string())),
    key!("max.connections.per.ip.overrides", Some("connections.max_connections_per_ip_overrides"),
        TYPE_STRING, "Per-address exceptions, ip:count,...",
        |c, _| {
            Some(join(
                c.connections
                    .max_connections_per_ip_overrides
                    .iter()
                    .map(|(ip, n)| format!("{ip}:{n}")),
                ",",
            ))
        }),
    key!("message.max.bytes", Some("log.max_message_bytes"), TYPE_INT,
        "Largest record batch accepted (default max.message.bytes of topics).",
        |c, _| Some(c.log.max_message_bytes.to_string())),
    key!("min.insync.replicas", None, TYPE_INT,
        "Default min.insync.replicas of topics (one broker: 1).",
        |_, _| Some("1".into())),
    key!("node.id", Some("node_id"), TYPE_INT, "The node id.",
        |c, _| Some(c.node_id.to_string())),
    key!("num.partitions", Some("log.default_partitions"), TYPE_INT,
        "Partitions of topics created without a count.",
        |c, _| Some(c.log.default_partitions.to_string())),
    key!("offsets.retention.minutes", Some("groups.offsets_retention_ms"), TYPE_INT,
        "Committed offsets of a group empty this long expire.",
        |c, _| Some((c.groups.offsets_retention_ms / 60_000).to_string())),
    key!("offsets.topic.replication.factor", None, TYPE_SHORT,
        "Replication factor of committed offsets (one broker: 1).",
        |_, _| Some("1".into())),
    key!("portcullis.connections.login.timeout.ms", Some("connections.login_timeout_ms"), TYPE_LONG,
        "TLS handshake plus SASL login must complete within this time.",
        |c, _| Some(c.connections.login_timeout_ms.to_string())),
    key!("portcullis.log.max.open.files", Some("log.max_open_files"), TYPE_INT,
        "Segment files kept open by the shared cache.",
        |c, _| Some(c.log.max_open_files.to_string())),
    key!("portcullis.log.max.partitions.per.topic", Some("log.max_partitions_per_topic"), TYPE_INT,
        "Most partitions one topic may have.",
        |c, _| Some(c.log.max_partitions_per_topic.to_string())),
    key!("sasl.enabled.mechanisms", Some("sasl.mechanisms"), TYPE_LIST,
        "SASL mechanisms offered, in order.",
        |c, _| Some(c.sasl.mechanisms.join(","))),
    key!("sasl.server.max.receive.size", Some("connections.max_unauthenticated_frame_bytes"),
        TYPE_INT, "Largest frame accepted before login.",
        |c, _| Some(c.connections.max_unauthenticated_frame_bytes.to_string())),
    key!("socket.request.max.bytes", Some("max_request_size"), TYPE_INT,
        "Largest request accepted.",
        |c, _| Some(c.max_request_size.to_string())),
    key!("ssl.client.auth", Some("tls.client_auth"), TYPE_STRING,
        "Whether clients must present a certificate.",
        |c, _| {
            c.tls.as_ref().map(|t| {
                match t.client_auth {
                    ClientAuth::None => "none",
                    ClientAuth::Requested => "requested",
                    ClientAuth::Required => "required",
                }
                .to_string()
            })
        }),
    key!("ssl.keystore.location", Some("tls.cert"), TYPE_STRING,
        "The server certificate chain (PEM).",
        |c, _| c.tls.as_ref().map(|t| t.cert.display().to_string())),
    Key {
        name: "ssl.keystore.key",
        yaml: Some("tls.key"),
        config_type: TYPE_PASSWORD,
        value: |c, _| c.tls.as_ref().map(|_| String::new()),
        sensitive: true,
        doc: "The server's private key (PEM); never shown.",
    },
    key!("ssl.keystore.type", Some("tls"), TYPE_STRING, "Keystore format.",
        |c, _| c.tls.as_ref().map(|_| "PEM".to_string())),
    key!("ssl.principal.mapping.rules", Some("tls.principal_mapping_rules"), TYPE_STRING,
        "Rules mapping a client certificate's subject to a principal.",
        |c, _| c.tls.as_ref().map(|t| t.principal_mapping_rules.join(","))),
    key!("ssl.truststore.location", Some("tls.client_ca"), TYPE_STRING,
        "CAs trusted for client certificates (PEM).",
        |c, _| {
            c.tls
                .as_ref()
                .and_then(|t| t.client_ca.as_ref())
                .map(|p| p.display().to_string())
        }),
    key!("ssl.truststore.type", Some("tls.client_ca"), TYPE_STRING, "Truststore format.",
        |c, _| {
            c.tls
                .as_ref()
                .and_then(|t| t.client_ca.as_ref())
                .map(|_| "PEM".to_string())
        }),
    // Kafka 4.4 reports super.users as sensitive (an authorizer setting
    // outside KafkaConfig: type UNKNOWN, value redacted); so do we.
    Key {
        name: "super.users",
        yaml: Some("super_users"),
        config_type: TYPE_UNKNOWN,
        value: |c, _| Some(c.super_users.join(";")),
        sensitive: true,
        doc: "Principals that bypass authorization, ;-separated; never shown.",
    },
    key!("transaction.max.timeout.ms", None, TYPE_INT,
        "Largest transaction timeout a producer may ask for.",
        |_, _| Some(crate::txn::coordinator::MAX_TIMEOUT_MS.to_string())),
];

/// The config with every setting this module reports at its built-in
/// default (what DEFAULT_CONFIG synonyms show).
fn defaults_of(c: &Config) -> Config {
    let mut d = c.clone();
    d.node_id = 0;
    d.log = LogConfig::default();
    d.connections = Default::default();
    d.groups = Default::default();
    d.sasl = Default::default();
    d.max_request_size = 100 * 1024 * 1024;
    d.super_users = vec!["User:admin".to_string()];
    // Kafka's TLS keys have no default value.
    d.tls = None;
    d.data_dir = "data".into();
    d
}

fn layer_value(
    layers: &Layers,
    per_broker: bool,
    name: &str,
    live: &Config,
    t: &ConnectionTracker,
    k: &Key,
) -> Option<Synonym> {
    layers.layer(per_broker).get(name).map(|_| Synonym {
        name: name.to_string(),
        // The parsed value, as the config holds it (normalised).
        value: (k.value)(live, t),
        source: if per_broker {
            SOURCE_DYNAMIC_BROKER
        } else {
            SOURCE_DYNAMIC_DEFAULT
        },
    })
}

/// Kafka's synonym chain of one key, strongest first.
fn synonyms(ctx: &RequestContext<'_>, layers: &Layers, k: &Key) -> Vec<Synonym> {
    let stat = &ctx.broker.config;
    let t = &ctx.broker.connections;
    let mut out = Vec::new();
    if is_dynamic(k.name) {
        // What each layer alone gives (the value shown is normalised).
        let only = |per_broker: bool| -> Option<Config> {
            let mut l = Layers::default();
            if per_broker {
                l.broker = layers.broker.clone();
            } else {
                l.cluster = layers.cluster.clone();
            }
            l.apply(stat).ok()
        };
        for per_broker in [true, false] {
            if let Some(c) = only(per_broker) {
                out.extend(layer_value(layers, per_broker, k.name, &c, t, k));
            }
        }
    }
    if k.yaml.is_some_and(|y| stat.is_explicit(y)) {
        out.push(Synonym {
            name: k.name.to_string(),
            value: (k.value)(stat, t),
            source: SOURCE_STATIC_BROKER,
        });
    }
    // Listeners are required: there is no built-in default to show.
    let has_default = k.yaml != Some("listeners");
    if let Some(v) = (k.value)(&defaults_of(stat), t).filter(|_| has_default) {
        out.push(Synonym {
            name: k.name.to_string(),
            value: Some(v),
            source: SOURCE_DEFAULT,
        });
    }
    out
}

/// Answers `DescribeConfigs` for the broker resource `name`: `""` lists the
/// cluster-wide dynamic defaults only, `"<node_id>"` every setting (as
/// Kafka does); another id is Kafka's INVALID_REQUEST.
pub(super) fn describe(ctx: &RequestContext<'_>, name: &str) -> Result<Vec<Entry>, (i16, String)> {
    let me = ctx.broker.config.node_id;
    let per_broker = !name.is_empty();
    if per_broker && name.parse::<i32>().ok() != Some(me) {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("Unexpected broker id, expected {me} or empty string, but received {name}"),
        ));
    }
    let layers = ctx.broker.dynamic.layers();
    let live = layers
        .apply(&ctx.broker.config)
        .unwrap_or_else(|_| ctx.broker.config.clone());
    let t = &ctx.broker.connections;
    Ok(KEYS
        .iter()
        .filter_map(|k| {
            let mut chain = synonyms(ctx, &layers, k);
            if !per_broker {
                chain.retain(|s| s.source == SOURCE_DYNAMIC_DEFAULT);
                if chain.is_empty() {
                    return None;
                }
            }
            let value = (k.value)(&live, t);
            if value.is_none() && chain.is_empty() {
                // Not configured and no default (e.g. TLS keys without TLS).
                return None;
            }
            if k.sensitive {
                for s in &mut chain {
                    s.value = None;
                }
            }
            Some(Entry {
                name: k.name.to_string(),
                value: if k.sensitive { None } else { value },
                source: chain.first().map_or(SOURCE_DEFAULT, |s| s.source),
                config_type: k.config_type,
                read_only: !is_dynamic(k.name),
                sensitive: k.sensitive,
                synonyms: Some(chain),
                doc: Some(k.doc),
            })
        })
        .collect())
}

/// The layer a BROKER resource name addresses: `""` the cluster-wide
/// default, this node's id its own; anything else is Kafka's refusal.
fn layer_of(ctx: &RequestContext<'_>, name: &str) -> Result<bool, (i16, String)> {
    if name.is_empty() {
        return Ok(false);
    }
    let me = ctx.broker.config.node_id;
    match name.parse::<i32>() {
        Err(_) => Err((
            ResponseError::InvalidRequest.code(),
            format!("Node id must be an integer, but it is: {name}"),
        )),
        Ok(id) if id != me => Err((
            ResponseError::InvalidRequest.code(),
            format!("Unexpected broker id, expected {me}, but received {name}"),
        )),
        Ok(_) => Ok(true),
    }
}

fn code_of(e: &DynamicConfigError) -> i16 {
    match e {
        DynamicConfigError::Write { .. } | DynamicConfigError::Load { .. } => {
            ResponseError::UnknownServerError.code()
        }
        // Kafka's broker wraps every validation failure of a broker config
        // change in InvalidRequestException (ConfigAdminManager).
        _ => ResponseError::InvalidRequest.code(),
    }
}

/// Applies a validated change: log defaults (every topic without an
/// override follows) and connection limits (new connections).
fn apply_live(ctx: &RequestContext<'_>, effective: &Config) {
    ctx.broker.logs.set_defaults(effective.log.clone());
    let l = ctx.broker.connections.reconfigure(&effective.connections);
    tracing::info!(
        retention_ms = effective.log.retention_ms,
        retention_bytes = effective.log.retention_bytes,
        segment_bytes = effective.log.segment_bytes,
        segment_ms = effective.log.segment_ms,
        max_message_bytes = effective.log.max_message_bytes,
        max_connections = l.max_connections,
        max_connections_per_ip = l.max_connections_per_ip,
        "dynamic broker configs applied"
    );
}

fn change(
    ctx: &RequestContext<'_>,
    name: &str,
    ops: &[Op<'_>],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let per_broker = layer_of(ctx, name)?;
    ctx.broker
        .dynamic
        .change(&ctx.broker.config, per_broker, ops, validate_only, |c| {
            apply_live(ctx, c)
        })
        .map_err(|e| {
            if matches!(e, DynamicConfigError::Write { .. }) {
                tracing::error!("dynamic broker config not saved: {e}");
            }
            (code_of(&e), e.to_string())
        })
}

/// Kafka's checks before any broker config change: each key once, a
/// value for everything but DELETE.
fn precheck<'a>(
    items: impl Iterator<Item = (&'a str, Option<&'a str>, i8)> + Clone,
) -> Result<(), (i16, String)> {
    let mut seen = std::collections::BTreeSet::new();
    if !items.clone().all(|(k, _, _)| seen.insert(k)) {
        return Err((
            ResponseError::InvalidRequest.code(),
            "Error due to duplicate config keys".into(),
        ));
    }
    let nulls: Vec<&str> = items
        .filter(|(_, v, op)| v.is_none() && *op != super::OP_DELETE)
        .map(|(k, _, _)| k)
        .collect();
    if !nulls.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("Null value not supported for : {}", nulls.join(", ")),
        ));
    }
    Ok(())
}

/// IncrementalAlterConfigs on a BROKER resource.
pub(super) fn incremental_alter(
    ctx: &RequestContext<'_>,
    name: &str,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    precheck(
        configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref(), c.config_operation)),
    )?;
    let mut ops = Vec::with_capacity(configs.len());
    for c in configs {
        let key = c.name.as_str();
        match (c.config_operation, c.value.as_deref()) {
            (super::OP_SET, Some(v)) => ops.push(Op::Set(key, v)),
            (super::OP_DELETE, _) => ops.push(Op::Delete(key)),
            // None of Kafka's broker configs Portcullis has is a list.
            (super::OP_APPEND | super::OP_SUBTRACT, _) => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("Config value append is not allowed for config key: {key}"),
                ))
            }
            (op, _) => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unknown operations type {op}"),
                ))
            }
        }
    }
    change(ctx, name, &ops, validate_only)
}

/// The legacy AlterConfigs on a BROKER resource: the layer becomes exactly
/// the configs sent.
pub(super) fn alter_legacy(
    ctx: &RequestContext<'_>,
    name: &str,
    configs: &[kafka_protocol::messages::alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    precheck(
        configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref(), super::OP_SET)),
    )?;
    let per_broker = layer_of(ctx, name)?;
    let current: BTreeMap<String, String> = ctx.broker.dynamic.layers().layer(per_broker).clone();
    let sent: Vec<(&str, &str)> = configs
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.value.as_deref()?)))
        .collect();
    let mut ops: Vec<Op<'_>> = current
        .keys()
        .filter(|k| !sent.iter().any(|(n, _)| n == k))
        .map(|k| Op::Delete(k.as_str()))
        .collect();
    ops.extend(sent.iter().map(|(k, v)| Op::Set(k, v)));
    change(ctx, name, &ops, validate_only)
}

/// The broker setting a topic config falls back to (Kafka's
/// `ServerTopicConfigSynonyms`), where Portcullis has one.
fn topic_synonym(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "max.message.bytes" => "message.max.bytes",
        "compression.type" => "compression.type",
        "min.insync.replicas" => "min.insync.replicas",
        "message.timestamp.type" => "log.message.timestamp.type",
        "cleanup.policy" => "log.cleanup.policy",
        _ => return None,
    })
}

/// A topic config's broker synonyms, strongest first (what Kafka lists
/// after the topic's own override; the first gives the source of a topic
/// config without override).
pub(super) fn topic_default_chain(ctx: &RequestContext<'_>, topic_key: &str) -> Vec<Synonym> {
    let Some(k) = topic_synonym(topic_key).and_then(|n| KEYS.iter().find(|k| k.name == n)) else {
        return Vec::new();
    };
    synonyms(ctx, &ctx.broker.dynamic.layers(), k)
}
