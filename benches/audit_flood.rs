//! What a flood of refused requests costs everyone else through the audit
//! log: produce latency on an allowed topic, first alone, then while
//! flooder threads hammer the broker with requests it denies (every denial
//! is an audit record, whatever `allow_level` says), plus the rate of
//! audit records written.
//!
//! The broker runs in-process on a PLAINTEXT listener (everyone is
//! `User:ANONYMOUS`), with ACLs that let ANONYMOUS use topic `ok` and
//! nothing else, and the audit log in a scratch directory.
//!
//! Run: `cargo bench --bench audit_flood`. Prints figures; asserts nothing.
//! Knobs (environment): AUDIT_BENCH_SECS (each measurement, default 5),
//! AUDIT_BENCH_RATE (produce records/s, default 1000), AUDIT_BENCH_THREADS
//! (flooders, default 4), AUDIT_BENCH_WHEN_FULL (block|drop, default block),
//! AUDIT_BENCH_QUEUE (queue_capacity, default the config default).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, MetadataRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

use delivery::{flush, send_at_rate, LatencyContext, Pace};
use portcullis::audit::sink::files_oldest_first;
use portcullis::audit::{AllowLevel, AuditConfig, WhenFull};
use portcullis::config::Config;

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

// ---------------------------------------------------------------- the broker

fn config(dir: &Path) -> Config {
    // Parsed from a minimal document so that sections this bench does not
    // care about keep their defaults as the config grows; everything that
    // matters here is then set field by field.
    let mut c =
        Config::parse("listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nops:\n  address: 127.0.0.1:0\n")
            .expect("minimal config");
    c.data_dir = dir.join("data");
    c.acl.file = dir.join("acls.yaml");
    c.super_users = vec!["User:admin".into()];
    c.audit = AuditConfig {
        enabled: true,
        file: dir.join("audit").join("audit.log"),
        // Denials are always recorded; allows of admin APIs only.
        allow_level: AllowLevel::Admin,
        when_full: match std::env::var("AUDIT_BENCH_WHEN_FULL").as_deref() {
            Ok("drop") => WhenFull::Drop,
            _ => WhenFull::Block,
        },
        queue_capacity: env_or("AUDIT_BENCH_QUEUE", AuditConfig::default().queue_capacity),
        // No rotation during the run: every record stays countable.
        max_file_bytes: 1 << 40,
        max_file_age_secs: 24 * 3600,
        keep_files: 10,
        stdout: false,
        topic: None,
        ..AuditConfig::default()
    };
    c
}

const ACLS: &str = "\
# ANONYMOUS may use topic `ok`; nothing else (default deny).
rules:
  - {allow: \"User:ANONYMOUS\", operations: [write, read, describe], topic: ok}
";

/// Audit records written so far (lines in every file of the log).
fn audit_lines(log: &Path) -> u64 {
    files_oldest_first(log)
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum()
}

// ------------------------------------------------------------------ flooders

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn frame<Q: Encodable>(api: ApiKey, version: i16, corr: i32, req: &Q) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("audit-flood")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// Alternately a Metadata and a Fetch (max_wait 0) for topic `denied`:
/// both refused with TOPIC_AUTHORIZATION_FAILED, one audit record each.
fn denied_request(corr: i32) -> Vec<u8> {
    if corr % 2 == 0 {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name("denied")))
            ]))
            .with_allow_auto_topic_creation(false);
        frame(ApiKey::Metadata, 12, corr, &req)
    } else {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("denied"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(0)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        frame(ApiKey::Fetch, 12, corr, &req)
    }
}

/// Keeps `WINDOW` denied requests in flight on one connection until
/// `stop`; counts answered requests.
fn flood(addr: String, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) {
    const WINDOW: i32 = 32;
    let mut s = match TcpStream::connect(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flooder: connect: {e}");
            return;
        }
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut corr = 0i32;
    for _ in 0..WINDOW {
        if s.write_all(&denied_request(corr)).is_err() {
            return;
        }
        corr += 1;
    }
    let mut len = [0u8; 4];
    let mut body = Vec::new();
    let mut outstanding = WINDOW;
    while outstanding > 0 {
        if s.read_exact(&mut len).is_err() {
            return;
        }
        body.resize(i32::from_be_bytes(len).max(0) as usize, 0);
        if s.read_exact(&mut body).is_err() {
            return;
        }
        answered.fetch_add(1, Ordering::Relaxed);
        outstanding -= 1;
        if !stop.load(Ordering::Relaxed) {
            if s.write_all(&denied_request(corr)).is_err() {
                return;
            }
            corr = corr.wrapping_add(1);
            outstanding += 1;
        }
    }
}

// ------------------------------------------------------------------ latency

fn producer(bootstrap: &str) -> BaseProducer<LatencyContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create_with_context(LatencyContext::new().expect("histogram"))
        .expect("producer")
}

