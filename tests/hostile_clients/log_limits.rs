//! Hostile clients: log_limits (see main.rs).
//!
//! - A topic with thousands of partitions must not cost one descriptor per
//!   partition: segment files go through a bounded cache.
//! - The per-topic partition maximum is enforced (INVALID_PARTITIONS).
//! - Topic data and broker state files are private (0600, dirs 0700), also
//!   in a data dir written by an older version.
//! - A CRC-valid batch whose header lies about its record count is refused
//!   for its partition alone and moves no high watermark, compressed
//!   (snappy, lz4, zstd: decompressed and counted) as well as not.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::common::{log_tail, run_script_ok, scratch, Broker};

const INVALID_PARTITIONS: i16 = 37;
const INVALID_RECORD: i16 = 87;
const CORRUPT_MESSAGE: i16 = 2;

/// One request/response round trip with the protocol crate's codecs.
fn call<Resp: Decodable>(
    s: &mut TcpStream,
    api: ApiKey,
    version: i16,
    body: &impl Encodable,
) -> Resp {
    let frame = portcullis::client::encode_request(api, version, 7, "loglimits", body).unwrap();
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).expect("response body");
    let mut b = Bytes::from(resp);
    ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
    Resp::decode(&mut b, version).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(s: &mut TcpStream, topic: &str, partitions: i32) -> (i16, String) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 5, &req);
    let t = &resp.topics[0];
    (
        t.error_code,
        t.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

fn produce(s: &mut TcpStream, topic: &str, parts: Vec<(i32, Vec<u8>)>) -> Vec<(i32, i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(
                parts
                    .into_iter()
                    .map(|(p, b)| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(Bytes::from(b)))
                    })
                    .collect(),
            )]);
    let resp: ProduceResponse = call(s, ApiKey::Produce, 9, &req);
    resp.responses[0]
        .partition_responses
        .iter()
        .map(|r| (r.index, r.error_code, r.base_offset))
        .collect()
}

/// ListOffsets latest: each partition's high watermark.
fn high_watermarks(s: &mut TcpStream, topic: &str, parts: &[i32]) -> Vec<i64> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
    let resp: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 4, &req);
    let by_index: std::collections::BTreeMap<i32, i64> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(
                p.error_code, 0,
                "ListOffsets partition {}",
                p.partition_index
            );
            (p.partition_index, p.offset)
        })
        .collect();
    parts.iter().map(|p| by_index[p]).collect()
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A magic-v2 batch holding `values` as records (offset deltas 0..n), with
/// the header's last offset delta and record count as given, CRC-32C valid.
fn batch(values: &[&[u8]], last_offset_delta: i32, record_count: i32) -> Vec<u8> {
    compressed_batch(values, last_offset_delta, record_count, 0, <[u8]>::to_vec)
}

/// As [`batch`], with the records compressed by `compress` and the header's
/// compression codec set to `codec`.
fn compressed_batch(
    values: &[&[u8]],
    last_offset_delta: i32,
    record_count: i32,
    codec: i16,
    compress: fn(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, v.len() as i64);
        body.extend_from_slice(v);
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&0i32.to_be_bytes()); // batch length, below
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&codec.to_be_bytes()); // attributes
    b.extend_from_slice(&last_offset_delta.to_be_bytes());
    b.extend_from_slice(&now.to_be_bytes()); // base timestamp
    b.extend_from_slice(&now.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend_from_slice(&compress(&records));
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The broker's pid: the `serve` process whose command line names this
/// test's config file (unique per scratch dir).
fn broker_pid(broker: &Broker) -> u32 {
    let cfg = broker.config_path();
    let cfg = cfg.to_string_lossy();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.iter().any(|a| a == cfg.as_ref()) {
            return pid;
        }
    }
    panic!("no broker process for {cfg}");
}

