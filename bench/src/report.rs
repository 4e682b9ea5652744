//! The figures of one broker, kept as the run goes, and the side-by-side
//! table of `--against-kafka` (markdown, for BENCHMARKS.md): Portcullis,
//! Apache Kafka, and the ratio Portcullis / Kafka of the same run, with the
//! direction that is better said for every row.

use std::fmt::Write;

/// A throughput figure with the CPU per MB of both sides.
#[derive(Clone, Copy, Default)]
pub struct Rate {
    pub mb_s: f64,
    /// Broker CPU ms per MB (`None`: the broker's process is unknown).
    pub broker_ms: Option<f64>,
    /// The client's CPU ms per MB (librdkafka: this process; a Kafka tool:
    /// its JVM, start and JIT included).
    pub client_ms: f64,
    /// Cores the busiest client thread used (librdkafka: a connection's
    /// I/O thread; near 1.0, the client was the bound).
    pub client_thread: Option<f64>,
}

/// Ack latency percentiles, ms.
#[derive(Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// MB/s actually offered.
    pub mb_s: f64,
    /// Requests or records the broker refused: the percentiles then time
    /// error answers, and no ratio is drawn from them.
    pub failed: u64,
}

/// The figures of one listener (PLAINTEXT or SASL_SSL).
#[derive(Clone, Default)]
pub struct ListenerFigures {
    pub produce_acks1: Option<Rate>,
    pub produce_acks_all: Option<Rate>,
    /// Kafka only: acks=all on a topic with `flush.messages=1`, i.e. an
    /// fsync before the ack, as Portcullis does for acks=all.
    pub produce_acks_all_fsync: Option<Rate>,
    pub consume: Option<Rate>,
    /// librdkafka at the fixed rate.
    pub latency: Option<Percentiles>,
    /// The minimal client (probe.rs) at the fixed rate.
    pub latency_probe: Option<Percentiles>,
    /// kafka-producer-perf-test, acks=1.
    pub perf_produce: Option<Rate>,
    /// kafka-consumer-perf-test.
    pub perf_consume: Option<Rate>,
}

/// Everything measured of one broker.
#[derive(Clone, Default)]
pub struct Figures {
    pub plaintext: ListenerFigures,
    pub secure: ListenerFigures,
    /// Full connects/s (TCP + TLS + SCRAM) and the broker's CPU us each.
    pub connects: Option<(f64, Option<f64>)>,
    /// RSS KiB per idle authenticated connection, and (a JVM) live heap KiB
    /// per connection.
    pub idle_kib: Option<(f64, Option<f64>)>,
    /// Clean restart (process start to listener ready), ms, and the log's
    /// size in GB.
    pub restart: Option<(f64, f64)>,
}

/// Gateway mode: the client through a Portcullis gateway to Kafka, and
/// the same client to Kafka directly, measured just before it.
#[derive(Clone, Default)]
pub struct GatewayFigures {
    pub plaintext: ListenerFigures,
    pub secure: ListenerFigures,
    pub direct_plaintext: ListenerFigures,
    pub direct_secure: ListenerFigures,
    /// A byte relay in front of the same Kafka, over PLAINTEXT, measured
    /// between the direct and the gateway figures.
    pub relay_plaintext: ListenerFigures,
    /// The minimal client direct and through the gateway at the same
    /// time, each at half the rate: (direct, gateway).
    pub together_plaintext: Option<(Percentiles, Percentiles)>,
    pub together_secure: Option<(Percentiles, Percentiles)>,
}

fn rate(r: Option<Rate>) -> String {
    match r {
        None => "-".into(),
        Some(r) => {
            let broker = r
                .broker_ms
                .map(|b| format!("{b:.2}"))
                .unwrap_or_else(|| "?".into());
            let thread = r
                .client_thread
                .map(|c| format!("; busiest client thread {c:.2} cores"))
                .unwrap_or_default();
            format!(
                "{:.0} MB/s (broker {broker}, client {:.2} ms CPU/MB{thread})",
                r.mb_s, r.client_ms
            )
        }
    }
}

