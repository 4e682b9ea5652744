//! Portcullis in gateway mode in front of a real 3-broker Apache Kafka
//! cluster (issue #14 item 2): the harness's KRaft cluster
//! (tests/common/kafka.rs) with SASL_SSL + SCRAM-SHA-512 listeners and
//! Kafka's StandardAuthorizer; the gateway logs in upstream as the SCRAM
//! user `gateway-svc`, which holds Kafka ACLs (not super user); clients log
//! in to the gateway (SASL_SSL, SCRAM-SHA-512, its own credential store and
//! ACL file). Topics have replication factor 3 and min.insync.replicas=2.
//!
//! What reaches Kafka is read on Kafka's side: its metadata and offsets
//! (directly, over a node's internal PLAINTEXT listener), and its request
//! log and authorizer log (`kafka.request.logger` / `kafka.authorizer.logger`
//! switched to DEBUG at runtime, per broker, while a test needs them).
//!
//! One cluster and one gateway serve every test of this file; the tests
//! take turns (a mutex: two cores do not run two Kafka workloads any faster)
//! and each leaves the cluster whole. They are dropped when the test binary
//! exits, or kept for inspection after a failure (or with
//! `GATEWAY_KAFKA_KEEP` set). Each test prints its own run time
//! (`gateway_kafka::<test>: passed in ...`), the first one's without the
//! cluster's start (printed apart, ~10-20 s).
//!
//! `PORTCULLIS_BIN` picks the gateway binary (see `gk::bin`).

mod common;
#[path = "common/gateway_kafka.rs"]
mod gk;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::Value;

use common::kafka::{run_tool, tools, KafkaCluster, KafkaOpts, Listener};
use gk::{GatewayOpts, GatewayProc, RequestLine};

const DEADLINE: Duration = Duration::from_secs(90);

/// The gateway's service credential: a SCRAM user of the Kafka cluster.
const SERVICE: (&str, &str) = ("gateway-svc", "gateway-svc-Kafka-Secret-3");
const SERVICE_PRINCIPAL: &str = "User:gateway-svc";
/// A client of the gateway (the gateway's own credential store).
const ALICE: (&str, &str) = ("alice", "alice-Gw-Secret-42");

/// The gateway's ACLs: alice may do anything to `gk-*` topics, groups and
/// transactional ids and to `gw-*` topics and groups (those of the shared
/// script tests/python/gateway_addresses.py), and nothing else.
const GW_ACLS: &str = "allow_everyone_if_no_acl_found: false\nrules:\n  - {allow: \"User:alice\", operations: [all], topic_prefix: gk-}\n  - {allow: \"User:alice\", operations: [all], group_prefix: gk-}\n  - {allow: \"User:alice\", operations: [all], transactional_id_prefix: gk-}\n  - {allow: \"User:alice\", operations: [all], topic_prefix: gw-}\n  - {allow: \"User:alice\", operations: [all], group_prefix: gw-}\n";

/// Kafka settings of the cluster: a killed broker is fenced (and its
/// leaderships move) after 6 s instead of 9; followers that stop fetching
/// leave the ISR after 10 s instead of 30. Topics the gateway's clients
/// never created explicitly are created on first use (the ACL test's
/// control: a request that reaches Kafka creates the topic it names). No
/// preferred-leader rebalancing behind the tests' backs.
const KAFKA_PROPS: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "6000"),
    ("broker.heartbeat.interval.ms", "1000"),
    ("replica.lag.time.max.ms", "10000"),
    ("auto.create.topics.enable", "true"),
    // Leaders move only when a test moves them.
    ("auto.leader.rebalance.enable", "false"),
];

const REQUEST_LOGGER: &str = "kafka.request.logger";
const AUTHORIZER_LOGGER: &str = "kafka.authorizer.logger";

// ===========================================================================
// The shared cluster and gateway
// ===========================================================================

struct Fixture {
    // Dropped in this order: the gateway, then Kafka, then the directory.
    gw: GatewayProc,
    kafka: KafkaCluster,
    /// Upstream node id -> the gateway's per-broker listener for it.
    gw_nodes: BTreeMap<i32, String>,
    /// Every port a Kafka node listens on (client and internal).
    kafka_ports: BTreeSet<u16>,
    gw_pid: u32,
    dir: Option<tempfile::TempDir>,
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);
static FAILED: AtomicBool = AtomicBool::new(false);
static START_FAILED: AtomicBool = AtomicBool::new(false);

/// Runs `body` with the shared cluster and gateway (started by the first
/// test), one test at a time; prints the test's run time, and on failure
/// the gateway's and Kafka's log tails.
fn with_fixture(name: &str, body: impl FnOnce(&mut Fixture)) {
    let mut guard = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        !START_FAILED.load(Ordering::SeqCst),
        "the shared Kafka cluster and gateway failed to start (see the first test)"
    );
    if guard.is_none() {
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain function run at process exit.
            unsafe {
                libc::atexit(drop_fixture);
            }
        });
        let started = std::panic::catch_unwind(Fixture::start);
        match started {
            Ok(f) => *guard = Some(f),
            Err(e) => {
                START_FAILED.store(true, Ordering::SeqCst);
                FAILED.store(true, Ordering::SeqCst);
                std::panic::resume_unwind(e);
            }
        }
    }
    let f = guard.as_mut().unwrap();
    f.heal();
    let started = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(f)));
    match run {
        Ok(()) => eprintln!("gateway_kafka::{name}: passed in {:.1?}", started.elapsed()),
        Err(e) => {
            FAILED.store(true, Ordering::SeqCst);
            eprintln!(
                "gateway_kafka::{name}: FAILED after {:.1?}\n{}\n{}\nkafka dir {}, gateway dir {}",
                started.elapsed(),
                f.gw.log_tail(60),
                f.kafka.logs_tail(25),
                f.kafka.dir.display(),
                f.gw.dir.display()
            );
            std::panic::resume_unwind(e);
        }
    }
}

/// Runs `body` with a cluster and gateway of its own (a test that changes
/// the cluster for good, adding a node), dropped at its end or kept for
/// inspection after a failure. It takes its turn with the shared fixture's
/// tests: two cores run one Kafka workload at a time.
/// `upstream_nodes`: how many of the nodes the gateway's
/// `bootstrap_servers` name.
fn with_own_fixture(name: &str, upstream_nodes: usize, body: impl FnOnce(&mut Fixture)) {
    let _turn = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    let mut f = Fixture::start_as(&format!("gwk-{name}"), upstream_nodes);
    let started = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut f)));
    match run {
        Ok(()) => eprintln!("gateway_kafka::{name}: passed in {:.1?}", started.elapsed()),
        Err(e) => {
            eprintln!(
                "gateway_kafka::{name}: FAILED after {:.1?}\n{}\n{}\nkafka dir {}, gateway dir {}",
                started.elapsed(),
                f.gw.log_tail(60),
                f.kafka.logs_tail(25),
                f.kafka.dir.display(),
                f.gw.dir.display()
            );
            // The cluster keeps its directory when dropped while panicking;
            // the gateway's is kept here.
            if let Some(d) = f.dir.take() {
                eprintln!("gateway_kafka::{name}: kept {}", d.keep().display());
            }
            // `f` is dropped while unwinding: the cluster keeps its own.
            std::panic::resume_unwind(e);
        }
    }
}

/// At exit: stop the gateway and Kafka; after a failure (or with
/// `GATEWAY_KAFKA_KEEP` set) their directories stay (Kafka's JVMs die with this process: parent-death signal).
extern "C" fn drop_fixture() {
    let mut guard = match FIXTURE.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let Some(mut f) = guard.take() else { return };
    if FAILED.load(Ordering::SeqCst) || std::env::var_os("GATEWAY_KAFKA_KEEP").is_some() {
        if let Some(d) = f.dir.take() {
            eprintln!(
                "gateway_kafka: kept {} and {}",
                d.keep().display(),
                f.kafka.dir.display()
            );
        }
        drop(f.gw);
        std::mem::forget(f.kafka);
    } else {
        drop(f);
    }
}

impl Fixture {
    /// The shared cluster and gateway.
    fn start() -> Fixture {
        Fixture::start_as("gwk", 3)
    }

    /// A 3-node cluster and a gateway, in directories named after `name`;
    /// the gateway's `bootstrap_servers` name the first `upstream_nodes`
    /// nodes (it learns the others from the cluster).
    fn start_as(name: &str, upstream_nodes: usize) -> Fixture {
        let started = Instant::now();
        let kafka = KafkaCluster::start(
            name,
            KafkaOpts {
                nodes: 3,
                listeners: &[Listener::SaslSsl],
                users: &[SERVICE],
                authorizer: true,
                props: KAFKA_PROPS,
                ..Default::default()
            },
        );
        // The service principal's Kafka ACLs: everything on topics, groups
        // and transactional ids, and the cluster (IdempotentWrite, Create,
        // Describe). It is not a super user: Kafka's authorizer decides
        // every request the gateway forwards.
        let internal = kafka.internal_bootstrap();
        kafka.tool_ok(
            tools::ACLS,
            &[
                "--bootstrap-server",
                &internal,
                "--add",
                "--allow-principal",
                SERVICE_PRINCIPAL,
                "--operation",
                "All",
                "--topic",
                "*",
                "--group",
                "*",
                "--transactional-id",
                "*",
                "--cluster",
            ],
            "",
        );
        let dir = common::scratch(&format!("gateway-kafka-{name}"));
        let clients: Vec<String> = (0..kafka.nodes())
            .map(|i| kafka.addr(i, Listener::SaslSsl))
            .collect();
        let upstream = &clients[..upstream_nodes];
        let ca = kafka.ca_file();
        let gw = GatewayProc::start(
            &dir.path().join("gw"),
            &GatewayOpts {
                upstream,
                upstream_ca: &ca,
                service_user: SERVICE.0,
                service_password: SERVICE.1,
                acl: GW_ACLS,
            },
        );
        gw.add_user(ALICE.0, ALICE.1, 2);
        let ids: Vec<i32> = (0..kafka.nodes()).map(|i| kafka.node_id(i)).collect();
        let gw_nodes = gw.wait_nodes(&ids);
        let mut kafka_ports = BTreeSet::new();
        let internal = kafka.internal_bootstrap();
        for a in clients
            .iter()
            .map(String::as_str)
            .chain(internal.split(','))
        {
            kafka_ports.insert(port_of(a));
        }
        let gw_pid = gw.pid();
        eprintln!(
            "gateway_kafka: {name}: cluster and gateway ready in {:.1?}; gateway {} (pid {gw_pid}), per-broker {gw_nodes:?}",
            started.elapsed(),
            gw.bootstrap
        );
        Fixture {
            gw,
            kafka,
            gw_nodes,
            kafka_ports,
            gw_pid,
            dir: Some(dir),
        }
    }

