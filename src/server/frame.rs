//! Kafka framing: a 4-byte big-endian size, then that many bytes.
//!
//! Memory per connection is bounded: a frame is only buffered after its size
//! passed the size check (`max_request_size`, or the much smaller
//! pre-login cap). Room for a frame of up to [`UPFRONT`] bytes (a client's
//! usual produce request, 1 MB by default in librdkafka and Java) is taken
//! once from the claim, so such a frame is never copied to a larger buffer
//! as it arrives; beyond that the buffer grows as bytes actually arrive
//! rather than by what the client claims. Between frames the reader holds
//! no buffer: it waits for the stream to be readable, then allocates.
//!
//! While the rest of a large frame is on its way, the socket's receive
//! low-water mark (`SO_RCVLOWAT`) holds the wake-up back until a good part
//! of it has arrived: a client that writes a 1 MB produce as hundreds of
//! 1 KiB TLS records (librdkafka does, for the records of a batch it did not
//! copy) would otherwise wake this connection, and cost an epoll round and
//! a read, once per record.

use std::future::Future;
use std::os::fd::RawFd;
use std::task::ready;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use crate::util::read_ready::ReadReady;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: i64, max: usize },
    #[error("invalid frame size {0}")]
    BadSize(i32),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Largest chunk read into the buffer before it has to grow again.
const READ_CHUNK: usize = 64 * 1024;

/// What a read between frames allocates: room for the size and for a
/// small request whole.
const FIRST_READ: usize = 1024;

/// Room taken at once for a frame whose size is known: growing a buffer
/// in steps copies what arrived at each step (about the frame's size again
/// for a 1 MB produce). Room not yet written is address space, or memory
/// the allocator already holds: a client that claims a frame and sends
/// little makes the process no larger than by what it sent.
const UPFRONT: usize = 1 << 20;

pub struct FrameReader {
    max: usize,
    buf: BytesMut,
    low_water: Option<LowWater>,
}

/// The receive low-water mark of the connection's socket, set while a large
/// frame's rest is awaited and back to 1 between frames.
///
/// The mark must never ask for more bytes than will come without a read
/// from us, or a frame would wait for bytes that do not come. When a read
/// of the stream waits, whatever the TLS layer holds is at most one
/// incomplete record (it decrypts every complete one and hands the
/// plaintext over first), and a sender may hold back one segment (see
/// `hold`), so the mark stays below the frame's missing bytes less both.
/// Over PLAINTEXT the record slack is simply unused. The kernel caps the
/// mark by the receive buffer, and wakes the reader anyway at EOF, on
/// errors and when the receive window runs low.
struct LowWater {
    fd: RawFd,
    current: usize,
    /// Bytes of the frame that may be owed and still not come without a
    /// read from us: one TLS record's slack, and one TCP segment a sender
    /// with Nagle's algorithm on (librdkafka's default) holds back until
    /// what it sent before is acknowledged. The kernel acknowledges at once
    /// once more than a segment waits under the mark, but not less; a mark
    /// that counted on the held segment would wait for a delayed ACK
    /// (40 ms and more) on every such frame.
    hold: usize,
}

/// The connection's maximum segment size (TCP_MAXSEG; 64 KiB, loopback's,
/// when the socket does not say).
fn segment_size(fd: RawFd) -> usize {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is the connection's socket; value and len point to a
    // c_int and its size, which getsockopt writes at most.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 && value > 0 {
        value as usize
    } else {
        64 * 1024
    }
}

/// The most a TLS layer may hold undelivered while it waits: one record of
/// 2^14 plaintext bytes plus the most expansion TLS allows and its header.
const TLS_RECORD_SLACK: usize = 16_384 + 256 + 5;

/// Frames missing less than this (beyond `hold`) are read as they come:
/// the mark would save few wake-ups for the system calls it costs.
const LOW_WATER_MIN: usize = 32 * 1024;

/// The highest mark: a wake-up per 256 KiB is already few, and the kernel
/// grows the receive buffer to twice the mark.
const LOW_WATER_MAX: usize = 256 * 1024;

impl LowWater {
    /// The mark to hold while `missing` bytes of the frame are still owed,
    /// or `None` to keep the current one. It only moves down as the frame
    /// fills (halving the room each time, so a frame costs a handful of
    /// calls), and never above what is owed less `hold`.
    fn next(&self, missing: usize) -> Option<usize> {
        let owed = missing.saturating_sub(self.hold);
        if owed < LOW_WATER_MIN {
            return (self.current != 1).then_some(1);
        }
        if self.current == 1 {
            return Some(owed.min(LOW_WATER_MAX));
        }
        (self.current > owed).then_some(owed / 2)
    }

    /// Sets the mark; false when the socket refused it.
    fn set(&mut self, mark: usize) -> bool {
        let value = mark.max(1) as libc::c_int;
        // SAFETY: `fd` is the connection's socket, open for as long as the
        // connection (and so this reader) lives; the option value is a
        // c_int passed by pointer with its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        self.current = mark.max(1);
        rc == 0
    }
}

