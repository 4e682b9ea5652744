//! One client connection: TCP or TLS, framing, correlation ids, the
//! ApiVersions exchange and the SCRAM login (SHA-512 unless told otherwise).

use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::scram::{Mechanism, SaltedPasswordCache, ScramClient};
use super::ClientError;

/// Upper bound on one response (a Fetch can carry many MiB).
pub const MAX_RESPONSE: usize = 512 * 1024 * 1024;

/// One request as sent on the wire: size, header, body.
pub fn encode_request(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &impl Encodable,
) -> Result<BytesMut, ClientError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .and_then(|_| body.encode(&mut buf, version))
        .map_err(|e| ClientError::Protocol(format!("encode {api:?} v{version}: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// One response frame from `r`, size prefix included; its size is checked
/// (a correlation id at least, at most [`MAX_RESPONSE`]) before anything
/// is buffered.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<BytesMut, ClientError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let size = response_size(len)?;
    // Read into the buffer's spare room: zeroing megabytes first (a Fetch
    // answer the gateway passes on) would only be written over.
    let mut buf = BytesMut::with_capacity(size + 4);
    buf.extend_from_slice(&len);
    fill_to(r, &mut buf, size + 4).await?;
    Ok(buf)
}

/// The size a response frame's prefix announces: a correlation id at
/// least, at most [`MAX_RESPONSE`].
pub fn response_size(prefix: [u8; 4]) -> Result<usize, ClientError> {
    let size = i32::from_be_bytes(prefix);
    if size < 4 {
        return Err(ClientError::Protocol(format!("response size {size}")));
    }
    let size = size as usize;
    if size > MAX_RESPONSE {
        return Err(ClientError::TooLarge(size));
    }
    Ok(size)
}

/// Reads from `r` into the spare room of `buf` until it holds `len` bytes,
/// and no further: what follows on the stream is the next frame's.
pub async fn fill_to<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    len: usize,
) -> std::io::Result<()> {
    fill_between(r, buf, len, len).await
}

/// Reads from `r` into `buf` until it holds at least `at_least` bytes,
/// taking what each read brings up to `at_most` and no further.
pub async fn fill_between<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    at_least: usize,
    at_most: usize,
) -> std::io::Result<()> {
    debug_assert!(at_least <= at_most, "fill_between({at_least}, {at_most})");
    buf.reserve(at_most.saturating_sub(buf.len()));
    let mut part = r.take(at_most.saturating_sub(buf.len()) as u64);
    while buf.len() < at_least {
        if part.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// How connections are made: plaintext or TLS, which name the server's
/// certificate must carry, the client id, a per-request time limit.
#[derive(Clone)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
    server_name: Option<String>,
    client_id: String,
    request_timeout: Option<Duration>,
}

impl Connector {
    pub fn plaintext() -> Connector {
        Connector {
            tls: None,
            server_name: None,
            client_id: "portcullis".into(),
            request_timeout: None,
        }
    }

    /// TLS with this connector (see [`super::tls_connector`]).
    pub fn tls(tls: tokio_rustls::TlsConnector) -> Connector {
        Connector {
            tls: Some(tls),
            ..Connector::plaintext()
        }
    }

    /// The name to verify the server's certificate against; by default
    /// the host part of the address connected to.
    pub fn with_server_name(mut self, name: Option<String>) -> Connector {
        self.server_name = name;
        self
    }

    pub fn with_client_id(mut self, id: &str) -> Connector {
        self.client_id = id.to_string();
        self
    }

    /// A limit on each [`Connection::call`]; none by default (the gateway
    /// times whole forwards itself).
    pub fn with_request_timeout(mut self, limit: Option<Duration>) -> Connector {
        self.request_timeout = limit;
        self
    }

    /// TCP connect and, for TLS, the handshake. No Kafka request is sent.
    pub async fn connect(&self, addr: &str) -> Result<Connection, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|error| ClientError::Connect {
                addr: addr.to_string(),
                error,
            })?;
        // Requests are whole frames written at once: no reason to delay them.
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(c) => {
                let host = match &self.server_name {
                    Some(n) => n.clone(),
                    None => crate::config::parse_host_port(addr)
                        .map(|(h, _)| h)
                        .unwrap_or_default(),
                };
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| ClientError::Config(format!("server name {host}: {e}")))?;
                let tls = c
                    .connect(name, tcp)
                    .await
                    .map_err(|error| ClientError::Tls {
                        addr: addr.to_string(),
                        error,
                    })?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Connection {
            stream,
            next_corr: 1,
            client_id: self.client_id.clone(),
            request_timeout: self.request_timeout,
            versions: Vec::new(),
        })
    }
}

/// The byte stream under a connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
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

pub struct Connection {
    stream: Stream,
    next_corr: i32,
    client_id: String,
    request_timeout: Option<Duration>,
    /// The server's API version ranges, once [`Connection::api_versions`] ran.
    versions: Vec<ApiVersion>,
}

