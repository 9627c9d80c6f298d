//! Deadlines and operator events: a sender that stops mid-object is abandoned after the idle
//! timeout, a slow drip after the absolute deadline; heartbeats and pass ends reach the operator.

use std::time::Duration;

use sluice_common::transport::recv::{AbandonReason, Event, Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_testkit::drive;
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{self, Outcome, Sim, key, oid};

const T: u16 = 1024;
const BLOCK: u32 = 64 << 10;

/// Collect the first `n` frames of a sender for object `id` of `len` bytes.
fn frames(id: [u8; 16], len: u64, n: usize) -> Vec<Vec<u8>> {
    let now = std::time::Instant::now();
    let mut s = Sender::new(SenderConfig::new(key(), [3; 16], T, BLOCK), now, 42).expect("s");
    s.queue_object(now, id, len, 42).expect("queue");
    drive::first_frames(&mut s, now, sim::reads(1), n)
}

#[test]
fn sender_vanishing_mid_object_is_abandoned_after_idle_timeout() {
    let c = ReceiverConfig::new(key());
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    let id = oid(1);
    for f in frames(id, 10 * u64::from(BLOCK), 200) {
        sim.deliver(&f);
    }
    assert_eq!(sim.receiver.session_count(), 1);
    let deadline = sim.receiver.poll_timeout().expect("a deadline");
    assert_eq!(deadline, sim.now + c.idle_timeout);
    sim.now += c.idle_timeout - Duration::from_millis(1);
    sim.receiver.handle_timeout(sim.now);
    sim.drain();
    assert_eq!(sim.receiver.session_count(), 1, "not before the timeout");
    sim.now += Duration::from_millis(1);
    sim.receiver.handle_timeout(sim.now);
    sim.drain();
    assert_eq!(sim.receiver.session_count(), 0);
    assert!(matches!(
        sim.log(&id).outcomes.as_slice(),
        [Outcome::Abandoned {
            reason: AbandonReason::IdleTimeout,
            // Block 0 goes first, alone (71 of the 200 frames): it is written, the rest not.
            missing_blocks: 9
        }]
    ));
    assert_eq!(sim.receiver.buffered_bytes(), 0);
    assert_eq!(sim.receiver.staging_bytes(), 0);
}

#[test]
fn slow_drip_hits_the_absolute_deadline() {
    let mut c = ReceiverConfig::new(key());
    c.object_deadline = Duration::from_secs(600);
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    let id = oid(2);
    // One frame every 60 s: never idle for 120 s, but never done either.
    for f in frames(id, 10 * u64::from(BLOCK), 30) {
        sim.deliver(&f);
        sim.now += Duration::from_secs(60);
        sim.receiver.handle_timeout(sim.now);
        sim.drain();
    }
    // Abandoned at the deadline (after frame 10 of 30). Later drips re-open a fresh session
    // (the receiver keeps no tombstone for abandoned objects), which the deadline expires again.
    let outcomes = &sim.log(&id).outcomes;
    assert!(!outcomes.is_empty());
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Outcome::Abandoned {
            reason: AbandonReason::Deadline,
            ..
        }
    )));
    assert!(sim.receiver.session_count() <= 1);
}

#[test]
fn heartbeats_and_pass_ends_reach_the_operator() {
    let mut sim = Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        ImpairConfig::default(),
    );
    let id = oid(3);
    let all = frames(id, 3 * u64::from(BLOCK) + 1, usize::MAX);
    let mut events = Vec::new();
    // Drop every data frame of block 1 so the pass ends with it missing.
    for f in &all {
        if let Ok(sluice_common::transport::wire::Frame::Data(d)) =
            sluice_common::transport::wire::decode(&key(), f)
        {
            if d.header.block == 1 {
                continue;
            }
        }
        sim.receiver.handle_datagram(sim.now, f);
        // A driver that trusts the object from its first frame (arbitrary bytes, no bundle).
        sim.receiver.authenticate(sim.now, id);
        while let Some(e) = sim.receiver.poll_effect() {
            let _ = e;
        }
        while let Some(e) = sim.receiver.poll_event() {
            events.push(e);
        }
    }
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Heartbeat { sender_id, sequence: 1, sent_at_unix_ms: 42, .. } if *sender_id == [3; 16]
    )));
    // Three end frames, one event; block 1 is missing.
    let ends: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::PassEnded { .. }))
        .collect();
    assert_eq!(
        ends,
        vec![&Event::PassEnded {
            object_id: id,
            pass: 1,
            passes: 1,
            missing_blocks: 1
        }]
    );
    // After the grace period: Incomplete with exactly that block missing.
    sim.now += Duration::from_secs(3);
    sim.receiver.handle_timeout(sim.now);
    let mut incomplete = None;
    while let Some(e) = sim.receiver.poll_effect() {
        if let sluice_common::transport::recv::Effect::Incomplete { missing_blocks, .. } = e {
            incomplete = Some(missing_blocks);
        }
    }
    assert_eq!(incomplete, Some(1));
    assert!(!sim.receiver.progress(&id).expect("kept").is_done(1));
}
