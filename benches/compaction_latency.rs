//! What the log cleaner costs everyone else (issue #16, item 2: "produce
//! and fetch latency while the cleaner runs stay within 2x of an idle
//! broker's"): produce latency (acks=all and acks=1) and Fetch round trips
//! on a plain topic `ok`, first while the cleaner has nothing to do, then
//! while it compacts a large topic `big`, then the same with the cleaner's
//! I/O throttled (`log.cleaner_io_max_bytes_per_second`).
//!
//! Each run starts an in-process broker on PLAINTEXT (cleaner enabled,
//! backoff 100 ms) and fills `big` (keyed 1 KiB records, every key written
//! many times, 4 MiB segments) while `big` is still `cleanup.policy=delete`,
//! so the cleaner stays idle with the same data on disk and in the page
//! cache. The idle window is measured then. `big` is then switched to
//! `compact` (min.cleanable.dirty.ratio 0.01) and the busy window runs from
//! the cleaner's pick-up until its pass over every partition of `big` ends
//! (or the window's length is reached), so every busy sample was taken
//! while the cleaner worked. Throttled, the window starts when the rewrite
//! does (the map phase before it only reads, at the throttle's rate). A monitor thread watches the partition
//! directories (`.cleaned` files, segment counts) and the cleaner's
//! checkpoint, and the cleaner's own "log cleaned" lines are printed.
//!
//! Traffic in each window, all at once: one librdkafka producer per acks
//! setting at a fixed rate of 1 KiB records to `ok` (delivery-report
//! latency), and one raw-protocol Fetch loop per topic (`ok`, and the tail
//! of `big`, the partition being cleaned) at a fixed rate, each Fetch
//! (max_wait 0) asking for the last ~32 records.
//!
//! Run: `cargo bench --bench compaction_latency`. Prints figures; asserts
//! nothing. Knobs (environment): CBENCH_SECS (each window's length, default
//! 10), CBENCH_RATE (produce records/s per acks setting, default 1000),
//! CBENCH_FETCH_RATE (Fetches/s per topic, default 200), CBENCH_BIG_MB
//! (data written to `big`, default 400), CBENCH_KEYS (distinct keys,
//! default 100000), CBENCH_BIG_PARTITIONS (default 1), CBENCH_THROTTLE_MBS
//! (the throttled run's limit in MB/s, default 20; 0 skips that run),
//! CBENCH_LINGER_MS (the measuring producers' linger.ms, default 0),
//! RUST_LOG (default `portcullis::log::cleaner=info`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use delivery::{flush, send_at_rate, send_blocking, LatencyContext, Pace};
use portcullis::config::Config;
use portcullis::log::Partition;

// Shared with the bench crate, which depends on this one (so it cannot be
// a dependency here).
#[path = "../bench/src/delivery.rs"]
mod delivery;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VALUE_BYTES: usize = 1024;
const SEGMENT_BYTES: u64 = 4 << 20;

struct Knobs {
    secs: u64,
    rate: f64,
    fetch_rate: f64,
    big_mb: u64,
    keys: u64,
    big_partitions: i32,
    throttle_mbs: u64,
}

// ---------------------------------------------------------------- the broker

fn config(dir: &Path, throttle: u64) -> Config {
    // Parsed from a minimal document so that sections this bench does not
    // care about keep their defaults; what matters here is set by field.
    let mut c =
        Config::parse("listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nops:\n  address: 127.0.0.1:0\n")
            .expect("minimal config");
    c.data_dir = dir.join("data");
    c.acl.file = dir.join("acls.yaml");
    c.super_users = vec!["User:admin".into()];
    // The audit log is another writer and fsyncer; off, so the figures
    // show the cleaner alone.
    c.audit.enabled = false;
    c.log.cleaner_enabled = true;
    // Picks `big` up 100 ms after it turns compact, not 15 s.
    c.log.cleaner_backoff_ms = 100;
    c.log.cleaner_io_max_bytes_per_second = throttle;
    c
}

