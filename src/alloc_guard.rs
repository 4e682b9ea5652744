//! Survives the array-count bomb in `kafka-protocol`.
//!
//! kafka-protocol 0.18 decodes arrays with `Vec::with_capacity(count)` where
//! `count` comes straight off the wire. A five-byte body that claims 2^31
//! elements of a 100-byte struct asks the allocator for ~200 GiB at once. The
//! system allocator refuses (the kernel's overcommit heuristic rejects a
//! single mapping larger than RAM + swap), and Rust's answer to a refused
//! allocation is `handle_alloc_error`, which aborts the process: no panic,
//! nothing `catch_unwind` could stop, and one unauthenticated client would
//! take the broker down.
//!
//! Patching every decode site would mean forking the crate, and a pre-scan of
//! every request schema would be a second decoder to keep in sync. Instead we
//! make the huge reservation *succeed cheaply*: any single allocation of at
//! least [`HUGE_THRESHOLD`] bytes is served by an anonymous `mmap` with
//! `MAP_NORESERVE`. That only reserves address space (Linux does not count
//! NORESERVE mappings against the overcommit limit in its default mode), so
//! the `Vec` is created, the decoder tries to read the claimed elements, runs
//! out of bytes after a handful, returns an error, and the mapping is
//! unmapped. Physical memory touched is bounded by what the frame really
//! carries, and the frame size is bounded by `max_request_size`.
//!
//! A legitimate broker never makes a single allocation this large (frames are
//! capped far below it), so normal allocations keep going to the system
//! allocator untouched. Under `vm.overcommit_memory = 2` (strict accounting)
//! even NORESERVE mappings are charged; the broker warns at start in that mode.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are served by reserve-only mappings.
pub const HUGE_THRESHOLD: usize = 1 << 30;

pub struct HugeAllocGuard;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p <= 0 {
        4096
    } else {
        p as usize
    }
}

unsafe fn map_huge(layout: Layout) -> *mut u8 {
    if layout.align() > page_size() {
        return std::ptr::null_mut();
    }
    let ptr = libc::mmap(
        std::ptr::null_mut(),
        layout.size(),
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    );
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr as *mut u8
    }
}

unsafe impl GlobalAlloc for HugeAllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE_THRESHOLD {
            map_huge(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE_THRESHOLD {
            // Fresh anonymous mappings are already zero-filled.
            map_huge(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE_THRESHOLD {
            libc::munmap(ptr as *mut libc::c_void, layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = layout.size() >= HUGE_THRESHOLD;
        let new_huge = new_size >= HUGE_THRESHOLD;
        if !old_huge && !new_huge {
            return System.realloc(ptr, layout, new_size);
        }
        // Crossing between the two worlds (or resizing a mapping): allocate,
        // copy, free. Rare by construction, so simplicity wins over mremap.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new_ptr = self.alloc(new_layout);
        if !new_ptr.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new_ptr
    }
}

/// True when the kernel charges even reserve-only mappings (strict overcommit),
/// which defeats this guard.
pub fn strict_overcommit() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .map(|s| s.trim() == "2")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_capacity_is_reserved_not_fatal() {
        // 2^31 elements of 128 bytes: 256 GiB, more than any test machine has.
        let v: Vec<[u8; 128]> = Vec::with_capacity(1 << 31);
        assert!(v.capacity() >= 1 << 31);
        drop(v);
        let mut small: Vec<u64> = Vec::with_capacity(4);
        small.extend([1, 2, 3, 4, 5]);
        assert_eq!(small.iter().sum::<u64>(), 15);
    }
}
