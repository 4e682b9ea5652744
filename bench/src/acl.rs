//! authorize() latency with 100k rules and the reload time of such a file.

use std::net::IpAddr;
use std::time::Instant;

use hdrhistogram::Histogram;

use portcullis::acl::file::AclFile;
use portcullis::acl::{AclSet, Operation, ResourceType};

pub struct AclFigures {
    pub rules: usize,
    pub file_kib: usize,
    pub reload_ms_p50: f64,
    pub reload_ms_max: f64,
    pub authorize_ns: Histogram<u64>,
}

pub fn rules_file(n: usize) -> String {
    let mut s = String::from("allow_everyone_if_no_acl_found: false\nrules:\n");
    for i in 0..n {
        let line = match i % 10 {
            0..=5 => format!("  - {{allow: \"User:u{}\", operations: [write], topic: \"topic-{i}\"}}\n", i % 1000),
            6 | 7 => format!("  - {{allow: \"User:u{}\", operations: [read], topic_prefix: \"team{i}.\"}}\n", i % 1000),
            8 => format!("  - {{allow: \"User:u{}\", operations: [read], group: \"group-{i}\"}}\n", i % 1000),
            _ => format!("  - {{deny: \"User:u{}\", operations: [write], topic: \"topic-{}\", hosts: [\"10.0.0.0/8\"]}}\n", i % 1000, i - 9),
        };
        s.push_str(&line);
    }
    s
}

pub fn run(dir: &std::path::Path, n: usize, lookups: usize) -> anyhow::Result<AclFigures> {
    let text = rules_file(n);
    let path = dir.join("bench-acls.yaml");
    std::fs::write(&path, &text)?;
    let mut reloads = Histogram::<u64>::new(3)?;
    let mut set = AclSet::empty();
    for _ in 0..3 {
        let t = Instant::now();
        let file = AclFile::load(&path)?;
        let new = AclSet::new(file.rules, vec!["User:admin".into()], false);
        // The new set is live here; the broker drops the old one after the
        // swap, off the readers' path.
        reloads.record(t.elapsed().as_micros().max(1) as u64)?;
        drop(std::mem::replace(&mut set, new));
    }
    let host: IpAddr = "10.1.2.3".parse()?;
    let other: IpAddr = "192.168.0.7".parse()?;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut seed = 7u64;
    // Precompute the queries so the timing covers authorize() only.
    let queries: Vec<(String, Operation, ResourceType, String, IpAddr)> = (0..lookups.min(200_000))
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % n;
            let (op, rt, name) = match i % 4 {
                0 => (Operation::Write, ResourceType::Topic, format!("topic-{i}")),
                1 => (
                    Operation::Read,
                    ResourceType::Topic,
                    format!("team{i}.orders"),
                ),
                2 => (Operation::Read, ResourceType::Group, format!("group-{i}")),
                _ => (
                    Operation::Describe,
                    ResourceType::Topic,
                    format!("unknown-{i}"),
                ),
            };
            (
                format!("User:u{}", i % 1000),
                op,
                rt,
                name,
                if i.is_multiple_of(2) { host } else { other },
            )
        })
        .collect();
    for k in 0..lookups {
        let (p, op, rt, name, h) = &queries[k % queries.len()];
        let t = Instant::now();
        let ok = set.allowed(p, *h, *op, *rt, name);
        let ns = t.elapsed().as_nanos() as u64;
        std::hint::black_box(ok);
        hist.record(ns.max(1))?;
    }
    let _ = std::fs::remove_file(&path);
    Ok(AclFigures {
        rules: set.len(),
        file_kib: text.len() / 1024,
        reload_ms_p50: reloads.value_at_quantile(0.5) as f64 / 1000.0,
        reload_ms_max: reloads.max() as f64 / 1000.0,
        authorize_ns: hist,
    })
}
