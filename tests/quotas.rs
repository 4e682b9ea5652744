//! Client quotas (Kafka's model) with real clients: a producer held to its
//! byte rate while another is not slowed, a consumer held to its byte rate
//! without losing a record, quotas altered live with Kafka's own
//! `kafka-configs`, KIP-599 mutation refusals, the request-time quota, the
//! per-IP connection creation rate, and the same byte-rate enforcement in
//! gateway mode (the edge throttles before forwarding).

mod common;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{log_tail, scratch, wait_for, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const ACLS: &str = "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n";
const MIB: f64 = 1024.0 * 1024.0;
const DEADLINE: Duration = Duration::from_secs(60);

fn password(user: &str) -> String {
    format!("{user}-Quota-Secret-5")
}

/// A SASL_SSL broker (or gateway, by `extra`) with the permissive ACLs
/// and these users.
fn start(dir: &std::path::Path, extra: &str, users: &[&str]) -> Broker {
    std::fs::create_dir_all(dir).unwrap();
    let acl = dir.join("acls.yaml");
    std::fs::write(&acl, ACLS).unwrap();
    let broker = Broker::start_secure(dir, &format!("acl:\n  file: {}\n{extra}", acl.display()));
    for u in users {
        broker.add_user(u, &password(u));
    }
    broker.wait_users_loaded(users.len() + 1, DEADLINE);
    broker
}

/// Creates topics of one partition, as `user` (the ACLs allow it).
fn create_topics(broker: &Broker, user: &str, names: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        config(broker, user).create().unwrap();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let res = rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap();
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
}

fn config(broker: &Broker, user: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password(user))
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap())
        .set("statistics.interval.ms", "500")
        .set("log_level", "3");
    c
}

/// Delivered bytes with their times, and the largest throttle librdkafka
/// reported in its statistics.
#[derive(Clone, Default)]
struct Meter {
    delivered: Arc<std::sync::Mutex<Vec<(Instant, usize)>>>,
    failed: Arc<AtomicU64>,
    failed_in_window: Arc<AtomicU64>,
    max_throttle_ms: Arc<AtomicI64>,
}

impl Meter {
    fn bytes_between(&self, from: Instant, to: Instant) -> usize {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, n)| n)
            .sum()
    }

    fn note_stats(&self, stats: &Statistics) {
        for b in stats.brokers.values() {
            if let Some(w) = &b.throttle {
                self.max_throttle_ms.fetch_max(w.max, Ordering::Relaxed);
            }
        }
    }
}

impl ClientContext for Meter {
    fn stats(&self, stats: Statistics) {
        self.note_stats(&stats);
    }
}

impl ProducerContext for Meter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let n = m.payload().map_or(0, <[u8]>::len);
                self.delivered.lock().unwrap().push((Instant::now(), n));
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Meter {}

/// Produces 1 KiB records to `topic` until `until`: as fast as the client
/// can when `rate` is `None`, else paced at `rate` bytes per second.
fn produce(
    broker: &Broker,
    user: &str,
    topic: &str,
    until: Instant,
    rate: Option<f64>,
) -> std::thread::JoinHandle<Meter> {
    let meter = Meter::default();
    let producer: ThreadedProducer<Meter> = config(broker, user)
        .set("linger.ms", "5")
        // Batches of at most 64 KiB: with librdkafka's 1 MB default, a
        // throttled producer sends about one batch per second, and counting
        // delivered bytes inside the window then errs by a whole batch
        // (8% of 12 s at 1 MiB/s), which is the measurement, not the quota.
        .set("batch.size", "65536")
        .set("queue.buffering.max.messages", "4000")
        .set("message.timeout.ms", "120000")
        .create_with_context(meter.clone())
        .unwrap();
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let payload = vec![b'q'; 1024];
        let started = Instant::now();
        let mut sent = 0usize;
        while Instant::now() < until {
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            match producer.send(BaseRecord::<(), _>::to(&topic).payload(&payload)) {
                Ok(()) => sent += payload.len(),
                // The queue is full while the broker throttles: wait.
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // What is still queued is not measured, and is purged when the
        // producer goes: only failures before the end count.
        meter
            .failed_in_window
            .store(meter.failed.load(Ordering::Relaxed), Ordering::Relaxed);
        let _ = producer.flush(Duration::from_millis(100));
        meter
    })
}

