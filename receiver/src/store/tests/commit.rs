//! Commit protocol: exact files, modes and receipts; duplicates; rollback and corrupt marks;
//! planted symlinks; one receiver per store.

use sluice_common::bundle::{BundleId, Entry, EntryKind, RejectReason};
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use super::*;
use rustix::fs::Mode;

use crate::store::records::Receipt;

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
    assert_eq!(receipt.created, "2026-11-27T05:24:35.000Z");
    assert_eq!(receipt.created_unix_ms, 1_795_757_075_000);
    assert_eq!(receipt.schema, "sluice.receipt/1");
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
        tool.blake3.as_deref(),
        Some(blake3::hash(b"#!/bin/sh\necho hi\n").to_hex().as_str())
    );
    // A directory has no bytes to hash: null, not 64 zeros (issue #17 item 6).
    assert!(
        receipt
            .entries
            .iter()
            .filter(|e| e.kind == "dir")
            .all(|e| e.blake3.is_none())
    );
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["outcome"], "accepted");
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
    let (_t, dir, mut store) = fresh_store();
    commit(&mut store, 2, "c", 1, true).expect("first");
    assert!(store.is_accepted(&BundleId([2; 32])));
    let d = commit(&mut store, 2, "c", 1, true).expect("second");
    assert!(matches!(d, Decision::Duplicate { .. }), "{d:?}");
    assert_eq!(names(&dir.join("quarantine")), vec![hexid(2)]);
    let lines = audit_lines(&dir);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["outcome"], "duplicate");
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
    let (_t, dir, mut store) = fresh_store();
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
            .filter(|l| l["outcome"] == "rejected")
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
    let (_t, dir, mut store) = fresh_store();
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
        br#"{"schema":"sluice.channel-mark/1","channel":"x","sequence":0,"bundle_id":"","updated":"1970-01-01T00:00:00.000Z","updated_unix_ms":0}"#,
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
    let dd = Entry::dir("d");
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
