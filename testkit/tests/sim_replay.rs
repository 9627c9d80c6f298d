//! Resends of a completed object: a nightly resend or a replayed capture is reported once per
//! resend (`Effect::Replayed`, so the driver records a duplicate), while the late frames of the
//! original send — the rest of its pass, its later passes, reordered stragglers — never are.

use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{Outcome, Sim, key, oid};

const T: u16 = 1024;
const BLOCK: u32 = 1 << 20;
const LEN: u64 = 3 * (1 << 20) + 123;

fn sender(id: u8, passes: u16) -> Sender {
    let mut c = SenderConfig::new(key(), [id; 16], T, BLOCK);
    c.passes = passes;
    Sender::new(c, std::time::Instant::now(), 1_800_000_000_000).expect("sender")
}

fn sim(imp: ImpairConfig, seed: u64) -> Sim {
    Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        ImpairConfig { seed, ..imp },
    )
}

#[test]
fn late_frames_of_one_multi_pass_send_are_not_a_replay() {
    // Completes during pass 1; the rest of pass 1 and all of passes 2 and 3 arrive late, shuffled.
    let mut sim = sim(
        ImpairConfig {
            reorder_window: 256,
            duplicate_pct: 2.0,
            ..Default::default()
        },
        31,
    );
    let s = sim.add_sender(sender(1, 3));
    sim.queue(s, oid(31), LEN, 31);
    sim.run();
    assert_eq!(
        sim.log(&oid(31)).outcomes,
        vec![Outcome::Complete { len: LEN }]
    );
    assert!(sim.receiver.stats().late_symbols > 0);
    assert_eq!(sim.receiver.stats().replays, 0);
}

#[test]
fn each_resend_of_a_completed_object_is_reported_once() {
    let mut sim = sim(ImpairConfig::default(), 32);
    let id = oid(32);
    for (round, passes) in [(1u8, 1u16), (2, 2), (3, 1)] {
        let s = sim.add_sender(sender(round, passes));
        sim.queue(s, id, LEN, 32);
        sim.run();
        assert_eq!(
            sim.receiver.stats().replays,
            u64::from(round - 1),
            "after send {round}"
        );
    }
    // One completion only: the resends never reopened the object.
    assert_eq!(sim.log(&id).outcomes, vec![Outcome::Complete { len: LEN }]);
    assert_eq!(sim.log(&id).opens, 1);
}
