//! A client's TLS connection to the broker, over rustls's unbuffered API,
//! with buffers of its own that it gives back while the connection idles.
//!
//! rustls's buffered connection keeps a 4 KiB receive buffer for as long as
//! the connection lives and reads at most 4 KiB per system call. Here the
//! ciphertext buffers are ours: reads start at 8 KiB and take up to 64 KiB
//! at a time while data flows, and when the connection waits with nothing
//! half-received, its buffers are released; an idle connection holds
//! rustls's state (keys and handshake results) and the socket only.
//!
//! rustls asks to be driven as a state machine: each call to
//! `process_tls_records` says what it needs next (bytes to send, more bytes
//! received, or room to read or write application data). [`Conn::step`] is
//! the one place that answers it, for the handshake, reads and writes alike.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::BufMut;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::util::read_ready::ReadReady;

/// Ciphertext read per system call at most (beyond a half-received
/// record).
const READ_SIZE: usize = 64 * 1024;

/// The first read into a released buffer.
const FIRST_READ: usize = 8 * 1024;

/// The least room a read is given.
const MIN_READ: usize = 1024;

/// The largest TLS record on the wire: 2^14 bytes of plaintext, 2,048 of
/// expansion and a 5-byte header (TLS 1.2's bound; 1.3's is smaller). A
/// half-received record is all the connection keeps between reads.
const MAX_RECORD: usize = 16_384 + 2_048 + 5;

/// A handshake message may span records, which rustls joins in the receive
/// buffer up to 64 KiB (the bound its own buffered connection applies).
const MAX_HANDSHAKE_BUFFER: usize = 0xffff + MAX_RECORD;

/// Application data encrypted per write at most: what is encrypted is sent
/// before more is, so this bounds the outgoing buffer.
const WRITE_CHUNK: usize = 64 * 1024;

/// Room for each record's header, nonce, tag and content type.
const RECORD_OVERHEAD: usize = 64;

/// A server-side TLS stream over a TCP connection.
pub struct ServerTlsStream {
    tcp: TcpStream,
    conn: Conn,
}

/// The TLS state and buffers, apart from the socket so that both can be
/// borrowed at once.
struct Conn {
    tls: UnbufferedServerConnection,
    /// Ciphertext received; `incoming[consumed..]` is not processed yet.
    incoming: Vec<u8>,
    consumed: usize,
    /// Application data decrypted and not read yet: `plaintext[taken..]`.
    plaintext: Vec<u8>,
    taken: usize,
    /// Ciphertext to send: `outgoing[sent..filled]`. rustls writes into
    /// initialized memory only, so the buffer is zeroed when it grows.
    outgoing: Vec<u8>,
    sent: usize,
    filled: usize,
    /// The last read filled the room it had: the next may take more.
    read_filled: bool,
    /// rustls may have complete records to process (ciphertext came since
    /// it last said it needs more), so a read would not wait.
    unprocessed: bool,
    /// The client's close_notify came: no application data follows.
    peer_closed: bool,
    close_sent: bool,
    /// The first error: rustls's unbuffered API keeps no failed state of
    /// its own, and would process the offending record again.
    failed: Option<io::ErrorKind>,
}

/// What a caller of [`Conn::step`] wants of rustls.
enum Want<'a, 'b> {
    /// Finish the handshake.
    Handshake,
    /// Application data into this buffer (what does not fit is kept).
    Read(&'a mut ReadBuf<'b>),
    /// This application data encrypted.
    Write(&'a [u8]),
    /// A close_notify alert.
    Close,
}

/// What rustls did, or needs.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Application data delivered (to the reader, or kept for it).
    Read,
    /// The data or the close_notify is encrypted into the outgoing buffer.
    Written,
    /// Nothing to read until more ciphertext comes.
    NeedsData,
    /// The peer said close_notify: the end of its application data.
    PeerClosed,
    /// Both sides closed.
    Closed,
}

