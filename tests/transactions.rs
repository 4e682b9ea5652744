//! Idempotent and transactional producers, end to end: librdkafka (the
//! `rdkafka` crate) through a connection-dropping proxy, hand-built frames
//! (the `kafka_protocol` crate) for the sequence/epoch rules and the
//! transaction admin APIs, and confluent-kafka scripts
//! (`tests/python/txn_*.py`, each printing "ALL OK" last) for transactions
//! as applications use them. Every test has its own scratch directory and
//! broker.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, CreateTopicsRequest,
    CreateTopicsResponse, DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest,
    EndTxnResponse, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, ListTransactionsRequest, ListTransactionsResponse,
    ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use common::{scratch, strip_ansi, wait_for, Broker, BIN};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for anything the broker does by itself (a timed-out
/// transaction's abort): generous for a busy 2-core machine.
const BROKER_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Hand-built Kafka frames
// ---------------------------------------------------------------------------

/// One TCP connection speaking `kafka_protocol` requests.
struct Conn {
    s: TcpStream,
    corr: i32,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if !(0..=(256 << 20)).contains(&n) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("frame size {n}"),
        ));
    }
    let mut frame = vec![0u8; 4 + n as usize];
    frame[..4].copy_from_slice(&len);
    s.read_exact(&mut frame[4..])?;
    Ok(frame)
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, corr: 0 }
    }

    fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
        self.corr += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("transactions-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.s
            .write_all(&frame)
            .unwrap_or_else(|e| panic!("{api:?}: send: {e}"));
        let frame = read_frame(&mut self.s).unwrap_or_else(|e| panic!("{api:?}: no response: {e}"));
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .unwrap_or_else(|e| panic!("{api:?} v{version}: bad response header: {e}"));
        assert_eq!(header.correlation_id, self.corr, "{api:?}: correlation id");
        let resp = R::decode(&mut body, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: undecodable response: {e}"));
        assert!(body.is_empty(), "{api:?} v{version}: trailing bytes");
        resp
    }

    fn create_topic(&mut self, name: &str, partitions: i32) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 5, &req);
        let t = &resp.topics[0];
        assert_eq!(t.error_code, 0, "create {name}: {:?}", t.error_message);
    }

    /// InitProducerId v4: `txn` for a transactional producer; `pid`/`epoch`
    /// >= 0 to ask for the next epoch of a known producer (KIP-360).
    fn init_producer_id(
        &mut self,
        txn: Option<&str>,
        timeout_ms: i32,
        pid: i64,
        epoch: i16,
    ) -> InitProducerIdResponse {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch);
        self.call(ApiKey::InitProducerId, 4, &req)
    }

    /// Produce v9, acks=all, one partition.
    fn produce(
        &mut self,
        txn: Option<&str>,
        topic: &str,
        partition: i32,
        records: &Bytes,
    ) -> PartitionProduceResponse {
        let req = ProduceRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records.clone()))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req);
        resp.responses[0].partition_responses[0].clone()
    }

    /// ListOffsets v7, latest: the high watermark (isolation 0) or the last
    /// stable offset (isolation 1).
    fn latest_offset(&mut self, topic: &str, partition: i32, isolation: i8) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(-1)])]);
        let resp: ListOffsetsResponse = self.call(ApiKey::ListOffsets, 7, &req);
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ListOffsets {topic}/{partition}");
        p.offset
    }

    /// AddPartitionsToTxn v3: the error code of each partition.
    fn add_partitions(
        &mut self,
        txn: &str,
        pid: i64,
        epoch: i16,
        topic: &str,
        partitions: &[i32],
    ) -> Vec<i16> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
                txn.to_string(),
            )))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions.to_vec())]);
        let resp: AddPartitionsToTxnResponse = self.call(ApiKey::AddPartitionsToTxn, 3, &req);
        resp.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect()
    }

    /// EndTxn v3: the error code.
    fn end_txn(&mut self, txn: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(txn.to_string())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let resp: EndTxnResponse = self.call(ApiKey::EndTxn, 3, &req);
        resp.error_code
    }

    /// Fetch v11 of one partition from `offset`: (records bytes, aborted
    /// transactions as (producer id, first offset), last stable offset).
    fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        isolation: i8,
    ) -> (Bytes, Vec<(i64, i64)>, i64) {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_isolation_level(isolation)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = self.call(ApiKey::Fetch, 11, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch {topic}/{partition}");
        let aborted = p
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect();
        (
            p.records.clone().unwrap_or_default(),
            aborted,
            p.last_stable_offset,
        )
    }

    fn describe_txn(&mut self, id: &str) -> TransactionState {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]);
        let resp: DescribeTransactionsResponse = self.call(ApiKey::DescribeTransactions, 0, &req);
        assert_eq!(resp.transaction_states.len(), 1);
        resp.transaction_states[0].clone()
    }

    fn list_txns(&mut self, states: &[&str], pids: &[i64], duration_ms: i64) -> Vec<ListedTxn> {
        let req = ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            )
            .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(duration_ms);
        let resp: ListTransactionsResponse = self.call(ApiKey::ListTransactions, 1, &req);
        assert_eq!(resp.error_code, 0, "ListTransactions");
        resp.transaction_states
    }
}

