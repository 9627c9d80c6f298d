//! Crashes and I/O errors at every step of the commit, and what reconciliation makes of them
//! on the next open.

use sluice_common::bundle::{BundleId, RejectReason};
use std::fs;

use super::*;
use crate::store::records::ChannelMark;
use crate::store::staging::{part_name, progress_name};

#[test]
fn crash_after_files_synced_before_rename_leaves_nothing() {
    let (_t, dir, mut store) = fresh_store();
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

/// A closed store holding bundles `first` and `second` (sequences 1 and 2 of channel `c`), and
/// its first audit line: what the restart tests below then damage.
fn two_committed(first: u8, second: u8) -> (tempfile::TempDir, PathBuf, String) {
    let (t, dir, mut store) = fresh_store();
    commit(&mut store, first, "c", 1, true).expect("first");
    commit(&mut store, second, "c", 2, true).expect("second");
    drop(store);
    let audit = fs::read_to_string(dir.join("audit.jsonl")).expect("r");
    let first_line = audit.lines().next().expect("line").to_owned();
    (t, dir, first_line)
}

/// Overwrites channel `c`'s high-water mark with an older one (`sequence`, bundle `bundle_id`);
/// returns the mark's file.
fn write_old_mark(dir: &Path, sequence: u64, bundle_id: String) -> PathBuf {
    let mark = dir
        .join("state/channels")
        .join(records::channel_file_name("c"));
    let m = ChannelMark {
        channel: "c".into(),
        sequence,
        bundle_id,
        schema: "sluice.channel-mark/1".into(),
        updated: "1970-01-01T00:00:00.001Z".into(),
        updated_unix_ms: 1,
    };
    fs::write(&mark, serde_json::to_vec(&m).expect("json")).expect("w");
    mark
}

#[test]
fn crash_after_rename_before_audit_is_recorded_on_restart() {
    let (_t, dir, first_line) = two_committed(30, 31);
    // Undo the last two steps of the second commit: its audit line and its mark.
    fs::write(dir.join("audit.jsonl"), format!("{first_line}\n")).expect("w");
    write_old_mark(&dir, 1, hexid(30));
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
    let (_t, dir, mut store) = fresh_store();
    commit(&mut store, 40, "c", 7, true).expect("commit");
    drop(store);
    let mark = write_old_mark(&dir, 3, String::new());
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
    let (_t, dir, first) = two_committed(50, 51);
    // Drop 51's audit line, damage one of its files, and leave a partial line at the end.
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
    assert_eq!(lines[1]["outcome"], "rejected");
    assert!(names(&dir.join("staging/extract")).is_empty());
    verify_ok(&dir);
}

const STEPS: [Step; 5] = [
    Step::DirsSynced,
    Step::ReceiptWritten,
    Step::Renamed,
    Step::QuarantineSynced,
    Step::Audited,
];

/// Kill the process at every step of the commit protocol; a restart must always land in one of
/// the two consistent states (fully accepted or not there at all), never in between.
#[test]
fn crash_at_every_commit_step_reconciles_to_a_consistent_state() {
    for step in STEPS {
        let (_t, dir, mut store) = fresh_store();
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
            .filter(|l| l["outcome"] == "accepted" && l["bundle_id"] == hexid(91))
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
/// audit record leaves the bundle accepted and the mark is rebuilt on restart.
#[test]
fn eio_at_every_commit_step_is_never_trusted() {
    for step in STEPS {
        let (_t, dir, mut store) = fresh_store();
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
    let (_t, dir, mut store) = fresh_store();
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
