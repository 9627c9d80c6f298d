//! Large objects through a bounded receiver: the object is generated on the fly
//! from a seeded function, never stored; the receiver's writes are hashed in offset order and
//! compared with blake3 of what the sender read. `buffered_bytes()` never exceeds the budget,
//! which is far smaller than the object.

use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{Outcome, Sim, key, oid};

const T: u16 = 1414;
const BLOCK: u32 = 742 * 1414;

fn big(len: u64, seed: u64) {
    let start = std::time::Instant::now();
    let mut rc = ReceiverConfig::new(key());
    rc.max_buffered_bytes = 24 << 20;
    let mut sim = Sim::new(
        Receiver::new(rc.clone()),
        ImpairConfig {
            loss_pct: 1.0,
            reorder_window: 32,
            seed,
            ..Default::default()
        },
    );
    sim.hash_above = 0;
    let s = sim.add_sender(
        Sender::new(
            SenderConfig::new(key(), [1; 16], T, BLOCK),
            sim.now,
            1_800_000_000_000,
        )
        .expect("sender"),
    );
    let id = oid(seed);
    sim.queue(s, id, len, seed);
    sim.run();
    let log = sim.log(&id);
    assert_eq!(log.outcomes, vec![Outcome::Complete { len }]);
    let (hash, max_pending) = sim.staged_hash(&id);
    assert_eq!(
        hash,
        sim.read_hash(s, &id),
        "staged bytes differ from the object"
    );
    assert!(
        sim.max_buffered <= rc.max_buffered_bytes,
        "buffered {} > budget {}",
        sim.max_buffered,
        rc.max_buffered_bytes
    );
    eprintln!(
        "{} MiB in {:.1} s; peak buffered {:.1} MiB; blocks waiting out of order ≤ {}; evicted {}",
        len >> 20,
        start.elapsed().as_secs_f64(),
        sim.max_buffered as f64 / (1u64 << 20) as f64,
        max_pending,
        sim.receiver.stats().blocks_evicted
    );
}

#[test]
fn half_gib_object_in_a_24_mib_budget() {
    big(512 << 20, 51);
}

/// The 4 GiB version: 87.5 s, peak buffered 17.7 MiB, measured on the 2-core box; the 512 MiB
/// one takes 8.4 s. It always runs in CI (`CI=true`) and on request (`SLUICE_FULL=1`); elsewhere
/// it says why it skipped, so a laptop's `cargo test` stays quick.
#[test]
fn four_gib_object_in_a_24_mib_budget() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let asked = std::env::var("SLUICE_FULL").is_ok_and(|v| v == "1");
    if !ci && !asked {
        eprintln!("skipping the 4 GiB transfer (about 90 s): set SLUICE_FULL=1 to run it");
        return;
    }
    big(4 << 30, 52);
}
