//! One client connection: read a frame, handle it, write the response, in
//! order. Requests are handled one at a time, in the order sent (Kafka's
//! rule, which idempotent producers and group members rely on); only the
//! wait for an acks=all produce's fsync, or for the upstream's answer to a
//! forwarded request, may overlap with the requests that follow it, and
//! responses still leave in request order.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::edge::{self, Edge, Outcome, ResponseFrame};
use crate::security::session::Session;
use crate::util::read_ready::ReadReady;

use super::frame::{FrameError, FrameReader};
use super::limits::Admission;
use super::log_limit::LogLimiter;
use super::BoundListener;

/// Responses a connection may owe at once; beyond this it stops reading.
/// librdkafka keeps up to 5 produce requests in flight per connection for
/// idempotent producers.
const MAX_IN_FLIGHT: usize = 16;

/// Closes a client can provoke at will (bad frames, failed logins, login
/// deadlines, refused requests) are logged at a bounded rate, one limiter
/// per kind so that a flood of one kind does not hide the others; the audit
/// log keeps every one.
static FRAME_CLOSE_LOG: LogLimiter = LogLimiter::new();
static TIMER_CLOSE_LOG: LogLimiter = LogLimiter::new();
static AUTH_CLOSE_LOG: LogLimiter = LogLimiter::new();
static CLOSE_LOG: LogLimiter = LogLimiter::new();

/// A response owed to the client, in request order, with its API's
/// latency histograms (none for raw SASL tokens) and when its frame was
/// read.
struct Owed<'m> {
    answer: Answer,
    timers: Option<&'m crate::metrics::ApiTimers>,
    read_at: Instant,
}

enum Answer {
    Ready(Outcome),
    /// Still being prepared, with the size of its request frame (which a
    /// forwarded request keeps until the upstream answers).
    Later(JoinHandle<Outcome>, usize),
}