impl FrameReader {
    pub fn new(max: usize) -> Self {
        FrameReader {
            max,
            buf: BytesMut::new(),
            low_water: None,
        }
    }

    /// Lets the reader hold wake-ups back while a large frame arrives, by
    /// the receive low-water mark of `fd`, the connection's socket.
    pub fn with_low_water(mut self, fd: RawFd) -> Self {
        self.low_water = Some(LowWater {
            fd,
            current: 1,
            hold: TLS_RECORD_SLACK + segment_size(fd),
        });
        self
    }

    /// Changes the largest frame accepted from the next one on (a
    /// connection that logged in may send full-size requests).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Reads one whole frame's payload. `Closed` on a clean EOF between frames.
    pub async fn read<R: ReadReady>(&mut self, r: &mut R) -> Result<Bytes, FrameError> {
        while self.buf.len() < 4 {
            if self.fill(r, FIRST_READ).await? == 0 {
                return if self.buf.is_empty() {
                    Err(FrameError::Closed)
                } else {
                    Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if size < 0 {
            return Err(FrameError::BadSize(size));
        }
        let size = size as usize;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: self.max,
            });
        }
        let total = 4 + size;
        self.buf
            .reserve(total.min(UPFRONT).saturating_sub(self.buf.len()));
        while self.buf.len() < total {
            let missing = total - self.buf.len();
            self.mark_missing(missing);
            if self.fill(r, missing.min(READ_CHUNK)).await? == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        self.mark_missing(0);
        let mut frame = self.buf.split_to(total);
        let _ = frame.split_to(4);
        if self.buf.is_empty() {
            // The frame keeps what it needs of the allocation; the reader
            // lets go of the rest until the next frame comes.
            self.buf = BytesMut::new();
        }
        Ok(frame.freeze())
    }

    /// Reads what the stream has, into room for `want` more bytes; 0 at
    /// EOF. With nothing buffered it allocates only once the stream is
    /// readable, and lets go again when the read finds nothing after all.
    async fn fill<R: ReadReady>(&mut self, r: &mut R, want: usize) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            if self.buf.is_empty() {
                ready!(r.poll_read_ready(cx))?;
            }
            self.buf.reserve(want);
            let read = std::pin::pin!(r.read_buf(&mut self.buf)).poll(cx);
            if read.is_pending() && self.buf.is_empty() {
                // Readiness was stale (or the TLS layer holds half a
                // record): the read waits, registered, without our buffer.
                self.buf = BytesMut::new();
            }
            read
        })
        .await
    }

    /// Moves the low-water mark for a frame that still misses `missing`
    /// bytes (0: between frames).
    fn mark_missing(&mut self, missing: usize) {
        if let Some(lw) = &mut self.low_water {
            if let Some(mark) = lw.next(missing) {
                if !lw.set(mark) {
                    // A refusal only costs wake-ups: read as before.
                    self.low_water = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_refuses_oversized() {
        let mut data = Vec::new();
        for payload in [&b"hello"[..], b"", b"world!"] {
            data.extend_from_slice(&(payload.len() as i32).to_be_bytes());
            data.extend_from_slice(payload);
        }
        data.extend_from_slice(&(1_000_000i32).to_be_bytes());
        let mut r = &data[..];
        let mut fr = FrameReader::new(1024);
        assert_eq!(&fr.read(&mut r).await.unwrap()[..], b"hello");
        assert_eq!(&fr.read(&mut r).await.unwrap()[..], b"");
        assert_eq!(&fr.read(&mut r).await.unwrap()[..], b"world!");
        assert!(matches!(
            fr.read(&mut r).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg = &(-5i32).to_be_bytes()[..];
        assert!(matches!(
            FrameReader::new(10).read(&mut neg).await,
            Err(FrameError::BadSize(-5))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            FrameReader::new(10).read(&mut empty).await,
            Err(FrameError::Closed)
        ));
    }

    /// The mark never asks for more than the frame still owes beyond one
    /// TLS record, only moves down while a frame fills, costs a handful of
    /// changes per frame, and is back to 1 between frames.
    #[test]
    fn low_water_stays_below_what_is_owed() {
        let hold = TLS_RECORD_SLACK + 65_483;
        let mut lw = LowWater {
            fd: -1,
            current: 1,
            hold,
        };
        let mut changes = 0;
        let mut missing = 1_048_576usize;
        while missing > 0 {
            if let Some(mark) = lw.next(missing) {
                assert!(mark <= lw.current || lw.current == 1);
                lw.current = mark.max(1);
                changes += 1;
            }
            assert!(
                lw.current == 1 || lw.current + hold <= missing,
                "mark {} with {missing} missing",
                lw.current
            );
            assert!(lw.current <= LOW_WATER_MAX);
            missing = missing.saturating_sub(1046);
        }
        if let Some(mark) = lw.next(0) {
            lw.current = mark;
            changes += 1;
        }
        assert_eq!(lw.current, 1);
        assert!((2..=8).contains(&changes), "{changes} changes");
        // Small frames never touch the socket.
        let lw = LowWater {
            fd: -1,
            current: 1,
            hold,
        };
        assert_eq!(lw.next(hold + LOW_WATER_MIN - 1), None);
        assert_eq!(lw.next(0), None);
    }

    /// A large frame written a little at a time, with pauses, over a real
    /// socket whose mark the reader moves: it arrives whole, then the
    /// next small frame is read at once (the mark is back to 1), and a
    /// socket that refuses the option only loses the optimisation.
    #[tokio::test]
    async fn large_frame_trickled_over_a_socket_arrives() {
        use tokio::io::AsyncWriteExt;
        use tokio::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&(sent.len() as i32).to_be_bytes())
                .await
                .unwrap();
            for (i, chunk) in sent.chunks(1024).enumerate() {
                s.write_all(chunk).await.unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            s.write_all(&3i32.to_be_bytes()).await.unwrap();
            s.write_all(b"end").await.unwrap();
            // Held open: the small frame must arrive without EOF's help.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let mut fr = FrameReader::new(1 << 20).with_low_water(std::os::fd::AsRawFd::as_raw_fd(&s));
        let deadline = std::time::Duration::from_secs(20);
        let got = tokio::time::timeout(deadline, fr.read(&mut s))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &body[..]);
        assert_eq!(fr.low_water.as_ref().map(|l| l.current), Some(1));
        let got = tokio::time::timeout(deadline, fr.read(&mut s))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], b"end");
        writer.abort();

        let mut refused = FrameReader::new(1 << 20).with_low_water(-1);
        let mut data = (300_000i32).to_be_bytes().to_vec();
        data.resize(4 + 300_000, 7);
        assert_eq!(refused.read(&mut &data[..]).await.unwrap().len(), 300_000);
        assert!(refused.low_water.is_none());
    }

    /// A sender with Nagle's algorithm on (librdkafka's default) holds the
    /// short tail of a frame back while what it sent before is
    /// unacknowledged, and a receiver waiting under its mark reads nothing,
    /// so frames written one write each must still arrive without waiting
    /// for delayed ACKs (40 ms and more each).
    #[tokio::test]
    async fn nagle_sender_does_not_stall_under_the_mark() {
        use tokio::io::AsyncWriteExt;
        use tokio::net::{TcpListener, TcpStream};
        const FRAMES: usize = 40;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(false).unwrap();
            for i in 0..FRAMES {
                // Sizes that leave tails of every length after the
                // segments before them.
                let len = 60_000 + i * 7_919;
                let mut frame = (len as i32).to_be_bytes().to_vec();
                frame.resize(4 + len, 5);
                s.write_all(&frame).await.unwrap();
                // The next frame only once this one was read (a reply).
                let mut ack = [0u8; 1];
                tokio::io::AsyncReadExt::read_exact(&mut s, &mut ack)
                    .await
                    .unwrap();
            }
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let mut fr = FrameReader::new(1 << 20).with_low_water(std::os::fd::AsRawFd::as_raw_fd(&s));
        let started = std::time::Instant::now();
        for i in 0..FRAMES {
            let got = fr.read(&mut s).await.unwrap();
            assert_eq!(got.len(), 60_000 + i * 7_919);
            s.write_all(&[1]).await.unwrap();
        }
        writer.await.unwrap();
        // A stall per frame would take FRAMES x 40 ms = 1.6 s at least.
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_millis(1200),
            "{FRAMES} frames took {took:?}"
        );
    }

    /// Between frames, a connection over TLS holds no buffer: neither the
    /// frame reader's nor the TLS layer's, after small and large frames
    /// and a large response alike.
    #[tokio::test]
    async fn waiting_for_a_frame_holds_no_buffers_over_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut server, mut client) =
            crate::tls::stream::tests::pair(&rustls::version::TLS13).await;
        let mut fr = FrameReader::new(1 << 20);
        for size in [10usize, 300_000] {
            let mut frame = (size as i32).to_be_bytes().to_vec();
            frame.resize(4 + size, 3);
            client.write_all(&frame).await.unwrap();
            client.flush().await.unwrap();
            let got = fr.read(&mut server).await.unwrap();
            assert_eq!(got.len(), size);
            server.write_all(&vec![1u8; 70_000]).await.unwrap();
            server.flush().await.unwrap();
            client.read_exact(&mut vec![0u8; 70_000]).await.unwrap();
            let next = fr.read(&mut server);
            let waited = tokio::time::timeout(std::time::Duration::from_millis(200), next).await;
            assert!(waited.is_err(), "a frame out of nothing");
            assert_eq!(fr.buf.capacity(), 0, "frame buffer held while idle");
            assert_eq!(server.buffer_capacity(), 0, "TLS buffers held while idle");
        }
    }
}
