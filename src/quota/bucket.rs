//! A token bucket: `rate` units per second, at most one second's worth
//! saved up. Spending may take it into debt; the debt divided by the rate
//! is how long the client must wait (Kafka's throttle time).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much unused rate a client may save up for a burst.
const BURST: Duration = Duration::from_secs(1);

/// The longest a single response throttles (Kafka bounds it by its quota
/// window too): past this the debt stays and the next request pays the
/// rest, so a client's requests never sit muted long enough to time out.
pub const MAX_THROTTLE: Duration = Duration::from_secs(10);

pub struct Bucket {
    state: Mutex<State>,
}

struct State {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl State {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let cap = self.rate * BURST.as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(cap);
    }

    fn debt(&self) -> Duration {
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((-self.tokens / self.rate).min(MAX_THROTTLE.as_secs_f64()))
    }
}

impl Bucket {
    pub fn new(rate: f64) -> Bucket {
        Bucket {
            state: Mutex::new(State {
                rate,
                tokens: rate * BURST.as_secs_f64(),
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A changed quota applies from now on; what was saved or owed stays.
    pub fn set_rate(&self, rate: f64) {
        let mut s = self.lock();
        if s.rate != rate {
            s.refill(Instant::now());
            s.rate = rate;
            s.tokens = s.tokens.min(rate * BURST.as_secs_f64());
        }
    }

    /// Spends `amount`; returns the throttle the resulting debt needs.
    pub fn record(&self, amount: f64, now: Instant) -> Duration {
        let mut s = self.lock();
        s.refill(now);
        s.tokens -= amount;
        s.debt()
    }

    /// The throttle owed now, without spending.
    pub fn debt(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        s.refill(now);
        s.debt()
    }

    /// Saved up to the brim: indistinguishable from a new bucket.
    pub fn is_full(&self, now: Instant) -> bool {
        let mut s = self.lock();
        s.refill(now);
        s.tokens >= s.rate * BURST.as_secs_f64()
    }
}

/// A throttle as Kafka's `throttle_time_ms`, rounded up so that a client
/// waiting that long finds the debt paid.
pub fn throttle_ms(t: Duration) -> u64 {
    let ms = t.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}
