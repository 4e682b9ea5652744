//! Kafka framing: a 4-byte big-endian size, then that many bytes.
//!
//! Memory per connection is bounded: a frame is only buffered after its size
//! passed the size check (`max_request_size`, or the much smaller
//! pre-login cap), and the buffer grows as bytes actually arrive rather than
//! being allocated up front from the claim.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

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

pub struct FrameReader {
    max: usize,
    buf: BytesMut,
}

impl FrameReader {
    pub fn new(max: usize) -> Self {
        FrameReader {
            max,
            // Small to start: most connections idle between small requests;
            // the buffer grows with the frames that actually arrive.
            buf: BytesMut::with_capacity(1024),
        }
    }

    /// Changes the largest frame accepted from the next one on (a
    /// connection that logged in may send full-size requests).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Reads one whole frame's payload. `Closed` on a clean EOF between frames.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Bytes, FrameError> {
        while self.buf.len() < 4 {
            if r.read_buf(&mut self.buf).await? == 0 {
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
        while self.buf.len() < total {
            let want = (total - self.buf.len()).min(READ_CHUNK);
            self.buf.reserve(want);
            if r.read_buf(&mut self.buf).await? == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let mut frame = self.buf.split_to(total);
        let _ = frame.split_to(4);
        Ok(frame.freeze())
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
}
