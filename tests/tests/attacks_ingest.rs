//! Issue #12, attacks 1, 2, 5, 6, 7 and 8, replayed against the real `sluice-recv` on loopback
//! with the public default link key: what an attacker on the low network (or anyone with the
//! public key) can send must not change the receiver's records, memory or staging beyond the
//! bounds stated in docs/threat-model.md, and a real bundle sent at the same time (or after a
//! restart) is still accepted byte-identical.
//!
//! Each test asserts: records written (0 for unauthenticated input), peak RSS within
//! `--memory` plus [`RSS_CONSTANT_MIB`], staging reserved after the attack, and the real
//! bundle's acceptance. Each prints its measured figures (`[attackN] ...`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use sluice_common::bundle::FORMAT_VERSION;
use sluice_common::bundle::format::{MAGIC, PREFIX_LEN};
use sluice_common::transport::wire::LinkKey;
use sluice_tests::ProcessWatch;
use sluice_tests::attack::{
    Blaster, Rig, SignedBundle, Signer, data_frame, end_frame, object_params, resend_until,
    seeded_bytes, sender_frames,
};
use sluice_tests::listener::{Listener, wait_until};
use sluice_tests::store::{
    audit_records, non_accept_records, quarantine_ids, rejected_records, staging_files,
};

/// One attack at a time: two cores, and the RSS figures should be the listener's own.
static SERIAL: Mutex<()> = Mutex::new(());

/// `--memory` (MiB) every listener here runs with: the default.
const MEMORY_MIB: u64 = 48;
/// Peak RSS allowed above `--memory`: binary, allocator, thread stacks, the staging writer's
/// 32 MiB queue cap (receiver/src/ingest/stager) and one 1 MiB authentication prefix copy.
const RSS_CONSTANT_MIB: u64 = 72;

/// Every attack's start: the serial lock, a fresh rig, and its listener (`--memory`
/// [`MEMORY_MIB`]) watched from its first moment, so the peak RSS covers the whole attack.
fn start() -> (MutexGuard<'static, ()>, Rig, Listener, ProcessWatch) {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rig = Rig::new();
    let (listener, watch) = listen_watched(&rig);
    (guard, rig, listener, watch)
}

/// A listener on the rig's store with `--memory` [`MEMORY_MIB`], and the watch measuring it.
fn listen_watched(rig: &Rig) -> (Listener, ProcessWatch) {
    let listener = rig.listen(&["--memory", &MEMORY_MIB.to_string()]);
    let watch = ProcessWatch::start(listener.pid(), Duration::from_millis(20));
    (listener, watch)
}

/// A real bundle (one file of `file_bytes` seeded bytes, sequence `seed`) and the frames
/// `sluice-send` emits for it (T = 1024, 64 KiB blocks).
fn legit(signer: &Signer, seed: u64, file_bytes: usize) -> SignedBundle {
    SignedBundle::new(
        signer,
        "updates",
        seed,
        vec![("data/a.bin".to_string(), seeded_bytes(seed, file_bytes))],
    )
}

/// Sends the real frames until the bundle is accepted; asserts it is, byte-identical.
fn deliver_and_check(listener: &Listener, l: &SignedBundle) {
    let id = l.id();
    let accepted = resend_until(listener.addr, &l.frames, 20, || {
        audit_records(&listener.store)
            .iter()
            .any(|r| r.bundle_id.as_deref() == Some(id.as_str()) && r.outcome == "accepted")
            .then_some(())
    });
    assert!(
        accepted.is_some(),
        "real bundle not accepted; log:\n{}",
        listener.log_tail()
    );
    l.assert_in_quarantine(&listener.store);
}

/// Every attack's end: stops the watch, prints the figures (`[name] ...`, `extra` appended) with
/// the staging files left in the listener's store, and asserts the peak RSS stayed within
/// `--memory` plus [`RSS_CONSTANT_MIB`]. Returns the number of non-accept records, which each
/// test asserts itself.
fn measure(name: &str, listener: &Listener, watch: ProcessWatch, extra: &str) -> usize {
    let s = watch.stop();
    let records = non_accept_records(&listener.store);
    let staging = staging_files(&listener.store).len();
    let bound_mib = MEMORY_MIB + RSS_CONSTANT_MIB;
    eprintln!(
        "[{name}] peak RSS {:.1} MiB (bound {bound_mib} MiB), non-accept records {records}, \
         staging files after {staging}, CPU {:.2} s {extra}",
        s.peak_rss_kib as f64 / 1024.0,
        s.cpu_secs
    );
    assert!(
        s.peak_rss_kib <= bound_mib * 1024,
        "[{name}] peak RSS {} KiB over --memory {MEMORY_MIB} MiB + {RSS_CONSTANT_MIB} MiB",
        s.peak_rss_kib
    );
    records
}