    /// Every node runs (a failed test may have left one down) and the
    /// gateway is the one started first.
    fn heal(&mut self) {
        for i in 0..self.kafka.nodes() {
            if self.kafka.pid(i).is_none() {
                eprintln!("gateway_kafka: restarting node {}", self.kafka.node_id(i));
                self.kafka.restart(i);
            }
        }
        assert!(self.gw.is_running(), "the gateway died");
        assert_eq!(self.gw.pid(), self.gw_pid, "the gateway was restarted");
    }

    /// An rdkafka client of the gateway, as alice.
    fn alice(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.gw.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", ALICE.0)
            .set("sasl.password", ALICE.1)
            .set("ssl.ca.location", self.gw.ca_file().to_str().unwrap());
        quiet(&mut c);
        c
    }

    /// An rdkafka client of Kafka itself: the internal PLAINTEXT listeners
    /// (`User:ANONYMOUS`, a super user there).
    fn direct(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.kafka.internal_bootstrap());
        quiet(&mut c);
        c
    }

    fn internal_addr(&self, node: usize) -> String {
        self.kafka
            .internal_bootstrap()
            .split(',')
            .nth(node)
            .unwrap()
            .to_string()
    }

    /// A node that runs, for requests of the harness's own.
    fn live_internal_addr(&self) -> String {
        let i = (0..self.kafka.nodes())
            .find(|&i| self.kafka.pid(i).is_some())
            .expect("a running node");
        self.internal_addr(i)
    }

    fn index_of(&self, node_id: i32) -> usize {
        (0..self.kafka.nodes())
            .find(|&i| self.kafka.node_id(i) == node_id)
            .unwrap_or_else(|| panic!("no node {node_id}"))
    }

    /// Partition -> (leader, replicas, isr) of `topic`, as Kafka says.
    fn kafka_partitions(&self, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)> {
        let mut c = self.direct();
        c.set("bootstrap.servers", self.live_internal_addr())
            .set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer = c.create().unwrap();
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("Kafka's metadata of {topic}: {e}"));
        let t = &md.topics()[0];
        t.partitions()
            .iter()
            .map(|p| {
                (
                    p.id(),
                    (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
                )
            })
            .collect()
    }

    /// Whether Kafka has `topic` at all.
    fn kafka_has_topic(&self, topic: &str) -> bool {
        let mut c = self.direct();
        c.set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer = c.create().unwrap();
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .expect("Kafka's metadata");
        md.topics().iter().any(|t| t.name() == topic)
    }

    /// Waits until every partition of `topic` has a leader that runs and
    /// (with `full_isr`) all its replicas in sync; returns partition ->
    /// leader.
    fn wait_leaders(&self, topic: &str, full_isr: bool) -> BTreeMap<i32, i32> {
        let running: BTreeSet<i32> = (0..self.kafka.nodes())
            .filter(|&i| self.kafka.pid(i).is_some())
            .map(|i| self.kafka.node_id(i))
            .collect();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let parts = self.kafka_partitions(topic);
            let ok = !parts.is_empty()
                && parts.values().all(|(leader, replicas, isr)| {
                    running.contains(leader) && (!full_isr || isr.len() == replicas.len())
                });
            if ok {
                return parts.iter().map(|(p, (l, _, _))| (*p, *l)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: partitions {parts:?} (running nodes {running:?}, full ISR wanted: {full_isr})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// High watermark per partition, read from Kafka directly.
    fn kafka_high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self.direct().create().unwrap();
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(30))
                    .unwrap_or_else(|e| panic!("Kafka's watermarks of {topic}[{p}]: {e}"))
                    .1
            })
            .collect()
    }

    /// Runs `body` with `loggers` at DEBUG on every running node and
    /// returns what each node logged meanwhile (node id -> text).
    fn logging(&self, loggers: &[&str], body: impl FnOnce()) -> BTreeMap<i32, String> {
        let nodes: Vec<usize> = (0..self.kafka.nodes())
            .filter(|&i| self.kafka.pid(i).is_some())
            .collect();
        for &i in &nodes {
            for l in loggers {
                gk::set_broker_logger(
                    &self.internal_addr(i),
                    self.kafka.node_id(i),
                    l,
                    Some("DEBUG"),
                );
            }
        }
        let marks: Vec<usize> = nodes.iter().map(|&i| self.kafka.log(i).len()).collect();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        for &i in &nodes {
            for l in loggers {
                gk::set_broker_logger(&self.internal_addr(i), self.kafka.node_id(i), l, None);
            }
        }
        if let Err(e) = ran {
            std::panic::resume_unwind(e);
        }
        nodes
            .iter()
            .zip(marks)
            .map(|(&i, mark)| {
                let log = self.kafka.log(i);
                (
                    self.kafka.node_id(i),
                    log.get(mark..).unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The Python scripts' environment (tests/python/gateway_common.py).
    fn env_json(&self, extra: Value) -> String {
        let mut env = serde_json::json!({
            "bootstrap": self.gw.bootstrap,
            "ca": self.gw.ca_file(),
            "admin_password": self.gw.admin_password,
            "passwords": {ALICE.0: ALICE.1},
        });
        if let (Some(e), Value::Object(x)) = (env.as_object_mut(), extra) {
            e.extend(x);
        }
        env.to_string()
    }

    /// Asserts `host:port` is the gateway's per-broker listener for
    /// upstream `node` (and no Kafka port).
    fn assert_gateway_address(&self, what: &str, node: i32, host: &str, port: u16) {
        assert_eq!(host, "127.0.0.1", "{what}: node {node} at {host}:{port}");
        assert!(
            !self.kafka_ports.contains(&port),
            "{what}: node {node} at {host}:{port} is a Kafka port"
        );
        assert_eq!(
            self.gw_nodes.get(&node).map(String::as_str),
            Some(format!("{host}:{port}").as_str()),
            "{what}: node {node} at {host}:{port} is not the gateway's listener for it ({:?})",
            self.gw_nodes
        );
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn quiet(c: &mut ClientConfig) {
    c.set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
}

// ===========================================================================
// rdkafka helpers
// ===========================================================================

/// Creates `topic` through the gateway: replication factor 3,
/// min.insync.replicas=2.
fn create_topic(f: &Fixture, topic: &str, partitions: i32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = f.alice().create().unwrap();
    let res = rt
        .block_on(
            admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(3))
                    .set("min.insync.replicas", "2")],
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(60)))
                    .request_timeout(Some(Duration::from_secs(60))),
            ),
        )
        .unwrap_or_else(|e| panic!("create_topics {topic}: {e}"));
    assert!(
        res.iter().all(|r| r.is_ok()),
        "create_topics {topic} through the gateway: {res:?}"
    );
    // Kafka's side: three replicas everywhere, all in sync.
    f.wait_leaders(topic, true);
    let parts = f.kafka_partitions(topic);
    assert_eq!(parts.len(), partitions as usize, "{topic}: {parts:?}");
    assert!(
        parts.values().all(|(_, r, _)| r.len() == 3),
        "{topic} is not replicated three times in Kafka: {parts:?}"
    );
    let direct: AdminClient<DefaultClientContext> = f.direct().create().unwrap();
    let configs = rt
        .block_on(direct.describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        ))
        .unwrap_or_else(|e| panic!("Kafka's configs of {topic}: {e}"));
    let min_isr = configs[0]
        .as_ref()
        .ok()
        .and_then(|c| c.get("min.insync.replicas"))
        .and_then(|e| e.value.clone());
    assert_eq!(
        min_isr.as_deref(),
        Some("2"),
        "{topic}'s min.insync.replicas in Kafka"
    );
}

/// Delivery reports of a producer: (partition, offset, value) or the error.
#[derive(Clone, Default)]
struct Deliveries {
    ok: Arc<Mutex<Vec<(i32, i64, String)>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => self.ok.lock().unwrap().push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Err((e, m)) => self.failed.lock().unwrap().push(format!(
                "{}[{}] {}: {e}",
                m.topic(),
                m.partition(),
                String::from_utf8_lossy(m.payload().unwrap_or_default())
            )),
        }
    }
}

/// An idempotent, acks=all producer that retries for `timeout`.
fn idempotent_producer(
    cfg: &ClientConfig,
    timeout: Duration,
) -> (ThreadedProducer<Deliveries>, Deliveries) {
    let d = Deliveries::default();
    let p = cfg
        .clone()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("retry.backoff.ms", "100")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create_with_context(d.clone())
        .expect("create producer");
    (p, d)
}

/// Queues one record, waiting for room in the queue.
fn send(
    p: &ThreadedProducer<Deliveries>,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &str,
) {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                assert!(Instant::now() < deadline, "the producer queue stayed full");
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("produce {value}: {e}"),
        }
    }
}

/// Produces `n` records per partition (value `<prefix>-p<p>-<seq>`)
/// idempotently through `cfg`; asserts every one was acknowledged and
/// returns the reports.
fn produce_per_partition(
    cfg: &ClientConfig,
    topic: &str,
    partitions: i32,
    n: usize,
    prefix: &str,
) -> Vec<(i32, i64, String)> {
    let (p, d) = idempotent_producer(cfg, DEADLINE);
    for seq in 0..n {
        for part in 0..partitions {
            send(
                &p,
                topic,
                Some(part),
                &format!("p{part}"),
                &format!("{prefix}-p{part}-{seq:06}"),
            );
        }
    }
    p.flush(DEADLINE).unwrap_or_else(|e| panic!("flush: {e}"));
    let failed = d.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "delivery failures: {failed:?}");
    let ok = d.ok.lock().unwrap().clone();
    assert_eq!(ok.len(), n * partitions as usize, "delivery reports");
    ok
}

