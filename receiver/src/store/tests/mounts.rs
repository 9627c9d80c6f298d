//! Real storage faults on small tmpfs mounts (disk full, read-only, no inodes). Need root:
//! without it they print `SKIPPED: …`, and under `CI=true` they fail instead.

use sluice_common::bundle::{BundleId, RejectReason};
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::store::staging::part_name;

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
