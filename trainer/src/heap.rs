//! The process heap's settings for tensor work: freed tensor buffers stay in the
//! process for the next tensor instead of going back to the kernel.
//!
//! A training step allocates and frees tensors of tens of MiB over and over (at
//! Qwen2.5-0.5B's shape and 2,048 tokens a step, each MLP activation is 40 MiB, each
//! chunk of logits up to 128 MiB). glibc maps every allocation above its mmap
//! threshold (128 KiB, raised as it goes up to 32 MiB) afresh and unmaps it when
//! freed, and returns the heap's free top past 128 KiB; the kernel zero-fills every
//! page of the next such tensor again on first touch. On the CPU backend that was
//! 14.7 million page faults in two optimizer steps and about a sixth of the step's
//! time. With both thresholds at their maximum the freed buffers are reused: 0.5
//! million page faults, 42.4 and 43.3 tokens/s where it was 36.1 and 36.4, the same
//! peak RSS at the 0.5B shape. One arena for all threads: with one per rayon thread each kept its
//! own freed buffers, and a small model with a large vocabulary peaked 0.12 GiB
//! higher (0.55 against 0.43 GiB). What is kept costs that much at such shapes still
//! (0.43 against 0.31 GiB without these settings); `benches/RESULTS.md`, "scale" and
//! "memory plan on the CPU".

/// Keeps freed memory in the heap for reuse (glibc on Linux; elsewhere the
/// allocator's defaults stay). Call once, before the first tensor.
pub fn keep_freed_tensor_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds and its arena count;
    // it is called at start-up, before any other thread, and a refused value leaves
    // glibc's default, which is still correct.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
