//! Snapshots of one partition's idempotent-producer and transaction state:
//! what a restart would otherwise rebuild by reading batch headers of the
//! whole log, so start-up time would grow with bytes.
//!
//! - **Clean shutdown** (`clean-shutdown`): written after the active segment
//!   is sealed (fsynced, index files written). The next start trusts both if
//!   the active segment still has exactly the length recorded here, and
//!   deletes the file before accepting writes, so a later crash never trusts
//!   it (Kafka's `.kafka_cleanshutdown` plays this part). A clean restart
//!   then reads none of the log.
//! - **Segment roll** (`<base>.snapshot`): the state as of a new segment's
//!   base offset. After a crash, recovery loads the newest one that matches
//!   a segment base and replays only the segments from there (Kafka's
//!   producer snapshots), instead of every header of the last day. These are
//!   not fsynced: a lost or torn one fails its CRC and an older one, or a
//!   full replay, is used.
//!
//! Layout (big-endian): magic, active segment base and length, log end,
//! producers, open transactions, aborted transactions, then CRC-32C of all
//! before it. Decoding checks every count against the bytes left, so a
//! damaged file is refused, never trusted and never a panic.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use super::permissions::FILE_MODE;
use super::producer_state::{CachedBatch, ProducerEntry, ProducerStates, CACHED_BATCHES};
use super::txn_index::{AbortedTxn, TxnIndex};
use crate::util::atomic_file::{write_atomic, write_atomic_unsynced};

const CLEAN_FILE: &str = "clean-shutdown";
const ROLL_SUFFIX: &str = ".snapshot";
const MAGIC: &[u8; 8] = b"PCSNAP02";

/// Where the log stood when the snapshot was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub active_base: i64,
    pub active_len: u64,
    pub end_offset: i64,
}

#[derive(Debug)]
pub struct Snapshot {
    pub head: Head,
    pub producers: ProducerStates,
    pub txns: TxnIndex,
}

pub fn clean_path(dir: &Path) -> PathBuf {
    dir.join(CLEAN_FILE)
}

fn roll_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}{ROLL_SUFFIX}"))
}

/// Reads and removes the clean-shutdown snapshot. `None` when there is
/// none or it is damaged (then the caller recovers from the log).
pub fn take_clean(dir: &Path) -> Option<Snapshot> {
    let p = clean_path(dir);
    let bytes = std::fs::read(&p).ok()?;
    let snap = decode(&bytes);
    if snap.is_none() {
        tracing::warn!(file = %p.display(), "ignoring a damaged clean-shutdown snapshot");
    }
    // Removed whatever it held: once the partition takes writes it no
    // longer describes the log. A removal lost to a crash is harmless, as
    // the length check then refuses the stale file.
    if let Err(e) = std::fs::remove_file(&p) {
        tracing::warn!(file = %p.display(), "cannot remove the clean-shutdown snapshot: {e}");
    }
    snap
}

pub fn write_clean(
    dir: &Path,
    head: Head,
    producers: &ProducerStates,
    txns: &TxnIndex,
) -> std::io::Result<()> {
    write_atomic(&clean_path(dir), &encode(head, producers, txns), FILE_MODE)
}

/// The state as of `base`, the offset a new segment starts at. Snapshots
/// of older segments than the previous one are removed.
pub fn write_at_roll(
    dir: &Path,
    base: i64,
    producers: &ProducerStates,
    txns: &TxnIndex,
) -> std::io::Result<()> {
    let head = Head {
        active_base: base,
        active_len: 0,
        end_offset: base,
    };
    let path = roll_path(dir, base);
    write_atomic_unsynced(&path, &encode(head, producers, txns), FILE_MODE)?;
    let mut bases = roll_bases(dir);
    bases.sort_unstable();
    if bases.len() > 2 {
        for old in &bases[..bases.len() - 2] {
            let _ = std::fs::remove_file(roll_path(dir, *old));
        }
    }
    Ok(())
}

fn roll_bases(dir: &Path) -> Vec<i64> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_suffix(ROLL_SUFFIX)?.parse().ok()
        })
        .collect()
}

/// Deletes the roll snapshots taken below `offset`: the cleaner rewrote the
/// segments after them, so replaying those segments from such a snapshot
/// would miss batches it removed (a transaction's data, say, whose marker
/// it then removed too). Recovery then starts from a later snapshot or
/// replays the cleaned log from its start, which is consistent.
pub fn forget_rolls_below(dir: &Path, offset: i64) {
    for b in roll_bases(dir).into_iter().filter(|b| *b < offset) {
        let _ = std::fs::remove_file(roll_path(dir, b));
    }
}

/// The newest intact roll snapshot taken at one of `segment_bases`.
pub fn latest_at_segment(dir: &Path, segment_bases: &[i64]) -> Option<Snapshot> {
    let mut bases = roll_bases(dir);
    bases.sort_unstable_by(|a, b| b.cmp(a));
    bases
        .into_iter()
        .filter(|b| segment_bases.binary_search(b).is_ok())
        .find_map(|b| {
            let snap = decode(&std::fs::read(roll_path(dir, b)).ok()?)?;
            (snap.head.active_base == b).then_some(snap)
        })
}

