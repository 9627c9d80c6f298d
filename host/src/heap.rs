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
//! Used by both binaries.

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
    /// Minor page faults of the calling thread so far (/proc/thread-self/stat, field 10), so
    /// allocations on other test threads cannot disturb the count.
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
        after_comm
            .split(' ')
            .nth(7)
            .and_then(|f| f.parse().ok())
            .expect("minflt")
    }

    /// A window's worth of blocks (4 × 8 MiB) allocated, filled and freed, eight times over.
    /// Untuned, glibc unmaps or trims them and every round faults all 8192 pages in again
    /// (measured 65 530 faults); tuned, most come back from the heap (measured 8 153: a test
    /// thread's arena still returns one block's worth per round, the main arena none).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_are_reused_without_page_faults() {
        assert!(super::keep_block_buffers());
        let window = |fill: u8| {
            let blocks: Vec<Vec<u8>> = (0..4).map(|_| vec![fill; 8 << 20]).collect();
            drop(std::hint::black_box(blocks));
        };
        window(0);
        let before = minor_faults();
        for round in 1..=8u8 {
            window(round);
        }
        let faults = minor_faults() - before;
        assert!(
            faults < 8 * 8192 / 4,
            "{faults} page faults for 8 rounds of 4 reused blocks"
        );
    }
}
