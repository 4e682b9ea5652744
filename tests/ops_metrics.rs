//! The ops listener seen from outside: `/metrics` parsed by the Prometheus
//! project's own Python parser (`prometheus_client`) while librdkafka
//! clients produce, consume, get denied and fail to log in; `/healthz` and
//! `/readyz` in embedded and gateway mode; the printed address of a port-0
//! listener; and a flood of idle ops connections that must not stop a
//! fresh scrape nor the Kafka listener. Each test has its own scratch
//! directory and broker, and waits for conditions with deadlines.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get, log_tail, scratch, wait_for, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};

#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses a scrape with `prometheus_client.parser`: a format error fails
/// the test.
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new(common::python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the Prometheus parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Scrape(Vec<Sample>);

impl Scrape {
    fn take(broker: &Broker) -> Scrape {
        let (status, body) = http_get(broker.ops_addr(), "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        Scrape(parse(&body))
    }

    /// Sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }
}

fn password_of(user: &str) -> String {
    format!("{user}-Secret-42")
}

fn client(broker: &Broker, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap());
    c
}

/// Collects librdkafka's error callbacks (authentication failures arrive here).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<RDKafkaErrorCode>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, _reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.0.lock().unwrap().push(code);
        }
    }
}
impl rdkafka::consumer::ConsumerContext for Errors {}

const TOPIC: &str = "metered";
const GROUP: &str = "metered-readers";
const PRODUCED: usize = 50;
const DENIED: usize = 3;
const COMMITTED: i64 = 40;

