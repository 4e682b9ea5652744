//! Hostile clients: audit amplification. A logged-in user who may read one
//! topic sends one Metadata request naming 200,000 topics it may not
//! describe. The broker must answer every name, keep the audit trail's
//! growth bounded (the first denials recorded one by one, the rest in one
//! coalesced record that counts them), and spend memory linear in the
//! request with a small constant.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, MetadataRequest, MetadataResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use portcullis::client::{encode_request as request_frame, tls_connector, Connector, Stream};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::audit_files::raw_lines;
use crate::common::{log_tail, scratch, wait_for, Broker};

const DEADLINE: Duration = Duration::from_secs(120);
/// Distinct topic names the attack names that the user may not describe.
const DENIED: usize = 200_000;
/// Names repeated in the same request: Kafka answers each name once.
const REPEATS: usize = 1_000;
const METADATA_V: i16 = 9;
const CREATE_TOPICS_V: i16 = 4;
/// Audit bytes one such request may add.
const MAX_AUDIT_BYTES: u64 = 64 * 1024;
/// Peak broker memory growth allowed, as a multiple of the frame's size.
const MAX_RSS_MULTIPLE: f64 = 16.0;
const PASSWORD: &str = "reader-password-1";

/// Where and as whom the tests log in.
struct Target {
    addr: String,
    connector: Connector,
    user: String,
    password: String,
}

/// TCP, TLS and the SCRAM login (the library's client); then the test
/// speaks on the stream itself, with correlation ids of its choosing.
async fn connect_once(t: &Target) -> Result<Stream, portcullis::client::ClientError> {
    let mut c = t.connector.connect(&t.addr).await?;
    c.login_scram(&t.user, &t.password, None).await?;
    Ok(c.into_stream())
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The broker's pid: the process whose command line names this test's
/// config file (each test has its own scratch directory).
fn broker_pid(config: &Path) -> u32 {
    let want = config.to_string_lossy().into_owned();
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
        if args.iter().any(|a| a == "serve") && args.contains(&want) {
            return pid;
        }
    }
    panic!("no broker process for {want}");
}

/// A `/proc/<pid>/status` figure in KiB (`VmHWM`, `VmRSS`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn audit_bytes(log: &Path) -> u64 {
    let dir = log.parent().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn records(log: &Path) -> Vec<Value> {
    raw_lines(log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The authorization records of one request of the connection from `port`.
fn of_request(recs: &[Value], port: u16, corr: i32) -> Vec<Value> {
    recs.iter()
        .filter(|r| {
            r["event"] == "authorization"
                && r["client_port"].as_u64() == Some(port as u64)
                && r["correlation_id"].as_i64() == Some(corr as i64)
        })
        .cloned()
        .collect()
}

async fn call<T: Decodable>(
    s: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    api: ApiKey,
    version: i16,
    corr: i32,
    body: &impl Encodable,
) -> (T, usize) {
    let frame = request_frame(api, version, corr, "audit-amp", body).unwrap();
    let sent = frame.len();
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("response length");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).await.expect("response body");
    let mut b = Bytes::from(resp);
    let h = ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, corr);
    let r = T::decode(&mut b, version).unwrap();
    assert_eq!(b.remaining(), 0, "trailing bytes in the {api:?} response");
    (r, sent)
}

fn metadata(names: impl IntoIterator<Item = String>) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            names
                .into_iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic(&n))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(false)
}

/// A SASL_SSL broker whose ACLs let `reader` read, describe and create the
/// topic `readable` and nothing else.
struct Setup {
    broker: Broker,
    log: PathBuf,
    target: Target,
    _dir: tempfile::TempDir,
}

