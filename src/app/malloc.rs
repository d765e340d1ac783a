//! Big buffers go back to the system when the viewer frees them.
//!
//! glibc serves a block of 128 KiB or more with its own mapping, but each time such a block is
//! freed it raises that threshold to the block's size (up to 32 MiB): from then on blocks of that
//! size come from the heap, and freeing them leaves holes the process keeps. The viewer frees
//! big blocks all the time (a hidden label's surface, a finished job's masks, and under a
//! software renderer the GPU's buffers too), so hiding and showing a CT's 61 label surfaces
//! left it about 100 MB larger than before. A fixed threshold of 1 MiB keeps every buffer of a
//! megabyte or more in its own mapping, returned whole when freed
//! (`packaging/linux/measure_viewer_memory.sh` measures the effect).

/// Fixes glibc's mmap threshold at 1 MiB (module doc). Elsewhere it does nothing.
pub fn return_big_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    {
        /// `M_MMAP_THRESHOLD` in glibc's `malloc.h`.
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // SAFETY: `mallopt` only sets one of the allocator's tunables (under its own lock); it
        // takes no pointers and is called with a documented parameter and a positive value.
        if unsafe { mallopt(M_MMAP_THRESHOLD, 1 << 20) } != 1 {
            log::debug!("mallopt(M_MMAP_THRESHOLD) was refused: freed buffers may stay in the heap");
        }
    }
}
