//! Per-partition idempotent-producer state: the epoch and the last five
//! batches (sequence ranges and offsets) of each producer id, as Kafka keeps
//! it. Appends consult it under the partition lock, so checking and writing
//! are one step.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;

/// Kafka keeps this many batches per producer for duplicate detection.
pub const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<CachedBatch>,
    /// Largest batch timestamp seen from this producer: it expires a day
    /// after this, as in Kafka (`producer.id.expiration.ms`).
    pub last_timestamp: i64,
}

/// Kafka's default `producer.id.expiration.ms`: one day.
pub const PRODUCER_EXPIRY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written at this base offset: acknowledge, do not write.
    Duplicate(i64),
    OutOfOrder {
        expected: i32,
    },
    StaleEpoch {
        current: i16,
    },
    UnknownProducer,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

fn last_seq(h: &BatchHeader) -> i32 {
    let n = h.last_offset_delta;
    // Sequences wrap at i32::MAX like Kafka's.
    ((h.base_sequence as i64 + n as i64) % (i32::MAX as i64 + 1)) as i32
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if h.producer_id < 0 {
            return SequenceCheck::Append;
        }
        if h.is_control() {
            // Markers come from the coordinator; only their epoch matters.
            return match self.producers.get(&h.producer_id) {
                Some(e) if h.producer_epoch < e.epoch => {
                    SequenceCheck::StaleEpoch { current: e.epoch }
                }
                _ => SequenceCheck::Append,
            };
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::UnknownProducer
            };
        };
        if h.producer_epoch < e.epoch {
            return SequenceCheck::StaleEpoch { current: e.epoch };
        }
        if h.producer_epoch > e.epoch {
            // A bumped epoch starts its sequences again from zero.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        let last = last_seq(h);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return SequenceCheck::Duplicate(b.base_offset);
        }
        let expected = e.batches.back().map(|b| next_seq(b.last_seq)).unwrap_or(0);
        if h.base_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records a batch that was appended at `base_offset`.
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        let e = self.producers.entry(h.producer_id).or_default();
        e.last_timestamp = e.last_timestamp.max(h.max_timestamp);
        if h.is_control() {
            // A marker written with a bumped epoch fences older producers.
            if h.producer_epoch > e.epoch {
                e.epoch = h.producer_epoch;
                e.batches.clear();
            }
            return;
        }
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
        });
        while e.batches.len() > CACHED_BATCHES {
            e.batches.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Forgets producers idle since before `cutoff` (a batch timestamp),
    /// except those `in_transaction` says still have one open.
    pub fn expire(&mut self, cutoff: i64, in_transaction: impl Fn(i64) -> bool) {
        self.producers
            .retain(|pid, e| e.last_timestamp >= cutoff || in_transaction(*pid));
    }

    /// Every producer's state, for the clean-shutdown snapshot.
    pub fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    /// Restores one producer's state from a snapshot.
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&h(7, 0, 0, 5)), SequenceCheck::Append);
        s.record(&h(7, 0, 0, 5), 100);
        assert_eq!(s.check(&h(7, 0, 0, 5)), SequenceCheck::Duplicate(100));
        assert_eq!(s.check(&h(7, 0, 5, 1)), SequenceCheck::Append);
        assert_eq!(
            s.check(&h(7, 0, 7, 1)),
            SequenceCheck::OutOfOrder { expected: 5 }
        );
        s.record(&h(7, 0, 5, 1), 105);
        assert_eq!(s.check(&h(7, 1, 0, 1)), SequenceCheck::Append);
        s.record(&h(7, 1, 0, 1), 106);
        assert_eq!(
            s.check(&h(7, 0, 6, 1)),
            SequenceCheck::StaleEpoch { current: 1 }
        );
        assert_eq!(s.check(&h(8, 0, 3, 1)), SequenceCheck::UnknownProducer);
        assert_eq!(s.check(&h(-1, -1, -1, 3)), SequenceCheck::Append);
        for i in 0..10 {
            s.record(&h(9, 0, i, 1), 200 + i as i64);
        }
        assert_eq!(s.check(&h(9, 0, 9, 1)), SequenceCheck::Duplicate(209));
        assert_eq!(
            s.check(&h(9, 0, 2, 1)),
            SequenceCheck::OutOfOrder { expected: 10 }
        );
    }

    #[test]
    fn idle_producers_expire_unless_a_transaction_is_open() {
        let mut st = ProducerStates::default();
        for (pid, ts) in [(1, 1_000), (2, 5_000), (3, 1_000)] {
            let h = BatchHeader {
                producer_id: pid,
                max_timestamp: ts,
                ..BatchHeader::default()
            };
            st.record(&h, 0);
        }
        st.expire(2_000, |pid| pid == 3);
        let mut left: Vec<i64> = st.iter().map(|(p, _)| *p).collect();
        left.sort_unstable();
        assert_eq!(left, vec![2, 3]);
    }
}