/// Serves the connection until it ends; returns its principal and why it
/// ended. Written as an async block rather than an async fn: an async fn
/// moves its arguments into locals and keeps both, so the stream (1.2 KiB
/// over TLS) and the session would be carried twice by every idle
/// connection; the block uses what it captured in place.
#[allow(clippy::manual_async_fn)]
pub fn serve<S>(
    mut stream: S,
    peer: SocketAddr,
    listener: Arc<BoundListener>,
    edge: Arc<Edge>,
    mut session: Session,
    mut admission: Admission,
    login_deadline: Instant,
) -> impl Future<Output = (String, String)>
where
    S: ReadReady + AsyncWrite + AsRawFd,
{
    async move {
        let broker = edge.broker.clone();
        let limits = &broker.config.connections;
        // Until the client has logged in, only frames a login needs are read:
        // the size prefix alone decides, before anything is buffered.
        let mut logged_in = session.is_authenticated();
        let mut frames = FrameReader::new(if logged_in {
            broker.config.max_request_size
        } else {
            limits.max_unauthenticated_frame_bytes
        })
        .with_low_water(stream.as_raw_fd());
        if logged_in {
            admission.logged_in();
        }
        let idle_limit = (limits.connections_max_idle_ms > 0)
            .then(|| Duration::from_millis(limits.connections_max_idle_ms));
        let mut last_active = Instant::now();
        // Before login the deadline runs from accept (TLS handshake included);
        // after it, a connection that asks nothing for `connections_max_idle_ms`
        // is closed, as Kafka does. One timer, moved only when it fires early,
        // so requests do not pay for timer bookkeeping.
        let timer = tokio::time::sleep_until(if logged_in {
            idle_limit.map_or(far_future(), |d| last_active + d)
        } else {
            login_deadline
        });
        tokio::pin!(timer);
        let mut stopping = broker.shutdown.subscribe();
        let mut owed: VecDeque<Owed> = VecDeque::new();
        let mut state = edge::ConnectionState::default();
        let end = loop {
            if *stopping.borrow_and_update() {
                break "broker shutting down".to_string();
            }
            // A throttled client is not read from until its throttle has
            // passed (Kafka mutes the channel); its answers still go out.
            // The one timer wakes the loop when the throttle ends.
            let muted = state.quota.muted_until.filter(|u| *u > Instant::now());
            match muted {
                None => state.quota.muted_until = None,
                Some(until) if until < timer.deadline() => timer.as_mut().reset(until),
                Some(_) => {}
            }
            if owed.is_empty() && owed.capacity() > 0 {
                // Nothing owed: the queue's allocation goes until a request
                // comes (an idle connection holds none).
                owed = VecDeque::new();
            }
            // Requests still being prepared may hold their frames (a forwarded
            // one until the upstream answers): together no more than one
            // largest request, so a client that pipelines cannot make the
            // connection hold much more than one that does not.
            let pending_bytes: usize = owed
                .iter()
                .map(|o| match o.answer {
                    Answer::Later(_, frame_bytes) => frame_bytes,
                    Answer::Ready(_) => 0,
                })
                .sum();
            let may_read = owed.len() < MAX_IN_FLIGHT
                && pending_bytes < broker.config.max_request_size
                && muted.is_none();
            // The oldest owed response, once it is ready.
            let front = async {
                match owed.front_mut().map(|o| &mut o.answer) {
                    Some(Answer::Later(h, _)) => h
                        .await
                        .unwrap_or_else(|e| Outcome::Close(format!("request handler failed: {e}"))),
                    _ => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                biased;
                outcome = front => {
                    if let Some(o) = owed.front_mut() {
                        o.answer = Answer::Ready(outcome);
                    }
                    None
                }
                r = frames.read(&mut stream), if may_read => Some(r),
                _ = stopping.changed() => break "broker shutting down".to_string(),
                why = &mut admission.evicted, if !logged_in => {
                    let why = why.map(|w| w.as_str()).unwrap_or("limit");
                    break format!("displaced before login: {why} reached");
                }
                () = &mut timer => {
                    // Fired for the login deadline, the idle limit, or the
                    // end of a throttle (then the idle limit is still ahead).
                    let due = if !logged_in {
                        Some(login_deadline)
                    } else if owed.is_empty() {
                        idle_limit.map(|d| last_active + d)
                    } else {
                        // A response is still being prepared: not idle.
                        idle_limit.map(|d| Instant::now() + d)
                    };
                    match due {
                        Some(t) if t <= Instant::now() => {
                            let why = if logged_in {
                                "idle longer than connections_max_idle_ms"
                            } else {
                                "login not completed within login_timeout_ms"
                            };
                            if let Some(suppressed) = TIMER_CLOSE_LOG.allow() {
                                tracing::info!(%peer, listener = %listener.name, suppressed, "closing connection: {why}");
                            }
                            break why.to_string();
                        }
                        t => timer.as_mut().reset(t.unwrap_or_else(far_future)),
                    }
                    None
                }
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
                        if let Some(suppressed) = FRAME_CLOSE_LOG.allow() {
                            tracing::info!(%peer, listener = %listener.name, suppressed, "closing connection: {e}");
                        }
                        break e.to_string();
                    }
                };
                let read_at = Instant::now();
                let frame_len = frame.len();
                let timers = (!session.expects_raw_token() && frame.len() >= 2)
                    .then(|| {
                        broker
                            .metrics
                            .api_timers(i16::from_be_bytes([frame[0], frame[1]]))
                    })
                    .flatten();
                if let Some(t) = timers {
                    t.queue.observe(read_at.elapsed().as_secs_f64());
                }
                let handling = Instant::now();
                let outcome = if session.expects_raw_token() {
                    // SaslHandshake v0: SCRAM messages arrive as bare tokens.
                    Box::pin(edge::sasl::raw_token(
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
                    Box::pin(edge::handle_frame(
                        &edge,
                        &listener,
                        peer,
                        &mut session,
                        &mut state,
                        frame,
                    ))
                    .await
                };
                last_active = Instant::now();
                if let Some(t) = timers {
                    t.handle
                        .observe(last_active.duration_since(handling).as_secs_f64());
                }
                if !logged_in && session.is_authenticated() {
                    logged_in = true;
                    admission.logged_in();
                    frames.set_max(broker.config.max_request_size);
                    timer
                        .as_mut()
                        .reset(idle_limit.map_or(far_future(), |d| last_active + d));
                }
                let answer = match outcome {
                    Outcome::Deferred(later) => Answer::Later(tokio::spawn(later), frame_len),
                    ready => Answer::Ready(ready),
                };
                owed.push_back(Owed {
                    answer,
                    timers,
                    read_at,
                });
            }
            // Send everything that is ready and has its turn.
            let mut ended = None;
            while matches!(owed.front(), Some(o) if matches!(o.answer, Answer::Ready(_))) {
                let Some(Owed {
                    answer: Answer::Ready(o),
                    timers,
                    read_at,
                }) = owed.pop_front()
                else {
                    break;
                };
                let delivered = deliver(&broker, &listener, peer, &mut stream, o).await;
                if let Some(t) = timers {
                    t.total.observe(read_at.elapsed().as_secs_f64());
                }
                if let Err(reason) = delivered {
                    ended = Some(reason);
                    break;
                }
            }
            if let Some(reason) = ended {
                break reason;
            }
            last_active = Instant::now();
        };
        // Answers still being prepared are for nobody now. Their tasks end
        // here, and with them what they hold: a forwarded request's upstream
        // connection, closed rather than pooled with an answer owed, as a
        // broker sees a client go away.
        for o in owed {
            if let Answer::Later(task, _) = o.answer {
                task.abort();
            }
        }
        (session.principal().to_string(), end)
    }
}

/// A deadline that never comes (tokio timers need some instant).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// Writes one outcome. `Err(reason)` when the connection must end.
async fn deliver<S: AsyncWrite + Unpin>(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    wr: &mut S,
    outcome: Outcome,
) -> Result<(), String> {
    match outcome {
        Outcome::RespondThenClose(mut frame, reason) => {
            let _ = send_frame(wr, &mut frame).await;
            // KIP-306: hold the connection briefly so the client reads the
            // error before it sees the close (and a retry storm slows).
            let delay = broker.config.sasl.failed_authentication_delay_ms;
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            if let Some(suppressed) = AUTH_CLOSE_LOG.allow() {
                tracing::info!(%peer, listener = %listener.name, suppressed, "closing connection: {reason}");
            }
            let _ = wr.shutdown().await;
            Err(reason)
        }
        Outcome::Respond(frame) => write(wr, peer, frame).await,
        Outcome::Silent => Ok(()),
        Outcome::Close(reason) => {
            if let Some(suppressed) = CLOSE_LOG.allow() {
                tracing::info!(%peer, listener = %listener.name, suppressed, "closing connection: {reason}");
            }
            let _ = wr.shutdown().await;
            Err(reason)
        }
        // Deferred outcomes are spawned before they get here.
        Outcome::Deferred(later) => {
            Box::pin(deliver(broker, listener, peer, wr, later.await)).await
        }
    }
}

async fn write<S: AsyncWrite + Unpin>(
    wr: &mut S,
    peer: SocketAddr,
    mut frame: ResponseFrame,
) -> Result<(), String> {
    match send_frame(wr, &mut frame).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::debug!(%peer, "write failed: {e}");
            Err(format!("write failed: {e}"))
        }
    }
}