fn setup(name: &str) -> Setup {
    let dir = scratch(name);
    let acl = dir.path().join("acls.yaml");
    std::fs::write(
        &acl,
        "rules:\n  - {allow: \"User:reader\", operations: [read, describe, create], topic: readable}\n",
    )
    .unwrap();
    let log: PathBuf = dir.path().join("audit/audit.log");
    let broker = Broker::start_secure(
        dir.path(),
        &format!(
            "acl:\n  file: {}\naudit:\n  file: {}\n",
            acl.display(),
            log.display()
        ),
    );
    broker.add_user("reader", PASSWORD);
    // The CLI writes the store; the broker's watcher reloads it.
    wait_for("the broker to load the reader", DEADLINE, || {
        crate::common::strip_ansi(&broker.log())
            .lines()
            .any(|l| l.contains("credential file reloaded") && l.ends_with("users=2"))
            .then_some(())
    });
    let target = Target {
        addr: broker.addr("SASL_SSL").to_string(),
        connector: Connector::tls(tls_connector(&broker.ca_file(), None).unwrap()),
        user: "reader".into(),
        password: PASSWORD.into(),
    };
    Setup {
        broker,
        log,
        target,
        _dir: dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn one_request_naming_many_denied_topics_costs_bounded_audit_and_linear_memory() {
    let Setup {
        broker,
        log,
        target,
        _dir,
    } = setup("audit-amplification");
    let pid = broker_pid(&broker.config_path());
    let rt = runtime();
    rt.block_on(async {
        let mut s = connect_once(&target).await.expect("reader logs in");
        let port = s.tcp().local_addr().unwrap().port();

        // The one topic the reader may use.
        let create = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic("readable"))
                .with_num_partitions(3)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000);
        let (r, _): (CreateTopicsResponse, _) =
            call(&mut s, ApiKey::CreateTopics, CREATE_TOPICS_V, 10, &create).await;
        assert_eq!(r.topics[0].error_code, 0, "{r:?}");

        // Warm-up: one small request that is partly denied, so allocator
        // arenas and buffers exist before the baseline.
        let (m, _): (MetadataResponse, _) = call(
            &mut s,
            ApiKey::Metadata,
            METADATA_V,
            11,
            &metadata(["readable".to_string(), "nope".to_string()]),
        )
        .await;
        assert_eq!(m.topics.len(), 2);
        wait_for("the warm-up denial's record", DEADLINE, || {
            (!of_request(&records(&log), port, 11).is_empty()).then_some(())
        });
        let audit_before = audit_bytes(&log);
        let hwm_before = status_kib(pid, "VmHWM:");
        let rss_before = status_kib(pid, "VmRSS:");

        // The attack: one long (invalid) name, 199,999 short ones, each
        // about 20 bytes, "readable" in the middle and 1,000 repeats.
        let long = "x".repeat(1000);
        let mut names: Vec<String> = Vec::with_capacity(DENIED + REPEATS + 1);
        names.push(long.clone());
        names.extend((1..DENIED).map(|i| format!("denied-topic-{i:07}")));
        names.insert(DENIED / 2, "readable".into());
        for i in 0..REPEATS {
            names.push(format!("denied-topic-{:07}", i * 7 + 1));
        }
        let started = Instant::now();
        let (m, frame_bytes): (MetadataResponse, _) =
            call(&mut s, ApiKey::Metadata, METADATA_V, 12, &metadata(names)).await;
        let took = started.elapsed();

        // (4) Every distinct name answered once; the allowed topic in full.
        assert_eq!(m.topics.len(), DENIED + 1, "one answer per distinct name");
        let readable: Vec<_> = m
            .topics
            .iter()
            .filter(|t| t.name.as_deref().map(|n| &**n) == Some("readable"))
            .collect();
        assert_eq!(readable.len(), 1);
        assert_eq!(readable[0].error_code, 0);
        assert_eq!(readable[0].partitions.len(), 3);
        assert!(m
            .topics
            .iter()
            .filter(|t| t.name.as_deref().map(|n| &**n) != Some("readable"))
            .all(|t| t.error_code == 29));
        drop(m);

        // (2) The coalesced record stands for every denial beyond the
        // individual ones: nothing is lost.
        let coalesced = wait_for("the coalesced denial record", DEADLINE, || {
            of_request(&records(&log), port, 12)
                .into_iter()
                .find(|r| r.get("count").is_some())
        });
        let hwm_after = status_kib(pid, "VmHWM:");
        let rss_after = status_kib(pid, "VmRSS:");
        let audit_after = audit_bytes(&log);
        let recs = of_request(&records(&log), port, 12);
        let individual: Vec<&Value> = recs.iter().filter(|r| r.get("count").is_none()).collect();
        let count = coalesced["count"].as_u64().unwrap();
        eprintln!(
            "audit amplification: frame {frame_bytes} bytes, answered in {took:.1?}; \
             {} individual records + coalesced count {count}; audit +{} bytes; \
             VmHWM +{} KiB ({:.1}x frame), VmRSS +{} KiB",
            individual.len(),
            audit_after - audit_before,
            hwm_after.saturating_sub(hwm_before),
            hwm_after.saturating_sub(hwm_before) as f64 * 1024.0 / frame_bytes as f64,
            rss_after as i64 - rss_before as i64,
        );
        assert_eq!(coalesced["decision"], "deny", "{coalesced}");
        assert_eq!(coalesced["operation"], "describe", "{coalesced}");
        assert_eq!(coalesced["resource_type"], "topic", "{coalesced}");
        assert_eq!(coalesced["api"], "Metadata", "{coalesced}");
        assert_eq!(
            coalesced["error_codes"],
            serde_json::json!([29]),
            "{coalesced}"
        );
        let sample = coalesced["sample"].as_array().unwrap();
        assert!(!sample.is_empty() && sample.len() <= 8, "{coalesced}");
        assert!(sample
            .iter()
            .all(|n| n.as_str().unwrap().starts_with("denied-topic-")));
        assert_eq!(individual.len(), 16, "first denials recorded one by one");
        assert!(individual
            .iter()
            .all(|r| r["decision"] == "deny" && r["error_code"] == 29));
        assert_eq!(
            individual.len() as u64 + count,
            DENIED as u64,
            "individual records + count = denied names"
        );
        assert_eq!(
            recs.iter().filter(|r| r.get("count").is_some()).count(),
            1,
            "one coalesced record"
        );
        // Long names are cut and marked.
        let cut = individual[0]["resource_name"].as_str().unwrap();
        assert!(
            cut.len() < 300 && cut.ends_with("[truncated, 1000 bytes]"),
            "{cut}"
        );

        // (1) Bounded audit bytes.
        assert!(
            audit_after - audit_before < MAX_AUDIT_BYTES,
            "one request wrote {} audit bytes",
            audit_after - audit_before
        );
        // (3) Memory linear in the request with a small constant.
        let growth = hwm_after.saturating_sub(hwm_before) * 1024;
        assert!(
            (growth as f64) < MAX_RSS_MULTIPLE * frame_bytes as f64,
            "peak RSS grew {growth} bytes for a {frame_bytes}-byte frame\n{}",
            log_tail(&broker, 20)
        );

        // The connection still serves.
        let (m, _): (MetadataResponse, _) = call(
            &mut s,
            ApiKey::Metadata,
            METADATA_V,
            13,
            &metadata(["readable".to_string()]),
        )
        .await;
        assert_eq!(m.topics[0].error_code, 0);
    });
}

