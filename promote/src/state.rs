//! Promotion state on disk, beside (never inside) the quarantine:
//!
//! ```text
//! DIR/promote/                      sluice-promote's own directory (the receiver never writes it)
//! DIR/promote/.lock                 flock: one `run` at a time
//! DIR/promote/<id>/state.json       where the entry is in its pipeline (replaced atomically)
//! DIR/promote/<id>/promotion.json   the receipt's addendum: every stage passed, when, who approved
//! DIR/promote/<id>/approvals/<key-id>.json   signed approvals and rejections
//! ```
//!
//! Every write is temp file + fsync + rename + fsync of the directory, so a crash leaves either
//! the old or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const PROMOTE_DIR: &str = "promote";
pub const STATE_FILE: &str = "state.json";
pub const PROMOTION_FILE: &str = "promotion.json";
pub const APPROVALS_DIR: &str = "approvals";

/// Where an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not scanned yet.
    Scan,
    /// Scanned clean; waiting for M approvals.
    Approve,
    /// Approved; publishing to the targets not yet done (or waiting to retry).
    Publish,
    /// Every target done. Terminal.
    Published,
    /// A stage failed. Terminal; `reason` says why.
    Stopped,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Approve => "approve",
            Stage::Publish => "publish",
            Stage::Published => "published",
            Stage::Stopped => "stopped",
        }
    }
    pub fn terminal(self) -> bool {
        matches!(self, Stage::Published | Stage::Stopped)
    }
}

/// One recorded transition (also one audit record; `audit_seq` is set once it is appended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When, RFC 3339 with milliseconds (docs/json.md), and the same as unix milliseconds.
    pub time: String,
    pub time_unix_ms: u64,
    /// `scan`, `approve`, `publish`.
    pub stage: String,
    /// `passed`, `failed`, `rejected`, `target_done`, `published`, `retry` (the JSON's
    /// `outcome`: the convention's one key for what became of a thing).
    #[serde(rename = "outcome")]
    pub result: String,
    pub detail: String,
    /// Publish target id (target_done / retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Reviewers whose approvals counted (approve passed) or who rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// `seq` of its record in `audit.jsonl`; `None` until appended (a crash in between is
    /// repaired by the next pass, so every transition is audited exactly once).
    pub audit_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// `sluice.promote-state/1` (docs/json.md).
    pub schema: String,
    pub bundle_id: String,
    pub channel: String,
    pub sequence: u64,
    /// blake3 of receipt.json when promotion began: every later stage re-checks it.
    pub receipt_blake3: String,
    pub stage: Stage,
    /// What the entry waits for now (human text), if anything.
    pub waiting_for: Option<String>,
    /// Why it stopped (Stopped) or why the last publish attempt failed (Publish, retrying).
    pub reason: Option<String>,
    /// Publish targets done, by id.
    pub published: Vec<String>,
    pub publish_attempts: u32,
    /// Last saved, RFC 3339 with milliseconds, and the same as unix milliseconds.
    pub updated: String,
    pub updated_unix_ms: u64,
    pub history: Vec<Transition>,
}

impl State {
    pub fn new(bundle_id: &str, channel: &str, sequence: u64, receipt_blake3: &str) -> State {
        State {
            schema: sluice_host::json::schema_id("promote-state"),
            bundle_id: bundle_id.into(),
            channel: channel.into(),
            sequence,
            receipt_blake3: receipt_blake3.into(),
            stage: Stage::Scan,
            waiting_for: None,
            reason: None,
            published: Vec::new(),
            publish_attempts: 0,
            updated: sluice_host::time::rfc3339_ms(0),
            updated_unix_ms: 0,
            history: Vec::new(),
        }
    }
}

/// The receipt's addendum (`promotion.json`): the stages this entry passed. receipt.json itself
/// is never modified, because its blake3 is bound into the audit chain by the `accepted` record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Promotion {
    /// `sluice.promotion/1` (docs/json.md).
    pub schema: String,
    pub bundle_id: String,
    pub channel: String,
    pub sequence: u64,
    pub receipt_blake3: String,
    pub stage: Stage,
    pub stages: Vec<Transition>,
}

