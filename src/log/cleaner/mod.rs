//! The log cleaner: compaction of `cleanup.policy=compact` topics, with
//! Kafka's semantics (see DESIGN.md and Kafka's `LogCleaner`).
//!
//! One thread, off the request path, picks the partition that most needs
//! cleaning and runs one pass over it:
//!
//! 1. **Plan** ([`plan`]): the cleanable part of the log is every sealed
//!    segment below the first uncleanable offset: the active segment's
//!    base, the last stable offset (an open transaction is never cleaned)
//!    and the first segment younger than `min.compaction.lag.ms`. Of it,
//!    the part from the checkpoint's first dirty offset on is dirty. A pass
//!    is due when dirty / (clean + dirty) exceeds `min.cleanable.dirty.ratio`,
//!    when the oldest dirty data is older than `max.compaction.lag.ms`, or
//!    when a tombstone's or marker's delete horizon has passed.
//! 2. **Map**: the dirty part is read once into an [`OffsetMap`] (key hash
//!    -> latest offset) of bounded size; when it fills, the pass stops there
//!    and the rest waits for the next pass.
//! 3. **Clean**: every cleanable segment below the map's end, from the log
//!    start, is rewritten in groups no larger than `segment.bytes`
//!    ([`filter`] decides per batch), and each group replaces its segments
//!    through [`swap`], crash-safely.
//! 4. **Checkpoint**: the first dirty offset moves to the map's end.
//!
//! Memory is the offset map plus one read chunk and one group's output
//! buffer; reads and writes are paced by `log.cleaner_io_max_bytes_per_second`.

pub mod checkpoint;
pub mod filter;
pub mod offset_map;
pub mod swap;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::batch::{self, BatchHeader};
use super::partition::CleanView;
use super::permissions::FILE_MODE;
use super::segment::{now_ms, Segment};
use super::topic_config::EffectiveConfig;
use super::{state_snapshot, LogConfig, LogError, LogManager, Partition};
use checkpoint::Checkpoint;
use filter::{Outcome, Rules};
use offset_map::OffsetMap;

/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 1 << 20;
/// Output buffered before it is written to the cleaned file.
const WRITE_CHUNK: usize = 1 << 20;

/// How much of a partition needs cleaning, from segment sizes and the
/// checkpoint (no data is read).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first `cleanable` segments may be cleaned.
    pub cleanable: usize,
    /// The offset after them.
    pub cleanable_end: i64,
    pub first_dirty: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// dirty / (clean + dirty); 0 when nothing is cleanable.
    pub dirty_ratio: f64,
    /// Dirty data older than `max.compaction.lag.ms`.
    pub overdue: bool,
    /// A kept tombstone's or marker's delete horizon has passed.
    pub horizon_due: bool,
}

impl Plan {
    pub fn due(&self, cfg: &EffectiveConfig) -> bool {
        (self.dirty_bytes > 0 && (self.dirty_ratio > cfg.min_cleanable_ratio || self.overdue))
            || (self.horizon_due && self.cleanable > 0)
    }
}

pub fn plan(view: &CleanView, cp: &Checkpoint, cfg: &EffectiveConfig, now: i64) -> Plan {
    let segs = &view.segments;
    let sealed = segs.len().saturating_sub(1);
    let next_base = |i: usize| segs[i + 1].base_offset;
    let first_dirty = cp.first_dirty_offset.max(view.log_start);
    let mut limit = segs
        .last()
        .map(|s| s.base_offset)
        .unwrap_or(0)
        .min(view.last_stable);
    if cfg.min_compaction_lag_ms > 0 {
        let young = now.saturating_sub(cfg.min_compaction_lag_ms);
        if let Some(i) = (0..sealed).find(|&i| {
            next_base(i) > first_dirty && segs[i].max_timestamp().is_some_and(|t| t > young)
        }) {
            limit = limit.min(segs[i].base_offset);
        }
    }
    let cleanable = (0..sealed).take_while(|&i| next_base(i) <= limit).count();
    let (clean_bytes, dirty_bytes, first_dirty_seg) = split_bytes(
        (0..cleanable).map(|i| (next_base(i), segs[i].size())),
        first_dirty,
    );
    let overdue = first_dirty_seg.is_some_and(|i| {
        segs[i]
            .first_timestamp()
            .is_some_and(|t| t < now.saturating_sub(cfg.max_compaction_lag_ms))
    });
    Plan {
        cleanable,
        cleanable_end: if cleanable > 0 {
            next_base(cleanable - 1)
        } else {
            first_dirty
        },
        first_dirty,
        clean_bytes,
        dirty_bytes,
        dirty_ratio: dirty_ratio(clean_bytes, dirty_bytes),
        overdue,
        horizon_due: cp.next_horizon_ms.is_some_and(|h| h <= now),
    }
}

