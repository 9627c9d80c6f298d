//! Resends of a completed object: a nightly resend or a replayed capture is reported once per
//! resend (`Effect::Replayed`, so the driver records a duplicate), while the late frames of the
//! original send — the rest of its pass, its later passes, reordered stragglers — never are.

use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{self, Outcome, Sim, oid};

const T: u16 = 1024;
const BLOCK: u32 = 1 << 20;
const LEN: u64 = 3 * (1 << 20) + 123;

#[test]
fn late_frames_of_one_multi_pass_send_are_not_a_replay() {
    // Completes during pass 1; the rest of pass 1 and all of passes 2 and 3 arrive late, shuffled.
    let mut sim = Sim::seeded(
        ImpairConfig {
            reorder_window: 256,
            duplicate_pct: 2.0,
            ..Default::default()
        },
        31,
    );
    let s = sim.add_sender(sim::sender(1, T, BLOCK, 3));
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
    let mut sim = Sim::seeded(ImpairConfig::default(), 32);
    let id = oid(32);
    for (round, passes) in [(1u8, 1u16), (2, 2), (3, 1)] {
        let s = sim.add_sender(sim::sender(round, T, BLOCK, passes));
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
