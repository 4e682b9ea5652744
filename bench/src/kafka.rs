//! Produce and consume throughput and produce latency at a fixed rate,
//! measured with librdkafka against a running broker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::delivery::{send_at_rate, send_blocking, LatencyContext, Pace};
use super::BenchArgs;

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
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    c
}

pub fn payload(size: usize) -> Vec<u8> {
    // Mildly compressible, like real payloads, but not trivially so.
    (0..size).map(|i| (i * 31 % 97) as u8).collect()
}

/// (MB/s, records/s) for `args.records` records.
pub fn produce_throughput(
    args: &BenchArgs,
    base: &ClientConfig,
    topic: &str,
    acks: &str,
) -> anyhow::Result<(f64, f64)> {
    let p: BaseProducer = producer_config(args, base, acks, args.linger_ms as f64).create()?;
    let value = payload(args.record_size);
    let start = Instant::now();
    for i in 0..args.records {
        let key = (i as u64).to_be_bytes();
        send_blocking(&p, BaseRecord::to(topic).key(&key[..]).payload(&value[..]))?;
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(300))?;
    let secs = start.elapsed().as_secs_f64();
    let mb = (args.records * args.record_size) as f64 / 1e6;
    Ok((mb / secs, args.records as f64 / secs))
}

pub fn consume_throughput(
    args: &BenchArgs,
    base: &ClientConfig,
    topic: &str,
    records: usize,
) -> anyhow::Result<(f64, f64)> {
    let c: BaseConsumer = base
        .clone()
        .set("group.id", "portcullis-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "1048576")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0usize, 0usize);
    let deadline = start + Duration::from_secs(300);
    while n < records {
        if Instant::now() > deadline {
            bail!("consumed only {n} of {records} records");
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.context("consume error")?;
            bytes += m.payload_len();
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((bytes as f64 / 1e6 / secs, n as f64 / secs))
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
    p.flush(Duration::from_secs(60))?;
    let secs = start.elapsed().as_secs_f64();
    let (hist, errors) = p.context().take();
    Ok((
        hist,
        errors,
        sent as f64 * args.record_size as f64 / 1e6 / secs,
    ))
}

pub async fn create_topic(base: &ClientConfig, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base.create()?;
    let res = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for r in res {
        match r {
            // A --data-dir from an earlier run already has it.
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("create topic {t}: {e}"),
        }
    }
    Ok(())
}
