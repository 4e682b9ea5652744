//! A byte relay in front of Kafka: the cost of one more hop between a
//! client and its broker, and nothing else. It parses nothing and moves
//! each connection's bytes both ways with `splice` (socket -> pipe ->
//! socket, never through user space), a blocking thread per direction, so
//! what it costs is what any gateway on this machine pays at the least:
//! the bound the gateway rows are read against.
//!
//! It runs as a process of its own (this program, `--relay LISTEN TARGET`),
//! so that its CPU is measured as the broker side's, as the gateway's is.
//! Kafka advertises the relay's address on the listener behind it
//! (`apache_kafka.rs`), so clients reach every broker through it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes one splice call may move (and the pipe's size).
const PIECE: usize = 1 << 20;

/// Accepts on `listen` and relays every connection to `target`; returns
/// only if the listener fails.
pub fn serve(listen: &str, target: &str) -> anyhow::Result<()> {
    let l = TcpListener::bind(listen)?;
    loop {
        let (client, _) = l.accept()?;
        let upstream = match TcpStream::connect(target) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("relay: cannot reach {target}: {e}");
                continue;
            }
        };
        for (src, dst) in [
            (client.try_clone()?, upstream.try_clone()?),
            (upstream, client),
        ] {
            let _ = src.set_nodelay(true);
            std::thread::spawn(move || pump(src, dst));
        }
    }
}

/// Moves `src`'s bytes to `dst` until `src` ends, then ends `dst`'s side.
fn pump(src: TcpStream, dst: TcpStream) {
    if let Err((e, moved)) = splice_all(&src, &dst) {
        if !moved && e.raw_os_error() == Some(libc::EINVAL) {
            // No splice between these two: copied through a buffer.
            let _ = copy_all(&src, &dst);
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
}

struct Pipe([libc::c_int; 2]);

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both ends are this pipe's own, closed once.
        unsafe {
            libc::close(self.0[0]);
            libc::close(self.0[1]);
        }
    }
}

fn check(n: libc::ssize_t) -> std::io::Result<usize> {
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// `Err` says whether any bytes had moved (then nothing else may move
/// the rest: some may be in the pipe).
fn splice_all(src: &TcpStream, dst: &TcpStream) -> Result<(), (std::io::Error, bool)> {
    let mut moved = false;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err((std::io::Error::last_os_error(), moved));
    }
    let pipe = Pipe(fds);
    // SAFETY: a valid pipe descriptor; a refused size keeps the default.
    unsafe { libc::fcntl(pipe.0[1], libc::F_SETPIPE_SZ, PIECE as libc::c_int) };
    let null = std::ptr::null_mut();
    loop {
        // SAFETY: valid descriptors, no offsets (sockets and pipes).
        let n = unsafe {
            libc::splice(
                src.as_raw_fd(),
                null,
                pipe.0[1],
                null,
                PIECE,
                libc::SPLICE_F_MOVE,
            )
        };
        let n = check(n).map_err(|e| (e, moved))?;
        if n == 0 {
            return Ok(());
        }
        moved = true;
        let mut left = n;
        while left > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    pipe.0[0],
                    null,
                    dst.as_raw_fd(),
                    null,
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            let m = check(m).map_err(|e| (e, moved))?;
            if m == 0 {
                return Err((std::io::ErrorKind::WriteZero.into(), moved));
            }
            left -= m;
        }
    }
}

fn copy_all(mut src: &TcpStream, mut dst: &TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n])?;
    }
}

/// The relay's process; killed when dropped.
pub struct RelayProcess {
    child: Child,
    pub addr: String,
}

impl RelayProcess {
    /// Starts `bench --relay listen target` and waits until it accepts.
    pub fn start(bench: &Path, listen: &str, target: &str) -> anyhow::Result<RelayProcess> {
        let child = Command::new(bench)
            .args(["--relay", listen, target])
            .stdin(Stdio::null())
            .spawn()?;
        let relay = RelayProcess {
            child,
            addr: listen.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(listen).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the relay never listened on {listen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(relay)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
