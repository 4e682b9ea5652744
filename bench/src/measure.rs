//! The figures of one broker, whichever it is (Portcullis, Apache Kafka,
//! a Portcullis gateway in front of Kafka): the same clients, records and
//! settings against its listeners. Each figure is printed as it comes (with
//! who spent the CPU) and kept for the side-by-side table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rdkafka::config::ClientConfig;

use super::cpu::CpuSplit;
use super::report::{ListenerFigures, Percentiles, Rate};
use super::{connections, kafka, perf_tools, probe, BenchArgs};

/// Reads of the produced topic per consume figure (the median counts).
const CONSUME_READS: usize = 3;

/// A broker under test: its listeners, process and credentials.
pub struct Endpoint {
    /// "Portcullis", "Kafka", "gateway": heads every printed section.
    pub name: String,
    pub plaintext: Option<String>,
    pub secure: Option<String>,
    pub pid: Option<u32>,
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
}

impl Endpoint {
    pub fn client(&self, addr: &str, secure: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", addr);
        if secure {
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", &self.user)
                .set("sasl.password", &self.password)
                .set("ssl.ca.location", self.ca.display().to_string());
        }
        c
    }

    pub fn scram_target(&self, addr: &str) -> anyhow::Result<connections::Target> {
        Ok(connections::Target {
            addr: addr.to_string(),
            connector: portcullis::client::Connector::tls(portcullis::client::tls_connector(
                &self.ca, None,
            )?)
            .with_client_id("portcullis-bench"),
            user: self.user.clone(),
            password: self.password.clone(),
        })
    }
}

/// What the figures are printed against: the machine's ceilings.
#[derive(Clone, Copy, Default)]
pub struct Ceilings {
    pub tls: f64,
    pub group_commit: f64,
}

/// Which figures of a listener to take.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything; `kafka` adds the acks=all run on a `flush.messages=1`
    /// topic (fsync before the ack, Portcullis's acks=all).
    Full { kafka: bool },
    /// Gateway mode: produce acks=1, consume and the two latencies (and
    /// the perf tools, when given).
    Gateway,
}

/// Kafka's tools, when the jars are at hand.
pub struct Tools<'a> {
    pub jars: &'a Path,
    pub dir: &'a Path,
}

fn ratio(v: f64, ceiling: f64) -> String {
    if ceiling > 0.0 {
        format!("{:.2}x", v / ceiling)
    } else {
        "-".into()
    }
}

fn rate_of(m: &kafka::Measured) -> Rate {
    Rate {
        mb_s: m.mb_s,
        broker_ms: m.cpu.broker_ms_per_mb(m.mb),
        client_ms: m.cpu.client_ms_per_mb(m.mb),
        client_thread: m.cpu.busiest_thread_cores(),
    }
}