/// Writes a whole frame: the parts in hand (a plain socket takes them in
/// one vectored write), then the rest as it arrives, then a flush (TLS
/// streams may keep the tail of a large response in their record buffer
/// until flushed; a client would wait for it forever).
async fn send_frame<S: AsyncWrite + Unpin>(
    wr: &mut S,
    frame: &mut ResponseFrame,
) -> std::io::Result<()> {
    let rest = frame.take_rest();
    wr.write_all_buf(frame).await?;
    if let Some(rest) = rest {
        write_rest(wr, rest).await?;
    }
    wr.flush().await
}

/// Writes the rest of a frame as it arrives. Bytes that do not come (the
/// upstream failed mid-answer) leave the client half a frame: an error, and
/// the connection ends.
async fn write_rest<S: AsyncWrite + Unpin>(
    wr: &mut S,
    mut rest: edge::FrameRest,
) -> std::io::Result<()> {
    /// One write takes at most this much of what has arrived.
    const BATCH: usize = 1024 * 1024;
    let mut left = rest.len;
    let mut pieces = ResponseFrame::default();
    while left > 0 {
        // What has arrived goes in one (vectored) write.
        let mut next = rest.chunks.recv().await;
        loop {
            let chunk = match next {
                Some(Ok(chunk)) if chunk.len() <= left => chunk,
                Some(Err(e)) => return Err(e),
                _ => return Err(std::io::Error::other("the rest of the answer did not come")),
            };
            left -= chunk.len();
            rest.arrived(&chunk, left == 0);
            pieces.push(chunk);
            if left == 0 || pieces.frame_len() >= BATCH {
                break;
            }
            match rest.chunks.try_recv() {
                Ok(more) => next = Some(more),
                Err(_) => break,
            }
        }
        wr.write_all_buf(&mut pieces).await?;
    }
    Ok(())
}
