//! The `gateway:` config section: where the upstream cluster is and how
//! Portcullis reaches it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::SecurityProtocol;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Upstream bootstrap servers, `host:port`.
    pub bootstrap_servers: Vec<String>,
    /// How Portcullis reaches the upstream brokers.
    #[serde(default = "plaintext")]
    pub security_protocol: SecurityProtocol,
    /// For SSL and SASL_SSL upstreams.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// The service credential, for SASL_PLAINTEXT and SASL_SSL upstreams.
    #[serde(default)]
    pub sasl: Option<UpstreamSasl>,
    /// Fixed gateway port per upstream node id on the first listener's host.
    /// Nodes not listed (and further listeners) get a free port.
    #[serde(default)]
    pub broker_ports: BTreeMap<i32, u16>,
    /// Upper bound of connections to one upstream broker. A client
    /// connection holds one while it has requests unanswered on it (its
    /// requests are pipelined there, in order) and gives it back to the
    /// pool once all are answered, so this bounds the client connections
    /// busy with one broker at once; more wait for a connection up to
    /// `request_timeout_ms`.
    #[serde(default = "default_max_connections")]
    pub max_connections_per_broker: usize,
    /// Time one forwarded request may take upstream (long polls included).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
}

fn plaintext() -> SecurityProtocol {
    SecurityProtocol::Plaintext
}
fn default_max_connections() -> usize {
    1024
}
fn default_request_timeout() -> u64 {
    60_000
}
fn default_connect_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA bundle the upstream certificates must chain to.
    pub ca_file: PathBuf,
    /// Client certificate and key, when the upstream wants mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify the upstream certificates against, when it differs
    /// from the host in the broker address.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSasl {
    #[serde(default = "scram")]
    pub mechanism: String,
    pub username: String,
    /// The password inline, or (better) in `password_file`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn scram() -> String {
    crate::security::scram::MECHANISM.to_string()
}

// The password never reaches a log line.
impl fmt::Debug for UpstreamSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl GatewaySettings {
    /// Problems as (key, message), for the config validator.
    pub fn problems(&self) -> Option<(String, String)> {
        if self.bootstrap_servers.is_empty() {
            return Some((
                "gateway.bootstrap_servers".into(),
                "at least one upstream broker is required".into(),
            ));
        }
        for (i, s) in self.bootstrap_servers.iter().enumerate() {
            if let Err(m) = crate::config::parse_host_port(s) {
                return Some((format!("gateway.bootstrap_servers[{i}]"), m));
            }
        }
        let p = self.security_protocol;
        match (&self.sasl, p.uses_sasl()) {
            (None, true) => {
                return Some((
                    "gateway.sasl".into(),
                    format!("a {p} upstream needs the service credential (username, password)"),
                ))
            }
            (Some(s), true) => {
                if crate::security::scram::Mechanism::from_name(&s.mechanism).is_none() {
                    return Some((
                        "gateway.sasl.mechanism".into(),
                        format!(
                            "`{}` is not supported (SCRAM-SHA-512 or SCRAM-SHA-256)",
                            s.mechanism
                        ),
                    ));
                }
                if s.username.is_empty() {
                    return Some(("gateway.sasl.username".into(), "must not be empty".into()));
                }
                if s.password.is_some() == s.password_file.is_some() {
                    return Some((
                        "gateway.sasl".into(),
                        "set exactly one of `password` and `password_file`".into(),
                    ));
                }
            }
            (Some(_), false) => {
                return Some((
                    "gateway.sasl".into(),
                    format!("a {p} upstream does not use SASL; remove the section or use SASL_PLAINTEXT/SASL_SSL"),
                ))
            }
            (None, false) => {}
        }
        match (&self.tls, p.uses_tls()) {
            (None, true) => {
                return Some((
                    "gateway.tls".into(),
                    format!("a {p} upstream needs `tls.ca_file`"),
                ))
            }
            (Some(t), true) if t.cert_file.is_some() != t.key_file.is_some() => {
                return Some((
                    "gateway.tls".into(),
                    "`cert_file` and `key_file` go together".into(),
                ))
            }
            (Some(_), false) => {
                return Some((
                    "gateway.tls".into(),
                    format!(
                        "a {p} upstream does not use TLS; remove the section or use SSL/SASL_SSL"
                    ),
                ))
            }
            _ => {}
        }
        if self.max_connections_per_broker == 0 {
            return Some((
                "gateway.max_connections_per_broker".into(),
                "must be at least 1".into(),
            ));
        }
        if self.request_timeout_ms < 1000 {
            return Some((
                "gateway.request_timeout_ms".into(),
                "must be at least 1000".into(),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_password_never_shows_in_debug_output() {
        let s = UpstreamSasl {
            mechanism: scram(),
            username: "svc".into(),
            password: Some("hunter2-secret".into()),
            password_file: None,
        };
        let shown = format!("{s:?}");
        assert!(
            shown.contains("svc") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
