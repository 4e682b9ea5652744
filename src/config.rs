//! The broker's YAML configuration: defaults, command-line overrides and
//! validation. Unknown keys and bad values are errors that name the key (and,
//! for YAML problems, the line): a typo must never silently become a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The `log:` section; the log engine defines it (it imports nothing from
/// this file, which sits above every layer it configures).
pub use crate::log::LogConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Position and kind only: the file's bytes never appear.
    #[error("config file {path}: {error}")]
    Yaml {
        path: PathBuf,
        error: Box<crate::security::yaml_error::YamlError>,
    },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Kafka's listener security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        })
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(format!(
                "unknown security protocol `{other}` (expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and audit records; defaults to the protocol.
    #[serde(default)]
    pub name: Option<String>,
    pub security_protocol: SecurityProtocol,
    /// host:port to bind; port 0 picks a free port.
    pub address: String,
    /// host:port clients are told to use; defaults to the bound address.
    #[serde(default)]
    pub advertised_address: Option<String>,
}

impl ListenerConfig {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.security_protocol.to_string())
    }

    /// Parses Kafka's `PROTOCOL://host:port[,PROTOCOL://host:port]` syntax.
    pub fn parse_list(list: &str) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (proto, addr) = item.split_once("://").ok_or_else(|| {
                invalid("listeners", format!("`{item}` is not PROTOCOL://host:port"))
            })?;
            let security_protocol =
                SecurityProtocol::from_str(proto).map_err(|m| invalid("listeners", m))?;
            out.push(ListenerConfig {
                name: None,
                security_protocol,
                address: addr.to_string(),
                advertised_address: None,
            });
        }
        if out.is_empty() {
            return Err(invalid("listeners", "no listener given"));
        }
        Ok(out)
    }
}

/// Consumer group coordinator settings (Kafka's group.* and offsets.*).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: u64,
    /// Committed offsets of a group that has been empty this long expire.
    pub offsets_retention_ms: i64,
    /// KIP-848 consumer groups (Kafka's `group.consumer.*`): the session
    /// timeout and heartbeat interval a group gets unless its own group
    /// config (`consumer.session.timeout.ms`, ...) overrides them, and the
    /// bounds such an override must respect.
    pub consumer_session_timeout_ms: i32,
    pub consumer_min_session_timeout_ms: i32,
    pub consumer_max_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_min_heartbeat_interval_ms: i32,
    pub consumer_max_heartbeat_interval_ms: i32,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            // Kafka 4.x's defaults.
            consumer_session_timeout_ms: 45_000,
            consumer_min_session_timeout_ms: 45_000,
            consumer_max_session_timeout_ms: 60_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_min_heartbeat_interval_ms: 5_000,
            consumer_max_heartbeat_interval_ms: 15_000,
        }
    }
}

/// The operations listener (`/metrics`, `/healthz`, `/readyz`). On by
/// default on loopback only: metrics name topics, groups and users, so a
/// wider address is something the operator writes down on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub enabled: bool,
    /// `host:port`; port 0 picks a free port (printed at start).
    pub address: String,
    /// Serve HTTPS with the broker's server certificate (`tls:`).
    pub tls: bool,
    /// Ops connections open at once; more are closed at accept, so a
    /// hostile scraper cannot take the broker's descriptors.
    pub max_connections: usize,
    /// A request's head must arrive within this time, and a connection
    /// closes after being idle this long.
    pub request_timeout_ms: u64,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            enabled: true,
            address: "127.0.0.1:9644".into(),
            tls: false,
            max_connections: 64,
            request_timeout_ms: 5_000,
            max_header_bytes: 8 * 1024,
        }
    }
}

