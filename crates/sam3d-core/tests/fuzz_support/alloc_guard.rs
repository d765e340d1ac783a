//! A global allocator for the fuzz test binary that refuses any single allocation larger than
//! a limit (`SAM3D_FUZZ_MAX_ALLOC_MB`, default 256) and remembers the largest it refused. A
//! reader that trusts a corrupt size then gets a failed allocation: an error if it asked
//! fallibly (`try_reserve`), else Rust's "memory allocation of N bytes failed" and an abort —
//! either way the harness reports it, and the machine is never asked for the memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest single allocation allowed, in bytes.
pub static LIMIT: AtomicUsize = AtomicUsize::new(256 << 20);
/// Largest allocation refused since the last [`take_refused`] (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

pub struct Guard;

impl Guard {
    fn allowed(size: usize) -> bool {
        if size <= LIMIT.load(Ordering::Relaxed) {
            return true;
        }
        REFUSED.fetch_max(size, Ordering::Relaxed);
        false
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator, or refused with a null
// pointer, which `GlobalAlloc` allows for any allocation it cannot satisfy.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::allowed(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Sets the limit from `SAM3D_FUZZ_MAX_ALLOC_MB` (default 256).
pub fn configure() {
    let mb = std::env::var("SAM3D_FUZZ_MAX_ALLOC_MB").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(256);
    LIMIT.store(mb << 20, Ordering::Relaxed);
}

/// The largest allocation refused since the last call (None: none), and resets it.
pub fn take_refused() -> Option<usize> {
    match REFUSED.swap(0, Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}
