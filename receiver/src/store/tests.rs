//! Library-level tests of the store (the receiver is a binary crate, so they live here).
//! `CommitInfo` stands in for `Verified`, which only the verifier can construct.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sluice_common::bundle::{BundleId, Entry, EntryKind, FileSink, KeyId, RejectReason};

use super::*;

fn cfg() -> StoreConfig {
    StoreConfig {
        staging_quota_bytes: 64 << 20,
    }
}

fn tf() -> TransportFigures {
    TransportFigures {
        frames: 100,
        lost_frames: 3,
        bad_frames: 1,
        repaired_blocks: 2,
        passes: 1,
        source: Source::Udp,
    }
}

struct Spec {
    dirs: Vec<&'static str>,
    files: Vec<(&'static str, Vec<u8>, bool)>,
}

fn sample() -> Spec {
    Spec {
        dirs: vec!["empty", "bin"],
        files: vec![
            ("readme.txt", b"hello quarantine\n".to_vec(), false),
            ("bin/tool.sh", b"#!/bin/sh\necho hi\n".to_vec(), true),
            (
                "deep/a/b/c.dat",
                (0..70_000u32).map(|i| (i % 251) as u8).collect(),
                false,
            ),
            ("zero", Vec::new(), false),
        ],
    }
}

fn entries(spec: &Spec) -> Vec<Entry> {
    let mut v: Vec<Entry> = spec
        .dirs
        .iter()
        .map(|d| Entry {
            kind: EntryKind::Dir,
            path: (*d).to_owned(),
            size: 0,
            blake3: [0; 32],
            executable: false,
        })
        .collect();
    for (p, c, x) in &spec.files {
        v.push(Entry {
            kind: EntryKind::File,
            path: (*p).to_owned(),
            size: c.len() as u64,
            blake3: *blake3::hash(c).as_bytes(),
            executable: *x,
        });
    }
    v
}

fn info(id: u8, channel: &str, seq: u64, spec: &Spec) -> CommitInfo {
    CommitInfo {
        id: BundleId([id; 32]),
        format_version: 1,
        channel: channel.to_owned(),
        sequence: seq,
        created: 1_795_757_075,
        expires: Some(1_795_757_075 + 86_400),
        note: Some("nightly".into()),
        signer_name: "officer-a".into(),
        signer_key: KeyId([7; 8]),
        entries: entries(spec),
        bundle_bytes: 12_345,
    }
}

fn feed(ext: &mut Extraction, spec: &Spec) -> io::Result<()> {
    for e in entries(spec) {
        match e.kind {
            EntryKind::Dir => ext.create_dir(&e)?,
            EntryKind::File => {
                let content = &spec
                    .files
                    .iter()
                    .find(|f| f.0 == e.path)
                    .ok_or_else(|| io::Error::other("missing"))?
                    .1;
                ext.begin_file(&e)?;
                for chunk in content.chunks(8192) {
                    ext.write(chunk)?;
                }
                ext.end_file(&e)?;
            }
        }
    }
    Ok(())
}

fn commit(
    store: &mut Store,
    id: u8,
    channel: &str,
    seq: u64,
    require: bool,
) -> Result<Decision, StoreError> {
    let spec = sample();
    let mut ext = store.stage_extract()?;
    feed(&mut ext, &spec).map_err(ioe("feed"))?;
    store.commit_core(ext, &info(id, channel, seq, &spec), require, tf())
}

fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line parses"))
        .collect()
}

fn verify_ok(dir: &Path) {
    let r = inspect::verify_store(dir).expect("verify runs");
    assert!(
        r.problems.is_empty(),
        "audit verify problems: {:#?}",
        r.problems
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn hexid(id: u8) -> String {
    BundleId([id; 32]).to_hex()
}

#[test]
fn commit_writes_exact_files_modes_receipt_and_audit() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("store");
    let old = rustix::process::umask(Mode::from_raw_mode(0o077));
    let mut store = Store::open(&dir, cfg()).expect("open");
    let d = commit(&mut store, 1, "nightly", 1, true).expect("commit");
    rustix::process::umask(old);
    let q = dir.join("quarantine").join(hexid(1));
    assert_eq!(d, Decision::Accepted { path: q.clone() });
    let spec = sample();
    for (p, c, x) in &spec.files {
        let fp = q.join("files").join(p);
        assert_eq!(&fs::read(&fp).expect("read"), c, "{p}");
        assert_eq!(mode(&fp), if *x { 0o755 } else { 0o644 }, "{p}");
    }
    for dname in ["empty", "bin", "deep", "deep/a", "deep/a/b"] {
        assert_eq!(mode(&q.join("files").join(dname)), 0o755, "{dname}");
    }
    assert_eq!(mode(&dir.join("staging")), 0o700);
    let receipt: Receipt =
        serde_json::from_slice(&fs::read(q.join("receipt.json")).expect("receipt")).expect("parse");
    assert_eq!(receipt.bundle_id, hexid(1));
    assert_eq!(receipt.channel, "nightly");
    assert_eq!(receipt.sequence, 1);
    assert_eq!(receipt.signer.name, "officer-a");
    assert_eq!(receipt.signer.key_id, "0707070707070707");
    assert_eq!(receipt.created_rfc3339, "2026-11-27T05:24:35Z");
    assert_eq!(receipt.bundle_bytes, 12_345);
    assert_eq!(receipt.transport, tf());
    assert_eq!(receipt.entries.len(), 6);
    let tool = receipt
        .entries
        .iter()
        .find(|e| e.path == "bin/tool.sh")
        .expect("entry");
    assert!(tool.executable);
    assert_eq!(
        tool.blake3,
        blake3::hash(b"#!/bin/sh\necho hi\n").to_hex().to_string()
    );
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "accepted");
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev"], records::GENESIS);
    assert_eq!(store.high_water_mark("nightly").expect("mark"), Some(1));
    assert!(names(&dir.join("staging/extract")).is_empty());
    verify_ok(&dir);
    store.create_object([5; 16], 1000).expect("obj");
    store.save_progress([5; 16], b"pp").expect("p");
    let st = inspect::status(&dir).expect("status");
    assert_eq!(st.quarantine_entries, 1);
    assert_eq!(st.rejected_records, 0);
    assert_eq!(st.staging_bytes, 1000);
    assert_eq!(st.staging_objects[0].progress_bytes, Some(2));
    assert_eq!(st.audit_records, 1);
    assert!(st.audit_chain_ok);
    assert_eq!(st.channels[0].channel, "nightly");
    assert_eq!(st.channels[0].sequence, Some(1));
    assert!(st.errors.is_empty());
    // Files received from the sender never carry its owner: they belong to the receiver.
    let md = fs::metadata(q.join("files/readme.txt")).expect("stat");
    assert_eq!(md.uid(), rustix::process::getuid().as_raw());
}