/// Writes every dirty page of the page cache back to disk.
fn sync_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Produce (acks=1, acks=all), consume, fixed-rate latency (librdkafka and
/// the minimal client) and Kafka's perf tools over one listener.
pub async fn listener(
    args: &BenchArgs,
    ep: &Endpoint,
    secure: bool,
    scope: Scope,
    ceilings: Ceilings,
    tools: Option<&Tools<'_>>,
) -> anyhow::Result<ListenerFigures> {
    let mut f = ListenerFigures::default();
    let Some(addr) = (if secure { &ep.secure } else { &ep.plaintext }).clone() else {
        println!("\n== {}: skipped (no listener given)", ep.name);
        return Ok(f);
    };
    let pid = ep.pid;
    let base = ep.client(&addr, secure);
    let (label, proto) = if secure {
        ("SASL_SSL + SCRAM-SHA-512", "secure")
    } else {
        ("PLAINTEXT", "plaintext")
    };
    println!("\n== {}, {label}", ep.name);
    let topic = |what: &str| bench_topic(ep, proto, what);
    let (t1, t_all, t_lat) = (topic("acks1"), topic("acksall"), topic("latency"));
    for t in [&t1, &t_lat] {
        kafka::create_topic(&base, t, args.partitions, &[]).await?;
    }
    if args.warmup_records > 0 {
        let t = topic("warmup");
        kafka::create_topic(&base, &t, args.partitions, &[]).await?;
        let mut warm = args.clone();
        warm.records = args.warmup_records;
        let (b, t2) = (base.clone(), t.clone());
        let w = warm.clone();
        tokio::task::spawn_blocking(move || kafka::produce_throughput(&w, &b, &t2, "1", None))
            .await??;
        let b = base.clone();
        let m = tokio::task::spawn_blocking(move || {
            kafka::consume_throughput(&warm, &b, &t, warm.records, None)
        })
        .await??;
        println!(
            "warm-up (not measured): {} records produced and consumed ({:.0} MB/s consumed)",
            args.warmup_records, m.mb_s
        );
    }
    let produce = |acks: &'static str, topic: String| {
        let (a, b) = (args.clone(), base.clone());
        tokio::task::spawn_blocking(move || kafka::produce_throughput(&a, &b, &topic, acks, pid))
    };
    let m = produce("1", t1.clone()).await??;
    println!("produce acks=1:    {:9.1} MB/s {:11.0} rec/s   ratio to TLS ceiling {}   (target >= 0.6x over TLS)   {}", m.mb_s, m.records_s, ratio(m.mb_s, ceilings.tls), m.cpu.line_per_mb(m.mb_s));
    f.produce_acks1 = Some(rate_of(&m));
    if let Scope::Full { kafka: is_kafka } = scope {
        kafka::create_topic(&base, &t_all, args.partitions, &[]).await?;
        let m = produce("all", t_all.clone()).await??;
        println!("produce acks=all:  {:9.1} MB/s {:11.0} rec/s   ratio to group-commit ceiling {}   (target >= 0.75x)   {}", m.mb_s, m.records_s, ratio(m.mb_s, ceilings.group_commit), m.cpu.line_per_mb(m.mb_s));
        f.produce_acks_all = Some(rate_of(&m));
        if is_kafka {
            // Kafka acks a replication factor of 1 from the page cache;
            // Portcullis fsyncs before an acks=all ack. flush.messages=1
            // makes Kafka flush after every append: the same durability.
            let t = topic("acksall-fsync");
            kafka::create_topic(&base, &t, args.partitions, &[("flush.messages", "1")]).await?;
            let m = produce("all", t).await??;
            println!("produce acks=all, flush.messages=1 (fsync per append): {:9.1} MB/s {:11.0} rec/s   ratio to group-commit ceiling {}   {}", m.mb_s, m.records_s, ratio(m.mb_s, ceilings.group_commit), m.cpu.line_per_mb(m.mb_s));
            f.produce_acks_all_fsync = Some(rate_of(&m));
        }
    }
    // One read of the topic lasts well under a second at these rates, so
    // its rate swings with whatever else the machine did meanwhile: the
    // topic is read CONSUME_READS times, each by a new consumer from the
    // start, and the median read counts (for every broker alike).
    let mut reads = Vec::with_capacity(CONSUME_READS);
    for _ in 0..CONSUME_READS {
        let (a, b, t, n) = (args.clone(), base.clone(), t1.clone(), args.records);
        reads.push(
            tokio::task::spawn_blocking(move || kafka::consume_throughput(&a, &b, &t, n, pid))
                .await??,
        );
    }
    reads.sort_by(|x, y| x.mb_s.total_cmp(&y.mb_s));
    let all: Vec<String> = reads.iter().map(|r| format!("{:.0}", r.mb_s)).collect();
    let m = reads.swap_remove(reads.len() / 2);
    println!("consume:           {:9.1} MB/s {:11.0} rec/s   ratio to TLS ceiling {}   (target >= 0.7x over TLS)   median of {} reads ({} MB/s)   {}", m.mb_s, m.records_s, ratio(m.mb_s, ceilings.tls), CONSUME_READS, all.join(", "), m.cpu.line_per_mb(m.mb_s));
    f.consume = Some(rate_of(&m));

    // The throughput runs leave gigabytes of dirty log pages; the kernel's
    // writeback of them would land in the latency runs.
    tokio::task::spawn_blocking(sync_page_cache).await?;
    let (a, b, t) = (args.clone(), base.clone(), t_lat.clone());
    let (lat, cpu) = CpuSplit::measure(
        pid,
        tokio::task::spawn_blocking(move || kafka::produce_latency(&a, &b, &t)),
    )
    .await;
    let (h, errs, achieved) = lat??;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency at {:.0} MB/s (achieved {achieved:.1}) acks=1 linger.ms {}: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  ({} acked, {errs} failed)   (target p99 <= 2 ms, p99.9 <= 5 ms)   {}",
        args.latency_rate_mb,
        args.latency_linger_ms,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.len(),
        cpu.line()
    );
    f.latency = Some(Percentiles {
        p50: ms(0.5),
        p99: ms(0.99),
        p999: ms(0.999),
        mb_s: achieved,
        failed: errs,
    });
    let probe = probe_at(args, ep, &addr, secure, &t_lat, args.latency_rate_mb);
    let (res, cpu) = CpuSplit::measure(pid, probe).await;
    let r = res?;
    let ms = |q: f64| r.latency_us.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency, minimal client (what the broker adds): 1 request/ms at {:.1} MB/s: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  ({} requests, {} failed{})   {}",
        r.mb_per_s,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        r.latency_us.len(),
        r.errors,
        r.first_error
            .map(|e| format!(", first error code {e}"))
            .unwrap_or_default(),
        cpu.line()
    );
    f.latency_probe = Some(percentiles(&r));

    if let Some(tools) = tools {
        let target = perf_tools::ToolTarget {
            jars: tools.jars,
            dir: tools.dir,
            bootstrap: &addr,
            scram: secure.then_some((ep.user.as_str(), ep.password.as_str(), ep.ca.as_path())),
            broker_pid: pid,
        };
        let t = topic("perf");
        kafka::create_topic(&base, &t, args.partitions, &[]).await?;
        let run = tokio::task::block_in_place(|| {
            perf_tools::produce(
                &target,
                &t,
                args.records,
                args.record_size,
                "1",
                args.linger_ms,
                args.batch_bytes,
                &args.compression,
            )
        })
        .context("kafka-producer-perf-test")?;
        let tool_rate = |r: &perf_tools::ToolRun| Rate {
            mb_s: r.mb_s,
            broker_ms: r.broker_cpu.map(|b| b * 1000.0 / r.mb.max(1e-9)),
            client_ms: r.tool_cpu * 1000.0 / r.mb.max(1e-9),
            client_thread: None,
        };
        let rr = tool_rate(&run);
        println!(
            "kafka-producer-perf-test acks=1: {:9.1} MB/s {:11.0} rec/s   broker {} ms CPU per MB, tool {:.2} ms CPU per MB (JVM start and JIT included); {}",
            run.mb_s,
            run.records_s,
            rr.broker_ms.map(|b| format!("{b:.2}")).unwrap_or("?".into()),
            rr.client_ms,
            run.latency.as_deref().unwrap_or("")
        );
        f.perf_produce = Some(rr);
        let group = format!("perf-{}-{proto}-{}", tag_of(ep), std::process::id());
        let run = tokio::task::block_in_place(|| {
            perf_tools::consume(&target, &t, args.records, args.record_size, &group)
        })
        .context("kafka-consumer-perf-test")?;
        let rr = tool_rate(&run);
        println!(
            "kafka-consumer-perf-test:        {:9.1} MB/s {:11.0} rec/s   broker {} ms CPU per MB (whole run), tool {:.2} ms CPU per MB (JVM start and JIT included)",
            run.mb_s,
            run.records_s,
            rr.broker_ms.map(|b| format!("{b:.2}")).unwrap_or("?".into()),
            rr.client_ms
        );
        f.perf_consume = Some(rr);
    }
    Ok(f)
}