/// A v2 record batch of `n` records from producer `pid`/`epoch` starting
/// at sequence `seq`; values are `<tag>-<i>`. Timestamps are now: the
/// broker (like Kafka) forgets producers whose last batch is older than a
/// day when it restarts, and retention deletes old segments.
fn batch(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool, tag: &str) -> Bytes {
    let now = now_ms();
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i,
            timestamp: now + i as i64,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn state_of(t: &TransactionState) -> String {
    t.transaction_state.to_string()
}

/// Polls DescribeTransactions until `id` is in `state`.
fn wait_txn_state(addr: &str, id: &str, state: &str) -> TransactionState {
    let mut c = Conn::open(addr);
    wait_for(
        &format!("transaction {id} to reach {state}"),
        BROKER_DEADLINE,
        || {
            let t = c.describe_txn(id);
            (t.error_code == 0 && state_of(&t) == state).then_some(t)
        },
    )
}

// ---------------------------------------------------------------------------
// Python scripts
// ---------------------------------------------------------------------------

fn script_path(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script)
}

/// Shows the end of the broker's log when the test panics.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- last broker log lines ({}):\n{}",
                self.0.display(),
                tail.join("\n")
            );
        }
    }
}

fn log_on_panic(dir: &Path) -> LogOnPanic {
    LogOnPanic(dir.join("broker.log"))
}

/// Runs a script to completion; it must print "ALL OK". Returns its
/// `RESULT` object (Null if it printed none).
fn py(script: &str, env: serde_json::Value) -> serde_json::Value {
    let started = Instant::now();
    let out = common::run_python(script, &[&env.to_string()]);
    let shown: Vec<String> = out
        .lines()
        .map(|l| match l.char_indices().nth(300) {
            Some((i, _)) => format!("{}...", &l[..i]),
            None => l.to_string(),
        })
        .collect();
    let mut shown_env = env.clone();
    for k in ["admin_password", "passwords"] {
        if let Some(v) = shown_env.get_mut(k) {
            *v = serde_json::Value::String("<redacted>".into());
        }
    }
    eprintln!(
        "{script} {shown_env}: {:.1?}\n{}",
        started.elapsed(),
        shown.join("\n")
    );
    assert!(
        out.lines().any(|l| l == "ALL OK"),
        "{script} did not report ALL OK:\n{out}"
    );
    out.lines()
        .rfind(|l| l.starts_with("RESULT "))
        .map(|l| &l["RESULT ".len()..])
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or(serde_json::Value::Null)
}

