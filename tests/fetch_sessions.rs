//! Incremental fetch sessions (KIP-227) at the edge, in both back ends.
//!
//! The edge keeps each connection's session, expands every Fetch in it to
//! the session's partitions, forwards a full sessionless Fetch and cuts the
//! answer down to what changed. Checked here: Kafka's Java consumer of many
//! partitions reads everything in incremental sessions (the
//! `portcullis_fetch_session_requests_total` counter), and raw requests of
//! our own client get Kafka's answers to unknown sessions, wrong epochs,
//! requests with nothing new, an ACL revoked mid-session, and the bounds.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/compat.rs"]
mod compat;

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use backends::Backend;
use common::kafka::{run_tool, tools, write_client_properties, ClientAuth};
use common::scratch;

const ALICE: (&str, &str) = ("alice", "alice-Fetch-Secret-5");
const FETCH_VERSION: i16 = 12;
const UNKNOWN_SESSION: i16 = 70;
const INVALID_EPOCH: i16 = 71;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const DEADLINE: Duration = Duration::from_secs(60);

/// Every user may do anything: the harness's permissive ACL file.
const ALL_ALLOWED: &str = "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n  - {allow: \"User:*\", operations: [all], transactional_id: \"*\"}\n";
/// The same, but topics `fs-b*` are no longer readable.
const B_REVOKED: &str = "rules:\n  - {allow: \"User:*\", operations: [all], topic_prefix: \"fs-a\"}\n  - {allow: \"User:*\", operations: [all], topic_prefix: \"fs-java\"}\n  - {allow: \"User:*\", operations: [describe], topic_prefix: \"fs-b\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// `portcullis_fetch_session_requests_total{kind=...}` from the ops listener.
fn session_count(backend: &Backend, kind: &str) -> u64 {
    metric(
        backend,
        &format!("portcullis_fetch_session_requests_total{{kind=\"{kind}\"}}"),
    )
}

/// One series of the broker's metrics (a counter).
fn metric(backend: &Backend, series: &str) -> u64 {
    let (status, body) = common::http_get(backend.broker.ops_addr(), "/metrics").unwrap();
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn producer(backend: &Backend) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", backend.broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", ALICE.0)
        .set("sasl.password", ALICE.1)
        .set(
            "ssl.ca.location",
            backend.broker.ca_file().to_str().unwrap(),
        )
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create()
        .unwrap()
}

/// Produces `n` records to each partition of `topic` and waits for them.
fn produce(backend: &Backend, topic: &str, partitions: &[i32], n: usize) {
    produce_sized(backend, topic, partitions, n, 0);
}

/// `topic-partition-i`, padded with a pattern of that record's own to
/// `len` bytes (if it is longer); `None` for a line no record has.
fn value_of(line: &str, len: usize) -> Option<String> {
    let id = line.split('.').next()?;
    Some(padded(id, len))
}

fn padded(id: &str, len: usize) -> String {
    let mut v = id.to_string();
    let mut i = 0u64;
    while v.len() < len {
        v.push_str(&format!(".{}", i.wrapping_mul(2_654_435_761) % 1000));
        i += 1;
    }
    v
}

