//! The broker's shared state: what every connection and back end works
//! with (the log engine, coordinators, credentials, ACLs, audit, limits).
//! Built by `start`.

use std::sync::Arc;

use crate::acl::AclStore;
use crate::audit::Auditor;
use crate::config::Config;
use crate::log::{LogError, LogManager, Topic};
use crate::security::credentials::CredentialStore;
use crate::tls::TlsAcceptorHandle;

/// Shared state every connection sees.
pub struct Broker {
    /// The static config (portcullis.yaml and the command line); dynamic
    /// broker configs are in `dynamic`, already applied to `logs` and
    /// `connections`.
    pub config: Config,
    /// Dynamic broker configs (IncrementalAlterConfigs on BROKER).
    pub dynamic: crate::dynamic_config::DynamicConfigs,
    /// Per-group configs (IncrementalAlterConfigs on GROUP); the group
    /// coordinator reads a group's session timeout and heartbeat interval
    /// here.
    pub group_configs: Arc<crate::group_config::GroupConfigs>,
    pub logs: Arc<LogManager>,
    /// SCRAM credentials; present whenever a SASL listener is configured.
    pub credentials: Option<Arc<CredentialStore>>,
    /// Server TLS config; present whenever an SSL or SASL_SSL listener is.
    pub tls: Option<Arc<TlsAcceptorHandle>>,
    /// The rules in force, from the ACL file.
    pub acls: Arc<AclStore>,
    pub auditor: Arc<Auditor>,
    pub groups: Arc<crate::group::Coordinator>,
    pub offsets: Arc<crate::group::OffsetStore>,
    pub producer_ids: crate::txn::producer_ids::ProducerIds,
    pub txns: Arc<crate::txn::coordinator::TxnCoordinator>,
    /// Set once at shutdown: open connections finish their current
    /// request and close, so nothing is served after the audit log closes.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Connections being served right now.
    pub active_connections: std::sync::atomic::AtomicUsize,
    /// Admission under `connections.max_connections*`.
    pub connections: Arc<crate::server::limits::ConnectionTracker>,
    /// Brute-force brake and aggregated audit of failed logins.
    pub login_throttle: crate::security::throttle::LoginThrottle,
    pub login_failures: Arc<crate::audit::login_failures::LoginFailures>,
    /// The policy rules in force (the hot-reloaded policy file).
    pub policies: Arc<crate::policy::PolicyStore>,
    /// Repeated policy violations, audited as one record per window.
    pub policy_violations: Arc<crate::audit::policy_violations::PolicyViolations>,
    /// Client quotas (the config file's, overlaid by AlterClientQuotas).
    pub quotas: Arc<crate::quota::Quotas>,
    /// What `/metrics` exports; the request path moves its counters.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Broker {
    /// Creates `name` with the default partition count (auto-creation).
    /// Returns the topic if it exists afterwards.
    pub fn auto_create(&self, name: &str) -> Option<Arc<Topic>> {
        let parts = self.logs.defaults().default_partitions;
        match self
            .logs
            .create_topic(name, parts, Default::default(), false)
        {
            Ok(t) => {
                tracing::info!(topic = name, partitions = parts, "topic auto-created");
                t
            }
            Err(LogError::TopicExists(_)) => self.logs.topic(name),
            Err(e) => {
                tracing::debug!(topic = name, "auto-create refused: {e}");
                None
            }
        }
    }
}

/// 24 characters from a 62-symbol alphabet: about 143 bits.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