/// Full connects per second, and (with the broker's pid) its RSS per idle
/// authenticated connection; `heap` gives a JVM's live heap in KiB.
pub async fn connections(
    args: &BenchArgs,
    ep: &Endpoint,
    heap: Option<&(dyn Fn() -> Option<u64> + Sync)>,
) -> anyhow::Result<(Option<(f64, Option<f64>)>, Option<(f64, Option<f64>)>)> {
    let Some(secure) = ep.secure.as_deref() else {
        return Ok((None, None));
    };
    let pid = ep.pid;
    let target = Arc::new(ep.scram_target(secure)?);
    println!(
        "\n== {}, connections (TCP + TLS 1.3 + SCRAM-SHA-512)",
        ep.name
    );
    // Warm-up, not measured: a JVM compiles its handshake paths first.
    connections::connects_per_second(target.clone(), 32, args.connect_secs / 2.0).await?;
    let (connected, cpu) = CpuSplit::measure(
        pid,
        connections::connects_per_second(target.clone(), 32, args.connect_secs),
    )
    .await;
    let (rate, failed) = connected?;
    // The clients' TLS handshakes and SCRAM run on the same two cores:
    // what one broker core serves is the broker's own cost per connect.
    let each_us = cpu.broker.map(|b| b / (rate * cpu.wall).max(1.0) * 1e6);
    let per_connect = each_us
        .map(|us| {
            format!(
                "; broker {us:.0} us CPU per connect = {:.0} connects/s per broker core",
                1e6 / us.max(1e-3)
            )
        })
        .unwrap_or_default();
    println!(
        "full connects: {rate:9.0} /s ({failed} failed)   (target >= 3000/s)   {}{per_connect}; {}",
        cpu.line(),
        cpu.client_bound(rate * cpu.wall, "connects/s", "connect"),
    );
    let Some(pid) = pid else {
        println!("idle connection memory: skipped (needs --broker-pid)");
        return Ok((Some((rate, each_us)), None));
    };
    let m =
        connections::idle_memory_per_connection(target, pid, args.idle_connections, heap).await?;
    let heap_line = m
        .heap_per
        .map(|h| {
            format!(
                "; live JVM heap {:.1} KiB per connection (after a full GC; RSS is what the OS gave the JVM: heap pages touched, metaspace, direct buffers, thread stacks)",
                h / 1024.0
            )
        })
        .unwrap_or_default();
    println!(
        "idle authenticated connections: {} open, broker RSS {:.1} KiB per connection   (target <= 16 KiB){heap_line}",
        m.opened,
        m.rss_per / 1024.0
    );
    Ok((
        Some((rate, each_us)),
        Some((m.rss_per / 1024.0, m.heap_per.map(|h| h / 1024.0))),
    ))
}

