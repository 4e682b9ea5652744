//! Scale with partitions and consumers (issue #19, part 4), measured with
//! the crate's own lightweight client (`portcullis::client`, raw requests,
//! one task per connection) rather than librdkafka, whose consumers each
//! bring threads and queues: 1,000 of them would take the two cores from
//! the broker being measured.
//!
//! - Idle long polls: N connections each long-poll a partition of their own
//!   of `scale-idle` (1,000 partitions) that nobody writes, while
//!   `scale-live` (1 partition, so 1,001 in all) takes writes at a fixed
//!   rate and one consumer follows it. The broker's CPU per second and per
//!   MB written must not grow with N (0, 100, 1,000).
//! - 10,000 partitions (10 topics of 1,000, the default per-topic
//!   maximum): creation, Metadata naming all of them, then one batch
//!   produced to every partition and everything consumed back.
//!
//! Each Kafka connection serves one request at a time, so every waiting
//! consumer needs its own connection, as a real consumer would have.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use portcullis::client::{Connection, Connector};

use super::cpu::{CpuSplit, Meter};

const IDLE_TOPIC: &str = "scale-idle";
const LIVE_TOPIC: &str = "scale-live";
const IDLE_PARTITIONS: i32 = 1000;
const WAITER_COUNTS: [usize; 3] = [0, 100, 1000];
/// Each measured window of the idle-long-poll figure.
const WINDOW: Duration = Duration::from_secs(5);
/// Appends per second to `scale-live`, one record each.
const WRITES_PER_SEC: u64 = 500;
const RECORD_BYTES: usize = 1024;
/// Longer than a window, so an idle waiter sends nothing while measured.
const LONG_POLL_MS: i32 = 30_000;

const WIDE_TOPICS: usize = 10;
const WIDE_PER_TOPIC: i32 = 1000;
/// Records of each partition's one batch in the 10,000-partition run.
const WIDE_RECORDS: usize = 16;
/// Connections producing and consuming in the 10,000-partition run.
const WIDE_CONNECTIONS: usize = 4;
/// Partitions per Produce or Fetch request there.
const WIDE_PER_REQUEST: usize = 250;
const METADATA_CALLS: usize = 20;

const FETCH_V: i16 = 12;
const PRODUCE_V: i16 = 9;
const METADATA_V: i16 = 12;
const CREATE_V: i16 = 5;
const DELETE_V: i16 = 4;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn connect(addr: &str) -> anyhow::Result<Connection> {
    Ok(Connector::plaintext()
        .with_client_id("portcullis-bench-scale")
        .connect(addr)
        .await?)
}

/// The broker's share of a measured window, per second and per MB.
fn cpu_line(split: &CpuSplit, mb: f64) -> String {
    let (Some(cpu), wall) = (split.broker, split.wall) else {
        return "broker CPU not measured (needs --broker-pid)".into();
    };
    format!(
        "broker {:.3} cores ({:.1} ms CPU per s), {:.2} ms CPU per MB",
        cpu / wall,
        cpu / wall * 1000.0,
        cpu * 1000.0 / mb.max(1e-9)
    )
}