/// Reads every partition of `topic` from the beginning to its end (no
/// group commits); partition -> [(offset, value)].
fn read_back(
    cfg: &ClientConfig,
    topic: &str,
    partitions: i32,
    what: &str,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer = cfg
        .clone()
        .set("group.id", "gk-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut at_end = BTreeSet::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{what}: {topic} not read to its end within {DEADLINE:?}: ends {at_end:?}, {} records, errors {errors:?}",
            out.values().map(Vec::len).sum::<usize>()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.entry(m.partition()).or_default().push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    out
}

/// One rebalance callback: ('+', partitions) for an assignment, ('-',
/// partitions) for a revocation.
type RebalanceEvent = (char, Vec<i32>);

/// The rebalance callbacks a consumer got.
#[derive(Clone, Default)]
struct Rebalances(Arc<Mutex<Vec<RebalanceEvent>>>);

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (kind, tpl) = match r {
            Rebalance::Assign(t) => ('+', t),
            Rebalance::Revoke(t) => ('-', t),
            Rebalance::Error(_) => return,
        };
        let mut parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        parts.sort_unstable();
        if !parts.is_empty() {
            self.0.lock().unwrap().push((kind, parts));
        }
    }
}

fn assigned<C: ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Messages and errors a group member polled.
#[derive(Default)]
struct Polled {
    records: Vec<(i32, i64, String)>,
    errors: Vec<String>,
}

fn poll_into<C: ConsumerContext>(c: &BaseConsumer<C>, into: &mut Polled, wait: Duration) {
    match c.poll(wait) {
        Some(Ok(m)) => into.records.push((
            m.partition(),
            m.offset(),
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        )),
        Some(Err(KafkaError::PartitionEOF(_))) | None => {}
        Some(Err(e)) => into.errors.push(e.to_string()),
    }
}

// ===========================================================================
// 1/2. Data through the gateway: idempotent produce, groups, transactions
// ===========================================================================

/// An idempotent acks=all producer and two group members through the
/// gateway, once with the eager protocol (range) and once with the
/// cooperative one (cooperative-sticky): the members split a 6-partition
/// topic 3/3 (the eager member gives up all it had, the cooperative one
/// only what moves), every record is consumed exactly once by the member
/// owning its partition, and the group's commits are Kafka's (read there).
#[test]
fn idempotent_produce_and_eager_and_cooperative_groups_through_gateway() {
    with_fixture("groups", |f| {
        for (strategy, cooperative) in [("range", false), ("cooperative-sticky", true)] {
            let topic = format!("gk-group-{}", &strategy[..4]);
            let group = format!("{topic}-members");
            create_topic(f, &topic, 6);
            let mut cfg = f.alice();
            cfg.set("group.id", &group)
                .set("partition.assignment.strategy", strategy)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "500");
            let (ra, rb) = (Rebalances::default(), Rebalances::default());
            let a: BaseConsumer<Rebalances> = cfg.create_with_context(ra.clone()).unwrap();
            a.subscribe(&[&topic]).unwrap();
            let (mut pa, mut pb) = (Polled::default(), Polled::default());
            let deadline = Instant::now() + DEADLINE;
            while assigned(&a).len() < 6 {
                assert!(
                    Instant::now() < deadline,
                    "{strategy}: the first member got {:?}; errors {:?}",
                    assigned(&a),
                    pa.errors
                );
                poll_into(&a, &mut pa, Duration::from_millis(100));
            }
            let b: BaseConsumer<Rebalances> = cfg.create_with_context(rb.clone()).unwrap();
            b.subscribe(&[&topic]).unwrap();
            loop {
                let (sa, sb) = (assigned(&a), assigned(&b));
                if sa.len() == 3 && sb.len() == 3 && sa.is_disjoint(&sb) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{strategy}: no 3/3 split: {sa:?} / {sb:?}; errors {:?} {:?}",
                    pa.errors,
                    pb.errors
                );
                poll_into(&a, &mut pa, Duration::from_millis(50));
                poll_into(&b, &mut pb, Duration::from_millis(50));
            }
            assert_eq!(
                matches!(a.rebalance_protocol(), RebalanceProtocol::Cooperative),
                cooperative,
                "{strategy}: the rebalance protocol in use"
            );
            let (sa, sb) = (assigned(&a), assigned(&b));
            let events = ra.0.lock().unwrap().clone();
            eprintln!(
                "{strategy}: first member {sa:?} (callbacks {events:?}), second {sb:?} (callbacks {:?})",
                rb.0.lock().unwrap()
            );
            let all: Vec<i32> = (0..6).collect();
            let gave_up_all = events.iter().any(|(k, p)| *k == '-' && *p == all);
            match cooperative {
                false => assert!(
                    gave_up_all,
                    "eager: the first member never revoked all it had: {events:?}"
                ),
                true => {
                    assert!(
                        !gave_up_all,
                        "cooperative: the first member revoked everything: {events:?}"
                    );
                    let revoked: BTreeSet<i32> = events
                        .iter()
                        .filter(|(k, _)| *k == '-')
                        .flat_map(|(_, p)| p.iter().copied())
                        .collect();
                    assert_eq!(
                        revoked, sb,
                        "cooperative: the first member revoked other partitions than moved"
                    );
                }
            }
            assert!(
                pa.records.is_empty() && pb.records.is_empty(),
                "records before any were produced"
            );

            // 200 records per partition, idempotent, acks=all.
            let acked = produce_per_partition(&f.alice(), &topic, 6, 200, strategy);
            while pa.records.len() + pb.records.len() < acked.len() {
                assert!(
                    Instant::now() < deadline + Duration::from_secs(30),
                    "{strategy}: consumed {} + {} of {}; errors {:?} {:?}",
                    pa.records.len(),
                    pb.records.len(),
                    acked.len(),
                    pa.errors,
                    pb.errors
                );
                poll_into(&a, &mut pa, Duration::from_millis(20));
                poll_into(&b, &mut pb, Duration::from_millis(20));
            }
            for (who, polled, owns) in [("first", &pa, &sa), ("second", &pb, &sb)] {
                assert!(
                    polled.records.iter().all(|(p, _, _)| owns.contains(p)),
                    "{strategy}: the {who} member got records of partitions it does not own"
                );
            }
            let mut consumed: Vec<(i32, i64, String)> =
                pa.records.iter().chain(&pb.records).cloned().collect();
            consumed.sort();
            let mut want = acked.clone();
            want.sort();
            assert_eq!(
                consumed, want,
                "{strategy}: consumed records differ from the acknowledged ones"
            );
            a.commit_consumer_state(CommitMode::Sync).unwrap();
            b.commit_consumer_state(CommitMode::Sync).unwrap();

            // Kafka's side: the group's commits, and the log ends.
            let reader: BaseConsumer = f.direct().set("group.id", &group).create().unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..6 {
                tpl.add_partition(&topic, p);
            }
            let committed: Vec<i64> = reader
                .committed_offsets(tpl, Duration::from_secs(30))
                .expect("Kafka's committed offsets")
                .elements()
                .iter()
                .map(|e| e.offset().to_raw().unwrap_or(-1))
                .collect();
            assert_eq!(
                committed,
                vec![200; 6],
                "{strategy}: {group}'s offsets in Kafka"
            );
            assert_eq!(f.kafka_high_watermarks(&topic, 6), vec![200; 6]);
        }
    });
}

/// A transactional producer through the gateway (the transaction
/// coordinator found through it): committed transactions are visible to a
/// read_committed consumer, an aborted one is not, and a read_uncommitted
/// one sees everything; Kafka itself agrees.
#[test]
fn transactions_with_read_committed_through_gateway() {
    with_fixture("transactions", |f| {
        let topic = "gk-txn";
        create_topic(f, topic, 3);
        let d = Deliveries::default();
        let p: ThreadedProducer<Deliveries> = f
            .alice()
            .set("transactional.id", "gk-txn-1")
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000")
            .create_with_context(d.clone())
            .expect("create transactional producer");
        p.init_transactions(DEADLINE)
            .unwrap_or_else(|e| panic!("init_transactions through the gateway: {e}"));
        let batch = |prefix: &str, n: usize| {
            for i in 0..n {
                let v = format!("{prefix}-{i:04}");
                send(&p, topic, Some(i as i32 % 3), &v, &v);
            }
        };
        p.begin_transaction().unwrap();
        batch("committed", 150);
        p.commit_transaction(DEADLINE)
            .unwrap_or_else(|e| panic!("commit_transaction: {e}"));
        p.begin_transaction().unwrap();
        batch("aborted", 60);
        p.flush(DEADLINE).unwrap();
        p.abort_transaction(DEADLINE)
            .unwrap_or_else(|e| panic!("abort_transaction: {e}"));
        p.begin_transaction().unwrap();
        batch("after", 30);
        p.commit_transaction(DEADLINE).unwrap();
        let failed = d.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "delivery failures: {failed:?}");
        assert_eq!(d.ok.lock().unwrap().len(), 240);

        let values = |read: &BTreeMap<i32, Vec<(i64, String)>>| -> Vec<String> {
            let mut v: Vec<String> = read.values().flatten().map(|(_, v)| v.clone()).collect();
            v.sort();
            v
        };
        let mut committed_cfg = f.alice();
        committed_cfg.set("isolation.level", "read_committed");
        let committed = values(&read_back(&committed_cfg, topic, 3, "read_committed"));
        assert_eq!(committed.len(), 180, "read_committed through the gateway");
        assert!(
            committed.iter().all(|v| !v.starts_with("aborted")),
            "read_committed saw aborted records"
        );
        let mut uncommitted_cfg = f.alice();
        uncommitted_cfg.set("isolation.level", "read_uncommitted");
        let all = values(&read_back(&uncommitted_cfg, topic, 3, "read_uncommitted"));
        assert_eq!(all.len(), 240, "read_uncommitted through the gateway");

        // Kafka's own read_committed view is the same.
        let mut direct = f.direct();
        direct.set("isolation.level", "read_committed");
        assert_eq!(
            values(&read_back(&direct, topic, 3, "Kafka read_committed")),
            committed
        );
        // 240 records and 3 markers per partition.
        let high = f.kafka_high_watermarks(topic, 3);
        assert_eq!(high.iter().sum::<i64>(), 240 + 9, "{high:?}");
    });
}

