//! One pipelined upstream connection: requests are written as they come,
//! without waiting for the answers to the ones before, and a reader task
//! hands each answer to the request it belongs to. A broker answers a
//! connection's requests in the order they were sent, so the answers are
//! matched in that order, and a correlation id out of turn ends the
//! connection.
//!
//! This is what lets the gateway forward a client connection's requests as
//! fast as the client sends them: a producer with five requests in flight
//! has five in flight upstream too, instead of each one waiting for the
//! previous round trip through the gateway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::upstream::UpstreamError;
use crate::client::{fill_between, fill_to, response_size, Connection, Stream};
use crate::edge::{FrameRest, ResponseFrame};

/// The answer to one request: its response frame (size prefix, header,
/// body) with the client's correlation id put back.
pub type Answer = Result<Reply, UpstreamError>;

/// An answer whole, or (a large one to a request sent with
/// [`Expect::Streamed`]) its first part with the rest still arriving.
#[derive(Debug)]
pub enum Reply {
    Whole(BytesMut),
    Streamed(ResponseFrame),
}

/// What a request sent upstream expects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing (a produce with acks=0).
    Nothing,
    /// Its answer, whole.
    Whole,
    /// Its answer, passed on as it arrives if it is large: the client
    /// receives a Fetch answer while the gateway does, instead of after it.
    Streamed,
}

/// Answers at least this large are passed on as they arrive, when the
/// request allows it.
const STREAM_MIN: usize = 256 * 1024;

/// The largest piece of a streamed answer: each piece goes on with what
/// one read brought (a relay that waits to fill larger pieces adds their
/// time to every answer's round trip).
const STREAM_CHUNK: usize = 128 * 1024;

/// A streamed answer's first piece holds at least this much (or the whole
/// answer): its header and first fields, which the edge reads and patches.
const STREAM_HEAD: usize = 64;

/// Pieces read ahead of the client: a slow client holds the upstream
/// connection (its own lease) rather than the gateway's memory.
const STREAM_AHEAD: usize = 8;

pub struct Pipe {
    /// Held while one request is written, so that requests go out whole
    /// and in the order their correlation ids were given.
    writer: tokio::sync::Mutex<Writer>,
    waiting: Arc<Mutex<Waiting>>,
    reader: JoinHandle<()>,
}

struct Writer {
    half: WriteHalf<Stream>,
    next_corr: i32,
}

#[derive(Default)]
struct Waiting {
    /// The requests sent and not yet answered, oldest first.
    queue: VecDeque<Waiter>,
    /// Why the connection cannot be used any more (its requests failed
    /// with this), once it cannot.
    broken: Option<(std::io::ErrorKind, String)>,
    /// An answer taken off `queue` is still being read (or, streamed,
    /// passed on): the connection is not free for another borrower yet.
    reading: bool,
}

struct Waiter {
    corr: i32,
    client_corr: i32,
    /// When the request's answer is overdue.
    deadline: Instant,
    /// The request's own time limit: while a streamed answer's rest is
    /// passed on, the longest wait for the next chunk from either side.
    patience: Duration,
    streamed: bool,
    answer: oneshot::Sender<Answer>,
}

/// An answer still to come ([`Pipe::answer`] waits for it).
pub struct Pending {
    rx: oneshot::Receiver<Answer>,
    /// When the answer is overdue: the request's own time limit, or the
    /// one of an earlier request on the connection if that is later (the
    /// broker answers in order, so no answer comes before those before it).
    deadline: Instant,
}

impl std::future::Future for Pending {
    type Output = Answer;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Answer> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                Err(UpstreamError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "upstream connection dropped",
                )))
            })
        })
    }
}