/// A script running in the background, to be killed by the test.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn spawn(script: &str, env: serde_json::Value) -> Background {
        let mut child = Command::new(common::python())
            .arg(script_path(script))
            .arg(env.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line `want` on the script's stdout.
    fn wait_line(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(l) => {
                    if l.starts_with("FAIL") {
                        panic!("background script failed: {l}\n{}", self.seen.join("\n"));
                    }
                    self.seen.push(l)
                }
                Err(e) => panic!(
                    "no line {want:?} from the background script ({e:?}); it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_values(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let r = py(
        "txn_check.py",
        serde_json::json!({"bootstrap": bootstrap, "op": "read", "topic": topic,
                           "isolation": isolation}),
    );
    r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec[2].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// 1. Idempotence under injected retries
// ---------------------------------------------------------------------------

/// A TCP proxy that forwards Kafka frames both ways and, for every
/// `drop_every`-th Produce response, closes both sides of that connection
/// instead of relaying it: the broker has written the batch, the client
/// never hears so and must retry it.
struct DroppingProxy {
    addr: String,
    produce_responses: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DroppingProxy {
    fn start(listener: TcpListener, upstream: String, drop_every: usize) -> DroppingProxy {
        let addr = listener.local_addr().unwrap().to_string();
        let produce_responses = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (responses, drops, stopping) =
            (produce_responses.clone(), dropped.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (responses, drops) = (responses.clone(), drops.clone());
                std::thread::spawn(move || {
                    proxy_connection(client, server, responses, drops, drop_every)
                });
            }
        });
        DroppingProxy {
            addr,
            produce_responses,
            dropped,
            stop,
        }
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn proxy_connection(
    client: TcpStream,
    server: TcpStream,
    responses: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    drop_every: usize,
) {
    // correlation id -> api key of the requests in flight.
    let inflight: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let requests = inflight.clone();
    let upstream = std::thread::spawn(move || {
        while let Ok(frame) = read_frame(&mut c_in) {
            if frame.len() >= 12 {
                let api = i16::from_be_bytes([frame[4], frame[5]]);
                let corr = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                requests.lock().unwrap().insert(corr, api);
            }
            if s_out.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = c_in.shutdown(Shutdown::Both);
        let _ = s_out.shutdown(Shutdown::Both);
    });
    let (mut s_in, mut c_out) = (server, client);
    while let Ok(frame) = read_frame(&mut s_in) {
        if frame.len() >= 8 {
            let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let api = inflight.lock().unwrap().remove(&corr);
            if api == Some(ApiKey::Produce as i16)
                && (responses.fetch_add(1, Ordering::AcqRel) + 1).is_multiple_of(drop_every)
            {
                drops.fetch_add(1, Ordering::AcqRel);
                break;
            }
        }
        if c_out.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = s_in.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

/// The harness writes the listener section itself; this one needs an
/// `advertised_address` (the proxy's), so it starts the binary directly.
struct AdvertisedBroker {
    child: Child,
    addr: String,
}

impl AdvertisedBroker {
    fn start(dir: &Path, advertised: &str) -> AdvertisedBroker {
        let acl = dir.join("acls.yaml");
        std::fs::write(
            &acl,
            "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n  - {allow: \"User:*\", operations: [all], transactional_id: \"*\"}\n",
        )
        .unwrap();
        let config = dir.join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "data_dir: {d}/data\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\n    advertised_address: {advertised}\nacl:\n  file: {acl}\naudit:\n  file: {d}/audit/audit.log\nsasl:\n  credentials: {d}/credentials.yaml\nops:\n  address: 127.0.0.1:0\n",
                d = dir.display(),
                acl = acl.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("broker.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start portcullis");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("portcullis: listening ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "broker did not start; log:\n{}",
                std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
            );
        };
        AdvertisedBroker {
            child,
            addr: url.split("://").nth(1).unwrap().to_string(),
        }
    }
}

impl Drop for AdvertisedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Delivery reports: key -> (partition, offset), and the failures.
#[derive(Clone, Default)]
struct Deliveries {
    ok: Arc<Mutex<Vec<(String, i32, i64)>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => self.ok.lock().unwrap().push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.partition(),
                m.offset(),
            )),
            Err((e, _)) => self.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// librdkafka with enable.idempotence=true, acks=all produces 20,000 keyed
/// records through a proxy that drops the connection instead of relaying
/// every 25th Produce response. The broker deduplicates the retries: every
/// key is in the log exactly once, each partition keeps the send order, and
/// the log holds nothing else.
#[test]
fn idempotent_producer_retries_through_dropped_responses_write_once() {
    const N: usize = 20_000;
    const PARTITIONS: i32 = 3;
    let dir = scratch("txn-idem-proxy");
    let _log = log_on_panic(dir.path());
    // The proxy's port is known before the broker starts, so the broker can
    // advertise it: Metadata sends librdkafka back through the proxy.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap().to_string();
    let broker = AdvertisedBroker::start(dir.path(), &proxy_addr);
    let proxy = DroppingProxy::start(listener, broker.addr.clone(), 25);
    let mut direct = Conn::open(&broker.addr);
    direct.create_topic("idem", PARTITIONS);

    let started = Instant::now();
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &proxy_addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("batch.num.messages", "40")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "180000")
        .set("retry.backoff.ms", "20")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "3")
        .create_with_context(Deliveries::default())
        .expect("producer");
    for i in 0..N {
        let key = format!("key-{i:05}");
        let value = format!("value-{i}");
        let mut rec = BaseRecord::to("idem").key(&key).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(180))
        .expect("flush: every record delivered");
    let deliveries = producer.context().clone();
    drop(producer);
    let dropped = proxy.dropped.load(Ordering::Acquire);
    let responses = proxy.produce_responses.load(Ordering::Acquire);
    eprintln!(
        "produced {N} records in {:.1?}: {responses} Produce responses, {dropped} dropped",
        started.elapsed()
    );
    let failed = deliveries.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "delivery failures: {failed:?}");
    let acked = deliveries.ok.lock().unwrap().clone();
    assert_eq!(acked.len(), N, "every record acknowledged once");
    assert!(dropped > 0, "the proxy never dropped a Produce response");

    // The log holds exactly N records: retries wrote nothing.
    let total: i64 = (0..PARTITIONS)
        .map(|p| direct.latest_offset("idem", p, 0))
        .sum();
    assert_eq!(total, N as i64, "records in the log (duplicates written?)");

    // Every key exactly once, at the offset it was acknowledged at, and in
    // send order within its partition.
    let acked_at: HashMap<String, (i32, i64)> =
        acked.into_iter().map(|(k, p, o)| (k, (p, o))).collect();
    assert_eq!(acked_at.len(), N, "acknowledged keys are distinct");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &proxy_addr)
        .set("group.id", "idem-reader-unused")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("idem", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen: HashMap<String, (i32, i64)> = HashMap::with_capacity(N);
    let mut last_index = [-1i64; PARTITIONS as usize];
    let mut count = 0usize;
    wait_for("all records consumed", Duration::from_secs(120), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume error");
            count += 1;
            let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
            let i: i64 = key[4..].parse().unwrap();
            assert_eq!(
                m.payload().unwrap(),
                format!("value-{i}").as_bytes(),
                "value of {key}"
            );
            let part = m.partition() as usize;
            assert!(
                i > last_index[part],
                "partition {part}: {key} at offset {} after key-{:05}: order broken or duplicate",
                m.offset(),
                last_index[part]
            );
            last_index[part] = i;
            if let Some(prev) = seen.insert(key.clone(), (m.partition(), m.offset())) {
                panic!(
                    "{key} twice: at {prev:?} and {}/{}",
                    m.partition(),
                    m.offset()
                );
            }
            assert_eq!(
                acked_at[&key],
                (m.partition(), m.offset()),
                "{key} where it was acknowledged"
            );
            if count >= N {
                break;
            }
        }
        (count >= N).then_some(())
    });
    assert_eq!(seen.len(), N, "no gaps: every key read");
}

// ---------------------------------------------------------------------------
// 2. Sequence numbers and epochs on the wire
// ---------------------------------------------------------------------------