/// (clean bytes, dirty bytes, index of the first dirty segment) of
/// segments given as (offset after it, size).
fn split_bytes(
    segments: impl Iterator<Item = (i64, u64)>,
    first_dirty: i64,
) -> (u64, u64, Option<usize>) {
    let (mut clean, mut dirty, mut first) = (0, 0, None);
    for (i, (end, size)) in segments.enumerate() {
        if end > first_dirty {
            dirty += size;
            first.get_or_insert(i);
        } else {
            clean += size;
        }
    }
    (clean, dirty, first)
}

/// dirty / (clean + dirty); 0 when both are 0.
fn dirty_ratio(clean: u64, dirty: u64) -> f64 {
    if clean + dirty == 0 {
        0.0
    } else {
        dirty as f64 / (clean + dirty) as f64
    }
}

/// A partition directory as the cleaner sees it, read from its files only
/// (no lock, no recovery), so a command can show it beside a running
/// broker. The dirty ratio counts every sealed segment as cleanable: open
/// transactions and `min.compaction.lag.ms`, which the cleaner also
/// honours, are not visible from the files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirStatus {
    pub log_start_offset: i64,
    pub segments: usize,
    pub bytes: u64,
    pub dirty_ratio: f64,
    pub checkpoint: Checkpoint,
}