/// What one client may make the edge spend on connections (Kafka's
/// `max.connections*`, `connections.max.idle.ms`,
/// `sasl.server.max.receive.size`). Every bound is on by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Connections open at once, all listeners together. Unset: derived
    /// from the process's open-file limit at start (see `server::limits`).
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address. Unset: derived
    /// from `max_connections`.
    pub max_connections_per_ip: Option<usize>,
    /// Per-address exceptions, e.g. `{"10.0.0.7": 5000}`.
    pub max_connections_per_ip_overrides: std::collections::BTreeMap<std::net::IpAddr, usize>,
    /// A logged-in (or non-SASL) connection with no request for this long
    /// is closed; 0 disables.
    pub connections_max_idle_ms: u64,
    /// TLS handshake plus SASL login must complete within this time.
    pub login_timeout_ms: u64,
    /// Largest frame accepted before login; checked from the size prefix.
    pub max_unauthenticated_frame_bytes: usize,
    /// Partitions one incremental fetch session (KIP-227) may hold; a
    /// connection keeps one session. A full Fetch naming more is answered
    /// without a session; 0 turns sessions off.
    pub max_fetch_session_partitions: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_connections: None,
            max_connections_per_ip: None,
            max_connections_per_ip_overrides: Default::default(),
            connections_max_idle_ms: 600_000,
            login_timeout_ms: 10_000,
            // SCRAM and ApiVersions need a few hundred bytes; Kafka's 512 KB
            // is sized for GSSAPI/OAUTHBEARER tokens, which we do not speak.
            max_unauthenticated_frame_bytes: 16 * 1024,
            max_fetch_session_partitions: 2_000,
        }
    }
}

/// The ACL file: the source of truth for authorization, hot-reloaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclConfig {
    pub file: PathBuf,
    /// Start (and keep running) with no rules when the file is missing.
    /// Off: a missing file stops the start, and at runtime it is refused
    /// like any invalid version (the rules in force stay).
    pub allow_missing: bool,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            file: PathBuf::from("acl/acls.yaml"),
            allow_missing: false,
        }
    }
}

/// The policy file (naming, config bounds, producer and consumer rules),
/// hot-reloaded like the ACL file. Absent at the default path: no
/// policies; absent at a path set explicitly: an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub file: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            file: PathBuf::from("acl/policies.yaml"),
        }
    }
}

/// Where dev certificates live and whether `serve` may create them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertsConfig {
    pub dir: PathBuf,
    /// On first start with no certificates, make a dev CA and server cert.
    pub auto_generate: bool,
    /// Extra host names for the generated server certificate.
    pub hosts: Vec<String>,
}

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            dir: PathBuf::from("certs"),
            auto_generate: false,
            hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    /// Enabled mechanisms, in the order SaslHandshake offers them:
    /// SCRAM-SHA-512 and/or SCRAM-SHA-256 (both by default).
    pub mechanisms: Vec<String>,
    /// The credential store (SCRAM keys only, never passwords).
    pub credentials: PathBuf,
    /// KIP-368 session lifetime; 0 means sessions never expire.
    pub connections_max_reauth_ms: u64,
    /// When the store is empty on first start, create `admin` with a random
    /// password and print it once.
    pub bootstrap_admin: bool,
    /// Kafka's `connection.failed.authentication.delay.ms`: how long a
    /// refused client waits for the close (slows password guessing).
    pub failed_authentication_delay_ms: u64,
    /// Brute-force throttling and aggregated audit of failed logins.
    pub login_throttle: crate::security::throttle::LoginThrottleConfig,
}