/// Raw Produce with producer ids: a resent batch is acknowledged at its
/// first offset and written once; a sequence gap gets 45; an older epoch
/// after a KIP-360 bump gets 47; sequence 5 from a producer the partition
/// never saw gets 59. The state survives kill -9 and restart.
#[test]
fn sequence_and_epoch_rules_survive_kill9() {
    let dir = scratch("txn-idem-raw");
    let _log = log_on_panic(dir.path());
    let mut broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("seq", 1);

    let init = c.init_producer_id(None, -1, -1, -1);
    assert_eq!(init.error_code, 0, "InitProducerId");
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);

    let b0 = batch(pid, 0, 0, 3, false, "b0");
    let r = c.produce(None, "seq", 0, &b0);
    assert_eq!((r.error_code, r.base_offset), (0, 0), "first batch");
    assert_eq!(c.latest_offset("seq", 0, 0), 3);
    let r = c.produce(None, "seq", 0, &b0);
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 0),
        "the resent batch is acknowledged at its first offset"
    );
    assert_eq!(c.latest_offset("seq", 0, 0), 3, "the resend wrote nothing");

    let b1 = batch(pid, 0, 3, 2, false, "b1");
    let r = c.produce(None, "seq", 0, &b1);
    assert_eq!((r.error_code, r.base_offset), (0, 3), "next batch");
    // An older batch (still among the last five) is a duplicate too.
    let r = c.produce(None, "seq", 0, &b0);
    assert_eq!((r.error_code, r.base_offset), (0, 0), "older duplicate");
    assert_eq!(c.latest_offset("seq", 0, 0), 5);

    let gap = batch(pid, 0, 7, 1, false, "gap");
    let r = c.produce(None, "seq", 0, &gap);
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence gap");
    assert_eq!(c.latest_offset("seq", 0, 0), 5, "the gap wrote nothing");

    let other = c.init_producer_id(None, -1, -1, -1);
    assert_eq!(other.error_code, 0);
    let pid2 = other.producer_id.0;
    assert_ne!(pid2, pid, "a new producer id");
    let unknown = batch(pid2, 0, 5, 1, false, "unknown");
    let r = c.produce(None, "seq", 0, &unknown);
    assert_eq!(r.error_code, UNKNOWN_PRODUCER_ID, "no state and sequence 5");

    // KIP-360: the producer asks for its next epoch.
    let bump = c.init_producer_id(None, -1, pid, 0);
    assert_eq!(bump.error_code, 0, "InitProducerId with a known id");
    assert_eq!((bump.producer_id.0, bump.producer_epoch), (pid, 1));
    let e1 = batch(pid, 1, 0, 2, false, "e1");
    let r = c.produce(None, "seq", 0, &e1);
    assert_eq!((r.error_code, r.base_offset), (0, 5), "new epoch from 0");
    let stale = batch(pid, 0, 5, 1, false, "stale");
    let r = c.produce(None, "seq", 0, &stale);
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH, "older epoch");
    assert_eq!(c.latest_offset("seq", 0, 0), 7);

    broker.restart_after_kill9();
    let mut c = Conn::open(&broker.bootstrap);
    assert_eq!(c.latest_offset("seq", 0, 0), 7, "acked records kept");
    let r = c.produce(None, "seq", 0, &e1);
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 5),
        "a duplicate after the restart is still detected"
    );
    assert_eq!(c.latest_offset("seq", 0, 0), 7, "and writes nothing");
    let r = c.produce(None, "seq", 0, &stale);
    assert_eq!(
        r.error_code, INVALID_PRODUCER_EPOCH,
        "older epoch after restart"
    );
    let r = c.produce(None, "seq", 0, &batch(pid, 1, 5, 1, false, "gap2"));
    assert_eq!(
        r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER,
        "gap after restart"
    );
    let r = c.produce(None, "seq", 0, &unknown);
    assert_eq!(r.error_code, UNKNOWN_PRODUCER_ID, "unknown after restart");
    let r = c.produce(None, "seq", 0, &batch(pid, 1, 2, 1, false, "next"));
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 7),
        "the sequence goes on"
    );
    assert_eq!(c.latest_offset("seq", 0, 0), 8);
    // New ids after the restart are new.
    let after = c.init_producer_id(None, -1, -1, -1);
    assert!(
        after.producer_id.0 != pid && after.producer_id.0 != pid2,
        "producer id {} reused after the restart",
        after.producer_id.0
    );
}

// ---------------------------------------------------------------------------
// 3. Transactions with confluent-kafka
// ---------------------------------------------------------------------------

