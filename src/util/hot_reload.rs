//! One reload loop for every file the broker hot-reloads (the ACL file, the
//! credential store, the TLS files).
//!
//! Changes are seen through `notify` on the files' directories (so a rename
//! over a file, and Kubernetes' `..data` swaps, are seen), with a metadata
//! poll every [`POLL_INTERVAL`] as the fallback when notify is unavailable
//! or silent (inotify limits, a full fd table); a burst of writes is let
//! settle before the files are read.
//!
//! A reload that fails must not be lost: with the fd table full, a
//! `user passwd` or an `acl remove` used to be refused once ("Too many open
//! files") and never looked at again, so a revoked password kept working.
//! Here a failed reload keeps the version in force and is retried with a
//! backoff (100 ms doubling to 5 s) until the content in force is the content
//! on disk (compared by SHA-256), whether or not the file changes again.
//! Every failed attempt is reported: to the caller's [`Reporter`] (the
//! broker turns reports into audit records; this module knows nothing of
//! audit) and in a log line, rate-limited to one per [`LOG_EVERY`].
//!
//! After each version is in force, the loop publishes an acknowledgement
//! next to the file (`<file>.applied`, mode 0600, written atomically) with
//! the SHA-256 of the applied content, a generation number and the broker's
//! pid, so the CLI that wrote the file can tell whether the running broker
//! has applied it ([`wait_applied`]).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic_file::parent_dir;

/// How often file metadata is polled when notify is silent or unavailable.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// First retry delay after a failed reload; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Failed attempts after the first of a streak are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The content is re-hashed this often even if the metadata looks the same
/// (an in-place edit within the clock's resolution keeps size and mtime).
pub const FULL_CHECK: Duration = Duration::from_secs(10);
/// Let a burst of writes settle before reading.
const SETTLE: Duration = Duration::from_millis(30);

