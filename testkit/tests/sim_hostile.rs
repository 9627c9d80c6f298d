//! Hostile but authenticated input: a sender that holds the link key sends absurd header values,
//! floods of object ids and floods of repair symbols. Everything is dropped or capped;
//! `buffered_bytes()` stays within the budget and the session count within its maximum
//! throughout, and a genuine transfer alongside still completes.

use std::ops::ControlFlow;

use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::recv::{Receiver, ReceiverConfig};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_common::transport::wire::{self, DataFrame, DataHeader, Frame, LinkKey};
use sluice_testkit::drive;
use sluice_testkit::impair::ImpairConfig;
use sluice_testkit::sim::{self, Outcome, Sim, key, oid, whole};

const T: u16 = 1024;
const BLOCK: u32 = 1 << 20;

/// A data frame with arbitrary header values and a valid tag under `key`, built by hand so
/// that values the encoder refuses can be sent anyway.
fn raw_data(
    key: &LinkKey,
    id: [u8; 16],
    len: u64,
    block_size: u32,
    t: u16,
    block: u32,
    esi: u32,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&wire::MAGIC);
    f.push(wire::VERSION);
    f.push(wire::KIND_DATA);
    f.extend_from_slice(&id);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&block_size.to_be_bytes());
    f.extend_from_slice(&t.to_be_bytes());
    f.extend_from_slice(&block.to_be_bytes());
    f.extend_from_slice(&esi.to_be_bytes());
    f.resize(f.len() + usize::from(t), 0x5A);
    let tag = key.tag(&f);
    f.extend_from_slice(&tag);
    f
}

fn small_config() -> ReceiverConfig {
    let mut c = ReceiverConfig::new(key());
    // 16 MiB: each of the two unauthenticated sessions gets 2 MiB, room for a first block of
    // 1 MiB (transport/recv/mod.rs, "Authenticate first").
    c.max_buffered_bytes = 16 << 20;
    c.max_sessions = 8;
    c.max_staging_bytes = 1 << 30;
    c
}

fn check_bounds(sim: &Sim, c: &ReceiverConfig) {
    assert!(sim.receiver.buffered_bytes() <= c.max_buffered_bytes);
    assert!(sim.max_buffered <= c.max_buffered_bytes);
    assert!(sim.receiver.session_count() <= c.max_sessions);
    assert!(sim.receiver.staging_bytes() <= c.max_staging_bytes);
}

#[test]
fn absurd_header_values_are_dropped_before_allocation() {
    let c = small_config();
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    sim.trust_first_frame = false;
    let k = key();
    let id = oid(1);
    let cases = [
        raw_data(&k, id, 1 << 63, BLOCK, T, 0, 0), // object_len 2^63
        raw_data(&k, id, u64::MAX, BLOCK, T, 0, 0), // u64::MAX
        raw_data(&k, id, 4096, BLOCK, 0, 0, 0),    // symbol_size 0
        raw_data(&k, id, 4096, BLOCK, 65535, 0, 0), // symbol_size 65535
        raw_data(&k, id, 4096, BLOCK, 63, 0, 0),   // below the minimum symbol
        raw_data(&k, id, 4096, 0, T, 0, 0),        // block_size 0
        raw_data(&k, id, 4096, u32::MAX, T, 0, 0), // block_size 4 GiB
        raw_data(&k, id, 4096, BLOCK, T, 1, 0),    // block past the end
        raw_data(&k, id, 4096, BLOCK, T, u32::MAX, 0), // block u32::MAX
        raw_data(&k, id, 4096, BLOCK, T, 0, 1 << 24), // ESI past 2^24
        raw_data(&k, id, 4096, BLOCK, T, 0, u32::MAX), // ESI u32::MAX
        raw_data(&k, id, 1 << 40, 64, 64, 0, 0),   // 2^34 blocks
    ];
    for f in &cases {
        sim.deliver(f);
        check_bounds(&sim, &c);
    }
    let st = sim.receiver.stats();
    assert_eq!(
        st.over_limit + st.sessions_refused + st.malformed,
        cases.len() as u64
    );
    assert_eq!(sim.receiver.session_count(), 0);
    assert_eq!(sim.receiver.buffered_bytes(), 0);
    assert!(sim.objects.is_empty(), "no Open effect for any of them");

    // An object over the staging quota gets only an unauthenticated session (no quota, no
    // Open) until its first block authenticates; then the quota refuses it.
    let over = oid(2);
    sim.deliver(&raw_data(&k, over, 2 << 30, BLOCK, T, 0, 0));
    check_bounds(&sim, &c);
    assert_eq!(sim.receiver.session_count(), 1);
    assert_eq!(sim.receiver.staging_bytes(), 0);
    assert!(
        sim.objects.is_empty(),
        "nothing staged before authentication"
    );
    assert!(
        !sim.receiver.authenticate(sim.now, over),
        "over the staging quota"
    );
    assert_eq!(sim.receiver.stats().sessions_refused, 1);
    assert_eq!(sim.receiver.session_count(), 0);
    assert_eq!(sim.receiver.buffered_bytes(), 0);
}

