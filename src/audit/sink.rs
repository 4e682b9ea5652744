//! The audit writer: a bounded queue in front of a dedicated thread that
//! appends JSON lines to a file (mode 0600), rotates it by size and age,
//! keeps N files, and optionally copies records to stdout and to an audit
//! topic on this broker. The request path only ever enqueues.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::chain::{self, Anchor, Chain, Resume};
use super::event::{AuditEvent, EventKind};
use super::sources::VolumeWatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// The request waits for room: no record is ever lost.
    #[default]
    Block,
    /// The record is dropped and counted; the count is written as its own
    /// record as soon as there is room.
    Drop,
}

/// Which allowed decisions are recorded (denials always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AllowLevel {
    None,
    #[default]
    Admin,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    pub file: PathBuf,
    pub allow_level: AllowLevel,
    pub queue_capacity: usize,
    pub when_full: WhenFull,
    pub max_file_bytes: u64,
    pub max_file_age_secs: u64,
    pub keep_files: usize,
    pub stdout: bool,
    /// Also append records to this topic on the broker (super users only).
    pub topic: Option<String>,
    /// Alarm (an `audit_volume_alarm` record and a WARN line) when one
    /// principal or client address wrote more than this share of the
    /// current file; 1 or more turns the alarm off.
    pub source_alarm_share: f64,
    /// ... once the current file holds at least this many bytes (unset:
    /// `max_file_bytes / 4`).
    pub source_alarm_min_bytes: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            file: PathBuf::from("audit/audit.log"),
            allow_level: AllowLevel::Admin,
            queue_capacity: 65_536,
            when_full: WhenFull::Block,
            max_file_bytes: 100 * 1024 * 1024,
            max_file_age_secs: 24 * 3600,
            keep_files: 10,
            stdout: false,
            topic: None,
            source_alarm_share: 0.5,
            source_alarm_min_bytes: None,
        }
    }
}

/// Receives finished records from the writer, e.g. to put them in a topic.
pub type Mirror = Box<dyn FnMut(&[AuditEvent]) + Send>;

/// Running totals since start, read by the metrics at scrape time.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records written to the audit log.
    pub written: AtomicU64,
    /// Decisions folded into coalesced records (the sum of their `count`).
    pub coalesced: AtomicU64,
    /// Records lost to a full queue in `drop` mode.
    pub dropped: AtomicU64,
}