/// How one turn of [`Conn::step`] ended.
enum Turn {
    Again,
    Done(Step),
    Failed(io::Error),
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Runs `encrypt` on the free end of `outgoing` (from `filled`), growing
/// the buffer as often as rustls says it needs more room.
fn encrypt_into(
    outgoing: &mut Vec<u8>,
    filled: &mut usize,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    loop {
        match encrypt(&mut outgoing[*filled..]) {
            Ok(n) => {
                *filled += n;
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room(outgoing, *filled + required_size)
            }
            Err(e @ EncryptError::EncryptExhausted) => return Err(io::Error::other(e)),
        }
    }
}

/// Grows `buf` (zeroed) to at least `len` bytes.
fn room(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

impl ServerTlsStream {
    /// Runs the server side of the handshake on `tcp`. The caller bounds
    /// it in time; its memory is bounded by one handshake message.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<ServerTlsStream> {
        let tls = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut stream = ServerTlsStream {
            tcp,
            conn: Conn {
                tls,
                incoming: Vec::new(),
                consumed: 0,
                plaintext: Vec::new(),
                taken: 0,
                outgoing: Vec::new(),
                sent: 0,
                filled: 0,
                read_filled: false,
                unprocessed: false,
                peer_closed: false,
                close_sent: false,
                failed: None,
            },
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    /// The handshake's results: protocol, cipher suite, peer certificates.
    pub fn state(&self) -> &CommonState {
        &self.conn.tls
    }

    /// Bytes of buffer the connection holds beyond rustls's own state.
    pub fn buffer_capacity(&self) -> usize {
        let c = &self.conn;
        c.incoming.capacity() + c.outgoing.capacity() + c.plaintext.capacity()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // In TLS 1.3 rustls may write application data once its own
            // Finished is out, before the client's Finished (and so its
            // certificate) has been checked: the handshake is only over
            // when rustls says so.
            match self.conn.step(&self.tcp, Want::Handshake)? {
                _ if !self.conn.tls.is_handshaking() => {
                    return self.conn.poll_send(&self.tcp, cx);
                }
                Step::NeedsData | Step::Read | Step::Written => {
                    // Our flight goes out before we wait for the answer.
                    ready!(self.conn.poll_send(&self.tcp, cx))?;
                    let n = ready!(self.conn.poll_fill(&self.tcp, cx, MAX_HANDSHAKE_BUFFER))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
                Step::PeerClosed | Step::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    )));
                }
            }
        }
    }
}