/// 10^6 distinct object ids, one authenticated symbol each, interleaved with a genuine
/// transfer that opened first: the table stays at `max_sessions`, memory within budget, each
/// newcomer replaces another forged one-frame session (never the genuine one, which has more
/// symbols), and the genuine object completes.
#[test]
fn a_million_object_ids() {
    let c = small_config();
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    sim.trust_first_frame = false;
    let k = key();
    let len = 3 * u64::from(BLOCK) + 5;
    let mut s =
        Sender::new(SenderConfig::new(key(), [1; 16], T, BLOCK), sim.now, 0).expect("sender");
    s.queue_object(sim.now, oid(7), len, 0).expect("queue");
    let mut n = 0u64;
    let mut flood = 0u64;
    let now = sim.now;
    drive::drive(&mut s, now, sim::reads(7), |_, f| {
        sim.deliver(f);
        // 300 hostile frames per genuine one, each a new object, once the genuine object has
        // its session.
        for _ in 0..300 {
            if flood < 1_000_000 && sim.receiver.session_count() > 0 {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&flood.to_le_bytes());
                id[15] = 0xFF;
                sim.deliver(&raw_data(&k, id, 64 << 10, 64 << 10, T, 0, 0));
                flood += 1;
            }
        }
        n += 1;
        if n % 1000 == 0 {
            check_bounds(&sim, &c);
        }
        ControlFlow::Continue(())
    });
    while flood < 1_000_000 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&flood.to_le_bytes());
        id[15] = 0xFF;
        sim.deliver(&raw_data(&k, id, 64 << 10, 64 << 10, T, 0, 0));
        flood += 1;
    }
    check_bounds(&sim, &c);
    assert!(sim.max_sessions_seen <= c.max_sessions);
    let st = sim.receiver.stats();
    assert!(
        st.sessions_unauthenticated_expired >= 1_000_000 - c.max_sessions as u64,
        "{st:?}"
    );
    let log = sim.log(&oid(7));
    assert_eq!(log.outcomes, vec![Outcome::Complete { len }]);
    assert!(sim.staged(&oid(7)) == whole(7, len, BLOCK).as_slice());
}