const ACLS: &str = "\
rules:
  - {allow: \"User:ANONYMOUS\", operations: [write, read, describe], topic: ok}
  - {allow: \"User:ANONYMOUS\", operations: [write, read, describe], topic: big}
";

fn overrides(policy: &str) -> BTreeMap<String, String> {
    [
        ("cleanup.policy", policy.to_string()),
        ("segment.bytes", SEGMENT_BYTES.to_string()),
        ("min.cleanable.dirty.ratio", "0.01".to_string()),
        ("retention.ms", "-1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Writes `big`: every key once per round, rounds until `mb` MB.
fn fill_big(bootstrap: &str, k: &Knobs) -> (u64, Duration) {
    let p: BaseProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("fill producer");
    let records = k.big_mb * 1_000_000 / VALUE_BYTES as u64;
    let mut value = vec![b'v'; VALUE_BYTES];
    let started = Instant::now();
    for i in 0..records {
        let key = format!("key-{:08}", i % k.keys);
        // Round number in the value: the versions differ, as real updates do.
        value[..8].copy_from_slice(&(i / k.keys).to_be_bytes());
        let rec = BaseRecord::to("big")
            .key(key.as_bytes())
            .payload(&value[..]);
        send_blocking(&p, rec).expect("fill big");
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    flush(&p, Duration::from_secs(120)).expect("flush big");
    (records, started.elapsed())
}

// ------------------------------------------------------------------ produce

fn producer(bootstrap: &str, acks: &str) -> BaseProducer<LatencyContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "linger.ms",
            std::env::var("CBENCH_LINGER_MS").unwrap_or("0".into()),
        )
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create_with_context(LatencyContext::new().expect("histogram"))
        .expect("producer")
}

/// Open-loop produce at `rate` records/s to `ok` until `end` or `stop`;
/// the latency histogram (µs) of this window and its failures.
fn produce(
    p: &BaseProducer<LatencyContext>,
    rate: f64,
    end: Instant,
    stop: &AtomicBool,
) -> (Histogram<u64>, u64) {
    p.context().take();
    let value = [b'x'; VALUE_BYTES];
    let pace = Pace {
        rate,
        end,
        poll: Duration::from_micros(500),
    };
    send_at_rate(p, "ok", Some(0), &value, pace, || {
        stop.load(Ordering::Relaxed)
    })
    .expect("produce");
    let _ = flush(p, Duration::from_secs(60));
    p.context().take()
}

// -------------------------------------------------------------------- fetch

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

const FETCH_VERSION: i16 = 12;

fn fetch_frame(corr: i32, topic: &str, offset: i64) -> Vec<u8> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(64 << 10)])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("compaction-latency")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(
            &mut buf,
            ApiKey::Fetch.request_header_version(FETCH_VERSION),
        )
        .unwrap();
    req.encode(&mut buf, FETCH_VERSION).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// One Fetch round trip: (high watermark, bytes of records returned).
fn fetch_once(s: &mut TcpStream, corr: i32, topic: &str, offset: i64) -> (i64, usize) {
    s.write_all(&fetch_frame(corr, topic, offset))
        .expect("send fetch");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("fetch response length");
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body).expect("fetch response");
    let mut buf = Bytes::from(body);
    ResponseHeader::decode(
        &mut buf,
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    )
    .expect("fetch response header");
    let resp = FetchResponse::decode(&mut buf, FETCH_VERSION).expect("fetch response body");
    let part = &resp.responses[0].partitions[0];
    assert_eq!(
        part.error_code, 0,
        "fetch {topic}: error {}",
        part.error_code
    );
    (
        part.high_watermark,
        part.records.as_ref().map_or(0, |r| r.len()),
    )
}

/// Fetches the last ~32 records of `topic`-0 at `rate` per second until
/// `end` or `stop`: round-trip latency (µs) and bytes returned. A Fetch
/// slower than the period delays the next (closed loop).
fn fetch_loop(
    addr: &str,
    topic: &str,
    rate: f64,
    end: Instant,
    stop: &AtomicBool,
) -> (Histogram<u64>, u64) {
    let mut s = TcpStream::connect(addr).expect("fetch connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut hw, _) = fetch_once(&mut s, 0, topic, 0);
    let (mut corr, mut bytes) = (1, 0u64);
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut n = 0u32;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let due = start + period * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        let (w, b) = fetch_once(&mut s, corr, topic, (hw - 32).max(0));
        h.record((t.elapsed().as_micros() as u64).max(1)).unwrap();
        hw = w;
        bytes += b as u64;
        corr += 1;
        n += 1;
    }
    (h, bytes)
}

// ------------------------------------------------------------------ windows

#[derive(Clone)]
struct Window {
    ack_all: Histogram<u64>,
    ack_one: Histogram<u64>,
    fetch_ok: Histogram<u64>,
    fetch_big: Histogram<u64>,
    failed: u64,
    secs: f64,
}

/// All four traffic sources at once until `end` or `stop`.
fn window(
    bootstrap: &str,
    producers: &[BaseProducer<LatencyContext>; 2],
    k: &Knobs,
    end: Instant,
    stop: &AtomicBool,
) -> Window {
    let started = Instant::now();
    let (all, one, fok, fbig) = std::thread::scope(|sc| {
        let all = sc.spawn(|| produce(&producers[0], k.rate, end, stop));
        let one = sc.spawn(|| produce(&producers[1], k.rate, end, stop));
        let fok = sc.spawn(|| fetch_loop(bootstrap, "ok", k.fetch_rate, end, stop));
        let fbig = sc.spawn(|| fetch_loop(bootstrap, "big", k.fetch_rate, end, stop));
        (
            all.join().unwrap(),
            one.join().unwrap(),
            fok.join().unwrap(),
            fbig.join().unwrap(),
        )
    });
    Window {
        ack_all: all.0,
        ack_one: one.0,
        fetch_ok: fok.0,
        fetch_big: fbig.0,
        failed: all.1 + one.1,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn line(what: &str, h: &Histogram<u64>) -> String {
    format!(
        "{what:<28} p50 {:7.3} ms  p99 {:7.3} ms  p99.9 {:7.3} ms  max {:8.3} ms  (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

fn print_window(label: &str, w: &Window) {
    println!(
        "[{label}] window {:.1} s, {} produce failures",
        w.secs, w.failed
    );
    println!("  {}", line("produce ok acks=all", &w.ack_all));
    println!("  {}", line("produce ok acks=1", &w.ack_one));
    println!("  {}", line("fetch ok (tail)", &w.fetch_ok));
    println!("  {}", line("fetch big (tail)", &w.fetch_big));
}

fn ratios(label: &str, idle: &Window, busy: &Window) {
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64;
    let r = |b: &Histogram<u64>, i: &Histogram<u64>, p: f64| q(b, p) / q(i, p).max(1.0);
    println!("[{label}] busy / idle (target <= 2x):");
    for (what, i, b) in [
        ("produce ok acks=all", &idle.ack_all, &busy.ack_all),
        ("produce ok acks=1", &idle.ack_one, &busy.ack_one),
        ("fetch ok (tail)", &idle.fetch_ok, &busy.fetch_ok),
        ("fetch big (tail)", &idle.fetch_big, &busy.fetch_big),
    ] {
        println!(
            "  {what:<28} p50 x{:.2}  p99 x{:.2}  p99.9 x{:.2}  max x{:.2}",
            r(b, i, 0.5),
            r(b, i, 0.99),
            r(b, i, 0.999),
            b.max() as f64 / i.max().max(1) as f64
        );
    }
}

// ----------------------------------------------------------------- monitor

/// What the monitor saw of the cleaner during the busy window.
#[derive(Default, Debug)]
struct Seen {
    /// When a `.cleaned` file first appeared (the rewrite began).
    first_cleaned: Option<Duration>,
    /// When every partition of `big` had finished its first pass.
    done: Option<Duration>,
    /// Samples that saw a `.cleaned` file.
    samples_cleaning: u64,
    samples: u64,
    segments_before: usize,
    segments_after: usize,
}

fn cleaned_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".cleaned"))
                .count()
        })
        .unwrap_or(0)
}

