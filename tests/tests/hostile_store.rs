//! Crash safety and storage faults of a running `sluice-recv listen` (threat model ENV).
//!
//! - `kill_9_loop_*`: SIGKILL at seeded random moments while small bundles arrive, restart,
//!   repeat (`SLUICE_CRASH_ITERATIONS`, default 100 under `CI=true`, 25 otherwise;
//!   `SLUICE_CRASH_SEED`). Afterwards `audit verify` passes, nothing is partial, staging is empty
//!   after a clean finish, and every bundle whose receipt was ever seen is still there.
//! - storage faults (root: tmpfs mounts; skipped with a reason otherwise, FAIL under `CI=true`):
//!   disk full while staging and while committing, exhausted inodes, a read-only store at start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use sluice_tests::attack::{
    Blaster, SignedBundle, Signer, TestMount, fs_free, require_mount_or_skip, resend_until,
};
use sluice_tests::listener::{Listener, wait_until};
use sluice_tests::store::{audit_records, audit_verify, quarantine_ids, staging_files};
use sluice_tests::{TempStore, build_bin};

/// A small bundle of the kill -9 loop and the fault tests: `size` bytes from the test's seeded
/// `rng` and a file naming its sequence, on channel `nightly`.
fn bundle(signer: &Signer, rng: &mut impl RngCore, sequence: u64, size: usize) -> SignedBundle {
    let mut a = vec![0u8; size];
    rng.fill_bytes(&mut a);
    let files = vec![
        ("data.bin".to_string(), a),
        ("seq.txt".to_string(), format!("{sequence}\n").into_bytes()),
    ];
    SignedBundle::new(signer, "nightly", sequence, files)
}

fn decided(store: &Path, id: &str) -> Option<String> {
    audit_records(store)
        .into_iter()
        .filter(|r| r.bundle_id.as_deref() == Some(id))
        .map(|r| r.outcome)
        .find(|d| d == "accepted" || d == "duplicate" || d == "rejected")
}

/// Sends until the bundle has a decision; returns it.
fn deliver(l: &Listener, b: &SignedBundle) -> String {
    let id = b.id();
    resend_until(l.addr, &b.frames, 20, || decided(&l.store, &id))
        .unwrap_or_else(|| panic!("bundle {id} never decided; log:\n{}", l.log_text()))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every quarantine entry with a receipt.json, now.
fn receipts(store: &Path) -> BTreeSet<String> {
    quarantine_ids(store)
        .into_iter()
        .filter(|id| {
            store
                .join("quarantine")
                .join(id)
                .join("receipt.json")
                .is_file()
        })
        .collect()
}

/// SIGKILL at random moments during transfers, restart, repeat.
#[test]
fn kill_9_loop_never_loses_or_half_releases_a_bundle() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let iterations = env_u64("SLUICE_CRASH_ITERATIONS", if ci { 100 } else { 25 });
    let seed = env_u64("SLUICE_CRASH_SEED", 66);
    let tmp = TempStore::new();
    let signer = Signer::new(&tmp.path().join("trust"));
    let bin = build_bin("sluice-recv", "sluice-recv");
    let store = tmp.path().join("store");
    let addr = sluice_tests::free_udp_addr();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let bundles: Vec<SignedBundle> = (0..iterations)
        .map(|i| {
            let size = rng.random_range(1_000..120_000);
            bundle(&signer, &mut rng, i + 1, size)
        })
        .collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut kills_with_partial = 0u64;
    let started = std::time::Instant::now();
    for (i, b) in bundles.iter().enumerate() {
        let listener = Listener::spawn_at(&bin, addr, &store, &signer.trust, tmp.path(), &[]);
        let mut blaster = Blaster::new(addr);
        // This bundle and the previous one (whose transfer the last kill may have cut).
        if i > 0 {
            blaster.send_all(&bundles[i - 1].frames);
        }
        blaster.send_all(&b.frames);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        listener.kill();
        if staging_files(&store)
            .iter()
            .any(|f| f.starts_with("extract/x-"))
        {
            kills_with_partial += 1;
        }
        let now = receipts(&store);
        let lost: Vec<&String> = seen.difference(&now).collect();
        assert!(
            lost.is_empty(),
            "iteration {i}: accepted bundles vanished: {lost:?}"
        );
        seen = now;
    }
    let loop_secs = started.elapsed().as_secs_f64();

    // A clean restart: reconciliation, then every bundle (re)sent until decided.
    let listener = Listener::spawn_at(&bin, addr, &store, &signer.trust, tmp.path(), &[]);
    for b in &bundles {
        let d = deliver(&listener, b);
        assert!(
            d == "accepted" || d == "duplicate",
            "bundle {} decided {d}",
            b.id()
        );
    }
    let status = listener.terminate();
    assert_eq!(status.code(), Some(0), "clean exit after the crash loop");
    for id in &seen {
        assert!(
            store
                .join("quarantine")
                .join(id)
                .join("receipt.json")
                .is_file(),
            "{id} was accepted during the loop and must still be there"
        );
    }
    for b in &bundles {
        b.assert_in_quarantine(&store);
    }
    assert_eq!(
        quarantine_ids(&store).len(),
        bundles.len(),
        "one entry per bundle, no extras"
    );
    let accepted: BTreeSet<String> = audit_records(&store)
        .into_iter()
        .filter(|r| r.outcome == "accepted")
        .filter_map(|r| r.bundle_id)
        .collect();
    assert_eq!(
        accepted.len(),
        bundles.len(),
        "every bundle has its accepted record"
    );
    let verify = audit_verify(&bin, &store);
    let (code, out) = (verify.code, verify.output);
    assert_eq!(code, 0, "audit verify after the crash loop:\n{out}");
    let left = staging_files(&store);
    assert!(
        left.is_empty(),
        "staging holds orphans after a clean finish: {left:?}"
    );
    eprintln!(
        "[kill_9_loop] {iterations} kills (seed {seed}) in {loop_secs:.1} s; {} accepted before the final pass; {kills_with_partial} kills left an extraction behind",
        seen.len()
    );
}

