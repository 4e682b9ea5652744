//! Hostile clients: audit_chain (see main.rs).
//!
//! Issue #12 items 9 and 4 (end): the audit trail shows tampering and its
//! own order, and one source filling the audit log's budget is flagged.
//!
//! - Logins (good and bad) and topic operations over SASL_PLAINTEXT with
//!   tiny audit files: the hash chain runs across many rotations (deleted
//!   files leave an anchor) and a restart; `portcullis audit verify` says
//!   intact. Then copies of the trail are tampered with (a line edited, a
//!   line deleted, two lines swapped) and verify reports each one, with
//!   file and line, and a non-zero exit.
//! - One user floods: an `audit_volume_alarm` record and a WARN line name
//!   it as soon as the current file holds `source_alarm_min_bytes`, once
//!   per file; `portcullis audit sources` shows its share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use portcullis::client::scram::{ScramClient, ServerFirst};
use serde_json::Value;

use crate::common::audit_files::{is, log_files, n, raw_lines, s};
use crate::common::{log_tail, scratch, strip_ansi, wait_for, Broker, BIN};

/// Generous: the test machine may be small and busy.
const DEADLINE: Duration = Duration::from_secs(60);
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

const ACLS: &str = "rules:\n  - {allow: \"User:alice\", operations: [all], topic_prefix: orders}\n  - {allow: \"User:mallory\", operations: [describe], topic: public}\n";

fn password_of(user: &str) -> String {
    format!("{user}-pw-{}", std::process::id())
}

/// A SASL_PLAINTEXT broker with `alice` and `mallory`, the ACLs above and
/// the audit section `audit` (its file under `dir/audit`).
fn start(dir: &Path, audit: &str) -> (Broker, PathBuf) {
    let acl = dir.join("acls.yaml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&acl, ACLS).unwrap();
    let log = dir.join("audit/audit.log");
    let yaml = format!(
        "acl:\n  file: {}\naudit:\n  file: {}\n{audit}",
        acl.display(),
        log.display()
    );
    let broker = Broker::start_listeners(dir, &["SASL_PLAINTEXT"], &yaml);
    for u in ["alice", "mallory"] {
        broker.add_user(u, &password_of(u));
    }
    wait_for("the broker to load the new users", DEADLINE, || {
        strip_ansi(&broker.log())
            .lines()
            .any(|l| l.contains("credential file reloaded") && l.ends_with("users=3"))
            .then_some(())
    });
    (broker, log)
}

// ---------------------------------------------------------------------------
// A raw Kafka client: exact control of what each request makes the broker
// record.
// ---------------------------------------------------------------------------

struct Raw {
    s: TcpStream,
    corr: i32,
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn frame<Q: Encodable>(api: ApiKey, version: i16, corr: i32, req: &Q) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("auditchain")));
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

fn read_frame(s: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

fn decode<R: Decodable>(api: ApiKey, version: i16, frame: Bytes) -> R {
    let mut buf = frame;
    ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    R::decode(&mut buf, version).unwrap()
}

fn metadata_for(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false)
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, corr: 0 }
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
        self.corr += 1;
        self.s
            .write_all(&frame(api, version, self.corr, req))
            .unwrap();
        let resp = read_frame(&mut self.s).unwrap_or_else(|e| panic!("{api:?}: no response: {e}"));
        decode(api, version, resp)
    }

    /// SCRAM-SHA-512 as a Kafka client does it; with `password` None the
    /// proof is bogus (no PBKDF2 on the client's side). Returns the
    /// error code of the final step.
    fn login(&mut self, user: &str, password: Option<&str>) -> i16 {
        let hs: SaslHandshakeResponse = self.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
        );
        assert_eq!(hs.error_code, 0, "SaslHandshake");
        let client = ScramClient::new(user, password.unwrap_or_default());
        let first: SaslAuthenticateResponse = self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(client.first())),
        );
        if first.error_code != 0 {
            return first.error_code;
        }
        let fin = match password {
            Some(_) => client.respond(&first.auth_bytes).unwrap().0,
            None => {
                // The server's nonce echoed, the proof 64 zero bytes.
                let sf = ServerFirst::parse(&first.auth_bytes).unwrap();
                let zeros = base64::engine::general_purpose::STANDARD.encode([0u8; 64]);
                format!("c=biws,r={},p={zeros}", sf.nonce).into_bytes()
            }
        };
        let last: SaslAuthenticateResponse = self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(fin)),
        );
        last.error_code
    }

    fn logged_in(addr: &str, user: &str) -> Raw {
        let mut c = Raw::connect(addr);
        let code = c.login(user, Some(&password_of(user)));
        assert_eq!(code, 0, "login of {user}");
        c
    }

    fn create_topic(&mut self, topic: &str) -> i16 {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 5, &req);
        resp.topics[0].error_code
    }

    fn metadata(&mut self, topic: &str) -> i16 {
        let m: MetadataResponse = self.call(ApiKey::Metadata, 12, &metadata_for(topic));
        m.topics[0].error_code
    }

    /// `count` Metadata requests, written by a second thread while this one
    /// reads the answers, so the broker always has the next one waiting.
    fn metadata_flood(&mut self, topic: &str, count: i32) {
        let mut w = self.s.try_clone().unwrap();
        let base = self.corr;
        let req = metadata_for(topic);
        let frames: Vec<Vec<u8>> = (1..=count)
            .map(|i| frame(ApiKey::Metadata, 12, base + i, &req))
            .collect();
        let writer = std::thread::spawn(move || {
            for f in frames {
                w.write_all(&f).unwrap();
            }
        });
        for _ in 0..count {
            let resp = read_frame(&mut self.s).expect("Metadata response");
            let m: MetadataResponse = decode(ApiKey::Metadata, 12, resp);
            assert_eq!(m.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        }
        writer.join().unwrap();
        self.corr += count;
    }
}