/// Open-loop produce at `rate` records/s for `secs` on topic `ok`; returns
/// the latency histogram (µs) of this run and its failures.
fn measure(p: &BaseProducer<LatencyContext>, rate: f64, secs: u64) -> (Histogram<u64>, u64) {
    p.context().take();
    let value = [b'x'; 200];
    let end = Instant::now() + Duration::from_secs(secs);
    let pace = Pace {
        rate,
        end,
        poll: Duration::from_micros(500),
    };
    send_at_rate(p, "ok", Some(0), &value, pace, || false).expect("produce");
    let _ = flush(p, Duration::from_secs(60));
    p.context().take()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn report(what: &str, h: &Histogram<u64>, errors: u64, audit_per_s: f64, extra: &str) {
    println!(
        "{what:<34} p50 {:7.3} ms  p99 {:7.3} ms  p99.9 {:7.3} ms  max {:8.3} ms  ({} acked, {errors} failed)  audit {audit_per_s:9.0} records/s{extra}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    );
}

struct Knobs {
    secs: u64,
    rate: f64,
    threads: usize,
}

/// One broker, two measurements (alone, under flood). With `audit` false
/// the same flood hits a broker whose audit log is off: the difference is
/// what auditing the denials costs, beyond the flood's own CPU.
fn run(k: &Knobs, audit: bool) -> (Histogram<u64>, Histogram<u64>) {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "portcullis-audit-flood-{}-{}",
        std::process::id(),
        if audit { "on" } else { "off" }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("acls.yaml"), ACLS).unwrap();
    let mut cfg = config(&dir);
    cfg.audit.enabled = audit;
    let log = cfg.audit.file.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(portcullis::start::start(cfg))
        .expect("start the broker");
    // Created directly: the bench's principal may not create topics.
    rt.block_on(async {
        running
            .broker
            .logs
            .create_topic("ok", 1, Default::default(), false)
            .expect("create topic ok")
    });
    let l = &running.listeners[0];
    let bootstrap = format!("{}:{}", l.advertised_host, l.advertised_port);
    let label = if audit { "audit on " } else { "audit off" };

    let p = producer(&bootstrap);
    // Warm-up: connection, metadata, first appends.
    let _ = measure(&p, k.rate, 1);

    // 1. Alone.
    let before = (audit_lines(&log), Instant::now());
    let (alone, alone_errors) = measure(&p, k.rate, k.secs);
    let alone_audit = (audit_lines(&log) - before.0) as f64 / before.1.elapsed().as_secs_f64();
    report(
        &format!("[{label}] produce alone:"),
        &alone,
        alone_errors,
        alone_audit,
        "",
    );

    // 2. Under a flood of denied requests.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..k.threads)
        .map(|_| {
            let (addr, stop, answered) = (bootstrap.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || flood(addr, stop, answered))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let before = (
        audit_lines(&log),
        answered.load(Ordering::Relaxed),
        Instant::now(),
    );
    let (flooded, flooded_errors) = measure(&p, k.rate, k.secs);
    let elapsed = before.2.elapsed().as_secs_f64();
    let flood_audit = (audit_lines(&log) - before.0) as f64 / elapsed;
    let denied_per_s = (answered.load(Ordering::Relaxed) - before.1) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.join();
    }
    report(
        &format!("[{label}] produce under flood:"),
        &flooded,
        flooded_errors,
        flood_audit,
        &format!("  (denied requests answered {denied_per_s:.0}/s)"),
    );

    drop(p);
    rt.block_on(running.shutdown());
    if audit {
        let total = audit_lines(&log);
        let bytes: u64 = files_oldest_first(&log)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        // In drop mode, what the queue could not take is counted in
        // `audit_dropped` records.
        let dropped: u64 = files_oldest_first(&log)
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| {
                t.lines()
                    .filter(|l| l.contains("\"audit_dropped\""))
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter_map(|v| v["details"]["dropped"].as_u64())
                    .collect::<Vec<_>>()
            })
            .sum();
        println!(
            "[{label}] audit log: {total} records ({dropped} more dropped), {:.1} MB, {:.0} B/record",
            bytes as f64 / 1e6,
            bytes as f64 / total.max(1) as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    (alone, flooded)
}

fn main() {
    let k = Knobs {
        secs: env_or("AUDIT_BENCH_SECS", 5),
        rate: env_or("AUDIT_BENCH_RATE", 1000.0),
        threads: env_or("AUDIT_BENCH_THREADS", 4),
    };
    let probe = config(Path::new("/nonexistent"));
    println!(
        "audit flood bench: produce {:.0} records/s x 200 B (acks=1, linger.ms=0) for {} s per run, \
         {} flooder connections x 32 denied requests in flight, audit when_full={:?} queue_capacity={}, {} cores",
        k.rate,
        k.secs,
        k.threads,
        probe.audit.when_full,
        probe.audit.queue_capacity,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let (on_alone, on_flood) = run(&k, true);
    let (off_alone, off_flood) = run(&k, false);
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64;
    println!(
        "flood cost with audit:    p50 x{:.1}, p99 x{:.1}",
        q(&on_flood, 0.5) / q(&on_alone, 0.5).max(1.0),
        q(&on_flood, 0.99) / q(&on_alone, 0.99).max(1.0)
    );
    println!(
        "flood cost without audit: p50 x{:.1}, p99 x{:.1}",
        q(&off_flood, 0.5) / q(&off_alone, 0.5).max(1.0),
        q(&off_flood, 0.99) / q(&off_alone, 0.99).max(1.0)
    );
}
