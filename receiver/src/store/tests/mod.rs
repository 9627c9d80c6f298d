//! Library-level tests of the store, one file per concern (`commit`, `crash`, `staging`,
//! `mounts`); this file holds the fixtures they share. `CommitInfo` stands in for `Verified`,
//! which only the verifier can construct.

mod commit;
mod crash;
mod mounts;
mod staging;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sluice_common::bundle::{BundleId, Entry, EntryKind, FileSink, Header, KeyId};

use super::error::ioe;
use super::*;

fn cfg() -> StoreConfig {
    StoreConfig {
        staging_quota_bytes: 64 << 20,
    }
}

/// A new store at `s/` in a fresh temporary directory, which lives as long as the returned guard.
fn fresh_store() -> (tempfile::TempDir, PathBuf, Store) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("s");
    let store = Store::open(&dir, cfg()).expect("open");
    (t, dir, store)
}

fn tf() -> TransportFigures {
    TransportFigures {
        frames: 100,
        lost_frames: 3,
        bad_frames: 1,
        repaired_blocks: 2,
        passes: 1,
        source: Source::Udp,
        object_bytes: 12_345,
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
    let mut v: Vec<Entry> = spec.dirs.iter().map(|d| Entry::dir(*d)).collect();
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
        header: Header {
            format_version: 1,
            channel: channel.to_owned(),
            sequence: seq,
            created: 1_795_757_075,
            expires: Some(1_795_757_075 + 86_400),
            note: Some("nightly".into()),
            signer: KeyId([7; 8]),
            entries: entries(spec),
        },
        signer_name: "officer-a".into(),
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
    commit_spec(store, id, channel, seq, require, &sample())
}

/// [`commit`] of `spec` instead of the [`sample`].
fn commit_spec(
    store: &mut Store,
    id: u8,
    channel: &str,
    seq: u64,
    require: bool,
    spec: &Spec,
) -> Result<Decision, StoreError> {
    let mut ext = store.stage_extract()?;
    feed(&mut ext, spec).map_err(ioe("feed"))?;
    store.commit_core(ext, &info(id, channel, seq, spec), require, tf())
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

fn big_spec(bytes: usize) -> Spec {
    Spec {
        dirs: vec![],
        files: vec![("big.bin", vec![0xA5; bytes], false)],
    }
}
