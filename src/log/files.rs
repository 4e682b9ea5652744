//! A bounded cache of open segment files shared by every partition.
//!
//! Holding one descriptor per segment made a 10,000-partition topic cost
//! 10,000 descriptors, enough to starve the listeners of the fd table. A
//! segment now names its file and borrows a descriptor from this cache for
//! each operation; the least recently used descriptor is closed when more
//! than `limit` are open. An operation in progress keeps its `Arc<File>`
//! alive, so the total is `limit` plus the operations in flight (bounded by
//! the worker threads).
//!
//! Durability: an evicted file may have pages not yet fsynced. The next
//! fsync through a new descriptor flushes the inode's pages all the same,
//! and Linux (errseq, since 4.13/4.16) reports a writeback error not yet
//! seen by anyone to the next fsync on any descriptor of the file, so the
//! partition's flusher still learns of it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The smallest limit in force whatever the configuration says: a roll
/// touches two segments, and readers of other partitions need some too.
pub const MIN_OPEN_FILES: usize = 8;

pub struct FileCache {
    limit: usize,
    next_id: AtomicU64,
    /// Descriptors opened since start, for tests and diagnostics.
    opens: AtomicU64,
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    open: HashMap<u64, (Arc<File>, u64)>,
    /// Use tick -> file id, oldest first.
    order: BTreeMap<u64, u64>,
    tick: u64,
}

impl Lru {
    fn touch(&mut self, id: u64) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let (file, t) = self.open.get_mut(&id)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, id);
        Some(file.clone())
    }

    fn insert(&mut self, id: u64, file: Arc<File>) {
        self.tick += 1;
        self.order.insert(self.tick, id);
        if let Some((_, old)) = self.open.insert(id, (file, self.tick)) {
            self.order.remove(&old);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<File>> {
        let (file, t) = self.open.remove(&id)?;
        self.order.remove(&t);
        Some(file)
    }

    /// Takes out the least recently used files beyond `limit`; the caller
    /// drops (closes) them after releasing the lock.
    fn evict(&mut self, limit: usize, out: &mut Vec<Arc<File>>) {
        while self.open.len() > limit {
            let Some((_, id)) = self.order.pop_first() else {
                break;
            };
            if let Some((f, _)) = self.open.remove(&id) {
                out.push(f);
            }
        }
    }
}

impl FileCache {
    pub fn new(limit: usize) -> Arc<FileCache> {
        Arc::new(FileCache {
            limit: limit.max(MIN_OPEN_FILES),
            next_id: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            lru: Mutex::new(Lru::default()),
        })
    }

    /// The limit in force: `configured`, lowered to a quarter of the fd soft
    /// limit when that is smaller, so connections keep most of the table.
    /// Returns the limit and the soft limit when it was lowered.
    pub fn effective_limit(configured: usize) -> (usize, Option<u64>) {
        limit_for(configured, fd_soft_limit())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Descriptors currently held by the cache.
    pub fn open_count(&self) -> usize {
        self.lock().open.len()
    }

    /// Descriptors opened since start.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a segment file the caller has just opened (or created).
    pub fn adopt(self: &Arc<Self>, path: PathBuf, file: File) -> CachedFile {
        let cf = self.register(path);
        self.opens.fetch_add(1, Ordering::Relaxed);
        let mut evicted = Vec::new();
        {
            let mut lru = self.lock();
            lru.insert(cf.id, Arc::new(file));
            lru.evict(self.limit, &mut evicted);
        }
        drop(evicted);
        cf
    }

    /// Registers a file to be opened on first use.
    pub fn register(self: &Arc<Self>, path: PathBuf) -> CachedFile {
        CachedFile {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            path,
            cache: self.clone(),
        }
    }

    fn get(&self, id: u64, path: &Path) -> std::io::Result<Arc<File>> {
        if let Some(f) = self.lock().touch(id) {
            return Ok(f);
        }
        // Opened outside the lock: a slow disk must not stall every other
        // partition's reads. Never `create`: a segment deleted meanwhile
        // must stay deleted.
        let file = Arc::new(OpenOptions::new().read(true).append(true).open(path)?);
        self.opens.fetch_add(1, Ordering::Relaxed);
        let mut evicted = Vec::new();
        let file = {
            let mut lru = self.lock();
            // Another thread may have opened it meanwhile: keep one.
            let file = match lru.touch(id) {
                Some(theirs) => {
                    evicted.push(file);
                    theirs
                }
                None => {
                    lru.insert(id, file.clone());
                    file
                }
            };
            lru.evict(self.limit, &mut evicted);
            file
        };
        drop(evicted);
        Ok(file)
    }

    fn forget(&self, id: u64) {
        let f = self.lock().remove(id);
        drop(f);
    }
}

/// A segment file: its path, and a descriptor from the cache on demand.
pub struct CachedFile {
    id: u64,
    path: PathBuf,
    cache: Arc<FileCache>,
}

impl CachedFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An open descriptor for one operation; do not keep it.
    pub fn get(&self) -> std::io::Result<Arc<File>> {
        self.cache.get(self.id, &self.path)
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

/// `configured`, or a quarter of the fd soft limit `soft` when that is
/// smaller (then with `soft`, for the warning); never below the minimum.
fn limit_for(configured: usize, soft: Option<u64>) -> (usize, Option<u64>) {
    match soft {
        Some(s) if (configured as u64) > s / 4 => (((s / 4) as usize).max(MIN_OPEN_FILES), Some(s)),
        _ => (configured.max(MIN_OPEN_FILES), None),
    }
}

/// The process's soft limit on open files, if it can be read.
pub fn fd_soft_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rc != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(rl.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_stay_bounded_and_files_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(8);
        let files: Vec<CachedFile> = (0..50)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                cache.register(p)
            })
            .collect();
        for round in 0..3 {
            for (i, f) in files.iter().enumerate() {
                use std::os::unix::fs::FileExt;
                let fd = f.get().unwrap();
                let mut buf = [0u8; 32];
                let n = fd.read_at(&mut buf, 0).unwrap();
                assert_eq!(&buf[..n], format!("file {i}").as_bytes(), "round {round}");
                assert!(cache.open_count() <= 8);
            }
        }
        // Recently used files stay open: no reopen for a hot one.
        let before = cache.opens();
        for _ in 0..10 {
            files[49].get().unwrap();
        }
        assert_eq!(cache.opens(), before);
        drop(files);
        assert_eq!(cache.open_count(), 0);
    }

    #[test]
    fn a_small_fd_limit_lowers_the_cache_to_a_quarter() {
        assert_eq!(limit_for(1024, Some(1_048_576)), (1024, None));
        assert_eq!(limit_for(1024, None), (1024, None));
        assert_eq!(limit_for(1024, Some(1024)), (256, Some(1024)));
        assert_eq!(limit_for(1024, Some(4)), (MIN_OPEN_FILES, Some(4)));
        assert_eq!(limit_for(1, Some(1 << 20)), (MIN_OPEN_FILES, None));
    }

    #[test]
    fn a_deleted_file_is_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(8);
        let p = dir.path().join("gone.log");
        std::fs::write(&p, b"x").unwrap();
        let f = cache.register(p.clone());
        std::fs::remove_file(&p).unwrap();
        assert!(f.get().is_err());
        assert!(!p.exists());
    }
}
