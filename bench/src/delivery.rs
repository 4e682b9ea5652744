//! Producer delivery reports as latency figures, and a send that waits
//! while librdkafka's queue is full. Shared with the root package's
//! `benches/audit_flood.rs` (included there by path, since a bench of the
//! broker crate cannot depend on this crate).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Delivery-report context of a latency run: ack latency in microseconds
/// and the number of failed deliveries.
pub struct LatencyContext {
    hist: Mutex<Histogram<u64>>,
    errors: AtomicU64,
}

impl LatencyContext {
    pub fn new() -> anyhow::Result<LatencyContext> {
        Ok(LatencyContext {
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
            errors: AtomicU64::new(0),
        })
    }

    /// What was recorded so far, leaving the context empty.
    pub fn take(&self) -> (Histogram<u64>, u64) {
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        let out = h.clone();
        h.reset();
        (out, self.errors.swap(0, Ordering::Relaxed))
    }
}

impl ClientContext for LatencyContext {}
impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        match r {
            Ok(_) => {
                let us = sent.elapsed().as_micros() as u64;
                let _ = self
                    .hist
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(us.max(1));
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends one record, waiting while librdkafka's queue is full.
pub fn send_blocking<C: ProducerContext>(
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

/// How [`send_at_rate`] paces: `rate` records/s until `end`, polling the
/// producer every `poll`.
pub struct Pace {
    pub rate: f64,
    pub end: Instant,
    pub poll: Duration,
}

/// Open loop at a fixed rate: sends `value` to `topic` (and `partition`,
/// when given) as `pace` says, each record carrying its send time for
/// [`LatencyContext`], until the end or until `stop` says so. A late
/// sender catches up, so the offered load does not sag when the broker
/// slows. Returns the records sent; the caller flushes.
pub fn send_at_rate(
    p: &BaseProducer<LatencyContext>,
    topic: &str,
    partition: Option<i32>,
    value: &[u8],
    pace: Pace,
    stop: impl Fn() -> bool,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut sent = 0u64;
    while Instant::now() < pace.end && !stop() {
        let due = (start.elapsed().as_secs_f64() * pace.rate) as u64;
        while sent < due {
            let mut rec =
                BaseRecord::with_opaque_to(topic, Box::new(Instant::now())).payload(value);
            if let Some(n) = partition {
                rec = rec.partition(n);
            }
            send_blocking(p, rec)?;
            sent += 1;
        }
        p.poll(pace.poll);
    }
    Ok(sent)
}