/// The test: a producer limited to 1 MiB/s stays within 10% of
/// it over 20 s while an unthrottled one on the same broker keeps its pace.
/// With `clients` > 1, alice runs that many producers (connections) at
/// once: the quota is the user's, so together they get no more.
fn producer_quota_holds(broker: &Broker, window: Duration, clients: usize) {
    create_topics(broker, "bob", &["quota-a", "quota-b"]);
    let quota = MIB;
    let start_at = Instant::now() + Duration::from_secs(2);
    let end_at = start_at + window;
    let alices: Vec<_> = (0..clients)
        .map(|_| produce(broker, "alice", "quota-a", end_at, None))
        .collect();
    let bob_rate = 3.0 * MIB;
    let bob = produce(broker, "bob", "quota-b", end_at, Some(bob_rate));
    let alices: Vec<Meter> = alices.into_iter().map(|a| a.join().unwrap()).collect();
    let bob = bob.join().unwrap();
    let secs = window.as_secs_f64();
    let alice_rate = alices
        .iter()
        .map(|a| a.bytes_between(start_at, end_at))
        .sum::<usize>() as f64
        / secs;
    let bob_got = bob.bytes_between(start_at, end_at) as f64 / secs;
    let context = || log_tail(broker, 30);
    assert!(
        (alice_rate - quota).abs() <= 0.1 * quota,
        "alice produced {:.3} MiB/s with a quota of 1 MiB/s\n{}",
        alice_rate / MIB,
        context()
    );
    assert!(
        bob_got >= 0.85 * bob_rate,
        "bob (no quota) produced {:.2} MiB/s of the {:.2} MiB/s he offered\n{}",
        bob_got / MIB,
        bob_rate / MIB,
        context()
    );
    let alice_throttle = alices
        .iter()
        .map(|a| a.max_throttle_ms.load(Ordering::Relaxed))
        .min()
        .unwrap();
    assert!(
        alice_throttle > 0,
        "librdkafka's statistics show no throttle for one of alice's producers"
    );
    assert_eq!(
        bob.max_throttle_ms.load(Ordering::Relaxed),
        0,
        "bob was throttled"
    );
    for a in &alices {
        assert_eq!(
            a.failed_in_window.load(Ordering::Relaxed),
            0,
            "alice's records failed"
        );
    }
    eprintln!(
        "alice ({clients} producers) {:.3} MiB/s (quota 1), throttle up to {alice_throttle} ms; bob {:.2} MiB/s of {:.2}",
        alice_rate / MIB,
        bob_got / MIB,
        bob_rate / MIB
    );
}

const ALICE_1MIB: &str = "quotas:\n  - principal: User:alice\n    producer_byte_rate: 1048576\n";

#[test]
fn a_producer_is_held_to_its_byte_rate_and_others_are_not_slowed() {
    let dir = scratch("quota-produce");
    let broker = start(dir.path(), ALICE_1MIB, &["alice", "bob"]);
    producer_quota_holds(&broker, Duration::from_secs(20), 1);
}

#[test]
fn the_gateway_throttles_before_forwarding() {
    let dir = scratch("quota-gateway");
    let up_dir = dir.path().join("up");
    std::fs::create_dir_all(&up_dir).unwrap();
    let up_acl = up_dir.join("acls.yaml");
    std::fs::write(
        &up_acl,
        "rules:\n  - {allow: \"User:ANONYMOUS\", operations: [all], topic: \"*\"}\n  - {allow: \"User:ANONYMOUS\", operations: [describe, create], cluster: kafka-cluster}\n",
    )
    .unwrap();
    let up = Broker::start(&up_dir, &format!("acl:\n  file: {}\n", up_acl.display()));
    let gw = start(
        &dir.path().join("gw"),
        &format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{}\"]\n  security_protocol: PLAINTEXT\n{ALICE_1MIB}",
            up.addr("PLAINTEXT")
        ),
        &["alice", "bob"],
    );
    // Two producers of alice's: a second connection gains her nothing.
    producer_quota_holds(&gw, Duration::from_secs(12), 2);
}