struct FaultRig {
    // Declared first so it is dropped (unmounted) before the temp dir is removed.
    mnt: TestMount,
    tmp: TempStore,
    signer: Signer,
    bin: PathBuf,
    rng: rand_chacha::ChaCha8Rng,
}

impl FaultRig {
    fn new(options: &str) -> Self {
        let tmp = TempStore::new();
        let signer = Signer::new(&tmp.path().join("trust"));
        let bin = build_bin("sluice-recv", "sluice-recv");
        let mnt = TestMount::tmpfs(&tmp.path().join("mnt"), options).expect("mount tmpfs");
        FaultRig {
            tmp,
            signer,
            bin,
            mnt,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(63),
        }
    }

    fn store(&self) -> PathBuf {
        self.mnt.path.join("store")
    }

    fn listen(&self) -> Listener {
        Listener::spawn(
            &self.bin,
            &self.store(),
            &self.signer.trust,
            self.tmp.path(),
            &["--staging-quota", "1"],
        )
    }

    fn bundle(&mut self, seq: u64, size: usize) -> SignedBundle {
        bundle(&self.signer, &mut self.rng, seq, size)
    }
}

/// After a fault is cleared: the next bundle is accepted and lands in quarantine, the listener
/// stops cleanly, and `audit verify` finds the chain intact.
fn next_accepted_then_audit_verifies(rig: &mut FaultRig, l: Listener, size: usize) {
    let next = rig.bundle(2, size);
    assert_eq!(deliver(&l, &next), "accepted");
    next.assert_in_quarantine(&l.store);
    assert!(l.terminate().success());
    let verify = audit_verify(&rig.bin, &rig.store());
    let (code, out) = (verify.code, verify.output);
    assert_eq!(code, 0, "{out}");
}

/// Sends `b` a few times and waits until the log shows `needle`.
fn send_until_logged(l: &Listener, b: &SignedBundle, needle: &str) -> bool {
    let mut blaster = Blaster::new(l.addr);
    (0..10).any(|_| {
        blaster.send_all(&b.frames);
        wait_until(Duration::from_secs(2), || l.log_text().contains(needle))
    })
}

/// While staging, the object does not fit the filesystem: the reservation fails with a clear
/// ENOSPC error, nothing reaches quarantine, the listener keeps running and reports it once per
/// attempt (not once per block); after the filesystem grows, a resend of the same bundle is
/// accepted without a restart (threat model G5), and so is the next bundle.
#[test]
fn disk_full_while_staging_then_space_freed() {
    if !require_mount_or_skip("disk_full_while_staging_then_space_freed") {
        return;
    }
    let mut rig = FaultRig::new("size=2m");
    let mut l = rig.listen();
    let big = rig.bundle(1, 3 << 20);
    assert!(
        send_until_logged(&l, &big, "disk full"),
        "a clear disk-full error; log:\n{}",
        l.log_text()
    );
    assert!(l.alive(), "listener keeps running");
    assert!(quarantine_ids(&l.store).is_empty());
    let log = l.log_text();
    assert!(
        log.contains("storage_error"),
        "a storage_error outcome; log:\n{log}"
    );
    assert!(
        !log.contains("writing a block to staging failed"),
        "no write is attempted for an object that could not be staged; log:\n{log}"
    );
    let attempts = log.matches("cannot stage a new object").count();
    assert!(
        (1..=12).contains(&attempts),
        "one error per staging attempt (the retry pause is 5 s), not one per frame: {attempts}"
    );
    rig.mnt.remount("size=64m");
    assert_eq!(
        deliver(&l, &big),
        "accepted",
        "a resend after space was freed is staged again, no restart"
    );
    big.assert_in_quarantine(&l.store);
    next_accepted_then_audit_verifies(&mut rig, l, 100_000);
}