/// kafka-python (its own protocol code) through the gateway: topic
/// creation with replication factor 3, an idempotent producer, a group
/// consumer that commits; every broker and the coordinator it learned are
/// the gateway's per-broker listeners, the coordinator the one standing
/// for Kafka's coordinator of the group.
#[test]
fn kafka_python_through_gateway() {
    with_fixture("kafka_python", |f| {
        let (topic, group) = ("gk-kp", "gk-kp-group");
        let env = f.env_json(serde_json::json!({"topic": topic, "group": group}));
        let out = common::run_script_ok("gateway_kafka_cluster.py", &[&env], || f.gw.log_tail(40));
        let res: Value = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("RESULT "))
            .map(|j| serde_json::from_str(j).unwrap())
            .expect("RESULT");
        let brokers = res["brokers"].as_array().expect("RESULT.brokers");
        assert_eq!(brokers.len(), 3, "kafka-python brokers {brokers:?}");
        for b in brokers {
            f.assert_gateway_address(
                "kafka-python broker",
                b[0].as_i64().unwrap() as i32,
                b[1].as_str().unwrap(),
                b[2].as_u64().unwrap() as u16,
            );
        }
        let coordinator = gk::kafka_group_coordinator(&f.live_internal_addr(), group);
        let c = &res["coordinator"];
        f.assert_gateway_address(
            "kafka-python coordinator",
            coordinator,
            c[1].as_str().unwrap(),
            c[2].as_u64().unwrap() as u16,
        );
        let parts = f.kafka_partitions(topic);
        assert!(parts.values().all(|(_, r, _)| r.len() == 3), "{parts:?}");
        assert_eq!(f.kafka_high_watermarks(topic, 3), vec![100; 3]);
    });
}

// ===========================================================================
// 3. Addresses, and requests reach the broker they were meant for
// ===========================================================================

/// Metadata (rdkafka, confluent-kafka), DescribeCluster (confluent-kafka,
/// kafka-python) and FindCoordinator (the group's coordinator) name only
/// the gateway's per-broker listeners, one per Kafka node, each standing
/// for the node of the same id; the coordinator is the listener of Kafka's
/// coordinator for the group.
///
/// Then, from Kafka's request log: every Produce and client Fetch the
/// gateway forwarded for a partition arrived at the node that leads it,
/// every group request at the group's coordinator, all of them as the
/// service principal.
#[test]
fn addresses_are_per_broker_gateway_listeners_and_requests_reach_the_right_broker() {
    with_fixture("addresses_and_routing", |f| {
        let consumer: BaseConsumer = f.alice().create().unwrap();
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .expect("metadata through the gateway");
        let brokers: Vec<(i32, String, u16)> = md
            .brokers()
            .iter()
            .map(|b| (b.id(), b.host().to_string(), b.port() as u16))
            .collect();
        assert_eq!(brokers.len(), 3, "{brokers:?}");
        for (id, host, port) in &brokers {
            f.assert_gateway_address("rdkafka Metadata", *id, host, *port);
        }

        let env = f.env_json(Value::Null);
        let out = common::run_script_ok("gateway_addresses.py", &[&env], || f.gw.log_tail(40));
        let res: Value = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("RESULT "))
            .map(|j| serde_json::from_str(j).unwrap())
            .expect("RESULT");
        for key in ["metadata", "describe_cluster", "kp_describe_cluster"] {
            let list = res[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key}: {res}"));
            assert_eq!(list.len(), 3, "{key}: {list:?}");
            for n in list {
                f.assert_gateway_address(
                    key,
                    n[0].as_i64().unwrap() as i32,
                    n[1].as_str().unwrap(),
                    n[2].as_u64().unwrap() as u16,
                );
            }
        }
        if !res["controller"].is_null() {
            let n = &res["controller"];
            f.assert_gateway_address(
                "describe_cluster controller",
                n[0].as_i64().unwrap() as i32,
                n[1].as_str().unwrap(),
                n[2].as_u64().unwrap() as u16,
            );
        }
        let kafka_coordinator =
            gk::kafka_group_coordinator(&f.live_internal_addr(), "gw-addr-group");
        let n = &res["coordinator"];
        assert_eq!(
            n[0].as_i64().unwrap() as i32,
            kafka_coordinator,
            "the coordinator through the gateway is not Kafka's"
        );
        f.assert_gateway_address(
            "FindCoordinator",
            kafka_coordinator,
            n[1].as_str().unwrap(),
            n[2].as_u64().unwrap() as u16,
        );

        // Routing, seen from Kafka.
        let (topic, group) = ("gk-routing", "gk-routing-group");
        create_topic(f, topic, 3);
        let leaders = f.wait_leaders(topic, true);
        let coordinator = gk::kafka_group_coordinator(&f.live_internal_addr(), group);
        eprintln!("{topic} leaders {leaders:?}; {group} coordinator {coordinator}");
        let logs = f.logging(&[REQUEST_LOGGER], || {
            produce_per_partition(&f.alice(), topic, 3, 100, "routing");
            let c: BaseConsumer = f
                .alice()
                .set("group.id", group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            c.subscribe(&[topic]).unwrap();
            let mut polled = Polled::default();
            let deadline = Instant::now() + DEADLINE;
            while polled.records.len() < 300 {
                assert!(
                    Instant::now() < deadline,
                    "group consumer: {} of 300; errors {:?}",
                    polled.records.len(),
                    polled.errors
                );
                poll_into(&c, &mut polled, Duration::from_millis(100));
            }
            c.commit_consumer_state(CommitMode::Sync).unwrap();
        });
        let mut summary = Vec::new();
        let mut produced_at: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
        let mut group_at: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for (node, text) in &logs {
            let lines = gk::request_lines(text);
            let client: Vec<&RequestLine> = lines.iter().filter(|l| l.listener == "SASL").collect();
            assert!(
                !client.is_empty(),
                "node {node}: no request logged on the SASL listener ({} lines in all)",
                lines.len()
            );
            let foreign: Vec<&&RequestLine> = client
                .iter()
                .filter(|l| l.principal != SERVICE_PRINCIPAL)
                .collect();
            assert!(
                foreign.is_empty(),
                "node {node}: requests of other principals than the gateway's: {:?}",
                foreign.iter().take(3).map(|l| &l.raw).collect::<Vec<_>>()
            );
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &client {
                *counts.entry(l.api.as_str()).or_insert(0) += 1;
                if l.api == "PRODUCE" || l.api == "FETCH" {
                    for (t, p) in &l.partitions {
                        if t != topic {
                            continue;
                        }
                        assert_eq!(
                            leaders.get(p),
                            Some(node),
                            "node {node} got a {} for {t}[{p}], led by {:?}: {}",
                            l.api,
                            leaders.get(p),
                            l.raw
                        );
                        if l.api == "PRODUCE" {
                            produced_at.entry(*node).or_default().insert(*p);
                        }
                    }
                }
                if l.group.as_deref() == Some(group) {
                    group_at.entry(*node).or_default().insert(l.api.clone());
                }
            }
            summary.push(format!("node {node}: {counts:?}"));
        }
        eprintln!(
            "requests on Kafka's SASL listeners:\n  {}",
            summary.join("\n  ")
        );
        for (p, leader) in &leaders {
            assert!(
                produced_at.get(leader).is_some_and(|s| s.contains(p)),
                "no Produce for {topic}[{p}] reached its leader {leader}: {produced_at:?}"
            );
        }
        assert_eq!(
            group_at.keys().copied().collect::<Vec<_>>(),
            vec![coordinator],
            "{group}'s requests reached {group_at:?}, not only its coordinator {coordinator}"
        );
        let apis = &group_at[&coordinator];
        for api in ["JOIN_GROUP", "SYNC_GROUP", "OFFSET_COMMIT"] {
            assert!(apis.contains(api), "no {api} at the coordinator: {apis:?}");
        }
    });
}

// ===========================================================================
// 5. ACL refusals stay at the edge
// ===========================================================================

/// alice may not touch `secret-orders`: the gateway refuses her produce,
/// her topic creation and her fetch with Kafka's codes, audits them, and
/// nothing of it reaches Kafka: the topic does not exist there (Kafka
/// creates topics on first use, as the control topic shows), no request
/// or authorizer log line of any node names it, and Kafka's authorizer
/// decided only for the service principal.
/// `portcullis topic` through the gateway: Kafka's admin APIs reach the
/// cluster, and `describe` shows `-` for the segment count, which only the
/// embedded back end reports (a tagged field Kafka does not write).
#[test]
fn the_topic_command_line_works_through_the_gateway() {
    with_fixture("topic_cli", |f| {
        let cli = |args: &[&str]| {
            let mut child = std::process::Command::new(common::BIN)
                .args(args)
                .arg("--config")
                .arg(&f.gw.config)
                .args([
                    "--bootstrap",
                    &f.gw.bootstrap,
                    "--user",
                    "admin",
                    "--password-stdin",
                ])
                .arg("--ca")
                .arg(f.gw.ca_file())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let pw = format!("{}\n", f.gw.admin_password);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(pw.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "portcullis {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        cli(&[
            "topic",
            "create",
            "gw-cli",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
            "--retention-ms",
            "7200000",
        ]);
        let d: Value = serde_json::from_str(&cli(&["topic", "describe", "gw-cli", "--json"]))
            .expect("describe --json");
        let parts = d["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{d}");
        for p in parts {
            assert_eq!(p["replicas"].as_array().map(|r| r.len()), Some(3), "{d}");
            assert!(
                p["segments"].is_null(),
                "Kafka reports no segment count: {d}"
            );
            assert_eq!(p["high_watermark"], 0, "{d}");
        }
        assert_eq!(d["configs"]["retention.ms"], "7200000", "{d}");
        let table = cli(&["topic", "describe", "gw-cli"]);
        eprintln!("portcullis topic describe gw-cli (gateway):\n{table}");
        cli(&["topic", "delete", "gw-cli", "--yes"]);
    });
}