pub fn inspect_dir(dir: &std::path::Path) -> Result<DirStatus, LogError> {
    let mut segs: Vec<(i64, u64)> = Vec::new();
    for base in super::partition::list_segment_bases(dir)? {
        // The cleaner may delete a segment between the listing and this
        // look: a status display skips it.
        match std::fs::metadata(super::segment::log_path(dir, base)) {
            Ok(m) => segs.push((base, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(dir, e)),
        }
    }
    segs.sort_unstable();
    let cp = checkpoint::load(dir);
    let first_base = segs.first().map(|s| s.0).unwrap_or(0);
    let log_start = super::partition::read_log_start(dir)
        .unwrap_or(first_base)
        .max(first_base);
    let sealed = segs.len().saturating_sub(1);
    let (clean, dirty, _) = split_bytes(
        (0..sealed).map(|i| (segs[i + 1].0, segs[i].1)),
        cp.first_dirty_offset.max(log_start),
    );
    Ok(DirStatus {
        log_start_offset: log_start,
        segments: segs.len(),
        bytes: segs.iter().map(|s| s.1).sum(),
        dirty_ratio: dirty_ratio(clean, dirty),
        checkpoint: cp,
    })
}

/// Paces the cleaner's reads and writes to a byte rate, and carries the
/// broker's request to stop.
pub struct Throttle {
    rate: u64,
    start: Instant,
    spent: std::cell::Cell<u64>,
    stop: Arc<AtomicBool>,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Throttle {
        Self::stoppable(bytes_per_second, Arc::new(AtomicBool::new(false)))
    }

    fn stoppable(bytes_per_second: u64, stop: Arc<AtomicBool>) -> Throttle {
        Throttle {
            rate: bytes_per_second,
            start: Instant::now(),
            spent: std::cell::Cell::new(0),
            stop,
        }
    }

    /// Accounts for `n` bytes, sleeping as long as the rate requires (in
    /// short naps, so a stop is seen at once).
    pub fn spend(&self, n: usize) {
        if self.rate == 0 {
            return;
        }
        self.spent.set(self.spent.get() + n as u64);
        let due = Duration::from_secs_f64(self.spent.get() as f64 / self.rate as f64);
        while !self.stopped() {
            let elapsed = self.start.elapsed();
            if due <= elapsed {
                break;
            }
            std::thread::sleep((due - elapsed).min(NAP));
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// An error when the broker is stopping: the pass ends without a swap.
    fn check(&self, path: &std::path::Path) -> Result<(), LogError> {
        if self.stopped() {
            return Err(LogError::io(
                path,
                std::io::Error::other("the broker is stopping"),
            ));
        }
        Ok(())
    }
}

/// The longest the cleaner sleeps without looking at its stop flag.
const NAP: Duration = Duration::from_millis(100);

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassStats {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_kept: u64,
    pub batches_dropped: u64,
    pub map_keys: usize,
    /// False when the partition changed under the pass (a segment removed
    /// by retention): nothing is checkpointed and the next pass retries.
    pub completed: bool,
}

/// The batches of `seg` from `from` on, chunk by chunk.
fn for_each_batch(
    seg: &Segment,
    from: i64,
    throttle: &Throttle,
    mut f: impl FnMut(&[u8], &BatchHeader) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let mut offset = from.max(seg.base_offset);
    while let Some(buf) = seg.read(offset, READ_CHUNK)? {
        throttle.spend(buf.len());
        let (batches, _) = batch::whole_batches(&buf);
        let Some(last) = batches.last() else { break };
        let next = last.1.last_offset() + 1;
        for (i, (pos, h)) in batches.iter().enumerate() {
            let end = batches.get(i + 1).map(|b| b.0).unwrap_or(buf.len());
            if !f(&buf[*pos..end], h)? {
                return Ok(());
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}

/// Aborted transactions by producer: (first offset, marker offset).
type Aborted = HashMap<i64, Vec<(i64, i64)>>;

fn is_aborted(aborted: &Aborted, h: &BatchHeader) -> bool {
    h.attributes & batch::ATTR_TRANSACTIONAL != 0
        && aborted.get(&h.producer_id).is_some_and(|v| {
            v.iter()
                .any(|(first, last)| (*first..=*last).contains(&h.base_offset))
        })
}

/// Maps the dirty part: the latest offset of each key, up to the map's
/// capacity. Returns the map and the offset it covers up to.
fn map_dirty(
    segs: &[Arc<Segment>],
    plan: &Plan,
    aborted: &Aborted,
    settings: &LogConfig,
    throttle: &Throttle,
) -> Result<(OffsetMap, i64), LogError> {
    let mut map = OffsetMap::new(settings.cleaner_dedupe_buffer_bytes);
    for seg in segs.iter().filter(|s| s.next_offset() > plan.first_dirty) {
        let mut full_at = None;
        for_each_batch(seg, plan.first_dirty, throttle, |bytes, h| {
            throttle.check(seg.path())?;
            if h.last_offset() < plan.first_dirty || h.is_control() || is_aborted(aborted, h) {
                return Ok(true);
            }
            if map.would_overflow(h.record_count.max(0) as usize) && !map.is_empty() {
                full_at = Some(h.base_offset);
                return Ok(false);
            }
            let body = super::records::decompressed(bytes, h)?;
            for r in filter::records(&body)? {
                let offset = h.base_offset + r.offset_delta;
                if let (Some(k), true) = (r.key, offset >= plan.first_dirty) {
                    // A batch with more new keys than the map holds: the
                    // pass covers up to this record, the next one maps on
                    // from here (inside the batch).
                    if !map.put(k, offset) {
                        full_at = Some(offset);
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        if let Some(at) = full_at {
            return Ok((map, at));
        }
    }
    Ok((map, plan.cleanable_end))
}

/// What a pass carries from batch to batch, across its groups.
struct PassState<'a> {
    view: &'a CleanView,
    rules: Rules<'a>,
    aborted: Aborted,
    /// Whether a transaction (by producer) kept any data so far: its
    /// marker may only go once none of its data is left.
    txn_kept: HashMap<i64, bool>,
    next_horizon: Option<i64>,
    stats: PassStats,
}

impl PassState<'_> {
    fn horizon(&mut self, hz: i64) {
        self.next_horizon = Some(self.next_horizon.map_or(hz, |n| n.min(hz)));
    }

    /// Cleans one batch into `out`.
    fn batch(&mut self, out: &mut Vec<u8>, bytes: &[u8], h: &BatchHeader) -> Result<(), LogError> {
        let now = self.rules.now;
        let last_data = self.view.producer_last.get(&h.producer_id);
        let outcome = if h.is_control() {
            let kept_data = self.txn_kept.remove(&h.producer_id).unwrap_or(false);
            // After the producer's last data batch a marker may be its last
            // word (an epoch bump): keep it.
            let before_last = last_data.is_none_or(|last| h.base_offset < *last);
            let expired = filter::delete_horizon(h).is_some_and(|hz| now >= hz);
            if !kept_data && expired && before_last {
                Outcome::Dropped
            } else {
                let (o, hz) =
                    filter::keep_marker(out, bytes, h, now, self.rules.delete_retention_ms)?;
                // A marker kept past its horizon waits for its transaction's
                // data or its producer's next batch, both of which come with
                // new dirty data: no pass is scheduled for it.
                if o == Outcome::Rewritten || hz > now {
                    self.horizon(hz);
                }
                o
            }
        } else {
            let last = h.producer_id >= 0 && last_data == Some(&h.base_offset);
            let aborted = is_aborted(&self.aborted, h);
            let (o, kept, hz) =
                filter::clean_data_batch(out, bytes, h, &self.rules, aborted, last)?;
            self.stats.records_kept += kept as u64;
            if let Some(hz) = hz {
                self.horizon(hz);
            }
            if h.attributes & batch::ATTR_TRANSACTIONAL != 0 {
                *self.txn_kept.entry(h.producer_id).or_default() |= o != Outcome::Dropped;
            }
            o
        };
        if outcome == Outcome::Dropped {
            self.stats.batches_dropped += 1;
        }
        Ok(())
    }

    /// Writes the cleaned `group` to `cleaned`, fsynced. Returns its size.
    fn write_group(
        &mut self,
        group: &[Arc<Segment>],
        cleaned: &std::path::Path,
        throttle: &Throttle,
    ) -> Result<u64, LogError> {
        let io = |e| LogError::io(cleaned, e);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(cleaned)
            .map_err(io)?;
        let mut out = Vec::with_capacity(WRITE_CHUNK + READ_CHUNK);
        let mut written = 0u64;
        for seg in group {
            self.stats.bytes_before += seg.size();
            for_each_batch(seg, seg.base_offset, throttle, |bytes, h| {
                throttle.check(cleaned)?;
                self.batch(&mut out, bytes, h)?;
                if out.len() >= WRITE_CHUNK {
                    file.write_all(&out).map_err(io)?;
                    throttle.spend(out.len());
                    written += out.len() as u64;
                    out.clear();
                }
                Ok(true)
            })?;
        }
        file.write_all(&out).map_err(io)?;
        throttle.spend(out.len());
        written += out.len() as u64;
        file.sync_all().map_err(io)?;
        Ok(written)
    }
}

/// Runs of `segs` (sealed, each followed by another segment in the log)
/// no larger than `segment_bytes` together (at least one segment each)
/// whose offsets fit one segment's index, as index ranges.
fn groups(segs: &[Arc<Segment>], count: usize, segment_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < count {
        let start = i;
        let base = segs[i].base_offset;
        let mut size = 0u64;
        while i < count {
            // The segment ends where the next one begins.
            let fits = size + segs[i].size() <= segment_bytes.max(1)
                && segs[i + 1].base_offset - base <= i64::from(u32::MAX);
            if i > start && !fits {
                break;
            }
            size += segs[i].size();
            i += 1;
        }
        out.push(start..i);
    }
    out
}

/// One pass over `p`, planned as `plan` says (it must be due).
pub fn clean(
    p: &Partition,
    cfg: &EffectiveConfig,
    view: &CleanView,
    plan: &Plan,
    settings: &LogConfig,
    throttle: &Throttle,
) -> Result<PassStats, LogError> {
    let started = Instant::now();
    let segs = &view.segments[..plan.cleanable];
    let mut aborted: Aborted = HashMap::new();
    for a in &view.aborted {
        aborted
            .entry(a.producer_id)
            .or_default()
            .push((a.first_offset, a.last_offset));
    }
    let (map, map_end) = map_dirty(segs, plan, &aborted, settings, throttle)?;

    // Rewrite every cleanable segment below the map's end, in groups: a
    // prefix of the log, since segments are in offset order.
    let todo = segs.iter().take_while(|s| s.base_offset < map_end).count();
    let mut pass = PassState {
        view,
        rules: Rules {
            map: &map,
            now: now_ms(),
            delete_retention_ms: cfg.delete_retention_ms,
        },
        aborted,
        txn_kept: HashMap::new(),
        next_horizon: None,
        stats: PassStats {
            segments_before: todo,
            map_keys: map.len(),
            ..PassStats::default()
        },
    };
    for range in groups(&view.segments, todo, cfg.segment_bytes) {
        // Sealed segments all have a successor: the group ends at its base.
        let end = view.segments[range.end].base_offset;
        let group = &view.segments[range];
        let cleaned = swap::cleaned_path(p.dir(), group[0].base_offset);
        match pass.write_group(group, &cleaned, throttle) {
            Ok(n) => pass.stats.bytes_after += n,
            Err(e) => {
                let _ = std::fs::remove_file(&cleaned);
                return Err(e);
            }
        }
        throttle.check(&cleaned)?;
        match p.replace_segments(group, &cleaned, end)? {
            Some(seg) => {
                // The new segment's index files, written now rather than
                // rebuilt on the first fetch; its data was fsynced as the
                // cleaned file, and the index can be rebuilt from it.
                seg.write_index(p.dir(), false)?;
                pass.stats.segments_after += 1;
            }
            None => return Ok(pass.stats),
        }
    }
    // Snapshots before the cleaned range no longer replay correctly.
    state_snapshot::forget_rolls_below(p.dir(), map_end);
    let prev = p.cleaner_checkpoint();
    p.set_cleaner_checkpoint(Checkpoint {
        first_dirty_offset: map_end,
        last_clean_ms: now_ms(),
        passes: prev.passes + 1,
        next_horizon_ms: pass.next_horizon,
        last_bytes_before: pass.stats.bytes_before,
        last_bytes_after: pass.stats.bytes_after,
        last_pass_ms: started.elapsed().as_millis() as u64,
    })?;
    pass.stats.completed = true;
    Ok(pass.stats)
}

/// A partition's cleaning state for `topic describe`: the checkpoint and
/// the current dirty ratio.
pub fn status(p: &Partition, cfg: &EffectiveConfig) -> (Checkpoint, Plan) {
    let cp = p.cleaner_checkpoint();
    let plan = plan(&p.clean_view(), &cp, cfg, now_ms());
    (cp, plan)
}

/// Picks the partition that most needs cleaning and cleans it. Returns
/// whether any was due.
pub fn run_once(
    logs: &LogManager,
    failed: &mut HashMap<(String, i32), Instant>,
    stop: &Arc<AtomicBool>,
) -> bool {
    let settings = logs.defaults();
    let now = now_ms();
    struct Candidate {
        urgency: f64,
        p: Arc<Partition>,
        cfg: Arc<EffectiveConfig>,
        view: CleanView,
        plan: Plan,
    }
    let mut best: Option<Candidate> = None;
    for topic in logs.topics() {
        let cfg = topic.config();
        if !cfg.cleanup.compact {
            continue;
        }
        for p in topic.partitions() {
            let key = (p.topic.to_string(), p.index);
            if failed
                .get(&key)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
            {
                continue;
            }
            let view = p.clean_view();
            let plan = plan(&view, &p.cleaner_checkpoint(), &cfg, now);
            if !plan.due(&cfg) {
                continue;
            }
            // Overdue work first, then the dirtiest.
            let urgency = plan.dirty_ratio
                + if plan.overdue || plan.horizon_due {
                    2.0
                } else {
                    0.0
                };
            if best.as_ref().is_none_or(|b| urgency > b.urgency) {
                best = Some(Candidate {
                    urgency,
                    p,
                    cfg: cfg.clone(),
                    view,
                    plan,
                });
            }
        }
    }
    let Some(Candidate {
        p, cfg, view, plan, ..
    }) = best
    else {
        return false;
    };
    let throttle = Throttle::stoppable(settings.cleaner_io_max_bytes_per_second, stop.clone());
    let started = Instant::now();
    match clean(&p, &cfg, &view, &plan, &settings, &throttle) {
        Ok(s) => tracing::info!(
            topic = %p.topic, partition = p.index,
            segments = format!("{} -> {}", s.segments_before, s.segments_after),
            bytes = format!("{} -> {}", s.bytes_before, s.bytes_after),
            keys = s.map_keys, dirty_ratio = format!("{:.3}", plan.dirty_ratio),
            completed = s.completed, ms = started.elapsed().as_millis() as u64,
            "log cleaned"
        ),
        Err(_) if throttle.stopped() => {}
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.index, "log cleaning failed, retrying in a minute: {e}");
            failed.insert((p.topic.to_string(), p.index), Instant::now());
        }
    }
    true
}

/// Puts the calling thread (the cleaner) behind the request path for CPU
/// (nice 10) and disk (best-effort class, lowest level, where the I/O
/// scheduler honours it): on a small machine its rewrites must not take
/// the cores and queue slots that produce and fetch need.
fn lower_priority() {
    // SAFETY: gettid, setpriority and ioprio_set take plain integers and
    // only affect the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            tracing::debug!("log cleaner: nice 10 refused");
        }
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_BE: libc::c_long = 2;
        let prio = (IOPRIO_CLASS_BE << 13) | 7;
        if libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid as libc::c_long,
            prio,
        ) != 0
        {
            tracing::debug!("log cleaner: lowest best-effort I/O priority refused");
        }
    }
}

/// The running cleaner thread.
pub struct CleanerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CleanerHandle {
    /// Stops the thread and waits for it: a pass in progress ends at its
    /// next batch without swapping anything in (its `.cleaned` file is
    /// deleted), so nothing touches the log once this returns.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CleanerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts the cleaner thread.
pub fn spawn(logs: &Arc<LogManager>) -> std::io::Result<CleanerHandle> {
    let weak: Weak<LogManager> = Arc::downgrade(logs);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("log-cleaner".into())
        .spawn(move || {
            lower_priority();
            let mut failed = HashMap::new();
            while !flag.load(Ordering::Acquire) {
                let Some(logs) = weak.upgrade() else { return };
                let settings = logs.defaults();
                let worked = settings.cleaner_enabled && run_once(&logs, &mut failed, &flag);
                drop(logs);
                if !worked {
                    let until = Instant::now() + Duration::from_millis(settings.cleaner_backoff_ms);
                    while !flag.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::sleep(NAP.min(until - Instant::now()));
                    }
                }
            }
        })?;
    Ok(CleanerHandle {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests;
