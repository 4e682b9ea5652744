//! One partition's log: an ordered list of segments, the log start and end
//! offsets, and group-committed durability for `acks=all`.
//!
//! Writers serialize on `state`; the lock is never held across an await and
//! never while fsyncing the active segment. Readers take it only to pick the
//! segment to read, then read without it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use super::batch::{self, BatchSpan};
use super::cleaner::{checkpoint, swap};
use super::files::FileCache;
use super::permissions::{create_private_dir, FILE_MODE};
use super::producer_state::{ProducerStates, SequenceCheck, PRODUCER_EXPIRY_MS};
use super::segment::{self, now_ms, Segment};
use super::state_snapshot;
use super::topic_config::{EffectiveConfig, TimestampType};
use super::txn_index::{aborted_overlapping, parse_marker, AbortedTxn, Marker, TxnIndex};
use super::watch::Watchers;
use super::LogError;
use crate::util::atomic_file::{sync_dir, write_atomic};

struct State {
    segments: Vec<Arc<Segment>>,
    /// Idempotent producers seen on this partition (sequence dedupe).
    producers: ProducerStates,
    /// Open and aborted transactions (last stable offset, read_committed).
    txns: TxnIndex,
}

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    dir: PathBuf,
    index_interval: u32,
    files: Arc<FileCache>,
    state: Mutex<State>,
    end_offset: AtomicI64,
    log_start: AtomicI64,
    /// Highest offset (exclusive) known to be fsynced.
    durable: watch::Sender<i64>,
    /// Highest offset (exclusive) an acks=all request waits to be fsynced;
    /// the flush loop runs while it is above `durable`.
    flush_to: AtomicI64,
    /// A flush loop is running (see `flush_loop`): at most one per
    /// partition, so fsyncs of one file never overlap.
    flushing: AtomicBool,
    /// The runtime whose blocking pool runs the flush loops.
    runtime: tokio::runtime::Handle,
    me: Weak<Partition>,
    storage_failed: AtomicBool,
    deleted: AtomicBool,
    /// The cleaner's bookkeeping (first dirty offset, last clean).
    cleaner: Mutex<checkpoint::Checkpoint>,
    /// Long-poll fetches waiting for this partition to grow.
    watchers: Watchers,
}