#[test]
fn a_consumer_is_held_to_its_byte_rate_and_reads_everything() {
    let dir = scratch("quota-consume");
    let broker = start(
        dir.path(),
        "quotas:\n  - principal: User:carol\n    consumer_byte_rate: 1048576\n",
        &["bob", "carol"],
    );
    // 5 MiB written by bob (no quota).
    create_topics(&broker, "bob", &["quota-c"]);
    let meter = Meter::default();
    let producer: ThreadedProducer<Meter> = config(&broker, "bob")
        .create_with_context(meter.clone())
        .unwrap();
    let payload = vec![b'c'; 1024];
    for _ in 0..5 * 1024 {
        while producer
            .send(BaseRecord::<(), _>::to("quota-c").payload(&payload))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(meter.delivered.lock().unwrap().len(), 5 * 1024);

    let read_all = |user: &str| -> (Duration, i64) {
        let m = Meter::default();
        let consumer: BaseConsumer<Meter> = config(&broker, user)
            .set("group.id", format!("g-{user}"))
            .set("enable.auto.commit", "false")
            .create_with_context(m.clone())
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("quota-c", 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        let mut next = 0i64;
        while next < 5 * 1024 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{user} read {next} records"
            );
            if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
                let msg = msg.unwrap();
                assert_eq!(msg.offset(), next, "{user}: a record skipped or repeated");
                next += 1;
            }
        }
        let took = started.elapsed();
        // Let one more statistics interval report the throttle.
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            consumer.poll(Duration::from_millis(100));
        }
        (took, m.max_throttle_ms.load(Ordering::Relaxed))
    };
    let (took, throttle) = read_all("carol");
    // 5 MiB at 1 MiB/s, one second's burst free: at least ~4 s.
    assert!(
        took >= Duration::from_millis(3500),
        "carol read 5 MiB in {took:?} with a 1 MiB/s quota"
    );
    assert!(throttle > 0, "no throttle in carol's statistics");
    let (_, bob_throttle) = read_all("bob");
    assert_eq!(bob_throttle, 0, "bob was throttled");
    eprintln!("carol read 5 MiB in {took:?} (throttle up to {throttle} ms)");
}

/// A client of ours speaking raw requests as `user`.
async fn raw_client(broker: &Broker, user: &str) -> portcullis::client::Connection {
    let tls = portcullis::client::tls_connector(&broker.ca_file(), None).unwrap();
    let mut conn = portcullis::client::Connector::tls(tls)
        .with_server_name(Some("localhost".into()))
        .with_client_id("quota-test")
        .connect(broker.addr("SASL_SSL"))
        .await
        .unwrap();
    conn.api_versions().await.unwrap();
    conn.login_scram(user, &password(user), None).await.unwrap();
    conn
}

async fn metadata(conn: &mut portcullis::client::Connection) -> MetadataResponse {
    conn.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .await
    .unwrap()
}