impl From<&State> for Promotion {
    fn from(s: &State) -> Promotion {
        Promotion {
            schema: sluice_host::json::schema_id("promotion"),
            bundle_id: s.bundle_id.clone(),
            channel: s.channel.clone(),
            sequence: s.sequence,
            receipt_blake3: s.receipt_blake3.clone(),
            stage: s.stage,
            stages: s
                .history
                .iter()
                .filter(|t| t.result != "retry")
                .cloned()
                .collect(),
        }
    }
}

/// `DIR/promote`, created 0750 if missing; refuses a symlink.
pub fn promote_root(store: &Path) -> io::Result<PathBuf> {
    let root = store.join(PROMOTE_DIR);
    ensure_dir(&root, 0o750)?;
    Ok(root)
}

/// Creates `dir` (one level) with `mode` if missing; refuses a symlink or non-directory.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} is a symlink or not a directory; refusing to use it",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return ensure_dir(dir, mode),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("create {}: {e}", dir.display()),
                    ));
                }
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc_nofollow())
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| io::Error::new(e.kind(), format!("write {}/{name}: {e}", dir.display())))
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

pub fn entry_dir(store: &Path, id: &str) -> PathBuf {
    store.join(PROMOTE_DIR).join(id)
}

/// Reads `DIR/promote/<id>/state.json` (None if there is none yet).
pub fn load(store: &Path, id: &str) -> io::Result<Option<State>> {
    let p = entry_dir(store, id).join(STATE_FILE);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a valid promotion state ({e})", p.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
    }
}

/// Writes state.json and promotion.json (each atomically; state first: it is the source of
/// truth, promotion.json is derived from it and rewritten on every save).
pub fn save(store: &Path, st: &mut State) -> io::Result<()> {
    promote_root(store)?;
    let dir = entry_dir(store, &st.bundle_id);
    ensure_dir(&dir, 0o750)?;
    st.updated_unix_ms = sluice_host::time::now_unix_ms();
    st.updated = sluice_host::time::rfc3339_ms(st.updated_unix_ms);
    let bytes = serde_json::to_vec_pretty(st).map_err(io::Error::other)?;
    write_atomic(&dir, STATE_FILE, &bytes, 0o640)?;
    let promo = serde_json::to_vec_pretty(&Promotion::from(&*st)).map_err(io::Error::other)?;
    write_atomic(&dir, PROMOTION_FILE, &promo, 0o644)
}

/// Every `DIR/promote/<id>/` that holds a state.json.
pub fn list(store: &Path) -> io::Result<Vec<String>> {
    let root = store.join(PROMOTE_DIR);
    let mut ids = Vec::new();
    let rd = match fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if let Some(n) = e.file_name().to_str()
            && is_bundle_id(n)
        {
            ids.push(n.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

pub fn is_bundle_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An exclusive non-blocking flock on `DIR/promote/.lock`: one `run` per store. Held until drop.
pub struct RunLock(#[allow(dead_code)] File);

pub fn lock_run(store: &Path) -> io::Result<Option<RunLock>> {
    let root = promote_root(store)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(libc_nofollow())
        .open(root.join(".lock"))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(RunLock(f))),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_promotion_addendum() {
        let d = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let mut st = State::new(&id, "updates", 3, &"b".repeat(64));
        st.history.push(Transition {
            time: sluice_host::time::rfc3339_ms(1000),
            time_unix_ms: 1000,
            stage: "scan".into(),
            result: "passed".into(),
            detail: "clean".into(),
            target: None,
            reviewers: vec![],
            audit_seq: Some(4),
        });
        save(d.path(), &mut st).unwrap();
        assert_eq!(load(d.path(), &id).unwrap().unwrap(), st);
        let p: serde_json::Value = serde_json::from_slice(
            &fs::read(entry_dir(d.path(), &id).join(PROMOTION_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(p["stages"][0]["outcome"], "passed");
        assert_eq!(list(d.path()).unwrap(), vec![id.clone()]);
        let l = lock_run(d.path()).unwrap();
        assert!(l.is_some());
        assert!(
            lock_run(d.path()).unwrap().is_none(),
            "second run must not lock"
        );
    }
}