/// Polls every 20 ms until `quit`; sets `stop` once every partition has
/// finished a pass, which ends the busy window early.
fn monitor(parts: &[Arc<Partition>], stop: &AtomicBool, quit: &AtomicBool, seen: &Mutex<Seen>) {
    let t0 = Instant::now();
    let passes0: Vec<u64> = parts
        .iter()
        .map(|p| p.cleaner_checkpoint().passes)
        .collect();
    seen.lock().unwrap().segments_before = parts.iter().map(|p| p.segment_count()).sum();
    while !quit.load(Ordering::Relaxed) {
        let cleaning = parts.iter().map(|p| cleaned_files(p.dir())).sum::<usize>() > 0;
        let done = parts
            .iter()
            .zip(&passes0)
            .all(|(p, p0)| p.cleaner_checkpoint().passes > *p0);
        {
            let mut s = seen.lock().unwrap();
            s.samples += 1;
            if cleaning {
                s.samples_cleaning += 1;
                s.first_cleaned.get_or_insert(t0.elapsed());
            }
            if done && s.done.is_none() {
                s.done = Some(t0.elapsed());
                stop.store(true, Ordering::Relaxed);
            }
            s.segments_after = parts.iter().map(|p| p.segment_count()).sum();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU seconds and bytes read / written (`rchar`, `wchar`: through the
/// page cache or not) of this process's `log-cleaner` threads, from
/// /proc: what the cleaner really did during a window.
#[derive(Default, Clone, Copy)]
struct CleanerUsage {
    cpu_s: f64,
    read: u64,
    written: u64,
}

fn cleaner_usage() -> CleanerUsage {
    let mut u = CleanerUsage::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return u;
    };
    for t in tasks.filter_map(|e| e.ok()) {
        let dir = t.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "log-cleaner" {
            continue;
        }
        // utime and stime, fields 14 and 15, after the ")" that ends comm.
        if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace()
                .collect();
            let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            // USER_HZ is 100 on Linux.
            u.cpu_s += ticks as f64 / 100.0;
        }
        if let Ok(io) = std::fs::read_to_string(dir.join("io")) {
            for l in io.lines() {
                let v = |p: &str| l.strip_prefix(p).and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(v) = v("rchar:") {
                    u.read += v;
                }
                if let Some(v) = v("wchar:") {
                    u.written += v;
                }
            }
        }
    }
    u
}

fn print_usage(label: &str, before: CleanerUsage, after: CleanerUsage, secs: f64) {
    println!(
        "[{label}] log-cleaner thread: {:.2} CPU s in {secs:.1} s ({:.0}% of a core), read {:.0} MB/s, wrote {:.0} MB/s",
        after.cpu_s - before.cpu_s,
        100.0 * (after.cpu_s - before.cpu_s) / secs,
        (after.read - before.read) as f64 / 1e6 / secs,
        (after.written - before.written) as f64 / 1e6 / secs
    );
}

/// Writes every dirty page out, so that the kernel's writeback of what
/// the fill left behind does not land in the windows (an fsync of `ok`
/// would wait for it: ext4's ordered mode commits data before metadata).
fn sync_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

// --------------------------------------------------------------------- runs

fn run(k: &Knobs, throttle: u64) -> (Window, Window) {
    let label = if throttle == 0 {
        "unthrottled".to_string()
    } else {
        format!("throttled {} MB/s", throttle / 1_000_000)
    };
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "portcullis-compaction-latency-{}-{throttle}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("acls.yaml"), ACLS).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(portcullis::start::start(config(&dir, throttle)))
        .expect("start the broker");
    let logs = running.broker.logs.clone();
    // A partition spawns its group-commit task when it is created.
    let _rt_guard = rt.enter();
    // Created directly: the bench's principal may not create topics.
    logs.create_topic("ok", 1, BTreeMap::new(), false)
        .expect("create ok");
    // `delete` while it fills: the cleaner leaves it alone until the
    // switch below, so the idle window has the same data on disk.
    let big = logs
        .create_topic("big", k.big_partitions, overrides("delete"), false)
        .expect("create big")
        .expect("big created");
    let l = &running.listeners[0];
    let bootstrap = format!("{}:{}", l.advertised_host, l.advertised_port);

    let (records, took) = fill_big(&bootstrap, k);
    let parts = big.partitions();
    let bytes: u64 = parts.iter().map(|p| p.size_bytes()).sum();
    let segs: usize = parts.iter().map(|p| p.segment_count()).sum();
    println!(
        "[{label}] big: {records} records of {VALUE_BYTES} B over {} keys in {:.1} s, {:.0} MB in {segs} segments",
        k.keys,
        took.as_secs_f64(),
        bytes as f64 / 1e6
    );

    let t = Instant::now();
    sync_page_cache();
    println!(
        "[{label}] sync of the page cache after the fill: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let producers = [producer(&bootstrap, "all"), producer(&bootstrap, "1")];
    let never = AtomicBool::new(false);
    // Warm-up: connections, metadata, first appends to `ok`.
    let _ = window(
        &bootstrap,
        &producers,
        k,
        Instant::now() + Duration::from_secs(1),
        &never,
    );

    // 1. Idle: nothing compacted, so the cleaner only wakes every 100 ms.
    let u0 = cleaner_usage();
    let idle = window(
        &bootstrap,
        &producers,
        k,
        Instant::now() + Duration::from_secs(k.secs),
        &never,
    );
    print_window(&format!("{label}, cleaner idle"), &idle);
    print_usage(
        &format!("{label}, cleaner idle"),
        u0,
        cleaner_usage(),
        idle.secs,
    );

    // 2. Busy: `big` turns compact; the cleaner picks it up within its
    // 100 ms backoff (its dirty ratio is 1.0: never cleaned).
    big.set_overrides(overrides("compact"), &logs.defaults())
        .expect("big -> compact");
    let mut switched = Instant::now();
    if throttle > 0 {
        // Throttled, the map phase alone reads all of `big` at the
        // throttle's rate; the window starts with the rewrite (the first
        // `.cleaned` file), where the cleaner writes and fsyncs.
        let deadline = switched + Duration::from_secs(300);
        while Instant::now() < deadline
            && parts.iter().map(|p| cleaned_files(p.dir())).sum::<usize>() == 0
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "[{label}] map phase: {:.1} s; the busy window starts with the rewrite",
            switched.elapsed().as_secs_f64()
        );
        switched = Instant::now();
    }
    let u0 = cleaner_usage();
    let (stop, quit) = (AtomicBool::new(false), AtomicBool::new(false));
    let seen = Mutex::new(Seen::default());
    let busy = std::thread::scope(|sc| {
        sc.spawn(|| monitor(&parts, &stop, &quit, &seen));
        let w = window(
            &bootstrap,
            &producers,
            k,
            switched + Duration::from_secs(k.secs),
            &stop,
        );
        quit.store(true, Ordering::Relaxed);
        (w, cleaner_usage())
    });
    let (busy, u1) = busy;
    let seen = seen.into_inner().unwrap();
    print_window(&format!("{label}, cleaner busy"), &busy);
    print_usage(&format!("{label}, cleaner busy"), u0, u1, busy.secs);
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "[{label}] cleaner during the busy window: first .cleaned file at {}, all passes done at {} \
         (window {:.1} s), .cleaned file present in {}/{} samples, segments {} -> {}",
        secs(seen.first_cleaned),
        secs(seen.done),
        busy.secs,
        seen.samples_cleaning,
        seen.samples,
        seen.segments_before,
        seen.segments_after,
    );
    for p in &parts {
        let c = p.cleaner_checkpoint();
        if c.passes > 0 {
            println!(
                "[{label}] big-{} pass: {} ms, {:.0} MB -> {:.0} MB ({:.0} MB/s of input)",
                p.index,
                c.last_pass_ms,
                c.last_bytes_before as f64 / 1e6,
                c.last_bytes_after as f64 / 1e6,
                c.last_bytes_before as f64 / 1e3 / c.last_pass_ms.max(1) as f64
            );
        } else {
            println!(
                "[{label}] big-{} pass still running when the window ended",
                p.index
            );
        }
    }
    ratios(&label, &idle, &busy);

    drop(producers);
    drop(parts);
    drop(big);
    drop(logs);
    rt.block_on(running.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
    (idle, busy)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "portcullis::log::cleaner=info".into()),
        )
        .init();
    let k = Knobs {
        secs: env_or("CBENCH_SECS", 10),
        rate: env_or("CBENCH_RATE", 1000.0),
        fetch_rate: env_or("CBENCH_FETCH_RATE", 200.0),
        big_mb: env_or("CBENCH_BIG_MB", 400),
        keys: env_or("CBENCH_KEYS", 100_000),
        big_partitions: env_or("CBENCH_BIG_PARTITIONS", 1),
        throttle_mbs: env_or("CBENCH_THROTTLE_MBS", 20),
    };
    println!(
        "compaction latency bench: produce {:.0} records/s x {VALUE_BYTES} B to `ok` per acks setting \
         (all, 1; linger.ms=0), Fetch {:.0}/s of the tail of `ok` and of `big`, windows of {} s; \
         `big`: {} MB, {} keys, {} partition(s), segment.bytes {SEGMENT_BYTES}; {} cores",
        k.rate,
        k.fetch_rate,
        k.secs,
        k.big_mb,
        k.keys,
        k.big_partitions,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    run(&k, 0);
    if k.throttle_mbs > 0 {
        run(&k, k.throttle_mbs * 1_000_000);
    }
}
