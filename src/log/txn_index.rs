//! Per-partition transaction bookkeeping: which producers have an open
//! transaction here (and from which offset), and the aborted transactions
//! (for read_committed fetches). The last stable offset is the first offset
//! of the oldest open transaction, or the high watermark when none is open.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::batch::{BatchHeader, ATTR_TRANSACTIONAL};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Commit,
    Abort,
}

#[derive(Debug, Default)]
pub struct TxnIndex {
    ongoing: BTreeMap<i64, i64>,
    /// In the order of their abort markers, so sorted by `last_offset`.
    /// Shared with read_committed fetches, which take it under the
    /// partition lock without copying and filter it after their read; an
    /// abort (rare next to fetches) copies it only if a fetch holds it.
    aborted: Arc<Vec<AbortedTxn>>,
}

impl TxnIndex {
    /// Open transactions (producer id -> first offset) and aborted ones,
    /// for the clean-shutdown snapshot.
    pub fn parts(&self) -> (&BTreeMap<i64, i64>, &[AbortedTxn]) {
        (&self.ongoing, &self.aborted[..])
    }

    pub fn from_parts(ongoing: BTreeMap<i64, i64>, mut aborted: Vec<AbortedTxn>) -> Self {
        // Written in marker order; sorted again in case an older snapshot
        // was not, since lookups rely on it.
        aborted.sort_by_key(|a| a.last_offset);
        TxnIndex {
            ongoing,
            aborted: Arc::new(aborted),
        }
    }

    pub fn is_open(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Drops aborted transactions that ended below the log start: no fetch
    /// can reach them any more.
    pub fn forget_aborted_before(&mut self, log_start: i64) {
        if self
            .aborted
            .first()
            .is_some_and(|a| a.last_offset < log_start)
        {
            Arc::make_mut(&mut self.aborted).retain(|a| a.last_offset >= log_start);
        }
    }

    /// Records an appended batch; `marker` is set for control batches.
    pub fn on_batch(&mut self, h: &BatchHeader, base_offset: i64, marker: Option<Marker>) {
        if h.attributes & ATTR_TRANSACTIONAL == 0 || h.producer_id < 0 {
            return;
        }
        match marker {
            None => {
                self.ongoing.entry(h.producer_id).or_insert(base_offset);
            }
            Some(m) => {
                if let Some(first) = self.ongoing.remove(&h.producer_id) {
                    if m == Marker::Abort {
                        Arc::make_mut(&mut self.aborted).push(AbortedTxn {
                            producer_id: h.producer_id,
                            first_offset: first,
                            last_offset: base_offset,
                        });
                    }
                }
            }
        }
    }

    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(high_watermark)
            .min(high_watermark)
    }

    /// Aborted transactions that overlap `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        aborted_overlapping(&self.aborted, from, to)
    }

    /// Every aborted transaction, shared rather than copied (see
    /// `aborted`); filter it with [`aborted_overlapping`].
    pub fn aborted_shared(&self) -> Arc<Vec<AbortedTxn>> {
        self.aborted.clone()
    }

    pub fn open_transactions(&self) -> usize {
        self.ongoing.len()
    }
}

/// The transactions of `aborted` (sorted by last offset) that overlap
/// `[from, to)`: those that end at or after `from` and start before `to`.
pub fn aborted_overlapping(aborted: &[AbortedTxn], from: i64, to: i64) -> Vec<AbortedTxn> {
    let i = aborted.partition_point(|a| a.last_offset < from);
    aborted[i..]
        .iter()
        .filter(|a| a.first_offset < to)
        .copied()
        .collect()
}

/// Reads the marker type from a control batch's first record:
/// key = version (i16) + type (i16: 0 abort, 1 commit).
pub fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let mut pos = super::batch::HEADER_LEN;
    let varint = |pos: &mut usize| super::batch::read_varint(batch, pos);
    let _len = varint(&mut pos)?;
    pos += 1; // attributes
    let _ts = varint(&mut pos)?;
    let _off = varint(&mut pos)?;
    let key_len = varint(&mut pos)?;
    if key_len < 4 {
        return None;
    }
    let kind = i16::from_be_bytes([*batch.get(pos + 2)?, *batch.get(pos + 3)?]);
    match kind {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}
