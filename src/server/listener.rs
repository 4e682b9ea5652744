//! Binds the configured listeners and runs their accept loops.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::audit::login_failures::LoginFailureKey;
use crate::audit::{AuditEvent, EventKind};
use crate::broker::Broker;
use crate::config::{parse_host_port, ListenerConfig};
use crate::edge::Edge;
use crate::security::session::{Session, ANONYMOUS};
use crate::tls::ServerTlsStream;

use super::connection;
use super::endpoint::BoundListener;
use super::limits::Admission;
use super::log_limit::LogLimiter;

/// TLS handshake failures are the cheapest thing to provoke: logged at a
/// bounded rate, with a count of the lines left out.
static TLS_FAILURE_LOG: LogLimiter = LogLimiter::new();

pub async fn bind(cfg: &ListenerConfig) -> std::io::Result<(TcpListener, BoundListener)> {
    let (host, port) = parse_host_port(&cfg.address)
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    let bound = listener.local_addr()?;
    let (adv_host, adv_port) = match &cfg.advertised_address {
        Some(a) => parse_host_port(a)
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?,
        None => {
            let h = if bound.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                bound.ip().to_string()
            };
            (h, bound.port())
        }
    };
    let adv_port = if adv_port == 0 {
        bound.port()
    } else {
        adv_port
    };
    Ok((
        listener,
        BoundListener {
            name: cfg.display_name(),
            protocol: cfg.security_protocol,
            bound,
            advertised_host: adv_host,
            advertised_port: adv_port,
            index: 0,
            upstream_node: None,
        },
    ))
}