// ---------------------------------------------------------------------------
// The trail
// ---------------------------------------------------------------------------

fn records(log: &Path) -> Vec<Value> {
    raw_lines(log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `portcullis audit <args> --file log`: (success, stdout).
fn audit_cli(log: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("audit")
        .args(args)
        .arg("--file")
        .arg(log)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Some activity: logins (one bad), a topic created, allowed and denied
/// Metadata requests. Each call makes a few dozen records.
fn activity(addr: &str, round: usize) {
    let mut bad = Raw::connect(addr);
    assert_eq!(bad.login("alice", None), SASL_AUTHENTICATION_FAILED);
    drop(bad);
    let mut a = Raw::logged_in(addr, "alice");
    assert_eq!(a.create_topic(&format!("orders-{round}")), 0);
    for _ in 0..5 {
        assert_eq!(a.metadata(&format!("orders-{round}")), 0);
        assert_eq!(a.metadata("secret"), TOPIC_AUTHORIZATION_FAILED);
    }
    let mut m = Raw::logged_in(addr, "mallory");
    assert_eq!(m.create_topic("mallory-topic"), TOPIC_AUTHORIZATION_FAILED);
    for _ in 0..5 {
        assert_eq!(m.metadata("orders-0"), TOPIC_AUTHORIZATION_FAILED);
    }
}

/// Waits until every connection in the retained records is recorded as
/// closed, so no connection_closed races the broker's stop.
fn wait_closed(log: &Path) {
    wait_for("connection_closed for every connection", DEADLINE, || {
        let recs = records(log);
        let ports = |kind: &str| -> std::collections::BTreeSet<i64> {
            recs.iter()
                .filter(|r| is(r, "event", kind))
                .filter_map(|r| n(r, "client_port"))
                .collect()
        };
        ports("connection_accepted")
            .is_subset(&ports("connection_closed"))
            .then_some(())
    });
}

/// Stops the broker cleanly; the trail then ends with its stop.
fn stopped(broker: &mut Broker, log: &Path) {
    wait_closed(log);
    broker.stop();
    let recs = records(log);
    assert!(
        recs.last().is_some_and(|r| is(r, "event", "broker_stop")),
        "the trail does not end with broker_stop"
    );
}

/// A copy of the audit directory, to tamper with.
fn copy_trail(log: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(log.parent().unwrap()).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.join(log.file_name().unwrap())
}

fn rewrite_lines(file: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

#[test]
fn chain_runs_across_rotation_and_restart_and_shows_tampering() {
    const MAX_FILE_BYTES: u64 = 4096;
    const KEEP: usize = 8;
    let started = Instant::now();
    let dir = scratch("auditchain-verify");
    let audit =
        format!("  allow_level: all\n  max_file_bytes: {MAX_FILE_BYTES}\n  keep_files: {KEEP}\n");
    let (mut broker, log) = start(dir.path(), &audit);
    let addr = broker.bootstrap.clone();
    for round in 0..6 {
        activity(&addr, round);
    }
    // A restart continues the chain: the writer reads the last record back.
    wait_closed(&log);
    broker.restart();
    let addr = broker.bootstrap.clone();
    for round in 6..7 {
        activity(&addr, round);
    }
    stopped(&mut broker, &log);

    let files = log_files(&log);
    assert_eq!(files.len(), KEEP + 1, "{files:?}");
    let anchor = PathBuf::from(format!("{}.anchor", log.display()));
    let meta = std::fs::metadata(&anchor).expect("rotation deleted files: an anchor");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let anchor_json: Value = serde_json::from_slice(&std::fs::read(&anchor).unwrap()).unwrap();
    let recs = records(&log);
    let seqs: Vec<i64> = recs.iter().map(|r| n(r, "seq").unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq runs 1 by 1 through the retained files"
    );
    assert_eq!(
        n(&anchor_json, "seq").unwrap() + 1,
        seqs[0],
        "the anchor holds the seq before the oldest retained record"
    );
    assert_eq!(
        s(&anchor_json, "hash"),
        s(&recs[0], "prev_hash"),
        "the anchor's hash is the oldest retained record's prev_hash"
    );
    // One chain across the restart: nothing started a new one (the fresh
    // log's own start has been rotated away by now).
    assert!(
        !recs.iter().any(|r| is(r, "event", "audit_chain_start")),
        "the restart began a new chain"
    );
    let restart = recs
        .iter()
        .position(|r| is(r, "event", "broker_start"))
        .expect("the restart is in the retained files");
    assert!(
        is(&recs[restart - 1], "event", "broker_stop"),
        "the first run's stop precedes the second run's start: {}",
        recs[restart - 1]
    );
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= MAX_FILE_BYTES);
    }

    let (ok, out) = audit_cli(&log, &["verify"]);
    assert!(ok && out.starts_with("intact:"), "verify:\n{out}");
    assert!(
        out.contains(&format!(
            "{} records in {} files, seq {}..={}",
            recs.len(),
            files.len(),
            seqs[0],
            seqs.last().unwrap()
        )),
        "verify summary:\n{out}"
    );
    eprintln!(
        "verify: {} records retained in {} files, {} older records rotated away; {}",
        recs.len(),
        files.len(),
        seqs[0],
        out.lines().next().unwrap_or("")
    );

    // Tampering, each on its own copy of the trail, in the middle file.
    let middle = "audit.log.2";
    // (name, tampering, problem kind reported, where)
    type Tamper = fn(&mut Vec<String>);
    let cases: [(&str, Tamper, &str, &str); 3] = [
        (
            "edit",
            |l| {
                // The kind of edit someone hiding a refusal would make.
                let i = l
                    .iter()
                    .position(|x| x.contains("\"decision\":\"deny\""))
                    .unwrap_or(2);
                l[i] = l[i].replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
                if !l[i].contains("allow") {
                    l[i] = l[i].replace("\"v\":1", "\"v\":1 ");
                }
            },
            "edit",
            "",
        ),
        (
            "delete",
            |l| {
                l.remove(2);
            },
            "gap",
            ":3: gap",
        ),
        ("swap", |l| l.swap(2, 3), "reorder", ":3: reorder"),
    ];
    for (name, tamper, kind, at) in cases {
        let copy = copy_trail(&log, &dir.path().join(format!("tampered-{name}")));
        let target = copy.parent().unwrap().join(middle);
        rewrite_lines(&target, tamper);
        let (ok, out) = audit_cli(&copy, &["verify"]);
        assert!(!ok, "{name}: verify passed a tampered trail:\n{out}");
        assert!(out.contains("NOT intact"), "{name}:\n{out}");
        let problems: Vec<&str> = out.lines().filter(|l| l.contains(middle)).collect();
        assert_eq!(problems.len(), 1, "{name}: one problem reported:\n{out}");
        assert!(
            problems[0].contains(&format!(": {kind}: ")) && problems[0].contains(at),
            "{name}: expected a {kind} at {middle}{at}:\n{out}"
        );
        eprintln!("{name}: {}", problems[0]);
    }
    eprintln!("total {:.1?}", started.elapsed());
}

#[test]
fn one_user_flooding_the_audit_log_raises_an_alarm() {
    const MAX_FILE_BYTES: u64 = 200_000;
    const MIN_BYTES: u64 = MAX_FILE_BYTES / 4;
    let started = Instant::now();
    let dir = scratch("auditchain-flood");
    let audit = format!("  max_file_bytes: {MAX_FILE_BYTES}\n  keep_files: 10\n");
    let (mut broker, log) = start(dir.path(), &audit);
    let addr = broker.bootstrap.clone();
    activity(&addr, 0);
    // Mallory asks for a topic she may not see, again and again: one
    // denial record each.
    let mut m = Raw::logged_in(&addr, "mallory");
    m.metadata_flood("secret", 1500);
    drop(m);
    stopped(&mut broker, &log);

    let recs = records(&log);
    let alarms: Vec<&Value> = recs
        .iter()
        .filter(|r| is(r, "event", "audit_volume_alarm"))
        .collect();
    let of = |kind: &str, source: &str| -> Vec<&Value> {
        alarms
            .iter()
            .copied()
            .filter(|r| r["details"]["source_kind"] == kind && r["details"]["source"] == source)
            .collect()
    };
    let mallory = of("principal", "User:mallory");
    assert!(
        !mallory.is_empty(),
        "no alarm for User:mallory; alarms: {alarms:?}\n{}",
        log_tail(&broker, 20)
    );
    assert!(of("principal", "User:alice").is_empty(), "{alarms:?}");
    // Raised as soon as the file held the minimum: the bound on what one
    // source writes before someone is told.
    let first = mallory[0];
    let window = first["details"]["window_bytes"].as_u64().unwrap();
    let share = first["details"]["share"].as_f64().unwrap();
    assert!(
        (MIN_BYTES..MIN_BYTES + 2048).contains(&window) && share > 0.5,
        "alarm at {window} bytes, share {share}: {first}"
    );
    // Once per file (window) per source.
    let files = log_files(&log);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let alarms: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("audit_volume_alarm") && l.contains("User:mallory"))
            .collect();
        assert!(
            alarms.len() <= 1,
            "{}: {} alarms for mallory:\n{}",
            f.display(),
            alarms.len(),
            alarms.join("\n")
        );
        // Written right after the record that crossed the share, in the
        // file it is about: its offset there is the window it counted.
        if let Some(a) = alarms.first() {
            let offset = text.find(a).unwrap() as u64;
            let v: Value = serde_json::from_str(a).unwrap();
            assert_eq!(
                Some(offset),
                v["details"]["window_bytes"].as_u64(),
                "{}: {a}",
                f.display()
            );
        }
    }
    // And a WARN line each time.
    let warn: Vec<String> = strip_ansi(&broker.log())
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains("audit volume alarm") && l.contains("User:mallory")
        })
        .map(str::to_string)
        .collect();
    assert_eq!(warn.len(), mallory.len(), "{warn:?}");

    let (ok, out) = audit_cli(&log, &["sources", "--top", "3"]);
    assert!(ok, "audit sources:\n{out}");
    let top = out
        .lines()
        .find(|l| l.contains("principal "))
        .unwrap_or_default();
    let pct: f64 = top
        .trim()
        .split('%')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        top.ends_with("principal User:mallory") && pct > 50.0,
        "audit sources:\n{out}"
    );
    let (ok, out) = audit_cli(&log, &["verify"]);
    assert!(ok, "verify:\n{out}");
    eprintln!(
        "flood: {} records in {} files; first alarm for User:mallory at {window} bytes of the file (share {share}), {} alarms, {} WARN lines; sources: {top}; {:.1?}",
        recs.len(),
        files.len(),
        mallory.len(),
        warn.len(),
        started.elapsed()
    );
}