#[test]
fn acl_refusals_are_answered_at_the_edge_and_never_reach_kafka() {
    with_fixture("acl_refusals", |f| {
        let (denied, control) = ("secret-orders", "gk-auto-created");
        let logs = f.logging(&[REQUEST_LOGGER, AUTHORIZER_LOGGER], || {
            // Produce to the denied topic.
            let d = Deliveries::default();
            let p: ThreadedProducer<Deliveries> = f
                .alice()
                .set("message.timeout.ms", "20000")
                .create_with_context(d.clone())
                .unwrap();
            send(&p, denied, None, "k", "must-not-land");
            send(&p, control, None, "k", "lands");
            p.flush(Duration::from_secs(30)).unwrap();
            let failed = d.failed.lock().unwrap().clone();
            let ok = d.ok.lock().unwrap().clone();
            assert_eq!(failed.len(), 1, "failures {failed:?}, deliveries {ok:?}");
            assert!(
                failed[0].contains(denied) && failed[0].to_lowercase().contains("authoriz"),
                "{failed:?}"
            );
            assert_eq!(ok.len(), 1, "the control record: {ok:?}");

            // Create it.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let admin: AdminClient<DefaultClientContext> = f.alice().create().unwrap();
            let res = rt
                .block_on(admin.create_topics(
                    &[NewTopic::new(denied, 1, TopicReplication::Fixed(3))],
                    &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
                ))
                .unwrap();
            assert_eq!(
                res[0].as_ref().err().map(|(_, code)| *code),
                Some(RDKafkaErrorCode::TopicAuthorizationFailed),
                "create {denied}: {res:?}"
            );

            // Consume it in a group.
            let c: BaseConsumer = f.alice().set("group.id", "gk-acl-reader").create().unwrap();
            c.subscribe(&[denied]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let err = loop {
                assert!(Instant::now() < deadline, "no error consuming {denied}");
                match c.poll(Duration::from_millis(100)) {
                    Some(Err(e)) => break e,
                    Some(Ok(m)) => panic!("alice read {denied}[{}]", m.offset()),
                    None => {}
                }
            };
            assert!(
                err.to_string().to_lowercase().contains("authoriz"),
                "consuming {denied}: {err}"
            );
        });

        // The gateway answered: its audit log has the denials.
        let audit = std::fs::read_to_string(f.gw.audit_log()).unwrap_or_default();
        let denials: Vec<Value> = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| {
                r["principal"] == "User:alice"
                    && r["decision"] == "deny"
                    && r.to_string().contains(denied)
            })
            .collect();
        let apis: BTreeSet<&str> = denials.iter().filter_map(|r| r["api"].as_str()).collect();
        eprintln!("gateway audit: alice denied on {denied} in {apis:?}");
        assert!(
            apis.contains("CreateTopics") && apis.contains("Metadata"),
            "the gateway's audit log lacks alice's denials on {denied}: {apis:?}"
        );

        // Kafka never heard of it; the control topic it created on first use.
        assert!(
            !f.kafka_has_topic(denied),
            "{denied} exists in Kafka: a refused request reached it"
        );
        assert!(
            f.kafka_has_topic(control),
            "{control} was not created: the control request did not reach Kafka"
        );
        let mut principals = BTreeMap::new();
        let mut control_seen = false;
        for (node, text) in &logs {
            let named: Vec<&str> = text.lines().filter(|l| l.contains(denied)).collect();
            assert!(
                named.is_empty(),
                "node {node} logged a request naming {denied}:\n{}",
                named.iter().take(3).copied().collect::<Vec<_>>().join("\n")
            );
            assert!(
                !text.contains("User:alice"),
                "node {node} saw the client principal"
            );
            control_seen |= text.contains(control);
            for l in gk::request_lines(text) {
                if l.listener == "SASL" {
                    assert_eq!(l.principal, SERVICE_PRINCIPAL, "node {node}: {}", l.raw);
                }
            }
            for (p, n) in gk::authorizer_principals(text) {
                *principals.entry(p).or_insert(0) += n;
            }
        }
        assert!(control_seen, "no node logged a request for {control}");
        eprintln!("Kafka's authorizer decided for {principals:?}");
        assert!(
            principals.contains_key(SERVICE_PRINCIPAL),
            "Kafka's authorizer log has no decision for {SERVICE_PRINCIPAL}: {principals:?}"
        );
        let others: Vec<&String> = principals
            .keys()
            .filter(|p| *p != SERVICE_PRINCIPAL && *p != "User:ANONYMOUS")
            .collect();
        assert!(
            others.is_empty(),
            "Kafka's authorizer decided for {others:?} (only the gateway's service principal, and the harness's internal User:ANONYMOUS, may reach it)"
        );
    });
}

// ===========================================================================
// 6. A partition leader that moves
// ===========================================================================

/// A partition's leadership moves in Kafka (kafka-reassign-partitions puts
/// another replica first, kafka-leader-election makes it leader) while a
/// producer and a consumer stay connected to the same gateway process: the
/// producer's next records land on the new leader (Kafka's request log
/// says so), the gateway's metadata names the new leader's gateway
/// listener, and the consumer reads every record in order.
#[test]
fn a_moved_partition_leader_is_followed_without_restarting_the_gateway() {
    with_fixture("leader_move", |f| {
        let topic = "gk-moving";
        create_topic(f, topic, 1);
        let (p, d) = idempotent_producer(&f.alice(), DEADLINE);
        let consumer: BaseConsumer = f
            .alice()
            .set("group.id", "gk-moving-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut read = Polled::default();
        let produce = |from: usize, to: usize| {
            for i in from..to {
                send(&p, topic, Some(0), "k", &format!("move-{i:05}"));
            }
            p.flush(DEADLINE).unwrap();
        };
        let read_until = |read: &mut Polled, n: usize| {
            let deadline = Instant::now() + DEADLINE;
            while read.records.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "read {} of {n}; errors {:?}",
                    read.records.len(),
                    read.errors
                );
                poll_into(&consumer, read, Duration::from_millis(100));
            }
        };
        produce(0, 200);
        read_until(&mut read, 200);
        let (old, replicas, _) = f.kafka_partitions(topic)[&0].clone();
        let new = *replicas.iter().find(|r| **r != old).unwrap();
        let mut order = vec![new];
        order.extend(replicas.iter().filter(|r| **r != new));
        eprintln!("{topic}[0]: leader {old}, replicas {replicas:?}; moving to {new} ({order:?})");

        move_partition(f, topic, 0, &order);

        let logs = f.logging(&[REQUEST_LOGGER], || {
            produce(200, 400);
            read_until(&mut read, 400);
        });
        let failed = d.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "delivery failures: {failed:?}");
        let acked = d.ok.lock().unwrap().clone();
        assert_eq!(acked.len(), 400);
        // Per node: (Produce requests for the topic answered without error,
        // answered with an error).
        let produced_at: BTreeMap<i32, (usize, Vec<i64>)> = logs
            .iter()
            .map(|(node, text)| {
                let mut ok = 0;
                let mut refused = Vec::new();
                for l in gk::request_lines(text) {
                    if l.listener == "SASL"
                        && l.api == "PRODUCE"
                        && l.partitions.iter().any(|(t, _)| t == topic)
                    {
                        match l.errors.first() {
                            None => ok += 1,
                            Some(e) => refused.push(*e),
                        }
                    }
                }
                (*node, (ok, refused))
            })
            .collect();
        eprintln!(
            "Produce requests for {topic} after the move, per node (accepted, refused with): {produced_at:?}"
        );
        assert!(
            produced_at[&new].0 > 0,
            "no Produce reached the new leader {new}"
        );
        for (node, (ok, refused)) in &produced_at {
            // A client learns of the move from the old leader's refusal
            // (NOT_LEADER_OR_FOLLOWER), through the gateway.
            assert!(
                *node == new || *ok == 0,
                "node {node}, no longer the leader, accepted a Produce: {produced_at:?}"
            );
            assert!(
                refused.iter().all(|e| *e == 6),
                "node {node} refused Produce requests with {refused:?}"
            );
        }

        // The gateway's metadata names the new leader, at its listener.
        let c: BaseConsumer = f.alice().create().unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .unwrap();
        assert_eq!(md.topics()[0].partitions()[0].leader(), new);
        // Everything in order, each record once, at its acknowledged offset.
        let got: Vec<(i64, String)> = read
            .records
            .iter()
            .map(|(_, o, v)| (*o, v.clone()))
            .collect();
        let want: Vec<(i64, String)> = (0..400)
            .map(|i| (i as i64, format!("move-{i:05}")))
            .collect();
        assert_eq!(got, want, "the consumer's records across the move");
        let mut acked: Vec<(i64, String)> = acked.into_iter().map(|(_, o, v)| (o, v)).collect();
        acked.sort();
        assert_eq!(acked, want, "acknowledged offsets");
        assert_eq!(f.gw.pid(), f.gw_pid, "the gateway was restarted");
    });
}