#[test]
fn duplicate_keeps_one_copy_and_is_audited() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 2, "c", 1, true).expect("first");
    assert!(store.is_accepted(&BundleId([2; 32])));
    let d = commit(&mut store, 2, "c", 1, true).expect("second");
    assert!(matches!(d, Decision::Duplicate { .. }), "{d:?}");
    assert_eq!(names(&dir.join("quarantine")), vec![hexid(2)]);
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["decision"], "duplicate");
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(names(&dir.join("rejected")).is_empty());
    verify_ok(&dir);
    // Still a duplicate after a restart (from the audit log, even if released from quarantine).
    drop(store);
    fs::remove_dir_all(dir.join("quarantine").join(hexid(2))).expect("release");
    let mut store = Store::open(&dir, cfg()).expect("reopen");
    assert!(matches!(
        commit(&mut store, 2, "c", 1, true).expect("third"),
        Decision::Duplicate { .. }
    ));
    assert!(names(&dir.join("quarantine")).is_empty());
}

#[test]
fn rollback_rejected_only_when_required() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 3, "c", 5, true).expect("seq 5");
    let d = commit(&mut store, 4, "c", 5, true).expect("decide");
    assert!(
        matches!(
            d,
            Decision::Rejected {
                reason: RejectReason::Rollback,
                ..
            }
        ),
        "{d:?}"
    );
    let d = commit(&mut store, 5, "c", 2, true).expect("decide");
    assert!(
        matches!(
            d,
            Decision::Rejected {
                reason: RejectReason::Rollback,
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(names(&dir.join("quarantine")), vec![hexid(3)]);
    let rejected = names(&dir.join("rejected"));
    assert_eq!(rejected.len(), 2);
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("rejected").join(&rejected[0])).expect("read"))
            .expect("json");
    assert_eq!(rec["reason"], "rollback");
    assert_eq!(rec["channel"], "c");
    assert!(
        audit_lines(&dir)
            .iter()
            .filter(|l| l["decision"] == "rejected")
            .count()
            == 2
    );
    // Without the policy flag an older sequence is accepted; the mark never goes down.
    let d = commit(&mut store, 6, "c", 2, false).expect("decide");
    assert!(matches!(d, Decision::Accepted { .. }));
    assert_eq!(store.high_water_mark("c").expect("mark"), Some(5));
    let d = commit(&mut store, 7, "c", 6, true).expect("decide");
    assert!(matches!(d, Decision::Accepted { .. }));
    assert_eq!(store.high_water_mark("c").expect("mark"), Some(6));
    assert!(names(&dir.join("staging/extract")).is_empty());
    verify_ok(&dir);
}

