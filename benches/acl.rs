//! ACL fast path: authorize() latency with 100k rules, and the time to
//! reload (parse + validate + index) a 100k-rule ACL file.
//! Run: `cargo bench --bench acl`. Prints figures; asserts nothing.

use std::net::IpAddr;
use std::time::Instant;

use hdrhistogram::Histogram;
use portcullis::acl::file::AclFile;
use portcullis::acl::{AclSet, AclStore, Operation, ResourceType};

const RULES: usize = 100_000;

fn rules_file() -> String {
    let mut s = String::from("allow_everyone_if_no_acl_found: false\nrules:\n");
    for i in 0..RULES {
        let line = match i % 10 {
            0..=5 => format!("  - {{allow: \"User:u{}\", operations: [read, write], topic: \"topic-{i}\"}}\n", i % 1000),
            6 | 7 => format!("  - {{allow: \"User:u{}\", operations: [read], topic_prefix: \"team{}.\"}}\n", i % 1000, i % 5000),
            8 => format!("  - {{allow: \"User:u{}\", operations: [read], group: \"group-{i}\"}}\n", i % 1000),
            _ => format!("  - {{deny: \"User:u{}\", operations: [write], topic: \"topic-{}\", hosts: [\"10.0.0.0/8\"]}}\n", i % 1000, i - 9),
        };
        s.push_str(&line);
    }
    s
}

fn main() {
    let text = rules_file();
    let dir = std::env::temp_dir().join(format!("portcullis-acl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acls.yaml");
    std::fs::write(&path, &text).unwrap();

    // Reload: what the watcher does when the file changes.
    let store = AclStore::open(&path, vec!["User:admin".into()]).unwrap();
    let mut reloads = Histogram::<u64>::new(3).unwrap();
    for _ in 0..5 {
        let t = Instant::now();
        let file = AclFile::load(&path).unwrap();
        let set = AclSet::new(file.rules, vec![], false);
        reloads.record(t.elapsed().as_micros() as u64).unwrap();
        assert!(set.len() >= RULES);
    }
    let set = store.snapshot();
    println!(
        "acl bench: {} rules from a {} KiB file",
        set.len(),
        text.len() / 1024
    );
    println!(
        "reload (parse + validate + index): p50 {:.1} ms  max {:.1} ms",
        reloads.value_at_quantile(0.5) as f64 / 1000.0,
        reloads.max() as f64 / 1000.0
    );

    let host: IpAddr = "10.1.2.3".parse().unwrap();
    let other: IpAddr = "192.168.0.7".parse().unwrap();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut allowed = 0u64;
    let mut seed = 7u64;
    let n = 1_000_000;
    for _ in 0..n {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (seed >> 33) as usize % RULES;
        let principal = format!("User:u{}", i % 1000);
        let (op, rt, name) = match i % 4 {
            0 => (Operation::Write, ResourceType::Topic, format!("topic-{i}")),
            1 => (
                Operation::Read,
                ResourceType::Topic,
                format!("team{}.orders", i % 5000),
            ),
            2 => (Operation::Read, ResourceType::Group, format!("group-{i}")),
            _ => (
                Operation::Describe,
                ResourceType::Topic,
                format!("unknown-{i}"),
            ),
        };
        let h = if i.is_multiple_of(2) { host } else { other };
        let t = Instant::now();
        let ok = set.allowed(&principal, h, op, rt, &name);
        let ns = t.elapsed().as_nanos() as u64;
        hist.record(ns.max(1)).unwrap();
        allowed += ok as u64;
    }
    println!(
        "authorize() over {n} lookups ({allowed} allowed): p50 {} ns  p99 {} ns  p99.9 {} ns  max {} ns",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    let _ = std::fs::remove_dir_all(dir);
}