pub struct Auditor {
    tx: arc_swap::ArcSwapOption<mpsc::Sender<AuditEvent>>,
    pub when_full: WhenFull,
    pub allow_level: AllowLevel,
    dropped: Arc<AtomicU64>,
    stats: Arc<AuditStats>,
    pub topic: Option<String>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Auditor {
    pub fn disabled() -> Auditor {
        Auditor {
            tx: arc_swap::ArcSwapOption::empty(),
            when_full: WhenFull::Block,
            allow_level: AllowLevel::None,
            dropped: Arc::new(AtomicU64::new(0)),
            stats: Arc::default(),
            topic: None,
            writer: std::sync::Mutex::new(None),
        }
    }

    pub fn start(cfg: &AuditConfig, mirror: Option<Mirror>) -> std::io::Result<Auditor> {
        if !cfg.enabled {
            return Ok(Auditor::disabled());
        }
        if let Some(dir) = cfg.file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut newest_first = files_oldest_first(&cfg.file);
        newest_first.reverse();
        let (chain, start_reason) = match chain::resume(&newest_first, &cfg.file) {
            Resume::Continue(c) => (c, None),
            Resume::Start { reason } => (Chain::new(), Some(reason)),
        };
        let min_bytes = cfg
            .source_alarm_min_bytes
            .unwrap_or(cfg.max_file_bytes.max(1024) / 4);
        let mut writer = ChainedWriter {
            out: RotatingWriter::open(cfg)?,
            chain,
            volume: VolumeWatch::new(cfg.source_alarm_share, min_bytes),
            line: Vec::with_capacity(4096),
            stdout: cfg.stdout,
        };
        let d2 = dropped.clone();
        let stats = Arc::new(AuditStats::default());
        let s2 = stats.clone();
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer_loop(rx, &mut writer, start_reason, d2, &s2, mirror))?;
        Ok(Auditor {
            tx: arc_swap::ArcSwapOption::from_pointee(tx),
            when_full: cfg.when_full,
            allow_level: cfg.allow_level,
            dropped,
            stats,
            topic: cfg.topic.clone(),
            writer: std::sync::Mutex::new(Some(handle)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.load().is_some()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Records queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> usize {
        self.tx
            .load()
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    fn lost(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Enqueues from async code. In `block` mode a full queue makes the
    /// caller wait; in `drop` mode the record is counted and discarded.
    pub async fn submit(&self, ev: AuditEvent) {
        let Some(tx) = self.tx.load_full() else {
            return;
        };
        match self.when_full {
            WhenFull::Block => {
                let _ = tx.send(ev).await;
            }
            WhenFull::Drop => {
                if tx.try_send(ev).is_err() {
                    self.lost();
                }
            }
        }
    }

    /// Enqueues from synchronous code on any thread (e.g. the ACL file
    /// watcher, or a handler's ACL write-through). Inside the runtime a full
    /// queue in `block` mode hands the record to a task instead of blocking
    /// a worker thread.
    pub fn submit_sync(&self, ev: AuditEvent) {
        let Some(tx) = self.tx.load_full() else {
            return;
        };
        match self.when_full {
            WhenFull::Block => match tx.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    match tokio::runtime::Handle::try_current() {
                        Ok(h) => {
                            h.spawn(async move {
                                let _ = tx.send(ev).await;
                            });
                        }
                        Err(_) => {
                            let _ = tx.blocking_send(ev);
                        }
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
            WhenFull::Drop => {
                if tx.try_send(ev).is_err() {
                    self.lost();
                }
            }
        }
    }

    /// Closes the queue and waits until every queued record is written.
    pub fn close(&self) {
        self.tx.store(None);
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// How long a busy writer lets records gather before the next write.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// The one place records get their seq and prev_hash: the writer thread
/// stamps them in the order it writes them, so seq order is file order.
struct ChainedWriter {
    out: RotatingWriter,
    chain: Chain,
    volume: VolumeWatch,
    /// Reused for every record's line.
    line: Vec<u8>,
    stdout: bool,
}

impl ChainedWriter {
    /// Stamps, serializes, hashes and writes one record; alarms it raises
    /// are pushed onto `alarms` for the caller to write next.
    fn write(&mut self, ev: &mut AuditEvent, alarms: &mut Vec<AuditEvent>) {
        self.chain.stamp(ev);
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, &*ev) {
            // Not written, so it takes no place in the chain.
            ev.seq = None;
            ev.prev_hash = None;
            tracing::error!("audit record not serializable: {e}");
            return;
        }
        // The seq is used even if the write fails: `audit verify` then
        // shows the lost record as a gap.
        self.chain.advance(&self.line);
        match self.out.write_line(&self.line) {
            Ok(true) => self.volume.reset(),
            Ok(false) => {}
            Err(e) => tracing::error!("audit write failed: {e}"),
        }
        self.volume.account(ev, self.line.len() as u64 + 1, alarms);
        if self.stdout {
            println!("{}", String::from_utf8_lossy(&self.line));
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::error!("audit flush failed: {e}");
        }
    }
}

fn writer_loop(
    mut rx: mpsc::Receiver<AuditEvent>,
    w: &mut ChainedWriter,
    start_reason: Option<String>,
    dropped: Arc<AtomicU64>,
    stats: &AuditStats,
    mut mirror: Option<Mirror>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut alarms = Vec::new();
    if let Some(reason) = start_reason {
        tracing::info!("audit: starting a new hash chain: {reason}");
        let mut ev = AuditEvent::new(EventKind::AuditChainStart);
        ev.reason = Some(reason);
        w.write(&mut ev, &mut alarms);
        w.flush();
        if let Some(m) = mirror.as_mut() {
            m(std::slice::from_ref(&ev));
        }
    }
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let mut ev = AuditEvent::new(EventKind::AuditDropped);
            ev.details = Some(serde_json::json!({ "dropped": lost }));
            batch.push(ev);
        }
        // Alarms go into the batch right after the record that raised
        // them, so they are written (and mirrored) there, in the file whose
        // window they are about.
        let mut i = 0;
        while i < batch.len() {
            w.write(&mut batch[i], &mut alarms);
            i += 1;
            if !alarms.is_empty() {
                let n = alarms.len();
                batch.splice(i..i, alarms.drain(..));
                // Written next; they raise no alarm themselves.
                for ev in &mut batch[i..i + n] {
                    w.write(ev, &mut alarms);
                }
                i += n;
            }
        }
        w.flush();
        stats
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let coalesced: u64 = batch.iter().filter_map(|e| e.count).sum();
        stats.coalesced.fetch_add(coalesced, Ordering::Relaxed);
        if let Some(m) = mirror.as_mut() {
            m(&batch);
        }
        batch.clear();
        // Let the next records gather instead of waking per record: every
        // wake-up costs the request path a futex call and both cores a
        // context switch (about 50 us of broker CPU per full connect, which
        // makes three records). The first record after a quiet spell is
        // still written at once.
        std::thread::sleep(COALESCE);
    }
    w.flush();
}

/// `audit.log` plus `audit.log.1` (newest rotated) .. `audit.log.N`.
pub struct RotatingWriter {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    opened: Instant,
    max_bytes: u64,
    max_age: Duration,
    keep: usize,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingWriter {
    pub fn open(cfg: &AuditConfig) -> std::io::Result<RotatingWriter> {
        let mut f = open_append(&cfg.file)?;
        let mut size = f.metadata()?.len();
        if size > 0 && !ends_with_newline(&cfg.file)? {
            // A crash tore the last record. Its bytes stay (as a line of
            // their own, which `audit verify` reports); the next record
            // must not be glued to them.
            tracing::warn!(
                "audit: {} ends in a partial record (a crash mid-write); it is kept as one line",
                cfg.file.display()
            );
            f.write_all(b"\n")?;
            size += 1;
        }
        Ok(RotatingWriter {
            path: cfg.file.clone(),
            out: BufWriter::with_capacity(64 * 1024, f),
            size,
            opened: Instant::now(),
            max_bytes: cfg.max_file_bytes.max(1024),
            max_age: Duration::from_secs(cfg.max_file_age_secs.max(1)),
            keep: cfg.keep_files.max(1),
        })
    }

    /// Appends one line; `true` when the file was rotated first.
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<bool> {
        let rotate = self.size > 0
            && (self.size + line.len() as u64 + 1 > self.max_bytes
                || self.opened.elapsed() >= self.max_age);
        if rotate {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.size += line.len() as u64 + 1;
        Ok(rotate)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Shifts `.k` to `.k+1` (dropping the oldest beyond `keep`) and starts
    /// a fresh file. Everything written so far is flushed and fsynced first,
    /// so no record is lost across a rotation.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        let oldest = rotated_path(&self.path, self.keep);
        if oldest.exists() {
            self.anchor(&oldest);
            let _ = std::fs::remove_file(&oldest);
        }
        for n in (1..self.keep).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        self.out = BufWriter::with_capacity(64 * 1024, open_append(&self.path)?);
        self.size = 0;
        self.opened = Instant::now();
        Ok(())
    }

    /// Before `oldest` is deleted, records its last seq and hash in the
    /// anchor so the remaining files still verify from their first record.
    /// A failure is logged and the file deleted anyway: the size budget
    /// holds, and `audit verify` will report the unanchored head.
    fn anchor(&self, oldest: &Path) {
        match Anchor::for_file(oldest) {
            Ok(Some(a)) => {
                if let Err(e) = a.write(&self.path) {
                    tracing::error!(
                        "audit: cannot write the anchor for {}: {e}",
                        oldest.display()
                    );
                }
            }
            Ok(None) => tracing::warn!(
                "audit: {} holds no chained record; the anchor is unchanged",
                oldest.display()
            ),
            Err(e) => tracing::error!(
                "audit: cannot read the last record of {} for the anchor: {e}",
                oldest.display()
            ),
        }
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

/// The files of an audit log, oldest first.
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = Vec::new();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = f
                .strip_prefix(&format!("{name}."))
                .and_then(|s| s.parse::<usize>().ok())
            {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            file: dir.path().join("audit.log"),
            max_file_bytes: 4096,
            keep_files: 1000,
            ..Default::default()
        };
        let a = Auditor::start(&cfg, None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..5000 {
                let mut ev = AuditEvent::new(EventKind::AdminAction);
                ev.correlation_id = Some(i);
                a.submit(ev).await;
            }
        });
        a.close();
        let files = files_oldest_first(&cfg.file);
        assert!(files.len() > 10, "rotated into {} files", files.len());
        let report = super::super::verify::verify(&cfg.file, &files);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.records, 5001, "the chain start and 5000 records");
        let mut next = 0;
        for f in &files {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                0o600
            );
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let ev: AuditEvent = serde_json::from_str(line).unwrap();
                if ev.event == Some(EventKind::AuditChainStart) {
                    assert_eq!(ev.seq, Some(0));
                    continue;
                }
                assert_eq!(ev.seq, Some(next as u64 + 1));
                assert_eq!(ev.correlation_id, Some(next));
                next += 1;
            }
        }
        assert_eq!(next, 5000);
    }

    fn run(cfg: &AuditConfig, ids: std::ops::Range<i32>) {
        let a = Auditor::start(cfg, None).unwrap();
        for i in ids {
            let mut ev = AuditEvent::new(EventKind::AdminAction);
            ev.correlation_id = Some(i);
            a.submit_sync(ev);
        }
        a.close();
    }

    #[test]
    fn restarts_continue_the_chain_and_a_torn_tail_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig {
            file: dir.path().join("audit.log"),
            max_file_bytes: 2048,
            keep_files: 3,
            ..Default::default()
        };
        run(&cfg, 0..100);
        run(&cfg, 100..200);
        let files = files_oldest_first(&cfg.file);
        let r = super::super::verify::verify(&cfg.file, &files);
        assert!(r.ok(), "{:?}", r.problems);
        assert!(r.anchor.is_some(), "files were deleted: an anchor");
        assert!(
            r.chain_starts.is_empty(),
            "one chain, its start rotated away"
        );
        assert_eq!(r.last_seq, Some(200));

        // A crash tore the last record: the next start keeps the fragment
        // on its own line and continues after the last whole record.
        let mut f = OpenOptions::new().append(true).open(&cfg.file).unwrap();
        f.write_all(b"{\"v\":1,\"seq\":201,\"prev").unwrap();
        drop(f);
        run(&cfg, 200..201);
        let files = files_oldest_first(&cfg.file);
        let r = super::super::verify::verify(&cfg.file, &files);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(
            r.problems[0].kind,
            super::super::verify::ProblemKind::Malformed
        );
        assert_eq!(r.last_seq, Some(201));
    }
}