impl Conn {
    /// Drives rustls until it has done what `want` asks, or needs bytes
    /// from the peer. Handshake messages it produces on the way (alerts,
    /// a KeyUpdate's answer) are queued for sending, in order; application
    /// data it decrypts while something else was wanted is kept for the
    /// reader.
    fn step(&mut self, tcp: &TcpStream, mut want: Want<'_, '_>) -> io::Result<Step> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the TLS connection failed earlier"));
        }
        loop {
            let UnbufferedStatus { discard, state } = self
                .tls
                .process_tls_records(&mut self.incoming[self.consumed..]);
            let turn = match state {
                Err(e) => Turn::Failed(invalid(e)),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut turn = Turn::Again;
                    while let Some(record) = records.next_record() {
                        let payload = match record {
                            Ok(r) => r.payload,
                            Err(e) => {
                                turn = Turn::Failed(invalid(e));
                                break;
                            }
                        };
                        let into_reader = match &mut want {
                            Want::Read(buf) => {
                                let n = buf.remaining().min(payload.len());
                                buf.put_slice(&payload[..n]);
                                n
                            }
                            _ => 0,
                        };
                        self.plaintext.extend_from_slice(&payload[into_reader..]);
                        turn = match want {
                            Want::Read(_) => Turn::Done(Step::Read),
                            _ => Turn::Again,
                        };
                        // The rest stays with rustls until asked for.
                        if matches!(&want, Want::Read(buf) if buf.remaining() == 0) {
                            break;
                        }
                    }
                    turn
                }
                Ok(ConnectionState::EncodeTlsData(mut message)) => loop {
                    match message.encode(&mut self.outgoing[self.filled..]) {
                        Ok(n) => {
                            self.filled += n;
                            break Turn::Again;
                        }
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => room(&mut self.outgoing, self.filled + required_size),
                        Err(EncodeError::AlreadyEncoded) => break Turn::Again,
                    }
                },
                // The outgoing buffer keeps the order: what is queued there
                // goes out before anything encrypted after it.
                Ok(ConnectionState::TransmitTlsData(sent)) => {
                    sent.done();
                    Turn::Again
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match &want {
                    Want::Handshake | Want::Read(_) => Turn::Done(Step::NeedsData),
                    Want::Write(data) => {
                        let records = data.len().div_ceil(16_384).max(1);
                        room(
                            &mut self.outgoing,
                            self.filled + data.len() + records * RECORD_OVERHEAD,
                        );
                        match encrypt_into(&mut self.outgoing, &mut self.filled, |out| {
                            traffic.encrypt(data, out)
                        }) {
                            Ok(()) => Turn::Done(Step::Written),
                            Err(e) => Turn::Failed(e),
                        }
                    }
                    Want::Close => {
                        room(&mut self.outgoing, self.filled + RECORD_OVERHEAD);
                        // A KeyUpdate answer may be queued ahead of it.
                        match encrypt_into(&mut self.outgoing, &mut self.filled, |out| {
                            traffic.queue_close_notify(out)
                        }) {
                            Ok(()) => {
                                self.close_sent = true;
                                Turn::Done(Step::Written)
                            }
                            Err(e) => Turn::Failed(e),
                        }
                    }
                },
                Ok(ConnectionState::BlockedHandshake) => match want {
                    Want::Handshake => Turn::Done(Step::NeedsData),
                    _ => Turn::Failed(io::Error::other("TLS handshake not complete")),
                },
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    match want {
                        Want::Read(_) | Want::Handshake => Turn::Done(Step::PeerClosed),
                        // The edge-triggered state is not the writer's
                        // business: the reader sees the flag.
                        _ => Turn::Again,
                    }
                }
                Ok(ConnectionState::Closed) => Turn::Done(Step::Closed),
                // Early data is not enabled; no other state is expected.
                Ok(other) => {
                    Turn::Failed(io::Error::other(format!("unexpected TLS state {other:?}")))
                }
            };
            self.consumed += discard;
            match turn {
                Turn::Again => {}
                Turn::Done(step) => {
                    if step == Step::NeedsData {
                        self.unprocessed = false;
                    }
                    return Ok(step);
                }
                Turn::Failed(e) => {
                    self.failed = Some(e.kind());
                    self.queue_alert();
                    let _ = self.send_now(tcp);
                    return Err(e);
                }
            }
        }
    }

    /// After an error rustls has a fatal alert queued for the peer (why
    /// the handshake failed, for one): encode it, to be sent if the socket
    /// takes it.
    fn queue_alert(&mut self) {
        let status = self
            .tls
            .process_tls_records(&mut self.incoming[self.consumed..]);
        if let Ok(ConnectionState::EncodeTlsData(mut alert)) = status.state {
            room(&mut self.outgoing, self.filled + RECORD_OVERHEAD);
            if let Ok(n) = alert.encode(&mut self.outgoing[self.filled..]) {
                self.filled += n;
            }
        }
    }

    /// Sends what is queued; ready when all of it is out.
    fn poll_send(&mut self, tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send(tcp, Some(cx))
    }

    /// Sends what the socket takes now, without waiting for the rest.
    fn send_now(&mut self, tcp: &TcpStream) -> io::Result<()> {
        match self.send(tcp, None) {
            Poll::Ready(r) => r,
            // Without a context `send` never waits.
            Poll::Pending => Ok(()),
        }
    }

    /// Writes the queued bytes; on a full socket, waits for room when given
    /// a context, else stops there (`Ready(Ok)` with bytes left).
    fn send(&mut self, tcp: &TcpStream, mut cx: Option<&mut Context<'_>>) -> Poll<io::Result<()>> {
        while self.sent < self.filled {
            match tcp.try_write(&self.outgoing[self.sent..self.filled]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match cx.as_deref_mut() {
                    Some(cx) => ready!(tcp.poll_write_ready(cx))?,
                    None => return Poll::Ready(Ok(())),
                },
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.sent = 0;
        self.filled = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more ciphertext, at most up to `limit` buffered bytes.
    /// `Ok(0)` at EOF. A connection that waits with nothing half-received
    /// waits without buffers; one that waits in the middle of a record
    /// keeps a buffer of one record.
    fn poll_fill(
        &mut self,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        self.compact();
        if self.incoming.len() >= limit {
            return Poll::Ready(Err(invalid(format!(
                "TLS message larger than {limit} bytes"
            ))));
        }
        loop {
            if self.incoming.is_empty() {
                self.trim_for_wait();
                ready!(tcp.poll_read_ready(cx))?;
            }
            // Reads start small (a login's messages are a few hundred
            // bytes, and many connections may log in at once); the buffer
            // doubles while reads fill it, up to READ_SIZE beyond a
            // half-received record.
            let len = self.incoming.len();
            let size = match self.incoming.capacity() {
                0 => FIRST_READ,
                c if self.read_filled => c * 2,
                c => c,
            };
            let size = size.max(len + MIN_READ).min(len + READ_SIZE).min(limit);
            self.incoming.reserve_exact(size - len);
            let want = size - len;
            match tcp.try_read_buf(&mut (&mut self.incoming).limit(want)) {
                Ok(n) => {
                    self.unprocessed = n > 0;
                    self.read_filled = n == want;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.incoming.is_empty() {
                        self.trim_for_wait();
                        ready!(tcp.poll_read_ready(cx))?;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Drops the processed ciphertext from the front of the buffer.
    fn compact(&mut self) {
        if self.consumed > 0 {
            self.incoming.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    /// Before waiting on the socket (processed ciphertext compacted away):
    /// with nothing half-received the buffers go back; a half-received
    /// record keeps a buffer of one record, not of the last read.
    fn trim_for_wait(&mut self) {
        if self.incoming.is_empty() {
            self.release_buffers();
        } else {
            self.incoming.shrink_to(self.incoming.len().max(MAX_RECORD));
        }
    }

    /// Gives the buffers back while nothing is in them.
    fn release_buffers(&mut self) {
        if self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
            self.read_filled = false;
        }
        if self.taken == self.plaintext.len() && self.plaintext.capacity() > 0 {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
        if self.sent == self.filled && self.outgoing.capacity() > 0 {
            self.outgoing = Vec::new();
            self.sent = 0;
            self.filled = 0;
        }
    }

    /// Hands over decrypted data kept from before.
    fn take_plaintext(&mut self, buf: &mut ReadBuf<'_>) {
        if self.taken == self.plaintext.len() {
            return;
        }
        let n = buf.remaining().min(self.plaintext.len() - self.taken);
        buf.put_slice(&self.plaintext[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext.clear();
            self.taken = 0;
        }
    }
}

impl AsyncRead for ServerTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let ServerTlsStream { tcp, conn } = self.get_mut();
        let start = buf.filled().len();
        loop {
            conn.take_plaintext(buf);
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Record after record while the caller has room; the socket
            // only once rustls has nothing complete left.
            match conn.step(tcp, Want::Read(&mut *buf))? {
                Step::Read => continue,
                Step::PeerClosed | Step::Closed => return Poll::Ready(Ok(())),
                _ => {}
            }
            if buf.filled().len() > start || conn.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Whatever rustls produced while reading (an alert) goes now if
            // the socket takes it; a KeyUpdate's answer rustls itself
            // holds back until the next write (every request has one).
            conn.send_now(tcp)?;
            if ready!(conn.poll_fill(tcp, cx, MAX_RECORD + READ_SIZE))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
        }
    }
}

impl ReadReady for ServerTlsStream {
    /// Between requests: with nothing decrypted or processable left, the
    /// buffers go back before the wait (the reader allocates its own only
    /// once this is ready).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = &mut self.conn;
        if conn.taken < conn.plaintext.len() || conn.unprocessed || conn.peer_closed {
            return Poll::Ready(Ok(()));
        }
        conn.compact();
        conn.trim_for_wait();
        self.tcp.poll_read_ready(cx)
    }
}

impl ServerTlsStream {
    /// Encrypts up to [`WRITE_CHUNK`] bytes from the front of `parts`
    /// (each part in records of its own) and sends them in one go.
    fn poll_write_parts<'a>(
        &mut self,
        cx: &mut Context<'_>,
        parts: impl Iterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        let ServerTlsStream { tcp, conn } = self;
        // What was encrypted before goes first, so the outgoing buffer
        // holds at most one chunk.
        ready!(conn.poll_send(tcp, cx))?;
        let mut taken = 0;
        for part in parts {
            if taken == WRITE_CHUNK {
                break;
            }
            let chunk = &part[..part.len().min(WRITE_CHUNK - taken)];
            if chunk.is_empty() {
                continue;
            }
            match conn.step(tcp, Want::Write(chunk))? {
                Step::Written => taken += chunk.len(),
                Step::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                other => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "TLS connection cannot write ({other:?})"
                    ))))
                }
            }
        }
        if taken > 0 {
            conn.send_now(tcp)?;
        }
        Poll::Ready(Ok(taken))
    }
}

impl AsyncWrite for ServerTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_parts(cx, std::iter::once(data))
    }

    /// A response in parts (a Fetch answer's header pieces between its
    /// record sets) leaves in one send rather than one per part.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_parts(cx, bufs.iter().map(|b| &b[..]))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ServerTlsStream { tcp, conn } = self.get_mut();
        conn.poll_send(tcp, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ServerTlsStream { tcp, conn } = self.get_mut();
        ready!(conn.poll_send(tcp, cx))?;
        if !conn.close_sent {
            conn.close_sent = true;
            // A connection rustls already gave up on has no close to say.
            if conn.step(tcp, Want::Close).is_ok() {
                ready!(conn.poll_send(tcp, cx))?;
            }
        }
        Pin::new(tcp).poll_shutdown(cx)
    }
}

