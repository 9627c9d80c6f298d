//! Keeps block-sized buffers in the heap between uses.
//!
//! Both binaries allocate and free one or more buffers per FEC block (1 MiB at MTU 1500, up to
//! 16 MiB) many times a second. glibc serves allocations at or above its mmap threshold with a
//! fresh `mmap` and gives them back with `munmap` on free, so every block paid ~256 page faults
//! and the zeroing of fresh pages: 6.6 % page faults + 1.9 % `clear_page` + memcg charging in the
//! paced sender's profile. Raising the mmap threshold (and the trim threshold with it) lets a
//! freed block be reused straight from the heap. Peak memory is unchanged, still bounded by the
//! window and the receive budget; it is just not handed back to the kernel between windows.
//!
//! Compiled into both binaries (the sender includes this file with `#[path]`).

/// Allocations below this come from the heap. glibc's ceiling for the setting on 64-bit.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap beyond this goes back to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Applies the tuning; false where the allocator is not glibc's or refused it (nothing breaks,
/// blocks just cost page faults again).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_block_buffers() -> bool {
    // SAFETY: mallopt only changes glibc's allocator tuning parameters. It takes two plain
    // integers, has no pointer arguments or memory-safety preconditions, and glibc serialises it
    // with the arena locks, so calling it while other threads allocate is also sound.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_block_buffers() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// The call is accepted, and a freed block-sized buffer is then reused from the heap rather
    /// than unmapped: the next allocation of the same size gets the same address.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_tuning_and_reuses_freed_blocks() {
        assert!(super::keep_block_buffers());
        let first = vec![1u8; 4 << 20];
        let addr = first.as_ptr() as usize;
        drop(first);
        let second = vec![2u8; 4 << 20];
        assert_eq!(second.as_ptr() as usize, addr);
    }
}
