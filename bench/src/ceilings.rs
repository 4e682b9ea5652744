//! The machine's ceilings, measured in the same run as the broker: what
//! rustls moves over loopback, what one fdatasync costs, what appends
//! sharing fsyncs (group commit) can reach, and what the kernel spends to
//! take appended bytes into the page cache. Broker figures are printed as
//! ratios to these.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// MB/s of a single TLS 1.3 stream over loopback (rustls both ends).
pub fn tls_loopback_mb_s(dir: &std::path::Path, total_mb: usize) -> anyhow::Result<f64> {
    let certs = dir.join("ceiling-certs");
    portcullis::tls::init_certs(&certs, &[], &[], true)?;
    let settings =
        portcullis::tls::TlsSettings::new(certs.join("server.crt"), certs.join("server.key"));
    let handle = portcullis::tls::TlsAcceptorHandle::load(&settings)?;
    let server_cfg = handle.server_config();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(certs.join("ca.crt"))?;
    for c in portcullis::tls::pem::certs(&pem).map_err(anyhow::Error::msg)? {
        roots.add(c)?;
    }
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let bytes = total_mb * 1_000_000;
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let (tcp, _) = listener.accept()?;
        let conn = rustls::ServerConnection::new(server_cfg)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < bytes {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        s.write_all(b"k")?;
        s.flush()?;
        Ok(())
    });
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let conn = rustls::ClientConnection::new(client_cfg, name)?;
    let mut c = rustls::StreamOwned::new(conn, tcp);
    let chunk = vec![7u8; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        c.write_all(&chunk[..n])?;
        sent += n;
    }
    c.flush()?;
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack)?;
    let secs = start.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("TLS server thread panicked"))??;
    Ok(bytes as f64 / 1e6 / secs)
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// What appending to a log costs before any broker work: `total_mb` MB
/// written in 1 MiB writes to a new file, never synced (as an acks=1
/// append). Returns (MB/s, CPU ms per MB of the writing thread). On a
/// virtual machine whose memory the hypervisor hands out at first touch,
/// most of it is the kernel taking fresh pages into the page cache, which
/// every broker's appends pay alike.
pub fn page_cache_append(dir: &std::path::Path, total_mb: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("append-probe");
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![3u8; 1 << 20];
    let bytes = total_mb * 1_000_000;
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min(bytes - written);
        f.write_all(&chunk[..n])?;
        written += n;
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), thread_cpu() - cpu0);
    drop(f);
    let _ = std::fs::remove_file(path);
    let mb = bytes as f64 / 1e6;
    Ok((mb / secs, cpu.as_secs_f64() * 1000.0 / mb))
}

/// Latency of write(4 KiB) + fdatasync on the data disk.
pub fn fdatasync_latency(dir: &std::path::Path, n: usize) -> anyhow::Result<Histogram<u64>> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let block = vec![1u8; 4096];
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    let _ = std::fs::remove_file(path);
    Ok(h)
}

/// MB/s that `writers` threads appending `record` bytes each reach when one
/// flusher fsyncs for all of them (the best acks=all can do on this disk).
pub fn group_commit_mb_s(
    dir: &std::path::Path,
    writers: usize,
    record: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Condvar, Mutex};
    let path = dir.join("group-commit-probe");
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?,
    );
    let written = Arc::new(AtomicU64::new(0));
    let durable = Arc::new((Mutex::new(0u64), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (file, written, durable, stop) =
            (file.clone(), written.clone(), durable.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let target = written.load(Ordering::Acquire);
                if target > *durable.0.lock().unwrap_or_else(|p| p.into_inner()) {
                    let _ = file.sync_data();
                    *durable.0.lock().unwrap_or_else(|p| p.into_inner()) = target;
                    durable.1.notify_all();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    let total = Arc::new(AtomicU64::new(0));
    for _ in 0..writers {
        let (file, written, durable, total) = (
            file.clone(),
            written.clone(),
            durable.clone(),
            total.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let rec = vec![3u8; record];
            while Instant::now() < deadline {
                let _ = (&*file).write_all(&rec);
                let mine = written.fetch_add(record as u64, Ordering::AcqRel) + record as u64;
                let mut d = durable.0.lock().unwrap_or_else(|p| p.into_inner());
                while *d < mine {
                    d = durable.1.wait(d).unwrap_or_else(|p| p.into_inner());
                }
                total.fetch_add(record as u64, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64().max(secs * 0.5);
    stop.store(true, Ordering::Relaxed);
    let _ = flusher.join();
    let _ = std::fs::remove_file(path);
    Ok(total.load(Ordering::Relaxed) as f64 / 1e6 / elapsed)
}
