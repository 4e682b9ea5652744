//! One client connection: read a frame, handle it, write the response, in
//! order. Kafka processes a connection's requests one at a time, so clients
//! rely on responses arriving in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::api::{self, Outcome};
use crate::broker::Broker;
use crate::security::session::Session;

use super::frame::{FrameError, FrameReader};
use super::BoundListener;

pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    listener: Arc<BoundListener>,
    broker: Arc<Broker>,
    mut session: Session,
) -> (String, String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut frames = FrameReader::new(broker.config.max_request_size);
    let mut stopping = broker.shutdown.subscribe();
    loop {
        if *stopping.borrow_and_update() {
            return closed(&session, "broker shutting down");
        }
        let read = tokio::select! {
            r = frames.read(&mut rd) => r,
            _ = stopping.changed() => return closed(&session, "broker shutting down"),
        };
        let frame = match read {
            Ok(f) => f,
            Err(FrameError::Closed) => return closed(&session, "client closed the connection"),
            Err(FrameError::Io(e)) => {
                // Peers hang up in many ways; not worth more than debug.
                tracing::debug!(%peer, listener = %listener.name, "connection ended: {e}");
                return closed(&session, &format!("connection ended: {e}"));
            }
            Err(e) => {
                tracing::info!(%peer, listener = %listener.name, "closing connection: {e}");
                return closed(&session, &e.to_string());
            }
        };
        let outcome = if session.expects_raw_token() {
            // SaslHandshake v0: SCRAM messages arrive as bare tokens.
            api::sasl::raw_token(&broker, &listener, peer, &mut session, &frame).await
        } else {
            api::handle_frame(&broker, &listener, peer, &mut session, frame).await
        };
        match outcome {
            Outcome::RespondThenClose(bytes, reason) => {
                let _ = wr.write_all(&bytes).await;
                let _ = wr.flush().await;
                // KIP-306: hold the connection briefly so the client reads the
                // error before it sees the close (and a retry storm slows).
                let delay = broker.config.sasl.failed_authentication_delay_ms;
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                tracing::info!(%peer, listener = %listener.name, "closing connection: {reason}");
                let _ = wr.shutdown().await;
                return closed(&session, &reason);
            }
            Outcome::Respond(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(%peer, "write failed: {e}");
                    return closed(&session, &format!("write failed: {e}"));
                }
            }
            Outcome::Silent => {}
            Outcome::Close(reason) => {
                tracing::info!(%peer, listener = %listener.name, "closing connection: {reason}");
                let _ = wr.shutdown().await;
                return closed(&session, &reason);
            }
        }
    }
}

/// (principal, reason) for the connection-closed audit record.
fn closed(session: &Session, reason: &str) -> (String, String) {
    (session.principal().to_string(), reason.to_string())
}
