//! End to end over UDP: the real `sluice-send udp` and `sluice-recv listen` binaries, through
//! plain loopback, the seeded impairment relay and the namespace diode (issue 4 "must show").
//!
//! Every test asserts outcomes, never timings: byte-identical delivery (`blake3_tree` of the
//! source against quarantine), exact receipt contents and reject reasons, audit records, an
//! empty staging area, `audit verify` exit 0, bounded RSS. Senders are paced so the tests do not
//! depend on how fast the machine drains a socket; deadlines are generous.
//!
//! The tests share one lock: on the 2-core CI machine two transfers at once would overrun each
//! other's receivers and make the figures meaningless. Data sizes are small enough for CI (the
//! whole binary runs in a few minutes) and can be raised with environment variables:
//! `SLUICE_E2E_NETNS_MIB` (256), `SLUICE_E2E_RELAY_MIB` (32), `SLUICE_E2E_KILL_MIB` (128),
//! `SLUICE_E2E_FLOOD_MIB` (48), `SLUICE_E2E_PAIR_MIB` (16 each).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;
use sluice_tests::e2e::{self, BundleInfo, bins, env_mib};
use sluice_tests::listener::{ListenOptions, Listener, wait_until};
use sluice_tests::store::{
    Source, audit_records, quarantine_ids, receipt, rejected_records, staging_leftovers,
};
use sluice_tests::{
    DiodeOptions, ImpairConfig, Netns, Relay, Side, TempStore, free_udp_addr, require_root_or_skip,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(120);

/// One test's world: an officer key trusted by both sides, a store, a scratch directory.
struct Rig {
    tmp: TempStore,
    key: PathBuf,
    /// The receiver's trust directory (officer only).
    trust: PathBuf,
    /// The sender's trust directory (officer and, when made, a stranger).
    sender_trust: PathBuf,
    store: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let tmp = TempStore::new();
        let keys = tmp.subdir("keys");
        let (key, public) = e2e::keygen(&keys, "officer");
        let trust = e2e::trust_dir(&tmp.path().join("trust"), &[&public]);
        let sender_trust = e2e::trust_dir(&tmp.path().join("sender-trust"), &[&public]);
        let store = tmp.path().join("store");
        Rig {
            tmp,
            key,
            trust,
            sender_trust,
            store,
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A mixed tree of `bytes` under `src-<name>/<name>` and its bundle `<name>.sluice`.
    fn bundle(&self, name: &str, bytes: u64, seed: u64, seq: u64) -> (BundleInfo, PathBuf) {
        self.bundle_on("updates", name, bytes, seed, seq)
    }

    /// [`Rig::bundle`] on `channel`: the default channel rule refuses a sequence at or below
    /// the last accepted one on the same channel.
    fn bundle_on(
        &self,
        channel: &str,
        name: &str,
        bytes: u64,
        seed: u64,
        seq: u64,
    ) -> (BundleInfo, PathBuf) {
        let content = self.path().join(format!("src-{name}")).join(name);
        e2e::mixed_tree(&content, bytes, seed);
        let info = e2e::make_bundle(
            &self.key,
            channel,
            seq,
            &content,
            &self.path().join(format!("{name}.sluice")),
        );
        (info, content)
    }

    fn listen_opts(&self, bind: SocketAddr) -> ListenOptions {
        ListenOptions::new(bind, &self.store, &self.trust)
    }

    /// A listener on a fresh loopback port.
    fn listener(&self) -> (Listener, SocketAddr) {
        let addr = free_udp_addr();
        let l = Listener::start(Command::new(&bins().recv), &self.listen_opts(addr));
        (l, addr)
    }

    fn send_args(&self, to: SocketAddr, rate: &str) -> Vec<String> {
        e2e::udp_args(to, &self.sender_trust, rate)
    }

    /// `sluice-send udp` over loopback.
    fn send(&self, to: SocketAddr, rate: &str, extra: &[&str], bundles: &[&Path]) -> Value {
        let mut args = self.send_args(to, rate);
        args.extend(extra.iter().map(|s| s.to_string()));
        e2e::send_udp(Command::new(&bins().send), &args, bundles).0
    }
}

fn outcome_for<'a>(outcomes: &'a [Value], bundle: &BundleInfo) -> Vec<&'a Value> {
    outcomes
        .iter()
        .filter(|o| o["bundle_id"] == bundle.id.as_str())
        .collect()
}

