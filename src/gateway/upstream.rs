//! One authenticated connection to an upstream broker: TCP or TLS, SASL
//! login with the service credential, then request/response round trips
//! with the gateway's own correlation ids.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::scram_client::{ScramClient, ScramClientError};
use super::settings::GatewaySettings;

/// Upper bound on one upstream response (a Fetch can carry many MiB).
const MAX_RESPONSE: usize = 512 * 1024 * 1024;
const CLIENT_ID: &str = "portcullis-gateway";

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
    tls: Option<tokio_rustls::TlsConnector>,
    password: Option<String>,
}

impl Link {
    pub fn new(settings: &GatewaySettings) -> Result<Link, UpstreamError> {
        let tls = match &settings.tls {
            Some(t) if settings.security_protocol.uses_tls() => Some(connector(t)?),
            _ => None,
        };
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
            tls,
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
    pub async fn connect(
        &self,
        addr: &str,
    ) -> Result<(UpstreamConn, Vec<ApiVersion>), UpstreamError> {
        let limit = Duration::from_millis(self.settings.connect_timeout_ms);
        match tokio::time::timeout(limit, self.connect_inner(addr)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            }),
        }
    }

    async fn connect_inner(
        &self,
        addr: &str,
    ) -> Result<(UpstreamConn, Vec<ApiVersion>), UpstreamError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(c) => {
                let host = match self
                    .settings
                    .tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                {
                    Some(n) => n,
                    None => crate::config::parse_host_port(addr)
                        .map(|(h, _)| h)
                        .unwrap_or_default(),
                };
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| UpstreamError::Settings(format!("server name {host}: {e}")))?;
                let tls = c
                    .connect(name, tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls {
                        addr: addr.to_string(),
                        source,
                    })?;
                Stream::Tls(Box::new(tls))
            }
        };
        let mut conn = UpstreamConn {
            stream,
            next_corr: 1,
        };
        let versions: ApiVersionsResponse = conn
            .call(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("portcullis"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
            )
            .await?;
        if versions.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "ApiVersions error {}",
                versions.error_code
            )));
        }
        if let (Some(sasl), Some(password)) = (&self.settings.sasl, &self.password) {
            conn.login(&sasl.username, password).await?;
        }
        Ok((conn, versions.api_keys))
    }
}

fn connector(
    t: &super::settings::UpstreamTls,
) -> Result<tokio_rustls::TlsConnector, UpstreamError> {
    let bad = |m: String| UpstreamError::Settings(format!("gateway.tls: {m}"));
    let pem = std::fs::read(&t.ca_file)
        .map_err(|e| bad(format!("cannot read ca_file {}: {e}", t.ca_file.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.map_err(|e| bad(format!("{}: {e}", t.ca_file.display())))?;
        roots
            .add(c)
            .map_err(|e| bad(format!("{}: {e}", t.ca_file.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{}: no certificate", t.ca_file.display())));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let cpem = std::fs::read(cert)
                .map_err(|e| bad(format!("cannot read {}: {e}", cert.display())))?;
            let chain = rustls_pemfile::certs(&mut cpem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("{}: {e}", cert.display())))?;
            let kpem = std::fs::read(key)
                .map_err(|e| bad(format!("cannot read {}: {e}", key.display())))?;
            let key = rustls_pemfile::private_key(&mut kpem.as_slice())
                .map_err(|e| bad(format!("{}: {e}", key.display())))?
                .ok_or_else(|| bad(format!("{}: no private key", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub struct UpstreamConn {
    stream: Stream,
    next_corr: i32,
}

impl UpstreamConn {
    fn take_corr(&mut self) -> i32 {
        let c = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1).max(1);
        c
    }

    /// Sends one request frame (header + body, no size prefix) under a
    /// correlation id of this connection and returns the response frame
    /// (size prefix, header, body) with the client's correlation id put
    /// back. `None`
    /// when the request expects no response (Produce acks=0).
    pub async fn forward(
        &mut self,
        frame: &[u8],
        expect_response: bool,
    ) -> Result<Option<BytesMut>, UpstreamError> {
        if frame.len() < 8 {
            return Err(UpstreamError::Protocol(
                "request shorter than a header".into(),
            ));
        }
        let client_corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let corr = self.take_corr();
        // Size, api key and version, our correlation id; then the client's
        // bytes as they came, without copying them.
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&(frame.len() as i32).to_be_bytes());
        head[4..8].copy_from_slice(&frame[..4]);
        head[8..].copy_from_slice(&corr.to_be_bytes());
        let mut out = bytes::Buf::chain(&head[..], &frame[8..]);
        self.stream.write_all_buf(&mut out).await?;
        self.stream.flush().await?;
        if !expect_response {
            return Ok(None);
        }
        let mut resp = self.read_frame().await?;
        let got = i32::from_be_bytes([resp[4], resp[5], resp[6], resp[7]]);
        if got != corr {
            return Err(UpstreamError::Correlation { want: corr, got });
        }
        resp[4..8].copy_from_slice(&client_corr.to_be_bytes());
        Ok(Some(resp))
    }

    /// One response frame, size prefix included: it goes back to the
    /// client as it is, without another copy.
    async fn read_frame(&mut self) -> Result<BytesMut, UpstreamError> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        let size = i32::from_be_bytes(len);
        if size < 4 {
            return Err(UpstreamError::Protocol(format!("response size {size}")));
        }
        let size = size as usize;
        if size > MAX_RESPONSE {
            return Err(UpstreamError::TooLarge(size));
        }
        let mut buf = BytesMut::zeroed(size + 4);
        buf[..4].copy_from_slice(&len);
        self.stream.read_exact(&mut buf[4..]).await?;
        Ok(buf)
    }

    /// A request of the gateway's own (ApiVersions, login, discovery).
    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R, UpstreamError> {
        let corr = self.take_corr();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| UpstreamError::Protocol(format!("encode {api:?}: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        let mut resp: Bytes = self.read_frame().await?.freeze().slice(4..);
        let header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let h = ResponseHeader::decode(&mut resp, header_version)
            .map_err(|e| UpstreamError::Protocol(format!("{api:?} response header: {e}")))?;
        if h.correlation_id != corr {
            return Err(UpstreamError::Correlation {
                want: corr,
                got: h.correlation_id,
            });
        }
        R::decode(&mut resp, version)
            .map_err(|e| UpstreamError::Protocol(format!("{api:?} response: {e}")))
    }

    async fn login(&mut self, user: &str, password: &str) -> Result<(), UpstreamError> {
        let fail = |reason: String| UpstreamError::Login {
            user: user.to_string(),
            reason,
        };
        let hs: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(crate::security::scram::MECHANISM)),
            )
            .await?;
        if hs.error_code != 0 {
            return Err(fail(format!(
                "handshake error {} (upstream mechanisms {:?})",
                hs.error_code,
                hs.mechanisms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
            )));
        }
        let client = ScramClient::new(user, password);
        let first: SaslAuthenticateResponse = self
            .call(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(client.first())),
            )
            .await?;
        if first.error_code != 0 {
            return Err(fail(error_text(&first)));
        }
        let (fin, awaiting) = client.respond(&first.auth_bytes)?;
        let last: SaslAuthenticateResponse = self
            .call(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(fin)),
            )
            .await?;
        if last.error_code != 0 {
            return Err(fail(error_text(&last)));
        }
        awaiting.verify(&last.auth_bytes)?;
        Ok(())
    }
}

fn error_text(r: &SaslAuthenticateResponse) -> String {
    format!(
        "error {}: {}",
        r.error_code,
        r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
    )
}
