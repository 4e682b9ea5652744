//! One client connection: read a frame, handle it, write the response, in
//! order. Kafka processes a connection's requests one at a time, so clients
//! rely on responses arriving in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::api::{self, Outcome};
use crate::broker::Broker;

use super::frame::{FrameError, FrameReader};
use super::BoundListener;

pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    listener: Arc<BoundListener>,
    broker: Arc<Broker>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut frames = FrameReader::new(broker.config.max_request_size);
    loop {
        let frame = match frames.read(&mut rd).await {
            Ok(f) => f,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::info!(%peer, listener = %listener.name, "closing connection: {e}");
                return;
            }
        };
        match api::handle_frame(&broker, &listener, peer, frame).await {
            Outcome::Respond(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(%peer, "write failed: {e}");
                    return;
                }
            }
            Outcome::Silent => {}
            Outcome::Close(reason) => {
                tracing::info!(%peer, listener = %listener.name, "closing connection: {reason}");
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
}