impl AsRawFd for ServerTlsStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server config for `localhost` and a client config that trusts it.
    fn configs(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let server = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Our server stream and a tokio-rustls client handshaking over
    /// loopback: what each side made of it.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> (
        io::Result<ServerTlsStream>,
        io::Result<tokio_rustls::client::TlsStream<TcpStream>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server = ServerTlsStream::accept(tcp, server).await;
        (server, connecting.await.unwrap())
    }

    /// A handshaken pair: our server stream and a tokio-rustls client.
    pub(crate) async fn pair(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (ServerTlsStream, tokio_rustls::client::TlsStream<TcpStream>) {
        let (server, client) = configs(version);
        let (server, client) = handshake(server, client).await;
        (server.unwrap(), client.unwrap())
    }

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("test timed out")
    }

    /// Megabytes both ways at once, in writes of every size (plain and
    /// vectored), arrive intact over TLS 1.3 and 1.2.
    #[tokio::test]
    async fn carries_bulk_data_both_ways() {
        within(async {
            for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                let (mut server, client) = pair(version).await;
                let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
                let (mut crd, mut cwr) = tokio::io::split(client);
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    let mut at = 0;
                    let mut size = 1;
                    while at < sent.len() {
                        let end = (at + size).min(sent.len());
                        cwr.write_all(&sent[at..end]).await.unwrap();
                        at = end;
                        size = size * 3 % 200_003 + 1;
                    }
                    cwr.flush().await.unwrap();
                    cwr
                });
                // The server echoes what it reads; the client reads it back.
                let expect = data.clone();
                let reader = tokio::spawn(async move {
                    let mut back = vec![0u8; expect.len()];
                    crd.read_exact(&mut back).await.unwrap();
                    assert!(back == expect, "echoed bytes differ");
                    crd
                });
                let mut buf = vec![0u8; 50_000];
                let mut echoed = 0;
                let mut turn = 0;
                while echoed < data.len() {
                    let n = server.read(&mut buf).await.unwrap();
                    assert!(n > 0, "EOF after {echoed} bytes");
                    // Every other echo in three parts, as a vectored write.
                    turn += 1;
                    if turn % 2 == 0 {
                        server.write_all(&buf[..n]).await.unwrap();
                    } else {
                        use bytes::Buf;
                        let (a, rest) = buf[..n].split_at(n / 3);
                        let (b, c) = rest.split_at(rest.len() / 2);
                        let mut parts = Buf::chain(Buf::chain(a, b), c);
                        server.write_all_buf(&mut parts).await.unwrap();
                    }
                    echoed += n;
                }
                server.flush().await.unwrap();
                let (crd, cwr) = (reader.await.unwrap(), writer.await.unwrap());
                let mut client = crd.unsplit(cwr);
                // A clean close: close_notify, then EOF at the server.
                client.shutdown().await.unwrap();
                assert_eq!(server.read(&mut buf).await.unwrap(), 0);
            }
        })
        .await
    }

    /// Waiting for the next request, the connection holds no buffers; with
    /// half a record received, one record's worth at most.
    #[tokio::test]
    async fn idle_connection_holds_no_buffers() {
        within(async {
            let (mut server, mut client) = pair(&rustls::version::TLS13).await;
            client.write_all(&vec![9u8; 200_000]).await.unwrap();
            client.flush().await.unwrap();
            let mut buf = vec![0u8; 200_000];
            server.read_exact(&mut buf).await.unwrap();
            server.write_all(&buf).await.unwrap();
            server.flush().await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert!(server.buffer_capacity() > 0);
            // The next read waits, holding no buffers (the frame reader's
            // wait, readiness first, is tested in server/frame.rs).
            client.write_all(b"x").await.unwrap();
            client.flush().await.unwrap();
            server.read_exact(&mut buf[..1]).await.unwrap();
            let waited =
                tokio::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
            assert!(waited.is_err(), "read returned without data");
            assert_eq!(server.buffer_capacity(), 0, "buffers held while waiting");
            // Half a record: its header and a few bytes, then a wait.
            let tcp = client.get_mut().0;
            tcp.write_all(&[23, 3, 3, 0x40, 0x11, 1, 2, 3])
                .await
                .unwrap();
            let waited =
                tokio::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
            assert!(waited.is_err(), "read returned on half a record");
            assert!(server.conn.incoming.capacity() <= MAX_RECORD);
            assert!(server.conn.incoming.capacity() > 0);
        })
        .await
    }

    /// A client that drops the connection without close_notify is an
    /// unexpected EOF (a truncation attack looks the same); garbage is an
    /// error, and a record claiming more than TLS allows is refused before
    /// anything is buffered for it.
    #[tokio::test]
    async fn truncation_garbage_and_oversized_records_are_errors() {
        within(async {
            let (mut server, mut client) = pair(&rustls::version::TLS13).await;
            // FIN without close_notify (a drop could reset instead: the
            // client has the server's session tickets unread).
            client.get_mut().0.shutdown().await.unwrap();
            let err = server.read(&mut [0u8; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

            let (mut server, mut client) = pair(&rustls::version::TLS12).await;
            client.get_mut().0.write_all(&[0xde; 64]).await.unwrap();
            let err = server.read(&mut [0u8; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

            let (mut server, mut client) = pair(&rustls::version::TLS13).await;
            client
                .get_mut()
                .0
                .write_all(&[23, 3, 3, 0xff, 0xff])
                .await
                .unwrap();
            let err = server.read(&mut [0u8; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(server.conn.incoming.capacity() <= MAX_RECORD + READ_SIZE);
        })
        .await
    }

    /// A TLS 1.3 client that updates its keys and asks for ours gets the
    /// answer, and the conversation goes on under the new keys.
    #[tokio::test]
    async fn key_updates_are_answered() {
        within(async {
            let (mut server, mut client) = pair(&rustls::version::TLS13).await;
            let mut buf = [0u8; 5];
            for round in 0..3u8 {
                client.get_mut().1.refresh_traffic_keys().unwrap();
                client.write_all(&[round; 5]).await.unwrap();
                client.flush().await.unwrap();
                server.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [round; 5]);
                server.write_all(&[round + 10; 5]).await.unwrap();
                server.flush().await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [round + 10; 5]);
            }
        })
        .await
    }

    /// A client that does not trust the server ends the handshake with an
    /// alert: the server's accept fails, it does not hang.
    #[tokio::test]
    async fn refused_handshake_fails_promptly() {
        within(async {
            let (server, _) = configs(&rustls::version::TLS13);
            let (_, stranger) = configs(&rustls::version::TLS13);
            let (server, client) = handshake(server, stranger).await;
            let err = server.err().unwrap();
            assert!(client.is_err());
            assert!(
                err.to_string().contains("alert") || err.kind() == io::ErrorKind::UnexpectedEof,
                "{err}"
            );
        })
        .await
    }
}