#[test]
fn corrupt_high_water_mark_fails_closed() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 8, "chan", 4, true).expect("seq 4");
    commit(&mut store, 9, "other", 1, true).expect("other channel");
    let mark = dir
        .join("state/channels")
        .join(records::channel_file_name("chan"));
    fs::write(&mark, b"{\"channel\":\"chan\",\"sequ").expect("garble");
    let err = commit(&mut store, 10, "chan", 5, true).expect_err("must refuse");
    assert!(matches!(err, StoreError::StateCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("refusing to accept"), "{err}");
    assert_eq!(err.reject_reason(), RejectReason::StorageError);
    assert!(!dir.join("quarantine").join(hexid(10)).exists());
    assert!(names(&dir.join("staging/extract")).is_empty());
    // Other channels keep working.
    assert!(matches!(
        commit(&mut store, 11, "other", 2, true).expect("ok"),
        Decision::Accepted { .. }
    ));
    // A restart does not "repair" it to 0 either.
    drop(store);
    let mut store = Store::open(&dir, cfg()).expect("reopen");
    assert_eq!(
        store.reconcile_report().corrupt_marks,
        vec!["chan".to_owned()]
    );
    assert!(matches!(
        commit(&mut store, 10, "chan", 5, true),
        Err(StoreError::StateCorrupt { .. })
    ));
    assert_eq!(
        fs::read(&mark).expect("still there"),
        b"{\"channel\":\"chan\",\"sequ"
    );
    // A mark naming the wrong channel is corrupt too.
    fs::write(
        &mark,
        br#"{"channel":"x","sequence":0,"bundle_id":"","updated_unix":0}"#,
    )
    .expect("w");
    assert!(matches!(
        commit(&mut store, 10, "chan", 5, true),
        Err(StoreError::StateCorrupt { .. })
    ));
    // Operator removes the garbled file: it is rebuilt from the audit log, never reset to 0.
    fs::remove_file(&mark).expect("rm");
    assert_eq!(store.high_water_mark("chan").expect("rebuilt"), Some(4));
    let d = commit(&mut store, 12, "chan", 3, true).expect("decide");
    assert!(
        matches!(
            d,
            Decision::Rejected {
                reason: RejectReason::Rollback,
                ..
            }
        ),
        "{d:?}"
    );
    assert!(matches!(
        commit(&mut store, 10, "chan", 5, true).expect("ok"),
        Decision::Accepted { .. }
    ));
    verify_ok(&dir);
}

#[test]
fn planted_symlink_at_quarantine_id_is_not_followed() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("keep"), b"untouched").expect("w");
    let mut store = Store::open(&dir, cfg()).expect("open");
    symlink(&outside, dir.join("quarantine").join(hexid(20))).expect("plant");
    let err = commit(&mut store, 20, "c", 1, true).expect_err("must refuse");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("not replacing"), "{err}");
    assert_eq!(names(&outside), vec!["keep".to_owned()]);
    assert_eq!(fs::read(outside.join("keep")).expect("r"), b"untouched");
    assert!(
        fs::symlink_metadata(dir.join("quarantine").join(hexid(20)))
            .expect("l")
            .file_type()
            .is_symlink()
    );
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(audit_lines(&dir).is_empty());
    // A dangling symlink with the next bundle's name: same.
    symlink(
        t.path().join("nowhere"),
        dir.join("quarantine").join(hexid(21)),
    )
    .expect("plant");
    assert!(commit(&mut store, 21, "c", 2, true).is_err());
    assert!(!t.path().join("nowhere").exists());
}

#[test]
fn planted_symlink_inside_extraction_is_not_followed() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("target"), b"untouched").expect("w");
    let store = Store::open(&dir, cfg()).expect("open");
    let mut ext = store.stage_extract().expect("stage");
    let files = ext.path().join("files");
    symlink(outside.join("target"), files.join("x")).expect("plant file link");
    symlink(&outside, files.join("d")).expect("plant dir link");
    let x = Entry {
        kind: EntryKind::File,
        path: "x".into(),
        size: 3,
        blake3: [0; 32],
        executable: false,
    };
    let err = ext.begin_file(&x).expect_err("must refuse");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(ext.storage_failure().is_some());
    let y = Entry {
        kind: EntryKind::File,
        path: "d/y".into(),
        size: 3,
        blake3: [0; 32],
        executable: false,
    };
    let err = ext.begin_file(&y).expect_err("must refuse");
    assert!(err.to_string().contains("symlink"), "{err}");
    let dd = Entry {
        kind: EntryKind::Dir,
        path: "d".into(),
        size: 0,
        blake3: [0; 32],
        executable: false,
    };
    assert!(ext.create_dir(&dd).is_err());
    assert_eq!(fs::read(outside.join("target")).expect("r"), b"untouched");
    assert_eq!(names(&outside), vec!["target".to_owned()]);
    // Unsafe components are refused even if a caller skipped the path policy.
    for bad in ["../escape", "a/../../b", "/abs", "a//b", ".", "a/./b"] {
        let e = Entry {
            kind: EntryKind::File,
            path: bad.into(),
            size: 0,
            blake3: [0; 32],
            executable: false,
        };
        assert!(ext.begin_file(&e).is_err(), "{bad}");
    }
    let p = ext.path().to_path_buf();
    drop(ext);
    assert!(!p.exists(), "a dropped extraction is deleted");
    assert_eq!(names(&outside), vec!["target".to_owned()]);
}

#[test]
fn symlinked_quarantine_root_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    drop(Store::open(&dir, cfg()).expect("create"));
    fs::remove_dir(dir.join("quarantine")).expect("rm");
    symlink(&outside, dir.join("quarantine")).expect("plant");
    let err = Store::open(&dir, cfg()).err().expect("must refuse");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(names(&outside).is_empty());
    // Same for staging.
    fs::remove_file(dir.join("quarantine")).expect("rm");
    fs::remove_dir_all(dir.join("staging")).expect("rm");
    symlink(&outside, dir.join("staging")).expect("plant");
    let err = Store::open(&dir, cfg()).err().expect("must refuse");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(names(&outside).is_empty());
    assert_eq!(mode(&outside), 0o755);
}