/// Reassigns `topic[partition]` to the replicas `order` (Kafka's
/// kafka-reassign-partitions over the internal listener, copying the data
/// to new replicas) and makes `order[0]` its leader (kafka-leader-election,
/// preferred; leaders do not move by themselves here), waiting until Kafka
/// says so.
fn move_partition(f: &Fixture, topic: &str, partition: i32, order: &[i32]) {
    let internal = f.kafka.internal_bootstrap();
    let plan = f
        .kafka
        .dir
        .join(format!("{topic}-{partition}-reassign.json"));
    std::fs::write(
        &plan,
        serde_json::json!({"version": 1, "partitions": [
            {"topic": topic, "partition": partition, "replicas": order}
        ]})
        .to_string(),
    )
    .unwrap();
    let run = run_tool(
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
        &[
            "--bootstrap-server",
            &internal,
            "--reassignment-json-file",
            plan.to_str().unwrap(),
            "--execute",
        ],
        "",
    );
    assert!(run.ok(), "{run}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (leader, replicas, isr) = f.kafka_partitions(topic)[&partition].clone();
        let mut in_sync = isr.clone();
        in_sync.sort_unstable();
        let mut want = order.to_vec();
        want.sort_unstable();
        if leader == order[0] && replicas == order && in_sync == want {
            return;
        }
        let run = run_tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            &[
                "--bootstrap-server",
                &internal,
                "--election-type",
                "PREFERRED",
                "--topic",
                topic,
                "--partition",
                &partition.to_string(),
            ],
            "",
        );
        assert!(
            Instant::now() < deadline,
            "{topic}[{partition}] did not move to {order:?}: leader {leader}, replicas {replicas:?}, in sync {isr:?}\n{run}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ===========================================================================
// 4. Failover: kill -9 a broker, then a rolling restart
// ===========================================================================

/// What a load run produced and consumed.
struct LoadResult {
    acked: Vec<(i32, i64, String)>,
    failed: Vec<String>,
    sent: usize,
    group: Polled,
}

/// Produces (idempotent, acks=all, a known sequence per partition) and
/// consumes in a group through the gateway while `chaos` runs, then checks
/// that every acknowledged record is in Kafka exactly once, in order, at
/// its acknowledged offset, and that the group consumer saw every one.
fn under_load(f: &mut Fixture, name: &str, chaos: impl FnOnce(&mut Fixture, &str)) {
    const PARTITIONS: i32 = 3;
    let topic = format!("gk-{name}");
    let group = format!("gk-{name}-group");
    create_topic(f, &topic, PARTITIONS);
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let producer = {
        let (cfg, topic, stop, sent, abort) = (
            f.alice(),
            topic.clone(),
            stop_producing.clone(),
            sent.clone(),
            abort.clone(),
        );
        std::thread::spawn(move || {
            let (p, d) = idempotent_producer(&cfg, Duration::from_secs(120));
            let mut seq = 0usize;
            while !stop.load(Ordering::SeqCst) {
                for part in 0..PARTITIONS {
                    send(
                        &p,
                        &topic,
                        Some(part),
                        &format!("p{part}"),
                        &format!("p{part}-{seq:07}"),
                    );
                }
                seq += 1;
                sent.store(seq * PARTITIONS as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
            // After a failed check nobody waits for the rest.
            let flush_for = if abort.load(Ordering::SeqCst) { 5 } else { 150 };
            let flushed = p.flush(Duration::from_secs(flush_for));
            let failed = d.failed.lock().unwrap().clone();
            let acked = d.ok.lock().unwrap().clone();
            (flushed.map_err(|e| e.to_string()), acked, failed)
        })
    };
    let consumer = {
        let mut cfg = f.alice();
        cfg.set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500");
        let (topic, stop) = (topic.clone(), stop_consuming.clone());
        std::thread::spawn(move || {
            let c: BaseConsumer = cfg.create().unwrap();
            c.subscribe(&[&topic]).unwrap();
            let mut polled = Polled::default();
            while !stop.load(Ordering::SeqCst) {
                poll_into(&c, &mut polled, Duration::from_millis(100));
            }
            polled
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let before = sent.load(Ordering::SeqCst);
    assert!(before > 0, "nothing was sent in 3 s");
    let chaos_started = Instant::now();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chaos(f, &topic)));
    if let Err(e) = ran {
        // The clients' threads end before the test does (librdkafka
        // threads still running at exit crash the process).
        abort.store(true, Ordering::SeqCst);
        stop_producing.store(true, Ordering::SeqCst);
        stop_consuming.store(true, Ordering::SeqCst);
        let _ = producer.join();
        let _ = consumer.join();
        std::panic::resume_unwind(e);
    }
    eprintln!(
        "{name}: chaos took {:.1?}; {} records sent before it, {} by its end",
        chaos_started.elapsed(),
        before,
        sent.load(Ordering::SeqCst)
    );
    std::thread::sleep(Duration::from_secs(3));
    stop_producing.store(true, Ordering::SeqCst);
    let (flushed, acked, failed) = producer.join().expect("producer thread");
    let total = sent.load(Ordering::SeqCst);
    // The group consumer catches up with everything acknowledged.
    let want: BTreeSet<String> = acked.iter().map(|(_, _, v)| v.clone()).collect();
    let deadline = Instant::now() + DEADLINE;
    let high = loop {
        let high = f.kafka_high_watermarks(&topic, PARTITIONS);
        let reader: BaseConsumer = f.direct().set("group.id", &group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topic, p);
        }
        let committed: Vec<i64> = reader
            .committed_offsets(tpl, Duration::from_secs(30))
            .map(|t| {
                t.elements()
                    .iter()
                    .map(|e| e.offset().to_raw().unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default();
        if committed == high {
            break high;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the group's commits {committed:?} did not reach the log ends {high:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    stop_consuming.store(true, Ordering::SeqCst);
    let group_polled = consumer.join().expect("consumer thread");
    let result = LoadResult {
        acked,
        failed,
        sent: total,
        group: group_polled,
    };
    flushed.unwrap_or_else(|e| panic!("{name}: flush: {e}"));
    check_load(f, name, &topic, PARTITIONS, &result, &want, &high);
}

fn check_load(
    f: &Fixture,
    name: &str,
    topic: &str,
    partitions: i32,
    r: &LoadResult,
    want: &BTreeSet<String>,
    high: &[i64],
) {
    eprintln!(
        "{name}: {} sent, {} acknowledged, {} failed; group consumer {} records ({} errors, e.g. {:?}); log ends {high:?}",
        r.sent,
        r.acked.len(),
        r.failed.len(),
        r.group.records.len(),
        r.group.errors.len(),
        r.group.errors.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        r.failed.is_empty(),
        "{name}: {} records were not acknowledged: {:?}",
        r.failed.len(),
        &r.failed[..r.failed.len().min(5)]
    );
    assert_eq!(r.acked.len(), r.sent, "{name}: delivery reports");
    // Kafka's log holds exactly the acknowledged records: per partition
    // offsets 0..n, the values in send order, each once.
    let mut acked: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (p, o, v) in &r.acked {
        acked.entry(*p).or_default().push((*o, v.clone()));
    }
    for list in acked.values_mut() {
        list.sort();
    }
    let read = read_back(&f.alice(), topic, partitions, "fresh reader via gateway");
    for p in 0..partitions {
        let a = acked.get(&p).cloned().unwrap_or_default();
        let got = read.get(&p).cloned().unwrap_or_default();
        let expect: Vec<(i64, String)> = (0..a.len())
            .map(|i| (i as i64, format!("p{p}-{i:07}")))
            .collect();
        assert_eq!(
            a.len() as i64,
            high[p as usize],
            "{name}: {topic}[{p}] log end vs acknowledged records"
        );
        if a != expect {
            let first = a.iter().zip(&expect).position(|(x, y)| x != y);
            panic!(
                "{name}: {topic}[{p}]: acknowledged offsets/values are not the send order from offset 0 (first difference at {first:?}: {:?} vs {:?})",
                first.map(|i| &a[i]),
                first.map(|i| &expect[i])
            );
        }
        if got != a {
            let first = got.iter().zip(&a).position(|(x, y)| x != y);
            panic!(
                "{name}: {topic}[{p}]: read back {} records, {} acknowledged; first difference at {first:?}",
                got.len(),
                a.len()
            );
        }
    }
    let seen: BTreeSet<String> = r.group.records.iter().map(|(_, _, v)| v.clone()).collect();
    let missing: Vec<&String> = want.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{name}: the group consumer never saw {missing:?}"
    );
    let dups = r.group.records.len() - seen.len();
    eprintln!(
        "{name}: every acknowledged record read back exactly once, in order; the group consumer saw all ({dups} redelivered after rebalances)"
    );
}

/// kill -9 of the node leading partition 0 while an idempotent producer
/// and a group consumer work through the gateway: leadership moves, both
/// clients follow through the gateway (whose metadata then lists only the
/// live nodes), the node comes back, and every acknowledged record is in
/// Kafka exactly once, in order per partition.
#[test]
fn failover_kill9_of_a_leader_loses_and_duplicates_nothing() {
    with_fixture("failover_kill9", |f| {
        under_load(f, "failover", |f, topic| {
            let leaders = f.wait_leaders(topic, true);
            // The group's coordinator, when it leads a partition of the
            // topic too (with three nodes it nearly always does): both
            // clients lose a broker they use.
            let coordinator =
                gk::kafka_group_coordinator(&f.live_internal_addr(), &format!("{topic}-group"));
            let victim_id = if leaders.values().any(|l| *l == coordinator) {
                coordinator
            } else {
                leaders[&0]
            };
            let victim = f.index_of(victim_id);
            eprintln!(
                "failover: leaders {leaders:?}, group coordinator {coordinator}; kill -9 node {victim_id}"
            );
            let gw_log_mark = f.gw.log().len();
            let killed = Instant::now();
            f.kafka.kill9(victim);
            // The dead node's gateway port still answers what any broker
            // can answer (Metadata here, from another node).
            let mut via_dead = f.alice();
            via_dead.set("bootstrap.servers", &f.gw_nodes[&victim_id]);
            let c: BaseConsumer = via_dead.create().unwrap();
            let md = c
                .fetch_metadata(Some(topic), Duration::from_secs(15))
                .unwrap_or_else(|e| {
                    panic!("Metadata through the gateway port of the killed node {victim_id}: {e}")
                });
            assert_eq!(md.topics()[0].partitions().len(), 3);
            let moved = f.wait_leaders(topic, false);
            eprintln!(
                "failover: leaders {moved:?} {:.1?} after the kill",
                killed.elapsed()
            );
            assert!(moved.values().all(|l| *l != victim_id));
            // The gateway's metadata now lists the live nodes only.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let c: BaseConsumer = f.alice().create().unwrap();
                let ids: BTreeSet<i32> = c
                    .fetch_metadata(None, Duration::from_secs(10))
                    .map(|md| md.brokers().iter().map(|b| b.id()).collect())
                    .unwrap_or_default();
                if !ids.is_empty() && !ids.contains(&victim_id) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the gateway's metadata still lists {victim_id}: {ids:?}"
                );
                std::thread::sleep(Duration::from_millis(300));
            }
            std::thread::sleep(Duration::from_secs(2));
            f.kafka.restart(victim);
            f.wait_leaders(topic, true);
            eprintln!(
                "failover: node {victim_id} back and in sync {:.1?} after the kill",
                killed.elapsed()
            );
            // What the gateway answered for the dead node: the retriable
            // errors of a broker that lost leadership, never a cluster-wide
            // request refused because one node was down.
            let log = f.gw.log();
            let mut failed: BTreeMap<String, usize> = BTreeMap::new();
            for l in log[gw_log_mark..].lines() {
                if l.contains("upstream request failed") {
                    let api = l
                        .split("api=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next());
                    *failed.entry(api.unwrap_or("?").to_string()).or_insert(0) += 1;
                }
            }
            let fallbacks = log[gw_log_mark..]
                .lines()
                .filter(|l| l.contains("asking any broker"))
                .count();
            eprintln!(
                "failover: gateway answers for node {victim_id} while down: {failed:?}; {fallbacks} cluster-wide requests answered by another node"
            );
            for api in ["Metadata", "FindCoordinator", "DescribeCluster"] {
                assert!(
                    !failed.contains_key(api),
                    "{api} requests failed while one node was down: {failed:?}"
                );
            }
        });
    });
}

/// Every node in turn stopped (SIGTERM) and started again, each waiting
/// for the partitions to be fully in sync before the next, under the same
/// load and with the same checks.
#[test]
fn rolling_restart_of_all_brokers_loses_and_duplicates_nothing() {
    with_fixture("rolling_restart", |f| {
        under_load(f, "rolling", |f, topic| {
            for i in 0..f.kafka.nodes() {
                let t = Instant::now();
                f.kafka.stop(i);
                f.wait_leaders(topic, false);
                f.kafka.restart(i);
                f.wait_leaders(topic, true);
                f.wait_leaders("__consumer_offsets", true);
                eprintln!(
                    "rolling: node {} restarted and in sync in {:.1?}",
                    f.kafka.node_id(i),
                    t.elapsed()
                );
            }
        });
    });
}

// ===========================================================================
// 5. A group's coordinator down
// ===========================================================================

/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// What one group request answered.
#[derive(Debug)]
struct GroupAnswer {
    /// `OffsetFetch v1`, ...
    what: String,
    /// Every error code of the answer, wherever the version puts it (top
    /// level, per group, per partition).
    codes: Vec<i16>,
    /// OffsetFetch: partition -> committed offset.
    offsets: BTreeMap<i32, i64>,
    /// DescribeGroups: the group's state; ListGroups: whether it lists the
    /// group.
    state: String,
}

/// OffsetFetch, DescribeGroups and ListGroups for `group` on `conn`, at
/// every version of a few the gateway offers (OffsetFetch carries its
/// error per partition before v2, top level up to v7, per group from v8).
/// `Err` when the connection failed.
fn group_requests(
    conn: &mut gk::GwConn,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<GroupAnswer>, String> {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{
        ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest,
        ListGroupsResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let parts: Vec<i32> = (0..partitions).collect();
    let mut out = Vec::new();
    for v in conn.versions(ApiKey::OffsetFetch, &[1, 5, 7, 8, 9]) {
        let req = if v < 8 {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(parts.clone())]))
        } else {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(parts.clone())]))])
        };
        let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, v, &req)?;
        let mut a = GroupAnswer {
            what: format!("OffsetFetch v{v}"),
            codes: Vec::new(),
            offsets: BTreeMap::new(),
            state: String::new(),
        };
        if (2..8).contains(&v) {
            a.codes.push(r.error_code);
        }
        for t in &r.topics {
            for p in &t.partitions {
                a.codes.push(p.error_code);
                a.offsets.insert(p.partition_index, p.committed_offset);
            }
        }
        for g in &r.groups {
            a.codes.push(g.error_code);
            for t in &g.topics {
                for p in &t.partitions {
                    a.codes.push(p.error_code);
                    a.offsets.insert(p.partition_index, p.committed_offset);
                }
            }
        }
        out.push(a);
    }
    for v in conn.versions(ApiKey::DescribeGroups, &[0, 3, 5]) {
        let r: DescribeGroupsResponse = conn.call(
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
        )?;
        out.push(GroupAnswer {
            what: format!("DescribeGroups v{v}"),
            codes: r.groups.iter().map(|g| g.error_code).collect(),
            offsets: BTreeMap::new(),
            state: r.groups.iter().map(|g| g.group_state.to_string()).collect(),
        });
    }
    for v in conn.versions(ApiKey::ListGroups, &[0, 3, 5]) {
        let r: ListGroupsResponse =
            conn.call(ApiKey::ListGroups, v, &ListGroupsRequest::default())?;
        let listed = r.groups.iter().any(|g| g.group_id.as_str() == group);
        out.push(GroupAnswer {
            what: format!("ListGroups v{v}"),
            codes: vec![r.error_code],
            offsets: BTreeMap::new(),
            state: if listed { "listed" } else { "not listed" }.to_string(),
        });
    }
    Ok(out)
}