impl SaslConfig {
    /// The enabled mechanisms (validated names), in the configured order.
    pub fn enabled(&self) -> Vec<crate::security::scram::Mechanism> {
        self.mechanisms
            .iter()
            .filter_map(|m| crate::security::scram::Mechanism::from_name(m))
            .collect()
    }
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanisms: crate::security::scram::DEFAULT_ENABLED
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            credentials: PathBuf::from("config/credentials.yaml"),
            connections_max_reauth_ms: 0,
            bootstrap_admin: true,
            failed_authentication_delay_ms: 100,
            login_throttle: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node_id: i32,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    #[serde(default = "default_max_request_size")]
    pub max_request_size: usize,
    #[serde(default)]
    pub log: LogConfig,
    /// Server certificate for SSL and SASL_SSL listeners.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsSettings>,
    #[serde(default)]
    pub certs: CertsConfig,
    #[serde(default)]
    pub sasl: SaslConfig,
    #[serde(default)]
    pub acl: AclConfig,
    /// Policies enforced at the edge (see `policy/`).
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    #[serde(default)]
    pub groups: GroupsConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Principals that bypass authorization, e.g. `User:admin`.
    #[serde(default = "default_super_users")]
    pub super_users: Vec<String>,
    /// Where requests go once the edge has let them through.
    #[serde(default)]
    pub backend: Backend,
    /// The upstream cluster, for `backend: gateway`.
    #[serde(default)]
    pub gateway: Option<crate::gateway::GatewaySettings>,
    /// Client quotas by entity (Kafka's model); AlterClientQuotas
    /// overrides them at runtime.
    #[serde(default)]
    pub quotas: Vec<crate::quota::EntityQuotas>,
    /// The operations HTTP listener: Prometheus metrics and health checks.
    #[serde(default)]
    pub ops: OpsConfig,
    /// The keys the file (or the command line) set, dotted
    /// (`log.retention_ms`): DescribeConfigs reports those as
    /// STATIC_BROKER_CONFIG and the rest as Kafka's DEFAULT_CONFIG.
    #[serde(skip)]
    pub explicit: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The log engine on local disk.
    #[default]
    Embedded,
    /// An existing Kafka-compatible cluster behind the edge.
    Gateway,
}

fn default_super_users() -> Vec<String> {
    vec!["User:admin".to_string()]
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_max_request_size() -> usize {
    100 * 1024 * 1024
}

/// Command-line overrides applied on top of the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listeners: Option<String>,
}