/// The minimal client against two endpoints at once, each at half the
/// latency rate, on each endpoint's latency topic (made by [`listener`]):
/// both see the same moment of a shared upstream, so the difference is
/// what the path to one of them adds (the gateway's, when `b` is a
/// gateway in front of `a`'s broker), not the upstream's drift between
/// two measurements.
pub async fn probe_side_by_side(
    args: &BenchArgs,
    a: &Endpoint,
    b: &Endpoint,
    secure: bool,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    let proto = if secure { "secure" } else { "plaintext" };
    async fn one(
        args: &BenchArgs,
        ep: &Endpoint,
        secure: bool,
        proto: &str,
    ) -> anyhow::Result<Percentiles> {
        let addr = if secure { &ep.secure } else { &ep.plaintext };
        let addr = addr.as_deref().context("no listener")?;
        let topic = bench_topic(ep, proto, "latency");
        let r = probe_at(args, ep, addr, secure, &topic, args.latency_rate_mb / 2.0).await?;
        Ok(percentiles(&r))
    }
    let (ra, rb) = tokio::join!(one(args, a, secure, proto), one(args, b, secure, proto));
    let (ra, rb) = (ra?, rb?);
    println!(
        "\n== minimal client at {:.0} MB/s in all, {} and {} at the same time ({proto}): p99 {:.3} and {:.3} ms, p50 {:.3} and {:.3} ms",
        args.latency_rate_mb, a.name, b.name, ra.p99, rb.p99, ra.p50, rb.p50
    );
    Ok((ra, rb))
}

/// A topic of the bench's on `ep`'s listener `proto`.
fn bench_topic(ep: &Endpoint, proto: &str, what: &str) -> String {
    format!("bench-{}-{proto}-{what}", tag_of(ep))
}

/// `ep`'s name as a part of topic and group names.
fn tag_of(ep: &Endpoint) -> String {
    ep.name.to_lowercase().replace(' ', "-")
}

/// The minimal client's produce latency on `topic` at `rate_mb`, through
/// `ep`'s listener at `addr`.
async fn probe_at(
    args: &BenchArgs,
    ep: &Endpoint,
    addr: &str,
    secure: bool,
    topic: &str,
    rate_mb: f64,
) -> anyhow::Result<probe::ProbeResult> {
    let (parts, size, secs) = (args.partitions, args.record_size, args.latency_secs);
    if secure {
        let target = ep.scram_target(addr)?;
        let s = connections::connect_once(&target, &Default::default()).await?;
        probe::produce_latency(s, topic, parts, size, rate_mb, secs).await
    } else {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        probe::produce_latency(s, topic, parts, size, rate_mb, secs).await
    }
}

fn percentiles(r: &probe::ProbeResult) -> Percentiles {
    let ms = |q: f64| r.latency_us.value_at_quantile(q) as f64 / 1000.0;
    Percentiles {
        p50: ms(0.5),
        p99: ms(0.99),
        p999: ms(0.999),
        mb_s: r.mb_per_s,
        failed: r.errors,
    }
}