#[test]
fn second_receiver_cannot_open_the_same_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let _a = Store::open(t.path(), cfg()).expect("open");
    let err = Store::open(t.path(), cfg()).err().expect("locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn crash_after_files_synced_before_rename_leaves_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    let spec = sample();
    let mut ext = store.stage_extract().expect("stage");
    feed(&mut ext, &spec).expect("feed");
    fs::write(ext.path().join("receipt.json"), b"{}").expect("receipt");
    ext.finished = true; // simulate the process dying here: nothing cleans it up
    drop(ext);
    store
        .create_object([1; 16], 1000)
        .expect("part without progress");
    store.create_object([2; 16], 1000).expect("part");
    store.save_progress([2; 16], b"progress").expect("progress");
    fs::write(dir.join("staging/objects/.x.tmp-1"), b"debris").expect("debris");
    drop(store);
    let store = Store::open(&dir, cfg()).expect("reopen");
    let r = store.reconcile_report();
    assert_eq!(r.removed_extractions.len(), 1);
    assert!(r.removed_staging_files.contains(&part_name(&[1; 16])));
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(names(&dir.join("quarantine")).is_empty());
    assert_eq!(
        names(&dir.join("staging/objects")),
        vec![part_name(&[2; 16]), progress_name(&[2; 16])]
    );
    assert_eq!(
        store.load_all_progress().expect("load"),
        vec![([2; 16], b"progress".to_vec())]
    );
    verify_ok(&dir);
}

#[test]
fn crash_after_rename_before_audit_is_recorded_on_restart() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 30, "c", 1, true).expect("first");
    commit(&mut store, 31, "c", 2, true).expect("second");
    drop(store);
    // Undo the last two steps of the second commit: its audit line and its mark.
    let audit = fs::read_to_string(dir.join("audit.jsonl")).expect("r");
    let first_line = audit.lines().next().expect("line");
    fs::write(dir.join("audit.jsonl"), format!("{first_line}\n")).expect("w");
    let mark = dir
        .join("state/channels")
        .join(records::channel_file_name("c"));
    let m = ChannelMark {
        channel: "c".into(),
        sequence: 1,
        bundle_id: hexid(30),
        updated_unix: 1,
    };
    fs::write(&mark, serde_json::to_vec(&m).expect("json")).expect("w");
    assert!(!inspect::verify_store(&dir).expect("v").problems.is_empty());
    let store = Store::open(&dir, cfg()).expect("reopen");
    let r = store.reconcile_report().clone();
    assert_eq!(r.audit_appended, vec![hexid(31)]);
    assert_eq!(r.raised_marks, vec![("c".to_owned(), Some(1), 2)]);
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["reconciled"], true);
    assert_eq!(lines[1]["bundle_id"], hexid(31));
    assert_eq!(store.high_water_mark("c").expect("m"), Some(2));
    verify_ok(&dir);
    // Not duplicated on a further restart, and the bundle is a duplicate, not a new delivery.
    drop(store);
    let mut store = Store::open(&dir, cfg()).expect("reopen again");
    assert!(store.reconcile_report().audit_appended.is_empty());
    assert!(matches!(
        commit(&mut store, 31, "c", 2, true).expect("dup"),
        Decision::Duplicate { .. }
    ));
}

#[test]
fn crash_after_audit_before_mark_raises_mark_on_restart() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 40, "c", 7, true).expect("commit");
    drop(store);
    let mark = dir
        .join("state/channels")
        .join(records::channel_file_name("c"));
    let m = ChannelMark {
        channel: "c".into(),
        sequence: 3,
        bundle_id: String::new(),
        updated_unix: 1,
    };
    fs::write(&mark, serde_json::to_vec(&m).expect("json")).expect("w");
    let mut store = Store::open(&dir, cfg()).expect("reopen");
    assert_eq!(
        store.reconcile_report().raised_marks,
        vec![("c".to_owned(), Some(3), 7)]
    );
    assert_eq!(store.high_water_mark("c").expect("m"), Some(7));
    let d = commit(&mut store, 41, "c", 7, true).expect("decide");
    assert!(matches!(
        d,
        Decision::Rejected {
            reason: RejectReason::Rollback,
            ..
        }
    ));
    // Mark file deleted entirely: rebuilt from the audit log on open, not reset to 0.
    drop(store);
    fs::remove_file(&mark).expect("rm");
    let store = Store::open(&dir, cfg()).expect("reopen");
    assert_eq!(
        store.reconcile_report().raised_marks,
        vec![("c".to_owned(), None, 7)]
    );
    assert_eq!(store.high_water_mark("c").expect("m"), Some(7));
    verify_ok(&dir);
}