/// The version in force: which content, and how many versions this process
/// has put in force so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub sha256: [u8; 32],
    pub generation: u64,
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One hash over several files (each length-prefixed, so moving bytes from
/// one file to the next changes it).
pub fn sha256_of_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

pub fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Outcome of one successful [`Reloadable::reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The content on disk is the content in force.
    Unchanged,
    /// A new version is in force; `entries` counts its rules or users.
    Applied { entries: usize },
}

/// A store the loop keeps in step with its files.
pub trait Reloadable: Send + Sync + 'static {
    type Error: std::fmt::Display;
    /// Names the store in log lines and audit records ("ACL file").
    fn what(&self) -> &'static str;
    /// The files whose content is in force; watched and polled.
    fn files(&self) -> Vec<PathBuf>;
    /// Where the acknowledgement goes; `None`: publish none (e.g. TLS files
    /// on a read-only mount).
    fn ack_path(&self) -> Option<PathBuf>;
    fn version(&self) -> Version;
    /// Reads the files and, if their content differs from the version in
    /// force, validates it and puts it in force. On error the version in
    /// force stays. The error must not contain the files' bytes.
    fn reload(&self) -> Result<Reloaded, Self::Error>;
}

/// `<file>.applied`.
pub fn ack_path_for(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

/// The acknowledgement's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ack {
    /// Hex SHA-256 of the applied content.
    pub sha256: String,
    pub generation: u64,
    pub pid: u32,
    /// RFC 3339 UTC.
    pub applied_at: String,
}

fn write_ack(path: &Path, v: Version) -> io::Result<()> {
    let ack = Ack {
        sha256: hex(&v.sha256),
        generation: v.generation,
        pid: std::process::id(),
        applied_at: super::time::now_rfc3339(),
    };
    let mut text = serde_json::to_string(&ack).map_err(io::Error::other)?;
    text.push('\n');
    super::atomic_file::write_atomic(path, text.as_bytes(), 0o600)
}

pub fn read_ack(path: &Path) -> io::Result<Option<Ack>> {
    match fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The file no longer holds `ours` and what it holds is `acked`.
fn superseded_and_applied(file: &Path, ours: &str, acked: &str) -> bool {
    match fs::read(file) {
        Ok(b) => {
            let now = hex(&sha256(&b));
            now != ours && now == acked
        }
        Err(_) => false,
    }
}

/// What [`wait_applied`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckState {
    /// The running broker (pid) has this content in force.
    Applied { generation: u64, pid: u32 },
    /// A broker is running but has not (yet) applied this content.
    Pending { generation: u64, pid: u32 },
    /// No acknowledgement, or its broker is gone.
    NoBroker,
    /// The acknowledgement exists but cannot be read (e.g. it belongs to
    /// the broker's user, mode 0600, and this is another user).
    Unreadable(String),
}

/// Without a live broker's acknowledgement, give up after this long: a
/// running broker publishes one as soon as it starts.
const NO_BROKER_WAIT: Duration = Duration::from_secs(1);

/// Waits up to `wait` for the acknowledgement of `file` to name `sha256`,
/// or the content on disk now if another edit replaced ours meanwhile
/// (every edit is a read-modify-write under the file lock, so the later
/// content carries ours). `wait` of zero looks once.
pub fn wait_applied(file: &Path, sha256: &[u8; 32], wait: Duration) -> AckState {
    let path = ack_path_for(file);
    let want = hex(sha256);
    let start = Instant::now();
    let deadline = start + wait;
    let no_broker_deadline = start + wait.min(NO_BROKER_WAIT);
    loop {
        let state = match read_ack(&path) {
            Ok(Some(a))
                if process_alive(a.pid)
                    && (a.sha256 == want || superseded_and_applied(file, &want, &a.sha256)) =>
            {
                AckState::Applied {
                    generation: a.generation,
                    pid: a.pid,
                }
            }
            Ok(Some(a)) if process_alive(a.pid) => AckState::Pending {
                generation: a.generation,
                pid: a.pid,
            },
            Ok(_) => AckState::NoBroker,
            Err(e) => AckState::Unreadable(e.to_string()),
        };
        let now = Instant::now();
        let give_up = match state {
            AckState::Applied { .. } => true,
            AckState::Pending { .. } => now >= deadline,
            AckState::NoBroker | AckState::Unreadable(_) => now >= no_broker_deadline,
        };
        if give_up {
            return state;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A report for the audit trail; never carries file content.
#[derive(Debug)]
pub enum ReloadReport<'a> {
    /// A new version is in force (`failed_attempts` before it).
    Applied {
        what: &'static str,
        path: &'a Path,
        version: Version,
        entries: usize,
        failed_attempts: u64,
    },
    /// After failures, the content on disk turned out to be the content in
    /// force (or the acknowledgement could finally be written).
    InSync {
        what: &'static str,
        path: &'a Path,
        version: Version,
        failed_attempts: u64,
    },
    /// An attempt failed; the version in force stays.
    Failed {
        what: &'static str,
        path: &'a Path,
        error: &'a str,
        attempt: u64,
        retry_in: Duration,
    },
}

pub type Reporter = Arc<dyn Fn(&ReloadReport<'_>) + Send + Sync>;

enum Msg {
    Changed,
    Stop,
}

/// Stops the loop (and the notify watch) when dropped.
pub struct ReloadHandle {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadHandle")
            .field("notify", &self._watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for ReloadHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the loop for `target` on its own thread (reloads do blocking
/// I/O and parsing). `use_notify: false` leaves only the poll (tests).
pub fn spawn<T: Reloadable>(
    target: &Arc<T>,
    reporter: Option<Reporter>,
    use_notify: bool,
) -> io::Result<ReloadHandle> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let files = target.files();
    let watcher = if use_notify {
        start_notify(target.what(), &files, tx.clone())
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(target);
    let stop_t = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("reload-{}", thread_tag(target.what())))
        .spawn(move || run(weak, files, rx, stop_t, reporter))?;
    Ok(ReloadHandle {
        stop,
        wake: tx,
        thread: Some(thread),
        _watcher: watcher,
    })
}

fn thread_tag(what: &str) -> String {
    what.split_whitespace()
        .next()
        .unwrap_or("file")
        .to_ascii_lowercase()
}

/// Best effort: without notify (inotify limits, fd exhaustion) the poll
/// still sees every change.
fn start_notify(
    what: &str,
    files: &[PathBuf],
    tx: mpsc::Sender<Msg>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let handler = move |res: notify::Result<notify::Event>| {
        let relevant = match &res {
            // Our own reads are access events; the acknowledgement and
            // lock files are other names in the same directory.
            Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => false,
            Ok(ev) => ev.paths.iter().any(|p| {
                p.file_name().is_some_and(|n| {
                    // `..data`: Kubernetes' atomic secret/configmap updates.
                    names.iter().any(|w| w == n) || n.to_string_lossy().starts_with("..")
                })
            }),
            Err(_) => true, // unsure what happened: let the loop re-check
        };
        if relevant {
            let _ = tx.send(Msg::Changed);
        }
    };
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();
    dirs.sort();
    dirs.dedup();
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        for d in &dirs {
            w.watch(d, RecursiveMode::NonRecursive)?;
        }
        Ok(w)
    });
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "{what}: change notifications unavailable; polling only");
            None
        }
    }
}

/// Cheap change detector: metadata only (no descriptor needed, so it works
/// with the fd table full). The inode changes on every atomic save,
/// mtime/ctime/len catch in-place edits.
type Stamp = Vec<Option<(u64, u64, u64, i64, i64, i64, i64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            fs::metadata(f).ok().map(|m| {
                (
                    m.dev(),
                    m.ino(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
            })
        })
        .collect()
}

/// The loop's memory between attempts.
struct State {
    stamp: Stamp,
    last_full: Instant,
    /// Set while the last attempt failed: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
    failures: u64,
    /// Failed attempts not yet in a log line, when the last line was, and
    /// its error: a new error (a new broken version) is logged at once, the
    /// same one again at most every [`LOG_EVERY`].
    unlogged: u64,
    last_log: Option<Instant>,
    last_error: Option<String>,
    published: Option<Version>,
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

fn run<T: Reloadable>(
    weak: Weak<T>,
    files: Vec<PathBuf>,
    rx: mpsc::Receiver<Msg>,
    stop: Arc<AtomicBool>,
    reporter: Option<Reporter>,
) {
    let path = files.first().cloned().unwrap_or_default();
    let mut st = State {
        stamp: stamp(&files),
        last_full: Instant::now(),
        // The first pass runs at once: it publishes the acknowledgement of
        // the version loaded at start and catches a change made since.
        retry_at: Some(Instant::now()),
        backoff: MIN_BACKOFF,
        failures: 0,
        unlogged: 0,
        last_log: None,
        last_error: None,
        published: None,
    };
    loop {
        let now = Instant::now();
        let wait = match st.retry_at {
            Some(t) => t.saturating_duration_since(now).min(POLL_INTERVAL),
            None => POLL_INTERVAL,
        };
        let mut changed = match rx.recv_timeout(wait) {
            Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(Msg::Changed) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        if changed && settle(&rx, &files) {
            return;
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Some(target) = weak.upgrade() else { return };
        let now_stamp = stamp(&files);
        changed |= now_stamp != st.stamp;
        let now = Instant::now();
        let due = match st.retry_at {
            Some(t) => now >= t || changed,
            None => changed || now.duration_since(st.last_full) >= FULL_CHECK,
        };
        if !due {
            continue;
        }
        st.stamp = now_stamp;
        st.last_full = now;
        attempt(&*target, &path, &mut st, reporter.as_ref());
    }
}

/// After a notify event, waits until the files' metadata stops changing
/// (an editor's truncate-then-write). Returns true if asked to stop.
fn settle(rx: &mpsc::Receiver<Msg>, files: &[PathBuf]) -> bool {
    let mut seen = stamp(files);
    for _ in 0..20 {
        std::thread::sleep(SETTLE);
        while let Ok(m) = rx.try_recv() {
            if matches!(m, Msg::Stop) {
                return true;
            }
        }
        let now = stamp(files);
        if now == seen {
            break;
        }
        seen = now;
    }
    false
}

fn attempt<T: Reloadable>(target: &T, path: &Path, st: &mut State, reporter: Option<&Reporter>) {
    let what = target.what();
    let result = target
        .reload()
        .map_err(|e| e.to_string())
        .and_then(|r| match target.ack_path() {
            Some(ack) if st.published != Some(target.version()) => {
                let v = target.version();
                write_ack(&ack, v)
                    .map(|()| {
                        st.published = Some(v);
                        r
                    })
                    .map_err(|e| {
                        format!(
                            "applied, but cannot publish the acknowledgement {}: {e}",
                            ack.display()
                        )
                    })
            }
            _ => Ok(r),
        });
    match result {
        Ok(r) => {
            let failed_attempts = st.failures;
            if failed_attempts > 0 {
                tracing::info!(
                    path = %path.display(),
                    failed_attempts,
                    generation = target.version().generation,
                    "{what}: the version on disk is in force again after failed attempts"
                );
            }
            let report = match r {
                Reloaded::Applied { entries } => Some(ReloadReport::Applied {
                    what,
                    path,
                    version: target.version(),
                    entries,
                    failed_attempts,
                }),
                Reloaded::Unchanged if failed_attempts > 0 => Some(ReloadReport::InSync {
                    what,
                    path,
                    version: target.version(),
                    failed_attempts,
                }),
                Reloaded::Unchanged => None,
            };
            if let (Some(rep), Some(f)) = (report, reporter) {
                f(&rep);
            }
            st.retry_at = None;
            st.backoff = MIN_BACKOFF;
            st.failures = 0;
            st.unlogged = 0;
            st.last_log = None;
            st.last_error = None;
        }
        Err(error) => {
            st.failures += 1;
            let retry_in = if st.failures == 1 {
                MIN_BACKOFF
            } else {
                next_backoff(st.backoff)
            };
            st.backoff = retry_in;
            st.retry_at = Some(Instant::now() + retry_in);
            let log_now = st.last_error.as_deref() != Some(error.as_str())
                || st.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if log_now {
                tracing::error!(
                    path = %path.display(),
                    attempt = st.failures,
                    unlogged_failures = st.unlogged,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "{what} refused, the version in force stays; retrying: {error}"
                );
                st.last_log = Some(Instant::now());
                st.last_error = Some(error.clone());
                st.unlogged = 0;
            } else {
                st.unlogged += 1;
            }
            if let Some(f) = reporter {
                f(&ReloadReport::Failed {
                    what,
                    path,
                    error: &error,
                    attempt: st.failures,
                    retry_in,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A file of "name" lines; `fail` makes every reload fail like EMFILE.
    struct Lines {
        path: PathBuf,
        fail: AtomicBool,
        state: Mutex<(Version, usize)>,
    }

    impl Reloadable for Lines {
        type Error = String;
        fn what(&self) -> &'static str {
            "test file"
        }
        fn files(&self) -> Vec<PathBuf> {
            vec![self.path.clone()]
        }
        fn ack_path(&self) -> Option<PathBuf> {
            Some(ack_path_for(&self.path))
        }
        fn version(&self) -> Version {
            self.state.lock().unwrap().0
        }
        fn reload(&self) -> Result<Reloaded, String> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("Too many open files (os error 24)".into());
            }
            let bytes = fs::read(&self.path).map_err(|e| e.to_string())?;
            let mut st = self.state.lock().unwrap();
            let h = sha256(&bytes);
            if h == st.0.sha256 {
                return Ok(Reloaded::Unchanged);
            }
            let n = bytes.iter().filter(|b| **b == b'\n').count();
            *st = (
                Version {
                    sha256: h,
                    generation: st.0.generation + 1,
                },
                n,
            );
            Ok(Reloaded::Applied { entries: n })
        }
    }

    fn wait(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f()
    }

    #[test]
    fn a_failed_reload_is_retried_without_a_further_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "a\n").unwrap();
        let t = Arc::new(Lines {
            path: path.clone(),
            fail: AtomicBool::new(false),
            state: Mutex::new((
                Version {
                    sha256: sha256(b"a\n"),
                    generation: 1,
                },
                1,
            )),
        });
        let failures = Arc::new(Mutex::new(Vec::new()));
        let f2 = failures.clone();
        let reporter: Reporter = Arc::new(move |r: &ReloadReport<'_>| {
            if let ReloadReport::Failed { retry_in, .. } = r {
                f2.lock().unwrap().push(*retry_in);
            }
        });
        let _h = spawn(&t, Some(reporter), false).unwrap();
        // The version loaded at start is acknowledged.
        assert!(wait(Duration::from_secs(5), || {
            read_ack(&ack_path_for(&path))
                .ok()
                .flatten()
                .is_some_and(|a| a.generation == 1 && a.sha256 == hex(&sha256(b"a\n")))
        }));
        t.fail.store(true, Ordering::SeqCst);
        fs::write(&path, "a\nb\n").unwrap();
        assert!(wait(Duration::from_secs(10), || failures
            .lock()
            .unwrap()
            .len()
            >= 4));
        assert_eq!(t.version().generation, 1, "old version stays while failing");
        assert_eq!(
            wait_applied(&path, &sha256(b"a\nb\n"), Duration::ZERO),
            AckState::Pending {
                generation: 1,
                pid: std::process::id()
            }
        );
        let seen = failures.lock().unwrap().clone();
        assert_eq!(
            &seen[..4],
            &[
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400),
                Duration::from_millis(800)
            ]
        );
        // The fault clears; the file does not change again.
        t.fail.store(false, Ordering::SeqCst);
        assert_eq!(
            wait_applied(&path, &sha256(b"a\nb\n"), Duration::from_secs(10)),
            AckState::Applied {
                generation: 2,
                pid: std::process::id()
            }
        );
        assert_eq!(t.state.lock().unwrap().1, 2);
        let mode = fs::metadata(ack_path_for(&path)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn no_acknowledgement_means_no_broker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(
            wait_applied(&path, &sha256(b""), Duration::from_millis(100)),
            AckState::NoBroker
        );
    }
}