/// `n` records on each partition, values of `len` bytes (see `value_of`).
fn produce_sized(backend: &Backend, topic: &str, partitions: &[i32], n: usize, len: usize) {
    let p = producer(backend);
    for &part in partitions {
        for i in 0..n {
            let value = padded(&format!("{topic}-{part}-{i}"), len);
            loop {
                match p.send(
                    BaseRecord::<(), str>::to(topic)
                        .partition(part)
                        .payload(&value),
                ) {
                    Ok(()) => break,
                    Err((e, _)) => {
                        assert!(format!("{e}").contains("Queue full"), "producing: {e}");
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
        }
    }
    p.flush(DEADLINE).expect("records delivered");
}

async fn client(backend: &Backend) -> portcullis::client::Connection {
    let tls = portcullis::client::tls_connector(&backend.broker.ca_file(), None).unwrap();
    let mut conn = portcullis::client::Connector::tls(tls)
        .with_server_name(Some("localhost".into()))
        .with_client_id("fetch-sessions-test")
        .with_request_timeout(Some(DEADLINE))
        .connect(backend.broker.addr("SASL_SSL"))
        .await
        .unwrap();
    conn.api_versions().await.unwrap();
    conn.login_scram(ALICE.0, ALICE.1, None).await.unwrap();
    conn
}

async fn create_topics(conn: &mut portcullis::client::Connection, topics: &[(&str, i32)]) {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|(t, n)| {
                    CreatableTopic::default()
                        .with_name(name(t))
                        .with_num_partitions(*n)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &req).await.unwrap();
    for t in &resp.topics {
        assert!(
            t.error_code == 0 || t.error_code == 36,
            "creating {:?}: error {}",
            t.name,
            t.error_code
        );
    }
}

/// A Fetch with this session id and epoch naming `parts` (topic,
/// partition, offset); short waits, so that an answer with nothing new
/// comes back soon.
fn fetch(id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (t, p, offset) in parts {
        let part = FetchPartition::default()
            .with_partition(*p)
            .with_fetch_offset(*offset)
            .with_current_leader_epoch(-1)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(1 << 20);
        match topics.last_mut() {
            Some(last) if last.topic == name(t) => last.partitions.push(part),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(name(t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(0)
        .with_session_id(id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

async fn call(conn: &mut portcullis::client::Connection, req: &FetchRequest) -> FetchResponse {
    conn.call(ApiKey::Fetch, FETCH_VERSION, req).await.unwrap()
}

/// (topic, partition, error code, records present) of each partition an
/// answer carries.
fn shown(resp: &FetchResponse) -> Vec<(String, i32, i16, bool)> {
    let mut out: Vec<_> = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.to_string(),
                    p.partition_index,
                    p.error_code,
                    p.records.as_ref().is_some_and(|r| !r.is_empty()),
                )
            })
        })
        .collect();
    out.sort();
    out
}

const ALL_PARTS: &[(&str, i32, i64)] = &[
    ("fs-a", 0, 0),
    ("fs-a", 1, 0),
    ("fs-a", 2, 0),
    ("fs-a", 3, 0),
    ("fs-b", 0, 0),
    ("fs-b", 1, 0),
];

/// Unknown sessions, wrong epochs, answers with nothing new, an ACL
/// revoked mid-session, closing: the same answers in either back end.
fn raw_protocol(backend: &Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let acl_file = backend.broker.dir.join("acls.yaml");
    std::fs::write(&acl_file, ALL_ALLOWED).unwrap();
    rt.block_on(async {
        let mut conn = client(backend).await;
        create_topics(&mut conn, &[("fs-a", 4), ("fs-b", 2)]).await;
    });
    produce(backend, "fs-a", &[0], 3);
    rt.block_on(async {
        let mut conn = client(backend).await;
        // A full Fetch that opens a session: every partition, the new id.
        let mut opened = None;
        let deadline = Instant::now() + DEADLINE;
        while opened.is_none() {
            let resp = call(&mut conn, &fetch(0, 0, ALL_PARTS)).await;
            let got = shown(&resp);
            // Until the new topics' leaders are known everywhere.
            if got.iter().all(|p| p.2 == 0) && got.len() == 6 && got[0].3 {
                assert_ne!(resp.session_id, 0, "no session opened: {resp:?}");
                opened = Some(resp.session_id);
            } else {
                assert!(Instant::now() < deadline, "full fetch never clean: {got:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let id = opened.unwrap();
        let mut epoch = 1;
        // Nothing new (fs-a-0 moves on past its 3 records): no partitions.
        let resp = call(&mut conn, &fetch(id, epoch, &[("fs-a", 0, 3)])).await;
        epoch += 1;
        assert_eq!((resp.error_code, resp.session_id), (0, id));
        assert!(
            shown(&resp).is_empty(),
            "nothing changed, got {:?}",
            shown(&resp)
        );

        // A wrong epoch, an unknown id: Kafka's errors, no partitions; the
        // session itself lives on.
        let resp = call(&mut conn, &fetch(id, epoch + 5, &[])).await;
        assert_eq!((resp.error_code, resp.session_id), (INVALID_EPOCH, 0));
        assert!(resp.responses.is_empty());
        let resp = call(&mut conn, &fetch(id ^ 0x55, 1, &[])).await;
        assert_eq!((resp.error_code, resp.session_id), (UNKNOWN_SESSION, 0));

        // New records on one partition: only that partition.
        produce(backend, "fs-b", &[1], 1);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let resp = call(&mut conn, &fetch(id, epoch, &[])).await;
            epoch += 1;
            assert_eq!((resp.error_code, resp.session_id), (0, id));
            let got = shown(&resp);
            if got.is_empty() {
                assert!(Instant::now() < deadline, "the new record never came");
                continue;
            }
            assert_eq!(got, vec![("fs-b".to_string(), 1, 0, true)]);
            break;
        }
        // Read past it: nothing new again.
        let resp = call(&mut conn, &fetch(id, epoch, &[("fs-b", 1, 1)])).await;
        epoch += 1;
        assert_eq!(shown(&resp), vec![]);

        // fs-b's read ACL goes: the session's fs-b partitions are refused
        // on the next requests (each request is authorized whole), fs-a's
        // are not shown (nothing changed).
        std::fs::write(acl_file.with_extension("yaml.tmp"), B_REVOKED).unwrap();
        std::fs::rename(acl_file.with_extension("yaml.tmp"), &acl_file).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let resp = call(&mut conn, &fetch(id, epoch, &[])).await;
            epoch += 1;
            assert_eq!((resp.error_code, resp.session_id), (0, id));
            let got = shown(&resp);
            if got.is_empty() {
                assert!(Instant::now() < deadline, "the revoked ACL never applied");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            assert_eq!(
                got,
                vec![
                    ("fs-b".to_string(), 0, TOPIC_AUTHORIZATION_FAILED, false),
                    ("fs-b".to_string(), 1, TOPIC_AUTHORIZATION_FAILED, false),
                ]
            );
            break;
        }
        // Still refused on the next one, and records on fs-a still come.
        produce(backend, "fs-a", &[2], 1);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let resp = call(&mut conn, &fetch(id, epoch, &[])).await;
            epoch += 1;
            let got = shown(&resp);
            assert!(
                got.iter()
                    .filter(|p| p.0 == "fs-b")
                    .all(|p| p.2 == TOPIC_AUTHORIZATION_FAILED),
                "{got:?}"
            );
            if got.iter().any(|p| p.0 == "fs-a") {
                assert_eq!(got.len(), 3, "{got:?}");
                assert!(got.contains(&("fs-a".to_string(), 2, 0, true)), "{got:?}");
                break;
            }
            assert!(Instant::now() < deadline, "fs-a's record never came");
        }
        std::fs::write(&acl_file, ALL_ALLOWED).unwrap();

        // Forgetting the fs-b partitions: they are gone from the session.
        let mut req = fetch(id, epoch, &[("fs-a", 2, 1)]);
        req.forgotten_topics_data.push(
            ForgottenTopic::default()
                .with_topic(name("fs-b"))
                .with_partitions(vec![0, 1]),
        );
        let resp = call(&mut conn, &req).await;
        epoch += 1;
        assert!(
            shown(&resp).iter().all(|p| p.0 == "fs-a"),
            "{:?}",
            shown(&resp)
        );

        // Closing it (epoch -1): answered without a session; then unknown.
        let resp = call(&mut conn, &fetch(id, -1, &[("fs-a", 0, 3)])).await;
        assert_eq!((resp.error_code, resp.session_id), (0, 0));
        let resp = call(&mut conn, &fetch(id, epoch, &[])).await;
        assert_eq!(resp.error_code, UNKNOWN_SESSION);
        // A session of one connection is unknown on another.
        let resp = call(&mut conn, &fetch(0, 0, &[("fs-a", 0, 3)])).await;
        let other_id = resp.session_id;
        assert_ne!(other_id, 0);
        let mut other = client(backend).await;
        let resp = call(&mut other, &fetch(other_id, 1, &[])).await;
        assert_eq!(resp.error_code, UNKNOWN_SESSION);
    });
    assert!(session_count(backend, "incremental") > 0);
    assert!(session_count(backend, "error") >= 3);
}

#[test]
fn raw_sessions_embedded() {
    let dir = scratch("fetch-sessions-raw");
    let backend = Backend::embedded(dir.path(), "");
    backend.add_user(ALICE.0, ALICE.1, 2);
    raw_protocol(&backend);
}

#[test]
fn raw_sessions_through_gateway() {
    let dir = scratch("fetch-sessions-raw-gw");
    let backend = Backend::gateway("fs-raw-gw", &dir.path().join("gateway"), 1);
    backend.add_user(ALICE.0, ALICE.1, 2);
    raw_protocol(&backend);
}

/// A client cannot make the edge keep more than the bound: a full Fetch
/// naming more partitions gets no session, a second session replaces the
/// first, and a session grown past the bound is dropped.
#[test]
fn session_bounds_hold() {
    let dir = scratch("fetch-sessions-bounds");
    let backend = Backend::embedded(
        dir.path(),
        "connections:\n  max_fetch_session_partitions: 8\n",
    );
    backend.add_user(ALICE.0, ALICE.1, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = client(&backend).await;
        create_topics(&mut conn, &[("fs-a", 4)]).await;
        // Nine partitions (five of them do not exist): no session.
        let nine: Vec<(&str, i32, i64)> = (0..9).map(|p| ("fs-a", p, 0)).collect();
        let resp = call(&mut conn, &fetch(0, 0, &nine)).await;
        assert_eq!((resp.error_code, resp.session_id), (0, 0));
        assert_eq!(shown(&resp).len(), 9, "a full answer lists every partition");

        // Sessions: one per connection; a second one replaces the first.
        let first = call(&mut conn, &fetch(0, 0, &nine[..2])).await.session_id;
        assert_ne!(first, 0);
        let second = call(&mut conn, &fetch(0, 0, &nine[..2])).await.session_id;
        assert_ne!(second, 0);
        assert_ne!(first, second);
        let resp = call(&mut conn, &fetch(first, 1, &[])).await;
        assert_eq!(resp.error_code, UNKNOWN_SESSION);
        let resp = call(&mut conn, &fetch(second, 1, &[])).await;
        assert_eq!((resp.error_code, resp.session_id), (0, second));

        // Growing past the bound: the session is dropped.
        let resp = call(&mut conn, &fetch(second, 2, &nine[2..])).await;
        assert_eq!((resp.error_code, resp.session_id), (UNKNOWN_SESSION, 0));
        let resp = call(&mut conn, &fetch(second, 3, &[])).await;
        assert_eq!(resp.error_code, UNKNOWN_SESSION);

        // Thousands of sessions opened in a row: still answered, one kept.
        let mut last = 0;
        let mut open = fetch(0, 0, &nine[..1]);
        open.max_wait_ms = 0;
        for _ in 0..1000 {
            last = call(&mut conn, &open).await.session_id;
        }
        let resp = call(&mut conn, &fetch(last, 1, &[])).await;
        assert_eq!((resp.error_code, resp.session_id), (0, last));
    });
}

/// What a Java consumer reads in [`java_reads`].
struct JavaRead<'a> {
    topic: &'a str,
    partitions: i32,
    per_partition: usize,
    /// Bytes of each record's value.
    value_len: usize,
    /// Consumer properties beyond the login.
    props: &'a [(&'a str, &'a str)],
}

/// Kafka's Java consumer (the console consumer) reads every record of a
/// topic, each intact, in incremental sessions. Returns the sessions it
/// opened and the incremental fetches it made.
fn java_reads(backend: &Backend, dir: &std::path::Path, read: JavaRead<'_>) -> (u64, u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = client(backend).await;
        create_topics(&mut conn, &[(read.topic, read.partitions)]).await;
    });
    let all: Vec<i32> = (0..read.partitions).collect();
    produce_sized(
        backend,
        read.topic,
        &all,
        read.per_partition,
        read.value_len,
    );
    let before = session_count(backend, "incremental");
    let new_before = session_count(backend, "new");
    let props = dir.join(format!("{}.properties", read.topic));
    let ca = backend.broker.ca_file();
    write_client_properties(
        &props,
        &ClientAuth::Scram {
            user: ALICE.0,
            password: ALICE.1,
            ca: &ca,
        },
        read.props,
    );
    let total = read.partitions as usize * read.per_partition;
    let run = run_tool(
        tools::CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            backend.broker.addr("SASL_SSL"),
            "--command-config",
            props.to_str().unwrap(),
            "--topic",
            read.topic,
            "--from-beginning",
            "--max-messages",
            &total.to_string(),
            "--timeout-ms",
            "60000",
            "--group",
            &format!("{}-readers", read.topic),
        ],
        "",
    );
    if !run.ok() {
        panic!("{run}\n{}", backend.logs_tail(40));
    }
    let mut got: Vec<&str> = run.stdout.lines().collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), total, "{run}");
    for line in &got {
        assert!(
            value_of(line, read.value_len).as_deref() == Some(*line),
            "a record came back altered: {}...",
            &line[..line.len().min(60)]
        );
    }
    let incremental = session_count(backend, "incremental") - before;
    let opened = session_count(backend, "new") - new_before;
    eprintln!(
        "java consumer of {}: {opened} sessions opened, {incremental} incremental fetches",
        read.topic
    );
    assert!(incremental > 0, "no incremental fetch");
    // A consumer that found our answers broken would start over with a
    // new full session after each one.
    assert!(
        opened <= 4 && incremental > opened,
        "{opened} sessions opened for {incremental} incremental fetches"
    );
    assert!(
        !run.stderr.contains("invalid"),
        "the consumer complained: {}",
        run.stderr
    );
    (opened, incremental)
}