/// Aborted records are invisible to read_committed and visible to
/// read_uncommitted. A consume-transform-produce loop commits its input
/// offsets with its output; a run SIGKILLed mid-transaction leaves nothing
/// a read_committed reader sees once the broker aborts it at the
/// transaction timeout; a new run with the same transactional.id resumes
/// at the committed offsets, and the output has every input record once.
#[test]
fn aborted_invisible_and_consume_transform_produce_exactly_once() {
    let dir = scratch("txn-ctp");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "groups:\n  initial_rebalance_delay_ms: 200\n");
    let bs = broker.bootstrap.clone();
    py("txn_visibility.py", serde_json::json!({"bootstrap": bs}));

    const INPUT: usize = 60;
    py(
        "txn_check.py",
        serde_json::json!({"bootstrap": bs, "op": "setup",
                           "topics": {"input": 2, "output": 2}, "seed": {"input": INPUT}}),
    );
    let run = |mode: &str, limit: usize| {
        py(
            "txn_ctp.py",
            serde_json::json!({"bootstrap": bs, "txn_id": "ctp", "group": "ctp-group",
                               "mode": mode, "limit": limit, "txn_timeout_ms": 5000}),
        )
    };
    let first = run("commit", 20);
    assert_eq!(first["processed"], 20);
    let after_first = sorted(read_values(&bs, "output", "read_committed"));
    assert_eq!(after_first.len(), 20, "first run's output: {after_first:?}");
    let mut distinct = after_first.clone();
    distinct.dedup();
    assert_eq!(distinct, after_first, "first run processed a record twice");

    // A run killed in the middle of a transaction: output produced and
    // flushed, offsets staged, no commit.
    let mut c = Conn::open(&bs);
    let mut hang = Background::spawn(
        "txn_ctp.py",
        serde_json::json!({"bootstrap": bs, "txn_id": "ctp", "group": "ctp-group",
                           "mode": "hang", "limit": 15, "txn_timeout_ms": 5000}),
    );
    hang.wait_line("MID-TXN", Duration::from_secs(120));
    let open = c.describe_txn("ctp");
    assert_eq!(state_of(&open), "Ongoing", "the killed run's transaction");
    hang.kill9();
    let killed_at = Instant::now();
    let aborted = wait_txn_state(&bs, "ctp", "CompleteAbort");
    eprintln!(
        "abandoned transaction aborted {:.1?} after the kill (timeout 5s)",
        killed_at.elapsed()
    );
    assert!(
        now_ms() >= open.transaction_start_time_ms + 5000,
        "aborted before its 5 s timeout (started at {})",
        open.transaction_start_time_ms
    );
    assert_eq!(aborted.producer_id, open.producer_id);
    assert!(
        aborted.producer_epoch > open.producer_epoch,
        "the timeout abort bumps the epoch: {} -> {}",
        open.producer_epoch,
        aborted.producer_epoch
    );
    assert_eq!(
        sorted(read_values(&bs, "output", "read_committed")),
        after_first,
        "read_committed after the abort: the killed run left nothing visible"
    );
    let everything = read_values(&bs, "output", "read_uncommitted");
    assert_eq!(
        everything.len(),
        35,
        "the killed run's 15 records are in the log: {everything:?}"
    );
    for p in 0..2 {
        let lso = c.latest_offset("output", p, 1);
        assert_eq!(
            lso,
            c.latest_offset("output", p, 0),
            "output/{p}: LSO at the end"
        );
    }

    // The restarted loop resumes at the committed offsets (20 records in).
    let last = run("drain", 0);
    assert_eq!(
        last["processed"], 40,
        "the restarted loop processed exactly the unprocessed input"
    );
    let out = sorted(read_values(&bs, "output", "read_committed"));
    let want: Vec<String> = (0..INPUT).map(|i| format!("out-in-{i:03}")).collect();
    if out != want {
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for v in &out {
            *counts.entry(v).or_default() += 1;
        }
        let missing: Vec<&String> = want.iter().filter(|w| !counts.contains_key(w)).collect();
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        let log = py(
            "txn_check.py",
            serde_json::json!({"bootstrap": bs, "op": "read", "topic": "output",
                               "isolation": "read_uncommitted"}),
        );
        panic!(
            "read_committed output is not each input record exactly once: missing {missing:?}, \
             more than once {twice:?}; first run {first}, last run {last}; \
             the whole log (partition, offset, value): {log}"
        );
    }
    let committed = py(
        "txn_check.py",
        serde_json::json!({"bootstrap": bs, "op": "committed", "group": "ctp-group",
                           "topic": "input"}),
    );
    let total: i64 = committed["offsets"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, INPUT as i64, "group offsets at the end of input");
}

// ---------------------------------------------------------------------------
// 4. Fencing
// ---------------------------------------------------------------------------

/// init_transactions by a second producer with the same transactional.id
/// fences the first: its next transactional operation fails fatally as
/// fenced (inside an open transaction, and when adding a partition).
#[test]
fn second_producer_fences_the_first() {
    let dir = scratch("txn-fence");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "");
    let r = py(
        "txn_fence.py",
        serde_json::json!({"bootstrap": broker.bootstrap}),
    );
    assert_eq!(r["fenced"].as_array().unwrap().len(), 2);
    let mut c = Conn::open(&broker.bootstrap);
    for id in ["fence-a", "fence-b"] {
        let t = c.describe_txn(id);
        assert_eq!(state_of(&t), "CompleteCommit", "{id}");
        assert_eq!(t.producer_epoch, 1, "{id}: fenced once");
    }
}

/// The broker aborts a transaction left open past its timeout, with an
/// epoch bump: the abandoned producer's next produce gets 47 and its
/// EndTxn and AddPartitionsToTxn get PRODUCER_FENCED; the aborted records
/// are reported as such to read_committed fetches, and the last stable
/// offset moves past them.
#[test]
fn timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let dir = scratch("txn-timeout");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("to", 2);
    let tid = "timeout-t";
    let init = c.init_producer_id(Some(tid), 1000, -1, -1);
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!(c.add_partitions(tid, pid, epoch, "to", &[0]), vec![0]);
    let r = c.produce(Some(tid), "to", 0, &batch(pid, epoch, 0, 3, true, "late"));
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(
        c.latest_offset("to", 0, 1),
        0,
        "LSO held by the open transaction"
    );

    let aborted = wait_txn_state(&broker.bootstrap, tid, "CompleteAbort");
    assert_eq!(aborted.producer_id.0, pid);
    assert_eq!(
        aborted.producer_epoch,
        epoch + 1,
        "the timeout abort bumps the epoch"
    );
    let r = c.produce(Some(tid), "to", 0, &batch(pid, epoch, 3, 1, true, "zombie"));
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH, "zombie produce");
    assert_eq!(
        c.end_txn(tid, pid, epoch, true),
        PRODUCER_FENCED,
        "zombie EndTxn"
    );
    assert_eq!(
        c.add_partitions(tid, pid, epoch, "to", &[1]),
        vec![PRODUCER_FENCED],
        "zombie AddPartitionsToTxn"
    );
    // 3 records and the abort marker; all of it stable now.
    assert_eq!(c.latest_offset("to", 0, 0), 4);
    assert_eq!(c.latest_offset("to", 0, 1), 4);
    let (records, aborted_list, lso) = c.fetch("to", 0, 0, 1);
    assert_eq!(lso, 4);
    assert!(
        !records.is_empty(),
        "read_committed fetch returns the batches"
    );
    assert_eq!(
        aborted_list,
        vec![(pid, 0)],
        "the aborted transaction is announced to read_committed fetches"
    );
    let (_, aborted_list, _) = c.fetch("to", 0, 0, 0);
    assert!(
        aborted_list.is_empty(),
        "read_uncommitted gets no aborted list"
    );
    // The id is usable again, with a new epoch.
    let again = c.init_producer_id(Some(tid), 1000, -1, -1);
    assert_eq!(again.error_code, 0);
    assert_eq!(
        (again.producer_id.0, again.producer_epoch),
        (pid, epoch + 2)
    );
}