/// A one-frame object (T = 1024) whose only block starts with `prefix`.
fn one_frame_object(key: &LinkKey, i: u32, prefix: &[u8]) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id[15] = 0xA1;
    let mut payload = vec![0u8; 1024];
    payload[..prefix.len()].copy_from_slice(prefix);
    data_frame(key, object_params(id, 1024, 1024, 1024), 0, 0, &payload)
}

/// Attack 1: headers parsed before the signature. Forged bundle prefixes claiming 16 MiB
/// headers, prefixes under the trusted signer's key id with a junk 1000-byte header and
/// signature (the old `non_canonical` path), and 400 plain junk one-frame objects, while a
/// real bundle is sent. Bound: 0 records, nothing staged, RSS within the budget.
#[test]
fn attack1_forged_headers_are_refused_before_parsing_and_never_recorded() {
    let (_g, rig, listener, watch) = start();
    let key = LinkKey::public_default();
    let mut blaster = Blaster::new(listener.addr);
    let kid = rig.signer.key.public().key_id();
    let mut prefix = Vec::new();
    prefix.extend_from_slice(&MAGIC);
    prefix.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    prefix.extend_from_slice(&kid.0);
    assert_eq!(prefix.len(), PREFIX_LEN - 4);
    let mut huge = prefix.clone();
    huge.extend_from_slice(&(16u32 << 20).to_le_bytes());
    let mut signed_junk = prefix.clone();
    signed_junk.extend_from_slice(&900u32.to_le_bytes());
    signed_junk.extend_from_slice(&[0xFF; 986]); // an overlong varint header + junk signature
    let l = legit(&rig.signer, 1, 200 * 1024);
    for i in 0..1200u32 {
        let frame = match i % 3 {
            0 => one_frame_object(&key, i, &huge),
            1 => one_frame_object(&key, i, &signed_junk),
            _ => one_frame_object(&key, i, b"junk"),
        };
        blaster.send(&frame);
        if i == 600 {
            blaster.send_all(&l.frames);
        }
    }
    deliver_and_check(&listener, &l);
    let refused = || listener.metric("sluice_objects_unauthenticated_refused_total");
    wait_until(Duration::from_secs(30), || refused() >= 1000.0);
    let records = measure(
        "attack1",
        &listener,
        watch,
        &format!("| unauthenticated refused {}", refused()),
    );
    assert!(refused() >= 1000.0, "forged objects are counted");
    assert_eq!(records, 0, "no record for anything unauthenticated");
    assert!(rejected_records(&listener.store).is_empty());
    listener.kill();
}

/// Attack 2: forged data and end frames (and a full replay) for an object id already
/// accepted. Bound: no duplicate record (counted only), nothing staged.
#[test]
fn attack2_resends_of_an_accepted_object_write_no_records() {
    let (_g, rig, listener, watch) = start();
    let key = LinkKey::public_default();
    let l = legit(&rig.signer, 2, 100 * 1024);
    deliver_and_check(&listener, &l);
    let oid = l.object_id();
    let p = object_params(oid, l.bytes.len() as u64, 64 * 1024, 1024);
    let mut blaster = Blaster::new(listener.addr);
    let payload = [0x42u8; 1024];
    for round in 0..50u32 {
        blaster.send(&data_frame(&key, p, 0, 5000 + round, &payload));
        blaster.send(&end_frame(&key, p, 1, 1));
        std::thread::sleep(Duration::from_millis(120));
    }
    for _ in 0..3 {
        blaster.send_all(&l.frames);
    }
    std::thread::sleep(Duration::from_secs(3));
    let records = measure(
        "attack2",
        &listener,
        watch,
        &format!(
            "| replays counted {}",
            listener.metric("sluice_replays_unverified_total")
        ),
    );
    assert_eq!(
        records, 0,
        "100 forged datagrams and 3 replays wrote no record"
    );
    assert_eq!(quarantine_ids(&listener.store).len(), 1);
    // A second real bundle after the attack is accepted.
    deliver_and_check(&listener, &legit(&rig.signer, 22, 50 * 1024));
    listener.kill();
}

