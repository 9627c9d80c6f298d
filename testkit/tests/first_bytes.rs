//! An unauthenticated object's start is offered for authentication from block 0's leading
//! source symbols, before block 0 is complete: a bundle whose signed header fits in its first
//! frames authenticates at once, not after its first block arrives and decodes (threat-model
//! G14: the rest of the first window waits in the small unauthenticated pool until then).

use std::time::Instant;

use sluice_common::transport::recv::{Effect, Receiver, ReceiverConfig};
use sluice_testkit::sim::{content, key, oid, one_pass_frames, symbol_of};

const T: u16 = 1024;
const BLOCK: u32 = 64 * 1024;
const LEN: u64 = 4 * BLOCK as u64 + 100;
const SEED: u64 = 41;

/// The prefixes offered for authentication while `frames` are fed (nothing is authenticated).
fn offers(frames: &[Vec<u8>], now: Instant) -> Vec<(Vec<u8>, bool)> {
    let mut r = Receiver::new(ReceiverConfig::new(key()));
    let mut out = Vec::new();
    for f in frames {
        r.handle_datagram(now, f);
        while let Some(e) = r.poll_effect() {
            if let Effect::Authenticate {
                object_id,
                prefix,
                complete,
            } = e
            {
                assert_eq!(object_id, oid(SEED));
                out.push((prefix, complete));
            }
        }
    }
    out
}

#[test]
fn the_first_source_symbol_is_offered_before_its_block_completes() {
    let now = Instant::now();
    let frames = one_pass_frames(now, SEED, LEN, T, BLOCK);
    let first = frames
        .iter()
        .position(|f| symbol_of(f) == Some((0, 0)))
        .expect("block 0, esi 0 is sent");
    let got = offers(&frames[..=first], now);
    assert_eq!(got.len(), 1, "one offer, at the first symbol");
    assert_eq!(
        got[0].0,
        content(SEED, 0, usize::from(T)),
        "the object's first T bytes"
    );
    assert!(!got[0].1, "more will come");
}

#[test]
fn the_leading_source_symbols_are_offered_each_time_they_double() {
    let now = Instant::now();
    let frames = one_pass_frames(now, SEED, LEN, T, BLOCK);
    // Everything of block 0 up to (not including) its last source symbol: 63 leading symbols,
    // offered at 1, 2, 4, 8, 16 and 32 of them, never once per symbol.
    let k = BLOCK / u32::from(T);
    let upto: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| symbol_of(f).is_some_and(|(b, e)| b == 0 && e < k - 1))
        .cloned()
        .collect();
    let lens: Vec<usize> = offers(&upto, now).iter().map(|(p, _)| p.len()).collect();
    let t = usize::from(T);
    assert_eq!(lens, vec![t, 2 * t, 4 * t, 8 * t, 16 * t, 32 * t]);
    for (prefix, _) in offers(&upto, now) {
        assert_eq!(prefix, content(SEED, 0, prefix.len()));
    }
}

#[test]
fn a_lost_first_symbol_waits_for_the_block() {
    let now = Instant::now();
    let frames = one_pass_frames(now, SEED, LEN, T, BLOCK);
    // Block 0 without its esi 0: nothing is offered until the block decodes (the receiver
    // hands out the decode; run here, as the driver would, it offers the whole block).
    let block0: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| symbol_of(f).is_some_and(|(b, e)| b == 0 && e != 0))
        .cloned()
        .collect();
    let mut r = Receiver::new(ReceiverConfig::new(key()));
    let mut offered = Vec::new();
    for f in &block0 {
        r.handle_datagram(now, f);
        while let Some(e) = r.poll_effect() {
            match e {
                Effect::Decode(task) => r.handle_decoded(now, task.run()),
                Effect::Authenticate { prefix, .. } => offered.push(prefix.len()),
                _ => {}
            }
        }
    }
    assert_eq!(offered, vec![BLOCK as usize], "only the decoded block");
}