/// KIP-360: a transactional InitProducerId carrying the producer id and
/// epoch the client last had must be refused with PRODUCER_FENCED when a
/// newer instance has taken the id since; otherwise a zombie (e.g. one
/// bumping its epoch after an abortable error) takes the id back and
/// fences the live producer. Kafka: TransactionCoordinator
/// prepareInitProducerIdTransit / prepareIncrementProducerEpoch.
#[test]
fn fenced_producer_cannot_reclaim_its_transactional_id() {
    let dir = scratch("txn-zombie-init");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("zi", 1);
    let tid = "zombie-t";
    let old = c.init_producer_id(Some(tid), 60_000, -1, -1);
    let new = c.init_producer_id(Some(tid), 60_000, -1, -1);
    assert_eq!((old.error_code, new.error_code), (0, 0));
    let pid = new.producer_id.0;
    assert_eq!(new.producer_epoch, old.producer_epoch + 1);

    let zombie = c.init_producer_id(Some(tid), 60_000, old.producer_id.0, old.producer_epoch);
    assert_eq!(
        zombie.error_code, PRODUCER_FENCED,
        "the fenced instance's InitProducerId(pid {}, epoch {}) got epoch {}",
        old.producer_id.0, old.producer_epoch, zombie.producer_epoch
    );
    // The live instance is untouched, and may bump its own epoch.
    assert_eq!(
        c.add_partitions(tid, pid, new.producer_epoch, "zi", &[0]),
        vec![0]
    );
    assert_eq!(c.end_txn(tid, pid, new.producer_epoch, false), 0);
    let bump = c.init_producer_id(Some(tid), 60_000, pid, new.producer_epoch);
    assert_eq!(bump.error_code, 0);
    assert_eq!(bump.producer_epoch, new.producer_epoch + 1);
}

// ---------------------------------------------------------------------------
// 5. kill -9
// ---------------------------------------------------------------------------

/// A committed transaction (with offsets sent to the transaction) and an
/// open one when the broker is killed with SIGKILL: after the restart the
/// committed records and offsets are there, and the open transaction is
/// aborted at its timeout and stays invisible to read_committed.
#[test]
fn transactions_survive_kill9() {
    let dir = scratch("txn-kill9");
    let _log = log_on_panic(dir.path());
    let mut broker = Broker::start(dir.path(), "");
    let bs = broker.bootstrap.clone();
    py(
        "txn_restart.py",
        serde_json::json!({"bootstrap": bs, "phase": "commit"}),
    );
    let mut hang = Background::spawn(
        "txn_restart.py",
        serde_json::json!({"bootstrap": bs, "phase": "hang", "txn_timeout_ms": 10000}),
    );
    hang.wait_line("OPEN", Duration::from_secs(120));
    let mut c = Conn::open(&bs);
    let open = c.describe_txn("r-open");
    assert_eq!(state_of(&open), "Ongoing", "r-open before the kill");
    assert_eq!(state_of(&c.describe_txn("r-commit")), "CompleteCommit");
    drop(c);
    // The client first, so it does nothing more; then the broker.
    hang.kill9();
    broker.restart_after_kill9();

    let mut c = Conn::open(&bs);
    let committed = c.describe_txn("r-commit");
    assert_eq!(
        state_of(&committed),
        "CompleteCommit",
        "r-commit after restart"
    );
    let restarted_at = Instant::now();
    let aborted = wait_txn_state(&bs, "r-open", "CompleteAbort");
    eprintln!(
        "r-open aborted {:.1?} after the restart",
        restarted_at.elapsed()
    );
    assert!(
        now_ms() >= open.transaction_start_time_ms + 10_000,
        "aborted before its 10 s timeout (started at {})",
        open.transaction_start_time_ms
    );
    assert_eq!(aborted.producer_id, open.producer_id);
    assert!(aborted.producer_epoch > open.producer_epoch, "epoch bumped");
    py(
        "txn_restart.py",
        serde_json::json!({"bootstrap": bs, "phase": "after"}),
    );
}

// ---------------------------------------------------------------------------
// 6. DescribeTransactions / ListTransactions
// ---------------------------------------------------------------------------