#[test]
fn interrupted_audit_append_and_invalid_unrecorded_entry_are_repaired() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 50, "c", 1, true).expect("commit");
    commit(&mut store, 51, "c", 2, true).expect("commit");
    drop(store);
    // Drop 51's audit line, damage one of its files, and leave a partial line at the end.
    let audit = fs::read_to_string(dir.join("audit.jsonl")).expect("r");
    let first = audit.lines().next().expect("line");
    fs::write(
        dir.join("audit.jsonl"),
        format!("{first}\n{{\"seq\":2,\"pre"),
    )
    .expect("w");
    fs::write(
        dir.join("quarantine")
            .join(hexid(51))
            .join("files/readme.txt"),
        b"tampered",
    )
    .expect("w");
    let store = Store::open(&dir, cfg()).expect("reopen");
    let r = store.reconcile_report();
    assert_eq!(r.removed_invalid_entries, vec![hexid(51)]);
    assert!(r.audit_appended.is_empty());
    assert_eq!(names(&dir.join("quarantine")), vec![hexid(50)]);
    assert_eq!(names(&dir.join("rejected")).len(), 1);
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["decision"], "rejected");
    assert!(names(&dir.join("staging/extract")).is_empty());
    verify_ok(&dir);
}

#[test]
fn object_staging_quota_progress_and_removal() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(
        &dir,
        StoreConfig {
            staging_quota_bytes: 10_000,
        },
    )
    .expect("open");
    let o = store.create_object([9; 16], 6000).expect("create");
    assert!(!o.resumed);
    let err = store.create_object([8; 16], 5000).expect_err("quota");
    assert!(matches!(err, StoreError::Quota { .. }), "{err}");
    assert!(store.create_object([9; 16], 6000).expect("again").resumed);
    assert!(matches!(
        store.create_object([9; 16], 7),
        Err(StoreError::Conflict { .. })
    ));
    store.write_at([9; 16], 4000, b"tail").expect("write");
    store.write_at([9; 16], 0, b"head").expect("write");
    assert!(matches!(
        store.write_at([9; 16], 5999, b"xx"),
        Err(StoreError::Misuse { .. })
    ));
    store.save_progress([9; 16], b"p1").expect("p1");
    store.save_progress([9; 16], b"p2").expect("p2");
    drop(store);
    let mut store = Store::open(
        &dir,
        StoreConfig {
            staging_quota_bytes: 10_000,
        },
    )
    .expect("reopen");
    assert_eq!(
        store.load_all_progress().expect("load"),
        vec![([9; 16], b"p2".to_vec())]
    );
    assert_eq!(store.staging_usage(), (6000, 10_000));
    let mut buf = Vec::new();
    io::Read::read_to_end(
        &mut store.open_object_reader([9; 16]).expect("reader"),
        &mut buf,
    )
    .expect("read");
    assert_eq!(&buf[..4], b"head");
    assert_eq!(&buf[4000..4004], b"tail");
    assert!(store.create_object([9; 16], 6000).expect("resume").resumed);
    store.remove_object([9; 16]).expect("remove");
    assert!(names(&dir.join("staging/objects")).is_empty());
    store.create_object([8; 16], 5000).expect("fits now");
}

#[test]
fn reject_and_incomplete_are_recorded() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    store.create_object([3; 16], 100).expect("create");
    store.save_progress([3; 16], b"p").expect("p");
    store
        .record_incomplete([3; 16], "block 2 short of 4 symbols", tf())
        .expect("incomplete");
    assert_eq!(
        names(&dir.join("staging/objects")).len(),
        2,
        "incomplete keeps the partial object"
    );
    let subject = RejectSubject {
        object_id: Some([3; 16]),
        bundle_id: Some(BundleId([3; 32])),
        channel: Some("c".into()),
        sequence: Some(9),
    };
    let path = store
        .reject(
            &subject,
            RejectReason::BadSignature,
            "signature does not verify",
            Some(tf()),
        )
        .expect("reject");
    assert!(path.starts_with(dir.join("rejected")));
    let rec: RejectedRecord = serde_json::from_slice(&fs::read(&path).expect("r")).expect("json");
    assert_eq!(rec.reason, "bad_signature");
    assert_eq!(rec.bundle_id, Some(hexid(3)));
    assert_eq!(rec.sequence, Some(9));
    assert!(
        names(&dir.join("staging/objects")).is_empty(),
        "reject removes staging"
    );
    let lines = audit_lines(&dir);
    assert_eq!(lines[0]["decision"], "incomplete");
    assert_eq!(lines[0]["reason"], "insufficient_symbols");
    assert_eq!(lines[1]["decision"], "rejected");
    assert_eq!(
        lines[1]["prev"],
        blake3::hash(
            fs::read_to_string(dir.join("audit.jsonl"))
                .expect("r")
                .lines()
                .next()
                .expect("l")
                .as_bytes()
        )
        .to_hex()
        .to_string()
    );
    // Two rejections in the same second get distinct records.
    store
        .reject(&subject, RejectReason::BadSignature, "again", None)
        .expect("reject");
    store
        .reject(
            &RejectSubject::default(),
            RejectReason::Malformed,
            "not a bundle",
            None,
        )
        .expect("reject");
    assert_eq!(names(&dir.join("rejected")).len(), 3);
    verify_ok(&dir);
}

