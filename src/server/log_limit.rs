//! Rate limits for log lines a client can provoke at will (a failed TLS
//! handshake, a refused accept): the first few per period are written, the
//! rest are counted and the count rides on the next line written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines written per period before the rest are only counted.
const BURST: u64 = 5;
/// Period length in seconds.
const PERIOD_SECS: u64 = 10;

pub struct LogLimiter {
    /// Start of the current period (unix seconds).
    period: AtomicU64,
    /// Lines asked for in the current period.
    seen: AtomicU64,
    /// Lines left out since the last line written.
    suppressed: AtomicU64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogLimiter {
    pub const fn new() -> LogLimiter {
        LogLimiter {
            period: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write the line, mentioning the `n` lines left out since
    /// the last one written. `None`: leave it out (it is counted).
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let period = self.period.load(Ordering::Relaxed);
        if now >= period + PERIOD_SECS
            && self
                .period
                .compare_exchange(period, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.seen.store(0, Ordering::Relaxed);
        }
        if self.seen.fetch_add(1, Ordering::Relaxed) < BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_counts() {
        let l = LogLimiter::new();
        for _ in 0..BURST {
            assert_eq!(l.allow(), Some(0));
        }
        for _ in 0..100 {
            assert_eq!(l.allow(), None);
        }
        // A new period: the next line carries the count.
        l.period.store(0, Ordering::Relaxed);
        assert_eq!(l.allow(), Some(100));
    }
}