fn encode(head: Head, producers: &ProducerStates, txns: &TxnIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + producers.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&head.active_base.to_be_bytes());
    out.extend_from_slice(&head.active_len.to_be_bytes());
    out.extend_from_slice(&head.end_offset.to_be_bytes());
    out.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    for (pid, e) in producers.iter() {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_timestamp.to_be_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
        }
    }
    let (ongoing, aborted) = txns.parts();
    out.extend_from_slice(&(ongoing.len() as u32).to_be_bytes());
    for (pid, first) in ongoing {
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&first.to_be_bytes());
    }
    out.extend_from_slice(&(aborted.len() as u32).to_be_bytes());
    for a in aborted {
        out.extend_from_slice(&a.producer_id.to_be_bytes());
        out.extend_from_slice(&a.first_offset.to_be_bytes());
        out.extend_from_slice(&a.last_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A bounds-checked reader: every take fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    /// A count of items of at least `item_len` bytes each; refused when
    /// the rest of the file cannot hold that many.
    fn count(&mut self, item_len: usize) -> Option<usize> {
        let n = u32::from_be_bytes(self.take()?) as usize;
        (n.checked_mul(item_len)? <= self.0.len()).then_some(n)
    }
}

fn decode(bytes: &[u8]) -> Option<Snapshot> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return None;
    }
    let mut r = Reader(body);
    if &r.take::<8>()? != MAGIC {
        return None;
    }
    let active_base = r.i64()?;
    let active_len = r.i64()? as u64;
    let end_offset = r.i64()?;
    let mut producers = ProducerStates::default();
    for _ in 0..r.count(19)? {
        let pid = r.i64()?;
        let epoch = r.i16()?;
        let last_timestamp = r.i64()?;
        let n = r.u8()? as usize;
        if n > CACHED_BATCHES {
            return None;
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(CachedBatch {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
            });
        }
        producers.insert(
            pid,
            ProducerEntry {
                epoch,
                batches,
                last_timestamp,
            },
        );
    }
    let mut ongoing = BTreeMap::new();
    for _ in 0..r.count(16)? {
        ongoing.insert(r.i64()?, r.i64()?);
    }
    let mut aborted = Vec::new();
    for _ in 0..r.count(24)? {
        aborted.push(AbortedTxn {
            producer_id: r.i64()?,
            first_offset: r.i64()?,
            last_offset: r.i64()?,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(Snapshot {
        head: Head {
            active_base,
            active_len,
            end_offset,
        },
        producers,
        txns: TxnIndex::from_parts(ongoing, aborted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::BatchHeader;

    fn sample() -> Snapshot {
        let mut producers = ProducerStates::default();
        for (pid, seq, off) in [(7, 0, 10), (7, 5, 20), (9, 0, 30)] {
            let h = BatchHeader {
                producer_id: pid,
                producer_epoch: 2,
                base_sequence: seq,
                last_offset_delta: 4,
                max_timestamp: 1_000 + off,
                ..BatchHeader::default()
            };
            producers.record(&h, off);
        }
        let mut ongoing = BTreeMap::new();
        ongoing.insert(11, 40);
        let aborted = vec![AbortedTxn {
            producer_id: 12,
            first_offset: 3,
            last_offset: 8,
        }];
        Snapshot {
            head: Head {
                active_base: 100,
                active_len: 4096,
                end_offset: 140,
            },
            producers,
            txns: TxnIndex::from_parts(ongoing, aborted),
        }
    }

    #[test]
    fn round_trips_and_is_removed_once_taken() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        write_clean(dir.path(), s.head, &s.producers, &s.txns).unwrap();
        let back = take_clean(dir.path()).expect("snapshot");
        assert!(!clean_path(dir.path()).exists());
        assert_eq!(back.head, s.head);
        let mut want: Vec<_> = s.producers.iter().map(|(p, e)| (*p, e.clone())).collect();
        let mut got: Vec<_> = back
            .producers
            .iter()
            .map(|(p, e)| (*p, e.clone()))
            .collect();
        want.sort_by_key(|(p, _)| *p);
        got.sort_by_key(|(p, _)| *p);
        assert_eq!(format!("{want:?}"), format!("{got:?}"));
        assert_eq!(back.txns.parts().0, s.txns.parts().0);
        assert_eq!(back.txns.parts().1, s.txns.parts().1);
        assert!(take_clean(dir.path()).is_none());
    }

    #[test]
    fn roll_snapshots_keep_the_last_two_and_skip_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample();
        for base in [0, 100, 200, 300] {
            write_at_roll(dir.path(), base, &s.producers, &s.txns).unwrap();
        }
        let mut left = roll_bases(dir.path());
        left.sort_unstable();
        assert_eq!(left, vec![200, 300]);
        let segments = [0, 100, 200, 300, 400];
        assert_eq!(
            latest_at_segment(dir.path(), &segments)
                .unwrap()
                .head
                .active_base,
            300
        );
        // Not a segment base (the segment was never created): skipped.
        assert_eq!(
            latest_at_segment(dir.path(), &[0, 200])
                .unwrap()
                .head
                .active_base,
            200
        );
        // A torn newest snapshot falls back to the one before.
        std::fs::write(roll_path(dir.path(), 300), b"torn").unwrap();
        assert_eq!(
            latest_at_segment(dir.path(), &segments)
                .unwrap()
                .head
                .active_base,
            200
        );
    }

    #[test]
    fn damaged_files_are_refused_without_panicking() {
        let s = sample();
        let good = encode(s.head, &s.producers, &s.txns);
        // Every truncation and every single-byte flip is refused.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_none(), "flip at {i}");
        }
        // A valid CRC over an absurd count is refused too.
        let mut body = good[..good.len() - 4].to_vec();
        body[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        assert!(decode(&body).is_none());
    }
}
