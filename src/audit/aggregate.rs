//! Aggregated audit of repeated events: instead of one record per event,
//! one record per key and window with how many, the first and the last.
//!
//! The job: an attacker who repeats the same failure (a login with a fixed
//! bogus proof, a TLS handshake with the wrong CA) must not be able to turn
//! each attempt into an audit line and rotate the trail away. The caller
//! picks the key (what makes two events "the same") and builds the record;
//! this module only counts, bounds the memory and says when to write.
//!
//! Semantics, per key:
//! - the first event of a key that is not in the table is written at once
//!   by the caller (`Noted::First`), as an ordinary record: a single failed
//!   login is visible in `audit tail` immediately, not a window later;
//! - every further event is only counted; `drain` (every window, and at
//!   shutdown) hands out one [`Aggregate`] per key that counted anything,
//!   with `count`, `first` and `last`, and resets the count;
//! - a key that saw nothing for a whole window is forgotten, so its next
//!   event is written at once again.
//!
//! Nothing is dropped silently: when the table holds `max_keys` keys, an
//! event of a new key is folded into one overflow entry (`key: None`), whose
//! count is reported like any other. Memory is therefore bounded by
//! `max_keys` entries whatever the attacker varies.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::{AuditEvent, Auditor};

/// What the caller does with the event it just reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// A key not seen this window: write the event's own record now.
    First,
    /// Counted; it will be part of the key's aggregate record.
    Counted,
    /// Counted in the overflow entry (the key table is full).
    Overflow,
}

/// One key's events of a window, beyond the first one written at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate<K> {
    /// `None`: the overflow entry (keys that found the table full).
    pub key: Option<K>,
    pub count: u64,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
}

struct Entry {
    count: u64,
    first: OffsetDateTime,
    last: OffsetDateTime,
    /// Created in the current window: kept through one drain even when
    /// nothing was counted, so a key failing once per window does not get
    /// a record of its own every time.
    fresh: bool,
}

impl Entry {
    fn new(now: OffsetDateTime) -> Entry {
        Entry {
            count: 0,
            first: now,
            last: now,
            fresh: true,
        }
    }

    fn count(&mut self, now: OffsetDateTime) {
        if self.count == 0 {
            self.first = now;
        }
        self.count += 1;
        self.last = now;
    }
}

struct Table<K> {
    entries: HashMap<K, Entry>,
    overflow: Option<Entry>,
}

/// A bounded key -> (count, first, last) table. The lock is held for a
/// hash lookup only, never across an await.
pub struct Aggregator<K> {
    table: Mutex<Table<K>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Aggregator<K> {
    pub fn new(max_keys: usize) -> Aggregator<K> {
        Aggregator {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                overflow: None,
            }),
            max_keys: max_keys.max(1),
        }
    }

    /// Reports one event of `key`, now.
    pub fn note(&self, key: K) -> Noted {
        self.note_at(key, OffsetDateTime::now_utc())
    }

    pub fn note_at(&self, key: K, now: OffsetDateTime) -> Noted {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.entries.get_mut(&key) {
            e.count(now);
            return Noted::Counted;
        }
        if t.entries.len() >= self.max_keys {
            t.overflow.get_or_insert_with(|| Entry::new(now)).count(now);
            return Noted::Overflow;
        }
        t.entries.insert(key, Entry::new(now));
        Noted::First
    }

    /// Takes the window's aggregates (keys with a count, then the overflow
    /// entry) and starts the next window.
    pub fn drain(&self) -> Vec<Aggregate<K>> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        t.entries.retain(|key, e| {
            if e.count > 0 {
                out.push(Aggregate {
                    key: Some(key.clone()),
                    count: e.count,
                    first: e.first,
                    last: e.last,
                });
                e.count = 0;
                e.fresh = false;
                true
            } else {
                std::mem::replace(&mut e.fresh, false)
            }
        });
        if let Some(e) = t.overflow.take().filter(|e| e.count > 0) {
            out.push(Aggregate {
                key: None,
                count: e.count,
                first: e.first,
                last: e.last,
            });
        }
        out
    }

    /// Keys currently tracked (not counting the overflow entry).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