pub fn spawn_accept_loop(
    listener: TcpListener,
    info: Arc<BoundListener>,
    edge: Arc<Edge>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let broker = &edge.broker;
        let accept_errors = LogLimiter::new();
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    // Counted before any TLS work: a refused connection
                    // costs one accept and one close, and is closed with a
                    // reset so it leaves no TIME_WAIT behind.
                    let admitted = broker.connections.admit(peer.ip());
                    report_refusals(broker, &info);
                    let admission = match admitted {
                        Ok(a) => a,
                        Err(refusal) => {
                            broker
                                .metrics
                                .connection_refused(&info.name, refusal.as_str());
                            // A zero linger resets at once; it is the
                            // non-zero linger that blocks on drop.
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(std::time::Duration::ZERO));
                            drop(stream);
                            continue;
                        }
                    };
                    if let Some(hold) = broker
                        .quotas
                        .connection_created(peer.ip(), std::time::Instant::now())
                    {
                        let key = crate::quota::QuotaKey::ConnectionCreationRate;
                        broker.metrics.connection_refused(&info.name, key.name());
                        broker
                            .metrics
                            .throttled(key.name(), crate::quota::bucket::throttle_ms(hold));
                        // Over its address's connection_creation_rate: held
                        // unread for the throttle time, then closed (Kafka's
                        // KIP-612 behaviour), still counted at the limits.
                        tokio::spawn(async move {
                            let _place = admission;
                            tokio::time::sleep(hold).await;
                            #[allow(deprecated)]
                            let _ = stream.set_linger(Some(std::time::Duration::ZERO));
                        });
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let edge = edge.clone();
                    let info = info.clone();
                    tokio::spawn(async move {
                        accept_connection(stream, peer, info, edge, admission).await;
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning, and
                    // say so once in a while rather than 20 times a second.
                    if let Some(suppressed) = accept_errors.allow() {
                        tracing::warn!(listener = %info.name, suppressed, "accept failed: {e}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// One log line and one audit record per summary period while connections
/// are being refused, with the counts, instead of one per connection.
fn report_refusals(broker: &Arc<Broker>, info: &BoundListener) {
    let Some((per_ip, total, displaced)) = broker.connections.summary_due() else {
        return;
    };
    let limits = broker.connections.limits();
    tracing::warn!(
        listener = %info.name,
        refused_per_ip = per_ip,
        refused_total = total,
        displaced_before_login = displaced,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        "connections refused at the connection limits"
    );
    let mut ev = AuditEvent::new(EventKind::ConnectionRefused);
    ev.listener = Some(info.name.clone());
    ev.decision = Some("refused".into());
    ev.details = Some(serde_json::json!({
        "refused_max_connections_per_ip": per_ip,
        "refused_max_connections": total,
        "displaced_before_login": displaced,
        "max_connections": limits.max_connections,
        "max_connections_per_ip": limits.max_connections_per_ip,
    }));
    broker.auditor.submit_sync(ev);
}

/// A failed TLS handshake is audited like a failed login: the first of its
/// address and kind in a window in full, the repeats as one aggregated
/// record with their count (a handshake flood cannot flood the audit log).
async fn tls_failure(
    broker: &Broker,
    peer: SocketAddr,
    info: &BoundListener,
    reason: &'static str,
    detail: impl FnOnce() -> String,
) {
    let key = LoginFailureKey {
        address: peer.ip(),
        user: None,
        mechanism: std::borrow::Cow::Borrowed("TLS"),
        reason,
        error_code: None,
    };
    if broker.login_failures.note(key) {
        let mut ev = AuditEvent::new(EventKind::Authentication).peer(peer, &info.name);
        ev.mechanism = Some("TLS".into());
        ev.decision = Some("failure".into());
        ev.reason = Some(detail());
        broker.auditor.submit(ev).await;
    }
}

/// Counts a connection as active (and open in the metrics, by listener)
/// for as long as it lives.
struct ActiveGuard(Arc<Broker>, Arc<BoundListener>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0
            .active_connections
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.metrics.connection_closed(&self.1.name);
    }
}

/// Terminates TLS where the listener asks for it, sets up the connection's
/// authentication state, and hands over to the request loop.
async fn accept_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    info: Arc<BoundListener>,
    edge: Arc<Edge>,
    mut admission: Admission,
) {
    let broker = &edge.broker;
    // An address whose failed logins hold every waiting slot of the login
    // throttle would only be refused after the TLS handshake: close it now,
    // counted in the aggregated audit instead of a record per connection.
    if info.protocol.uses_sasl() && broker.login_throttle.saturated(peer.ip()) {
        drop(stream);
        broker
            .metrics
            .connection_refused(&info.name, "login_throttled");
        broker
            .login_failures
            .throttled(&broker.auditor, peer, &info.name)
            .await;
        return;
    }
    // The login deadline counts from accept: a client that dawdles over
    // the TLS handshake has that much less time for SASL.
    let login_deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(broker.config.connections.login_timeout_ms);
    broker
        .active_connections
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    broker.metrics.connection_accepted(&info.name);
    let active = ActiveGuard(broker.clone(), info.clone());
    let reauth_ms = broker.config.sasl.connections_max_reauth_ms;
    if !info.protocol.uses_tls() {
        let session = if info.protocol.uses_sasl() {
            Session::sasl(reauth_ms)
        } else {
            Session::open(ANONYMOUS.to_string())
        };
        let accepted = AuditEvent::new(EventKind::ConnectionAccepted).peer(peer, &info.name);
        broker.auditor.submit(accepted).await;
        spawn_serving(
            stream,
            peer,
            info,
            edge,
            session,
            admission,
            login_deadline,
            active,
        );
        return;
    }
    let handshake = tls_handshake(
        stream,
        peer,
        &info,
        broker,
        reauth_ms,
        &mut admission,
        login_deadline,
    );
    let Some((stream, session)) = handshake.await else {
        return;
    };
    spawn_serving(
        stream,
        peer,
        info,
        edge,
        session,
        admission,
        login_deadline,
        active,
    );
}

/// The request loop over an accepted (and, on TLS listeners, handshaken)
/// stream, then the audit record of its end, in a task of its own. A
/// task's memory is its largest state's for as long as it lives: the
/// accepting task's (handshake, audit records) is larger than the loop's
/// by some 2 KiB, which every idle connection would carry. The loop is
/// boxed, and the closing audit is boxed, its state only needed at the end.
#[allow(clippy::too_many_arguments)]
fn spawn_serving<S>(
    stream: S,
    peer: SocketAddr,
    info: Arc<BoundListener>,
    edge: Arc<Edge>,
    session: Session,
    admission: Admission,
    login_deadline: tokio::time::Instant,
    active: ActiveGuard,
) where
    S: crate::util::read_ready::ReadReady
        + tokio::io::AsyncWrite
        + std::os::fd::AsRawFd
        + Send
        + 'static,
{
    let serving = Box::pin(connection::serve(
        stream,
        peer,
        info.clone(),
        edge.clone(),
        session,
        admission,
        login_deadline,
    ));
    tokio::spawn(async move {
        let _active = active;
        let end = serving.await;
        Box::pin(audit_closed(&edge.broker, &info, peer, end)).await;
    });
}

/// The TLS handshake (bounded by the login deadline and given up when a
/// newcomer evicts the connection), its audit records, and the session it
/// starts: a client certificate's principal, or a SASL login to come.
/// `None` when the connection is to be closed.
async fn tls_handshake(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    info: &Arc<BoundListener>,
    broker: &Broker,
    reauth_ms: u64,
    admission: &mut Admission,
    login_deadline: tokio::time::Instant,
) -> Option<(ServerTlsStream, Session)> {
    let Some(tls) = broker.tls.clone() else {
        tracing::error!(listener = %info.name, "TLS listener without TLS configuration");
        return None;
    };
    // A newcomer may take this connection's place while it is still in its
    // handshake: the place is then gone, and so is the connection.
    let handshake = tokio::time::timeout_at(
        login_deadline,
        ServerTlsStream::accept(stream, tls.server_config()),
    );
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        _ = &mut admission.evicted => return None,
    };
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            if let Some(suppressed) = TLS_FAILURE_LOG.allow() {
                tracing::info!(%peer, listener = %info.name, suppressed, "TLS handshake failed: {e}");
            }
            tls_failure(broker, peer, info, "tls_handshake_failed", || {
                format!("TLS handshake failed: {e}")
            })
            .await;
            return None;
        }
        Err(_) => {
            if let Some(suppressed) = TLS_FAILURE_LOG.allow() {
                tracing::info!(%peer, listener = %info.name, suppressed, "TLS handshake not completed within login_timeout_ms");
            }
            tls_failure(broker, peer, info, "tls_handshake_timeout", || {
                "TLS handshake not completed within login_timeout_ms".to_string()
            })
            .await;
            return None;
        }
    };
    let conn = stream.state();
    let mut accepted = AuditEvent::new(EventKind::ConnectionAccepted).peer(peer, &info.name);
    accepted.tls_version = conn.protocol_version().map(|v| format!("{v:?}"));
    accepted.tls_cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()));
    accepted.client_cert_subject = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::tls::principal::subject_distinguished_name(c).ok());
    broker.auditor.submit(accepted).await;
    let session = if info.protocol.uses_sasl() {
        Session::sasl(reauth_ms)
    } else {
        match tls.peer_principal(stream.state()) {
            Ok(Some(user)) => {
                tracing::info!(%peer, listener = %info.name, principal = %format!("User:{user}"), "TLS client certificate accepted");
                Session::open(format!("User:{user}"))
            }
            Ok(None) => Session::open(ANONYMOUS.to_string()),
            Err(e) => {
                // Kafka refuses a certificate its mapping rules cannot name.
                tracing::info!(%peer, listener = %info.name, "client certificate not mapped to a principal: {e}");
                let mut ev = AuditEvent::new(EventKind::Authentication).peer(peer, &info.name);
                ev.mechanism = Some("SSL".into());
                ev.decision = Some("failure".into());
                ev.reason = Some(format!("certificate not mapped to a principal: {e}"));
                broker.auditor.submit(ev).await;
                return None;
            }
        }
    };
    if !info.protocol.uses_sasl() && session.principal() != ANONYMOUS {
        let mut ev = AuditEvent::new(EventKind::Authentication).peer(peer, &info.name);
        ev.mechanism = Some("SSL".into());
        ev.principal = Some(session.principal().to_string());
        ev.decision = Some("success".into());
        broker.auditor.submit(ev).await;
    }
    Some((stream, session))
}

async fn audit_closed(
    broker: &Broker,
    info: &BoundListener,
    peer: SocketAddr,
    (principal, reason): (String, String),
) {
    let mut ev = AuditEvent::new(EventKind::ConnectionClosed).peer(peer, &info.name);
    ev.principal = Some(principal);
    ev.reason = Some(reason);
    broker.auditor.submit(ev).await;
}