#[test]
fn mutation_and_request_quotas_follow_kafka() {
    let dir = scratch("quota-mutation");
    let broker = start(
        dir.path(),
        "quotas:\n  - principal: <default>\n    controller_mutation_rate: 5\n  - principal: User:erin\n    request_percentage: 1\n",
        &["dave", "erin"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut dave = raw_client(&broker, "dave").await;
        let create = |name: &str, partitions: i32| {
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.into())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)])
                .with_timeout_ms(10_000)
        };
        // 5 partitions a second, one second saved: 12 partitions go through
        // (into debt), the next topic is refused while the debt lasts.
        let first: CreateTopicsResponse = dave
            .call(ApiKey::CreateTopics, 7, &create("mut-a", 12))
            .await
            .unwrap();
        assert_eq!(first.topics[0].error_code, 0, "{first:?}");
        assert!(first.throttle_time_ms > 0, "{first:?}");
        // dave's connection is muted while he owes; his other connection
        // is not, and is refused.
        let mut dave2 = raw_client(&broker, "dave").await;
        let second: CreateTopicsResponse = dave2
            .call(ApiKey::CreateTopics, 7, &create("mut-b", 1))
            .await
            .unwrap();
        assert_eq!(second.topics[0].error_code, 89, "{second:?}");
        assert_eq!(
            second.topics[0].error_message.as_deref(),
            Some("The throttling quota has been exceeded.")
        );
        assert!(second.throttle_time_ms > 0);
        // v5 and older are not refused, only throttled (KIP-599).
        let old: CreateTopicsResponse = dave2
            .call(ApiKey::CreateTopics, 5, &create("mut-c", 1))
            .await
            .unwrap();
        assert_eq!(old.topics[0].error_code, 0, "{old:?}");
        // Once the debt is paid the next one goes through.
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(old.throttle_time_ms).unwrap() + 200,
        ))
        .await;
        let later: CreateTopicsResponse = dave
            .call(ApiKey::CreateTopics, 7, &create("mut-d", 1))
            .await
            .unwrap();
        assert_eq!(later.topics[0].error_code, 0, "{later:?}");

        // erin may spend 1% of a thread on requests: a burst of Metadata
        // requests soon comes back throttled, and the broker stops reading
        // her connection for that long.
        let mut erin = raw_client(&broker, "erin").await;
        let started = Instant::now();
        let mut throttled = None;
        while started.elapsed() < Duration::from_secs(30) {
            let r = metadata(&mut erin).await;
            if r.throttle_time_ms > 0 {
                throttled = Some(r.throttle_time_ms);
                break;
            }
        }
        let ms = throttled.expect("erin's requests were never throttled");
        let muted = Instant::now();
        let _ = metadata(&mut erin).await;
        assert!(
            muted.elapsed() + Duration::from_millis(5) >= Duration::from_millis(ms as u64),
            "answered after {:?}, throttle was {ms} ms",
            muted.elapsed()
        );
        // The ops endpoint counts each quota's throttled answers.
        let (status, text) = common::http_get(broker.ops_addr(), "/metrics").unwrap();
        assert_eq!(status, 200);
        for quota in ["controller_mutation_rate", "request_percentage"] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with("portcullis_throttled_responses_total{")
                        && l.contains(&format!("quota=\"{quota}\""))
                })
                .unwrap_or_else(|| panic!("no throttled_responses for {quota}"));
            let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= 1.0, "{line}");
        }
        // dave has no request quota: never throttled.
        for _ in 0..50 {
            let r = metadata(&mut dave).await;
            assert_eq!(r.throttle_time_ms, 0);
        }
    });
}

#[test]
fn connections_over_the_ip_creation_rate_are_closed() {
    let dir = scratch("quota-conn-rate");
    let broker = Broker::start(
        dir.path(),
        "quotas:\n  - ip: <default>\n    connection_creation_rate: 4\n",
    );
    let api_versions = [0u8, 18, 0, 0, 0, 0, 0, 1, 0, 0];
    let answered = |n: usize| -> usize {
        let conns: Vec<_> = (0..n).map(|_| broker.connect()).collect();
        conns
            .into_iter()
            .filter(|_| true)
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                common::raw_request(&mut s, &api_versions).is_some()
            })
            .filter(|ok| *ok)
            .count()
    };
    // 4 saved up plus what refills while connecting; far from 20.
    let ok = answered(20);
    assert!(
        (4..=8).contains(&ok),
        "{ok} of 20 rapid connections were served"
    );
    // After a pause the address is welcome again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(answered(1), 1);
}

const DESCRIBE_FRANK: [&str; 5] = [
    "--describe",
    "--entity-type",
    "users",
    "--entity-name",
    "frank",
];