/// What the cleaner needs to know of a partition, read under its lock.
pub struct CleanView {
    pub segments: Vec<Arc<Segment>>,
    pub log_start: i64,
    /// First offset of the oldest open transaction (or the end).
    pub last_stable: i64,
    pub aborted: Vec<AbortedTxn>,
    /// Base offset of each idempotent producer's last data batch.
    pub producer_last: std::collections::HashMap<i64, i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct AppendResult {
    pub base_offset: i64,
    /// Offset after the last appended record.
    pub end_offset: i64,
    /// -1 unless the topic uses log-append time.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// A retried idempotent batch already in the log: nothing was written
    /// and `base_offset` is where it was written the first time.
    pub duplicate: bool,
}

#[derive(Debug, Default)]
pub struct ReadResult {
    pub records: Option<Vec<u8>>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One partition's part of a Fetch answer (see [`Partition::read_for_fetch`]).
#[derive(Debug, Default)]
pub struct FetchRead {
    /// Whole batches from the fetch offset on; `None` when there are none.
    pub records: Option<Vec<u8>>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed only: the aborted transactions overlapping
    /// `[fetch offset, end of records)`, which the client drops records by.
    pub aborted: Vec<AbortedTxn>,
}

const LOG_START_FILE: &str = "log-start-offset";

impl Partition {
    /// Opens (recovering) or creates the partition directory. Must be
    /// called inside a Tokio runtime (its blocking pool runs the fsyncs).
    pub fn open(
        topic: Arc<str>,
        index: i32,
        dir: PathBuf,
        index_interval: u32,
        files: &Arc<FileCache>,
    ) -> Result<Arc<Partition>, LogError> {
        create_private_dir(&dir).map_err(|e| LogError::io(&dir, e))?;
        let finished = swap::recover(&dir)?;
        if finished > 0 {
            tracing::warn!(topic = %topic, partition = index, swaps = finished,
                "finished a log clean interrupted by a crash");
        }
        let mut bases = list_segment_bases(&dir)?;
        bases.sort_unstable();
        let snapshot = state_snapshot::take_clean(&dir);
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, base) in bases.iter().enumerate() {
            let seg = match bases.get(i + 1) {
                Some(next) => Segment::open_sealed(&dir, *base, *next, index_interval, files)?,
                None => {
                    let clean_len = snapshot
                        .as_ref()
                        .filter(|s| s.head.active_base == *base)
                        .map(|s| s.head.active_len);
                    let (seg, report) =
                        Segment::open_active(&dir, *base, index_interval, clean_len, files)?;
                    if let Some(reason) = report.reason {
                        tracing::warn!(
                            topic = %topic, partition = index, segment = base,
                            truncated_bytes = report.truncated_bytes,
                            "recovery truncated the log tail: {reason}"
                        );
                    }
                    seg
                }
            };
            segments.push(Arc::new(seg));
        }
        let stored_start = read_log_start(&dir);
        if segments.is_empty() {
            let base = stored_start.unwrap_or(0);
            segments.push(Arc::new(Segment::create(
                &dir,
                base,
                index_interval,
                files,
            )?));
        }
        let end = segments.last().map(|s| s.next_offset()).unwrap_or(0);
        let first_base = segments[0].base_offset;
        let start = stored_start.unwrap_or(first_base).clamp(first_base, end);
        let now = segments.last().map(|s| state_snapshot::Head {
            active_base: s.base_offset,
            active_len: s.size(),
            end_offset: end,
        });
        let (mut producers, txns) = match snapshot {
            // The log is exactly as the clean shutdown left it.
            Some(snap) if Some(snap.head) == now => (snap.producers, snap.txns),
            _ => recover_producers(&dir, &segments),
        };
        producers.expire(now_ms() - PRODUCER_EXPIRY_MS, |pid| txns.is_open(pid));
        let cleaner = Mutex::new(checkpoint::load(&dir));
        let (durable, _) = watch::channel(end);
        Ok(Arc::new_cyclic(|me| Partition {
            topic,
            index,
            dir,
            index_interval,
            files: files.clone(),
            state: Mutex::new(State {
                segments,
                producers,
                txns,
            }),
            end_offset: AtomicI64::new(end),
            log_start: AtomicI64::new(start),
            durable,
            flush_to: AtomicI64::new(end),
            flushing: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            me: me.clone(),
            storage_failed: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            cleaner,
            watchers: Watchers::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn end_offset(&self) -> i64 {
        self.end_offset.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Appends validated batches, assigning offsets (and log-append time if
    /// configured). Returns once the bytes are in the file (page cache).
    pub fn append(
        &self,
        records: &[u8],
        spans: &[BatchSpan],
        cfg: &EffectiveConfig,
    ) -> Result<AppendResult, LogError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(LogError::Deleted);
        }
        let now = now_ms();
        let lat = (cfg.timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let mut st = self.lock();
        let base = self.end_offset.load(Ordering::Acquire);
        for (i, span) in spans.iter().enumerate() {
            match st.producers.check(&span.header) {
                SequenceCheck::Append => {}
                // A retry of something already written: acknowledge it
                // again at its original offset, write nothing.
                SequenceCheck::Duplicate(off) if i == 0 => {
                    return Ok(AppendResult {
                        base_offset: off,
                        end_offset: base,
                        log_append_time: -1,
                        log_start_offset: self.log_start_offset(),
                        duplicate: true,
                    });
                }
                SequenceCheck::Duplicate(_) => {
                    return Err(LogError::OutOfOrderSequence(
                        "duplicate batch after a new one".into(),
                    ))
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(LogError::OutOfOrderSequence(format!(
                        "producer {} expected sequence {expected}, got {}",
                        span.header.producer_id, span.header.base_sequence
                    )))
                }
                SequenceCheck::StaleEpoch { current } => {
                    return Err(LogError::InvalidProducerEpoch {
                        got: span.header.producer_epoch,
                        current,
                    })
                }
                SequenceCheck::UnknownProducer => {
                    return Err(LogError::UnknownProducerId(span.header.producer_id))
                }
            }
        }
        // Only once the batches are known to be written: a retried
        // duplicate writes nothing and must not roll the segment either.
        let needs_roll = {
            let active = st.segments.last().ok_or(LogError::Deleted)?;
            // The active segment is never cleaned: on a compacted topic it
            // rolls by max.compaction.lag.ms too, as in Kafka.
            let roll_ms = if cfg.cleanup.compact {
                cfg.segment_ms.min(cfg.max_compaction_lag_ms)
            } else {
                cfg.segment_ms
            };
            active.size() > 0
                && (active.size() + records.len() as u64 > cfg.segment_bytes
                    || now - active.created_ms() >= roll_ms
                    || active.size() + records.len() as u64 > u32::MAX as u64)
        };
        if needs_roll {
            self.roll_locked(&mut st)?;
        }
        let mut data = records.to_vec();
        let mut next = base;
        let mut placed = Vec::with_capacity(spans.len());
        for span in spans {
            let b = &mut data[span.start..span.end()];
            batch::stamp_batch(b, next, lat);
            let max_ts = lat.unwrap_or(span.header.max_timestamp);
            placed.push((next, span.start, span.header.total_size(), max_ts));
            next += span.header.last_offset_delta as i64 + 1;
        }
        let active = st.segments.last().ok_or(LogError::Deleted)?.clone();
        active.append(&data, &placed, next)?;
        for (span, (off, ..)) in spans.iter().zip(&placed) {
            st.producers.record(&span.header, *off);
            let marker = if span.header.is_control() {
                parse_marker(&data[span.start..span.end()])
            } else {
                None
            };
            st.txns.on_batch(&span.header, *off, marker);
        }
        self.end_offset.store(next, Ordering::Release);
        drop(st);
        // After the unlock: a fetch whose read took the lock before this
        // append is registered by now (see `watch`).
        self.watchers.wake();
        Ok(AppendResult {
            base_offset: base,
            end_offset: next,
            log_append_time: lat.unwrap_or(-1),
            log_start_offset: self.log_start_offset(),
            duplicate: false,
        })
    }

    /// Seals the active segment (fsync + index files) and starts a new one.
    fn roll_locked(&self, st: &mut State) -> Result<(), LogError> {
        let end = self.end_offset.load(Ordering::Acquire);
        if let Some(active) = st.segments.last() {
            active.seal(&self.dir)?;
        }
        let seg = Segment::create(&self.dir, end, self.index_interval, &self.files)?;
        sync_dir(&self.dir).map_err(|e| LogError::io(&self.dir, e))?;
        st.segments.push(Arc::new(seg));
        let State {
            producers, txns, ..
        } = &mut *st;
        producers.expire(now_ms() - PRODUCER_EXPIRY_MS, |pid| txns.is_open(pid));
        if let Err(e) = state_snapshot::write_at_roll(&self.dir, end, producers, txns) {
            // Only recovery speed depends on it.
            tracing::warn!(topic = %self.topic, partition = self.index, "producer snapshot not written: {e}");
        }
        // Everything before the new segment was just fsynced.
        self.mark_durable(end);
        Ok(())
    }

    /// Waits until every offset below `offset` is on disk. Concurrent
    /// callers share fsyncs: one flush covers everything appended before it.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        let mut rx = self.durable.subscribe();
        self.flush_up_to(offset);
        loop {
            if self.storage_failed.load(Ordering::Acquire) {
                return Err(LogError::io(
                    &self.dir,
                    std::io::Error::other("fsync failed earlier on this partition"),
                ));
            }
            if *rx.borrow_and_update() >= offset {
                return Ok(());
            }
            if rx.changed().await.is_err() || self.deleted.load(Ordering::Acquire) {
                return Err(LogError::Deleted);
            }
        }
    }

    /// Everything below `end` is on disk: wakes the acks=all waiters for it.
    /// The mark only moves forward.
    fn mark_durable(&self, end: i64) {
        self.durable.send_if_modified(|d| {
            let changed = end > *d;
            *d = (*d).max(end);
            changed
        });
    }

    /// Asks for an fsync of everything appended so far without waiting
    /// for it.
    pub fn request_flush(&self) {
        self.flush_up_to(self.end_offset());
    }

    /// Group commit: makes sure a flush loop will fsync at least up to
    /// `offset`, starting one on the blocking pool unless one is running
    /// (that one sees the raised `flush_to` before it stops).
    fn flush_up_to(&self, offset: i64) {
        // SeqCst here and in `flush_loop`: raise `flush_to` then test
        // `flushing`, against clear `flushing` then test `flush_to`; one
        // side sees the other's store, so no request is left unserved.
        self.flush_to.fetch_max(offset, Ordering::SeqCst);
        if *self.durable.borrow() >= offset
            || self.storage_failed.load(Ordering::Acquire)
            || self.flushing.swap(true, Ordering::SeqCst)
        {
            return;
        }
        match self.me.upgrade() {
            Some(p) => {
                self.runtime.spawn_blocking(move || flush_loop(&p));
            }
            None => self.flushing.store(false, Ordering::SeqCst),
        }
    }

    /// Clean shutdown: fsyncs the active segment, writes its index files
    /// and snapshots producer and transaction state, so the next start
    /// reads none of the log (see `clean_shutdown`).
    pub fn close_clean(&self) -> Result<(), LogError> {
        if self.storage_failed.load(Ordering::Acquire) {
            // An fsync failed earlier: the file may have lost pages that a
            // later fsync no longer reports, so the next start must verify.
            return Err(LogError::io(
                &self.dir,
                std::io::Error::other("not marking a clean shutdown after an fsync failure"),
            ));
        }
        let st = self.lock();
        let end = self.end_offset();
        let Some(active) = st.segments.last() else {
            return Ok(());
        };
        active.seal(&self.dir)?;
        let head = state_snapshot::Head {
            active_base: active.base_offset,
            active_len: active.size(),
            end_offset: end,
        };
        state_snapshot::write_clean(&self.dir, head, &st.producers, &st.txns)
            .map_err(|e| LogError::io(&self.dir, e))?;
        drop(st);
        self.mark_durable(end);
        Ok(())
    }

    pub fn last_stable_offset(&self) -> i64 {
        let st = self.lock();
        st.txns.last_stable_offset(self.end_offset())
    }

    /// Reads whole batches from `offset` on, up to `max_bytes` (at least one
    /// batch). An offset equal to the end yields no records.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let r = self.read_for_fetch(offset, Some(max_bytes), false)?;
        Ok(ReadResult {
            records: r.records,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
        })
    }

    /// Everything one partition of a Fetch answer needs, under one lock:
    /// the batches from `offset` (up to `max_bytes`, at least one whole
    /// batch), the high watermark, last stable offset and log start, and
    /// for `read_committed` the aborted transactions overlapping what was
    /// read. With `read_committed`, nothing at or past the last stable
    /// offset is returned: open transactions stay invisible until they end.
    /// `max_bytes: None` reports the offsets only (a Fetch whose answer is
    /// already full), without checking `offset`.
    ///
    /// The lock is held only to pick the segment and copy the offsets (and
    /// share the aborted list); the file is read without it.
    pub fn read_for_fetch(
        &self,
        offset: i64,
        max_bytes: Option<usize>,
        read_committed: bool,
    ) -> Result<FetchRead, LogError> {
        let (segment, upper, aborted, mut out) = {
            let st = self.lock();
            let start = self.log_start_offset();
            let end = self.end_offset();
            let out = FetchRead {
                records: None,
                high_watermark: end,
                last_stable_offset: st.txns.last_stable_offset(end),
                log_start_offset: start,
                aborted: Vec::new(),
            };
            let Some(max_bytes) = max_bytes else {
                return Ok(out);
            };
            if offset < start || offset > end {
                return Err(LogError::OffsetOutOfRange { offset, start, end });
            }
            let upper = if read_committed {
                out.last_stable_offset
            } else {
                end
            };
            let aborted = read_committed.then(|| st.txns.aborted_shared());
            let segment = (offset < upper).then(|| {
                let i = st
                    .segments
                    .partition_point(|s| s.base_offset <= offset)
                    .saturating_sub(1);
                st.segments[i].clone()
            });
            (segment.map(|s| (s, max_bytes)), upper, aborted, out)
        };
        let mut read_end = offset;
        let mut next = segment;
        while let Some((seg, max_bytes)) = next {
            if let Some((bytes, after)) = seg.read_below(offset, max_bytes, upper)? {
                read_end = after;
                out.records = Some(bytes);
                break;
            }
            // Nothing at or after `offset` in that segment: compaction
            // emptied its tail. The only path that locks again, and rare.
            next = self
                .segment_after(seg.base_offset)
                .filter(|s| s.base_offset < upper)
                .map(|s| (s, max_bytes));
        }
        if let Some(aborted) = aborted {
            // Kafka's range: from the fetch offset to the end of the read.
            out.aborted = aborted_overlapping(&aborted, offset, read_end);
        }
        Ok(out)
    }

    /// The segment following the one based at `base`, if any.
    fn segment_after(&self, base: i64) -> Option<Arc<Segment>> {
        let st = self.lock();
        let i = st.segments.partition_point(|s| s.base_offset <= base);
        st.segments.get(i).cloned()
    }

    /// Writes a transaction marker (COMMIT or ABORT control batch) for
    /// `producer_id` at `epoch`. Returns the offset after it.
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: Marker,
        cfg: &EffectiveConfig,
    ) -> Result<i64, LogError> {
        let bytes = super::txn_markers::encode(producer_id, epoch, marker)?;
        let spans = batch::validate_produce_records(&bytes, usize::MAX)?;
        Ok(self.append(&bytes, &spans, cfg)?.end_offset)
    }

    /// Kafka's ListOffsets by timestamp: the first record from the log
    /// start on whose timestamp is at least `ts` (see
    /// [`Segment::offset_for_time`]). Returns (offset, timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let segments = self.lock().segments.clone();
        let start = self.log_start_offset();
        for seg in &segments {
            if seg.max_timestamp().is_none_or(|m| m < ts) {
                continue;
            }
            if let Some(found) = seg.offset_for_time(ts, start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp (ListOffsets -3).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let segments = self.lock().segments.clone();
        let best = segments
            .iter()
            .filter_map(|s| s.max_timestamp().map(|t| (t, s)))
            .max_by_key(|(t, _)| *t);
        match best {
            Some((t, seg)) => Ok(seg.offset_for_time(t, 0)?.map(|(o, _)| (o, t))),
            None => Ok(None),
        }
    }

    /// DeleteRecords: moves the log start offset forward (never back) and
    /// drops segments that lie entirely below it.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let end = self.end_offset();
        let target = if offset == -1 { end } else { offset };
        let start = self.log_start_offset();
        if target < 0 || target > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        if target > start {
            write_atomic(
                &self.dir.join(LOG_START_FILE),
                target.to_string().as_bytes(),
                FILE_MODE,
            )
            .map_err(|e| LogError::io(&self.dir, e))?;
            self.log_start.store(target, Ordering::Release);
            self.remove_segments(|_, next_base, _| next_base.is_some_and(|n| n <= target));
        }
        Ok(self.log_start_offset())
    }

    /// Deletes whole sealed segments for which `doomed(segment, next_base,
    /// bytes_after_removal)` holds, oldest first, stopping at the first that
    /// survives. Returns how many went.
    pub fn remove_segments(
        &self,
        mut doomed: impl FnMut(&Segment, Option<i64>, u64) -> bool,
    ) -> usize {
        let removed: Vec<Arc<Segment>> = {
            let mut st = self.lock();
            let mut total: u64 = st.segments.iter().map(|s| s.size()).sum();
            let mut n = 0;
            while n + 1 < st.segments.len() {
                let seg = &st.segments[n];
                let next = Some(st.segments[n + 1].base_offset);
                if !doomed(seg, next, total - seg.size()) {
                    break;
                }
                total -= seg.size();
                n += 1;
            }
            let gone: Vec<_> = st.segments.drain(..n).collect();
            if let Some(first) = st.segments.first() {
                let new_start = first.base_offset;
                self.log_start.fetch_max(new_start, Ordering::AcqRel);
            }
            st.txns.forget_aborted_before(self.log_start_offset());
            gone
        };
        for seg in &removed {
            seg.delete_files(&self.dir);
        }
        removed.len()
    }

    /// Rolls the active segment if it holds data, so retention can delete it.
    pub fn roll_if_nonempty(&self) -> Result<(), LogError> {
        let mut st = self.lock();
        if st.segments.last().is_some_and(|s| s.size() > 0) {
            self.roll_locked(&mut st)?;
        }
        Ok(())
    }

    pub fn active_max_timestamp(&self) -> Option<i64> {
        self.lock().segments.last().and_then(|s| s.max_timestamp())
    }

    /// The segments and transaction state the cleaner plans a pass with.
    pub fn clean_view(&self) -> CleanView {
        let st = self.lock();
        let end = self.end_offset();
        CleanView {
            segments: st.segments.clone(),
            log_start: self.log_start_offset(),
            last_stable: st.txns.last_stable_offset(end),
            aborted: st.txns.aborted_between(i64::MIN, i64::MAX),
            producer_last: st
                .producers
                .iter()
                .filter_map(|(pid, e)| e.batches.back().map(|b| (*pid, b.base_offset)))
                .collect(),
        }
    }

    pub fn cleaner_checkpoint(&self) -> checkpoint::Checkpoint {
        self.cleaner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the cleaner's progress, in memory and on disk.
    pub fn set_cleaner_checkpoint(&self, c: checkpoint::Checkpoint) -> Result<(), LogError> {
        let mut cur = self.cleaner.lock().unwrap_or_else(|p| p.into_inner());
        checkpoint::store(&self.dir, &c).map_err(|e| LogError::io(&self.dir, e))?;
        *cur = c;
        Ok(())
    }

    /// Puts the cleaned file `cleaned` (fsynced) in place of `old`, sealed
    /// segments that follow each other and end where `end` begins (see
    /// `cleaner::swap` for the steps and what a crash between them leaves).
    /// Returns the new segment, or `None` when `old` is no longer what the
    /// log holds there (retention or DeleteRecords removed some of it
    /// meanwhile); `cleaned` is deleted then.
    pub fn replace_segments(
        &self,
        old: &[Arc<Segment>],
        cleaned: &Path,
        end: i64,
    ) -> Result<Option<Arc<Segment>>, LogError> {
        let io = |e| LogError::io(&self.dir, e);
        let first = old.first().ok_or(LogError::Deleted)?;
        let base = first.base_offset;
        swap::fault("cleaned-written")?;
        let mut st = self.lock();
        let at = st.segments.iter().position(|s| Arc::ptr_eq(s, first));
        let still_there = !self.deleted.load(Ordering::Acquire)
            && at.is_some_and(|i| {
                // Never the active segment, and exactly the same run.
                i + old.len() < st.segments.len()
                    && st.segments[i..i + old.len()]
                        .iter()
                        .zip(old)
                        .all(|(a, b)| Arc::ptr_eq(a, b))
                    && st.segments[i + old.len()].base_offset == end
            });
        let Some(i) = at.filter(|_| still_there) else {
            drop(st);
            let _ = std::fs::remove_file(cleaned);
            return Ok(None);
        };
        // Under the lock from here: retention and DeleteRecords must not
        // remove a segment this swap is replacing, and a reader must never
        // find the new name missing. Only renames, unlinks and one
        // directory fsync happen while it is held.
        let swap_file = swap::swap_path(&self.dir, base, end);
        std::fs::rename(cleaned, &swap_file).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        swap::fault("swap-committed")?;
        for seg in old {
            seg.pin()?;
        }
        for (n, seg) in old.iter().enumerate() {
            swap::delete_segment_files(&self.dir, seg.base_offset).map_err(io)?;
            if n == 0 {
                swap::fault("old-partly-deleted")?;
            }
        }
        swap::fault("old-deleted")?;
        std::fs::rename(&swap_file, segment::log_path(&self.dir, base)).map_err(io)?;
        let seg = Arc::new(Segment::open_sealed(
            &self.dir,
            base,
            end,
            self.index_interval,
            &self.files,
        )?);
        st.segments.splice(i..i + old.len(), [seg.clone()]);
        drop(st);
        // No directory fsync for the deletions and the last rename: until
        // they are durable the swap file is, and recovery finishes them.
        swap::fault("swapped")?;
        Ok(Some(seg))
    }

    /// Marks the partition gone: waiters are released, appends refused.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.durable.send_modify(|_| {});
        // Long polls re-read and answer UNKNOWN_TOPIC_OR_PARTITION.
        self.watchers.wake();
    }

    /// The long-poll fetches waiting on this partition.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }
}

/// Group commit, on a blocking-pool thread: fsyncs the active segment
/// while requests wait for more than is durable. Each fsync covers every
/// append made before it starts and releases the waiters up to the end
/// offset read then; appends go on meanwhile (the partition lock is not
/// held), and the next fsync starts as soon as one ends, without a trip
/// through the async runtime. Partitions flush in parallel, each on its own
/// thread: concurrent fsyncs of different files share the journal commits.
fn flush_loop(p: &Partition) {
    loop {
        while !p.deleted.load(Ordering::Acquire)
            && p.flush_to.load(Ordering::SeqCst) > *p.durable.borrow()
        {
            let (seg, target) = {
                let st = p.lock();
                (st.segments.last().cloned(), p.end_offset())
            };
            // Nothing appended beyond what is durable (a roll fsynced it):
            // no fsync, which would still cost the disk a cache flush.
            let Some(seg) = seg.filter(|_| target > *p.durable.borrow()) else {
                break;
            };
            if let Err(e) = seg.sync() {
                tracing::error!(topic = %p.topic, partition = p.index, "fsync failed: {e}");
                p.storage_failed.store(true, Ordering::Release);
                p.durable.send_modify(|_| {});
                break;
            }
            p.mark_durable(target);
        }
        p.flushing.store(false, Ordering::SeqCst);
        // A request that raised `flush_to` after the check above found the
        // loop still running and left its fsync to it.
        let more = !p.deleted.load(Ordering::Acquire)
            && !p.storage_failed.load(Ordering::Acquire)
            && p.flush_to.load(Ordering::SeqCst) > *p.durable.borrow()
            && p.end_offset() > *p.durable.borrow();
        if !more || p.flushing.swap(true, Ordering::SeqCst) {
            return;
        }
    }
}

/// Rebuilds idempotent-producer and transaction state after a crash: from
/// the newest roll snapshot, replaying the batch headers of the segments
/// after it; from the start of the log without one. The caller expires
/// producers idle for more than a day, as Kafka does.
fn recover_producers(dir: &Path, segments: &[Arc<Segment>]) -> (ProducerStates, TxnIndex) {
    let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
    let (mut states, mut txns, from) = match state_snapshot::latest_at_segment(dir, &bases) {
        Some(snap) => {
            let from = bases.partition_point(|b| *b < snap.head.active_base);
            (snap.producers, snap.txns, from)
        }
        None => (ProducerStates::default(), TxnIndex::default(), 0),
    };
    for seg in &segments[from..] {
        match seg.headers() {
            Ok(hs) => {
                for h in hs.iter().filter(|h| h.producer_id >= 0) {
                    states.record(h, h.base_offset);
                    // Transactions are rebuilt whatever their age: an
                    // aborted one stays invisible to read_committed forever.
                    let marker = if h.is_control() {
                        seg.read(h.base_offset, 0)
                            .ok()
                            .flatten()
                            .and_then(|b| parse_marker(&b))
                    } else {
                        None
                    };
                    txns.on_batch(h, h.base_offset, marker);
                }
            }
            Err(e) => tracing::warn!("cannot rebuild producer state: {e}"),
        }
    }
    (states, txns)
}

/// The base offsets of the `.log` files in a partition directory, unsorted.
pub fn list_segment_bases(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<i64>() {
                out.push(base);
            }
        }
    }
    Ok(out)
}

/// The log start offset DeleteRecords stored, if any.
pub fn read_log_start(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(LOG_START_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

pub fn segment_file(dir: &Path, base: i64) -> PathBuf {
    segment::log_path(dir, base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_idempotent_batch;
    use crate::log::topic_config;
    use crate::log::LogConfig;

    const PID: i64 = 7;

    /// Segments of about three batches, so a partition has sealed ones.
    fn small_segments() -> EffectiveConfig {
        let mut c = topic_config::effective(&LogConfig::default(), &Default::default());
        c.segment_bytes = 200;
        c
    }

    fn open(dir: &Path) -> Arc<Partition> {
        Partition::open("t".into(), 0, dir.to_path_buf(), 64, &FileCache::new(8)).unwrap()
    }

    fn append(p: &Partition, seq: i32, cfg: &EffectiveConfig) -> AppendResult {
        append_as(p, PID, seq, now_ms(), cfg)
    }

    fn append_as(
        p: &Partition,
        pid: i64,
        seq: i32,
        ts: i64,
        cfg: &EffectiveConfig,
    ) -> AppendResult {
        let b = make_idempotent_batch(pid, 0, seq, 1, ts);
        let spans = batch::validate_produce_records(&b, usize::MAX).unwrap();
        p.append(&b, &spans, cfg).unwrap()
    }

    fn active_segment(dir: &Path) -> PathBuf {
        let mut bases = list_segment_bases(dir).unwrap();
        bases.sort_unstable();
        segment_file(dir, *bases.last().unwrap())
    }

    /// Flips one byte inside the last batch's records: only a CRC check
    /// (full recovery) notices it.
    fn damage_last_record_byte(dir: &Path) {
        let path = active_segment(dir);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, data).unwrap();
    }

    #[tokio::test]
    async fn clean_restart_trusts_the_snapshot_and_reads_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_segments();
        let p = open(dir.path());
        for seq in 0..10 {
            assert_eq!(append(&p, seq, &cfg).base_offset, seq as i64);
        }
        assert!(p.segment_count() >= 3, "{} segments", p.segment_count());
        p.close_clean().unwrap();
        drop(p);
        assert!(state_snapshot::clean_path(dir.path()).exists());
        // Sealed segments load their index on first use: one with its
        // index files gone is still read correctly.
        let first = segment_file(dir.path(), 0);
        std::fs::remove_file(first.with_extension("index")).unwrap();
        damage_last_record_byte(dir.path());

        let p = open(dir.path());
        assert!(
            !state_snapshot::clean_path(dir.path()).exists(),
            "snapshot must be used once"
        );
        assert_eq!(p.end_offset(), 10, "the active segment was not re-verified");
        // Producer state came back: a retry of the last batch is a
        // duplicate, the next sequence is accepted.
        let retry = append(&p, 9, &cfg);
        assert!(retry.duplicate && retry.base_offset == 9, "{retry:?}");
        assert_eq!(append(&p, 10, &cfg).base_offset, 10);
        let r = p.read(0, 1 << 20).unwrap();
        let (batches, _) = batch::whole_batches(r.records.as_deref().unwrap());
        assert_eq!(batches[0].1.base_offset, 0);
    }

    #[tokio::test]
    async fn writes_after_the_snapshot_force_full_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_segments();
        let p = open(dir.path());
        // Two batches fill a segment: the third starts the active one.
        for seq in 0..3 {
            append(&p, seq, &cfg);
        }
        p.close_clean().unwrap();
        // The snapshot is stale once anything is appended after it (a
        // shutdown that timed out on a busy connection, then a crash):
        // here the same active segment only grows.
        let segments = p.segment_count();
        append(&p, 3, &cfg);
        assert_eq!(p.segment_count(), segments, "must land in the same segment");
        drop(p);
        damage_last_record_byte(dir.path());

        let p = open(dir.path());
        assert_eq!(p.end_offset(), 3, "full recovery cut the damaged batch");
        let retry = append(&p, 2, &cfg);
        assert!(retry.duplicate && retry.base_offset == 2, "{retry:?}");
    }

    #[tokio::test]
    async fn crash_recovery_starts_from_the_last_roll_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_segments();
        let p = open(dir.path());
        // Producer 1 writes only into the first segment.
        for seq in 0..2 {
            append_as(&p, 1, seq, now_ms(), &cfg);
        }
        for seq in 0..6 {
            append(&p, seq, &cfg);
        }
        assert!(p.segment_count() >= 4);
        drop(p); // no clean shutdown: a crash
                 // Recovery from the newest roll snapshot never reads the first
                 // segment: wipe its bytes (same length) to prove it.
        let first = segment_file(dir.path(), 0);
        let len = std::fs::metadata(&first).unwrap().len() as usize;
        std::fs::write(&first, vec![0u8; len]).unwrap();

        let p = open(dir.path());
        let retry = append_as(&p, 1, 1, now_ms(), &cfg);
        assert!(retry.duplicate && retry.base_offset == 1, "{retry:?}");
        let retry = append(&p, 5, &cfg);
        assert!(retry.duplicate && retry.base_offset == 7, "{retry:?}");

        // Without the snapshots, recovery replays from the start, cannot
        // read the wiped segment, and forgets producer 1.
        drop(p);
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "snapshot") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        let p = open(dir.path());
        let b = make_idempotent_batch(1, 0, 1, 1, now_ms());
        let spans = batch::validate_produce_records(&b, usize::MAX).unwrap();
        assert!(matches!(
            p.append(&b, &spans, &cfg),
            Err(LogError::UnknownProducerId(1))
        ));
    }

    /// A batch of producer `pid`'s open transaction.
    fn txn_batch(pid: i64, seq: i32) -> Vec<u8> {
        let mut b = make_idempotent_batch(pid, 0, seq, 1, now_ms());
        b[21..23].copy_from_slice(&batch::ATTR_TRANSACTIONAL.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn append_bytes(p: &Partition, b: &[u8], cfg: &EffectiveConfig) -> i64 {
        let spans = batch::validate_produce_records(b, usize::MAX).unwrap();
        p.append(b, &spans, cfg).unwrap().base_offset
    }

    /// The offset after the last batch of a read.
    fn read_end(r: &FetchRead) -> Option<i64> {
        let (batches, _) = batch::whole_batches(r.records.as_deref()?);
        batches.last().map(|(_, h)| h.last_offset() + 1)
    }

    #[tokio::test]
    async fn one_read_serves_a_read_committed_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = topic_config::effective(&LogConfig::default(), &Default::default());
        let p = open(dir.path());
        assert_eq!(append_bytes(&p, &txn_batch(1, 0), &cfg), 0);
        assert_eq!(p.append_marker(1, 0, Marker::Abort, &cfg).unwrap(), 2);
        assert_eq!(append(&p, 0, &cfg).base_offset, 2);
        // Producer 2's transaction stays open: the last stable offset.
        assert_eq!(append_bytes(&p, &txn_batch(2, 0), &cfg), 3);
        assert_eq!(append(&p, 1, &cfg).base_offset, 4);

        let r = p.read_for_fetch(0, Some(1 << 20), true).unwrap();
        assert_eq!(
            (r.high_watermark, r.last_stable_offset, r.log_start_offset),
            (5, 3, 0)
        );
        assert_eq!(read_end(&r), Some(3), "stops at the last stable offset");
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 1,
        };
        assert_eq!(r.aborted, vec![aborted]);
        // Past the aborted transaction, nothing to report.
        let r = p.read_for_fetch(2, Some(1 << 20), true).unwrap();
        assert_eq!(read_end(&r), Some(3));
        assert!(r.aborted.is_empty(), "{:?}", r.aborted);
        // At the last stable offset a read_committed fetch gets nothing.
        let r = p.read_for_fetch(3, Some(1 << 20), true).unwrap();
        assert!(r.records.is_none() && r.aborted.is_empty());
        // read_uncommitted reads to the end and is told of no aborts.
        let r = p.read_for_fetch(0, Some(1 << 20), false).unwrap();
        assert_eq!(read_end(&r), Some(5));
        assert!(r.aborted.is_empty());
        // A full answer asks for the offsets alone, whatever the offset.
        let r = p.read_for_fetch(99, None, true).unwrap();
        assert!(r.records.is_none());
        assert_eq!((r.high_watermark, r.last_stable_offset), (5, 3));
        assert!(matches!(
            p.read_for_fetch(99, Some(1), false),
            Err(LogError::OffsetOutOfRange { offset: 99, .. })
        ));
        // The aborted list is shared with readers, not copied per fetch,
        // and an abort after a reader took it leaves the reader's alone.
        let shared = p.lock().txns.aborted_shared();
        assert_eq!(p.append_marker(2, 0, Marker::Abort, &cfg).unwrap(), 6);
        assert_eq!(shared.len(), 1);
        let r = p.read_for_fetch(0, Some(1 << 20), true).unwrap();
        assert_eq!(read_end(&r), Some(6));
        assert_eq!(r.aborted.len(), 2, "{:?}", r.aborted);
    }

    #[tokio::test]
    async fn an_append_wakes_only_the_fetches_watching_its_partition() {
        use crate::log::watch::FetchWatch;
        use std::future::Future;
        let polled_ready = |w: &FetchWatch| {
            let fut = std::pin::pin!(w.changed());
            let waker = std::task::Waker::noop();
            fut.poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cfg = small_segments();
        let (a, b) = (open(da.path()), open(db.path()));
        // Named three times, registered once: a request repeating a
        // partition cannot make its appends walk a long list.
        let w = FetchWatch::new([a.clone(), a.clone(), a.clone()]);
        assert_eq!((w.len(), a.watchers().len()), (1, 1));
        assert!(b.watchers().is_empty());
        append(&b, 0, &cfg);
        assert!(!polled_ready(&w), "woken by another partition");
        // A wake before the fetch waits is kept, not lost.
        append(&a, 0, &cfg);
        assert!(polled_ready(&w));
        assert!(!polled_ready(&w), "one wake per change");
        let w2 = FetchWatch::new([a.clone(), b.clone()]);
        assert_eq!((a.watchers().len(), b.watchers().len()), (2, 1));
        drop(w);
        append(&a, 1, &cfg);
        assert!(polled_ready(&w2));
        drop(w2);
        assert!(a.watchers().is_empty() && b.watchers().is_empty());
        // Deleting the partition releases its waiters.
        let w = FetchWatch::new([b.clone()]);
        b.mark_deleted();
        assert!(polled_ready(&w));
    }
}
