//! Connection-level figures: full connects per second (TCP + TLS + SCRAM)
//! and broker memory per idle authenticated connection. The client side is
//! the broker's own client module (`portcullis::client`) with a cache of
//! the salted password (as a long-lived client library would keep), so the
//! figure is what the broker sustains, not what PBKDF2 on the client allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::client::{Connector, SaltedPasswordCache, Stream};
use tokio::io::AsyncWriteExt;

pub struct Target {
    pub addr: String,
    pub connector: Connector,
    pub user: String,
    pub password: String,
}

/// TCP, TLS and the SCRAM-SHA-512 login; the stream is ready for requests.
pub async fn connect_once(t: &Target, salted: &SaltedPasswordCache) -> anyhow::Result<Stream> {
    let mut c = t.connector.connect(&t.addr).await?;
    c.login_scram(&t.user, &t.password, Some(salted)).await?;
    Ok(c.into_stream())
}

/// Full connects (TCP + TLS + SCRAM) per second with `concurrency` loops.
pub async fn connects_per_second(
    t: Arc<Target>,
    concurrency: usize,
    secs: f64,
) -> anyhow::Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let salted = Arc::new(SaltedPasswordCache::default());
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (t, done, failed, salted) = (t.clone(), done.clone(), failed.clone(), salted.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match connect_once(&t, &salted).await {
                    Ok(mut s) => {
                        let _ = s.shutdown().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    ))
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// What `n` idle authenticated connections cost the broker.
pub struct IdleMemory {
    pub opened: usize,
    /// RSS growth per connection, bytes.
    pub rss_per: f64,
    /// Live heap growth per connection, bytes (a JVM, when measured).
    pub heap_per: Option<f64>,
}

/// Opens `n` authenticated connections and keeps them idle; returns the
/// broker's RSS growth per connection, and its live heap growth when
/// `heap` reads it (in KiB; a JVM's RSS is mostly heap it was given, so
/// RSS alone says little about what a connection holds).
pub async fn idle_memory_per_connection(
    t: Arc<Target>,
    broker_pid: u32,
    n: usize,
    heap: Option<&(dyn Fn() -> Option<u64> + Sync)>,
) -> anyhow::Result<IdleMemory> {
    let salted = Arc::new(SaltedPasswordCache::default());
    // Warm up allocator arenas and TLS state before the baseline.
    let mut held = Vec::with_capacity(n);
    for _ in 0..16 {
        held.push(connect_once(&t, &salted).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heap_now = || heap.and_then(|h| tokio::task::block_in_place(h));
    let heap_before = heap_now();
    let before = rss_kib(broker_pid).unwrap_or(0);
    let mut opened = 0;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut pending = Vec::new();
    for _ in 0..n {
        let (t, salted, sem) = (t.clone(), salted.clone(), sem.clone());
        pending.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            connect_once(&t, &salted).await
        }));
    }
    for p in pending {
        if let Ok(Ok(s)) = p.await {
            held.push(s);
            opened += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(broker_pid).unwrap_or(0);
    let heap_after = heap_now();
    let per = |before: u64, after: u64| {
        (after.saturating_sub(before) as f64 * 1024.0) / opened.max(1) as f64
    };
    let out = IdleMemory {
        opened,
        rss_per: per(before, after),
        heap_per: heap_before.zip(heap_after).map(|(b, a)| per(b, a)),
    };
    drop(held);
    Ok(out)
}

/// Raises this process's open-file limit to the hard limit (children
/// inherit it), so thousands of connections fit.
pub fn raise_fd_limit() -> u64 {
    portcullis::server::limits::raise_fd_limit().map_or(0, |(_, after)| after)
}
