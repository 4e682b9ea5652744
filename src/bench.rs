//! `portcullis bench`: produce/consume throughput and produce latency,
//! measured with librdkafka. Without `--bootstrap` it starts a broker of its
//! own on a scratch directory, so one command measures everything.
//!
//! Figures are printed, never asserted: timing belongs here, not in tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{Config, ListenerConfig, LogConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Broker under test; without it a fresh broker is started in-process.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Data directory for the in-process broker (default: a temp dir).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records for the throughput runs.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// acks for the producer: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Producer compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Producer batch size in bytes (librdkafka batch.size).
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    /// linger.ms for the throughput run.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Target rate for the latency run, in MB/s.
    #[arg(long, default_value_t = 10.0)]
    pub latency_rate_mb: f64,
    /// Duration of the latency run in seconds.
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
}

struct LatencyContext {
    hist: Mutex<Histogram<u64>>,
    errors: Mutex<u64>,
}

impl ClientContext for LatencyContext {}
impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        match r {
            Ok(_) => {
                let us = sent.elapsed().as_micros() as u64;
                if let Ok(mut h) = self.hist.lock() {
                    let _ = h.record(us.max(1));
                }
            }
            Err(_) => {
                if let Ok(mut e) = self.errors.lock() {
                    *e += 1;
                }
            }
        }
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn producer_config(args: &BenchArgs, bootstrap: &str, linger_ms: u64) -> ClientConfig {
    let mut c = client_config(bootstrap);
    c.set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    c
}

/// Sends, retrying while the local queue is full.
fn send_blocking<C: ProducerContext>(
    p: &BaseProducer<C>,
    mut rec: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> anyhow::Result<()> {
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
}

fn payload(size: usize) -> Vec<u8> {
    // Mildly compressible, like real payloads, but not trivially so.
    (0..size).map(|i| (i * 31 % 97) as u8).collect()
}

fn produce_throughput(
    args: &BenchArgs,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<(f64, f64)> {
    let p: BaseProducer = producer_config(args, bootstrap, args.linger_ms).create()?;
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

fn consume_throughput(
    args: &BenchArgs,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<(f64, f64)> {
    let c: BaseConsumer = client_config(bootstrap)
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
    while n < args.records {
        if Instant::now() > deadline {
            bail!("consumed only {n} of {} records", args.records);
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

fn produce_latency(
    args: &BenchArgs,
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<(Histogram<u64>, u64, f64)> {
    let ctx = LatencyContext {
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        errors: Mutex::new(0),
    };
    let p: BaseProducer<LatencyContext> =
        producer_config(args, bootstrap, 0).create_with_context(ctx)?;
    let value = payload(args.record_size);
    let per_sec = (args.latency_rate_mb * 1e6 / args.record_size as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / per_sec);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.latency_secs);
    let mut sent = 0u64;
    while Instant::now() < end {
        // Open-loop pacing: send what the schedule says is due.
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        while sent < due {
            send_blocking(
                &p,
                BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).payload(&value[..]),
            )?;
            sent += 1;
        }
        p.poll(interval.min(Duration::from_millis(1)));
    }
    p.flush(Duration::from_secs(60))?;
    let secs = start.elapsed().as_secs_f64();
    let ctx = p.context();
    let hist = ctx
        .hist
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let errors = *ctx.errors.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok((
        hist,
        errors,
        sent as f64 * args.record_size as f64 / 1e6 / secs,
    ))
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let res = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for r in res {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut _scratch = None;
    let mut _running = None;
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => {
            let dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => {
                    let t = tempdir()?;
                    let p = t.clone();
                    _scratch = Some(TempDirGuard(t));
                    p
                }
            };
            let config = Config {
                node_id: 0,
                data_dir: dir,
                listeners: ListenerConfig::parse_list("PLAINTEXT://127.0.0.1:0")?,
                max_request_size: 100 * 1024 * 1024,
                log: LogConfig::default(),
                tls: None,
                certs: Default::default(),
                sasl: Default::default(),
                acl: Default::default(),
                groups: Default::default(),
                audit: crate::audit::AuditConfig {
                    enabled: false,
                    ..Default::default()
                },
                // The bench measures the data path; ACLs have their own bench.
                super_users: vec!["User:ANONYMOUS".into()],
            };
            let running = crate::broker::start(config).await?;
            let l = &running.listeners[0];
            let b = format!("{}:{}", l.advertised_host, l.advertised_port);
            _running = Some(running);
            b
        }
    };
    let topic = format!("bench-{}", std::process::id());
    create_topic(&bootstrap, &topic, args.partitions).await?;
    let lat_topic = format!("{topic}-latency");
    create_topic(&bootstrap, &lat_topic, args.partitions).await?;

    println!(
        "portcullis bench: {} records x {} B, acks={}, compression={}, partitions={}, broker {}",
        args.records, args.record_size, args.acks, args.compression, args.partitions, bootstrap
    );
    let a = Arc::new(args.clone());
    let (b2, t2) = (bootstrap.clone(), topic.clone());
    let a2 = a.clone();
    let (mbps, rps) =
        tokio::task::spawn_blocking(move || produce_throughput(&a2, &b2, &t2)).await??;
    println!("produce:  {mbps:10.1} MB/s  {rps:12.0} records/s");
    let (b2, t2, a2) = (bootstrap.clone(), topic.clone(), a.clone());
    let (mbps, rps) =
        tokio::task::spawn_blocking(move || consume_throughput(&a2, &b2, &t2)).await??;
    println!("consume:  {mbps:10.1} MB/s  {rps:12.0} records/s");
    let (b2, a2) = (bootstrap.clone(), a.clone());
    let (hist, errors, achieved) =
        tokio::task::spawn_blocking(move || produce_latency(&a2, &b2, &lat_topic)).await??;
    println!(
        "latency at {:.1} MB/s (achieved {achieved:.1} MB/s, acks={}): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  ({} acked, {errors} failed)",
        args.latency_rate_mb,
        args.acks,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    if let Some(r) = _running {
        r.shutdown().await;
    }
    Ok(())
}

/// Removes the bench's scratch directory when the run ends.
struct TempDirGuard(std::path::PathBuf);
impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let p = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