impl Config {
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Yaml { error, .. } => ConfigError::Yaml {
                path: path.to_path_buf(),
                error,
            },
            other => other,
        })?;
        cfg.apply(overrides)?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
            path: PathBuf::new(),
            error: Box::new(crate::security::yaml_error::YamlError::from_serde(&e)),
        })?;
        let mut cfg = cfg;
        if let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            collect_keys(&value, "", &mut cfg.explicit);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether the file or command line set `key` (dotted, as in YAML).
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }

    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(d) = &o.data_dir {
            self.data_dir = d.clone();
            self.explicit.insert("data_dir".into());
        }
        if let Some(l) = &o.listeners {
            self.listeners = ListenerConfig::parse_list(l)?;
            self.explicit.insert("listeners".into());
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(invalid("listeners", "at least one listener is required"));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let key = format!("listeners[{i}].address");
            parse_host_port(&l.address).map_err(|m| invalid(&key, m))?;
            if let Some(a) = &l.advertised_address {
                parse_host_port(a)
                    .map_err(|m| invalid(&format!("listeners[{i}].advertised_address"), m))?;
            }
            if l.security_protocol.uses_tls() && self.tls.is_none() {
                return Err(invalid(
                    "tls",
                    format!(
                        "listener {} uses {} but no `tls` section (cert, key) is configured",
                        l.display_name(),
                        l.security_protocol
                    ),
                ));
            }
        }
        if self.max_request_size < 1024 || self.max_request_size > (1 << 30) {
            return Err(invalid(
                "max_request_size",
                "must be between 1024 and 1073741824 bytes",
            ));
        }
        if self.ops.enabled {
            parse_host_port(&self.ops.address).map_err(|m| invalid("ops.address", m))?;
            if self.ops.tls && self.tls.is_none() {
                return Err(invalid(
                    "ops.tls",
                    "needs the `tls` section (the broker's server certificate)",
                ));
            }
            if self.ops.max_connections == 0 {
                return Err(invalid("ops.max_connections", "must be at least 1"));
            }
            if self.ops.request_timeout_ms < 100 {
                return Err(invalid("ops.request_timeout_ms", "must be at least 100"));
            }
            if self.ops.max_header_bytes < 1024 {
                return Err(invalid("ops.max_header_bytes", "must be at least 1024"));
            }
        }
        let c = &self.connections;
        if c.max_connections == Some(0) {
            return Err(invalid("connections.max_connections", "must be at least 1"));
        }
        if c.max_connections_per_ip == Some(0) {
            return Err(invalid(
                "connections.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if !(1000..=3_600_000).contains(&c.login_timeout_ms) {
            return Err(invalid(
                "connections.login_timeout_ms",
                "must be between 1000 and 3600000",
            ));
        }
        if c.connections_max_idle_ms != 0 && c.connections_max_idle_ms < 1000 {
            return Err(invalid(
                "connections.connections_max_idle_ms",
                "must be 0 (never) or at least 1000",
            ));
        }
        if !(1024..=self.max_request_size).contains(&c.max_unauthenticated_frame_bytes) {
            return Err(invalid(
                "connections.max_unauthenticated_frame_bytes",
                "must be between 1024 and max_request_size",
            ));
        }
        for (i, m) in self.sasl.mechanisms.iter().enumerate() {
            if crate::security::scram::Mechanism::from_name(m).is_none() {
                return Err(invalid(
                    "sasl.mechanisms",
                    format!(
                        "`{m}` is not supported (Portcullis implements SCRAM-SHA-512 and \
                         SCRAM-SHA-256)"
                    ),
                ));
            }
            if self.sasl.mechanisms[..i].contains(m) {
                return Err(invalid("sasl.mechanisms", format!("`{m}` is listed twice")));
            }
        }
        let sasl_used = self
            .listeners
            .iter()
            .any(|l| l.security_protocol.uses_sasl());
        if sasl_used && self.sasl.mechanisms.is_empty() {
            return Err(invalid(
                "sasl.mechanisms",
                "SASL listeners need a mechanism",
            ));
        }
        if self.sasl.connections_max_reauth_ms > 0 && self.sasl.connections_max_reauth_ms < 1000 {
            return Err(invalid(
                "sasl.connections_max_reauth_ms",
                "must be 0 (no expiry) or at least 1000",
            ));
        }
        if let Some((key, message)) = self.sasl.login_throttle.problems() {
            return Err(invalid(key, message));
        }
        for (i, su) in self.super_users.iter().enumerate() {
            if su
                .split_once(':')
                .is_none_or(|(t, n)| t != "User" || n.is_empty())
            {
                return Err(invalid(
                    &format!("super_users[{i}]"),
                    format!("`{su}` is not a principal like User:alice"),
                ));
            }
        }
        if self.node_id < 0 {
            return Err(invalid("node_id", "must not be negative"));
        }
        match (self.backend, &self.gateway) {
            (Backend::Gateway, None) => {
                return Err(invalid(
                    "gateway",
                    "`backend: gateway` needs a `gateway` section (bootstrap_servers, ...)",
                ))
            }
            (Backend::Gateway, Some(g)) => {
                if let Some((key, message)) = g.problems() {
                    return Err(invalid(&key, message));
                }
                if self.audit.topic.is_some() {
                    return Err(invalid(
                        "audit.topic",
                        "the audit topic lives in the embedded log; in gateway mode use the audit file",
                    ));
                }
            }
            (Backend::Embedded, Some(_)) => {
                return Err(invalid(
                    "gateway",
                    "a `gateway` section is only used with `backend: gateway`",
                ))
            }
            (Backend::Embedded, None) => {}
        }
        let share = self.audit.source_alarm_share;
        if share.is_nan() || share <= 0.0 {
            return Err(invalid(
                "audit.source_alarm_share",
                "must be above 0 (1 or more turns the alarm off)",
            ));
        }
        let g = &self.groups;
        let bounded = |key: &str, v: i32, min: i32, max: i32| {
            if v < 1 || v < min || v > max {
                Err(invalid(
                    key,
                    format!("{v} is outside its bounds {min}..={max} (and must be positive)"),
                ))
            } else {
                Ok(())
            }
        };
        bounded(
            "groups.consumer_session_timeout_ms",
            g.consumer_session_timeout_ms,
            g.consumer_min_session_timeout_ms,
            g.consumer_max_session_timeout_ms,
        )?;
        bounded(
            "groups.consumer_heartbeat_interval_ms",
            g.consumer_heartbeat_interval_ms,
            g.consumer_min_heartbeat_interval_ms,
            g.consumer_max_heartbeat_interval_ms,
        )?;
        if g.consumer_heartbeat_interval_ms >= g.consumer_session_timeout_ms {
            return Err(invalid(
                "groups.consumer_heartbeat_interval_ms",
                "must be below groups.consumer_session_timeout_ms",
            ));
        }
        let l = &self.log;
        if l.segment_bytes < 1024 {
            return Err(invalid("log.segment_bytes", "must be at least 1024"));
        }
        if l.segment_ms < 1 {
            return Err(invalid("log.segment_ms", "must be positive"));
        }
        if l.retention_ms < -1 || l.retention_ms == 0 {
            return Err(invalid("log.retention_ms", "must be positive or -1"));
        }
        if l.retention_bytes < -1 {
            return Err(invalid("log.retention_bytes", "must be >= 0 or -1"));
        }
        if l.retention_check_interval_ms == 0 {
            return Err(invalid(
                "log.retention_check_interval_ms",
                "must be positive",
            ));
        }
        if l.default_partitions < 1 {
            return Err(invalid("log.default_partitions", "must be at least 1"));
        }
        if l.max_message_bytes < 1024 {
            return Err(invalid("log.max_message_bytes", "must be at least 1024"));
        }
        if l.index_interval_bytes == 0 {
            return Err(invalid("log.index_interval_bytes", "must be positive"));
        }
        if l.max_open_files < crate::log::files::MIN_OPEN_FILES {
            return Err(invalid("log.max_open_files", "must be at least 8"));
        }
        if !(1..=100_000).contains(&l.max_partitions_per_topic) {
            return Err(invalid(
                "log.max_partitions_per_topic",
                "must be between 1 and 100000",
            ));
        }
        if l.cleaner_backoff_ms == 0 {
            return Err(invalid("log.cleaner_backoff_ms", "must be positive"));
        }
        if l.cleaner_dedupe_buffer_bytes < 1024 {
            return Err(invalid(
                "log.cleaner_dedupe_buffer_bytes",
                "must be at least 1024",
            ));
        }
        if !(0.0..=1.0).contains(&l.cleaner_min_cleanable_ratio) {
            return Err(invalid(
                "log.cleaner_min_cleanable_ratio",
                "must be between 0 and 1",
            ));
        }
        for (key, v) in [
            (
                "log.cleaner_delete_retention_ms",
                l.cleaner_delete_retention_ms,
            ),
            (
                "log.cleaner_min_compaction_lag_ms",
                l.cleaner_min_compaction_lag_ms,
            ),
        ] {
            if v < 0 {
                return Err(invalid(key, "must be >= 0"));
            }
        }
        if l.cleaner_max_compaction_lag_ms < 1 {
            return Err(invalid(
                "log.cleaner_max_compaction_lag_ms",
                "must be positive",
            ));
        }
        if l.default_partitions > l.max_partitions_per_topic {
            return Err(invalid(
                "log.default_partitions",
                "must not exceed log.max_partitions_per_topic",
            ));
        }
        Ok(())
    }
}