/// A transaction driven with raw requests, seen through
/// DescribeTransactions and ListTransactions (and the last stable offset)
/// as it goes Empty -> Ongoing -> CompleteCommit.
#[test]
fn describe_and_list_transactions() {
    let dir = scratch("txn-describe");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("dt", 2);
    let tid = "desc-t";

    let missing = c.describe_txn("no-such-txn");
    assert_eq!(missing.error_code, TRANSACTIONAL_ID_NOT_FOUND);

    let init = c.init_producer_id(Some(tid), 60_000, -1, -1);
    assert_eq!(init.error_code, 0, "transactional InitProducerId");
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let t = c.describe_txn(tid);
    assert_eq!(t.error_code, 0);
    assert_eq!(state_of(&t), "Empty");
    assert_eq!((t.producer_id.0, t.producer_epoch), (pid, epoch));
    assert_eq!(t.transaction_timeout_ms, 60_000);
    assert!(t.topics.is_empty());

    assert_eq!(
        c.add_partitions(tid, pid, epoch, "dt", &[0, 1]),
        vec![0, 0],
        "AddPartitionsToTxn"
    );
    let r = c.produce(Some(tid), "dt", 0, &batch(pid, epoch, 0, 3, true, "t"));
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 0),
        "transactional produce"
    );
    assert_eq!(c.latest_offset("dt", 0, 0), 3, "high watermark");
    assert_eq!(
        c.latest_offset("dt", 0, 1),
        0,
        "LSO: held at the open transaction"
    );

    let t = c.describe_txn(tid);
    assert_eq!(state_of(&t), "Ongoing");
    assert_eq!((t.producer_id.0, t.producer_epoch), (pid, epoch));
    assert!(
        t.transaction_start_time_ms > 0,
        "start time of an open transaction"
    );
    let parts: BTreeMap<String, Vec<i32>> = t
        .topics
        .iter()
        .map(|x| (x.topic.to_string(), x.partitions.clone()))
        .collect();
    assert_eq!(parts, BTreeMap::from([("dt".to_string(), vec![0, 1])]));

    let listed = c.list_txns(&[], &[], -1);
    assert!(
        listed.iter().any(|l| l.transactional_id.as_str() == tid
            && l.producer_id.0 == pid
            && l.transaction_state.as_str() == "Ongoing"),
        "ListTransactions: {listed:?}"
    );
    let ongoing = c.list_txns(&["Ongoing"], &[], -1);
    assert_eq!(ongoing.len(), 1, "Ongoing filter: {ongoing:?}");
    assert!(c.list_txns(&["CompleteCommit"], &[], -1).is_empty());
    let by_pid = c.list_txns(&[], &[pid], -1);
    assert_eq!(by_pid.len(), 1, "producer id filter: {by_pid:?}");
    assert!(c.list_txns(&[], &[pid + 1000], -1).is_empty());
    assert!(
        c.list_txns(&[], &[], 3_600_000).is_empty(),
        "nothing has been open for an hour"
    );
    assert_eq!(c.list_txns(&[], &[], 0).len(), 1, "open for >= 0 ms");

    assert_eq!(c.end_txn(tid, pid, epoch, true), 0, "EndTxn commit");
    let t = c.describe_txn(tid);
    assert_eq!(state_of(&t), "CompleteCommit");
    assert!(t.topics.is_empty());
    let done = c.list_txns(&["CompleteCommit"], &[], -1);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].producer_id.0, pid);
    // Data plus the commit marker, all stable.
    assert_eq!(c.latest_offset("dt", 0, 0), 4);
    assert_eq!(c.latest_offset("dt", 0, 1), 4);
    assert_eq!(
        c.latest_offset("dt", 1, 1),
        1,
        "marker on the untouched partition"
    );
}

// ---------------------------------------------------------------------------
// 7. Authorization
// ---------------------------------------------------------------------------

/// On a SASL_SSL broker with explicit ACLs: no WRITE on the transactional
/// id -> 53 from init_transactions; neither a topic WRITE nor
/// IDEMPOTENT_WRITE -> 31 for an idempotent producer's InitProducerId.
#[test]
fn transactional_and_idempotent_authorization() {
    let dir = scratch("txn-acl");
    let _log = log_on_panic(dir.path());
    let acl = dir.path().join("acls.yaml");
    std::fs::write(
        &acl,
        "allow_everyone_if_no_acl_found: false\nrules:\n\
         \x20 - {allow: \"User:alice\", operations: [write], topic: orders}\n\
         \x20 - {allow: \"User:alice\", operations: [describe], transactional_id: t1}\n\
         \x20 - {allow: \"User:alice\", operations: [write], transactional_id: t2}\n\
         \x20 - {allow: \"User:bob\", operations: [read], topic: orders}\n\
         \x20 - {allow: \"User:carol\", operations: [idempotent_write], cluster: kafka-cluster}\n\
         \x20 - {allow: \"User:dave\", operations: [write], topic: orders}\n",
    )
    .unwrap();
    let broker = Broker::start_secure(dir.path(), &format!("acl:\n  file: {}\n", acl.display()));
    let users = ["alice", "bob", "carol", "dave"];
    let mut passwords = serde_json::Map::new();
    for u in users {
        let pw = format!("{u}-Secret-42");
        broker.add_user(u, &pw);
        passwords.insert(u.to_string(), serde_json::Value::String(pw));
    }
    let want = format!("users={}", users.len() + 1);
    wait_for(
        "the broker to load the new users",
        Duration::from_secs(30),
        || {
            strip_ansi(&broker.log())
                .lines()
                .any(|l| l.contains("credential file reloaded") && l.ends_with(&want))
                .then_some(())
        },
    );
    py(
        "txn_acl.py",
        serde_json::json!({
            "bootstrap": broker.addr("SASL_SSL"),
            "ca": broker.ca_file(),
            "admin_password": broker.admin_password.clone().unwrap(),
            "passwords": passwords,
        }),
    );
}

