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
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
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
                wait(p, QUEUE_FULL_WAIT);
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
}

/// How long a producer with a full queue sleeps before trying again. The
/// queue holds 100,000 records, far more than a millisecond drains.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

/// Serves the delivery reports that are ready, then sleeps for `d`.
///
/// Not `BaseProducer::poll(d)`: rdkafka 0.39 hands librdkafka the time
/// left in whole milliseconds, rounded down, and polls again until its
/// deadline, so a poll shorter than 1 ms (and the last millisecond of any
/// poll) spins on the clock. A bench producer that waits that way burns a
/// core the brokers under test share.
pub fn wait<C: ProducerContext>(p: &BaseProducer<C>, d: Duration) {
    serve_ready(p);
    std::thread::sleep(d);
}

/// Serves every event waiting on the producer's queue without blocking.
/// `poll(Duration::ZERO)` serves at most one, and says nothing about
/// whether there was one, so the queue's length decides when to stop.
fn serve_ready<C: ProducerContext>(p: &BaseProducer<C>) {
    let rk = p.client().native_ptr();
    // SAFETY: `rk` is the live handle `p` owns; the queue reference taken
    // here is released before returning, and length is a read under
    // librdkafka's own lock.
    unsafe {
        let q = rdkafka::bindings::rd_kafka_queue_get_main(rk);
        if q.is_null() {
            p.poll(Duration::ZERO);
            return;
        }
        // Bounded: reports that keep arriving are served by the next wait.
        for _ in 0..100_000 {
            if rdkafka::bindings::rd_kafka_queue_length(q) == 0 {
                break;
            }
            p.poll(Duration::ZERO);
        }
        rdkafka::bindings::rd_kafka_queue_destroy(q);
    }
}

/// Waits until every record is delivered (or failed and reported), then
/// serves the last reports. Not `Producer::flush`, which in rdkafka 0.39
/// checks librdkafka's queue once and then polls for up to 100 ms whether
/// reports arrive or not, so a run's clock would stop up to 100 ms late.
pub fn flush<C: ProducerContext>(p: &BaseProducer<C>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while p.in_flight_count() > 0 {
        if Instant::now() > deadline {
            bail!(
                "{} records still in flight after {timeout:?}",
                p.in_flight_count()
            );
        }
        wait(p, FLUSH_WAIT);
    }
    serve_ready(p);
    Ok(())
}

/// Granularity of [`flush`]: small beside a run of a second or more.
const FLUSH_WAIT: Duration = Duration::from_micros(500);

/// How [`send_at_rate`] paces: `rate` records/s until `end`, serving
/// delivery reports and sleeping `poll` between rounds of sends.
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
        wait(p, pace.poll);
    }
    Ok(sent)
}
