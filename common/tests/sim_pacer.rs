//! The pacer's token bucket: burst allowance, average rate, and a clock that steps backwards.
//! (Here rather than in pacer.rs because common/src may not read the clock, even in tests.)

use std::time::{Duration, Instant};

use sluice_common::transport::pacer::Pacer;

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
    // Late: 50 ms with nothing sent earns 50 000 bytes, the bucket holds 10 000 of them (after
    // repaying the one frame of debt).
    let late = now + Duration::from_millis(50);
    assert!(p.can_send(late));
    let unused = p.unused_bytes();
    assert!((39_000..=40_000).contains(&unused), "{unused}");
}
