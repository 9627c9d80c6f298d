//! Rateless passes, persisted progress and concurrent senders: a second pass of fresh repair
//! symbols completes what the first could not; progress exported after pass 1 restores into a
//! new receiver that then writes only the missing blocks; two objects from two senders
//! interleaved both complete.

use std::ops::ControlFlow;

use sluice_common::transport::progress::{Progress, ProgressError};
use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_testkit::drive;
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{self, Outcome, Sim, key, oid, whole};

const T: u16 = 1024;
const BLOCK: u32 = 1 << 20;
const LEN: u64 = 12 * (1 << 20) + 777;

/// 15 % loss against 10 % overhead: pass 1 alone leaves blocks missing, pass 2's fresh repair
/// symbols (never a repeat) complete the object.
#[test]
fn second_pass_completes_above_the_overhead() {
    let seed = 11;
    let mut sim = Sim::seeded(
        ImpairConfig {
            loss_pct: 15.0,
            ..Default::default()
        },
        seed,
    );
    let s = sim.add_sender(sim::sender(1, T, BLOCK, 2));
    sim.queue(s, oid(seed), LEN, seed);
    sim.run();
    let id = oid(seed);
    assert_eq!(sim.log(&id).outcomes, vec![Outcome::Complete { len: LEN }]);
    assert!(sim.staged(&id) == whole(seed, LEN, BLOCK).as_slice());
    let st = sim.senders[0].sender.stats();
    assert_eq!(st.passes_completed, 2);
    // Both passes send K+R symbols per block: the same count, all distinct ESIs.
    assert_eq!(st.data_frames, 2 * st.data_frames_this_pass);
    assert_eq!(sim.receiver.stats().duplicate_symbols, 0);
}

/// Pass 1 through heavy loss → export progress → a brand-new receiver (a restart) restored
/// from the bytes → pass 2 only → complete, writing exactly the blocks pass 1 missed.
#[test]
fn progress_survives_a_restart_and_pass_two_fills_the_gaps() {
    let seed = 12;
    let id = oid(seed);
    let blocks = LEN.div_ceil(u64::from(BLOCK));
    // Pass 1 and pass 2 frames, recorded from one two-pass sender.
    let mut s = sim::sender(1, T, BLOCK, 2);
    let now = std::time::Instant::now();
    s.queue_object(now, id, LEN, 0).expect("queue");
    let mut passes: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    drive::drive(&mut s, now, sim::reads(seed), |s, frame| {
        let pass = if s.stats().passes_completed == 0 {
            0
        } else {
            1
        };
        passes[pass].push(frame.to_vec());
        ControlFlow::Continue(())
    });

    // Receiver 1 sees pass 1 at 15 % loss.
    let mut sim1 = Sim::seeded(
        ImpairConfig {
            loss_pct: 15.0,
            ..Default::default()
        },
        seed,
    );
    let mut out = Vec::new();
    for f in &passes[0] {
        sim1.link.push(f.clone(), sim1.now, &mut out);
    }
    for d in std::mem::take(&mut out) {
        sim1.deliver(&d);
    }
    let written1 = sim1.log(&id).writes;
    assert!(
        written1 > 0 && written1 < blocks,
        "pass 1 wrote {written1}/{blocks}"
    );
    let bytes = sim1.progress_bytes(&id).expect("live session");
    let staged1 = sim1.staged(&id).to_vec();

    // The stored record is validated like wire input.
    let limits = ReceiverConfig::new(key()).limits;
    let mut torn = bytes.clone();
    torn[30] ^= 1;
    assert_eq!(
        Progress::from_bytes(&torn, &limits),
        Err(ProgressError::BadChecksum)
    );
    assert_eq!(
        Progress::from_bytes(&bytes[..20], &limits),
        Err(ProgressError::Truncated)
    );
    let mut tiny = limits;
    tiny.max_object_bytes = 1 << 20;
    assert_eq!(
        Progress::from_bytes(&bytes, &tiny),
        Err(ProgressError::OverLimit)
    );
    let progress = Progress::from_bytes(&bytes, &limits).expect("valid record");
    assert_eq!(progress.done_count(), written1);
    assert_eq!(progress.to_bytes(), bytes);

    // Restart: receiver 2 restored from the bytes, staging file "on disk" from receiver 1.
    let mut sim2 = Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        ImpairConfig::default(),
    );
    sim2.receiver.restore(sim2.now, progress).expect("restore");
    let log = sim2.objects.entry(id).or_default();
    log.staging = Some(sim::Staging::Mem { data: staged1 });
    for f in &passes[1] {
        sim2.deliver(f);
    }
    sim2.settle();
    let log = sim2.log(&id);
    assert_eq!(log.outcomes, vec![Outcome::Complete { len: LEN }]);
    assert_eq!(log.opens, 0, "no Open after restore");
    assert_eq!(
        log.writes,
        blocks - written1,
        "only the missing blocks are written"
    );
    assert!(sim2.staged(&id) == whole(seed, LEN, BLOCK).as_slice());
}