#[test]
fn audit_verify_detects_tampering() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    for (i, id) in [60u8, 61, 62].iter().enumerate() {
        commit(&mut store, *id, "c", i as u64 + 1, true).expect("commit");
    }
    drop(store);
    verify_ok(&dir);
    let problems = |dir: &Path| inspect::verify_store(dir).expect("v").problems;
    // 1. A quarantined file edited.
    let f = dir
        .join("quarantine")
        .join(hexid(60))
        .join("files/readme.txt");
    let orig = fs::read(&f).expect("r");
    fs::write(&f, b"hello quarantinE\n").expect("w");
    let p = problems(&dir);
    assert!(
        p.iter()
            .any(|p| p.contains("readme.txt") && p.contains("blake3")),
        "{p:#?}"
    );
    fs::write(&f, &orig).expect("restore");
    // Extra file, symlink, and mode change.
    let files = dir.join("quarantine").join(hexid(60)).join("files");
    fs::write(files.join("extra"), b"x").expect("w");
    symlink("/etc/passwd", files.join("link")).expect("l");
    fs::set_permissions(files.join("zero"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    let p = problems(&dir);
    assert!(
        p.iter()
            .any(|p| p.contains("extra") && p.contains("not in the receipt")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("link") && p.contains("symlink")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|p| p.contains("zero") && p.contains("mode")),
        "{p:#?}"
    );
    fs::remove_file(files.join("extra")).expect("rm");
    fs::remove_file(files.join("link")).expect("rm");
    fs::set_permissions(files.join("zero"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::remove_file(files.join("bin/tool.sh")).expect("rm");
    assert!(
        problems(&dir)
            .iter()
            .any(|p| p.contains("bin/tool.sh: missing"))
    );
    fs::write(files.join("bin/tool.sh"), b"#!/bin/sh\necho hi\n").expect("w");
    fs::set_permissions(files.join("bin/tool.sh"), fs::Permissions::from_mode(0o755))
        .expect("chmod");
    verify_ok(&dir);
    // 2. An audit line deleted.
    let audit = fs::read_to_string(dir.join("audit.jsonl")).expect("r");
    let lines: Vec<&str> = audit.lines().collect();
    fs::write(
        dir.join("audit.jsonl"),
        format!("{}\n{}\n", lines[0], lines[2]),
    )
    .expect("w");
    let p = problems(&dir);
    assert!(
        p.iter().any(|p| p.contains("seq 3 but expected 2")),
        "{p:#?}"
    );
    assert!(p.iter().any(|p| p.contains("chain broken")), "{p:#?}");
    assert!(
        p.iter()
            .any(|p| p.contains(&hexid(61)) && p.contains("no accepted record")),
        "{p:#?}"
    );
    fs::write(dir.join("audit.jsonl"), &audit).expect("restore");
    verify_ok(&dir);
    // 3. A receipt changed (even consistently with a tampered file, the audit hash catches it).
    let rp = dir.join("quarantine").join(hexid(62)).join("receipt.json");
    let receipt = fs::read_to_string(&rp).expect("r");
    fs::write(&rp, receipt.replace("officer-a", "officer-b")).expect("w");
    let p = problems(&dir);
    assert!(p.iter().any(|p| p.contains("receipt changed")), "{p:#?}");
}

/// Mount guard for the storage-fault tests.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_tmpfs(path: &Path, size: &str) -> Option<Tmpfs> {
    if !rustix::process::geteuid().is_root() {
        let why = "storage-fault test needs root to mount a tmpfs";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why} (CI=true: not skipping)"
        );
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let ok = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mount -t tmpfs failed under CI=true"
        );
        eprintln!("SKIPPED: mount -t tmpfs failed");
        return None;
    }
    Some(Tmpfs(path.to_path_buf()))
}

fn big_spec(bytes: usize) -> Spec {
    Spec {
        dirs: vec![],
        files: vec![("big.bin", vec![0xA5; bytes], false)],
    }
}

#[test]
fn disk_full_fails_cleanly_and_recovers() {
    let t = tempfile::tempdir().expect("tempdir");
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let Some(_guard) = mount_tmpfs(&mnt, "2m") else {
        return;
    };
    let dir = mnt.join("store");
    let mut store = Store::open(&dir, cfg()).expect("open");
    // Staging: reserving more than the filesystem holds fails with ENOSPC, nothing left.
    let err = store.create_object([1; 16], 3 << 20).expect_err("too big");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(err.reject_reason(), RejectReason::StorageError);
    assert!(names(&dir.join("staging/objects")).is_empty());
    store.create_object([2; 16], 1200 << 10).expect("fits");
    let err = store.create_object([3; 16], 1200 << 10).expect_err("full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(
        names(&dir.join("staging/objects")),
        vec![part_name(&[2; 16])]
    );
    // Commit: the extraction hits ENOSPC mid-file; the commit reports it and cleans up.
    let spec = big_spec(1 << 20);
    let mut ext = store.stage_extract().expect("stage");
    assert!(feed(&mut ext, &spec).is_err());
    assert!(ext.storage_failure().is_some());
    let err = store
        .commit_core(ext, &info(70, "c", 1, &spec), true, tf())
        .expect_err("full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(names(&dir.join("quarantine")).is_empty());
    // The failure can be recorded (small records still fit) and the store keeps working.
    store
        .reject(
            &RejectSubject {
                bundle_id: Some(BundleId([70; 32])),
                ..RejectSubject::default()
            },
            err.reject_reason(),
            &err.to_string(),
            Some(tf()),
        )
        .expect("record");
    // Free space; the resend commits.
    store.remove_object([2; 16]).expect("free");
    let mut ext = store.stage_extract().expect("stage");
    feed(&mut ext, &spec).expect("fits now");
    let d = store
        .commit_core(ext, &info(70, "c", 1, &spec), true, tf())
        .expect("commit");
    assert!(matches!(d, Decision::Accepted { .. }));
    assert_eq!(
        fs::read(dir.join("quarantine").join(hexid(70)).join("files/big.bin"))
            .expect("r")
            .len(),
        1 << 20
    );
    verify_ok(&dir);
    drop(store);
}

#[test]
fn read_only_store_gives_a_clear_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let Some(_guard) = mount_tmpfs(&mnt, "4m") else {
        return;
    };
    let dir = mnt.join("store");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 80, "c", 1, true).expect("commit while writable");
    drop(store);
    let ro = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .expect("mount");
    assert!(ro.success());
    let err = Store::open(&dir, cfg()).err().expect("read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(err.exit_code(), sluice_common::exit::STORAGE);
    // Read-only inspection still works.
    verify_ok(&dir);
    let _ = std::process::Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&mnt)
        .status();
}