/// Threat-model G12: two large forged sessions (hundreds of stored symbols each, never
/// authenticating) are kept alive with one frame every 9 s, past two idle windows; then a real
/// transfer starts while a forged one-frame object arrives after every fourth real frame, far
/// faster than the real first block completes (about 1 100 frames). Newcomers replace the session
/// with the fewest *recent* symbols, so the drip-fed giants lose their slots, not the real
/// object, which authenticates and completes byte-identical. (With "fewest symbols ever" the
/// giants' 300 old symbols outranked the real session's few, and each newcomer evicted it.)
#[test]
fn drip_fed_large_forged_sessions_do_not_hold_the_unauthenticated_slots() {
    let c = small_config();
    assert_eq!(
        c.max_unauthenticated_sessions, 2,
        "the attack fills both slots"
    );
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    sim.trust_first_frame = false;
    let k = key();
    let giants = [oid(500), oid(501)];
    let giant_len = 64 * u64::from(BLOCK);
    // Block 1 only: block 0 never completes, so the giants are never offered for
    // authentication and hold their slots as long as they are fed.
    for g in giants {
        for esi in 0..300 {
            sim.deliver(&raw_data(&k, g, giant_len, BLOCK, T, 1, esi));
        }
    }
    for esi in 300..304 {
        sim.now += std::time::Duration::from_secs(9);
        for g in giants {
            sim.deliver(&raw_data(&k, g, giant_len, BLOCK, T, 1, esi));
        }
        sim.receiver.handle_timeout(sim.now);
        sim.drain();
    }
    assert_eq!(
        sim.receiver.unauthenticated_sessions(),
        2,
        "both giants alive"
    );

    let len = 3 * u64::from(BLOCK) + 5;
    let mut s =
        Sender::new(SenderConfig::new(key(), [1; 16], T, BLOCK), sim.now, 0).expect("sender");
    s.queue_object(sim.now, oid(7), len, 0).expect("queue");
    let now = sim.now;
    let mut real_frames = 0u64;
    let mut flood = 0u64;
    drive::drive(&mut s, now, sim::reads(7), |_, f| {
        sim.deliver(f);
        real_frames += 1;
        if real_frames % 4 == 0 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&flood.to_le_bytes());
            id[15] = 0xEE;
            sim.deliver(&raw_data(&k, id, giant_len, BLOCK, T, 0, 0));
            flood += 1;
        }
        check_bounds(&sim, &c);
        ControlFlow::Continue(())
    });
    assert!(
        flood > 500,
        "the flood ran through the real first block: {flood}"
    );
    let log = sim.log(&oid(7));
    assert_eq!(log.outcomes, vec![Outcome::Complete { len }]);
    assert!(sim.staged(&oid(7)) == whole(7, len, BLOCK).as_slice());
    assert!(sim.receiver.unauthenticated_bytes() <= c.unauthenticated_pool_bytes());
}

/// 10^6 distinct repair symbols for one block of a live object: at most K + surplus are stored.
#[test]
fn a_million_repair_symbols_for_one_block() {
    let c = small_config();
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    let k = key();
    let id = oid(3);
    let params = ObjectParams {
        object_id: id,
        object_len: 4 * u64::from(BLOCK),
        block_size: BLOCK,
        symbol_size: T,
    };
    let k_src = params.source_symbols(0);
    let payload = vec![0x11u8; usize::from(T)];
    let mut buf = vec![0u8; wire::MAX_FRAME_LEN];
    for i in 0..1_000_000u32 {
        // Repair ESIs only (never K source symbols), so the block never completes by copy; a
        // decode attempt at K symbols gives garbage-in but cannot panic.
        let frame = Frame::Data(DataFrame {
            header: DataHeader {
                params,
                block: 0,
                esi: k_src + i,
            },
            payload: &payload,
        });
        let n = wire::encode(&k, &frame, &mut buf).expect("encode");
        sim.deliver(&buf[..n]);
        if i % 10_000 == 0 {
            check_bounds(&sim, &c);
        }
    }
    check_bounds(&sim, &c);
    let st = sim.receiver.stats();
    let cap = u64::from(c.limits.max_stored_symbols(k_src));
    // The key holder's garbage decodes to garbage bytes for block 0 (content is the bundle
    // signature's job); what matters is that storage is capped: at most K + surplus symbols
    // per assembler life, everything else dropped and counted.
    assert!(
        st.symbols_accepted <= cap * (1 + st.blocks_evicted),
        "{st:?}"
    );
    assert_eq!(
        st.symbols_accepted + st.over_cap_symbols + st.late_symbols + st.duplicate_symbols,
        1_000_000
    );
    assert!(sim.receiver.buffered_bytes() <= c.max_buffered_bytes);
}

/// A hostile sender floods symbols for many blocks of many big objects: the budget holds, and
/// the unauthenticated sessions stay within their share (charged per symbol, so one symbol per
/// block costs little; newcomers replace each other).
#[test]
fn block_flood_is_bounded_by_eviction() {
    let c = small_config();
    let mut sim = Sim::new(Receiver::new(c.clone()), ImpairConfig::default());
    sim.trust_first_frame = false;
    let k = key();
    for obj in 0..8u64 {
        for block in 0..100u32 {
            sim.deliver(&raw_data(
                &k,
                oid(1000 + obj),
                100 * u64::from(BLOCK),
                BLOCK,
                T,
                block,
                block,
            ));
            check_bounds(&sim, &c);
        }
    }
    let st = sim.receiver.stats();
    assert!(sim.receiver.unauthenticated_bytes() <= c.unauthenticated_pool_bytes());
    assert!(st.sessions_unauthenticated_expired >= 6, "{st:?}");
    assert_eq!(st.symbols_accepted, 800, "{st:?}");
}