/// The coalesced record of one request and group, checked to stand, with
/// the group's individual records, for exactly `decisions` decisions.
fn coalesced_adds_up(log: &Path, port: u16, corr: i32, operation: &str, decisions: u64) -> Value {
    let c = wait_for(
        &format!("the coalesced {operation} record"),
        DEADLINE,
        || {
            of_request(&records(log), port, corr)
                .into_iter()
                .find(|r| r["operation"] == operation && r.get("count").is_some())
        },
    );
    let recs = of_request(&records(log), port, corr);
    let individual = recs
        .iter()
        .filter(|r| r["operation"] == operation && r.get("count").is_none())
        .count() as u64;
    assert_eq!(individual, 16, "{operation}: first denials one by one");
    assert_eq!(
        individual + c["count"].as_u64().unwrap(),
        decisions,
        "{operation}: individual records + count = decisions\n{c}"
    );
    assert_eq!(c["decision"], "deny", "{c}");
    c
}

/// Other APIs that name many resources go through the same choke point:
/// DeleteTopics and DescribeConfigs naming 5,000 topics each write 17
/// authorization records each.
#[test]
fn delete_topics_and_describe_configs_coalesce_too() {
    const N: usize = 5_000;
    let t = setup("audit-amplification-apis");
    let rt = runtime();
    rt.block_on(async {
        let mut s = connect_once(&t.target).await.expect("reader logs in");
        let port = s.tcp().local_addr().unwrap().port();
        let names = || (0..N).map(|i| format!("victim-{i:05}"));

        let delete = DeleteTopicsRequest::default()
            .with_topic_names(names().map(|n| topic(&n)).collect())
            .with_timeout_ms(30_000);
        let (r, _): (DeleteTopicsResponse, _) =
            call(&mut s, ApiKey::DeleteTopics, 4, 20, &delete).await;
        assert_eq!(r.responses.len(), N);
        assert!(r.responses.iter().all(|x| x.error_code == 29));
        let c = coalesced_adds_up(&t.log, port, 20, "delete", N as u64);
        assert_eq!(c["error_codes"], serde_json::json!([29]), "{c}");

        let describe = DescribeConfigsRequest::default().with_resources(
            names()
                .map(|n| {
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_string(n))
                })
                .collect(),
        );
        let (r, _): (DescribeConfigsResponse, _) =
            call(&mut s, ApiKey::DescribeConfigs, 2, 21, &describe).await;
        assert_eq!(r.results.len(), N);
        assert!(r.results.iter().all(|x| x.error_code == 29));
        let c = coalesced_adds_up(&t.log, port, 21, "describe_configs", N as u64);
        assert_eq!(c["error_codes"], serde_json::json!([29]), "{c}");
        assert_eq!(c["api"], "DescribeConfigs", "{c}");
    });
}