const STEPS: [Step; 5] = [
    Step::DirsSynced,
    Step::ReceiptWritten,
    Step::Renamed,
    Step::QuarantineSynced,
    Step::Audited,
];

/// Kill the process at every step of the commit protocol; a restart must always land in one of
/// the two consistent states (fully accepted or not there at all), never in between (T66, T71).
#[test]
fn crash_at_every_commit_step_reconciles_to_a_consistent_state() {
    for step in STEPS {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("s");
        let mut store = Store::open(&dir, cfg()).expect("open");
        commit(&mut store, 90, "c", 1, true).expect("first");
        store
            .create_object(BundleId([91; 32]).object_id(), 100)
            .expect("obj");
        store
            .save_progress(BundleId([91; 32]).object_id(), b"p")
            .expect("p");
        store.fault = Some(Fault::Crash(step));
        let err = commit(&mut store, 91, "c", 2, true).expect_err("crash");
        assert!(
            err.to_string().contains("simulated crash"),
            "{step:?}: {err}"
        );
        drop(store);
        let mut store = Store::open(&dir, cfg()).expect("reopen");
        let after_rename = !matches!(step, Step::DirsSynced | Step::ReceiptWritten);
        let q = dir.join("quarantine").join(hexid(91));
        assert_eq!(q.exists(), after_rename, "{step:?}");
        assert!(names(&dir.join("staging/extract")).is_empty(), "{step:?}");
        assert_eq!(
            store.is_accepted(&BundleId([91; 32])),
            after_rename,
            "{step:?}"
        );
        let accepted_records = audit_lines(&dir)
            .iter()
            .filter(|l| l["decision"] == "accepted" && l["bundle_id"] == hexid(91))
            .count();
        assert_eq!(accepted_records, usize::from(after_rename), "{step:?}");
        assert_eq!(
            store.high_water_mark("c").expect("mark"),
            Some(if after_rename { 2 } else { 1 }),
            "{step:?}"
        );
        verify_ok(&dir);
        // The resend then behaves: a duplicate if it made it, accepted if it did not.
        let d = commit(&mut store, 91, "c", 2, true).expect("resend");
        if after_rename {
            assert!(matches!(d, Decision::Duplicate { .. }), "{step:?}: {d:?}");
        } else {
            assert!(matches!(d, Decision::Accepted { .. }), "{step:?}: {d:?}");
        }
        verify_ok(&dir);
    }
}

/// An I/O error at every step: before the audit record the bundle is NOT accepted, nothing is in
/// quarantine, staging is clean, and the store keeps working; a failed mark update after the
/// audit record leaves the bundle accepted and the mark is rebuilt on restart (T63, T68).
#[test]
fn eio_at_every_commit_step_is_never_trusted() {
    for step in STEPS {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("s");
        let mut store = Store::open(&dir, cfg()).expect("open");
        store.fault = Some(Fault::Eio(step));
        let r = commit(&mut store, 92, "c", 5, true);
        store.fault = None;
        assert!(names(&dir.join("staging/extract")).is_empty(), "{step:?}");
        if step == Step::Audited {
            assert!(
                matches!(r, Ok(Decision::Accepted { .. })),
                "{step:?}: {r:?}"
            );
            let mark = dir
                .join("state/channels")
                .join(records::channel_file_name("c"));
            assert!(!mark.exists(), "mark write was failed by the fault");
            drop(store);
            let store = Store::open(&dir, cfg()).expect("reopen");
            assert_eq!(
                store.reconcile_report().raised_marks,
                vec![("c".to_owned(), None, 5)]
            );
            verify_ok(&dir);
            continue;
        }
        let err = r.expect_err("must fail");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{step:?}: {err}");
        assert!(err.to_string().contains("not retried"), "{err}");
        assert!(names(&dir.join("quarantine")).is_empty(), "{step:?}");
        assert!(!store.is_accepted(&BundleId([92; 32])), "{step:?}");
        assert!(audit_lines(&dir).is_empty(), "{step:?}");
        verify_ok(&dir);
        assert!(matches!(
            commit(&mut store, 92, "c", 5, true).expect("retry"),
            Decision::Accepted { .. }
        ));
        verify_ok(&dir);
    }
}

