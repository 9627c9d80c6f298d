//! The pacer's token bucket: burst allowance, average rate, and a clock that steps backwards.
//! (Here rather than in pacer.rs because common/src may not read the clock, even in tests.)

use std::time::{Duration, Instant};

use sluice_common::transport::pacer::{CATCH_UP, Pacer};

#[test]
fn unpaced_always_sends() {
    let mut p = Pacer::new(None, 1);
    let t = Instant::now();
    for _ in 0..1000 {
        assert!(p.can_send(t));
        p.consume(t, 9000);
    }
    assert_eq!(p.ready_at(), None);
}

#[test]
fn burst_then_rate() {
    let t0 = Instant::now();
    // 1 MB/s, burst of 10 frames of 1000 wire bytes.
    let mut p = Pacer::new(Some(1_000_000), 10_000);
    let mut sent = 0;
    while p.can_send(t0) {
        p.consume(t0, 1000);
        sent += 1;
    }
    // The bucket allows the full burst and one frame of debt.
    assert_eq!(sent, 11);
    let ready = p.ready_at().expect("in debt");
    assert_eq!(ready.duration_since(t0), Duration::from_millis(1));
    assert!(!p.can_send(ready - Duration::from_nanos(1)));
    assert!(p.can_send(ready));

    // Over one simulated second, the average is held at the rate (+ the burst).
    let mut now = ready;
    let mut bytes = 0u64;
    let end = t0 + Duration::from_secs(1);
    while now < end {
        if p.can_send(now) {
            p.consume(now, 1000);
            bytes += 1000;
        } else {
            now = p.ready_at().expect("in debt");
        }
    }
    assert!((990_000..=1_012_000).contains(&bytes), "{bytes}");
}

#[test]
fn time_going_backwards_is_harmless() {
    let t0 = Instant::now();
    let mut p = Pacer::new(Some(1000), 1000);
    p.consume(t0 + Duration::from_secs(1), 2000);
    assert!(!p.can_send(t0));
    assert!(p.can_send(t0 + Duration::from_secs(2)));
}

/// A sender that keeps up loses no rate; one that sleeps past a full bucket loses exactly what
/// the bucket could not hold, and the pacer reports it.
#[test]
fn rate_left_unused_by_a_late_sender_is_counted() {
    let t0 = Instant::now();
    // 1 MB/s, burst of 10 frames of 1000 wire bytes; drain the initial burst.
    let mut p = Pacer::new(Some(1_000_000), 10_000);
    while p.can_send(t0) {
        p.consume(t0, 1000);
    }
    // On time: every frame sent the moment it is allowed, for 100 ms.
    let mut now = t0;
    while now < t0 + Duration::from_millis(100) {
        now = p.ready_at().unwrap_or(now);
        assert!(p.can_send(now));
        p.consume(now, 1000);
    }
    assert_eq!(p.unused_bytes(), 0);
    // Late: 50 ms with nothing sent earns 50 000 bytes; the bucket holds the 10 000-byte burst
    // plus 10 ms of catch-up (10 000) of them, after repaying the one frame of debt.
    let late = now + Duration::from_millis(50);
    assert!(p.can_send(late));
    let unused = p.unused_bytes();
    assert!((29_000..=30_000).contains(&unused), "{unused}");
}

const FRAME: usize = 1500;
const BATCH: u64 = 44;

/// Simulates the sending thread of `sender/src/link.rs` for `secs` of virtual time: it wakes
/// when a GSO batch is due (`ready_at` + 43 frames), but late by a pseudo-random 0-2 ms, and
/// every 80 ms (one window) it is held 5 ms by block reads. At each wake-up it sends every frame
/// the pacer allows. Returns (wire bytes sent, largest run of frames sent at one instant).
fn late_sender(p: &mut Pacer, rate: u64, secs: u64) -> (u64, u64) {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let batch_delay = Duration::from_nanos((BATCH - 1) * FRAME as u64 * 1_000_000_000 / rate);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut lateness = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_nanos(rng % 2_000_000)
    };
    let (mut now, mut bytes, mut longest) = (t0, 0u64, 0u64);
    let mut next_stall = t0 + Duration::from_millis(80);
    while now < end {
        let mut run = 0;
        while p.can_send(now) && now < end {
            p.consume(now, FRAME);
            bytes += FRAME as u64;
            run += 1;
        }
        longest = longest.max(run);
        let due = p.ready_at().unwrap_or(now) + batch_delay;
        now = due.max(now) + lateness();
        if now >= next_stall {
            now += Duration::from_millis(5);
            next_stall += Duration::from_millis(80);
        }
    }
    (bytes, longest)
}

/// Issue 15: a sender that wakes late keeps its budget, so over two simulated seconds it sends
/// within 1 % of its rate; the pacer before (budget past one batch dropped) fell far short.
#[test]
fn late_wakeups_keep_the_average_rate() {
    let rate = 200_000_000u64; // 1.6 Gbit/s
    let burst = 64 * FRAME as u64;
    let mut p = Pacer::new(Some(rate), burst);
    let (bytes, _) = late_sender(&mut p, rate, 2);
    let achieved = bytes as f64 / 2.0 / rate as f64;
    assert!(
        (0.99..=1.01).contains(&achieved),
        "achieved {achieved:.4} of the rate"
    );

    let mut old = Pacer::with_catch_up(Some(rate), burst, Duration::ZERO);
    let (old_bytes, _) = late_sender(&mut old, rate, 2);
    let old_achieved = old_bytes as f64 / 2.0 / rate as f64;
    assert!(
        old_achieved < 0.95,
        "dropping budget reached {old_achieved:.4}"
    );
    assert!(old.unused_bytes() > p.unused_bytes());
}

/// The catch-up is bounded: after a one-second stall the sender may send the burst allowance
/// plus `CATCH_UP` of the rate back to back, never the second's worth it missed.
#[test]
fn a_long_stall_becomes_a_bounded_burst() {
    let rate = 125_000_000u64; // 1 Gbit/s
    let burst = 64 * FRAME as u64;
    let mut p = Pacer::new(Some(rate), burst);
    let cap = burst + rate * CATCH_UP.as_millis() as u64 / 1000;
    assert_eq!(p.max_burst_bytes(), cap);
    let t0 = Instant::now();
    let mut sent = 0u64;
    while p.can_send(t0) {
        p.consume(t0, FRAME);
        sent += FRAME as u64;
    }
    // Starts with one batch (and one frame of debt), not the catch-up.
    assert_eq!(sent, burst + FRAME as u64);
    let late = t0 + Duration::from_secs(1);
    let mut sent = 0u64;
    while p.can_send(late) {
        p.consume(late, FRAME);
        sent += FRAME as u64;
    }
    // The whole bucket and at most one frame of debt.
    assert!(
        (cap..=cap + FRAME as u64).contains(&sent),
        "{sent} vs {cap}"
    );
    assert!(p.unused_bytes() >= rate - cap - FRAME as u64);
    // And then the rate again.
    assert!(!p.can_send(late));
}