/// FindCoordinator (groups, v4) through the gateway on `conn`: Kafka's
/// node id and the address the gateway gave for it, or the error code.
fn find_coordinator(conn: &mut gk::GwConn, group: &str) -> Result<(i32, String), String> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::StrBytes;
    let r: FindCoordinatorResponse = conn.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]),
    )?;
    let c = r
        .coordinators
        .first()
        .ok_or("no coordinator in the answer")?;
    match c.error_code {
        0 => Ok((c.node_id.0, format!("{}:{}", c.host, c.port))),
        e => Err(format!("FindCoordinator error {e}")),
    }
}

/// The coordinator of a group that committed offsets is killed (-9). On
/// one client connection to the gateway's listener for that node,
/// OffsetFetch (each version's error placement), DescribeGroups and
/// ListGroups are each answered with COORDINATOR_NOT_AVAILABLE, and the
/// connection stays open: FindCoordinator on it later finds the new
/// coordinator once Kafka moved it (a new leader for the group's
/// `__consumer_offsets` partition). There the same requests succeed with
/// the committed offsets, and a librdkafka consumer of the group resumes
/// from them, while the old coordinator is still down.
#[test]
fn a_dead_group_coordinator_is_answered_with_retriable_errors_not_a_closed_connection() {
    with_fixture("coordinator_down", |f| {
        let (topic, group) = ("gk-coord", "gk-coord-group");
        const PARTITIONS: i32 = 3;
        create_topic(f, topic, PARTITIONS);
        produce_per_partition(&f.alice(), topic, PARTITIONS, 30, "before");
        let mut cfg = f.alice();
        cfg.set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500");
        // A member reads everything there is, commits and leaves.
        let consume = |n: usize, what: &str| -> Polled {
            let c: BaseConsumer = cfg.create().unwrap();
            c.subscribe(&[topic]).unwrap();
            let mut polled = Polled::default();
            let deadline = Instant::now() + DEADLINE;
            while polled.records.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "{what}: consumed {} of {n}; errors {:?}",
                    polled.records.len(),
                    polled.errors
                );
                poll_into(&c, &mut polled, Duration::from_millis(100));
            }
            // Nothing beyond `n` arrives.
            let extra = Instant::now() + Duration::from_secs(2);
            while Instant::now() < extra {
                poll_into(&c, &mut polled, Duration::from_millis(100));
            }
            c.commit_consumer_state(CommitMode::Sync)
                .unwrap_or_else(|e| panic!("{what}: commit: {e}"));
            polled
        };
        let first = consume(90, "before the kill");
        assert_eq!(first.records.len(), 90, "{:?}", first.errors);
        let committed: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 30)).collect();

        let coordinator = gk::kafka_group_coordinator(&f.live_internal_addr(), group);
        let at = f.gw_nodes[&coordinator].clone();
        let mut conn = gk::GwConn::connect(&at, &f.gw.ca_file(), ALICE.0, ALICE.1).unwrap();
        let before = group_requests(&mut conn, group, topic, PARTITIONS).unwrap();
        for a in &before {
            assert!(a.codes.iter().all(|c| *c == 0), "before the kill: {a:?}");
            if a.what.starts_with("OffsetFetch") {
                assert_eq!(a.offsets, committed, "before the kill: {a:?}");
            }
        }
        eprintln!(
            "coordinator_down: {group}'s coordinator is node {coordinator} (gateway {at}); {} requests answered before the kill",
            before.len()
        );

        let killed = Instant::now();
        f.kafka.kill9(f.index_of(coordinator));
        let dead = group_requests(&mut conn, group, topic, PARTITIONS)
            .unwrap_or_else(|e| panic!("the gateway closed the connection: {e}"));
        for a in &dead {
            assert!(
                !a.codes.is_empty() && a.codes.iter().all(|c| *c == COORDINATOR_NOT_AVAILABLE),
                "with the coordinator down: {a:?}"
            );
        }
        eprintln!(
            "coordinator_down: node {coordinator} killed; on the same connection: {:?}",
            dead.iter()
                .map(|a| format!("{} {:?}", a.what, a.codes))
                .collect::<Vec<_>>()
        );

        // The same connection finds the new coordinator once Kafka moved
        // it (FindCoordinator is answered by any live broker).
        let deadline = Instant::now() + DEADLINE;
        let (new, new_at) = loop {
            match find_coordinator(&mut conn, group) {
                Ok((node, addr)) if node != coordinator => break (node, addr),
                Err(e) if e.contains(" at ") => panic!("the connection failed: {e}"),
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "the coordinator did not move: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        };
        let (host, port) = new_at.rsplit_once(':').unwrap();
        f.assert_gateway_address("new coordinator", new, host, port.parse().unwrap());
        assert_eq!(
            gk::kafka_group_coordinator(&f.live_internal_addr(), group),
            new,
            "Kafka's coordinator"
        );
        eprintln!(
            "coordinator_down: coordinator moved to node {new} ({new_at}) {:.1?} after the kill",
            killed.elapsed()
        );
        // The dead node's listener still answers (per broker) with the
        // error: the connection was never given up.
        let still = group_requests(&mut conn, group, topic, PARTITIONS).unwrap();
        assert!(still
            .iter()
            .all(|a| a.codes.iter().all(|c| *c == COORDINATOR_NOT_AVAILABLE)));

        // At the new coordinator, the same requests succeed (after it has
        // loaded the group: COORDINATOR_LOAD_IN_PROGRESS meanwhile).
        let mut moved = gk::GwConn::connect(&new_at, &f.gw.ca_file(), ALICE.0, ALICE.1).unwrap();
        let answers = loop {
            let answers = group_requests(&mut moved, group, topic, PARTITIONS).unwrap();
            if answers.iter().all(|a| a.codes.iter().all(|c| *c == 0)) {
                break answers;
            }
            assert!(
                Instant::now() < deadline,
                "at the new coordinator: {answers:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        for a in &answers {
            match &a.what[..a.what.find(' ').unwrap()] {
                "OffsetFetch" => assert_eq!(a.offsets, committed, "{a:?}"),
                // Kafka's state of the group (Empty, or Stable while the
                // member that left is not yet expired there): not the
                // unknown state of an error answer.
                "DescribeGroups" => assert!(!a.state.is_empty(), "{a:?}"),
                _ => assert_eq!(a.state, "listed", "{a:?}"),
            }
        }

        eprintln!(
            "coordinator_down: at the new coordinator: {:?}",
            answers
                .iter()
                .map(|a| format!("{} {:?} {}", a.what, a.offsets, a.state))
                .collect::<Vec<_>>()
        );
        // A member of the group resumes from the commits, the old
        // coordinator still down: exactly the records produced since.
        produce_per_partition(&f.alice(), topic, PARTITIONS, 10, "after");
        let second = consume(30, "after the move");
        let mut got: Vec<(i32, i64)> = second.records.iter().map(|(p, o, _)| (*p, *o)).collect();
        got.sort();
        let want: Vec<(i32, i64)> = (0..PARTITIONS)
            .flat_map(|p| (30..40).map(move |o| (p, o)))
            .collect();
        assert_eq!(got, want, "the resumed member's records");
        assert!(
            second
                .records
                .iter()
                .all(|(_, _, v)| v.starts_with("after-")),
            "records from before the commits came again"
        );
        eprintln!(
            "coordinator_down: a new member resumed at offset 30 of each partition and read the {} new records, {:.1?} after the kill",
            second.records.len(),
            killed.elapsed()
        );
        f.kafka.restart(f.index_of(coordinator));
        f.wait_leaders(topic, true);
        f.wait_leaders("__consumer_offsets", true);
    });
}

