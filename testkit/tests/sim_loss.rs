//! Random loss against repair overhead: objects of awkward sizes arrive byte-identical when
//! loss stays below the overhead, and fail cleanly as `Incomplete` (never a wrong or partial
//! `Complete`) when it does not.

use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{Outcome, Sim, key, oid, whole};

const T: u16 = 1024;
const BLOCK: u32 = 1 << 20;

fn sender(overhead: u32) -> Sender {
    let mut c = SenderConfig::new(key(), [1; 16], T, BLOCK);
    c.overhead_percent = overhead;
    Sender::new(c, std::time::Instant::now(), 1_800_000_000_000).expect("sender")
}

fn receiver() -> Receiver {
    Receiver::new(ReceiverConfig::new(key()))
}

/// Send one object through `loss` and return the sim.
fn transfer(len: u64, loss: f64, overhead: u32, seed: u64) -> Sim {
    let mut sim = Sim::new(
        receiver(),
        ImpairConfig {
            loss_pct: loss * 100.0,
            seed,
            ..Default::default()
        },
    );
    let s = sim.add_sender(sender(overhead));
    sim.queue(s, oid(seed), len, seed);
    sim.run();
    sim
}

fn assert_identical(sim: &Sim, len: u64, seed: u64) {
    let id = oid(seed);
    let log = sim.log(&id);
    assert_eq!(
        log.outcomes,
        vec![Outcome::Complete { len }],
        "len {len} seed {seed}"
    );
    assert_eq!(log.opens, 1);
    assert_eq!(log.writes, len.div_ceil(u64::from(BLOCK)));
    if len > 0 {
        assert!(
            sim.staged(&id) == whole(seed, len, BLOCK).as_slice(),
            "bytes differ"
        );
    }
    assert!(sim.max_buffered <= ReceiverConfig::new(key()).max_buffered_bytes);
    assert_eq!(sim.receiver.session_count(), 0);
    assert_eq!(sim.receiver.buffered_bytes(), 0);
}

#[test]
fn awkward_sizes_no_loss() {
    let b = u64::from(BLOCK);
    for (i, len) in [0, 1, b - 1, b, b + 1, 3 * b + 17].into_iter().enumerate() {
        let seed = 100 + i as u64;
        let sim = transfer(len, 0.0, 10, seed);
        assert_identical(&sim, len, seed);
        // No loss: every block is a straight copy of its source symbols.
        assert_eq!(sim.receiver.stats().blocks_decoded, 0);
    }
}

#[test]
fn awkward_sizes_one_and_five_percent_loss() {
    let b = u64::from(BLOCK);
    for (i, len) in [1, b - 1, b, b + 1].into_iter().enumerate() {
        for loss in [0.01, 0.05] {
            let seed = 200 + i as u64 + (loss * 1000.0) as u64;
            let sim = transfer(len, loss, 10, seed);
            assert_identical(&sim, len, seed);
        }
    }
}

#[test]
fn sixty_four_mib_at_0_1_5_percent() {
    let len = 64u64 << 20;
    for (i, loss) in [0.0, 0.01, 0.05].into_iter().enumerate() {
        let seed = 300 + i as u64;
        let sim = transfer(len, loss, 10, seed);
        assert_identical(&sim, len, seed);
        if loss > 0.0 {
            assert!(sim.receiver.stats().blocks_decoded > 0);
        }
    }
}

/// 10 % loss against 10 % overhead: most blocks get fewer than K symbols. Whatever happens,
/// every block that was written is exact, and the object is either complete and identical or
/// reported `Incomplete` with the right count of missing blocks. Never a wrong `Complete`.
#[test]
fn ten_percent_loss_fails_cleanly_across_seeds() {
    let len = 8u64 << 20;
    let blocks = len / u64::from(BLOCK);
    let mut incomplete = 0;
    for seed in 400..420 {
        let sim = transfer(len, 0.10, 10, seed);
        let id = oid(seed);
        let log = sim.log(&id);
        let expected = whole(seed, len, BLOCK);
        let staged = sim.staged(&id);
        for block in &log.blocks_written {
            let r =
                (*block * u64::from(BLOCK)) as usize..((*block + 1) * u64::from(BLOCK)) as usize;
            assert!(
                staged[r.clone()] == expected[r],
                "seed {seed}: block {block} wrong"
            );
        }
        match log.outcomes.as_slice() {
            [Outcome::Complete { len: l }] => {
                assert_eq!(*l, len);
                assert!(staged == expected.as_slice());
            }
            [Outcome::Incomplete { missing_blocks }] => {
                incomplete += 1;
                assert!(*missing_blocks > 0);
                assert_eq!(*missing_blocks, blocks - log.writes, "seed {seed}");
                // Its symbols are released but its progress is kept for a later pass.
                assert_eq!(sim.receiver.buffered_bytes(), 0);
                let p = sim.receiver.progress(&id).expect("progress kept");
                assert_eq!(p.done_count(), log.writes);
            }
            other => panic!("seed {seed}: unexpected outcomes {other:?}"),
        }
    }
    // With loss equal to the overhead, (nearly) every run must be short of symbols.
    assert!(
        incomplete >= 15,
        "only {incomplete} of 20 runs were incomplete"
    );
}