/// At commit, the staged object fits but its verified extraction does not: a storage_error
/// outcome (not a rejection), the extraction is discarded, nothing in quarantine, the listener
/// keeps running; after the filler is deleted the listener's verification retry commits the
/// staged bundle without a resend, and the next bundle is accepted too.
#[test]
fn disk_full_while_committing_then_space_freed() {
    if !require_mount_or_skip("disk_full_while_committing_then_space_freed") {
        return;
    }
    let mut rig = FaultRig::new("size=16m");
    let mut l = rig.listen();
    let b = rig.bundle(1, 3 << 20);
    // Leave room for the staged object (~3 MiB) but not for a second copy of it.
    let (free, _) = fs_free(&rig.mnt.path);
    let filler = rig.mnt.path.join("filler");
    std::fs::write(
        &filler,
        vec![0u8; (free - (4 << 20) - (512 << 10)) as usize],
    )
    .expect("write filler");
    assert!(
        send_until_logged(&l, &b, "storage_error"),
        "a storage_error outcome; log:\n{}",
        l.log_text()
    );
    assert!(l.alive());
    assert!(
        quarantine_ids(&l.store).is_empty(),
        "nothing half-committed"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !staging_files(&l.store)
            .iter()
            .any(|f| f.starts_with("extract/x-"))),
        "failed extraction removed: {:?}",
        staging_files(&l.store)
    );
    let rejected_reasons: Vec<String> = audit_records(&l.store)
        .into_iter()
        .filter(|r| r.outcome == "rejected")
        .map(|r| r.reason.unwrap_or_default())
        .collect();
    assert!(
        rejected_reasons.is_empty(),
        "a full disk is not the bundle's fault: {rejected_reasons:?}"
    );
    std::fs::remove_file(&filler).expect("free space");
    // The staged, complete object is retried by the listener itself (no resend, no restart).
    assert!(
        wait_until(Duration::from_secs(90), || decided(&l.store, &b.id())
            .is_some()),
        "retried after space was freed; log:\n{}",
        l.log_text()
    );
    assert_eq!(decided(&l.store, &b.id()).as_deref(), Some("accepted"));
    b.assert_in_quarantine(&l.store);
    next_accepted_then_audit_verifies(&mut rig, l, 200_000);
}

/// No inode left for the staging file: a clear error, the listener keeps running, and
/// after inodes are freed the next bundle is accepted.
#[test]
fn inodes_exhausted_then_freed() {
    if !require_mount_or_skip("inodes_exhausted_then_freed") {
        return;
    }
    let mut rig = FaultRig::new("size=64m,nr_inodes=200");
    let mut l = rig.listen();
    let fill = rig.mnt.path.join("fill");
    std::fs::create_dir(&fill).expect("filler dir");
    let mut n = 0;
    while std::fs::write(fill.join(format!("f{n}")), b"").is_ok() {
        n += 1;
        assert!(n < 10_000, "nr_inodes not enforced");
    }
    let b = rig.bundle(1, 50_000);
    assert!(
        send_until_logged(&l, &b, "No space left on device"),
        "a clear ENOSPC error; log:\n{}",
        l.log_text()
    );
    assert!(l.alive());
    assert!(quarantine_ids(&l.store).is_empty());
    std::fs::remove_dir_all(&fill).expect("free inodes");
    let next = rig.bundle(2, 50_000);
    assert_eq!(deliver(&l, &next), "accepted");
    next.assert_in_quarantine(&l.store);
    assert!(l.terminate().success());
    eprintln!("[inodes] {n} filler inodes; listener survived ENOSPC on create");
}

/// A store on a read-only filesystem at start: exit 8 with a clear error, no crash loop.
#[test]
fn read_only_store_at_start_exits_8() {
    if !require_mount_or_skip("read_only_store_at_start_exits_8") {
        return;
    }
    let rig = FaultRig::new("size=8m");
    let l = rig.listen();
    assert!(l.terminate().success());
    rig.mnt.remount("ro");
    let out = std::process::Command::new(&rig.bin)
        .arg("listen")
        .arg("--bind")
        .arg(sluice_tests::free_udp_addr().to_string())
        .arg("--store")
        .arg(rig.store())
        .arg("--trust")
        .arg(&rig.signer.trust)
        .output()
        .expect("run listen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "exit 8; stderr:\n{stderr}");
    assert!(stderr.contains("read-only"), "names the cause: {stderr}");
}