#[test]
fn metrics_follow_a_produce_consume_deny_workload() {
    let dir = scratch("ops-workload");
    let acl = dir.path().join("acls.yaml");
    // alice may do anything to topics and groups; bob may only describe
    // (so his produce requests reach the edge and are denied there).
    std::fs::write(
        &acl,
        "rules:\n  - {allow: \"User:alice\", operations: [all], topic: \"*\"}\n  - {allow: \"User:alice\", operations: [all], group: \"*\"}\n  - {allow: \"User:bob\", operations: [describe], topic: \"*\"}\n",
    )
    .unwrap();
    let broker = Broker::start_secure(dir.path(), &format!("acl:\n  file: {}\n", acl.display()));
    for u in ["alice", "bob"] {
        broker.add_user(u, &password_of(u));
    }
    broker.wait_users_loaded(3, Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = Scrape::take(&broker);

    // Produce: one partition, PRODUCED records one by one.
    let admin: AdminClient<DefaultClientContext> = client(&broker, "alice", &password_of("alice"))
        .create()
        .unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ))
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let producer: FutureProducer = client(&broker, "alice", &password_of("alice"))
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for i in 0..PRODUCED {
        let value = format!("value-{i}");
        rt.block_on(producer.send(
            FutureRecord::<(), _>::to(TOPIC).payload(&value),
            Duration::from_secs(30),
        ))
        .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }

    // Deny: bob's produce requests, each from a client of its own
    // (librdkafka remembers a topic's authorization error and fails later
    // sends locally, without a request).
    for i in 0..DENIED {
        let bob: FutureProducer = client(&broker, "bob", &password_of("bob"))
            .set("linger.ms", "0")
            .create()
            .unwrap();
        let sent = rt.block_on(bob.send(
            FutureRecord::<(), _>::to(TOPIC).payload("nope"),
            Duration::from_secs(30),
        ));
        match sent {
            Err((KafkaError::MessageProduction(code), _)) => {
                assert_eq!(code, RDKafkaErrorCode::TopicAuthorizationFailed, "send {i}")
            }
            other => panic!("bob's produce {i} was not refused: {other:?}"),
        }
    }

    // Consume everything, then commit COMMITTED: the lag is the rest.
    let consumer: BaseConsumer = client(&broker, "alice", &password_of("alice"))
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = 0;
    wait_for("all records consumed", Duration::from_secs(60), || {
        while let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.unwrap();
            seen += 1;
        }
        (seen >= PRODUCED).then_some(())
    });
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(TOPIC, 0, Offset::Offset(COMMITTED))
        .unwrap();
    consumer.commit(&commit, CommitMode::Sync).unwrap();

    // One wrong password, and no reconnect before the client is dropped.
    let errors = Errors::default();
    let bad: BaseConsumer<Errors> = client(&broker, "alice", "not-her-password")
        .set("group.id", "never")
        .set("reconnect.backoff.ms", "60000")
        .set("reconnect.backoff.max.ms", "60000")
        .create_with_context(errors.clone())
        .unwrap();
    wait_for("the failed login", Duration::from_secs(30), || {
        let _ = bad.poll(Duration::from_millis(100));
        errors
            .0
            .lock()
            .unwrap()
            .contains(&RDKafkaErrorCode::Authentication)
            .then_some(())
    });
    drop(bad);

    let failed_logins = |s: &Scrape| {
        s.sum(
            "portcullis_logins_total",
            &[("outcome", "failure"), ("reason", "wrong_password")],
        )
    };
    // Counters move with the requests, gauges with the scrape: wait for
    // the slowest (the commit) to show.
    let after = wait_for("the workload in /metrics", Duration::from_secs(30), || {
        let s = Scrape::take(&broker);
        let lag = s.sum(
            "portcullis_consumer_group_lag",
            &[("group", GROUP), ("topic", TOPIC)],
        );
        (lag == (PRODUCED as i64 - COMMITTED) as f64 && failed_logins(&s) >= 1.0).then_some(s)
    });
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let topic = [("topic", TOPIC)];
    let context = || {
        let decisions: Vec<_> = after
            .0
            .iter()
            .filter(|s| s.name.starts_with("portcullis_authorization"))
            .collect();
        format!("{decisions:?}\n{}", log_tail(&broker, 40))
    };

    assert_eq!(
        delta(
            "portcullis_authorization_decisions_total",
            &[
                ("api", "Produce"),
                ("operation", "write"),
                ("resource_type", "topic"),
                ("outcome", "deny")
            ]
        ),
        DENIED as f64,
        "{}",
        context()
    );
    assert_eq!(
        delta("portcullis_topic_records_in_total", &topic),
        PRODUCED as f64
    );
    assert!(delta("portcullis_topic_bytes_in_total", &topic) > 0.0);
    assert_eq!(
        delta("portcullis_topic_records_out_total", &topic),
        PRODUCED as f64
    );
    assert!(
        delta(
            "portcullis_principal_bytes_in_total",
            &[("principal", "User:alice")]
        ) > 0.0
    );
    assert_eq!(
        after.sum(
            "portcullis_partition_high_watermark",
            &[("topic", TOPIC), ("partition", "0")]
        ),
        PRODUCED as f64
    );
    assert_eq!(
        after.sum(
            "portcullis_partition_log_start_offset",
            &[("topic", TOPIC), ("partition", "0")]
        ),
        0.0
    );
    assert!(after.sum("portcullis_partition_log_size_bytes", &topic) > 0.0);
    assert_eq!(after.sum("portcullis_partition_segments", &topic), 1.0);
    assert_eq!(delta_of(&before, &after, failed_logins), 1.0);
    assert!(
        delta(
            "portcullis_logins_total",
            &[("mechanism", "SCRAM-SHA-512"), ("outcome", "success")]
        ) >= 4.0
    );
    // Producer, bob, consumer (two connections), admin, bad login at least.
    assert!(delta("portcullis_connections_accepted_total", &[]) >= 5.0);
    assert!(
        delta(
            "portcullis_request_duration_seconds_count",
            &[("api", "Produce"), ("stage", "total")]
        ) >= (PRODUCED + DENIED) as f64
    );
    assert!(delta("portcullis_audit_records_written_total", &[]) > 0.0);
    // The producer and the consumer are still connected.
    assert!(after.sum("portcullis_connections_open", &[("listener", "SASL_SSL")]) >= 2.0);
    // Adding alice and bob: the credential file reloaded at least once.
    assert!(
        after.sum(
            "portcullis_reloads_total",
            &[("file", "credentials"), ("outcome", "applied")]
        ) >= 1.0
    );
    assert!(after.has("portcullis_audit_queue_depth"));
    assert!(after.sum("portcullis_tls_certificate_expiry_seconds", &[]) > 86_400.0);
    // Failed logins never name the user.
    assert!(!after
        .0
        .iter()
        .any(|s| s.name.starts_with("portcullis_logins")
            && s.labels.values().any(|v| v.contains("alice"))));
    for quota in ["producer_byte_rate", "connection_creation_rate"] {
        assert_eq!(
            after.sum("portcullis_throttled_responses_total", &[("quota", quota)]),
            0.0
        );
    }

    let (status, body) = http_get(broker.ops_addr(), "/healthz").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(broker.ops_addr(), "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true, "{body}");
    for check in ["listeners", "log", "acls", "credentials"] {
        assert_eq!(ready["checks"][check], "ok", "{body}");
    }
    let (status, _) = http_get(broker.ops_addr(), "/nothing-here").unwrap();
    assert_eq!(status, 404);
}

fn delta_of(before: &Scrape, after: &Scrape, f: impl Fn(&Scrape) -> f64) -> f64 {
    f(after) - f(before)
}

#[test]
fn readyz_names_an_unreachable_upstream_in_gateway_mode() {
    let dir = scratch("ops-gateway");
    // A port nobody listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broker = Broker::start(
        dir.path(),
        &format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{dead}\"]\n  security_protocol: PLAINTEXT\n"
        ),
    );
    let (status, body) = http_get(broker.ops_addr(), "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false, "{body}");
    let upstream = ready["checks"]["upstream"].as_str().unwrap_or_default();
    assert!(upstream.starts_with("unreachable: "), "{body}");
    assert_eq!(ready["checks"]["listeners"], "ok", "{body}");
    // No log in gateway mode: the data lives upstream.
    assert!(ready["checks"].get("log").is_none(), "{body}");
    let (status, _) = http_get(broker.ops_addr(), "/healthz").unwrap();
    assert_eq!(status, 200);
    let s = Scrape::take(&broker);
    assert_eq!(s.sum("portcullis_upstream_reachable", &[]), 0.0);
    assert!(
        s.sum(
            "portcullis_upstream_connects_total",
            &[("outcome", "failed")]
        ) >= 1.0
    );
}