fn pct(p: Option<Percentiles>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p.failed > 0 => format!("{} failed: not comparable", p.failed),
        Some(p) => format!(
            "p50 {:.2} / p99 {:.2} / p99.9 {:.2} ms ({:.0} MB/s)",
            p.p50, p.p99, p.p999, p.mb_s
        ),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        // Two significant digits for small ratios (a restart of 77 ms
        // against 20 s is 0.0037x, not 0.00x).
        (Some(a), Some(b)) if b > 0.0 && a / b < 0.1 => format!("{:.2e}x", a / b),
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// One markdown row: figure, Portcullis, Kafka, ratio.
fn row(out: &mut String, figure: &str, p: String, k: String, r: String) {
    let _ = writeln!(out, "| {figure} | {p} | {k} | {r} |");
}

fn listener_rows(out: &mut String, name: &str, p: &ListenerFigures, k: &ListenerFigures) {
    let mb = |r: Option<Rate>| r.map(|r| r.mb_s);
    let tput = |out: &mut String, what: &str, a: Option<Rate>, b: Option<Rate>| {
        row(
            out,
            &format!("{name} {what}"),
            rate(a),
            rate(b),
            format!("{} (higher is better)", ratio(mb(a), mb(b))),
        );
    };
    tput(out, "produce acks=1", p.produce_acks1, k.produce_acks1);
    tput(
        out,
        "produce acks=all, fsync before the ack (Kafka: flush.messages=1)",
        p.produce_acks_all,
        k.produce_acks_all_fsync,
    );
    tput(
        out,
        "produce acks=all (Kafka's default: no fsync)",
        p.produce_acks_all,
        k.produce_acks_all,
    );
    tput(out, "consume", p.consume, k.consume);
    let lat = |out: &mut String, what: &str, a: Option<Percentiles>, b: Option<Percentiles>| {
        let ok = |p: Option<Percentiles>| p.filter(|p| p.failed == 0);
        let (ra, rb) = (ok(a), ok(b));
        row(
            out,
            &format!("{name} {what}"),
            pct(a),
            pct(b),
            format!(
                "p99 {} / p99.9 {} (lower is better)",
                ratio(ra.map(|x| x.p99), rb.map(|x| x.p99)),
                ratio(ra.map(|x| x.p999), rb.map(|x| x.p999))
            ),
        );
    };
    lat(
        out,
        "produce latency, librdkafka, acks=1",
        p.latency,
        k.latency,
    );
    lat(
        out,
        "produce latency, minimal client, acks=1",
        p.latency_probe,
        k.latency_probe,
    );
    tput(
        out,
        "produce acks=1, kafka-producer-perf-test",
        p.perf_produce,
        k.perf_produce,
    );
    tput(
        out,
        "consume, kafka-consumer-perf-test",
        p.perf_consume,
        k.perf_consume,
    );
}

/// The side-by-side table.
pub fn table(p: &Figures, k: &Figures, gw: Option<&GatewayFigures>, kafka_version: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | Portcullis | Apache Kafka {kafka_version} | Portcullis / Kafka |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    listener_rows(&mut out, "PLAINTEXT", &p.plaintext, &k.plaintext);
    listener_rows(&mut out, "SASL_SSL", &p.secure, &k.secure);
    let conn = |c: Option<(f64, Option<f64>)>| match c {
        None => "-".into(),
        Some((r, us)) => match us {
            Some(us) => format!("{r:.0} /s (broker {us:.0} us CPU each)"),
            None => format!("{r:.0} /s"),
        },
    };
    row(
        &mut out,
        "full connects (TCP + TLS + SCRAM-SHA-512)",
        conn(p.connects),
        conn(k.connects),
        format!(
            "{} (higher is better)",
            ratio(p.connects.map(|c| c.0), k.connects.map(|c| c.0))
        ),
    );
    let idle = |i: Option<(f64, Option<f64>)>| match i {
        None => "-".into(),
        Some((rss, heap)) => match heap {
            Some(h) => format!("{rss:.1} KiB RSS ({h:.1} KiB live heap)"),
            None => format!("{rss:.1} KiB RSS"),
        },
    };
    row(
        &mut out,
        "memory per idle authenticated connection",
        idle(p.idle_kib),
        idle(k.idle_kib),
        format!(
            "{} of RSS (lower is better)",
            ratio(p.idle_kib.map(|i| i.0), k.idle_kib.map(|i| i.0))
        ),
    );
    let restart = |r: Option<(f64, f64)>| match r {
        None => "-".into(),
        Some((ms, gb)) => format!("{ms:.0} ms ({gb:.2} GB of log)"),
    };
    row(
        &mut out,
        "clean restart: process start to listener ready",
        restart(p.restart),
        restart(k.restart),
        format!(
            "{} (lower is better)",
            ratio(p.restart.map(|r| r.0), k.restart.map(|r| r.0))
        ),
    );
    if let Some(gw) = gw {
        let _ = writeln!(
            out,
            "\n| gateway mode | client -> Portcullis gateway -> Kafka | client -> Kafka, measured just before | gateway / direct |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for (name, g, d, together) in [
            (
                "PLAINTEXT",
                &gw.plaintext,
                &gw.direct_plaintext,
                gw.together_plaintext,
            ),
            (
                "SASL_SSL",
                &gw.secure,
                &gw.direct_secure,
                gw.together_secure,
            ),
        ] {
            let mb = |r: Option<Rate>| r.map(|r| r.mb_s);
            let relay = &gw.relay_plaintext;
            let mut rates = vec![
                ("produce acks=1", g.produce_acks1, d.produce_acks1),
                ("consume", g.consume, d.consume),
                (
                    "produce acks=1, kafka-producer-perf-test",
                    g.perf_produce,
                    d.perf_produce,
                ),
                (
                    "consume, kafka-consumer-perf-test (in a fetch session)",
                    g.perf_consume,
                    d.perf_consume,
                ),
            ];
            if name == "PLAINTEXT" {
                // One more hop and nothing else: the least any gateway pays.
                rates.push((
                    "produce acks=1, byte relay (splice) instead of the gateway",
                    relay.produce_acks1,
                    d.produce_acks1,
                ));
                rates.push((
                    "consume, byte relay (splice) instead of the gateway",
                    relay.consume,
                    d.consume,
                ));
            }
            for (what, a, b) in rates {
                row(
                    &mut out,
                    &format!("{name} {what}"),
                    rate(a),
                    rate(b),
                    format!("{} (higher is better)", ratio(mb(a), mb(b))),
                );
            }
            for (what, a, b) in [
                ("latency, librdkafka", g.latency, d.latency),
                ("latency, minimal client", g.latency_probe, d.latency_probe),
            ] {
                let added = match (a, b) {
                    (Some(a), Some(b)) if a.failed + b.failed == 0 => {
                        format!("p99 {:+.2} ms added", a.p99 - b.p99)
                    }
                    _ => "-".into(),
                };
                row(&mut out, &format!("{name} {what}"), pct(a), pct(b), added);
            }
            // Both at once, each at half the rate: the same moment of
            // Kafka's, so the difference is the gateway's own.
            if let Some((d, g)) = together {
                let added = if d.failed + g.failed == 0 {
                    format!("p99 {:+.2} ms added", g.p99 - d.p99)
                } else {
                    "-".into()
                };
                row(
                    &mut out,
                    &format!("{name} latency, minimal client, gateway and direct at the same time"),
                    pct(Some(g)),
                    pct(Some(d)),
                    added,
                );
            }
        }
    }
    out
}