/// The checks every successful delivery gets: files and receipt, an `accepted` audit record,
/// an intact audit chain (`audit verify` exit 0), nothing left in staging.
fn assert_accepted(store: &Path, bundle: &BundleInfo, source: &Path, name: &str) {
    e2e::assert_delivered(store, bundle, source, name);
    let audit = audit_records(store);
    let accepted: Vec<_> = audit
        .iter()
        .filter(|r| r.bundle_id.as_deref() == Some(bundle.id.as_str()) && r.outcome == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "one accepted audit record: {audit:?}");
    assert_eq!(
        accepted[0].channel.as_deref(),
        Some(bundle.channel.as_str())
    );
    assert_eq!(accepted[0].sequence, Some(bundle.sequence));
    assert_eq!(accepted[0].signer.as_deref(), Some("officer"));
    let verify = e2e::audit_verify(store);
    assert_eq!(verify.code, 0, "audit verify: {}", verify.report);
    assert_eq!(verify.report["ok"], true);
    assert_eq!(
        staging_leftovers(store),
        Vec::<String>::new(),
        "staging must be empty"
    );
}

fn mib(v: u64) -> f64 {
    v as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Smoke: always runs, a few MiB over plain loopback.
// ---------------------------------------------------------------------------------------------

#[test]
fn smoke_small_bundle_over_loopback() {
    let _g = serial();
    let t0 = Instant::now();
    let rig = Rig::new();
    let (bundle, src) = rig.bundle("smoke", 4 * MIB, 1, 1);
    let (mut l, addr) = rig.listener();
    let report = rig.send(addr, "200M", &[], &[&bundle.path]);
    assert_eq!(report["bundles"][0]["bundle_id"], bundle.id.as_str());
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(outcomes[0]["bundle_id"], bundle.id.as_str());
    // Verified and extracted while it arrived (receiver/src/early.rs), not after.
    assert_eq!(outcomes[0]["verified_early"], true, "{outcomes:?}");
    let (code, stats) = l.stop();
    assert_eq!(code, 0);
    assert_accepted(&rig.store, &bundle, &src, "smoke");
    eprintln!(
        "smoke: {:.1}s, listener peak RSS {:.1} MiB",
        t0.elapsed().as_secs_f64(),
        mib(stats.peak_rss_kib)
    );
}

// ---------------------------------------------------------------------------------------------
// Impairment relay: reorder, duplicate, bit flips, truncation and loss.
// ---------------------------------------------------------------------------------------------

#[test]
fn relay_impairments_deliver_byte_identical_and_corruption_is_caught_by_the_tag() {
    let _g = serial();
    let t0 = Instant::now();
    let rig = Rig::new();
    let size = env_mib("SLUICE_E2E_RELAY_MIB", 32) * MIB;
    let (bundle, src) = rig.bundle("relayed", size, 2, 2);
    let (mut l, listen_addr) = rig.listener();
    let cfg = ImpairConfig {
        loss_pct: 1.0,
        reorder_window: 64,
        duplicate_pct: 3.0,
        corrupt_pct: 1.0,
        truncate_pct: 0.3,
        seed: 7,
        ..Default::default()
    };
    let relay = Relay::bind("127.0.0.1:0".parse().unwrap(), listen_addr, cfg)
        .expect("bind relay")
        .spawn();
    let report = rig.send(relay.addr(), "200M", &[], &[&bundle.path]);
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    let relay_stats = relay.stop().expect("relay stats");
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    // Reordered, duplicated and repaired blocks still let the early verifier follow it.
    assert_eq!(outcomes[0]["verified_early"], true, "{outcomes:?}");
    assert!(
        outcomes[0]["repaired_blocks"].as_u64().unwrap_or(0) > 0,
        "with 1 % loss some blocks need RaptorQ: {outcomes:?}"
    );
    let status = l.fresh_status(e2e_now_ms());
    let (code, _) = l.stop();
    assert_eq!(code, 0);
    assert_accepted(&rig.store, &bundle, &src, "relayed");

    assert!(relay_stats.corrupted > 0 && relay_stats.duplicated > 0);
    assert!(relay_stats.reordered > 0 && relay_stats.truncated > 0);
    let c = &status["counters"];
    let bad_tag = c["bad_tag"].as_u64().unwrap_or(0);
    let malformed = c["malformed"].as_u64().unwrap_or(0);
    // Every bit flip lands in the tag's coverage (the 4-byte prefix aside): caught before FEC.
    assert!(
        bad_tag > 0,
        "corrupted frames must show as bad-tag drops: {status}"
    );
    // The relay duplicates after it corrupts, so one impaired datagram may arrive twice.
    assert!(
        bad_tag + malformed <= 2 * (relay_stats.corrupted + relay_stats.truncated),
        "only impaired frames may be dropped: {status} vs {relay_stats:?}"
    );
    eprintln!(
        "relay: {:.1}s, {} frames sent; relay {:?}; listener bad_tag {bad_tag} malformed {malformed}",
        t0.elapsed().as_secs_f64(),
        report["frames"],
        relay_stats
    );
}

fn e2e_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Sent twice; tampered; unknown signer.
// ---------------------------------------------------------------------------------------------

/// Sends the same bundle twice, restarting the listener in between when `restart`; asserts
/// one quarantine copy, outcomes and audit decisions `accepted` then `duplicate`.
fn sent_twice(restart: bool) {
    let rig = Rig::new();
    let (bundle, src) = rig.bundle("twice", 2 * MIB, 3, 3);
    let (mut l, addr) = rig.listener();
    rig.send(addr, "200M", &[], &[&bundle.path]);
    let mut words = vec![l.wait_outcomes(1, LONG)[0]["outcome"].clone()];
    if restart {
        assert_eq!(l.stop().0, 0);
        l = Listener::start(Command::new(&bins().recv), &rig.listen_opts(addr));
    }
    rig.send(addr, "200M", &[], &[&bundle.path]);
    if restart {
        let n = l.outcomes.len() + 1;
        words.push(l.wait_outcomes(n, Duration::from_secs(30))[n - 1]["outcome"].clone());
    } else {
        // The transport remembers the object as completed and drops the resend's frames before
        // anything is verified: counted, never recorded (issue #12 attack 2 — forged frames
        // naming an accepted object id look exactly like this).
        assert!(
            wait_until(Duration::from_secs(30), || {
                l.fresh_status(e2e_now_ms())["counters"]["replays_unverified"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
            }),
            "the resend was not counted: {}",
            l.status()
        );
        assert_eq!(l.poll_outcomes().len(), 1, "a resend decides nothing");
    }
    assert_eq!(l.stop().0, 0);
    let expected: &[&str] = if restart {
        &["accepted", "duplicate"]
    } else {
        &["accepted"]
    };
    assert_eq!(words, expected);
    assert_eq!(quarantine_ids(&rig.store), vec![bundle.id.clone()]);
    let audit = audit_records(&rig.store);
    let decisions: Vec<_> = audit
        .iter()
        .filter(|r| r.bundle_id.as_deref() == Some(bundle.id.as_str()))
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(decisions, expected, "{audit:?}");
    assert!(rejected_records(&rig.store).is_empty());
    assert_accepted(&rig.store, &bundle, &src, "twice");
}

/// A resend after a restart verifies again (its block 0 and body against the trust
/// directory), so it is recorded as a duplicate, once per bundle per hour
/// (`common/src/admission/`).
#[test]
fn sent_twice_across_a_restart_gives_one_copy_and_a_duplicate_record() {
    let _g = serial();
    sent_twice(true);
}

/// Within one listener process the transport remembers the last 1024 completed object ids and
/// drops their frames before anything is verified: a resend is counted
/// (`replays_unverified`), never recorded, so frames forged to name an accepted object cannot
/// write records (issue #12 attack 2, `tests/tests/attacks_ingest.rs`).
#[test]
fn sent_twice_to_one_listener_counts_the_resend_and_records_nothing() {
    let _g = serial();
    sent_twice(false);
}

/// Junk objects (valid frames under the public default key, never completed) used to hold both
/// of the receiver's early verifiers until their idle timeout. Since issue #12 they stay
/// unauthenticated: nothing of them is staged, they never reach a verifier, and a genuine bundle
/// sent after them is accepted byte-identical (docs/threat-model.md, ADV1).
#[test]
fn junk_objects_never_reach_a_verifier_and_a_genuine_bundle_lands() {
    use sluice_common::transport::params::{ObjectParams, recommended_block_size};
    use sluice_common::transport::wire::{self, DataHeader, LinkKey};
    let _g = serial();
    let rig = Rig::new();
    let (bundle, src) = rig.bundle("after-junk", 4 * MIB, 3, 1);
    let (mut l, addr) = rig.listener();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind junk socket");
    let symbol = wire::symbol_size_for_datagram(1472);
    let mut frame = vec![0u8; wire::data_frame_len(symbol)];
    for junk in 0..2u8 {
        let header = DataHeader {
            params: ObjectParams {
                object_id: [0xE0 + junk; 16],
                object_len: 64 << 20,
                block_size: recommended_block_size(symbol),
                symbol_size: symbol,
            },
            block: 0,
            esi: 0,
        };
        let payload = vec![0x5A; usize::from(symbol)];
        let len = wire::encode_data(&LinkKey::public_default(), &header, &payload, &mut frame)
            .expect("encode junk frame");
        socket
            .send_to(&frame[..len], addr)
            .expect("send junk frame");
    }
    // The junk opens two sessions, but they stay unauthenticated (their block 0 carries no
    // signed header): nothing of them is staged and they never reach a verifier.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = l.fresh_status(e2e_now_ms());
        if status["counters"]["sessions_opened"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "junk sessions never opened: {status}"
        );
    }
    let junk_parts = |store: &Path| {
        sluice_tests::store::staging_files(store)
            .into_iter()
            .filter(|f| f.contains("e0e0e0") || f.contains("e1e1e1"))
            .collect::<Vec<_>>()
    };
    assert_eq!(junk_parts(&rig.store), Vec::<String>::new(), "junk staged");

    rig.send(addr, "200M", &[], &[&bundle.path]);
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    let mine = outcome_for(&outcomes, &bundle);
    assert_eq!(mine.len(), 1, "{outcomes:?}");
    assert_eq!(mine[0]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(junk_parts(&rig.store), Vec::<String>::new(), "junk staged");
    assert_eq!(outcomes.len(), 1, "the junk decided nothing: {outcomes:?}");
    let (code, _) = l.stop();
    assert_eq!(code, 0);
    e2e::assert_delivered(&rig.store, &bundle, &src, "after-junk");
    let extractions = std::fs::read_dir(rig.store.join("staging/extract"))
        .expect("staging/extract")
        .count();
    assert_eq!(extractions, 0, "no early extraction left behind");
}

/// Sends `bytes` as `object_id` straight through the transport state machine (no sender-side
/// verification) and returns the listener's next outcome.
fn inject(l: &mut Listener, addr: SocketAddr, bytes: &[u8], object_id: [u8; 16]) -> Value {
    let before = l.outcomes.len();
    e2e::drive_sender(bytes, object_id, addr, &e2e::DriveOptions::default()).expect("drive");
    l.wait_outcomes(before + 1, LONG)[before].clone()
}

/// An unauthenticated refusal: counted under its reason, and nothing of it written anywhere.
fn assert_refused_unrecorded(l: &Listener, store: &Path, bundle: &BundleInfo, code: &str) {
    assert!(
        wait_until(LONG, || {
            l.fresh_status(e2e_now_ms())["counters"]["unauthenticated_by_code"][code]
                .as_u64()
                .unwrap_or(0)
                > 0
        }),
        "refusal {code} not counted: {}",
        l.status()
    );
    let oid = hex::encode(bundle.object_id());
    assert!(
        rejected_records(store)
            .iter()
            .all(|r| r.object_id.as_deref() != Some(oid.as_str())),
        "no rejected/ record for an unauthenticated object"
    );
    assert!(
        audit_records(store)
            .iter()
            .all(|r| r.object_id.as_deref() != Some(oid.as_str())
                && r.bundle_id.as_deref() != Some(bundle.id.as_str())),
        "no audit record for an unauthenticated object"
    );
    assert!(!store.join("quarantine").join(&bundle.id).exists());
}

fn assert_rejected(store: &Path, outcome: &Value, bundle: &BundleInfo, reason: &str) {
    assert_eq!(outcome["outcome"], "rejected", "{outcome}");
    assert_eq!(outcome["reason"], reason, "{outcome}");
    let oid = hex::encode(bundle.object_id());
    let records: Vec<_> = rejected_records(store)
        .into_iter()
        .filter(|r| r.object_id.as_deref() == Some(oid.as_str()))
        .collect();
    assert_eq!(records.len(), 1, "one rejected/ record for the object");
    assert_eq!(records[0].reason, reason);
    let audit = audit_records(store);
    assert!(
        audit.iter().any(|r| r.outcome == "rejected"
            && r.reason.as_deref() == Some(reason)
            && r.object_id.as_deref() == Some(oid.as_str())),
        "an audit record for the rejection: {audit:?}"
    );
    assert!(
        !store.join("quarantine").join(&bundle.id).exists(),
        "nothing of a rejected bundle in quarantine"
    );
}

#[test]
fn tampered_and_untrusted_bundles_are_rejected_with_their_reason() {
    let _g = serial();
    let rig = Rig::new();
    // Small bundles: the in-process sender runs raptorq inside the test binary (dev-profile
    // debug assertions make it slow there).
    let (content_bundle, _) = rig.bundle("content", 200 * 1024, 4, 4);
    let (sig_bundle, _) = rig.bundle("sig", 200 * 1024, 5, 5);
    let stranger_dir = rig.path().join("stranger-keys");
    let (stranger_key, stranger_pub) = e2e::keygen(&stranger_dir, "stranger");
    std::fs::copy(&stranger_pub, rig.sender_trust.join("stranger.pub")).expect("copy");
    let content = rig.path().join("src-alien").join("alien");
    e2e::mixed_tree(&content, 200 * 1024, 6);
    let alien = e2e::make_bundle(
        &stranger_key,
        "updates",
        6,
        &content,
        &rig.path().join("alien.sluice"),
    );

    let (mut l, addr) = rig.listener();

    // 1. One byte of file content flipped (the last byte of the bundle is the last file's).
    let mut bytes = std::fs::read(&content_bundle.path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x01;
    let o = inject(&mut l, addr, &bytes, content_bundle.object_id());
    assert_rejected(&rig.store, &o, &content_bundle, "hash_mismatch");

    // 2. One signature byte flipped: the id (a hash of the bytes before the signature) stays.
    // The signature is checked over block 0 before anything is staged (issue #12): a bundle no
    // trusted signer made is refused unauthenticated, counted, and writes no record.
    let mut bytes = std::fs::read(&sig_bundle.path).unwrap();
    let h = u32::from_le_bytes(bytes[18..22].try_into().unwrap()) as usize;
    bytes[22 + h + 10] ^= 0x80;
    e2e::drive_sender(
        &bytes,
        sig_bundle.object_id(),
        addr,
        &e2e::DriveOptions::default(),
    )
    .expect("drive");
    assert_refused_unrecorded(&l, &rig.store, &sig_bundle, "bad_signature");

    // 3. Signed by a key the sender trusts and the receiver does not: the real sender sends it.
    rig.send(addr, "200M", &[], &[&alien.path]);
    assert_refused_unrecorded(&l, &rig.store, &alien, "unknown_signer");
    assert_eq!(
        l.poll_outcomes().len(),
        1,
        "only the authenticated rejection decided"
    );

    // A clean stop exits 0 whatever was decided; the decisions are in the records and logs.
    let (code, _) = l.stop();
    assert_eq!(code, 0);
    assert!(quarantine_ids(&rig.store).is_empty());
    assert_eq!(staging_leftovers(&rig.store), Vec::<String>::new());
    let verify = e2e::audit_verify(&rig.store);
    assert_eq!(verify.code, 0, "{}", verify.report);
}

// ---------------------------------------------------------------------------------------------
// Receiver SIGKILLed mid-transfer, restarted, completed by the next pass.
// ---------------------------------------------------------------------------------------------

#[test]
fn receiver_killed_mid_transfer_resumes_and_the_next_pass_completes() {
    let _g = serial();
    let t0 = Instant::now();
    let rig = Rig::new();
    // Progress is checkpointed every 64 blocks (~64 MiB), so 128 MiB has a durable checkpoint
    // at about half way.
    let size = env_mib("SLUICE_E2E_KILL_MIB", 128) * MIB;
    let (bundle, src) = rig.bundle("killed", size, 7, 7);
    let (l, addr) = rig.listener();
    let progress = rig
        .store
        .join("staging/objects")
        .join(format!("{}.progress", hex::encode(bundle.object_id())));
    let sender = {
        let args = rig.send_args(addr, "300M");
        let path = bundle.path.clone();
        std::thread::spawn(move || e2e::send_udp(Command::new(&bins().send), &args, &[&path]))
    };
    // The first checkpoint is written as soon as the object authenticates (block 0, issue #12),
    // so its presence alone no longer means half the object is durable: wait until more than
    // 64 blocks are done in memory, so the 64-block checkpoint has been written too.
    let object_hex = hex::encode(bundle.object_id());
    let blocks_done = |status: &Value| {
        status["live_transfers"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["object_id"] == object_hex))
            .map_or(0, |t| {
                t["blocks"].as_u64().unwrap_or(0) - t["missing_blocks"].as_u64().unwrap_or(0)
            })
    };
    let deadline = Instant::now() + LONG;
    while !(progress.is_file() && blocks_done(&l.status()) > 72) {
        assert!(
            Instant::now() < deadline && !sender.is_finished(),
            "no 64-block checkpoint before the transfer ended: {}",
            l.log_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = l.status();
    l.kill9();
    let (first_report, _) = sender.join().expect("first sender");
    assert!(
        progress.is_file(),
        "the checkpoint survives SIGKILL (it is written atomically)"
    );

    let mut l = Listener::start(Command::new(&bins().recv), &rig.listen_opts(addr));
    // The restart kept the partial object and its checkpoint (restart reconciliation deletes
    // only a .part without progress) and restored it: it is live with only some blocks missing.
    assert!(progress.is_file(), "checkpoint kept across the restart");
    assert!(
        progress.with_extension("part").is_file(),
        "partial object kept"
    );
    let restored = l.fresh_status(e2e_now_ms());
    let entry = restored["live_transfers"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["object_id"] == hex::encode(bundle.object_id()))
        })
        .unwrap_or_else(|| panic!("restored transfer not live: {restored}"))
        .clone();
    let (missing, blocks) = (
        entry["missing_blocks"].as_u64().unwrap(),
        entry["blocks"].as_u64().unwrap(),
    );
    assert!(
        missing > 0 && missing < blocks,
        "resumed with {missing}/{blocks} blocks missing"
    );

    let second_report = rig.send(addr, "300M", &[], &[&bundle.path]);
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    // A restored object gets no early verifier: it is verified whole after completion.
    assert_eq!(outcomes[0]["verified_early"], false, "{outcomes:?}");
    // Symbols the second listener needed: only the blocks missing after the restart.
    let needed = outcomes[0]["frames"].as_u64().unwrap();
    let sent = second_report["frames"].as_u64().unwrap();
    assert!(
        needed < sent * 3 / 4,
        "the resumed transfer should use far fewer symbols ({needed}) than a full pass ({sent})"
    );
    assert_eq!(l.stop().0, 0);
    assert_accepted(&rig.store, &bundle, &src, "killed");
    eprintln!(
        "kill: {:.1}s; killed with status {}; restored with {missing}/{blocks} blocks missing; \
         first pass {} frames, second pass accepted {needed} of {sent}",
        t0.elapsed().as_secs_f64(),
        status["live_transfers"],
        first_report["frames"]
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage flood during a transfer.
// ---------------------------------------------------------------------------------------------

/// Blasts `to` until `stop`: random bytes of random length, random bytes behind a valid
/// prefix, and well-formed data frames for the real object whose tag is made with another key.
fn flood(to: SocketAddr, object_id: [u8; 16], stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    use sluice_common::transport::params::{ObjectParams, recommended_block_size};
    use sluice_common::transport::wire::{self, DataHeader, LinkKey};
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind flood socket");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let wrong_key = LinkKey::from_bytes([0x42; 32]);
    let symbol = wire::symbol_size_for_datagram(1472);
    let params = ObjectParams {
        object_id,
        object_len: 1 << 30,
        block_size: recommended_block_size(symbol),
        symbol_size: symbol,
    };
    let mut frame = vec![0u8; wire::data_frame_len(symbol)];
    let mut payload = vec![0u8; usize::from(symbol)];
    let mut junk = vec![0u8; 1472];
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let datagram: &[u8] = match n % 3 {
            0 => {
                let len = rng.random_range(0..=junk.len());
                rng.fill_bytes(&mut junk[..len]);
                &junk[..len]
            }
            1 => {
                let len = wire::data_frame_len(symbol);
                rng.fill_bytes(&mut junk[..len]);
                junk[..4].copy_from_slice(&[b'S', b'L', wire::VERSION, wire::KIND_DATA]);
                &junk[..len]
            }
            _ => {
                rng.fill_bytes(&mut payload);
                let header = DataHeader {
                    params,
                    block: rng.random_range(0..8),
                    esi: rng.random_range(0..2000),
                };
                let len = wire::encode_data(&wrong_key, &header, &payload, &mut frame)
                    .expect("encode forged frame");
                &frame[..len]
            }
        };
        let _ = socket.send_to(datagram, to);
        n += 1;
        // ~40k datagrams/s: well above the legitimate frame rate, without starving the two
        // processes under test of the CI machine's two cores.
        if n % 400 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sent.store(n, Ordering::Relaxed);
}

/// The listener's RSS bound under attack: `--memory` 48 MiB of buffered symbols plus code,
/// decode workspace and allocator slack.
const LISTEN_RSS_BOUND_MIB: f64 = 128.0;

#[test]
fn garbage_flood_during_a_transfer_is_counted_and_memory_stays_bounded() {
    let _g = serial();
    let t0 = Instant::now();
    let rig = Rig::new();
    let size = env_mib("SLUICE_E2E_FLOOD_MIB", 48) * MIB;
    let (bundle, src) = rig.bundle("flooded", size, 8, 8);
    let (mut l, addr) = rig.listener();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let oid = bundle.object_id();
        std::thread::spawn(move || flood(addr, oid, stop, sent))
    };
    // The flood starts first, so forged frames arrive ahead of the genuine ones.
    std::thread::sleep(Duration::from_millis(300));
    rig.send(addr, "200M", &[], &[&bundle.path]);
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flood thread");
    let garbage = sent.load(Ordering::Relaxed);
    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    let status = l.fresh_status(e2e_now_ms() + 100);
    let (code, stats) = l.stop();
    assert_eq!(code, 0);
    assert_accepted(&rig.store, &bundle, &src, "flooded");
    let c = &status["counters"];
    let (bad_tag, malformed) = (
        c["bad_tag"].as_u64().unwrap_or(0),
        c["malformed"].as_u64().unwrap_or(0),
    );
    assert!(bad_tag > 0 && malformed > 0, "garbage counted: {status}");
    // Loopback corrupts nothing, so every drop is garbage; and every garbage datagram the
    // kernel delivered is counted (random bytes that happen to start with a valid prefix of an
    // unknown kind land in `unknown_kind`, which status.json does not show: allow 1 %).
    assert!(bad_tag + malformed <= garbage, "{status}");
    if status["kernel_drops"].as_u64() == Some(0) {
        assert!(
            (bad_tag + malformed) * 100 >= garbage * 99,
            "{garbage} sent, {bad_tag} + {malformed} counted"
        );
    }
    let peak = mib(stats.peak_rss_kib);
    assert!(
        peak <= LISTEN_RSS_BOUND_MIB,
        "listener peak RSS {peak:.1} MiB exceeds {LISTEN_RSS_BOUND_MIB} MiB"
    );
    eprintln!(
        "flood: {:.1}s; {garbage} garbage datagrams sent; listener bad_tag {bad_tag}, malformed \
         {malformed}, kernel drops {}; peak RSS {peak:.1} MiB, fds {}, CPU {:.1}s",
        t0.elapsed().as_secs_f64(),
        status["kernel_drops"],
        stats.peak_fds,
        stats.cpu_secs
    );
}

// ---------------------------------------------------------------------------------------------
// Two senders at once.
// ---------------------------------------------------------------------------------------------

#[test]
fn two_senders_at_once_both_land_intact() {
    let _g = serial();
    let rig = Rig::new();
    let size = env_mib("SLUICE_E2E_PAIR_MIB", 16) * MIB;
    // Two channels: the senders race, and on one channel whichever sequence lands second would
    // rightly be refused as a rollback if it is the lower one.
    let (a, src_a) = rig.bundle_on("alpha", "alpha", size, 9, 9);
    let (b, src_b) = rig.bundle_on("beta", "beta", size + 12345, 10, 10);
    let (mut l, addr) = rig.listener();
    let threads: Vec<_> = [a.path.clone(), b.path.clone()]
        .into_iter()
        .map(|p| {
            let args = rig.send_args(addr, "150M");
            std::thread::spawn(move || e2e::send_udp(Command::new(&bins().send), &args, &[&p]))
        })
        .collect();
    for t in threads {
        t.join().expect("sender");
    }
    let outcomes = l.wait_outcomes(2, LONG).to_vec();
    assert_eq!(l.stop().0, 0);
    for bundle in [&a, &b] {
        let o = outcome_for(&outcomes, bundle);
        assert_eq!(o.len(), 1, "{outcomes:?}");
        assert_eq!(o[0]["outcome"], "accepted", "{}", o[0]);
    }
    assert_accepted(&rig.store, &a, &src_a, "alpha");
    assert_accepted(&rig.store, &b, &src_b, "beta");
    assert_eq!(quarantine_ids(&rig.store).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The namespace diode: 256 MiB, 5 % random loss, MTU 1500, 10 % overhead, one pass.
// ---------------------------------------------------------------------------------------------

#[test]
fn namespace_diode_delivers_a_large_mixed_bundle_through_5pct_loss() {
    let name = "namespace_diode_delivers_a_large_mixed_bundle_through_5pct_loss";
    if !require_root_or_skip(name) {
        return;
    }
    let _g = serial();
    let t0 = Instant::now();
    let rig = Rig::new();
    let size = env_mib("SLUICE_E2E_NETNS_MIB", 256) * MIB;
    let passes = std::env::var("SLUICE_E2E_NETNS_PASSES").unwrap_or_else(|_| "1".into());
    let rate = std::env::var("SLUICE_E2E_NETNS_RATE").unwrap_or_else(|_| "400M".into());
    let (bundle, src) = rig.bundle("payload", size, 11, 11);
    let t_built = t0.elapsed();
    let mut diode = Netns::up(&DiodeOptions {
        loss_pct: Some(5.0),
        rate: None,
        mtu: 1500,
    })
    .expect("diode up");
    let bind = SocketAddr::from((diode.rx_addr, 7000));
    // The namespace address is not loopback: both ends need the same secret link key.
    let link_key = rig.path().join("link.key");
    std::fs::write(&link_key, format!("{}\n", "5a".repeat(32))).expect("write link key");
    let link_key = link_key.display().to_string();
    let mut opts = rig.listen_opts(bind);
    opts.extra = vec![
        "--max-datagram".into(),
        "1472".into(),
        "--link-key".into(),
        link_key.clone(),
    ];
    let mut l = Listener::start(diode.command(Side::Rx, &bins().recv), &opts);
    let mut args = rig.send_args(bind, &rate);
    args.extend([
        "--link-key".into(),
        link_key,
        "--mtu".into(),
        "1500".into(),
        "--overhead".into(),
        "10".into(),
        "--passes".into(),
        passes.clone(),
    ]);
    let t_send = Instant::now();
    let (report, send_stats) = e2e::send_udp(
        diode.command(Side::Tx, &bins().send),
        &args,
        &[&bundle.path],
    );
    let outcomes = l.wait_outcomes(1, LONG).to_vec();
    let t_transfer = t_send.elapsed();
    let status = l.fresh_status(e2e_now_ms());
    let (code, recv_stats) = l.stop();
    let diode_status = diode.status().expect("diode status");
    diode.down().expect("diode down");

    assert_eq!(outcomes[0]["outcome"], "accepted", "{outcomes:?}");
    assert_eq!(outcomes[0]["bundle_id"], bundle.id.as_str());
    assert_eq!(outcomes[0]["verified_early"], true, "{outcomes:?}");
    assert_eq!(code, 0);
    assert!(
        diode_status.loss_drops > 0,
        "the emulated loss dropped frames"
    );
    assert_eq!(
        diode_status.egress_to_low_side_packets, 0,
        "the high side sent nothing toward the low side: {diode_status:?}"
    );
    assert_accepted(&rig.store, &bundle, &src, "payload");
    let receipt = receipt(&rig.store, &bundle.id).unwrap();
    assert_eq!(receipt.transport.source, Source::Udp);
    let rss_recv = mib(recv_stats.peak_rss_kib);
    assert!(
        rss_recv <= LISTEN_RSS_BOUND_MIB,
        "listener peak RSS {rss_recv:.1} MiB exceeds {LISTEN_RSS_BOUND_MIB} MiB for {} MiB",
        size / MIB
    );
    eprintln!(
        "netns: {} MiB bundle, passes {passes}, rate {rate}: built in {:.1}s, transfer {:.1}s, \
         total {:.1}s; {} frames sent, {} lost by the diode, {} blocks repaired, kernel drops \
         {}; sender peak RSS {:.1} MiB CPU {:.1}s; listener peak RSS {rss_recv:.1} MiB CPU \
         {:.1}s fds {}",
        size / MIB,
        t_built.as_secs_f64(),
        t_transfer.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        report["frames"],
        diode_status.loss_drops,
        outcomes[0]["repaired_blocks"],
        status["kernel_drops"],
        mib(send_stats.peak_rss_kib),
        send_stats.cpu_secs,
        recv_stats.cpu_secs,
        recv_stats.peak_fds,
    );
}