// ===========================================================================
// 6. The upstream grows
// ===========================================================================

/// How many requests a node answered without error, and the codes of
/// those it refused.
type Answered = (usize, Vec<i64>);

/// A broker joins the upstream cluster while the gateway runs (a cluster
/// of this test's own: the node stays). A producer and a consumer that
/// connected through the gateway before it existed go on: the gateway's
/// metadata lists the new node at a per-broker gateway listener opened
/// for it at runtime; a topic created with its replicas on the new node
/// (Kafka's Admin API over the internal listener) and an existing
/// partition moved there are written and read through the gateway, and
/// Kafka's request log of the new node shows the Produce and Fetch
/// requests arriving there, from the gateway's service principal. The
/// gateway names node 1 alone as its upstream bootstrap server: with node
/// 1 killed at the end, the brokers it learned answer for it.
#[test]
fn a_broker_added_upstream_is_picked_up_without_restarting_the_gateway() {
    with_own_fixture("grow", 1, |f| {
        let (moved, created) = ("gk-grow-moved", "gk-grow-new");
        create_topic(f, moved, 1);
        let (p, d) = idempotent_producer(&f.alice(), DEADLINE);
        let consumer: BaseConsumer = f
            .alice()
            .set("group.id", "gk-grow-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(moved, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let produce = |topic: &str, from: usize, to: usize| {
            for i in from..to {
                send(&p, topic, Some(0), "k", &format!("{topic}-{i:05}"));
            }
        };
        let mut read = Polled::default();
        let read_until = |read: &mut Polled, n: usize| {
            let deadline = Instant::now() + DEADLINE;
            while read.records.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "read {} of {n}; errors {:?}",
                    read.records.len(),
                    read.errors
                );
                poll_into(&consumer, read, Duration::from_millis(100));
            }
        };
        produce(moved, 0, 100);
        p.flush(DEADLINE).unwrap();
        read_until(&mut read, 100);
        let brokers = |what: &str| -> BTreeMap<i32, (String, u16)> {
            let md = p
                .client()
                .fetch_metadata(None, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{what}: metadata through the gateway: {e}"));
            md.brokers()
                .iter()
                .map(|b| (b.id(), (b.host().to_string(), b.port() as u16)))
                .collect()
        };
        let before = brokers("before");
        assert_eq!(
            before.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3],
            "{before:?}"
        );

        let index = f.kafka.add_broker();
        let new = f.kafka.node_id(index);
        let added = Instant::now();
        f.kafka_ports
            .insert(port_of(&f.kafka.addr(index, Listener::SaslSsl)));
        f.kafka_ports.insert(port_of(&f.internal_addr(index)));

        // The producer's own client, connected since before: the gateway's
        // metadata names the new node, at a listener the gateway opened
        // for it (announced on its stdout) and no Kafka port.
        let deadline = Instant::now() + DEADLINE;
        let after = loop {
            let b = brokers("after");
            if b.contains_key(&new) {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway's metadata does not list node {new}: {b:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        f.gw_nodes = f.gw.wait_nodes(&[new]);
        for (id, (host, port)) in &after {
            f.assert_gateway_address("broker after the node joined", *id, host, *port);
        }
        eprintln!(
            "grow: node {new} in the gateway's metadata {:.1?} after it joined: {after:?}",
            added.elapsed()
        );

        // A topic created with its replicas on the new node, the new node
        // first (its leader), with Kafka's Admin API on the internal
        // listener.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let admin: AdminClient<DefaultClientContext> = f.direct().create().unwrap();
        let assignment: &[&[i32]] = &[&[new, 1, 2]];
        let res = rt
            .block_on(
                admin.create_topics(
                    &[
                        NewTopic::new(created, 1, TopicReplication::Variable(assignment))
                            .set("min.insync.replicas", "2"),
                    ],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(60))),
                ),
            )
            .expect("create_topics on Kafka");
        assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
        let leaders = f.wait_leaders(created, true);
        assert_eq!(leaders[&0], new, "{created}'s leader");
        // And the existing partition moved to the new node, as its leader.
        let (_, replicas, _) = f.kafka_partitions(moved)[&0].clone();
        let mut order = vec![new];
        order.extend(replicas.iter().take(2));
        move_partition(f, moved, 0, &order);
        eprintln!(
            "grow: {created}[0] created on {:?}, {moved}[0] moved from {replicas:?} to {order:?}, {:.1?} after node {new} joined",
            assignment[0],
            added.elapsed()
        );

        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(moved, 0, Offset::Offset(100))
            .unwrap();
        tpl.add_partition_offset(created, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let logs = f.logging(&[REQUEST_LOGGER], || {
            produce(moved, 100, 200);
            produce(created, 0, 100);
            p.flush(DEADLINE).unwrap();
            read_until(&mut read, 300);
        });
        let failed = d.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "delivery failures: {failed:?}");
        assert_eq!(d.ok.lock().unwrap().len(), 300, "delivery reports");

        // Each record once, in order, at its offset.
        let mut got: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        for (_, o, v) in &read.records {
            let topic = v.rsplit_once('-').unwrap().0.to_string();
            got.entry(topic).or_default().push((*o, v.clone()));
        }
        for (topic, n) in [(moved, 200), (created, 100)] {
            let want: Vec<(i64, String)> = (0..n)
                .map(|i| (i as i64, format!("{topic}-{i:05}")))
                .collect();
            assert_eq!(got.get(topic), Some(&want), "{topic} through the gateway");
        }

        // Kafka's request log: the new node took the client Produce and
        // Fetch requests of both partitions (listener SASL, from the
        // gateway's service principal); no other node accepted a Produce
        // for them (the old leader refused the first ones with
        // NOT_LEADER_OR_FOLLOWER, which sent the client to the new one).
        // node -> (api, topic) -> (answered without error, refused with)
        let mut per_node: BTreeMap<i32, BTreeMap<(String, &str), Answered>> = BTreeMap::new();
        for (node, text) in &logs {
            for l in gk::request_lines(text) {
                if l.listener != "SASL" || !["PRODUCE", "FETCH"].contains(&l.api.as_str()) {
                    continue;
                }
                assert_eq!(l.principal, SERVICE_PRINCIPAL, "{}", l.raw);
                for topic in [moved, created] {
                    if l.partitions.iter().any(|(t, _)| t == topic) {
                        let e = per_node
                            .entry(*node)
                            .or_default()
                            .entry((l.api.clone(), topic))
                            .or_default();
                        match l.errors.first() {
                            None => e.0 += 1,
                            Some(c) => e.1.push(*c),
                        }
                    }
                }
            }
        }
        eprintln!("grow: client requests per node, (api, topic) -> (answered, refused with): {per_node:?}");
        let at_new = per_node.get(&new).cloned().unwrap_or_default();
        for topic in [moved, created] {
            for api in ["PRODUCE", "FETCH"] {
                assert!(
                    at_new
                        .get(&(api.to_string(), topic))
                        .is_some_and(|(ok, _)| *ok > 0),
                    "no {api} for {topic} reached node {new}: {per_node:?}"
                );
            }
        }
        for (node, calls) in &per_node {
            if *node == new {
                continue;
            }
            for ((api, topic), (ok, refused)) in calls {
                if api == "PRODUCE" {
                    assert_eq!(
                        *ok, 0,
                        "node {node} accepted a Produce for {topic}: {per_node:?}"
                    );
                    assert!(refused.iter().all(|c| *c == 6), "{per_node:?}");
                }
            }
        }
        // The gateway's metadata: both partitions led by the new node.
        let md = p
            .client()
            .fetch_metadata(None, Duration::from_secs(30))
            .unwrap();
        for t in md
            .topics()
            .iter()
            .filter(|t| [moved, created].contains(&t.name()))
        {
            assert_eq!(t.partitions()[0].leader(), new, "{}", t.name());
        }

        // The gateway was configured with node 1 alone; with node 1 down,
        // what any broker answers is answered by the brokers it learned,
        // the new one among them: a new client bootstraps through the
        // gateway and writes and reads the new node's partition.
        drop(consumer);
        drop(p);
        f.kafka.kill9(f.index_of(1));
        let killed = Instant::now();
        let fresh: BaseConsumer = f.alice().create().unwrap();
        let md = fresh
            .fetch_metadata(None, Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!("Metadata through the gateway with its only bootstrap server down: {e}")
            });
        assert!(
            md.brokers().iter().any(|b| b.id() == new),
            "node {new} is not in the gateway's metadata"
        );
        let acked = produce_per_partition(&f.alice(), created, 1, 50, "bootstrap-down");
        assert!(
            acked.iter().all(|(_, o, _)| (100..150).contains(o)),
            "{acked:?}"
        );
        let back = read_back(&f.alice(), created, 1, "with node 1 down");
        assert_eq!(back[&0].len(), 150, "{created} read back");
        eprintln!(
            "grow: node 1, the gateway's only bootstrap server, killed: a new client bootstrapped, wrote and read {created} in {:.1?}",
            killed.elapsed()
        );
        assert_eq!(f.gw.pid(), f.gw_pid, "the gateway was restarted");
    });
}
