//! A token bucket on wire bytes, so the sender never exceeds the diode's line rate.
//!
//! The bucket counts *wire* bytes: each frame costs its length plus [`IP_UDP_OVERHEAD`] (IPv4 +
//! UDP headers), because that is what the diode's line rate is spent on. It starts with
//! `burst_bytes` (one GSO batch of ~64 frames) and is then held to `rate` on average.
//!
//! **Late wake-ups keep their budget.** A sender thread wakes when a batch is due, but the OS
//! wakes it late (timer slack, the other process on the core), and a block read or a solve
//! hand-off can hold it for milliseconds. A bucket that holds only one batch throws away every
//! byte earned past the batch, so the sender fell 10-20 % short of its rate (bench/README.md).
//! The bucket therefore holds `burst_bytes` plus [`CATCH_UP`] of the rate: what a late wake-up
//! earned is sent as soon as the sender runs again, and the average stays at `rate`
//! (`common/tests/sim_pacer.rs::late_wakeups_keep_the_average_rate`). The catch-up is bounded so
//! a long stall (a slow disk, a suspended process) does not become a huge burst: the worst-case
//! burst is `burst_bytes + rate × CATCH_UP` (e.g. 1.1 MB at 909 Mbit/s, 12.5 MB at 10 Gbit/s,
//! well inside the receiver's 32 MiB socket buffer); anything earned beyond it is counted as
//! unused ([`Pacer::unused_bytes`]).
//!
//! The bucket may go into debt by one frame: a frame is allowed whenever the balance is not
//! negative, and its cost is then subtracted. That keeps the check independent of the exact size
//! of the next frame and is exact on average.
//!
//! No clock is read here: every call takes `now`. Time never flows backwards for the bucket; a
//! `now` earlier than the last one seen is treated as no elapsed time.

use std::time::{Duration, Instant};

/// Bytes of IPv4 (20) + UDP (8) header that each datagram costs on the wire beyond its payload.
pub const IP_UDP_OVERHEAD: usize = 28;

/// Frames in one burst allowance: enough for a single GSO batch.
pub const DEFAULT_BURST_FRAMES: u64 = 64;

/// How much of the rate a late or stalled sender may make up at once, beyond the burst
/// allowance: 10 ms covers timer slack, a scheduler slice lost to the receiver on a shared core
/// (3-4 ms on 2 vCPUs) and a window's block reads (4.3 ms average, 11 ms worst per 16 MiB in
/// bench/README.md). Worst case: `rate × 10 ms` more bytes back to back (1.1 MB at 909 Mbit/s).
pub const CATCH_UP: Duration = Duration::from_millis(10);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Token-bucket pacer. `rate = None` means unpaced: [`Pacer::try_consume`] always succeeds.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bytes per second, or `None` for unpaced.
    rate: Option<u64>,
    /// Bucket capacity in byte-nanoseconds (bytes × 10⁹), so refill is exact integer math: the
    /// burst allowance plus [`CATCH_UP`] of the rate.
    capacity: i128,
    /// Current balance in byte-nanoseconds; may be negative by at most one frame.
    balance: i128,
    /// Time of the last refill.
    last: Option<Instant>,
    /// Byte-nanoseconds the full bucket could not hold: rate the sender did not use because it
    /// was busy, asleep past its wake-up time, or had nothing ready.
    unused: u128,
}

impl Pacer {
    /// A pacer sending at most `rate_bytes_per_sec` wire bytes per second on average, with a
    /// burst allowance of `burst_bytes` (clamped to at least one byte) and [`CATCH_UP`] for late
    /// wake-ups. The bucket starts with the burst allowance.
    pub fn new(rate_bytes_per_sec: Option<u64>, burst_bytes: u64) -> Self {
        Self::with_catch_up(rate_bytes_per_sec, burst_bytes, CATCH_UP)
    }

    /// As [`Pacer::new`] with another catch-up bound (`Duration::ZERO`: budget past the burst
    /// is dropped, the behaviour before late wake-ups kept their budget).
    pub fn with_catch_up(
        rate_bytes_per_sec: Option<u64>,
        burst_bytes: u64,
        catch_up: Duration,
    ) -> Self {
        let rate = rate_bytes_per_sec.filter(|r| *r > 0);
        let burst = i128::from(burst_bytes.max(1)) * NANOS_PER_SEC as i128;
        // rate × catch_up in byte-nanoseconds: bytes/s × ns, exact.
        let extra = catch_up
            .as_nanos()
            .saturating_mul(u128::from(rate.unwrap_or(0)));
        let extra = i128::try_from(extra).unwrap_or(i128::MAX / 2);
        Self {
            rate,
            capacity: burst.saturating_add(extra),
            balance: burst,
            last: None,
            unused: 0,
        }
    }

    /// The most wire bytes the pacer ever allows back to back (plus one frame of debt): the
    /// burst allowance and the catch-up.
    pub fn max_burst_bytes(&self) -> u64 {
        u64::try_from(self.capacity / NANOS_PER_SEC as i128).unwrap_or(u64::MAX)
    }

    /// The configured rate in bytes per second, if paced.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_nanos();
            let add = i128::try_from(elapsed.saturating_mul(u128::from(rate))).unwrap_or(i128::MAX);
            let filled = self.balance.saturating_add(add);
            if filled > self.capacity {
                self.unused = self
                    .unused
                    .saturating_add((filled - self.capacity).unsigned_abs());
            }
            self.balance = filled.min(self.capacity);
            if now > last {
                self.last = Some(now);
            }
        } else {
            self.last = Some(now);
        }
    }

    /// Whether a frame may be sent at `now`. Does not consume anything.
    pub fn can_send(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.rate.is_none() || self.balance >= 0
    }

    /// Charge `wire_bytes` (frame length + [`IP_UDP_OVERHEAD`]) for a frame sent at `now`.
    pub fn consume(&mut self, now: Instant, wire_bytes: usize) {
        if self.rate.is_none() {
            return;
        }
        self.refill(now);
        let cost = (wire_bytes as i128).saturating_mul(NANOS_PER_SEC as i128);
        self.balance = self.balance.saturating_sub(cost);
    }

    /// Wire bytes of rate that went unused since the start (the bucket was full when more
    /// arrived): how far a paced sender fell short of its rate, whatever the reason.
    pub fn unused_bytes(&self) -> u64 {
        u64::try_from(self.unused / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// If the bucket is in debt, the instant at which it will be back to zero (a frame may be
    /// sent again). `None` when a frame may be sent now or the pacer is unpaced.
    pub fn ready_at(&self) -> Option<Instant> {
        let rate = self.rate?;
        if self.balance >= 0 {
            return None;
        }
        let last = self.last?;
        let deficit = self.balance.unsigned_abs();
        // ceil(deficit / rate) nanoseconds
        let nanos = deficit.div_ceil(u128::from(rate));
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        last.checked_add(Duration::from_nanos(nanos))
    }
}
