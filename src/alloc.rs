//! Keeps freed memory in the process instead of handing it back to the kernel.
//!
//! A training step allocates and frees the same few buffers of a few MB each, thousands of times
//! an epoch. glibc serves blocks that large with fresh `mmap`s (and trims the heap top it frees),
//! so every step paid page faults and page clearing for them again: measured here, 29% of a
//! baseline step went to the kernel's page-fault path. Raising the mmap and trim thresholds makes
//! those blocks come from, and return to, the heap, where the next step reuses them.

/// Tunes the allocator of this process (glibc on Linux; a no-op elsewhere).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any worker thread
    // starts.
    unsafe {
        // glibc accepts at most 32 MB (HEAP_MAX_SIZE / 2) for the mmap threshold; a training
        // step's largest block (an eval batch's first conv output) is about 11 MB.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