impl Pipe {
    /// Takes over a connection that is logged in and idle.
    pub fn new(conn: Connection) -> Pipe {
        let next_corr = conn.peek_correlation_id();
        let (rd, wr) = tokio::io::split(conn.into_stream());
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let reader = tokio::spawn(read_answers(rd, waiting.clone()));
        Pipe {
            writer: tokio::sync::Mutex::new(Writer {
                half: wr,
                next_corr,
            }),
            waiting,
            reader,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection failed or was given up: nothing more is sent on it.
    pub fn is_broken(&self) -> bool {
        self.waiting().broken.is_some()
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        let w = self.waiting();
        w.queue.len() + usize::from(w.reading)
    }

    /// Gives the connection up: the requests waiting on it fail with
    /// `why`, and it is never used again.
    pub fn break_with(&self, kind: std::io::ErrorKind, why: &str) {
        fail_all(&self.waiting, kind, why);
        self.reader.abort();
    }

    /// Sends one request frame (header + body, no size prefix) under a
    /// correlation id of this connection, within `timeout` (or the time
    /// limit of an earlier request still unanswered, if later: a broker
    /// may stop reading a connection while it holds one of its requests).
    /// The answer, when the request expects one, comes through the
    /// returned [`Pending`]; requests sent later are answered later.
    pub async fn send(
        &self,
        frame: &[u8],
        expect: Expect,
        timeout: Duration,
    ) -> Result<Option<Pending>, UpstreamError> {
        if frame.len() < 8 {
            return Err(UpstreamError::Protocol(
                "request shorter than a header".into(),
            ));
        }
        let client_corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let mut w = self.writer.lock().await;
        let corr = w.next_corr;
        w.next_corr = w.next_corr.wrapping_add(1).max(1);
        // Registered before the bytes leave: the answer may be read before
        // the write returns.
        let (pending, deadline) = {
            let mut waiting = self.waiting();
            if let Some((kind, why)) = &waiting.broken {
                return Err(UpstreamError::Io(std::io::Error::new(*kind, why.clone())));
            }
            let own = Instant::now() + timeout;
            let deadline = waiting.queue.back().map_or(own, |w| w.deadline.max(own));
            let pending = (expect != Expect::Nothing).then(|| {
                let (tx, rx) = oneshot::channel();
                waiting.queue.push_back(Waiter {
                    corr,
                    client_corr,
                    deadline,
                    patience: timeout,
                    streamed: expect == Expect::Streamed,
                    answer: tx,
                });
                Pending { rx, deadline }
            });
            (pending, deadline)
        };
        // Size, api key and version, our correlation id; then the client's
        // bytes as they came, without copying them.
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&(frame.len() as i32).to_be_bytes());
        head[4..8].copy_from_slice(&frame[..4]);
        head[8..].copy_from_slice(&corr.to_be_bytes());
        let mut out = Buf::chain(&head[..], &frame[8..]);
        // A request may go out in part (a failed write, or a caller that
        // gave up waiting for the write): the connection is then done.
        let mut unfinished = BreakOnDrop(Some(self));
        let write = async {
            w.half.write_all_buf(&mut out).await?;
            w.half.flush().await
        };
        let written = tokio::time::timeout_at(deadline, write).await;
        unfinished.0 = None;
        match written {
            Ok(Ok(())) => Ok(pending),
            Ok(Err(e)) => {
                self.break_with(e.kind(), &e.to_string());
                Err(UpstreamError::Io(e))
            }
            Err(_) => {
                self.break_with(std::io::ErrorKind::TimedOut, "request not written in time");
                Err(UpstreamError::Timeout(timeout))
            }
        }
    }

    /// Waits for the answer a [`Pipe::send`] promised, until its deadline.
    /// An overdue answer gives the connection up: everything behind it on
    /// the connection would wait for it too. `timeout` is the request's own
    /// limit, for the error.
    pub async fn answer(&self, pending: Pending, timeout: Duration) -> Answer {
        match tokio::time::timeout_at(pending.deadline, pending).await {
            Ok(answer) => answer,
            Err(_) => {
                self.break_with(std::io::ErrorKind::TimedOut, "no answer in time");
                Err(UpstreamError::Timeout(timeout))
            }
        }
    }

    /// A request of the gateway's own (discovery), answered on this
    /// connection in turn with the others.
    pub async fn call<Q: Encodable, R: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        req: &Q,
        timeout: Duration,
    ) -> Result<R, UpstreamError> {
        let frame = crate::client::encode_request(api, version, 0, super::upstream::CLIENT_ID, req)
            .map_err(UpstreamError::from)?;
        let Some(pending) = self.send(&frame[4..], Expect::Whole, timeout).await? else {
            return Err(UpstreamError::Protocol("no answer expected".into()));
        };
        let Reply::Whole(answer) = self.answer(pending, timeout).await? else {
            return Err(UpstreamError::Protocol("answer not whole".into()));
        };
        let mut resp = answer.freeze().slice(4..);
        ResponseHeader::decode(&mut resp, api.response_header_version(version))
            .and_then(|_| R::decode(&mut resp, version))
            .map_err(|e| UpstreamError::Protocol(format!("{api:?} v{version} response: {e}")))
    }
}