#[test]
fn ops_port_zero_prints_its_address_and_a_taken_port_fails_clearly() {
    let dir = scratch("ops-port");
    let broker = Broker::start(dir.path(), "");
    // The harness read `portcullis: ops listening http://ADDR ...`.
    let addr = broker.ops_addr().to_string();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port != 0, "{addr}");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let (status, _) = http_get(&addr, "/healthz").unwrap();
    assert_eq!(status, 200);

    // A second broker told to use the first one's ops port refuses to
    // start, saying which listener and address.
    let dir2 = scratch("ops-port-taken");
    let cfg = dir2.path().join("portcullis.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}/data\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nacl:\n  file: {}/acls.yaml\n  allow_missing: true\naudit:\n  file: {}/audit/audit.log\nops:\n  address: {addr}\n",
            dir2.path().display(),
            dir2.path().display(),
            dir2.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = common::strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(
        err.contains(&format!("cannot bind the ops listener on {addr}")),
        "{err}"
    );

    // Switched off: no ops line, and the broker serves as before.
    let dir3 = scratch("ops-off");
    let off = Broker::start(dir3.path(), "ops:\n  enabled: false\n");
    assert!(TcpStream::connect(&off.bootstrap).is_ok());
}

#[test]
fn idle_ops_connections_do_not_stop_scrapes_nor_the_kafka_listener() {
    let dir = scratch("ops-hostile");
    let broker = Broker::start(
        dir.path(),
        "ops:\n  address: 127.0.0.1:0\n  max_connections: 16\n  request_timeout_ms: 60000\n",
    );
    let ops = broker.ops_addr().to_string();
    // Far more connections than the limit: some send nothing, some a
    // request head that never ends.
    let mut idle = Vec::new();
    for i in 0..200 {
        if let Ok(mut s) = TcpStream::connect(&ops) {
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            }
            idle.push(s);
        }
    }
    // The Kafka listener is another listener: untouched.
    let kafka: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    kafka
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("the Kafka listener answers during the ops flood");
    // A fresh scrape takes the place of an idle connection: served long
    // before the idle ones would time out (60 s), while they are open.
    let body = wait_for(
        "a fresh /metrics during the flood",
        Duration::from_secs(20),
        || match http_get(&ops, "/metrics") {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    );
    assert!(!parse(&body).is_empty());
    // The broker holds at most 16 of them; the rest it closed.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 64];
            let mut stream: &TcpStream = s;
            match stream.read(&mut buf) {
                Ok(n) => n == 0,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert!(
        closed >= idle.len() - 16,
        "{closed} of {} closed",
        idle.len()
    );
}

#[test]
fn readyz_and_upstream_metrics_with_a_reachable_upstream() {
    let dir = scratch("ops-gateway-up");
    let up = Broker::start(&dir.path().join("up"), "");
    let gw = Broker::start(
        &dir.path().join("gw"),
        &format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{}\"]\n  security_protocol: PLAINTEXT\n",
            up.bootstrap
        ),
    );
    let (status, body) = http_get(gw.ops_addr(), "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["checks"]["upstream"], "ok", "{body}");
    // A client request forwarded upstream shows in the upstream latency.
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &gw.bootstrap)
        .create()
        .unwrap();
    client
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata through the gateway");
    let s = wait_for("the forwarded Metadata", Duration::from_secs(30), || {
        let s = Scrape::take(&gw);
        (s.sum(
            "portcullis_upstream_request_duration_seconds_count",
            &[("api", "Metadata"), ("outcome", "ok")],
        ) >= 1.0)
            .then_some(s)
    });
    assert_eq!(s.sum("portcullis_upstream_reachable", &[]), 1.0);
    assert!(s.sum("portcullis_upstream_connects_total", &[("outcome", "ok")]) >= 1.0);
    // No partitions of its own in gateway mode.
    assert!(!s.has("portcullis_partition_high_watermark"));
}

#[test]
fn ops_tls_serves_https_with_the_server_certificate() {
    let dir = scratch("ops-tls");
    let broker = Broker::start_secure(dir.path(), "ops:\n  address: 127.0.0.1:0\n  tls: true\n");
    // Python's TLS stack, verifying against the broker's CA.
    let script = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen("https://%s/healthz" % sys.argv[1], context=ctx, timeout=20) as r:
    print(r.status, r.read().decode().strip())
"#;
    let out = Command::new(common::python())
        .args(["-c", script, broker.ops_addr()])
        .arg(broker.ca_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 ok");
    // Plain HTTP on the TLS port gets no answer.
    assert!(!matches!(
        http_get(broker.ops_addr(), "/healthz"),
        Ok((200, _))
    ));
}