/// Deletes `topics` if they exist (a running broker may keep them from an
/// earlier run), then creates them.
async fn recreate(conn: &mut Connection, topics: &[String], partitions: i32) -> anyhow::Result<()> {
    let del = DeleteTopicsRequest::default()
        .with_topic_names(topics.iter().map(|t| name(t)).collect())
        .with_timeout_ms(60_000);
    let _: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, DELETE_V, &del).await?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(300_000)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(name(t))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, CREATE_V, &req).await?;
    for t in &resp.topics {
        if t.error_code != 0 {
            bail!(
                "creating {}: error {} {}",
                t.name.as_str(),
                t.error_code,
                t.error_message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn delete(conn: &mut Connection, topics: &[String]) -> anyhow::Result<()> {
    let del = DeleteTopicsRequest::default()
        .with_topic_names(topics.iter().map(|t| name(t)).collect())
        .with_timeout_ms(60_000);
    let _: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, DELETE_V, &del).await?;
    Ok(())
}

fn fetch_request(
    topic: &str,
    partitions: impl IntoIterator<Item = (i32, i64)>,
    max_wait_ms: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        // Sessionless (KIP-227's final epoch): full requests only.
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(
                partitions
                    .into_iter()
                    .map(|(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}

/// The offset after the last whole batch of `records`, if any.
fn next_offset(records: &Bytes) -> Option<i64> {
    let (batches, _) = portcullis::log::batch::whole_batches(records);
    batches.last().map(|(_, h)| h.last_offset() + 1)
}

/// One batch of `n` records of `RECORD_BYTES`.
fn batch(n: usize) -> anyhow::Result<Bytes> {
    let value = Bytes::from(super::kafka::payload(RECORD_BYTES));
    Ok(portcullis::log::internal::encode_batch(
        (0..n).map(|_| (None, Some(value.clone()))).collect(),
    )?
    .freeze())
}

/// An idle consumer: long-polls `partition` of the idle topic until
/// aborted, counting itself in `ready` once its first poll is sent.
async fn idle_waiter(addr: String, partition: i32, ready: Arc<AtomicUsize>) -> anyhow::Result<()> {
    let mut conn = connect(&addr).await?;
    let req = fetch_request(IDLE_TOPIC, [(partition, 0)], LONG_POLL_MS);
    let mut first = true;
    loop {
        let corr = conn.take_correlation_id();
        let mut frame = portcullis::client::encode_request(
            ApiKey::Fetch,
            FETCH_V,
            corr,
            "portcullis-bench-scale",
            &req,
        )?;
        conn.send(&mut frame).await?;
        if std::mem::take(&mut first) {
            ready.fetch_add(1, Ordering::Release);
        }
        conn.read_frame().await?;
    }
}

/// The consumer of the live partition: long-polls from where it is,
/// adding what it reads to `bytes`, until `stop`.
async fn live_consumer(
    addr: String,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut conn = connect(&addr).await?;
    let mut offset = 0;
    while !stop.load(Ordering::Acquire) {
        let req = fetch_request(LIVE_TOPIC, [(0, offset)], 500);
        let r: FetchResponse = conn.call(ApiKey::Fetch, FETCH_V, &req).await?;
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            if p.error_code != 0 {
                bail!("live consumer: fetch error {}", p.error_code);
            }
            if let Some(rec) = &p.records {
                bytes.fetch_add(rec.len() as u64, Ordering::Relaxed);
                if let Some(next) = next_offset(rec) {
                    offset = next;
                }
            }
        }
    }
    Ok(())
}

/// Writes one record to the live partition `WRITES_PER_SEC` times a
/// second for `WINDOW`; returns (appends, bytes sent).
async fn write_window(conn: &mut Connection, record: &Bytes) -> anyhow::Result<(u64, u64)> {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(LIVE_TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record.clone()))])]);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / WRITES_PER_SEC));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = Instant::now() + WINDOW;
    let mut n = 0;
    while Instant::now() < end {
        tick.tick().await;
        let r: ProduceResponse = conn.call(ApiKey::Produce, PRODUCE_V, &req).await?;
        if let Some(code) = r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .map(|p| p.error_code)
            .find(|c| *c != 0)
        {
            bail!("produce to {LIVE_TOPIC}: error {code}");
        }
        n += 1;
    }
    Ok((n, n * record.len() as u64))
}