/// Kafka's Java consumer reads a topic of many partitions in incremental
/// sessions, one batch per answer: many fetches, each carrying a few of
/// the session's partitions.
fn java_consumer(backend: &Backend, dir: &std::path::Path) {
    java_reads(
        backend,
        dir,
        JavaRead {
            topic: "fs-java",
            partitions: 24,
            per_partition: 25,
            value_len: 0,
            props: &[("fetch.max.bytes", "1")],
        },
    );
}

#[test]
fn java_consumer_embedded() {
    let dir = scratch("fetch-sessions-java");
    let backend = Backend::embedded(&dir.path().join("broker"), "");
    backend.add_user(ALICE.0, ALICE.1, 2);
    java_consumer(&backend, dir.path());
}

#[test]
fn java_consumer_through_gateway() {
    let dir = scratch("fetch-sessions-java-gw");
    let backend = Backend::gateway("fs-java-gw", &dir.path().join("gateway"), 1);
    backend.add_user(ALICE.0, ALICE.1, 2);
    java_consumer(&backend, dir.path());
    // Answers of megabytes: the gateway passes them to the consumer as
    // they arrive, uncut, reading them as they pass (the session learns
    // what the consumer was told; the records-read metrics count them).
    let streamed = || metric(&backend, "portcullis_upstream_streamed_answers_total");
    let streamed_before = streamed();
    let (per_partition, value_len) = (150, 10_000);
    let (opened, _) = java_reads(
        &backend,
        dir.path(),
        JavaRead {
            topic: "fs-java-large",
            partitions: 4,
            per_partition,
            value_len,
            props: &[],
        },
    );
    // More answers streamed than sessions opened: incremental ones too.
    let streamed = streamed() - streamed_before;
    assert!(
        streamed > opened,
        "{streamed} answers streamed, {opened} sessions opened"
    );
    let counted = metric(
        &backend,
        "portcullis_topic_records_out_total{topic=\"fs-java-large\"}",
    );
    assert!(
        counted >= 4 * per_partition as u64,
        "{counted} records counted as read"
    );
}
