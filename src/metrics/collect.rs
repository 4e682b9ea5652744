//! Scrape-time collectors: state the engines already keep (partition
//! sizes and offsets, committed offsets, the audit queue, the server
//! certificate, the upstream pool), read when `/metrics` is asked for
//! instead of being tracked on the request path.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::audit::Auditor;
use crate::group::OffsetStore;
use crate::log::LogManager;
use crate::tls::TlsAcceptorHandle;

/// The gateway pool's state, as the gateway reports it.
#[derive(Debug, Clone, Default)]
pub struct UpstreamSnapshot {
    /// Whether the last attempt to reach the upstream succeeded (`None`
    /// before any).
    pub reachable: Option<bool>,
    pub connects_ok: u64,
    pub connects_failed: u64,
    /// Pooled connections waiting for a request.
    pub idle_connections: u64,
}

/// What the collectors read. The log and offsets only in embedded mode:
/// in gateway mode the data lives upstream.
pub struct Sources {
    pub logs: Option<Arc<LogManager>>,
    pub offsets: Option<Arc<OffsetStore>>,
    pub auditor: Arc<Auditor>,
    pub tls: Option<Arc<TlsAcceptorHandle>>,
    pub upstream: Option<Box<dyn Fn() -> UpstreamSnapshot + Send + Sync>>,
}

#[derive(Debug)]
pub(super) struct Scrape {
    sources: Arc<OnceLock<Sources>>,
}

impl Scrape {
    pub(super) fn new(sources: Arc<OnceLock<Sources>>) -> Scrape {
        Scrape { sources }
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

type Series<'a, V> = (Vec<(&'static str, &'a str)>, V);

/// One gauge family whose series are known only now.
fn gauges<'a, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = Series<'a, V>>,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        let labels: &[(&str, &str)] = &labels;
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = Series<'a, u64>>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        let labels: &[(&str, &str)] = &labels;
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.sources.get() else {
            return Ok(());
        };
        if let Some(logs) = &s.logs {
            partitions(&mut encoder, logs, s.offsets.as_deref())?;
        }
        audit(&mut encoder, &s.auditor)?;
        if let Some(not_after) = s.tls.as_ref().and_then(|t| t.not_after()) {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            gauge(
                &mut encoder,
                "tls_certificate_expiry_seconds",
                "Seconds until the server certificate in force expires",
                not_after - now,
            )?;
        }
        if let Some(up) = &s.upstream {
            let u = up();
            gauge(
                &mut encoder,
                "upstream_reachable",
                "Gateway mode: 1 if the last attempt to reach the upstream succeeded, \
                 0 if it failed, -1 before any",
                match u.reachable {
                    Some(true) => 1i64,
                    Some(false) => 0,
                    None => -1,
                },
            )?;
            counters(
                &mut encoder,
                "upstream_connects",
                "Gateway mode: connections to upstream brokers, by outcome",
                [
                    (vec![("outcome", "ok")], u.connects_ok),
                    (vec![("outcome", "failed")], u.connects_failed),
                ],
            )?;
            gauge(
                &mut encoder,
                "upstream_idle_connections",
                "Gateway mode: pooled upstream connections waiting for a request",
                u.idle_connections,
            )?;
        }
        Ok(())
    }
}

fn partitions(
    encoder: &mut DescriptorEncoder,
    logs: &LogManager,
    offsets: Option<&OffsetStore>,
) -> Result<(), std::fmt::Error> {
    struct Row {
        topic: Arc<str>,
        partition: String,
        size: u64,
        segments: u64,
        high_watermark: i64,
        log_start: i64,
    }
    let mut rows = Vec::new();
    let mut end_offsets: HashMap<(Arc<str>, i32), i64> = HashMap::new();
    for t in logs.topics() {
        for p in t.partitions() {
            let hw = p.end_offset();
            end_offsets.insert((t.name.clone(), p.index), hw);
            rows.push(Row {
                topic: t.name.clone(),
                partition: p.index.to_string(),
                size: p.size_bytes(),
                segments: p.segment_count() as u64,
                high_watermark: hw,
                log_start: p.log_start_offset(),
            });
        }
    }
    fn labels(r: &Row) -> Vec<(&'static str, &str)> {
        vec![("topic", &*r.topic), ("partition", r.partition.as_str())]
    }
    gauges(
        encoder,
        "partition_log_size_bytes",
        "Bytes in the partition's segments",
        rows.iter().map(|r| (labels(r), r.size)),
    )?;
    gauges(
        encoder,
        "partition_segments",
        "Segments of the partition",
        rows.iter().map(|r| (labels(r), r.segments)),
    )?;
    gauges(
        encoder,
        "partition_high_watermark",
        "The partition's high watermark (next offset)",
        rows.iter().map(|r| (labels(r), r.high_watermark)),
    )?;
    gauges(
        encoder,
        "partition_log_start_offset",
        "The partition's log start offset",
        rows.iter().map(|r| (labels(r), r.log_start)),
    )?;
    let Some(offsets) = offsets else {
        return Ok(());
    };
    // Committed offset against the high watermark, for the partitions
    // that still exist.
    let mut lags = Vec::new();
    for g in offsets.groups_with_offsets() {
        for (topic, partition, c) in offsets.group(&g) {
            let Some(hw) = end_offsets.get(&(Arc::from(topic.as_str()), partition)) else {
                continue;
            };
            lags.push((
                g.clone(),
                topic,
                partition.to_string(),
                (hw - c.offset).max(0),
            ));
        }
    }
    gauges(
        encoder,
        "consumer_group_lag",
        "Records between a group's committed offset and the high watermark",
        lags.iter().map(|(g, t, p, lag)| {
            (
                vec![
                    ("group", g.as_str()),
                    ("topic", t.as_str()),
                    ("partition", p.as_str()),
                ],
                *lag,
            )
        }),
    )
}

fn audit(encoder: &mut DescriptorEncoder, a: &Auditor) -> Result<(), std::fmt::Error> {
    let s = a.stats();
    gauge(
        encoder,
        "audit_queue_depth",
        "Audit records queued for the writer",
        a.queue_depth() as u64,
    )?;
    counter(
        encoder,
        "audit_records_written",
        "Audit records written",
        s.written.load(Ordering::Relaxed),
    )?;
    counter(
        encoder,
        "audit_decisions_coalesced",
        "Authorization decisions folded into coalesced audit records",
        s.coalesced.load(Ordering::Relaxed),
    )?;
    counter(
        encoder,
        "audit_records_dropped",
        "Audit records lost to a full queue (audit.when_full: drop)",
        s.dropped.load(Ordering::Relaxed),
    )
}
