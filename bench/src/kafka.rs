//! Produce and consume throughput and produce latency at a fixed rate,
//! measured with librdkafka against a running broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::cpu::{CpuSplit, Meter};
use super::delivery::{flush, send_at_rate, send_blocking, LatencyContext, Pace};
use super::BenchArgs;

/// The producer of every run. librdkafka's defaults otherwise, as a plain
/// client has them: its queue limits (100,000 messages, 1 GiB) already hold
/// far more than the batches in flight, and a larger queue only spreads
/// the copies of the records over more memory.
fn producer_config(
    args: &BenchArgs,
    base: &ClientConfig,
    acks: &str,
    linger_ms: f64,
) -> ClientConfig {
    let mut c = base.clone();
    c.set("acks", acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("message.timeout.ms", "120000");
    c
}

pub fn payload(size: usize) -> Vec<u8> {
    // Mildly compressible, like real payloads, but not trivially so.
    (0..size).map(|i| (i * 31 % 97) as u8).collect()
}

/// A throughput run: its rate and who spent the CPU over the measured
/// window (which starts after the client connected and learned the
/// topic's leaders, so fixed setup does not weigh on a short run).
pub struct Measured {
    pub mb_s: f64,
    pub records_s: f64,
    pub mb: f64,
    pub cpu: CpuSplit,
}

impl Measured {
    fn new(bytes: usize, records: usize, cpu: CpuSplit) -> Measured {
        let mb = bytes as f64 / 1e6;
        let secs = cpu.wall.max(1e-9);
        Measured {
            mb_s: mb / secs,
            records_s: records as f64 / secs,
            mb,
            cpu,
        }
    }
}

/// `args.records` records without keys (librdkafka then spreads them over
/// the partitions by its sticky partitioner, batch by batch, as a plain
/// client does), delivery reports only for failures: a report per record
/// is a callback per record into this process.
pub fn produce_throughput(
    args: &BenchArgs,
    base: &ClientConfig,
    topic: &str,
    acks: &str,
    broker_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let p: BaseProducer<ErrorCounter> = producer_config(args, base, acks, args.linger_ms as f64)
        .set("delivery.report.only.error", "true")
        .create_with_context(ErrorCounter::default())?;
    // Connect and learn the leaders before the clock starts.
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .context("metadata of the benchmark topic")?;
    let value = payload(args.record_size);
    let meter = Meter::start(broker_pid);
    for i in 0..args.records {
        send_blocking(&p, BaseRecord::to(topic).payload(&value[..]))?;
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    flush(&p, Duration::from_secs(300))?;
    let cpu = meter.stop();
    let failed = p.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {} records were not delivered", args.records);
    }
    Ok(Measured::new(
        args.records * args.record_size,
        args.records,
        cpu,
    ))
}

/// Counts failed deliveries (the only reports a throughput producer asks
/// for).
#[derive(Default)]
pub struct ErrorCounter {
    failed: AtomicU64,
}

impl ClientContext for ErrorCounter {}
impl ProducerContext for ErrorCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Consumes `records` records from the beginning of `topic`'s partitions
/// with librdkafka's default fetch and queue settings (a plain
/// `BaseConsumer`). The clock starts at the first record: assignment,
/// ListOffsets and the first fetch's round trip are setup, not throughput.
pub fn consume_throughput(
    args: &BenchArgs,
    base: &ClientConfig,
    topic: &str,
    records: usize,
    broker_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let c: BaseConsumer = base
        .clone()
        .set("group.id", "portcullis-bench")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut n, mut bytes) = (0usize, 0usize);
    let mut meter = None;
    while n < records {
        if Instant::now() > deadline {
            bail!("consumed only {n} of {records} records");
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.context("consume error")?;
            if meter.is_none() {
                // The first record is setup's; the rate counts the rest.
                meter = Some(Meter::start(broker_pid));
                n += 1;
                continue;
            }
            bytes += m.payload_len();
            n += 1;
        }
    }
    let cpu = meter.context("no record consumed")?.stop();
    Ok(Measured::new(bytes, records.saturating_sub(1), cpu))
}

/// Ack latency at a fixed rate (open loop). Returns the histogram in
/// microseconds, failures, and the rate achieved in MB/s.
pub fn produce_latency(
    args: &BenchArgs,
    base: &ClientConfig,
    topic: &str,
) -> anyhow::Result<(Histogram<u64>, u64, f64)> {
    let p: BaseProducer<LatencyContext> = producer_config(args, base, "1", args.latency_linger_ms)
        .create_with_context(LatencyContext::new()?)?;
    // Connecting is not a produce's latency.
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .context("metadata of the latency topic")?;
    let value = payload(args.record_size);
    let per_sec = (args.latency_rate_mb * 1e6 / args.record_size as f64).max(1.0);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.latency_secs);
    let pace = Pace {
        rate: per_sec,
        end,
        poll: Duration::from_micros(200),
    };
    let sent = send_at_rate(&p, topic, None, &value, pace, || false)?;
    flush(&p, Duration::from_secs(60))?;
    let secs = start.elapsed().as_secs_f64();
    let (hist, errors) = p.context().take();
    Ok((
        hist,
        errors,
        sent as f64 * args.record_size as f64 / 1e6 / secs,
    ))
}

/// Creates `name` (`configs`: topic configs, e.g. Kafka's `flush.messages`).
pub async fn create_topic(
    base: &ClientConfig,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let res = admin.create_topics(&[topic], &AdminOptions::new()).await?;
    for r in res {
        match r {
            // A --data-dir from an earlier run already has it.
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("create topic {t}: {e}"),
        }
    }
    Ok(())
}