impl Connection {
    /// The next correlation id of this connection (positive, wrapping).
    pub fn take_correlation_id(&mut self) -> i32 {
        let c = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1).max(1);
        c
    }

    /// The correlation id the next request will take.
    pub fn peek_correlation_id(&self) -> i32 {
        self.next_corr
    }

    /// The stream, for callers that speak to the broker on their own after
    /// the login (raw frames, chosen correlation ids).
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// Writes bytes already framed (size prefix included) and flushes.
    pub async fn send(&mut self, frame: &mut impl Buf) -> Result<(), ClientError> {
        self.stream.write_all_buf(frame).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// One response frame, size prefix included (a forwarding caller
    /// passes it on as it is, without another copy).
    pub async fn read_frame(&mut self) -> Result<BytesMut, ClientError> {
        read_frame(&mut self.stream).await
    }

    /// One request and its response.
    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R, ClientError> {
        match self.request_timeout {
            None => self.call_inner(api, version, req).await,
            Some(limit) => tokio::time::timeout(limit, self.call_inner(api, version, req))
                .await
                .map_err(|_| ClientError::Timeout(limit))?,
        }
    }

    async fn call_inner<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R, ClientError> {
        let corr = self.take_correlation_id();
        let mut buf = encode_request(api, version, corr, &self.client_id, req)?;
        self.send(&mut buf).await?;
        let mut resp: Bytes = self.read_frame().await?.freeze().slice(4..);
        // ApiVersions answers with header v0 whatever the request's version,
        // so that a client can read an UNSUPPORTED_VERSION answer.
        let header_version = if api == ApiKey::ApiVersions {
            0
        } else {
            api.response_header_version(version)
        };
        let h = ResponseHeader::decode(&mut resp, header_version)
            .map_err(|e| ClientError::Protocol(format!("{api:?} response header: {e}")))?;
        if h.correlation_id != corr {
            return Err(ClientError::Correlation {
                want: corr,
                got: h.correlation_id,
            });
        }
        R::decode(&mut resp, version)
            .map_err(|e| ClientError::Protocol(format!("{api:?} v{version} response: {e}")))
    }

    /// ApiVersions (v3, naming this software); the server's ranges are
    /// kept for [`Connection::version`].
    pub async fn api_versions(&mut self) -> Result<Vec<ApiVersion>, ClientError> {
        let r: ApiVersionsResponse = self
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
        if r.error_code != 0 {
            return Err(ClientError::Protocol(format!(
                "ApiVersions error {}",
                r.error_code
            )));
        }
        self.versions = r.api_keys.clone();
        Ok(r.api_keys)
    }

    /// The highest version of `api` both this client (`ours`) and the
    /// server speak. Needs [`Connection::api_versions`] first.
    pub fn version(&self, api: ApiKey, ours: RangeInclusive<i16>) -> Result<i16, ClientError> {
        let theirs = self
            .versions
            .iter()
            .find(|v| v.api_key == api as i16)
            .ok_or_else(|| ClientError::Protocol(format!("the server does not offer {api:?}")))?;
        let v = (*ours.end()).min(theirs.max_version);
        if v < *ours.start() || v < theirs.min_version {
            return Err(ClientError::Protocol(format!(
                "no common version of {api:?}: ours {}..={}, the server's {}..={}",
                ours.start(),
                ours.end(),
                theirs.min_version,
                theirs.max_version
            )));
        }
        Ok(v)
    }

    /// SaslHandshake and SCRAM-SHA-512 over SaslAuthenticate v2, verifying
    /// the server's signature (a server that does not hold our credential
    /// fails the login). `cache`: see [`SaltedPasswordCache`].
    pub async fn login_scram(
        &mut self,
        user: &str,
        password: &str,
        cache: Option<&SaltedPasswordCache>,
    ) -> Result<(), ClientError> {
        self.login_scram_with(Mechanism::ScramSha512, user, password, cache)
            .await
    }

    /// [`Self::login_scram`] with the mechanism of choice.
    pub async fn login_scram_with(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
        cache: Option<&SaltedPasswordCache>,
    ) -> Result<(), ClientError> {
        let fail = |reason: String| ClientError::Login {
            user: user.to_string(),
            reason,
        };
        let hs: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        if hs.error_code != 0 {
            return Err(fail(format!(
                "handshake error {} (server mechanisms {:?})",
                hs.error_code,
                hs.mechanisms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
            )));
        }
        let client = ScramClient::with_mechanism(mechanism, user, password);
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
        let (fin, awaiting) = client.respond_cached(&first.auth_bytes, cache)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Frames arriving in pieces come out whole and one at a time (the
    /// next frame's bytes stay in the stream); a frame cut short is an
    /// unexpected EOF.
    #[tokio::test]
    async fn frames_are_read_whole_and_only_their_own_bytes() {
        let (mut tx, mut rx) = tokio::io::duplex(4096);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut wire = Vec::new();
        for body in [&big[..], b"next"] {
            wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        wire.extend_from_slice(&100i32.to_be_bytes());
        wire.extend_from_slice(b"cut short");
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(1000) {
                tx.write_all(piece).await.unwrap();
            }
        });
        let first = read_frame(&mut rx).await.unwrap();
        assert_eq!(first.len(), 4 + big.len());
        assert!(first[4..] == big[..]);
        assert_eq!(&read_frame(&mut rx).await.unwrap()[4..], b"next");
        writer.await.unwrap();
        match read_frame(&mut rx).await {
            Err(ClientError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("a truncated frame: {other:?}"),
        }
    }
}
