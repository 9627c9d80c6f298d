//! Staged objects and the quota, rejected and incomplete records, duplicates recorded without
//! extracting, audit verification, and the manifest check on commit.

use sluice_common::bundle::{BundleId, RejectReason};
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use std::fs::File;
use std::os::fd::OwnedFd;

use super::*;
use crate::store::records::RejectedRecord;

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
    let (_t, dir, mut store) = fresh_store();
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
    assert_eq!(lines[0]["outcome"], "incomplete");
    assert_eq!(lines[0]["reason"], "insufficient_symbols");
    assert_eq!(lines[1]["outcome"], "rejected");
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
    let (_t, dir, mut store) = fresh_store();
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

#[test]
fn record_duplicate_without_extracting() {
    let (_t, dir, mut store) = fresh_store();
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
    assert_eq!(audit_lines(&dir)[1]["outcome"], "duplicate");
    verify_ok(&dir);
}

/// Inode exhaustion: like a full disk, a clean per-bundle failure and recovery.

#[test]
fn extraction_must_match_the_verified_manifest() {
    let (_t, dir, mut store) = fresh_store();
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
    if let Some(e) = other.header.entries.iter_mut().find(|e| e.path == "zero") {
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