async fn idle_long_polls(addr: &str, pid: Option<u32>) -> anyhow::Result<()> {
    let mut admin = connect(addr).await?;
    recreate(&mut admin, &[IDLE_TOPIC.to_string()], IDLE_PARTITIONS).await?;
    recreate(&mut admin, &[LIVE_TOPIC.to_string()], 1).await?;
    println!(
        "\n== scale: idle long polls ({IDLE_PARTITIONS} + 1 partitions; one connection per consumer, portcullis::client; {WRITES_PER_SEC} appends/s of one {RECORD_BYTES} B record to {LIVE_TOPIC}, followed by one consumer)"
    );
    let record = batch(1)?;
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let live = tokio::spawn(live_consumer(
        addr.to_string(),
        consumed.clone(),
        stop.clone(),
    ));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    let mut writer = connect(addr).await?;
    let result = async {
        for n in WAITER_COUNTS {
            while waiters.len() < n {
                let p = waiters.len() as i32;
                waiters.push(tokio::spawn(idle_waiter(
                    addr.to_string(),
                    p,
                    ready.clone(),
                )));
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while ready.load(Ordering::Acquire) < n {
                if Instant::now() > deadline {
                    bail!(
                        "only {} of {n} long polls started",
                        ready.load(Ordering::Acquire)
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the broker take in the polls just sent before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let r0 = consumed.load(Ordering::Relaxed);
            let meter = Meter::start(pid);
            let (appends, bytes) = write_window(&mut writer, &record).await?;
            let split = meter.stop();
            let wall = split.wall;
            let read = consumed.load(Ordering::Relaxed) - r0;
            let mb = bytes as f64 / 1e6;
            println!(
                "{n:5} idle long polls: {:.0} appends/s ({:.2} MB/s), consumer read {:.2} MB; {}",
                appends as f64 / wall,
                mb / wall,
                read as f64 / 1e6,
                cpu_line(&split, mb)
            );
        }
        anyhow::Ok(())
    }
    .await;
    stop.store(true, Ordering::Release);
    for w in &waiters {
        w.abort();
    }
    let _ = live.await;
    // The broker answers the aborted polls when they time out; deleting
    // the topics releases them now.
    delete(
        &mut admin,
        &[IDLE_TOPIC.to_string(), LIVE_TOPIC.to_string()],
    )
    .await?;
    result
}

/// Produces one batch of `WIDE_RECORDS` to each of `parts`, in requests
/// of `WIDE_PER_REQUEST` partitions; returns the bytes sent.
async fn produce_all(addr: String, parts: Vec<(String, i32)>, batch: Bytes) -> anyhow::Result<u64> {
    let mut conn = connect(&addr).await?;
    let mut sent = 0;
    for chunk in parts.chunks(WIDE_PER_REQUEST) {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for (t, p) in chunk {
            if topics.last().is_none_or(|x| x.name.as_str() != t.as_str()) {
                topics.push(TopicProduceData::default().with_name(name(t)));
            }
            if let Some(last) = topics.last_mut() {
                last.partition_data.push(
                    PartitionProduceData::default()
                        .with_index(*p)
                        .with_records(Some(batch.clone())),
                );
            }
            sent += batch.len() as u64;
        }
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(60_000)
            .with_topic_data(topics);
        let r: ProduceResponse = conn.call(ApiKey::Produce, PRODUCE_V, &req).await?;
        if let Some(code) = r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .map(|p| p.error_code)
            .find(|c| *c != 0)
        {
            bail!("produce across partitions: error {code}");
        }
    }
    Ok(sent)
}

/// Reads every partition of `parts` from offset 0 to `end`, in Fetch
/// requests of `WIDE_PER_REQUEST` partitions; returns the bytes read.
async fn consume_all(addr: String, parts: Vec<(String, i32)>, end: i64) -> anyhow::Result<u64> {
    let mut conn = connect(&addr).await?;
    let mut read = 0;
    for chunk in parts.chunks(WIDE_PER_REQUEST) {
        let mut offsets: Vec<i64> = vec![0; chunk.len()];
        while offsets.iter().any(|o| *o < end) {
            let mut topics: Vec<FetchTopic> = Vec::new();
            for ((t, p), off) in chunk.iter().zip(&offsets) {
                if topics.last().is_none_or(|x| x.topic.as_str() != t.as_str()) {
                    topics.push(FetchTopic::default().with_topic(name(t)));
                }
                if let Some(last) = topics.last_mut() {
                    last.partitions.push(
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*off)
                            .with_partition_max_bytes(1 << 20),
                    );
                }
            }
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(64 << 20)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(topics);
            let r: FetchResponse = conn.call(ApiKey::Fetch, FETCH_V, &req).await?;
            // Answers come in request order: topics, then partitions.
            let answered = r.responses.iter().flat_map(|t| &t.partitions);
            for (pd, off) in answered.zip(offsets.iter_mut()) {
                if pd.error_code != 0 {
                    bail!("fetch across partitions: error {}", pd.error_code);
                }
                if let Some(rec) = &pd.records {
                    read += rec.len() as u64;
                    if let Some(next) = next_offset(rec) {
                        *off = next;
                    }
                }
            }
        }
    }
    Ok(read)
}

async fn many_partitions(addr: &str, pid: Option<u32>) -> anyhow::Result<()> {
    let total = WIDE_TOPICS as i32 * WIDE_PER_TOPIC;
    println!(
        "\n== scale: {total} partitions ({WIDE_TOPICS} topics x {WIDE_PER_TOPIC}; portcullis::client, {WIDE_CONNECTIONS} connections, {WIDE_PER_REQUEST} partitions per request)"
    );
    let topics: Vec<String> = (0..WIDE_TOPICS)
        .map(|i| format!("scale-wide-{i}"))
        .collect();
    let mut admin = connect(addr).await?;
    let meter = Meter::start(pid);
    recreate(&mut admin, &topics, WIDE_PER_TOPIC).await?;
    let split = meter.stop();
    println!(
        "create: {:.2} s, broker {:.2} s CPU",
        split.wall,
        split.broker.unwrap_or(0.0)
    );

    let req = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect(),
    ));
    let mut took = Vec::with_capacity(METADATA_CALLS);
    let (meter, mut seen, mut size) = (Meter::start(pid), 0, 0);
    for _ in 0..METADATA_CALLS {
        let t = Instant::now();
        let corr = admin.take_correlation_id();
        let mut frame = portcullis::client::encode_request(
            ApiKey::Metadata,
            METADATA_V,
            corr,
            "portcullis-bench-scale",
            &req,
        )?;
        admin.send(&mut frame).await?;
        let frame = admin.read_frame().await?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        size = frame.len();
        let mut b = frame.freeze().slice(4..);
        ResponseHeader::decode(&mut b, ApiKey::Metadata.response_header_version(METADATA_V))?;
        let m = MetadataResponse::decode(&mut b, METADATA_V)?;
        seen = m.topics.iter().map(|t| t.partitions.len()).sum::<usize>();
    }
    let cpu = meter.stop().broker.unwrap_or(0.0);
    took.sort_by(f64::total_cmp);
    if seen != total as usize {
        bail!("Metadata named {seen} partitions, {total} expected");
    }
    println!(
        "Metadata for all {total} partitions ({:.0} KiB answer): p50 {:.1} ms  max {:.1} ms; broker {:.1} ms CPU per request",
        size as f64 / 1024.0,
        took[took.len() / 2],
        took[took.len() - 1],
        cpu * 1000.0 / METADATA_CALLS as f64
    );

    let all: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| (0..WIDE_PER_TOPIC).map(move |p| (t.clone(), p)))
        .collect();
    let batch = batch(WIDE_RECORDS)?;
    let (bytes, split) = CpuSplit::measure(
        pid,
        across(&all, |c| produce_all(addr.to_string(), c, batch.clone())),
    )
    .await;
    print_rate(
        &format!("produce one {WIDE_RECORDS}-record batch to each partition (acks=1)"),
        bytes.context("producer task")?,
        &split,
    );
    let (bytes, split) = CpuSplit::measure(
        pid,
        across(&all, |c| {
            consume_all(addr.to_string(), c, WIDE_RECORDS as i64)
        }),
    )
    .await;
    print_rate(
        "consume every partition from offset 0",
        bytes.context("consumer task")?,
        &split,
    );
    delete(&mut admin, &topics).await?;
    Ok(())
}

/// Runs `task` on `WIDE_CONNECTIONS` shares of `all` at once; the bytes
/// they moved.
async fn across<F, Fut>(all: &[(String, i32)], task: F) -> anyhow::Result<u64>
where
    F: Fn(Vec<(String, i32)>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let share = all.len().div_ceil(WIDE_CONNECTIONS);
    let tasks: Vec<_> = all
        .chunks(share)
        .map(|c| tokio::spawn(task(c.to_vec())))
        .collect();
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await??;
    }
    Ok(bytes)
}

fn print_rate(what: &str, bytes: u64, split: &CpuSplit) {
    let (mb, wall) = (bytes as f64 / 1e6, split.wall);
    println!(
        "{what}: {:.1} MB in {:.2} s = {:.1} MB/s; {}",
        mb,
        wall,
        mb / wall,
        cpu_line(split, mb)
    );
}

/// Both figures against the broker's PLAINTEXT listener at `addr`.
pub async fn run(addr: &str, pid: Option<u32>) -> anyhow::Result<()> {
    idle_long_polls(addr, pid).await?;
    many_partitions(addr, pid).await
}