#[test]
fn thousands_of_partitions_share_a_bounded_set_of_descriptors() {
    const PARTITIONS: i32 = 2000;
    const MAX_OPEN: usize = 64;
    // Listeners, audit files, epoll, the internal topics' metadata, reads
    // in flight: everything the broker holds that is not a cached segment.
    const MARGIN: usize = 64;
    let dir = scratch("loglimits-fds");
    let mut broker = Broker::start(
        dir.path(),
        &format!("log:\n  max_open_files: {MAX_OPEN}\n  max_partitions_per_topic: {PARTITIONS}\n"),
    );
    let pid = broker_pid(&broker);
    let before = fd_count(pid);
    let mut s = broker.connect();
    let (code, m) = create_topic(&mut s, "wide", PARTITIONS);
    assert_eq!(code, 0, "create 2000 partitions: {m}");
    drop(s);
    let after_create = fd_count(pid);

    // Sample the descriptor count all through producing and consuming.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(after_create));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(fd_count(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let env = serde_json::json!({
        "bootstrap": broker.bootstrap,
        "topic": "wide",
        "partitions": PARTITIONS,
        "rounds": 2,
    })
    .to_string();
    let started = Instant::now();
    let out = run_script_ok("loglimits_fds.py", &[&env], || log_tail(&broker, 40));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "fds: {before} before, {after_create} after creating {PARTITIONS} partitions, \
         peak {peak} while producing and consuming {} records ({:.1?}); limit {MAX_OPEN} + {MARGIN}",
        PARTITIONS * 2,
        started.elapsed()
    );
    assert!(out.contains("consumed 4000"), "{out}");
    assert!(
        after_create < MAX_OPEN + MARGIN,
        "creating {PARTITIONS} partitions left {after_create} descriptors open"
    );
    assert!(
        peak < MAX_OPEN + MARGIN,
        "{peak} descriptors open at peak with log.max_open_files {MAX_OPEN}"
    );

    // A crash, then recovery verifies every partition's active segment
    // through the same bounded cache, and every record is still there.
    broker.restart_after_kill9();
    let pid = broker_pid(&broker);
    let after_recovery = fd_count(pid);
    let mut s = broker.connect();
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let hw = high_watermarks(&mut s, "wide", &all);
    eprintln!("fds after crash recovery of {PARTITIONS} partitions: {after_recovery}");
    assert!(hw.iter().all(|h| *h == 2), "high watermarks after recovery");
    assert!(
        after_recovery < MAX_OPEN + MARGIN,
        "{after_recovery} descriptors open after recovery"
    );
}

#[test]
fn partition_maximum_is_enforced_with_invalid_partitions() {
    let dir = scratch("loglimits-maxparts");
    let broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    let (code, m) = create_topic(&mut s, "too-wide", 1001);
    assert_eq!(code, INVALID_PARTITIONS, "1001 partitions by default: {m}");
    assert!(
        m.contains("1000") && m.contains("max_partitions_per_topic"),
        "the message names the limit: {m}"
    );
    let (code, m) = create_topic(&mut s, "just-right", 1000);
    assert_eq!(code, 0, "1000 partitions are allowed: {m}");
    // Growing past the maximum is refused the same way, and changes nothing.
    let (code, _) = create_topic(&mut s, "grows", 2);
    assert_eq!(code, 0);
    let grow = |s: &mut TcpStream, count: i32| {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("grows"))
                .with_count(count)
                .with_assignments(None)]);
        let resp: CreatePartitionsResponse = call(s, ApiKey::CreatePartitions, 2, &req);
        let r = &resp.results[0];
        (
            r.error_code,
            r.error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    };
    let (code, m) = grow(&mut s, 1001);
    assert_eq!(code, INVALID_PARTITIONS, "{m}");
    assert!(m.contains("1000"), "{m}");
    assert!(
        !broker.dir.join("data/topics/grows/2").exists(),
        "a refused CreatePartitions created nothing"
    );
    let (code, m) = grow(&mut s, 3);
    assert_eq!(code, 0, "{m}");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory and file below `root`, with its mode.
fn walk(root: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    out.push((root.to_path_buf(), true, mode(root)));
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk(&e.path(), out);
        } else if ft.is_file() {
            out.push((e.path(), false, mode(&e.path())));
        }
    }
}