/// Records every mapping key path under `prefix` (sections and leaves:
/// `log`, `log.retention_ms`); lists are leaves.
fn collect_keys(
    v: &serde_yaml_ng::Value,
    prefix: &str,
    out: &mut std::collections::BTreeSet<String>,
) {
    if let serde_yaml_ng::Value::Mapping(m) = v {
        for (k, child) in m {
            let Some(k) = k.as_str() else { continue };
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            collect_keys(child, &path, out);
            out.insert(path);
        }
    }
}

/// Splits `host:port` (IPv6 as `[::1]:9092`) without resolving the host.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{s}` is not a port number"))?;
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nlog:\n  retention_msx: 5\n";
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(
            err.contains("unknown key") && err.contains("`retention_ms`"),
            "{err}"
        );
        assert!(
            err.contains("line 5") && err.contains("`log.retention_msx`"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_is_named() {
        let text = "listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nlog:\n  retention_ms: -7\n";
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(err.contains("log.retention_ms"), "{err}");
        let text = "listeners:\n  - security_protocol: PLAINTEXTY\n    address: 127.0.0.1:0\n";
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(
            err.contains("unknown value") && err.contains("`SASL_SSL`") && err.contains("line 2"),
            "{err}"
        );
        assert!(!err.contains("PLAINTEXTY"), "{err}");
    }

    #[test]
    fn gateway_section_is_checked() {
        let base = "listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\n";
        let err = |extra: &str| {
            Config::parse(&format!("{base}{extra}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("backend: gateway\n").contains("`gateway` section"));
        assert!(err("backend: gatway\n").contains("unknown value"));
        let ok = "backend: gateway\ngateway:\n  bootstrap_servers: [\"k1:9092\"]\n";
        let cfg = Config::parse(&format!("{base}{ok}")).unwrap();
        assert_eq!(cfg.backend, Backend::Gateway);
        assert!(err("backend: gateway\ngateway:\n  bootstrap_servers: []\n")
            .contains("gateway.bootstrap_servers"));
        assert!(
            err("backend: gateway\ngateway:\n  bootstrap_servers: [\"k1\"]\n")
                .contains("gateway.bootstrap_servers[0]")
        );
        let sasl = "backend: gateway\ngateway:\n  bootstrap_servers: [\"k1:9092\"]\n  security_protocol: SASL_PLAINTEXT\n";
        assert!(err(sasl).contains("service credential"));
        assert!(err(&format!("{sasl}  sasl: {{username: svc}}\n")).contains("password"));
        assert!(Config::parse(&format!(
            "{base}{sasl}  sasl: {{username: svc, password: pw}}\n"
        ))
        .is_ok());
        let ssl = "backend: gateway\ngateway:\n  bootstrap_servers: [\"k1:9092\"]\n  security_protocol: SSL\n";
        assert!(err(ssl).contains("ca_file"));
        assert!(err(&format!(
            "{ssl}  tls: {{ca_file: ca.pem, cert_file: c.pem}}\n"
        ))
        .contains("key_file"));
        let e = err(&format!("{ok}  passwrd: x\n"));
        assert!(
            e.contains("unknown key") && e.contains("`gateway.passwrd`"),
            "{e}"
        );
        assert!(err("gateway:\n  bootstrap_servers: [\"k1:9092\"]\n").contains("backend: gateway"));
        assert!(err(&format!("{ok}audit:\n  topic: __audit\n")).contains("audit.topic"));
    }

    #[test]
    fn listener_list_syntax() {
        let l =
            ListenerConfig::parse_list("PLAINTEXT://127.0.0.1:0, PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            parse_host_port(&l[1].address).unwrap(),
            ("::1".into(), 9092)
        );
        assert!(ListenerConfig::parse_list("127.0.0.1:9092").is_err());
        assert!(ListenerConfig::parse_list("FOO://127.0.0.1:9092").is_err());
    }

    #[test]
    fn committed_default_config_is_valid() {
        let text = include_str!("../config/portcullis.yaml");
        let cfg = Config::parse(text).unwrap();
        // The documented sasl.mechanisms are the defaults.
        assert_eq!(cfg.sasl.mechanisms, SaslConfig::default().mechanisms);
    }

    #[test]
    fn sasl_mechanisms_are_checked() {
        use crate::security::scram::Mechanism;
        let base = "listeners:\n  - security_protocol: SASL_PLAINTEXT\n    address: 127.0.0.1:0\n";
        let parse = |m: &str| Config::parse(&format!("{base}sasl:\n  mechanisms: {m}\n"));
        let err = |m: &str| parse(m).err().map(|e| e.to_string()).unwrap_or_default();
        let cfg = Config::parse(base).unwrap();
        assert_eq!(
            cfg.sasl.enabled(),
            [Mechanism::ScramSha512, Mechanism::ScramSha256],
            "both by default, SCRAM-SHA-512 first"
        );
        let cfg = parse("[SCRAM-SHA-256]").unwrap();
        assert_eq!(cfg.sasl.enabled(), [Mechanism::ScramSha256]);
        assert!(err("[SCRAM-SHA-1]").contains("sasl.mechanisms"));
        assert!(err("[scram-sha-256]").contains("not supported"));
        assert!(err("[SCRAM-SHA-512, SCRAM-SHA-512]").contains("twice"));
        assert!(err("[]").contains("need a mechanism"));
    }
}
