//! Waiting until a stream can be read, without a buffer to read into.
//!
//! A connection that waits for its next request with a buffer allocated
//! carries that buffer for as long as it idles; readers that can wait for
//! readiness first allocate only once bytes are there.

use std::io;
use std::task::{Context, Poll};

use tokio::io::AsyncRead;

/// A stream that can say when a read would find something (bytes, EOF or
/// an error). A spurious `Ready` is allowed: the read that follows then
/// waits as usual.
pub trait ReadReady: AsyncRead + Unpin {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

/// Bytes in memory are always there (tests read frames from slices).
impl ReadReady for &[u8] {
    fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
