//! How the gateway connects to an upstream broker: TCP or TLS, SASL login
//! with the service credential (both from [`crate::client`]); the
//! connection then becomes a [`Pipe`] that forwards client frames.

use std::time::Duration;

use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::pipe::Pipe;
use super::settings::GatewaySettings;
use crate::client::{ClientError, Connector, ScramClientError};

pub(super) const CLIENT_ID: &str = "portcullis-gateway";

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS to {addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Settings(String),
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream timed out after {0:?}")]
    Timeout(Duration),
    #[error("upstream response of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("upstream answered correlation id {got}, expected {want}")]
    Correlation { want: i32, got: i32 },
    #[error("upstream protocol: {0}")]
    Protocol(String),
    #[error("upstream SASL login as {user} failed: {reason}")]
    Login { user: String, reason: String },
    #[error("upstream SCRAM: {0}")]
    Scram(#[from] ScramClientError),
    #[error("no upstream broker reachable")]
    NoBroker,
    #[error("not reconnecting yet after: {0}")]
    BackingOff(String),
}

impl UpstreamError {
    /// The request never left the gateway: no connection to the broker
    /// could be had (refused, unreachable, TLS or login failed, or new
    /// connections are held back after such a failure). Sending it to
    /// another broker cannot make the first one act on it twice.
    pub fn before_sending(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::Login { .. }
                | UpstreamError::Scram(_)
                | UpstreamError::NoBroker
                | UpstreamError::BackingOff(_)
        )
    }
}

/// How every upstream connection is made.
pub struct Link {
    settings: GatewaySettings,
    connector: Connector,
    password: Option<String>,
}

impl Link {
    pub fn new(settings: &GatewaySettings) -> Result<Link, UpstreamError> {
        let connector = match &settings.tls {
            Some(t) if settings.security_protocol.uses_tls() => {
                let client_auth = t.cert_file.as_deref().zip(t.key_file.as_deref());
                let tls = crate::client::tls_connector(&t.ca_file, client_auth)
                    .map_err(|e| UpstreamError::Settings(format!("gateway.tls: {e}")))?;
                Connector::tls(tls).with_server_name(t.server_name.clone())
            }
            _ => Connector::plaintext(),
        }
        .with_client_id(CLIENT_ID);
        let password = match &settings.sasl {
            Some(s) => Some(match (&s.password, &s.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| {
                        UpstreamError::Settings(format!(
                            "cannot read gateway.sasl.password_file {}: {e}",
                            f.display()
                        ))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => String::new(),
            }),
            None => None,
        };
        Ok(Link {
            settings: settings.clone(),
            connector,
            password,
        })
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    /// Connects, terminates TLS, logs in; returns the connection and the
    /// upstream's API version ranges.
    pub async fn connect(&self, addr: &str) -> Result<(Pipe, Vec<ApiVersion>), UpstreamError> {
        let limit = Duration::from_millis(self.settings.connect_timeout_ms);
        match tokio::time::timeout(limit, self.connect_inner(addr)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            }),
        }
    }

    async fn connect_inner(&self, addr: &str) -> Result<(Pipe, Vec<ApiVersion>), UpstreamError> {
        let mut conn = self.connector.connect(addr).await?;
        let versions = conn.api_versions().await?;
        if let (Some(sasl), Some(password)) = (&self.settings.sasl, &self.password) {
            // Validated with the config; SCRAM-SHA-512 is the default.
            let mechanism = crate::security::scram::Mechanism::from_name(&sasl.mechanism)
                .unwrap_or(crate::security::scram::DEFAULT_MECHANISM);
            conn.login_scram_with(mechanism, &sasl.username, password, None)
                .await?;
        }
        Ok((Pipe::new(conn), versions))
    }
}

/// The client module's errors under the gateway's names: operators and
/// the pool's staleness test (`UpstreamError::Io`) see what they saw.
impl From<ClientError> for UpstreamError {
    fn from(e: ClientError) -> UpstreamError {
        match e {
            ClientError::Connect { addr, error } => UpstreamError::Connect {
                addr,
                source: error,
            },
            ClientError::Tls { addr, error } => UpstreamError::Tls {
                addr,
                source: error,
            },
            ClientError::Config(m) => UpstreamError::Settings(m),
            ClientError::Io(e) => UpstreamError::Io(e),
            ClientError::Timeout(d) => UpstreamError::Timeout(d),
            ClientError::TooLarge(n) => UpstreamError::TooLarge(n),
            ClientError::Correlation { want, got } => UpstreamError::Correlation { want, got },
            ClientError::Protocol(m) => UpstreamError::Protocol(m),
            ClientError::Login { user, reason } => UpstreamError::Login { user, reason },
            ClientError::Scram(e) => UpstreamError::Scram(e),
        }
    }
}
