//! What policies cost allowed traffic: produce throughput with no policy
//! file against 1,000 rules loaded, in the same run (rounds alternate so
//! that machine noise falls on both alike).
//!
//! The broker runs in-process on a PLAINTEXT listener (`User:ANONYMOUS`,
//! allowed by the ACLs to write topic `bench`). The 1,000 rules are of every
//! kind and scope; 998 of them cover other principals or topics, and two
//! produce rules cover `bench` and allow what the producer sends (so the
//! batch headers of every request are read and checked).
//!
//! Run: `cargo bench --bench policy_cost`. Prints figures; asserts nothing.
//! Knobs: POLICY_BENCH_RECORDS (per round, default 300000),
//! POLICY_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use portcullis::config::Config;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ACLS: &str =
    "rules:\n  - {allow: \"User:ANONYMOUS\", operations: [write, describe], topic: bench}\n";

/// 1,000 rules: a mix of every kind over other principals and topics, and
/// two that cover `bench` and allow the bench's producer.
fn thousand_rules() -> String {
    let mut y = String::from("rules:\n");
    for i in 0..998 {
        let body = match i % 4 {
            0 => format!(
                "    principals: [\"User:team-{i}-*\"]\n    create_topic:\n      name_pattern: '^team-{i}-[a-z]+$'\n      partitions: {{min: 3, max: 64}}\n"
            ),
            1 => format!(
                "    topics: {{prefix: \"src-{i}-\"}}\n    produce:\n      acks: [all]\n      idempotence_required: true\n"
            ),
            2 => format!(
                "    topics: {{name: \"orders-{i}\"}}\n    produce:\n      compression: [zstd]\n      max_record_bytes: 1048576\n"
            ),
            _ => format!(
                "    principals: [\"User:svc-{i}\"]\n    consume:\n      group_id_pattern: '^svc-{i}-[a-z]+$'\n"
            ),
        };
        y.push_str(&format!("  - name: rule-{i}\n    action: block\n{body}"));
    }
    y.push_str(
        "  - name: bench-acks\n    action: block\n    topics: {name: bench}\n    produce:\n      acks: [all, 1]\n\
         \x20 - name: bench-codecs\n    action: audit\n    topics: {prefix: ben}\n    produce:\n      compression: [none, lz4]\n",
    );
    y
}

fn config(dir: &Path, policies: bool) -> Config {
    let mut c = Config::parse(
        "listeners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nops:\n  address: 127.0.0.1:0\n",
    )
    .expect("minimal config");
    c.data_dir = dir.join("data");
    c.acl.file = dir.join("acls.yaml");
    c.audit.file = dir.join("audit").join("audit.log");
    c.policy.file = dir.join("policies.yaml");
    if policies {
        std::fs::write(&c.policy.file, thousand_rules()).unwrap();
    }
    c
}

/// CPU seconds this process has used (broker and client together).
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Produces `records` x 1 KiB flat out; (MB/s, CPU ms per MB).
fn round(policies: bool, records: usize) -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-policy-bench-{}-{}",
        std::process::id(),
        policies
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("acls.yaml"), ACLS).unwrap();
    let cfg = config(&dir, policies);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(portcullis::start::start(cfg))
        .expect("start the broker");
    assert_eq!(
        running.broker.policies.snapshot().len(),
        if policies { 1000 } else { 0 }
    );
    rt.block_on(async {
        running
            .broker
            .logs
            .create_topic("bench", 1, Default::default(), false)
            .expect("create topic")
    });
    let l = &running.listeners[0];
    let p: BaseProducer = ClientConfig::new()
        .set(
            "bootstrap.servers",
            format!("{}:{}", l.advertised_host, l.advertised_port),
        )
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let value = vec![b'p'; 1024];
    let send = |n: usize| {
        for _ in 0..n {
            let mut rec = BaseRecord::<(), _>::to("bench").payload(&value);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        p.poll(Duration::from_millis(1));
                    }
                }
            }
        }
        p.flush(Duration::from_secs(120)).expect("flush");
    };
    send(20_000); // warm-up
    let (t0, c0) = (Instant::now(), cpu_secs());
    send(records);
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    let mb = (records * value.len()) as f64 / 1e6;
    drop(p);
    rt.block_on(running.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
    (mb / secs, cpu * 1000.0 / mb)
}

fn main() {
    let records: usize = env_or("POLICY_BENCH_RECORDS", 300_000);
    let rounds: usize = env_or("POLICY_BENCH_ROUNDS", 3);
    println!(
        "produce {records} x 1 KiB, acks=1, PLAINTEXT, in-process broker; CPU is broker + client"
    );
    let mut none = Vec::new();
    let mut loaded = Vec::new();
    for r in 0..rounds {
        let a = round(false, records);
        let b = round(true, records);
        println!(
            "round {r}: no policies {:.0} MB/s ({:.2} ms CPU/MB) | 1,000 rules {:.0} MB/s ({:.2} ms CPU/MB)",
            a.0, a.1, b.0, b.1
        );
        none.push(a);
        loaded.push(b);
    }
    let median = |v: &mut Vec<(f64, f64)>, f: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(|a, b| a.total_cmp(b));
        x[x.len() / 2]
    };
    let (n_mb, n_cpu) = (median(&mut none, |x| x.0), median(&mut none, |x| x.1));
    let (l_mb, l_cpu) = (median(&mut loaded, |x| x.0), median(&mut loaded, |x| x.1));
    println!(
        "median: no policies {n_mb:.0} MB/s, {n_cpu:.2} ms CPU/MB | 1,000 rules {l_mb:.0} MB/s, {l_cpu:.2} ms CPU/MB | throughput ratio {:.3}, CPU ratio {:.3}",
        l_mb / n_mb,
        l_cpu / n_cpu
    );
}
