//! Long-poll wake-ups, per partition: a Fetch waiting for data registers
//! on the partitions it reads, and an append wakes only the fetches
//! registered on its partition. A partition nobody waits on costs an append
//! one atomic load; a waiting fetch costs nothing to appends elsewhere.
//!
//! No lost wake-ups: a fetch registers before it reads, and an append
//! checks for watchers after releasing the partition lock it published its
//! new end under. Either the fetch's read took that lock after the append
//! (it sees the data), or its registration happened before the append's
//! check (the append finds it). `Notify::notify_one` keeps a permit for a
//! fetch that is not parked yet, so a wake between read and wait is kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::Partition;

/// The fetches waiting on one partition.
#[derive(Default)]
pub struct Watchers {
    /// How many are registered: an append skips the lock while it is zero.
    count: AtomicUsize,
    slots: Mutex<Slots>,
}

/// Registered fetches by slot; a slot is reused once its fetch is done,
/// so unregistering is O(1) however many wait on a hot partition.
#[derive(Default)]
struct Slots {
    list: Vec<Option<Arc<Notify>>>,
    free: Vec<usize>,
}

impl Watchers {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every fetch registered here. Called after an append released
    /// the partition lock, and when the partition is deleted.
    pub fn wake(&self) {
        // Ordered after the waiter's registration by the partition lock
        // (see the module comment), so Relaxed suffices.
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for n in self.slots().list.iter().flatten() {
            n.notify_one();
        }
    }

    fn register(&self, notify: &Arc<Notify>) -> usize {
        let mut s = self.slots();
        let slot = match s.free.pop() {
            Some(i) => {
                s.list[i] = Some(notify.clone());
                i
            }
            None => {
                s.list.push(Some(notify.clone()));
                s.list.len() - 1
            }
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        slot
    }

    fn unregister(&self, slot: usize) {
        let mut s = self.slots();
        if let Some(entry) = s.list.get_mut(slot) {
            *entry = None;
            s.free.push(slot);
        }
        if self.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Nobody left: drop the holes so a later wake-up walks nothing.
            s.list.clear();
            s.free.clear();
        }
    }

    /// How many fetches wait here (tests).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One long-polling fetch's registration on every partition it reads,
/// undone when dropped (answered, timed out, or the connection gone).
pub struct FetchWatch {
    notify: Arc<Notify>,
    /// Each partition once, however often the request names it: a request
    /// naming one partition a million times registers once, so it cannot
    /// make that partition's appends walk a million entries.
    registered: Vec<(Arc<Partition>, usize)>,
}

impl FetchWatch {
    /// Registers on `partitions` (repeats are registered once). Call it
    /// before the read that decides to wait.
    pub fn new(partitions: impl IntoIterator<Item = Arc<Partition>>) -> FetchWatch {
        let mut parts: Vec<Arc<Partition>> = partitions.into_iter().collect();
        parts.sort_unstable_by_key(|p| Arc::as_ptr(p) as usize);
        parts.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let notify = Arc::new(Notify::new());
        let registered = parts
            .into_iter()
            .map(|p| {
                let slot = p.watchers().register(&notify);
                (p, slot)
            })
            .collect();
        FetchWatch { notify, registered }
    }

    /// Resolves once one of the partitions was appended to (or deleted)
    /// since registration or since the last call that returned.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Distinct partitions registered.
    pub fn len(&self) -> usize {
        self.registered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }
}

impl Drop for FetchWatch {
    fn drop(&mut self) {
        for (p, slot) in &self.registered {
            p.watchers().unregister(*slot);
        }
    }
}