#[test]
fn kafka_configs_alters_and_describes_quotas_live() {
    use common::kafka::{run_tool, tools, write_client_properties, ClientAuth};
    let dir = scratch("quota-kafka-configs");
    let broker = start(dir.path(), "", &["frank", "grace"]);
    let admin_pw = broker.admin_password.clone().unwrap();
    let ca = broker.ca_file();
    let props = |name: &str, user: &str, pw: &str| {
        let p = dir.path().join(format!("{name}.properties"));
        write_client_properties(
            &p,
            &ClientAuth::Scram {
                user,
                password: pw,
                ca: &ca,
            },
            &[],
        );
        p
    };
    let admin = props("admin", "admin", &admin_pw);
    let grace = props("grace", "grace", &password("grace"));
    let bootstrap = broker.addr("SASL_SSL").to_string();
    let configs = |props: &std::path::Path, args: &[&str]| {
        let mut all = vec![
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            props.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        run_tool(tools::CONFIGS, &all, "")
    };
    let set = [
        "--alter",
        "--entity-type",
        "users",
        "--entity-name",
        "frank",
        "--add-config",
        "producer_byte_rate=262144,consumer_byte_rate=1048576",
    ];
    let run = configs(&admin, &set);
    assert!(run.ok(), "{run}\n{}", log_tail(&broker, 20));
    let run = configs(&admin, &DESCRIBE_FRANK);
    assert!(run.ok(), "{run}");
    assert!(
        run.stdout.contains("producer_byte_rate=262144.0")
            && run.stdout.contains("consumer_byte_rate=1048576.0"),
        "{}",
        run.stdout
    );
    // A user without ALTER_CONFIGS on the cluster is refused.
    let run = configs(
        &grace,
        &[
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            "grace",
            "--add-config",
            "producer_byte_rate=1",
        ],
    );
    assert!(!run.ok(), "{run}");
    assert!(
        run.error_line().contains("Cluster authorization failed")
            || run.stderr.contains("ClusterAuthorizationException"),
        "{run}"
    );

    // In force at once: frank's 1.5 MiB takes seconds at 256 KiB/s.
    create_topics(&broker, "frank", &["quota-f"]);
    let meter = Meter::default();
    // Small batches: the last request is acknowledged at once and its
    // throttle paid after, so it should not be a large part of the 1.5 MiB.
    let producer: ThreadedProducer<Meter> = config(&broker, "frank")
        .set("batch.size", "65536")
        .create_with_context(meter.clone())
        .unwrap();
    let payload = vec![b'f'; 1024];
    let started = Instant::now();
    for _ in 0..1536 {
        while producer
            .send(BaseRecord::<(), _>::to("quota-f").payload(&payload))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let took = started.elapsed();
    // (1.5 MiB - 256 KiB saved - the last 64 KiB batch) / 256 KiB/s = 4.75 s.
    assert!(
        took >= Duration::from_millis(4000),
        "1.5 MiB in {took:?} at 256 KiB/s"
    );

    // Audited, and kept across a restart.
    let audit = wait_for("the quota change audited", DEADLINE, || {
        let text = std::fs::read_to_string(broker.dir.join("audit/audit.log")).ok()?;
        text.lines()
            .find(|l| l.contains("alter_client_quotas"))
            .map(str::to_string)
    });
    assert!(
        audit.contains("user=frank") && audit.contains("producer_byte_rate"),
        "{audit}"
    );
    let mut broker = broker;
    broker.restart();
    let run = configs(&admin, &DESCRIBE_FRANK);
    // The restarted broker listens on the same port.
    assert!(run.stdout.contains("producer_byte_rate=262144.0"), "{run}");
    // Removed: gone from the description.
    let run = configs(
        &admin,
        &[
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            "frank",
            "--delete-config",
            "producer_byte_rate,consumer_byte_rate",
        ],
    );
    assert!(run.ok(), "{run}");
    let run = configs(&admin, &DESCRIBE_FRANK);
    assert!(!run.stdout.contains("byte_rate"), "{run}");
}