/// Breaks the pipe when dropped armed.
struct BreakOnDrop<'a>(Option<&'a Pipe>);

impl Drop for BreakOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(pipe) = self.0 {
            pipe.break_with(
                std::io::ErrorKind::Interrupted,
                "request abandoned while it was written",
            );
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Fails every waiting request and marks the connection broken.
fn fail_all(waiting: &Mutex<Waiting>, kind: std::io::ErrorKind, why: &str) {
    let queue = {
        let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
        if w.broken.is_none() {
            w.broken = Some((kind, why.to_string()));
        }
        std::mem::take(&mut w.queue)
    };
    for waiter in queue {
        let _ = waiter
            .answer
            .send(Err(UpstreamError::Io(std::io::Error::new(kind, why))));
    }
}

/// Reads answers until the connection ends, each to the oldest waiting
/// request.
async fn read_answers(mut rd: ReadHalf<Stream>, waiting: Arc<Mutex<Waiting>>) {
    let (kind, why) = loop {
        if let Err(e) = read_answer(&mut rd, &waiting).await {
            break e;
        }
    };
    fail_all(&waiting, kind, &why);
}

/// Reads one answer and hands it to its request; `Err` ends the connection.
async fn read_answer(
    rd: &mut ReadHalf<Stream>,
    waiting: &Mutex<Waiting>,
) -> Result<(), (std::io::ErrorKind, String)> {
    let io = |e: std::io::Error| (e.kind(), e.to_string());
    // Size and correlation id first: whether to stream depends on both.
    let mut head = [0u8; 8];
    rd.read_exact(&mut head).await.map_err(io)?;
    let size = response_size([head[0], head[1], head[2], head[3]])
        .map_err(|e| (std::io::ErrorKind::InvalidData, e.to_string()))?;
    let got = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let waiter = {
        let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.reading = true;
        w.queue.pop_front()
    };
    // Cleared before the answer (or its last chunk) is handed on: whoever
    // takes it may give the connection back to the pool at once.
    let reading = |on: bool| waiting.lock().unwrap_or_else(|p| p.into_inner()).reading = on;
    let Some(waiter) = waiter else {
        return Err((
            std::io::ErrorKind::InvalidData,
            format!("upstream sent an answer (correlation id {got}) to no request"),
        ));
    };
    if got != waiter.corr {
        let e = UpstreamError::Correlation {
            want: waiter.corr,
            got,
        };
        let why = e.to_string();
        let _ = waiter.answer.send(Err(e));
        return Err((std::io::ErrorKind::InvalidData, why));
    }
    let total = 4 + size;
    let streamed = waiter.streamed && total >= STREAM_MIN;
    let mut frame = BytesMut::with_capacity(if streamed { STREAM_CHUNK } else { total });
    frame.extend_from_slice(&head[..4]);
    frame.extend_from_slice(&waiter.client_corr.to_be_bytes());
    if streamed {
        fill_between(rd, &mut frame, STREAM_HEAD, STREAM_CHUNK)
            .await
            .map_err(io)?;
    } else {
        fill_to(rd, &mut frame, total).await.map_err(io)?;
    }
    let first = frame.len();
    if first == total {
        reading(false);
        // The requester may have given up (timed out): nothing to do.
        let _ = waiter.answer.send(Ok(Reply::Whole(frame)));
        return Ok(());
    }
    let (tx, chunks) = tokio::sync::mpsc::channel(STREAM_AHEAD);
    let rest = FrameRest::new(total - first, chunks);
    let _ = waiter
        .answer
        .send(Ok(Reply::Streamed(ResponseFrame::streamed(
            frame.freeze(),
            rest,
        ))));
    // The rest is read whether or not anyone still wants it: the next
    // answer starts after it. An upstream or a client that makes no
    // progress for the request's own time limit gives the connection up
    // (a slow client may take longer than that in all).
    let mut left = total - first;
    // Pieces are cut from one buffer, so a short read does not hold a
    // whole piece's room.
    let mut room = BytesMut::new();
    while left > 0 {
        let piece = fill_between(rd, &mut room, 1, left.min(STREAM_CHUNK));
        let read = tokio::time::timeout(waiter.patience, piece).await;
        let failed = match read {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(io(e)),
            Err(_) => Some((
                std::io::ErrorKind::TimedOut,
                "answer not read in time".into(),
            )),
        };
        if let Some((kind, why)) = failed {
            let _ = tx.try_send(Err(std::io::Error::new(kind, why.clone())));
            return Err((kind, why));
        }
        let chunk = room.split();
        left -= chunk.len();
        if left == 0 {
            reading(false);
        }
        if !tx.is_closed() {
            let sent = tokio::time::timeout(waiter.patience, tx.send(Ok(chunk.freeze()))).await;
            if sent.is_err() {
                return Err((
                    std::io::ErrorKind::TimedOut,
                    "client did not take the answer in time".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(30);

    /// A request frame (no size prefix) with this client correlation id.
    fn request(client_corr: i32) -> Vec<u8> {
        let mut f = vec![0, 3, 0, 9];
        f.extend_from_slice(&client_corr.to_be_bytes());
        f.extend_from_slice(b"body");
        f
    }

    /// A pipe to a server that reads `n` requests before it answers any,
    /// answering the correlation ids `answer` picks from theirs.
    async fn pipe_to(
        n: usize,
        answer: impl FnOnce(Vec<i32>) -> Vec<i32> + Send + 'static,
    ) -> (Pipe, tokio::task::JoinHandle<()>) {
        pipe_serving(n, |seen| {
            answer(seen)
                .into_iter()
                .map(|corr| (corr, b"resp".to_vec()))
                .collect()
        })
        .await
    }

    /// A pipe to a server that reads as many requests as there are
    /// `bodies`, then answers each in turn with its body.
    async fn pipe_answering(bodies: Vec<Vec<u8>>) -> (Pipe, tokio::task::JoinHandle<()>) {
        pipe_serving(bodies.len(), |seen| seen.into_iter().zip(bodies).collect()).await
    }

    /// A pipe to a server that reads `n` requests, then sends the answers
    /// (correlation id, body) that `answers` makes of their ids.
    async fn pipe_serving(
        n: usize,
        answers: impl FnOnce(Vec<i32>) -> Vec<(i32, Vec<u8>)> + Send + 'static,
    ) -> (Pipe, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for _ in 0..n {
                let len = s.read_i32().await.unwrap() as usize;
                let mut f = vec![0u8; len];
                s.read_exact(&mut f).await.unwrap();
                seen.push(i32::from_be_bytes([f[4], f[5], f[6], f[7]]));
            }
            for (corr, body) in answers(seen) {
                s.write_i32(4 + body.len() as i32).await.unwrap();
                s.write_i32(corr).await.unwrap();
                s.write_all(&body).await.unwrap();
            }
            // Held open until the test is done with it.
            let _ = s.read_u8().await;
        });
        let conn = crate::client::Connector::plaintext()
            .connect(&addr)
            .await
            .unwrap();
        (Pipe::new(conn), server)
    }

    /// A request sent on `pipe` that expects an answer.
    async fn sent(pipe: &Pipe, corr: i32, expect: Expect, timeout: Duration) -> Pending {
        pipe.send(&request(corr), expect, timeout)
            .await
            .unwrap()
            .expect("an answer expected")
    }

    /// A large answer to a request that allows it comes as its first part
    /// and then the rest, byte for byte; the connection counts it in flight
    /// until the rest came, and the answers after it arrive whole.
    #[tokio::test]
    async fn large_answers_are_passed_on_as_they_arrive() {
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 249) as u8).collect();
        let small_but_streamable = vec![7u8; 1000];
        let (pipe, server) = pipe_answering(vec![
            big.clone(),
            small_but_streamable.clone(),
            b"last".to_vec(),
        ])
        .await;
        let first = sent(&pipe, 1, Expect::Streamed, T).await;
        let second = sent(&pipe, 2, Expect::Streamed, T).await;
        let third = sent(&pipe, 3, Expect::Whole, T).await;
        let Reply::Streamed(mut frame) = first.await.unwrap() else {
            panic!("a 1 MB answer was not streamed");
        };
        assert_eq!(frame.frame_len(), 8 + big.len());
        let mut got = frame.copy_to_bytes(frame.remaining()).to_vec();
        let prefix = [(4 + big.len() as i32).to_be_bytes(), 1i32.to_be_bytes()].concat();
        assert_eq!(got[..8], prefix[..]);
        let mut rest = frame.take_rest().expect("the rest");
        assert!(rest.len > 0 && rest.len < big.len());
        assert!(pipe.in_flight() >= 1);
        while let Some(chunk) = rest.chunks.recv().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert!(got[8..] == big[..], "streamed bytes differ");

        // Small answers come whole even when they could have streamed.
        let Reply::Whole(a) = second.await.unwrap() else {
            panic!("a small answer was streamed");
        };
        assert!(a[8..] == small_but_streamable[..]);
        let Reply::Whole(a) = third.await.unwrap() else {
            panic!("not whole");
        };
        assert_eq!(&a[8..], b"last");
        assert_eq!(pipe.in_flight(), 0);
        assert!(!pipe.is_broken());
        server.abort();

        // Once the last byte is taken, the connection is free for the pool.
        let (pipe, server) = pipe_answering(vec![big]).await;
        let Reply::Streamed(mut frame) = sent(&pipe, 4, Expect::Streamed, T).await.await.unwrap()
        else {
            panic!("not streamed");
        };
        let mut rest = frame.take_rest().unwrap();
        let mut left = rest.len;
        while left > 0 {
            left -= rest.chunks.recv().await.unwrap().unwrap().len();
        }
        assert_eq!(pipe.in_flight(), 0);
        server.abort();
    }

    #[tokio::test]
    async fn requests_go_out_before_answers_and_answers_find_their_requests() {
        let (pipe, server) = pipe_to(3, |seen| seen).await;
        let mut pending = Vec::new();
        for c in [70, 71, 72] {
            pending.push(sent(&pipe, c, Expect::Whole, T).await);
        }
        assert_eq!(pipe.in_flight(), 3);
        for (p, c) in pending.into_iter().zip([70, 71, 72]) {
            let Reply::Whole(a) = p.await.unwrap() else {
                panic!("not whole");
            };
            assert_eq!(&a[4..8], &i32::to_be_bytes(c));
            assert_eq!(&a[8..], b"resp");
        }
        assert_eq!(pipe.in_flight(), 0);
        assert!(!pipe.is_broken());
        server.abort();
    }

    /// A request behind one that may take longer is not overdue before
    /// it: the broker answers in order.
    #[tokio::test]
    async fn a_request_waits_at_least_as_long_as_the_ones_before_it() {
        let (pipe, server) = pipe_to(3, |seen| seen).await;
        let long = sent(&pipe, 1, Expect::Whole, T * 4).await;
        let short = sent(&pipe, 2, Expect::Whole, Duration::from_millis(1)).await;
        assert_eq!(short.deadline, long.deadline);
        let own = sent(&pipe, 3, Expect::Whole, T * 8).await;
        assert!(own.deadline > long.deadline);
        for p in [long, short, own] {
            p.await.unwrap();
        }
        server.abort();
    }

    #[tokio::test]
    async fn an_answer_out_of_turn_fails_every_waiting_request_and_the_pipe() {
        let (pipe, server) = pipe_to(2, |seen| seen.into_iter().rev().collect()).await;
        let first = sent(&pipe, 1, Expect::Whole, T).await;
        let second = sent(&pipe, 2, Expect::Whole, T).await;
        assert!(matches!(
            first.await,
            Err(UpstreamError::Correlation { .. })
        ));
        assert!(second.await.is_err());
        assert!(pipe.is_broken());
        assert!(pipe.send(&request(3), Expect::Whole, T).await.is_err());
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_connection_fails_what_waits_and_a_timeout_breaks_the_pipe() {
        // The server closes after reading one request.
        let (pipe, server) = pipe_to(1, |_| Vec::new()).await;
        let waiting = sent(&pipe, 5, Expect::Whole, T).await;
        server.abort();
        let e = waiting.await.unwrap_err();
        assert!(matches!(e, UpstreamError::Io(_)), "{e}");
        assert!(pipe.is_broken());

        let (pipe, server) = pipe_to(1, |_| Vec::new()).await;
        let waiting = sent(&pipe, 6, Expect::Whole, T).await;
        pipe.break_with(std::io::ErrorKind::TimedOut, "no answer in time");
        assert!(waiting.await.is_err());
        assert!(pipe.is_broken());
        server.abort();
    }
}
