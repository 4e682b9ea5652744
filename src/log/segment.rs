//! One segment: a `.log` file of whole record batches starting at
//! `base_offset`, plus its sparse index.
//!
//! Appends happen under the owning partition's lock; reads do not take that
//! lock. A reader only ever looks at bytes below `size`, which is published
//! (Release) after the bytes are written, so it never sees half a batch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::files::{CachedFile, FileCache};
use super::index::SegmentIndex;
use super::LogError;

pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    /// The `.log` file; a descriptor is borrowed from the shared cache for
    /// each operation, so idle segments hold none.
    file: CachedFile,
    size: AtomicU64,
    /// Offset after the last batch in this segment.
    next_offset: AtomicI64,
    /// Wall-clock ms when the first batch went in (for `segment.ms` rolls).
    created_ms: AtomicI64,
    index: RwLock<SegmentIndex>,
    /// Set once `index` holds this segment's index: at once for new and
    /// active segments, on first use for sealed ones, so a restart reads no
    /// index file it does not need.
    index_ready: OnceLock<()>,
    index_interval: u32,
    /// Set when the cleaner replaces this segment: a descriptor opened
    /// before its file was deleted, so readers that still hold the segment
    /// read the old data to the end (the new file may reuse the name).
    pinned: OnceLock<Arc<File>>,
}

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
fn index_paths(dir: &Path, base: i64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.index")),
        dir.join(format!("{base:020}.timeindex")),
    )
}

/// What recovery found in a segment.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub truncated_bytes: u64,
    pub reason: Option<String>,
}

