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

mod sim;

/// A paced sender through the simulated link: the virtual time the transfer takes matches its
/// wire bytes (frames + 28 bytes IP/UDP each) divided by the rate, less one burst.
#[test]
fn paced_sender_holds_its_rate_end_to_end() {
    use sim::{Impairment, Link, Outcome, Sim, key, oid};
    use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
    use sluice_common::transport::recv::{Receiver, ReceiverConfig};
    use sluice_common::transport::send::{Sender, SenderConfig};

    let rate = 20_000_000u64;
    let mut sim = Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        Link::new(Impairment::default(), 1),
    );
    sim.frame_time = Duration::ZERO;
    let mut c = SenderConfig::new(key(), [1; 16], 1414, 742 * 1414);
    c.rate_bytes_per_sec = Some(rate);
    let s = sim.add_sender(Sender::new(c, sim.now, 0).expect("sender"));
    let len = 8u64 << 20;
    sim.queue(s, oid(1), len, 1);
    let t0 = sim.now;
    sim.run();
    let elapsed = sim.now - t0 - Duration::from_secs(3); // minus the receiver's settle
    let st = sim.senders[s].sender.stats();
    let wire = st.bytes + st.frames * IP_UDP_OVERHEAD as u64;
    let burst = 64 * (1414 + 58 + IP_UDP_OVERHEAD as u64);
    let expected = Duration::from_secs_f64((wire - burst) as f64 / rate as f64);
    let ratio = elapsed.as_secs_f64() / expected.as_secs_f64();
    assert!(
        (0.97..1.03).contains(&ratio),
        "elapsed {elapsed:?} expected {expected:?}"
    );
    assert_eq!(sim.log(&oid(1)).outcomes, vec![Outcome::Complete { len }]);
}