/// fsync of the audit log fails after the record was written: not reported accepted, the store
/// refuses further decisions (degraded, no retry-then-trust), and a restart reconciles.
#[test]
fn audit_fsync_failure_degrades_until_restart() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    store.audit.fail_next_sync = true;
    let err = commit(&mut store, 93, "c", 1, true).expect_err("fsync failed");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let err = commit(&mut store, 94, "c", 2, true).expect_err("degraded");
    assert!(err.to_string().contains("restart"), "{err}");
    assert!(names(&dir.join("staging/extract")).is_empty());
    drop(store);
    let store = Store::open(&dir, cfg()).expect("reopen");
    assert!(store.is_accepted(&BundleId([93; 32])));
    assert!(!store.is_accepted(&BundleId([94; 32])));
    assert_eq!(store.high_water_mark("c").expect("m"), Some(1));
    verify_ok(&dir);
}

#[test]
fn record_duplicate_without_extracting() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    commit(&mut store, 95, "c", 1, true).expect("commit");
    let id = BundleId([95; 32]);
    store.create_object(id.object_id(), 10).expect("obj");
    assert!(store.is_accepted(&id));
    let d = store.record_duplicate(&id, None, tf()).expect("dup");
    assert_eq!(
        d,
        Decision::Duplicate {
            existing: dir.join("quarantine").join(hexid(95))
        }
    );
    assert!(names(&dir.join("staging/objects")).is_empty());
    assert_eq!(audit_lines(&dir)[1]["decision"], "duplicate");
    verify_ok(&dir);
}

/// Inode exhaustion (T64): like a full disk, a clean per-bundle failure and recovery.
#[test]
fn inode_exhaustion_fails_cleanly_and_recovers() {
    let t = tempfile::tempdir().expect("tempdir");
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    let Some(_guard) = mount_tmpfs(&mnt, "8m,nr_inodes=40") else {
        return;
    };
    let dir = mnt.join("store");
    let mut store = Store::open(&dir, cfg()).expect("open");
    let many = Spec {
        dirs: vec![],
        files: (0..60)
            .map(|i| {
                (
                    &*Box::leak(format!("f{i}").into_boxed_str()),
                    vec![1u8],
                    false,
                )
            })
            .collect(),
    };
    let mut ext = store.stage_extract().expect("stage");
    assert!(feed(&mut ext, &many).is_err());
    let err = store
        .commit_core(ext, &info(96, "c", 1, &many), true, tf())
        .expect_err("no inodes");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(names(&dir.join("quarantine")).is_empty());
    let small = big_spec(10);
    let mut ext = store.stage_extract().expect("stage");
    feed(&mut ext, &small).expect("fits");
    let d = store
        .commit_core(ext, &info(97, "c", 1, &small), true, tf())
        .expect("commit");
    assert!(matches!(d, Decision::Accepted { .. }));
    verify_ok(&dir);
}

#[test]
fn extraction_must_match_the_verified_manifest() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let mut store = Store::open(&dir, cfg()).expect("open");
    let spec = sample();
    let mut other = info(98, "c", 1, &big_spec(5));
    let mut ext = store.stage_extract().expect("stage");
    feed(&mut ext, &spec).expect("feed");
    let err = store
        .commit_core(ext, &other, true, tf())
        .expect_err("mismatch");
    assert!(matches!(err, StoreError::Misuse { .. }), "{err}");
    // Same paths but one size differs: refused too. Half-fed extraction: refused.
    other = info(98, "c", 1, &spec);
    if let Some(e) = other.entries.iter_mut().find(|e| e.path == "zero") {
        e.size = 1;
    }
    let mut ext = store.stage_extract().expect("stage");
    feed(&mut ext, &spec).expect("feed");
    assert!(store.commit_core(ext, &other, true, tf()).is_err());
    let mut ext = store.stage_extract().expect("stage");
    let first = entries(&spec).remove(0);
    ext.create_dir(&first).expect("dir");
    assert!(
        store
            .commit_core(ext, &info(98, "c", 1, &spec), true, tf())
            .is_err()
    );
    assert!(names(&dir.join("quarantine")).is_empty());
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(audit_lines(&dir).is_empty());
}

/// Dropping a written file from the page cache starts its write-out and loses nothing; a pipe
/// is refused by the kernel (ESPIPE), so the advice really reaches `posix_fadvise`.
#[test]
fn drop_behind_keeps_the_bytes() {
    use std::io::{Read, Seek, Write};
    let mut f = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
    f.write_all(&data).unwrap();
    fsutil::drop_behind(&f, data.len() as u64).unwrap();
    fsutil::drop_behind(&f, 0).unwrap();
    f.sync_all().unwrap();
    fsutil::drop_behind(&f, data.len() as u64).unwrap();
    let mut back = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut back).unwrap();
    assert!(back == data);

    let (reader, _writer) = io::pipe().unwrap();
    let reader = File::from(OwnedFd::from(reader));
    let err = fsutil::drop_behind(&reader, 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESPIPE));
}
