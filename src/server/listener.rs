//! Binds the configured listeners and runs their accept loops.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::{parse_host_port, ListenerConfig, SecurityProtocol};
use crate::security::session::{Session, ANONYMOUS};

use super::connection;

/// A listener after binding: what clients are told to connect to.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bound: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
}

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
        },
    ))
}

pub fn spawn_accept_loop(
    listener: TcpListener,
    info: Arc<BoundListener>,
    broker: Arc<Broker>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let info = info.clone();
                    tokio::spawn(async move {
                        accept_connection(stream, peer, info, broker).await;
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(listener = %info.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Terminates TLS where the listener asks for it, sets up the connection's
/// authentication state, and hands over to the request loop.
async fn accept_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    info: Arc<BoundListener>,
    broker: Arc<Broker>,
) {
    let reauth_ms = broker.config.sasl.connections_max_reauth_ms;
    if !info.protocol.uses_tls() {
        let session = if info.protocol.uses_sasl() {
            Session::sasl(reauth_ms)
        } else {
            Session::open(ANONYMOUS.to_string())
        };
        connection::serve(stream, peer, info, broker, session).await;
        return;
    }
    let Some(tls) = broker.tls.clone() else {
        tracing::error!(listener = %info.name, "TLS listener without TLS configuration");
        return;
    };
    let accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = %info.name, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, listener = %info.name, "TLS handshake timed out");
            return;
        }
    };
    let session = if info.protocol.uses_sasl() {
        Session::sasl(reauth_ms)
    } else {
        match tls.peer_principal(stream.get_ref().1) {
            Ok(Some(user)) => {
                tracing::info!(%peer, listener = %info.name, principal = %format!("User:{user}"), "TLS client certificate accepted");
                Session::open(format!("User:{user}"))
            }
            Ok(None) => Session::open(ANONYMOUS.to_string()),
            Err(e) => {
                // Kafka refuses a certificate its mapping rules cannot name.
                tracing::info!(%peer, listener = %info.name, "client certificate not mapped to a principal: {e}");
                return;
            }
        }
    };
    connection::serve(stream, peer, info, broker, session).await;
}
