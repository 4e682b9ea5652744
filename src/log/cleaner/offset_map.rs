//! The cleaner's key -> latest offset map, in a fixed memory budget.
//!
//! Like Kafka's `SkimpyOffsetMap`, it stores a 128-bit hash of each key,
//! never the key: 24 bytes per slot (two hash words and the offset) in one
//! open-addressing table that grows by doubling up to the budget and is
//! never filled past 90%, so probes stay short. When it is full the pass
//! stops where it is and the rest of the dirty log waits for the next pass.
//!
//! The hash is SipHash keyed with fresh random keys for every map: a
//! producer cannot craft keys that collide with another tenant's and so
//! make the cleaner drop their latest record.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

const SLOT_BYTES: u64 = 24;
const EMPTY: i64 = -1;
/// Most of the table's slots in use before it counts as full.
const LOAD: f64 = 0.9;
const FIRST_SLOTS: usize = 1024;

#[derive(Clone, Copy)]
struct Slot {
    h1: u64,
    h2: u64,
    offset: i64,
}

const FREE: Slot = Slot {
    h1: 0,
    h2: 0,
    offset: EMPTY,
};

pub struct OffsetMap {
    slots: Vec<Slot>,
    /// Slots the budget allows (a power of two).
    max_slots: usize,
    used: usize,
    k1: RandomState,
    k2: RandomState,
}

impl OffsetMap {
    /// A map using at most `budget_bytes` of memory for its table.
    pub fn new(budget_bytes: u64) -> OffsetMap {
        let fit = (budget_bytes / SLOT_BYTES).max(2) as usize;
        // The largest power of two within the budget.
        let max_slots = 1usize << (usize::BITS - 1 - fit.leading_zeros());
        OffsetMap {
            slots: vec![FREE; FIRST_SLOTS.min(max_slots)],
            max_slots,
            used: 0,
            k1: RandomState::new(),
            k2: RandomState::new(),
        }
    }

    /// Keys the map can hold at most.
    pub fn capacity(&self) -> usize {
        (self.max_slots as f64 * LOAD) as usize
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Whether `more` new keys might not fit.
    pub fn would_overflow(&self, more: usize) -> bool {
        self.used + more > self.capacity()
    }

    fn hash(&self, key: &[u8]) -> (u64, u64) {
        let mut a = self.k1.build_hasher();
        a.write(key);
        let mut b = self.k2.build_hasher();
        b.write(key);
        (a.finish(), b.finish())
    }

    fn find(slots: &[Slot], h1: u64, h2: u64) -> usize {
        let mask = slots.len() - 1;
        let mut i = (h1 as usize) & mask;
        loop {
            let s = &slots[i];
            if s.offset == EMPTY || (s.h1 == h1 && s.h2 == h2) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `offset` as the latest for `key`. Returns false (and
    /// records nothing) when the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let (h1, h2) = self.hash(key);
        let i = Self::find(&self.slots, h1, h2);
        if self.slots[i].offset != EMPTY {
            self.slots[i].offset = self.slots[i].offset.max(offset);
            return true;
        }
        if self.used + 1 > self.capacity() {
            return false;
        }
        if (self.used + 1) as f64 > self.slots.len() as f64 * LOAD {
            self.grow();
            let i = Self::find(&self.slots, h1, h2);
            self.slots[i] = Slot { h1, h2, offset };
        } else {
            self.slots[i] = Slot { h1, h2, offset };
        }
        self.used += 1;
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let (h1, h2) = self.hash(key);
        let s = self.slots[Self::find(&self.slots, h1, h2)];
        (s.offset != EMPTY).then_some(s.offset)
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).min(self.max_slots);
        let mut bigger = vec![FREE; size];
        for s in self.slots.iter().filter(|s| s.offset != EMPTY) {
            let i = Self::find(&bigger, s.h1, s.h2);
            bigger[i] = *s;
        }
        self.slots = bigger;
    }

    /// Bytes the table occupies now.
    pub fn memory_bytes(&self) -> u64 {
        self.slots.len() as u64 * SLOT_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_per_key_within_the_budget() {
        let mut m = OffsetMap::new(64 * 1024);
        assert!(m.capacity() >= 1000 && m.memory_bytes() <= 64 * 1024);
        for round in 0..3i64 {
            for k in 0..1000i64 {
                assert!(m.put(format!("key-{k}").as_bytes(), round * 1000 + k));
            }
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get(b"key-7"), Some(2007));
        assert_eq!(m.get(b"absent"), None);
        // An older offset never replaces a newer one.
        m.put(b"key-7", 5);
        assert_eq!(m.get(b"key-7"), Some(2007));
    }

    #[test]
    fn a_full_map_refuses_new_keys_and_stays_in_budget() {
        let budget = 24 * 1024;
        let mut m = OffsetMap::new(budget);
        let cap = m.capacity();
        for k in 0..cap {
            assert!(m.put(&k.to_be_bytes(), k as i64));
        }
        assert!(!m.put(b"one more", 1));
        assert!(m.would_overflow(1));
        // Known keys still update.
        assert!(m.put(&0usize.to_be_bytes(), 99_999));
        assert!(m.memory_bytes() <= budget);
        for k in 0..cap {
            assert!(m.get(&k.to_be_bytes()).is_some());
        }
    }
}