fn assert_private(data: &Path) -> usize {
    let mut all = Vec::new();
    walk(data, &mut all);
    let loose: Vec<String> = all
        .iter()
        .filter(|(_, dir, m)| if *dir { *m != 0o700 } else { *m & 0o077 != 0 })
        .map(|(p, _, m)| format!("{:o} {}", m, p.display()))
        .collect();
    assert!(loose.is_empty(), "not private:\n{}", loose.join("\n"));
    all.len()
}

#[test]
fn topic_data_and_state_files_are_private() {
    let dir = scratch("loglimits-modes");
    let mut broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    assert_eq!(create_topic(&mut s, "secret", 2).0, 0);
    for _ in 0..3 {
        let r = produce(
            &mut s,
            "secret",
            vec![
                (0, batch(&[b"card 4111"], 0, 1)),
                (1, batch(&[b"pin 1234"], 0, 1)),
            ],
        );
        assert!(r.iter().all(|(_, code, _)| *code == 0), "{r:?}");
    }
    // An idempotent producer id: the broker persists its id block.
    let init: InitProducerIdResponse = call(
        &mut s,
        ApiKey::InitProducerId,
        0,
        &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    drop(s);
    let data = broker.dir.join("data");
    assert!(data.join("producer-id-block").exists());
    let n = assert_private(&data);
    // A clean shutdown writes index files and state snapshots too.
    broker.stop();
    let n_after_stop = assert_private(&data);
    eprintln!("{n} entries private while running, {n_after_stop} after a clean stop");

    // A data dir left by an older version: world-readable everything.
    let mut all = Vec::new();
    walk(&data, &mut all);
    for (p, is_dir, _) in &all {
        let m = if *is_dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    broker.restart();
    assert_private(&data);
    let log = crate::common::clean_log(&broker.log());
    assert!(
        log.contains("data files and directories private"),
        "the tightening is logged:\n{}",
        log_tail(&broker, 20)
    );
    // The data is still served after the restart.
    let mut s = broker.connect();
    assert_eq!(high_watermarks(&mut s, "secret", &[0, 1]), vec![3, 3]);
}

#[test]
fn lying_record_counts_are_refused_for_their_partition_only() {
    let dir = scratch("loglimits-batches");
    let mut broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    assert_eq!(create_topic(&mut s, "victim", 2).0, 0);
    // The reported attack: a CRC-valid batch holding one record whose
    // header says last_offset_delta = 2^31-1, so the record count wraps to
    // -2^31. Three of them moved the high watermark to 6,442,450,945.
    let lies: Vec<(&str, Vec<u8>)> = vec![
        ("count wraps", batch(&[b"x"], i32::MAX, i32::MIN)),
        ("count matches the lie", batch(&[b"x"], i32::MAX, i32::MAX)),
        ("negative count", batch(&[b"x"], -2, -1)),
        ("fewer records than declared", batch(&[b"x"], 4, 5)),
        (
            "more records than declared",
            batch(&[b"x", b"y", b"z"], 1, 2),
        ),
        ("empty batch", batch(&[], -1, 0)),
    ];
    let mut valid_appended = 0i64;
    for round in 0..3 {
        for (what, lie) in &lies {
            let r = produce(
                &mut s,
                "victim",
                vec![(0, lie.clone()), (1, batch(&[b"ok"], 0, 1))],
            );
            let p0 = r.iter().find(|x| x.0 == 0).unwrap();
            let p1 = r.iter().find(|x| x.0 == 1).unwrap();
            assert!(
                p0.1 == INVALID_RECORD || p0.1 == CORRUPT_MESSAGE,
                "{what} (round {round}): partition 0 answered {p0:?}"
            );
            assert_eq!(p0.2, -1, "{what}: no base offset for a refused batch");
            assert_eq!(
                (p1.1, p1.2),
                (0, valid_appended),
                "{what}: the valid batch in the same request is appended"
            );
            valid_appended += 1;
        }
    }
    assert_eq!(
        high_watermarks(&mut s, "victim", &[0, 1]),
        vec![0, valid_appended],
        "no refused batch moved a high watermark"
    );
    // The broker (built with overflow checks) and this connection survive,
    // and a well-formed batch on partition 0 still lands at offset 0.
    assert!(broker.is_running(), "{}", log_tail(&broker, 20));
    let r = produce(&mut s, "victim", vec![(0, batch(&[b"a", b"b"], 1, 2))]);
    assert_eq!((r[0].1, r[0].2), (0, 0), "{r:?}");
    assert_eq!(high_watermarks(&mut s, "victim", &[0]), vec![2]);
}

/// snappy-java's framing (header, then length-prefixed raw blocks), as
/// Kafka's Java producer writes it.
fn snappy_java(raw: &[u8]) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in raw.chunks(32 << 10) {
        let z = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.extend_from_slice(&(z.len() as i32).to_be_bytes());
        out.extend_from_slice(&z);
    }
    out
}

/// One raw snappy block, as librdkafka writes it.
fn snappy_raw(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn lz4_frame(raw: &[u8]) -> Vec<u8> {
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

fn zstd_frame(raw: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(raw, 3).unwrap()
}

#[test]
fn compressed_batches_that_lie_about_their_record_count_are_invalid() {
    let dir = scratch("loglimits-compressed-lies");
    let mut broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    assert_eq!(create_topic(&mut s, "victim", 2).0, 0);
    type Compress = fn(&[u8]) -> Vec<u8>;
    let codecs: [(&str, i16, Compress); 4] = [
        ("snappy-java", 2, snappy_java),
        ("snappy raw", 2, snappy_raw),
        ("lz4", 3, lz4_frame),
        ("zstd", 4, zstd_frame),
    ];
    let mut valid_appended = 0i64;
    for (codec, id, compress) in codecs {
        // The header claims 2^31-1 records (with the last offset delta
        // that goes with them, so only the payload can tell), or five; the
        // compressed payload holds one. Both are CRC-valid.
        for (delta, count) in [(i32::MAX - 1, i32::MAX), (4, 5)] {
            let lie = compressed_batch(&[b"x"], delta, count, id, compress);
            let honest = compressed_batch(&[b"ok", b"ok"], 1, 2, id, compress);
            let r = produce(&mut s, "victim", vec![(0, lie), (1, honest)]);
            let p0 = r.iter().find(|x| x.0 == 0).unwrap();
            let p1 = r.iter().find(|x| x.0 == 1).unwrap();
            assert_eq!(
                (p0.1, p0.2),
                (INVALID_RECORD, -1),
                "{codec}, {count} records claimed: partition 0 answered {p0:?}"
            );
            assert_eq!(
                (p1.1, p1.2),
                (0, valid_appended),
                "{codec}: the honest compressed batch in the same request is appended"
            );
            valid_appended += 2;
        }
        // A payload that does not decompress is corrupt, not invalid.
        let junk = compressed_batch(&[b"x"], 0, 1, id, |_| b"not compressed".to_vec());
        let r = produce(&mut s, "victim", vec![(0, junk)]);
        assert_eq!((r[0].1, r[0].2), (CORRUPT_MESSAGE, -1), "{codec}: {r:?}");
    }
    assert_eq!(
        high_watermarks(&mut s, "victim", &[0, 1]),
        vec![0, valid_appended],
        "no refused batch moved a high watermark"
    );
    assert!(broker.is_running(), "{}", log_tail(&broker, 20));
}

#[test]
fn real_clients_batches_pass_validation_under_every_codec() {
    let dir = scratch("loglimits-codecs");
    let broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    assert_eq!(create_topic(&mut s, "codecs", 5).0, 0);
    let env = serde_json::json!({ "bootstrap": broker.bootstrap, "topic": "codecs" }).to_string();
    let out = run_script_ok("loglimits_codecs.py", &[&env], || log_tail(&broker, 40));
    assert!(out.contains("consumed 1500 records intact"), "{out}");
}
