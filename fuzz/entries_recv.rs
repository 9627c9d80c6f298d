// Fuzz entry point for the receiver state machine, shared by fuzz_targets/handle_datagram.rs and
// common/tests/fuzz_corpus.rs through `include!` (see entries.rs for why).

use std::time::{Duration, Instant};

use sluice_common::transport::params::Limits;
use sluice_common::transport::recv::{Effect, Receiver, ReceiverConfig};
use sluice_common::transport::wire::LinkKey;

/// The input is a sequence of records `flags u8, len u16 (big-endian), bytes[len]`. Flag bit 0
/// appends a valid tag under the receiver's key (so frames reach the session logic); bit 1
/// advances the clock by 2^(flags >> 4) ms and fires `handle_timeout`. After every record all
/// effects are drained and decode tasks are run and handed back, as a driver would.
/// Properties: no panic; sessions and buffered bytes stay within their caps; every `Write` is
/// at most one block long.
#[allow(dead_code)]
pub fn handle_datagram(data: &[u8]) {
    replay_datagrams(data);
}

/// [`handle_datagram`]'s driver; returns how many objects completed with every block written
/// exactly once, so the stable replay can check that valid seeds really transfer.
#[allow(dead_code)]
pub fn replay_datagrams(data: &[u8]) -> usize {
    let key = LinkKey::from_bytes([0x5A; 32]);
    let mut config = ReceiverConfig::new(key.clone());
    config.limits = Limits {
        min_symbol_size: 1,
        max_source_symbols: 256,
        max_block_bytes: 64 << 10,
        max_object_bytes: 1 << 20,
        ..Limits::default()
    };
    config.max_sessions = 4;
    config.max_buffered_bytes = 1 << 20;
    let max_sessions = config.max_sessions;
    let max_buffered = config.max_buffered_bytes;
    let max_block = u64::from(config.limits.max_block_bytes);
    let mut receiver = Receiver::new(config);
    let start = Instant::now();
    let mut now = start;
    let mut rest = data;
    let mut completed = 0;
    let mut written: std::collections::HashSet<([u8; 16], u64)> = std::collections::HashSet::new();
    while let [flags, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let mut datagram = body.to_vec();
        if flags & 1 == 1 {
            let tag = key.tag(&datagram);
            datagram.extend_from_slice(&tag);
        }
        if flags & 2 == 2 {
            now += Duration::from_millis(1 << (flags >> 4));
            receiver.handle_timeout(now);
        }
        receiver.handle_datagram(now, &datagram);
        while let Some(effect) = receiver.poll_effect() {
            match effect {
                Effect::Decode(task) => receiver.handle_decoded(now, task.run()),
                Effect::Write {
                    object_id,
                    block,
                    data,
                    ..
                } => {
                    assert!(data.len() as u64 <= max_block);
                    // Within one session a block is written at most once (a completed
                    // object's late frames are dropped).
                    assert!(
                        written.insert((object_id, block)),
                        "block {block} written twice"
                    );
                }
                // The seeds carry arbitrary bytes, not signed bundles: the driver trusts every
                // offered start (as testkit's `Sim::trust_first_frame` does), so the fuzzer
                // reaches the authenticated path; refusal is fuzzed by hostile_entries.rs.
                Effect::Authenticate { object_id, .. } => {
                    receiver.authenticate(now, object_id);
                }
                Effect::Complete { .. } => completed += 1,
                // An abandoned session may legitimately be reopened and rewritten later.
                Effect::Abandoned { object_id, .. } => written.retain(|(id, _)| *id != object_id),
                _ => {}
            }
        }
        while receiver.poll_event().is_some() {}
        assert!(receiver.session_count() <= max_sessions);
        assert!(receiver.buffered_bytes() <= max_buffered);
    }
    completed
}