#[test]
fn an_unreadable_last_record_starts_a_new_chain_saying_why() {
    let dir = scratch("auditchain-unreadable");
    let (mut broker, log) = start(dir.path(), "");
    let addr = broker.bootstrap.clone();
    activity(&addr, 0);
    stopped(&mut broker, &log);
    let before = records(&log).len();
    // What an intruder's clumsy edit (or a disk error) leaves.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"this is not an audit record\n").unwrap();
    drop(f);
    broker.restart();
    wait_for("the broker's start after the restart", DEADLINE, || {
        let lines = raw_lines(&log);
        lines[before + 1..]
            .iter()
            .any(|l| l.contains("\"broker_start\""))
            .then_some(())
    });
    let lines = raw_lines(&log);
    let start: Value = serde_json::from_str(&lines[before + 1]).unwrap();
    assert!(
        is(&start, "event", "audit_chain_start")
            && n(&start, "seq") == Some(0)
            && s(&start, "reason").is_some_and(|r| r.contains("not an audit record")),
        "{start}"
    );
    broker.stop();
    let (ok, out) = audit_cli(&log, &["verify"]);
    assert!(!ok, "verify:\n{out}");
    let line = before + 1;
    assert!(
        out.contains(&format!("audit.log:{line}: malformed: "))
            && out.contains(&format!("audit.log:{}: chain restart: ", line + 1)),
        "verify:\n{out}"
    );
    eprintln!(
        "unreadable tail: {}",
        out.lines().take(2).collect::<Vec<_>>().join(" | ")
    );
}