/// An [`Aggregator`] whose windows end in audit records: the caller writes
/// the first event of a key itself, and the flusher writes one record per
/// key that counted repeats, every window (and once more at shutdown).
/// `record` builds a window's record from its aggregate.
pub struct WindowedAudit<K> {
    agg: Aggregator<K>,
    window_ms: u64,
    record: fn(&Aggregate<K>, u64) -> AuditEvent,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> WindowedAudit<K> {
    pub fn with_record(
        max_keys: usize,
        window_ms: u64,
        record: fn(&Aggregate<K>, u64) -> AuditEvent,
    ) -> WindowedAudit<K> {
        WindowedAudit {
            agg: Aggregator::new(max_keys),
            window_ms,
            record,
        }
    }

    /// Counts one event; `true` when the caller writes its own record now
    /// (the first of its key this window).
    pub fn note(&self, key: K) -> bool {
        self.agg.note(key) == Noted::First
    }

    /// The aggregated records of the window that just ended.
    pub fn drain_records(&self) -> Vec<AuditEvent> {
        self.agg
            .drain()
            .iter()
            .map(|a| (self.record)(a, self.window_ms))
            .collect()
    }

    /// Writes the window's aggregated records.
    pub async fn flush(&self, auditor: &Auditor) {
        for ev in self.drain_records() {
            auditor.submit(ev).await;
        }
    }

    /// Flushes every `window_ms` until aborted; the broker flushes once
    /// more at shutdown.
    pub fn spawn_flusher(self: Arc<Self>, auditor: Arc<Auditor>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let period = std::time::Duration::from_millis(self.window_ms);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                self.flush(&auditor).await;
            }
        })
    }
}

/// The `details` of an aggregated record: `{"aggregated": true, "count",
/// "first", "last", "window_ms"}` (times as the records' own `time`), plus
/// `"overflow": true` for the overflow entry. Kept here so every user of
/// the aggregator writes the same shape (docs/AUDIT.md).
pub fn details<K>(a: &Aggregate<K>, window_ms: u64) -> serde_json::Value {
    let mut v = serde_json::json!({
        "aggregated": true,
        "count": a.count,
        "first": rfc3339(a.first),
        "last": rfc3339(a.last),
        "window_ms": window_ms,
    });
    if a.key.is_none() {
        v["overflow"] = serde_json::Value::Bool(true);
    }
    v
}

/// RFC 3339 UTC with milliseconds, like every record's `time`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn first_is_written_then_counted_then_aggregated_once_per_window() {
        let a = Aggregator::new(16);
        assert_eq!(a.note_at("k", at(0)), Noted::First);
        for i in 1..=5 {
            assert_eq!(a.note_at("k", at(i)), Noted::Counted);
        }
        let w = a.drain();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, Some("k"));
        assert_eq!((w[0].count, w[0].first, w[0].last), (5, at(1), at(5)));
        // Still known: the next event is counted, not written again.
        assert_eq!(a.note_at("k", at(10)), Noted::Counted);
        assert_eq!(a.drain()[0].count, 1);
        // A quiet window forgets the key.
        assert!(a.drain().is_empty());
        assert_eq!(a.tracked(), 0);
        assert_eq!(a.note_at("k", at(20)), Noted::First);
    }

    #[test]
    fn a_key_seen_once_survives_its_first_drain() {
        let a = Aggregator::new(16);
        assert_eq!(a.note_at(1u32, at(0)), Noted::First);
        assert!(a.drain().is_empty());
        assert_eq!(a.note_at(1u32, at(1)), Noted::Counted);
        assert_eq!(a.drain()[0].count, 1);
    }

    #[test]
    fn a_full_table_folds_new_keys_into_the_counted_overflow() {
        let a = Aggregator::new(3);
        for k in 0..3u32 {
            assert_eq!(a.note_at(k, at(0)), Noted::First);
        }
        for k in 3..1003u32 {
            assert_eq!(a.note_at(k, at(1)), Noted::Overflow);
        }
        assert_eq!(a.note_at(0, at(2)), Noted::Counted);
        assert_eq!(a.tracked(), 3);
        let w = a.drain();
        let overflow: Vec<_> = w.iter().filter(|x| x.key.is_none()).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].count, 1000);
        let total: u64 = w.iter().map(|x| x.count).sum::<u64>() + 3;
        assert_eq!(total, 1004, "every event is accounted for");
        let d = details(overflow[0], 60_000);
        assert_eq!(d["count"], 1000);
        assert_eq!(d["overflow"], true);
        assert_eq!(d["first"], "2023-11-14T22:13:21.000Z");
    }
}