impl Segment {
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        files: &Arc<FileCache>,
    ) -> Result<Segment, LogError> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        if len != 0 {
            return Err(LogError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "segment not empty"),
            ));
        }
        let file = files.adopt(path.clone(), file);
        Ok(Segment {
            base_offset,
            path,
            file,
            size: AtomicU64::new(0),
            next_offset: AtomicI64::new(base_offset),
            created_ms: AtomicI64::new(0),
            index: RwLock::new(SegmentIndex::default()),
            index_ready: OnceLock::from(()),
            index_interval,
            pinned: OnceLock::new(),
        })
    }

    /// Takes the length from the file's metadata: no descriptor is opened
    /// until the segment is read or written.
    fn open_existing(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        index_interval: u32,
        files: &Arc<FileCache>,
    ) -> Result<Segment, LogError> {
        let path = log_path(dir, base_offset);
        let len = std::fs::metadata(&path)
            .map_err(|e| LogError::io(&path, e))?
            .len();
        let file = files.register(path.clone());
        Ok(Segment {
            base_offset,
            path,
            file,
            size: AtomicU64::new(len),
            next_offset: AtomicI64::new(next_offset),
            created_ms: AtomicI64::new(now_ms()),
            index: RwLock::new(SegmentIndex::default()),
            index_ready: OnceLock::new(),
            index_interval,
            pinned: OnceLock::new(),
        })
    }

    /// Opens a sealed segment: it was fsynced with its index files when
    /// sealed, and it ends where the next segment begins, so nothing is read
    /// now. Its index files are loaded on first use.
    pub fn open_sealed(
        dir: &Path,
        base_offset: i64,
        next_segment_base: i64,
        index_interval: u32,
        files: &Arc<FileCache>,
    ) -> Result<Segment, LogError> {
        Self::open_existing(dir, base_offset, next_segment_base, index_interval, files)
    }

    /// Opens the active segment. After a clean shutdown that left it
    /// `clean_len` bytes long, and it still is, its index files are trusted.
    /// Otherwise every batch is verified (sizes and CRCs) and a torn or
    /// corrupt tail is cut off, so nothing corrupt is ever served.
    pub fn open_active(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        clean_len: Option<u64>,
        files: &Arc<FileCache>,
    ) -> Result<(Segment, RecoveryReport), LogError> {
        let seg = Self::open_existing(dir, base_offset, base_offset, index_interval, files)?;
        let len = seg.size();
        if clean_len == Some(len) {
            let (ip, tp) = index_paths(dir, base_offset);
            if let Some(ix) = SegmentIndex::read_files(&ip, &tp, len) {
                if let Ok(next) = seg.next_offset_from_tail(&ix, len) {
                    seg.next_offset.store(next, Ordering::Release);
                    *seg.index.write().unwrap_or_else(|p| p.into_inner()) = ix;
                    let _ = seg.index_ready.set(());
                    return Ok((seg, RecoveryReport::default()));
                }
            }
        }
        let report = seg.scan_and_repair(true)?;
        let _ = seg.index_ready.set(());
        Ok((seg, report))
    }

    /// Loads a sealed segment's index on first use: from its files, or
    /// rebuilt from the batch headers when they are missing or damaged.
    fn ensure_index(&self) {
        self.index_ready.get_or_init(|| {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let (ip, tp) = index_paths(dir, self.base_offset);
            if let Some(ix) = SegmentIndex::read_files(&ip, &tp, self.size()) {
                *self.index.write().unwrap_or_else(|p| p.into_inner()) = ix;
            } else if let Err(e) = self.scan_and_repair(false) {
                // Reads still work (they scan from the segment start). Time
                // retention goes by the file's modification time, as Kafka
                // does for segments without timestamps.
                tracing::error!(segment = %self.path.display(), "cannot rebuild the index: {e}");
                let mtime = std::fs::metadata(&self.path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_else(now_ms);
                let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
                *ix = SegmentIndex::default();
                ix.times.push(super::index::TimeEntry {
                    timestamp: mtime,
                    rel_offset: 0,
                });
            }
        });
    }

    /// Reads the last indexed batch onward to find the segment's end offset.
    fn next_offset_from_tail(&self, ix: &SegmentIndex, len: u64) -> Result<i64, LogError> {
        let mut pos = ix.offsets.last().map(|e| e.position as u64).unwrap_or(0);
        let mut next = self.base_offset;
        let fd = self.fd()?;
        while pos < len {
            let h = self.read_header(&fd, pos)?;
            next = h.last_offset() + 1;
            pos += h.total_size() as u64;
        }
        Ok(next)
    }

    /// A descriptor for one operation, from the shared cache.
    fn fd(&self) -> Result<Arc<File>, LogError> {
        if let Some(f) = self.pinned.get() {
            return Ok(f.clone());
        }
        self.file.get().map_err(|e| LogError::io(&self.path, e))
    }

    /// Keeps this segment readable after its files are deleted or its name
    /// reused (see `pinned`). Its index is loaded first for the same reason.
    pub fn pin(&self) -> Result<(), LogError> {
        self.ensure_index();
        let f = self.file.get().map_err(|e| LogError::io(&self.path, e))?;
        let _ = self.pinned.set(f);
        Ok(())
    }

    /// The smallest batch max-timestamp in the segment (its time index's
    /// first entry): how old its oldest data is, for max.compaction.lag.ms.
    pub fn first_timestamp(&self) -> Option<i64> {
        self.ensure_index();
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .times
            .first()
            .map(|t| t.timestamp)
    }

    /// `fd` comes from one `fd()` per operation: a walk over many headers
    /// takes the cache's lock once, not once per batch.
    fn read_header(&self, fd: &File, pos: u64) -> Result<BatchHeader, LogError> {
        let mut hb = [0u8; HEADER_LEN];
        fd.read_exact_at(&mut hb, pos)
            .map_err(|e| LogError::io(&self.path, e))?;
        BatchHeader::parse(&hb)
            .filter(|h| h.total_size() >= HEADER_LEN)
            .ok_or_else(|| {
                LogError::CorruptBatch(format!("bad header at {pos} in {:?}", self.path))
            })
    }

    /// Walks every batch. With `verify`, whole batches are CRC-checked and
    /// the file is truncated at the first bad one.
    fn scan_and_repair(&self, verify: bool) -> Result<RecoveryReport, LogError> {
        let interval = self.index_interval;
        let len = self.size.load(Ordering::Acquire);
        let mut ix = SegmentIndex::default();
        let mut pos = 0u64;
        let mut next = self.base_offset;
        let mut report = RecoveryReport::default();
        let mut buf = Vec::new();
        let fd = self.fd()?;
        while pos < len {
            let problem = match self.read_header(&fd, pos) {
                Err(e) => Some(e.to_string()),
                Ok(h) => {
                    let size = h.total_size() as u64;
                    if pos + size > len {
                        Some(format!("torn batch at byte {pos}"))
                    } else if h.base_offset < next {
                        Some(format!(
                            "offset {} goes backwards at byte {pos}",
                            h.base_offset
                        ))
                    } else {
                        let checked = if verify {
                            buf.resize(size as usize, 0);
                            fd.read_exact_at(&mut buf, pos)
                                .map_err(|e| LogError::io(&self.path, e))?;
                            batch::check_batch(&buf)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        } else {
                            Ok(())
                        };
                        match checked {
                            Err(e) => Some(e),
                            Ok(()) => {
                                ix.on_append(
                                    (h.base_offset - self.base_offset) as u32,
                                    pos as u32,
                                    size as u32,
                                    h.max_timestamp,
                                    interval,
                                );
                                next = h.last_offset() + 1;
                                pos += size;
                                None
                            }
                        }
                    }
                }
            };
            if let Some(reason) = problem {
                if !verify {
                    return Err(LogError::CorruptBatch(format!("{:?}: {reason}", self.path)));
                }
                report.truncated_bytes = len - pos;
                report.reason = Some(reason);
                fd.set_len(pos)
                    .and_then(|_| fd.sync_all())
                    .map_err(|e| LogError::io(&self.path, e))?;
                self.size.store(pos, Ordering::Release);
                break;
            }
        }
        self.next_offset.store(next, Ordering::Release);
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = ix;
        Ok(report)
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms.load(Ordering::Relaxed)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.ensure_index();
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .max_timestamp()
    }

    /// Appends already-stamped batches. Caller holds the partition lock.
    /// `batches` gives (relative offset, position within `data`, size, max ts).
    pub fn append(
        &self,
        data: &[u8],
        batches: &[(i64, usize, usize, i64)],
        next_offset: i64,
    ) -> Result<(), LogError> {
        self.ensure_index();
        let start = self.size.load(Ordering::Acquire);
        let fd = self.fd()?;
        if let Err(e) = (&*fd).write_all(data) {
            // Leave no partial batch behind for readers or recovery.
            let _ = fd.set_len(start);
            return Err(LogError::io(&self.path, e));
        }
        drop(fd);
        {
            let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
            for &(base, at, size, max_ts) in batches {
                ix.on_append(
                    (base - self.base_offset) as u32,
                    (start as usize + at) as u32,
                    size as u32,
                    max_ts,
                    self.index_interval,
                );
            }
        }
        if start == 0 {
            self.created_ms.store(now_ms(), Ordering::Relaxed);
        }
        self.next_offset.store(next_offset, Ordering::Release);
        self.size
            .store(start + data.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Position of the first batch containing or after `offset`, if any
    /// whole batch at or after it lies below `limit`.
    fn locate(
        &self,
        fd: &File,
        offset: i64,
        limit: u64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        self.ensure_index();
        let mut pos = self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .position_for(rel) as u64;
        while pos + (HEADER_LEN as u64) <= limit {
            let h = self.read_header(fd, pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting with the one that holds `offset`: up to
    /// `max_bytes`, but always the first batch in full so a consumer can make
    /// progress past a batch larger than its limit (KIP-74).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self
            .read_below(offset, max_bytes, i64::MAX)?
            .map(|(bytes, _)| bytes))
    }

    /// [`Segment::read`], keeping only the batches that start below
    /// `upper` (a read_committed fetch stops at the last stable offset).
    /// Also returns the offset after the last batch kept, found by the one
    /// walk over the headers that cuts the read to whole batches, so the
    /// caller need not parse them again.
    pub fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Option<(Vec<u8>, i64)>, LogError> {
        let limit = self.size();
        let fd = self.fd()?;
        let Some((pos, first)) = self.locate(&fd, offset, limit)? else {
            return Ok(None);
        };
        let avail = (limit - pos) as usize;
        let want = avail.min(max_bytes.max(first.total_size()));
        let mut buf = vec![0u8; want];
        fd.read_exact_at(&mut buf, pos)
            .map_err(|e| LogError::io(&self.path, e))?;
        let (whole, next) = batch::whole_batches_below(&buf, upper);
        buf.truncate(whole);
        Ok(if buf.is_empty() {
            None
        } else {
            Some((buf, next))
        })
    }

    /// The first record at or after `min_offset` with a timestamp >= `ts`
    /// (offset, timestamp): record-precise in uncompressed batches, else
    /// the batch's first offset (at least `min_offset`) and max timestamp.
    pub fn offset_for_time(
        &self,
        ts: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        self.ensure_index();
        let start_rel = self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rel_offset_for_time(ts);
        let Some(rel) = start_rel else {
            return Ok(None);
        };
        let limit = self.size();
        let fd = self.fd()?;
        let Some((mut pos, _)) = self.locate(&fd, self.base_offset + rel as i64, limit)? else {
            return Ok(None);
        };
        while pos + (HEADER_LEN as u64) <= limit {
            let h = self.read_header(&fd, pos)?;
            if h.max_timestamp >= ts && h.last_offset() >= min_offset {
                // Record precision where the batch is uncompressed (Kafka's
                // answer); the batch start otherwise.
                if h.compression() == 0 {
                    let mut buf = vec![0u8; h.total_size()];
                    if fd.read_exact_at(&mut buf, pos).is_ok() {
                        if let Some(found) = batch::first_record_at_or_after(&buf, ts, min_offset) {
                            return Ok(Some(found));
                        }
                        // The records late enough lie below `min_offset`:
                        // the answer is in a later batch.
                        pos += h.total_size() as u64;
                        continue;
                    }
                }
                return Ok(Some((h.base_offset.max(min_offset), h.max_timestamp)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Every batch header, in order (reads headers only, not records).
    pub fn headers(&self) -> Result<Vec<BatchHeader>, LogError> {
        let limit = self.size();
        let mut pos = 0;
        let mut out = Vec::new();
        let fd = self.fd()?;
        while pos + (HEADER_LEN as u64) <= limit {
            let h = self.read_header(&fd, pos)?;
            pos += h.total_size() as u64;
            out.push(h);
        }
        Ok(out)
    }

    pub fn sync(&self) -> Result<(), LogError> {
        self.fd()?
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Makes a segment immutable on disk: data and index files fsynced.
    pub fn seal(&self, dir: &Path) -> Result<(), LogError> {
        self.sync()?;
        self.write_index(dir, true)
    }

    /// Writes the index files; without `sync` a crash may lose them (they
    /// are rebuilt from the data then), which spares the cleaner four
    /// fsyncs per segment it writes.
    pub fn write_index(&self, dir: &Path, sync: bool) -> Result<(), LogError> {
        let (ip, tp) = index_paths(dir, self.base_offset);
        self.ensure_index();
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        ix.write_files(&ip, &tp, sync)
            .map_err(|e| LogError::io(&ip, e))
    }

    /// Removes the segment's files; a reader in the middle of an operation
    /// keeps its descriptor until it is done.
    pub fn delete_files(&self, dir: &Path) {
        let (ip, tp) = index_paths(dir, self.base_offset);
        for p in [&self.path, &ip, &tp] {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