/// Attack 5: bursts of first symbols for a forged 64-block object at a low rate, while a real
/// multi-block transfer runs. Bound: the real bundle is accepted; RSS within the budget.
#[test]
fn attack5_forged_first_symbols_do_not_evict_a_real_transfer() {
    let (_g, rig, listener, watch) = start();
    let to = listener.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let key = LinkKey::public_default();
            let mut b = Blaster::new(to);
            let payload = [0x33u8; 1024];
            let mut sent = 0u64;
            let mut obj = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                obj += 1;
                let mut id = [0xB5u8; 16];
                id[..4].copy_from_slice(&obj.to_be_bytes());
                let p = object_params(id, 64 << 20, 1 << 20, 1024);
                for block in 0..64 {
                    b.send(&data_frame(&key, p, block, 1100, &payload));
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    let l = legit(&rig.signer, 5, 3 << 20);
    deliver_and_check(&listener, &l);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().expect("flood");
    let records = measure(
        "attack5",
        &listener,
        watch,
        &format!(
            "| forged first symbols {sent}, evicted blocks {}",
            listener.metric("sluice_blocks_evicted_total")
        ),
    );
    assert_eq!(records, 0);
    listener.kill();
}

/// Attack 6: one final-pass end frame declaring a 1 GiB object, then a restart. Bound: no
/// session, nothing staged or reserved before or after the restart; a real bundle after the
/// restart is accepted.
#[test]
fn attack6_an_end_frame_alone_reserves_nothing_across_a_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rig = Rig::new();
    let listener = rig.listen(&["--memory", &MEMORY_MIB.to_string()]);
    let key = LinkKey::public_default();
    let mut blaster = Blaster::new(listener.addr);
    let p = object_params([0xC6; 16], 1 << 30, 1 << 20, 1024);
    blaster.send(&end_frame(&key, p, 1, 1));
    // Also data frames: an unauthenticated session is never persisted either.
    blaster.send(&data_frame(&key, p, 3, 0, &[0x66; 1024]));
    wait_until(Duration::from_secs(10), || {
        listener.metric("sluice_frames_end_total") >= 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = staging_files(&listener.store);
    assert_eq!(listener.terminate().code(), Some(0));
    let (listener, watch) = listen_watched(&rig);
    let after = staging_files(&listener.store);
    deliver_and_check(&listener, &legit(&rig.signer, 6, 100 * 1024));
    let records = measure(
        "attack6",
        &listener,
        watch,
        &format!("| staging files before restart {}", before.len()),
    );
    assert!(before.is_empty(), "nothing staged: {before:?}");
    assert!(after.is_empty(), "nothing survives the restart: {after:?}");
    assert_eq!(
        records, 0,
        "no incomplete record for an unauthenticated object"
    );
    listener.kill();
}

/// Attack 7: a valid bundle under another object id (the id check on every path). Bound: no
/// record (it is refused as unauthenticated: nothing new was signed), nothing in quarantine;
/// the same bundle under its own id is accepted.
#[test]
fn attack7_a_bundle_under_a_foreign_object_id_is_refused_without_a_record() {
    let (_g, rig, listener, watch) = start();
    let l = legit(&rig.signer, 7, 100 * 1024);
    let frames = sender_frames(
        &LinkKey::public_default(),
        &l.bytes,
        [0xF7; 16],
        1024,
        64 * 1024,
        10,
        1,
    );
    let mut blaster = Blaster::new(listener.addr);
    blaster.send_all(&frames);
    let refused = wait_until(Duration::from_secs(15), || {
        listener.metric("sluice_objects_unauthenticated_refused_total") >= 1.0
    });
    assert!(refused, "log:\n{}", listener.log_tail());
    assert!(quarantine_ids(&listener.store).is_empty());
    deliver_and_check(&listener, &l);
    let records = measure("attack7", &listener, watch, "");
    assert_eq!(records, 0);
    listener.kill();
}

/// Attack 8: cheap-to-send, costly-to-decode input. Symbols below 512 bytes are refused by the
/// limits (counted `over_limit`); all-repair 1 MiB blocks at T = 512 (K = 2048, the largest
/// admitted) decode on the workers while a real bundle is accepted.
#[test]
fn attack8_costly_decodes_stay_off_the_receive_thread_and_tiny_symbols_are_refused() {
    let (_g, rig, listener, watch) = start();
    let key = LinkKey::public_default();
    let mut blaster = Blaster::new(listener.addr);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let mut tiny = [0u8; 64];
    for i in 0..2000u32 {
        rng.fill_bytes(&mut tiny);
        let mut id = [0xD8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        blaster.send(&data_frame(
            &key,
            object_params(id, 1 << 20, 1 << 20, 64),
            0,
            9000,
            &tiny,
        ));
    }
    let over_limit = wait_until(Duration::from_secs(15), || {
        listener.metric("sluice_frames_over_limit_total") >= 2000.0
    });
    assert!(over_limit, "T = 64 frames are refused by the limits");
    let mut payload = vec![0u8; 512];
    for obj in 0..4u8 {
        let p = object_params(
            [0xE8, obj, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            1 << 20,
            1 << 20,
            512,
        );
        for esi in 2048..(2048 + 2064) {
            rng.fill_bytes(&mut payload);
            blaster.send(&data_frame(&key, p, 0, esi, &payload));
        }
    }
    deliver_and_check(&listener, &legit(&rig.signer, 8, 200 * 1024));
    let records = measure(
        "attack8",
        &listener,
        watch,
        &format!(
            "| over_limit {}, repaired blocks {}, decodes deferred {}",
            listener.metric("sluice_frames_over_limit_total"),
            listener.metric("sluice_blocks_repaired_total"),
            listener.metric("sluice_decodes_deferred_total")
        ),
    );
    assert_eq!(records, 0);
    listener.kill();
}
