//! The receiver reports every stored symbol explicitly ([`Handled::Stored`]) with its object's
//! running count of frames inferred lost from gaps in each block's symbol ids. That count feeds
//! `lost_frames` in receipts, so it must be exact on a clean link, count each missing frame of
//! a block once, and not count a reordered straggler as lost.

use std::time::Instant;

use sluice_common::transport::recv::{Effect, Handled, Receiver, ReceiverConfig};
use sluice_testkit::sim::{key, oid, one_pass_frames, symbol_of};

const T: u16 = 512;
const BLOCK: u32 = 512 * 16;
const LEN: u64 = 3 * BLOCK as u64 + 100;
const SEED: u64 = 57;

/// Feeds `frames`; returns (symbols stored, the last lost-frame count reported, completed).
fn feed(frames: &[Vec<u8>], now: Instant) -> (u64, u64, bool) {
    let mut r = Receiver::new(ReceiverConfig::new(key()));
    let (mut stored, mut lost, mut complete) = (0, 0, false);
    for f in frames {
        if let Handled::Stored {
            object_id,
            lost_frames,
        } = r.handle_datagram(now, f)
        {
            assert_eq!(object_id, oid(SEED));
            stored += 1;
            lost = lost_frames;
        }
        while let Some(e) = r.poll_effect() {
            match e {
                Effect::Decode(task) => r.handle_decoded(now, task.run()),
                // Arbitrary bytes, not a bundle: this driver trusts every object.
                Effect::Authenticate { object_id, .. } => {
                    r.authenticate(now, object_id);
                }
                Effect::Complete { .. } => complete = true,
                _ => {}
            }
        }
    }
    assert_eq!(r.stats().symbols_accepted, stored);
    (stored, lost, complete)
}

#[test]
fn a_clean_link_loses_nothing() {
    let now = Instant::now();
    let (stored, lost, complete) = feed(&one_pass_frames(now, SEED, LEN, T, BLOCK), now);
    assert!(complete);
    assert!(stored > 0);
    assert_eq!(lost, 0);
}

#[test]
fn each_missing_symbol_before_its_block_completes_counts_once() {
    let now = Instant::now();
    let all = one_pass_frames(now, SEED, LEN, T, BLOCK);
    // Drop the first two source symbols of block 0 and one of block 1.
    let drop = [(0, 0), (0, 1), (1, 5)];
    let kept: Vec<Vec<u8>> = all
        .iter()
        .filter(|f| symbol_of(f).is_none_or(|s| !drop.contains(&s)))
        .cloned()
        .collect();
    assert_eq!(kept.len(), all.len() - drop.len());
    let (_, lost, complete) = feed(&kept, now);
    assert!(complete, "repair symbols make up for three lost frames");
    assert_eq!(lost, 3);
}

#[test]
fn a_reordered_straggler_is_not_lost() {
    let now = Instant::now();
    let mut all = one_pass_frames(now, SEED, LEN, T, BLOCK);
    let at = |all: &[Vec<u8>], s: (u32, u32)| {
        all.iter()
            .position(|f| symbol_of(f) == Some(s))
            .expect("frame sent")
    };
    let (a, b) = (at(&all, (0, 2)), at(&all, (0, 4)));
    all.swap(a, b);
    let (_, lost, complete) = feed(&all, now);
    assert!(complete);
    assert_eq!(lost, 0);
}
