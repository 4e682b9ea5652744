//! Audit records: one JSON object per line, schema version [`SCHEMA_VERSION`].
//! Every field but `v`, `time` and `event` is optional and omitted when it
//! does not apply. The schema is documented in `docs/AUDIT.md`.

use serde::{Deserialize, Serialize};

use crate::util::time::now_rfc3339;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BrokerStart,
    BrokerStop,
    ConnectionAccepted,
    ConnectionClosed,
    /// Connections refused at the connection limits (counts per period).
    ConnectionRefused,
    Authentication,
    Authorization,
    AclReload,
    CredentialChange,
    AdminAction,
    /// Records lost while the queue was full in `drop` mode (a count).
    AuditDropped,
    /// A hot-reloaded file other than the ACL file (credential store, TLS):
    /// a version put in force, a failed attempt (retried), back in sync.
    FileReload,
    /// The first record of a hash chain; `reason` says why no earlier
    /// chain was continued.
    AuditChainStart,
    /// One source wrote more than `audit.source_alarm_share` of the
    /// current audit file.
    AuditVolumeAlarm,
    /// A request violated a policy rule: refused (`decision: blocked`) or
    /// let through by an audit-only rule (`decision: audited`).
    PolicyViolation,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BrokerStart => "broker_start",
            EventKind::BrokerStop => "broker_stop",
            EventKind::ConnectionAccepted => "connection_accepted",
            EventKind::ConnectionClosed => "connection_closed",
            EventKind::ConnectionRefused => "connection_refused",
            EventKind::Authentication => "authentication",
            EventKind::Authorization => "authorization",
            EventKind::AclReload => "acl_reload",
            EventKind::CredentialChange => "credential_change",
            EventKind::AdminAction => "admin_action",
            EventKind::AuditDropped => "audit_dropped",
            EventKind::FileReload => "file_reload",
            EventKind::AuditChainStart => "audit_chain_start",
            EventKind::AuditVolumeAlarm => "audit_volume_alarm",
            EventKind::PolicyViolation => "policy_violation",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Schema version.
    pub v: u32,
    /// Place in the order the writer wrote the records (set by the writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 of the previous record's line (set by the writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<super::chain::ChainHash>,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub event: Option<EventKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `allow` or `deny` (authorization); `success` or `failure` (authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The rule that decided, `super user`, or `default deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The Kafka error code the client got for this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i16>,
    /// Coalesced authorization record: how many decisions it stands for
    /// (records without it stand for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Coalesced authorization record: a few of the names it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Vec<String>>,
    /// Coalesced authorization record: every error code the client got for
    /// the names it stands for, ascending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_codes: Option<Vec<i16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The user name a login attempt claimed (authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Why (log-only detail: never sent to the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_subject: Option<String>,
    /// What an admin action did (e.g. `create_topic`, `delete_acl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Free-form detail: rule counts, errors, changed users, drop counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl AuditEvent {
    pub fn new(kind: EventKind) -> AuditEvent {
        AuditEvent {
            v: SCHEMA_VERSION,
            time: now_rfc3339(),
            event: Some(kind),
            ..Default::default()
        }
    }

    pub fn peer(mut self, peer: std::net::SocketAddr, listener: &str) -> Self {
        self.client_address = Some(peer.ip().to_string());
        self.client_port = Some(peer.port());
        self.listener = Some(listener.to_string());
        self
    }

    pub fn is_denial(&self) -> bool {
        matches!(self.decision.as_deref(), Some("deny") | Some("failure"))
    }
}