/// A jumbo transfer as sluice-send makes it at MTU 9000 (T = 8 900, the recommended block of
/// K = 471 symbols, 4.2 MB; 4 blocks a window, sender/src/settings.rs `DEFAULT_WINDOW_BYTES`)
/// of `blocks` blocks and 17 bytes, one pass with 10 % repair through 5 % loss, authenticated
/// only from its offered start as a real receiver does; `tune` adjusts the sim first. Asserts it
/// authenticated and completed byte-identical; returns the sim and the block size.
fn jumbo_through_5pct_loss(blocks: u64, what: &str, tune: impl FnOnce(&mut Sim)) -> (Sim, u32) {
    let t: u16 = 8900;
    let block = sluice_common::transport::params::recommended_block_size(t);
    let mut sim = Sim::new(
        Receiver::new(ReceiverConfig::new(key())),
        ImpairConfig {
            loss_pct: 5.0,
            ..Default::default()
        },
    );
    sim.trust_first_frame = false;
    tune(&mut sim);
    let mut config = SenderConfig::new(key(), [1; 16], t, block);
    config.overhead_percent = 10;
    config.passes = 1;
    config.window_blocks = 4;
    let s = sim.add_sender(Sender::new(config, sim.now, 0).expect("sender"));
    let len = blocks * u64::from(block) + 17;
    sim.queue(s, oid(1), len, 1);
    sim.run();
    let st = sim.receiver.stats();
    assert_eq!(st.sessions_authenticated, 1, "{what}: {st:?}");
    assert_eq!(
        sim.log(&oid(1)).outcomes,
        vec![Outcome::Complete { len }],
        "{what}: {st:?}"
    );
    assert!(sim.staged(&oid(1)) == whole(1, len, block).as_slice());
    (sim, block)
}

/// Threat-model G14: a jumbo first block that lost source symbols must be decoded before the
/// object authenticates (when its header fills the block, the sim's default). With a quarter of
/// the default budget for unauthenticated sessions, its symbols and the decode job's copy of
/// them never fitted, so such a transfer never authenticated; now it completes under the default
/// `ReceiverConfig` (48 MiB).
#[test]
fn a_jumbo_first_block_that_needs_decoding_authenticates_and_completes() {
    let (sim, _) = jumbo_through_5pct_loss(6, "jumbo", |_| {});
    let st = sim.receiver.stats();
    assert!(
        st.blocks_decoded >= 1,
        "the first block needed decoding: {st:?}"
    );
}

/// The same jumbo transfer with decodes that lag: each takes as long as up to 450 datagrams take
/// to arrive (about 35 ms at the default 909 Mbit/s; a 4 MiB block's decode takes that long when
/// the receiver shares its cores). While the first block decodes, the rest of the window
/// completes and is held unauthenticated; the first block must still find room, authenticate
/// and the whole object complete in one pass.
#[test]
fn a_jumbo_transfer_completes_when_decodes_lag_behind_the_link() {
    // Frames of one block arrive in about 490 datagrams: up to that lag the one decode worker
    // keeps up on average; beyond it no bounded receiver finishes in one pass.
    // A header that fills block 0 (authenticated when it decodes), and a 202-byte one
    // (authenticated from block 0's first source symbol, testkit/tests/first_bytes.rs).
    for (lag, header) in [100, 300, 450]
        .into_iter()
        .flat_map(|lag| [(lag, None), (lag, Some(202))])
    {
        let what = format!("lag {lag} header {header:?}");
        let (sim, block) = jumbo_through_5pct_loss(12, &what, |sim| {
            sim.header_bytes = header;
            sim.decode_lag_frames = lag;
        });
        // The window of 4 blocks being received, one decoding (its symbols lent to the job, not
        // copied) and one decoded block waiting for its write: 6 blocks. Copying the symbols
        // into the job took this to 37.8 MB (9 blocks) at lag 450.
        assert!(
            sim.max_buffered <= 6 * u64::from(block),
            "{what}: peak {} bytes buffered",
            sim.max_buffered
        );
    }
}