/// Two senders, one object each, frames interleaved one by one at 2 % loss.
#[test]
fn two_senders_interleaved_both_complete() {
    let mut sim = Sim::seeded(
        ImpairConfig {
            loss_pct: 2.0,
            reorder_window: 64,
            ..Default::default()
        },
        13,
    );
    let a = sim.add_sender(sim::sender(1, T, BLOCK, 1));
    let b = sim.add_sender(sim::sender(2, T, BLOCK, 1));
    sim.queue(a, oid(21), LEN, 21);
    sim.queue(b, oid(22), LEN / 3, 22);
    sim.run();
    for (id, len) in [(oid(21), LEN), (oid(22), LEN / 3)] {
        assert_eq!(sim.log(&id).outcomes, vec![Outcome::Complete { len }]);
        assert!(sim.staged(&id) == whole(id[0] as u64, len, BLOCK).as_slice());
    }
    assert!(sim.max_buffered <= ReceiverConfig::new(key()).max_buffered_bytes);
}

/// Sender shape: pass p sends ESIs (p-1)(K+R)..p(K+R), interleaved across the window, with
/// three end frames per pass and heartbeats carrying the ledger.
#[test]
fn sender_interleaves_and_never_repeats_an_esi() {
    use sluice_common::transport::wire::{self, Frame};
    let mut s = sim::sender(1, T, BLOCK, 2);
    let now = std::time::Instant::now();
    let len = 3 * u64::from(BLOCK) + 10;
    s.queue_object(now, oid(1), len, 0).expect("queue");
    let mut seen = std::collections::HashSet::new();
    let mut order = Vec::new();
    let (mut ends, mut heartbeats) = (0, 0);
    for frame in drive::frames(&mut s, now, |r| vec![1; r.len]) {
        match wire::decode(&key(), &frame).expect("valid frame") {
            Frame::Data(d) => {
                assert!(seen.insert((d.header.block, d.header.esi)), "ESI repeated");
                order.push(d.header.block);
            }
            Frame::ObjectEnd(e) => {
                ends += 1;
                assert_eq!(e.passes, 2);
            }
            Frame::Heartbeat(h) => {
                heartbeats += 1;
                assert!(h.ledger.len() <= 16);
            }
        }
    }
    assert_eq!(ends, 6);
    assert!(heartbeats >= 1);
    // Block 0 (the bundle's signed header) is a window of its own, first: K + R = 1127 frames;
    // then the rest interleaved, one window: blocks 1, 2, 3.
    assert!(order[..1127].iter().all(|b| *b == 0));
    assert_eq!(&order[1127..1130], &[1, 2, 3]);
    // K = 1024 for full blocks, R = 103: 1127 per pass; last block K = 1, R = 1.
    assert_eq!(seen.len() as u64, 2 * (3 * 1127 + 2));
}