/// Transactional record batches are refused with 53 when the request names
/// no transactional id, as Kafka does (KafkaApis.handleProduceRequest:
/// hasTransactionalRecords needs WRITE on the request's transactional
/// id). Otherwise a principal with only topic WRITE bypasses the
/// transactional-id ACLs, and can open a "transaction" no coordinator
/// knows, which pins the partition's last stable offset forever: every
/// read_committed consumer of the partition stalls.
#[test]
fn transactional_records_need_a_transactional_id() {
    let dir = scratch("txn-no-id");
    let _log = log_on_panic(dir.path());
    let acl = dir.path().join("acls.yaml");
    // PLAINTEXT clients are User:ANONYMOUS: topics only, no transactional id.
    std::fs::write(
        &acl,
        "allow_everyone_if_no_acl_found: false\nrules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n",
    )
    .unwrap();
    let mut broker = Broker::start(dir.path(), &format!("acl:\n  file: {}\n", acl.display()));
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("pinned", 1);
    let r = c.produce(
        Some("someone"),
        "pinned",
        0,
        &batch(4242, 0, 0, 1, true, "named"),
    );
    assert_eq!(
        r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "with an id"
    );
    let r = c.produce(None, "pinned", 0, &batch(4242, 0, 0, 1, true, "unnamed"));
    let written = r.error_code == 0;
    // Show the consequence before asserting: plain records after it are
    // never stable, even across a restart.
    let plain = c.produce(None, "pinned", 0, &batch(-1, -1, -1, 2, false, "plain"));
    assert_eq!(plain.error_code, 0);
    broker.restart();
    let mut c = Conn::open(&broker.bootstrap);
    let (hw, lso) = (
        c.latest_offset("pinned", 0, 0),
        c.latest_offset("pinned", 0, 1),
    );
    assert!(
        !written,
        "a transactional batch without a transactional id was written (offset {}); \
         high watermark {hw}, last stable offset {lso} after a restart",
        r.base_offset
    );
    assert_eq!(
        r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "without an id"
    );
    assert_eq!(lso, hw, "nothing pins the last stable offset");
}

/// Kafka refuses client appends to internal topics
/// (ReplicaManager.appendToLocalLog: INVALID_TOPIC_EXCEPTION, 17). Here
/// `__transaction_state` is what the coordinator rebuilds its state from on
/// restart, so a client with WRITE on `*` could forge or erase any
/// transactional id's producer id, epoch and open transaction.
#[test]
fn clients_cannot_write_the_transaction_log() {
    let dir = scratch("txn-forge");
    let _log = log_on_panic(dir.path());
    let mut broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    let forged = serde_json::json!({
        "producer_id": 777, "epoch": 5, "timeout_ms": 60000, "state": "Empty",
        "partitions": [], "groups": [], "pending_offsets": [], "start_ms": 0, "updated_ms": 0
    });
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: Some(Bytes::from_static(b"forged-t")),
        value: Some(Bytes::from(forged.to_string())),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&rec),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let r = c.produce(None, "__transaction_state", 0, &buf.freeze());
    broker.restart();
    let mut c = Conn::open(&broker.bootstrap);
    let t = c.describe_txn("forged-t");
    assert!(
        r.error_code != 0 && t.error_code == TRANSACTIONAL_ID_NOT_FOUND,
        "a client's append to __transaction_state got error {} at offset {}; after a restart \
         the coordinator knows forged-t as producer {} epoch {} ({})",
        r.error_code,
        r.base_offset,
        t.producer_id.0,
        t.producer_epoch,
        state_of(&t)
    );
}

/// KIP-447: while a transaction holds staged offsets for a partition, an
/// OffsetFetch that asks for stable offsets (what read_committed consumers
/// send after a rebalance) gets UNSTABLE_OFFSET_COMMIT, so the consumer
/// retries instead of resuming from the older offset and re-processing the
/// input; once the transaction commits, the staged offset is returned.
#[test]
fn staged_transactional_offsets_are_unstable_until_commit() {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, GroupId, OffsetFetchRequest,
        OffsetFetchResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    };
    const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    let dir = scratch("txn-unstable");
    let _log = log_on_panic(dir.path());
    let broker = Broker::start(dir.path(), "");
    let mut c = Conn::open(&broker.bootstrap);
    c.create_topic("staged", 1);
    let tid = "staged-t";
    let group = "staged-g";
    let init = c.init_producer_id(Some(tid), 60_000, -1, -1);
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let added: AddOffsetsToTxnResponse = c.call(
        ApiKey::AddOffsetsToTxn,
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(tid)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_static_str(group))),
    );
    assert_eq!(added.error_code, 0, "AddOffsetsToTxn");
    let staged: TxnOffsetCommitResponse = c.call(
        ApiKey::TxnOffsetCommit,
        3,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(tid)))
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("staged")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]),
    );
    assert_eq!(
        staged.topics[0].partitions[0].error_code, 0,
        "TxnOffsetCommit"
    );

    let fetch = |c: &mut Conn, stable: bool| -> (i64, i16) {
        let r: OffsetFetchResponse = c.call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("staged")))
                    .with_partition_indexes(vec![0])]))
                .with_require_stable(stable),
        );
        assert_eq!(r.error_code, 0, "OffsetFetch");
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    };
    assert_eq!(
        fetch(&mut c, true),
        (-1, UNSTABLE_OFFSET_COMMIT),
        "staged, stable asked"
    );
    assert_eq!(
        fetch(&mut c, false),
        (-1, 0),
        "staged, last committed asked"
    );
    assert_eq!(c.end_txn(tid, pid, epoch, true), 0, "EndTxn commit");
    assert_eq!(fetch(&mut c, true), (5, 0), "after the commit");
}
