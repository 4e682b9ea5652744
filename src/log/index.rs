//! Sparse offset and time indexes of one segment.
//!
//! Entries are added every `index_interval_bytes` of appended data. They live
//! in memory while a segment is active and are written to `.index` /
//! `.timeindex` files when the segment is sealed, so a restart loads them
//! instead of re-reading the data.

use std::path::Path;

use super::permissions::FILE_MODE;
use crate::util::atomic_file::{write_atomic, write_atomic_unsynced};

/// (offset relative to the segment base, byte position in the segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// (largest timestamp so far, offset relative to the segment base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

#[derive(Debug, Default, Clone)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    bytes_since_entry: u64,
}

impl SegmentIndex {
    /// Records a batch that starts at `position`; adds entries only once per
    /// `interval` bytes to keep the index sparse.
    pub fn on_append(
        &mut self,
        rel_offset: u32,
        position: u32,
        size: u32,
        max_ts: i64,
        interval: u32,
    ) {
        if self.offsets.is_empty() || self.bytes_since_entry >= interval as u64 {
            self.offsets.push(OffsetEntry {
                rel_offset,
                position,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size as u64;
        if self.times.last().is_none_or(|t| max_ts > t.timestamp) {
            self.times.push(TimeEntry {
                timestamp: max_ts,
                rel_offset,
            });
        }
    }

    /// Byte position to start scanning from for `rel_offset`.
    pub fn position_for(&self, rel_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.rel_offset <= rel_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// Relative offset to start scanning from to find the first batch whose
    /// timestamp is at least `ts` (the last entry still below `ts`).
    pub fn rel_offset_for_time(&self, ts: i64) -> Option<u32> {
        let i = self.times.partition_point(|e| e.timestamp < ts);
        if i == self.times.len() {
            return None;
        }
        Some(if i == 0 {
            0
        } else {
            self.times[i - 1].rel_offset
        })
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.times.last().map(|t| t.timestamp)
    }

    /// Writes both files atomically; with `sync`, durably (a sealed
    /// segment's), else they may be lost or empty after a crash, which
    /// `read_files` refuses, so the index is rebuilt from the data.
    pub fn write_files(
        &self,
        offset_path: &Path,
        time_path: &Path,
        sync: bool,
    ) -> std::io::Result<()> {
        let mut o = Vec::with_capacity(self.offsets.len() * 8);
        for e in &self.offsets {
            o.extend_from_slice(&e.rel_offset.to_be_bytes());
            o.extend_from_slice(&e.position.to_be_bytes());
        }
        let mut t = Vec::with_capacity(self.times.len() * 12);
        for e in &self.times {
            t.extend_from_slice(&e.timestamp.to_be_bytes());
            t.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        let write = if sync {
            write_atomic
        } else {
            write_atomic_unsynced
        };
        write(offset_path, &o, FILE_MODE)?;
        write(time_path, &t, FILE_MODE)
    }

    /// Loads index files; `None` if missing or malformed (then the caller
    /// rebuilds from the data).
    pub fn read_files(offset_path: &Path, time_path: &Path, segment_len: u64) -> Option<Self> {
        let o = std::fs::read(offset_path).ok()?;
        let t = std::fs::read(time_path).ok()?;
        if o.len() % 8 != 0 || t.len() % 12 != 0 {
            return None;
        }
        let offsets: Vec<OffsetEntry> = o
            .chunks_exact(8)
            .map(|c| OffsetEntry {
                rel_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let times: Vec<TimeEntry> = t
            .chunks_exact(12)
            .map(|c| TimeEntry {
                timestamp: i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                rel_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
            })
            .collect();
        // A non-empty segment always has an entry for its first batch: an
        // empty file is one a crash cut short.
        if segment_len > 0 && (offsets.is_empty() || times.is_empty()) {
            return None;
        }
        let sorted = offsets
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position);
        if !sorted
            || offsets
                .iter()
                .any(|e| e.position as u64 >= segment_len.max(1))
        {
            return None;
        }
        Some(SegmentIndex {
            offsets,
            times,
            bytes_since_entry: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_lookup_and_round_trip() {
        let mut ix = SegmentIndex::default();
        for i in 0..100u32 {
            ix.on_append(i * 10, i * 1000, 1000, 5000 + i as i64, 4096);
        }
        assert!(ix.offsets.len() < 30);
        assert_eq!(ix.position_for(0), 0);
        let p = ix.position_for(555);
        assert!(p <= 55_000 && p > 40_000);
        assert_eq!(ix.rel_offset_for_time(0), Some(0));
        assert_eq!(ix.rel_offset_for_time(5050), Some(490));
        assert_eq!(ix.rel_offset_for_time(99_999), None);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("x.index"), dir.path().join("x.timeindex"));
        ix.write_files(&a, &b, true).unwrap();
        let back = SegmentIndex::read_files(&a, &b, 100_000).unwrap();
        assert_eq!(back.offsets, ix.offsets);
        assert_eq!(back.times, ix.times);
        std::fs::write(&a, []).unwrap();
        assert!(SegmentIndex::read_files(&a, &b, 100_000).is_none());
        std::fs::write(&a, [1, 2, 3]).unwrap();
        assert!(SegmentIndex::read_files(&a, &b, 100_000).is_none());
    }
}
