//! Real storage faults on small tmpfs mounts (disk full, read-only, no inodes). Need root:
//! without it they print `SKIPPED: …`, and under `CI=true` they fail instead.

use sluice_common::bundle::{BundleId, RejectReason};
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::store::staging::part_name;

/// A mounted tmpfs, unmounted (before its temporary parent goes) on drop.
struct Tmpfs {
    mnt: PathBuf,
    _parent: tempfile::TempDir,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status();
    }
}

/// A tmpfs of `size` mounted on `mnt/` in a fresh temporary directory, and a store opened at
/// `mnt/store`: `None`, the test skipped, without root.
fn tmpfs_store(size: &str) -> Option<(Tmpfs, PathBuf, Store)> {
    let t = tempfile::tempdir().expect("tempdir");
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir");
    if !mount_tmpfs(&mnt, size) {
        return None;
    }
    let tmpfs = Tmpfs { mnt, _parent: t };
    let dir = tmpfs.mnt.join("store");
    let store = Store::open(&dir, cfg()).expect("open");
    Some((tmpfs, dir, store))
}

/// Mounts a tmpfs of `size` on `path`; false (the test is skipped) when that is impossible.
fn mount_tmpfs(path: &Path, size: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        let why = "storage-fault test needs root to mount a tmpfs";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why} (CI=true: not skipping)"
        );
        eprintln!("SKIPPED: {why}");
        return false;
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
    }
    ok
}

/// Extracting `spec` (bundle `id`) fails for want of space (ENOSPC, of bytes or inodes) and its
/// commit fails cleanly: no extraction left behind, nothing in quarantine. The commit's error.
fn commit_runs_out_of_space(store: &mut Store, dir: &Path, id: u8, spec: &Spec) -> StoreError {
    let mut ext = store.stage_extract().expect("stage");
    assert!(feed(&mut ext, spec).is_err());
    assert!(ext.storage_failure().is_some());
    let err = store
        .commit_core(ext, &info(id, "c", 1, spec), true, tf())
        .expect_err("no space");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(names(&dir.join("staging/extract")).is_empty());
    assert!(names(&dir.join("quarantine")).is_empty());
    err
}

#[test]
fn disk_full_fails_cleanly_and_recovers() {
    let Some((_tmpfs, dir, mut store)) = tmpfs_store("2m") else {
        return;
    };
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
    let err = commit_runs_out_of_space(&mut store, &dir, 70, &spec);
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
    let d = commit_spec(&mut store, 70, "c", 1, true, &spec).expect("commit");
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
    let Some((tmpfs, dir, mut store)) = tmpfs_store("4m") else {
        return;
    };
    commit(&mut store, 80, "c", 1, true).expect("commit while writable");
    drop(store);
    let ro = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&tmpfs.mnt)
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
        .arg(&tmpfs.mnt)
        .status();
}

#[test]
fn inode_exhaustion_fails_cleanly_and_recovers() {
    let Some((_tmpfs, dir, mut store)) = tmpfs_store("8m,nr_inodes=40") else {
        return;
    };
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
    commit_runs_out_of_space(&mut store, &dir, 96, &many);
    let small = big_spec(10);
    let d = commit_spec(&mut store, 97, "c", 1, true, &small).expect("commit");
    assert!(matches!(d, Decision::Accepted { .. }));
    verify_ok(&dir);
}
