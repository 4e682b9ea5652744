//! One client connection: read a frame, handle it, write the response, in
//! order. Requests are handled one at a time, in the order sent (Kafka's
//! rule, which idempotent producers and group members rely on); only the
//! wait for an acks=all produce's fsync may overlap with the requests that
//! follow it, and responses still leave in request order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::task::JoinHandle;

use crate::api::{self, Outcome};
use crate::broker::Broker;
use crate::security::session::Session;

use super::frame::{FrameError, FrameReader};
use super::BoundListener;

/// Responses a connection may owe at once; beyond this it stops reading.
/// librdkafka keeps up to 5 produce requests in flight per connection for
/// idempotent producers.
const MAX_IN_FLIGHT: usize = 16;

/// A response owed to the client, in request order.
enum Owed {
    Ready(Outcome),
    Later(JoinHandle<Outcome>),
}

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
    let mut owed: VecDeque<Owed> = VecDeque::new();
    let end = loop {
        if *stopping.borrow_and_update() {
            break "broker shutting down".to_string();
        }
        let may_read = owed.len() < MAX_IN_FLIGHT;
        // The oldest owed response, once it is ready.
        let front = async {
            match owed.front_mut() {
                Some(Owed::Later(h)) => h
                    .await
                    .unwrap_or_else(|e| Outcome::Close(format!("request handler failed: {e}"))),
                _ => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            biased;
            outcome = front => {
                owed.pop_front();
                owed.push_front(Owed::Ready(outcome));
                None
            }
            r = frames.read(&mut rd), if may_read => Some(r),
            _ = stopping.changed() => break "broker shutting down".to_string(),
        };
        if let Some(read) = read {
            let frame = match read {
                Ok(f) => f,
                Err(FrameError::Closed) => break "client closed the connection".to_string(),
                Err(FrameError::Io(e)) => {
                    // Peers hang up in many ways; not worth more than debug.
                    tracing::debug!(%peer, listener = %listener.name, "connection ended: {e}");
                    break format!("connection ended: {e}");
                }
                Err(e) => {
                    tracing::info!(%peer, listener = %listener.name, "closing connection: {e}");
                    break e.to_string();
                }
            };
            let outcome = if session.expects_raw_token() {
                // SaslHandshake v0: SCRAM messages arrive as bare tokens.
                Box::pin(api::sasl::raw_token(
                    &broker,
                    &listener,
                    peer,
                    &mut session,
                    &frame,
                ))
                .await
            } else {
                // Boxed: the handler's state (the largest of every API's
                // future) then exists only while a request is in progress,
                // not in every idle connection's task.
                Box::pin(api::handle_frame(
                    &broker,
                    &listener,
                    peer,
                    &mut session,
                    frame,
                ))
                .await
            };
            owed.push_back(match outcome {
                Outcome::Deferred(later) => Owed::Later(tokio::spawn(later)),
                ready => Owed::Ready(ready),
            });
        }
        // Send everything that is ready and has its turn.
        let mut ended = None;
        while matches!(owed.front(), Some(Owed::Ready(_))) {
            let Some(Owed::Ready(o)) = owed.pop_front() else {
                break;
            };
            if let Err(reason) = deliver(&broker, &listener, peer, &mut wr, o).await {
                ended = Some(reason);
                break;
            }
        }
        if let Some(reason) = ended {
            break reason;
        }
    };
    (session.principal().to_string(), end)
}

/// Writes one outcome. `Err(reason)` when the connection must end.
async fn deliver<S: AsyncWrite>(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    wr: &mut WriteHalf<S>,
    outcome: Outcome,
) -> Result<(), String> {
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
            Err(reason)
        }
        Outcome::Respond(bytes) => write(wr, peer, bytes).await,
        Outcome::Silent => Ok(()),
        Outcome::Close(reason) => {
            tracing::info!(%peer, listener = %listener.name, "closing connection: {reason}");
            let _ = wr.shutdown().await;
            Err(reason)
        }
        // Deferred outcomes are spawned before they get here.
        Outcome::Deferred(later) => {
            Box::pin(deliver(broker, listener, peer, wr, later.await)).await
        }
    }
}

async fn write<S: AsyncWrite>(
    wr: &mut WriteHalf<S>,
    peer: SocketAddr,
    bytes: Bytes,
) -> Result<(), String> {
    // TLS streams may keep the tail of a large response in their record
    // buffer until flushed; a client would wait for it forever.
    let written = match wr.write_all(&bytes).await {
        Ok(()) => wr.flush().await,
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(%peer, "write failed: {e}");
            Err(format!("write failed: {e}"))
        }
    }
}
