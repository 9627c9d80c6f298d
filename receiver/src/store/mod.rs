//! The quarantine store: staging for objects being reassembled, the commit protocol that moves a
//! verified bundle into `quarantine/`, rejected records, the hash-chained audit log and the
//! durable per-channel high-water marks. docs/store.md is the specification.
//!
//! Layout under the store directory `DIR`:
//!
//! ```text
//! DIR/.lock                              flock(LOCK_EX): one receiver per store
//! DIR/staging/            (0700)         private to the receiver
//!     objects/<object-id>.part           bundle file being reassembled (written at offsets)
//!     objects/<object-id>.progress       transport progress (opaque; atomic replace)
//!     extract/x-<random>/files/...       a bundle's files while they verify
//!     extract/x-<random>/receipt.json
//! DIR/quarantine/<bundle-id>/files/...   committed bundles (files 0644/0755, dirs 0755)
//! DIR/quarantine/<bundle-id>/receipt.json
//! DIR/rejected/<timestamp>-<id>.json     one reason record per rejected object
//! DIR/audit.jsonl                        hash-chained decision log
//! DIR/state/channels/c-<hex>.json        per-channel high-water mark (fail closed if corrupt)
//! DIR/state/status.json                  written by the listener (heartbeats), read by status
//! ```
//!
//! Commit order (see [`Store::commit`]): files fsynced at end_file → every directory fsynced →
//! receipt written and fsynced → `renameat2(NOREPLACE)` into `quarantine/` → fsync
//! `quarantine/` and `staging/extract/` → audit record appended and fsynced → high-water mark
//! replaced atomically. The audit record comes before the mark because the mark is derived state:
//! it can always be rebuilt upward from the audit log (and from quarantine), never the reverse.

// The listener and media importer (built in parallel) are the callers of most of this API.
#![allow(dead_code)]

pub mod audit; // pub: sluice-promote appends through audit::append_shared
mod extract;
mod fsutil;
pub mod inspect;
pub mod media;
mod records;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, FileType, FlockOperation, Mode, OFlags};
use sluice_common::bundle::{BundleId, Entry, EntryKind, KeyId, RejectReason, Verified};

use sluice_host::time;

use audit::AuditLog;
pub use extract::Extraction;
pub use fsutil::DropBehind;
use records::{AuditRecord, ChannelMark, Receipt, ReceiptEntry, RejectedRecord, SignerInfo};
#[cfg_attr(not(test), allow(unused_imports))]
pub use records::{Source, TransportFigures};

/// Largest `.progress` blob accepted from the transport layer.
pub const MAX_PROGRESS_BYTES: u64 = 16 << 20;

/// A transport object id (16 bytes; `BundleId::object_id` for bundles).
pub type ObjectId = [u8; 16];
/// Staged objects with their saved progress blobs.
pub type ProgressList = Vec<(ObjectId, Vec<u8>)>;

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Total bytes the `.part` files in `staging/objects/` may reserve together. Checked before
    /// a new object's space is reserved (fallocate), so a flood of new objects cannot fill disk.
    pub staging_quota_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            staging_quota_bytes: 16 << 30,
        }
    }
}

/// What the store did with a verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Committed durably to `path` (`DIR/quarantine/<bundle-id>`).
    Accepted { path: PathBuf },
    /// The same bundle id was accepted before; no second copy. `existing` is its quarantine path
    /// (it may since have been released and removed by an operator).
    Duplicate { existing: PathBuf },
    /// Refused by store-side policy (today: `Rollback`); recorded in rejected/ and the audit log.
    Rejected {
        reason: RejectReason,
        detail: String,
    },
}

/// A store failure. Every variant maps to [`RejectReason::StorageError`] and exit code 8.
#[derive(Debug)]
pub enum StoreError {
    /// A filesystem call failed. `what` names the operation and path.
    Io { what: String, source: io::Error },
    /// Another receiver holds `DIR/.lock`.
    Locked { lock: PathBuf },
    /// Reserving a new object would exceed the staging quota.
    Quota { needed: u64, used: u64, quota: u64 },
    /// The channel's high-water mark file exists but cannot be trusted: accepting on this channel
    /// is refused until an operator repairs it (T60: fail closed, never reset to 0).
    StateCorrupt {
        channel: String,
        file: String,
        detail: String,
    },
    /// Something other than the store's own work is in the way (for example a planted symlink
    /// at `quarantine/<id>`), or an object conflicts with what is staged.
    Conflict { what: String },
    /// The caller used the API wrongly (unknown object, write past the end, unfinished file).
    Misuse { what: String },
}

fn errno_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => " [disk full: free space in the store's filesystem]",
        Some(libc::EDQUOT) => " [disk quota exceeded for the receiver's user]",
        Some(libc::EROFS) => " [store filesystem is read-only]",
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " [permission denied: check the store's owner and modes]"
        }
        Some(libc::EIO) => " [I/O error: the data is not trusted and not retried; check the disk]",
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            " [a symlink or non-directory is in the way; refusing to follow it]"
        }
        Some(libc::EFBIG) => " [file size limit (RLIMIT_FSIZE) reached]",
        Some(libc::EMFILE) | Some(libc::ENFILE) => " [too many open files]",
        _ => "",
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { what, source } => {
                write!(f, "store: {what}: {source}{}", errno_hint(source))
            }
            StoreError::Locked { lock } => write!(
                f,
                "store: {} is locked by another sluice-recv process; one receiver per store",
                lock.display()
            ),
            StoreError::Quota {
                needed,
                used,
                quota,
            } => write!(
                f,
                "store: staging quota exceeded: a new object needs {needed} bytes, {used} of {quota} are reserved"
            ),
            StoreError::StateCorrupt {
                channel,
                file,
                detail,
            } => write!(
                f,
                "store: high-water mark for channel {channel:?} ({file}) is corrupt: {detail}; \
                 refusing to accept on this channel until an operator repairs or removes it \
                 (docs/store.md, \"Trusted state\")"
            ),
            StoreError::Conflict { what } => write!(f, "store: {what}"),
            StoreError::Misuse { what } => write!(f, "store: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl StoreError {
    /// The reject reason to record for a bundle that failed because of this error.
    pub fn reject_reason(&self) -> RejectReason {
        RejectReason::StorageError
    }
    /// Exit code (`exit::STORAGE`).
    pub fn exit_code(&self) -> i32 {
        sluice_common::exit::STORAGE
    }
    /// The errno behind an I/O failure, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn ioe(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// A staged object's reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectFile {
    pub object_id: [u8; 16],
    pub len: u64,
    /// True when the `.part` file already existed with this length (a resumed transfer).
    pub resumed: bool,
}

/// What a rejection is about: whatever is known at the stage it failed.
#[derive(Clone, Debug, Default)]
pub struct RejectSubject {
    pub object_id: Option<[u8; 16]>,
    pub bundle_id: Option<BundleId>,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
}

/// What restart reconciliation found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub removed_extractions: Vec<String>,
    pub removed_staging_files: Vec<String>,
    /// Quarantine entries that re-verified but had no audit record: record appended.
    pub audit_appended: Vec<String>,
    /// Quarantine entries that had no audit record and failed re-checking: removed, rejected.
    pub removed_invalid_entries: Vec<String>,
    /// (channel, old mark, new mark) raised to match the audit log / quarantine.
    pub raised_marks: Vec<(String, Option<u64>, u64)>,
    /// Channels whose mark file is corrupt (still refusing).
    pub corrupt_marks: Vec<String>,
    /// Names in quarantine/ the store did not create (left alone, reported).
    pub foreign_entries: Vec<String>,
}

/// The fields of a verified bundle that a commit records. Built only from a [`Verified`] outside
/// tests, so nothing unverified can reach quarantine through the public API.
#[derive(Clone, Debug)]
struct CommitInfo {
    id: BundleId,
    format_version: u16,
    channel: String,
    sequence: u64,
    created: u64,
    expires: Option<u64>,
    note: Option<String>,
    signer_name: String,
    signer_key: KeyId,
    entries: Vec<Entry>,
    bundle_bytes: u64,
}

impl CommitInfo {
    fn from_verified(v: &Verified) -> CommitInfo {
        let h = v.header();
        CommitInfo {
            id: v.id(),
            format_version: h.format_version,
            channel: h.channel.clone(),
            sequence: h.sequence,
            created: h.created,
            expires: h.expires,
            note: h.note.clone(),
            signer_name: v.signer_name().to_owned(),
            signer_key: h.signer,
            entries: h.entries.clone(),
            bundle_bytes: v.bundle_bytes(),
        }
    }
}

/// The points of the commit protocol, in order (used by fault-injection tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Every file and directory of the extraction fsynced.
    DirsSynced,
    /// receipt.json written and fsynced, extraction dir fsynced.
    ReceiptWritten,
    /// Renamed into quarantine (not yet fsynced).
    Renamed,
    /// quarantine/ and staging/extract/ fsynced.
    QuarantineSynced,
    /// Audit record appended and fsynced (mark not yet updated).
    Audited,
}

/// A fault injected at a [`Step`] (tests only): `Crash` stops there leaving everything as a
/// killed process would; `Eio` makes the operation right after the step fail with EIO.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Crash(Step),
    Eio(Step),
}

struct OpenObject {
    file: File,
    len: u64,
}

/// An open store. One per directory per host (enforced by `flock` on `DIR/.lock`).
pub struct Store {
    dir: PathBuf,
    _root: OwnedFd,
    _lock: OwnedFd,
    _staging: OwnedFd,
    objects: OwnedFd,
    extract: OwnedFd,
    quarantine: OwnedFd,
    rejected: OwnedFd,
    channels: OwnedFd,
    audit: AuditLog,
    /// Bundle ids with an `accepted` audit record.
    accepted: HashMap<String, ()>,
    /// Highest accepted sequence per channel per the audit log (rebuild source for marks).
    channel_max: HashMap<String, u64>,
    open_objects: HashMap<[u8; 16], OpenObject>,
    /// Bytes reserved per staged object.
    reserved: HashMap<[u8; 16], u64>,
    /// Bytes of staged spool volumes (`staging/media/`), counted in the staging quota.
    media_bytes: u64,
    config: StoreConfig,
    reconcile: ReconcileReport,
    #[cfg(test)]
    fault: Option<Fault>,
    #[cfg(test)]
    crashed: bool,
}

fn part_name(id: &[u8; 16]) -> String {
    format!("{}.part", hex::encode(id))
}
fn progress_name(id: &[u8; 16]) -> String {
    format!("{}.progress", hex::encode(id))
}
fn parse_object_id(hex_str: &str) -> Option<[u8; 16]> {
    if hex_str.len() != 32 {
        return None;
    }
    let v = hex::decode(hex_str).ok()?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&v);
    Some(id)
}

impl Store {
    /// Opens (creating) the store at `dir`: builds the layout, takes the exclusive lock, opens
    /// the audit log and reconciles whatever a crash left behind.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let d = dir.display().to_string();
        std::fs::create_dir_all(&dir).map_err(ioe(format!("create {d}")))?;
        let root = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StoreError::Io {
            what: format!("open {d}"),
            source: e.into(),
        })?;
        let lock = rustix::fs::openat(
            &root,
            ".lock",
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| StoreError::Io {
            what: format!("open lock file {d}/.lock"),
            source: e.into(),
        })?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::Locked {
                    lock: dir.join(".lock"),
                });
            }
            Err(e) => {
                return Err(StoreError::Io {
                    what: format!("flock {d}/.lock"),
                    source: e.into(),
                });
            }
        }
        let mk = |parent: &OwnedFd, name: &str, mode: u32, shown: &str| {
            fsutil::ensure_dir_at(parent, name, mode).map_err(ioe(format!("{d}/{shown}")))
        };
        let staging = mk(&root, "staging", fsutil::PRIVATE_DIR_MODE, "staging")?;
        let objects = mk(
            &staging,
            "objects",
            fsutil::PRIVATE_DIR_MODE,
            "staging/objects",
        )?;
        let extract = mk(
            &staging,
            "extract",
            fsutil::PRIVATE_DIR_MODE,
            "staging/extract",
        )?;
        let quarantine = mk(&root, "quarantine", fsutil::DIR_MODE, "quarantine")?;
        let rejected = mk(&root, "rejected", fsutil::DIR_MODE, "rejected")?;
        let state = mk(&root, "state", fsutil::DIR_MODE, "state")?;
        let channels = mk(&state, "channels", fsutil::DIR_MODE, "state/channels")?;
        for (fd, shown) in [(&root, ""), (&staging, "staging"), (&state, "state")] {
            fsutil::fsync(fd).map_err(ioe(format!("fsync {d}/{shown}")))?;
        }
        let (audit, chain) = AuditLog::open(&root).map_err(ioe(format!("open {d}/audit.jsonl")))?;
        let mut store = Store {
            dir,
            _root: root,
            _lock: lock,
            _staging: staging,
            objects,
            extract,
            quarantine,
            rejected,
            channels,
            audit,
            accepted: chain.accepted.keys().map(|k| (k.clone(), ())).collect(),
            channel_max: chain.channel_max.clone(),
            open_objects: HashMap::new(),
            reserved: HashMap::new(),
            media_bytes: 0,
            config,
            reconcile: ReconcileReport::default(),
            #[cfg(test)]
            fault: None,
            #[cfg(test)]
            crashed: false,
        };
        store.reconcile()?;
        store.media_bytes = store.scan_media()?;
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What reconciliation did when this store was opened.
    pub fn reconcile_report(&self) -> &ReconcileReport {
        &self.reconcile
    }

    // ---------------------------------------------------------------- reconciliation (T71)

    fn reconcile(&mut self) -> Result<(), StoreError> {
        let d = self.dir.display().to_string();
        let mut report = ReconcileReport::default();
        // 1. Leftover extractions: never committed, never trustworthy.
        for (name, _) in
            fsutil::list_dir(&self.extract).map_err(ioe(format!("list {d}/staging/extract")))?
        {
            fsutil::remove_tree_at(&self.extract, &name)
                .map_err(ioe(format!("remove {d}/staging/extract/{name}")))?;
            report.removed_extractions.push(name);
        }
        fsutil::fsync(&self.extract).map_err(ioe(format!("fsync {d}/staging/extract")))?;
        // 2. Objects: a .part without .progress holds nothing resumable; temps are debris.
        let names: Vec<String> = fsutil::list_dir(&self.objects)
            .map_err(ioe(format!("list {d}/staging/objects")))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for name in &names {
            let keep = if let Some(id) = name.strip_suffix(".part") {
                parse_object_id(id).is_some() && names.contains(&format!("{id}.progress"))
            } else if let Some(id) = name.strip_suffix(".progress") {
                parse_object_id(id).is_some() && names.contains(&format!("{id}.part"))
            } else {
                false
            };
            if keep {
                if let Some(id) = name.strip_suffix(".part").and_then(parse_object_id) {
                    let st = fsutil::stat_at(&self.objects, name)
                        .map_err(ioe(format!("stat {d}/staging/objects/{name}")))?;
                    self.reserved.insert(id, st.st_size as u64);
                }
            } else {
                fsutil::remove_tree_at(&self.objects, name)
                    .map_err(ioe(format!("remove {d}/staging/objects/{name}")))?;
                report.removed_staging_files.push(name.clone());
            }
        }
        fsutil::fsync(&self.objects).map_err(ioe(format!("fsync {d}/staging/objects")))?;
        // 3. Quarantine entries without an accepted audit record: re-check, then record or
        //    remove. Names the store did not create are reported and left alone.
        for (name, _) in
            fsutil::list_dir(&self.quarantine).map_err(ioe(format!("list {d}/quarantine")))?
        {
            let is_dir = fsutil::type_at(&self.quarantine, &name)
                .map_err(ioe(format!("stat {d}/quarantine/{name}")))?
                == Some(FileType::Directory);
            if !inspect::is_bundle_dir_name(&name) || !is_dir {
                tracing::warn!(entry = %name, "quarantine/: foreign entry (not created by the store); left alone");
                report.foreign_entries.push(name);
                continue;
            }
            if self.accepted.contains_key(&name) {
                continue;
            }
            match inspect::check_entry(&self.quarantine, &name) {
                Ok((receipt, receipt_hash)) => {
                    self.audit
                        .append(AuditRecord {
                            decision: "accepted".into(),
                            bundle_id: Some(name.clone()),
                            object_id: Some(bundle_object_hex(&name)),
                            channel: Some(receipt.channel.clone()),
                            sequence: Some(receipt.sequence),
                            signer: Some(receipt.signer.name.clone()),
                            path: Some(format!("quarantine/{name}")),
                            receipt_blake3: Some(receipt_hash),
                            transport: Some(receipt.transport.clone()),
                            detail: Some(
                                "reconciled after restart: entry re-verified against its receipt"
                                    .into(),
                            ),
                            reconciled: true,
                            ..AuditRecord::default()
                        })
                        .map_err(ioe(format!("append {d}/audit.jsonl")))?;
                    self.accepted.insert(name.clone(), ());
                    let e = self
                        .channel_max
                        .entry(receipt.channel.clone())
                        .or_insert(receipt.sequence);
                    *e = (*e).max(receipt.sequence);
                    report.audit_appended.push(name);
                }
                Err(problems) => {
                    let detail = format!(
                        "reconcile: quarantine entry without an audit record failed re-checking: {}",
                        problems.join("; ")
                    );
                    tracing::error!(bundle = %name, %detail, "removing invalid quarantine entry");
                    let tmp = format!("x-{}", fsutil::random_hex(16).map_err(ioe("random"))?);
                    fsutil::rename_noreplace(&self.quarantine, &name, &self.extract, &tmp)
                        .map_err(ioe(format!("move {d}/quarantine/{name} out")))?;
                    fsutil::fsync(&self.quarantine)
                        .map_err(ioe(format!("fsync {d}/quarantine")))?;
                    fsutil::remove_tree_at(&self.extract, &tmp)
                        .map_err(ioe(format!("remove {d}/staging/extract/{tmp}")))?;
                    let subject = RejectSubject {
                        bundle_id: parse_bundle_id(&name),
                        ..RejectSubject::default()
                    };
                    self.reject_inner(&subject, RejectReason::StorageError, &detail, None, true)?;
                    report.removed_invalid_entries.push(name);
                }
            }
        }
        // 4. High-water marks: raise any mark that is behind the audit log (or missing).
        let mut chans: Vec<(String, u64)> = self
            .channel_max
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect();
        chans.sort();
        for (channel, max) in chans {
            match self.read_mark(&channel) {
                Ok(Some(m)) if m.sequence >= max => {}
                Ok(old) => {
                    self.write_mark(&channel, max, "(rebuilt from audit.jsonl)")?;
                    tracing::warn!(%channel, old = ?old.as_ref().map(|m| m.sequence), new = max,
                        "high-water mark raised to match the audit log");
                    report
                        .raised_marks
                        .push((channel, old.map(|m| m.sequence), max));
                }
                Err(StoreError::StateCorrupt { .. }) => report.corrupt_marks.push(channel),
                Err(e) => return Err(e),
            }
        }
        self.reconcile = report;
        Ok(())
    }

    // ---------------------------------------------------------------- channel marks

    fn mark_file(channel: &str) -> String {
        records::channel_file_name(channel)
    }

    /// Reads a channel's mark. Missing → `None`; unreadable or garbled → `StateCorrupt`.
    fn read_mark(&self, channel: &str) -> Result<Option<ChannelMark>, StoreError> {
        let file = Self::mark_file(channel);
        let shown = format!("state/channels/{file}");
        let corrupt = |detail: String| StoreError::StateCorrupt {
            channel: channel.to_owned(),
            file: shown.clone(),
            detail,
        };
        let bytes = match fsutil::read_file_at(&self.channels, &file, 1 << 16) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(corrupt(format!("is a symlink ({e})")));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(corrupt(e.to_string())),
            Err(e) => return Err(ioe(format!("read {shown}"))(e)),
        };
        let mark: ChannelMark =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        if mark.channel != channel {
            return Err(corrupt(format!(
                "names channel {:?}, expected {channel:?}",
                mark.channel
            )));
        }
        Ok(Some(mark))
    }

    fn write_mark(&self, channel: &str, sequence: u64, bundle_id: &str) -> Result<(), StoreError> {
        let file = Self::mark_file(channel);
        let mark = ChannelMark {
            channel: channel.to_owned(),
            sequence,
            bundle_id: bundle_id.to_owned(),
            updated_unix: time::now_unix(),
        };
        let mut bytes = serde_json::to_vec_pretty(&mark)
            .map_err(|e| ioe("encode mark")(io::Error::other(e)))?;
        bytes.push(b'\n');
        fsutil::atomic_write_at(&self.channels, &file, &bytes, 0o644)
            .map_err(ioe(format!("write state/channels/{file}")))
    }

    /// The effective high-water mark of a channel: the larger of its mark file and the audit
    /// log's history. A missing file with audit history is rebuilt (upward only); a corrupt file
    /// fails closed.
    pub fn high_water_mark(&self, channel: &str) -> Result<Option<u64>, StoreError> {
        let file = self.read_mark(channel)?.map(|m| m.sequence);
        let audit = self.channel_max.get(channel).copied();
        if file.is_none() {
            if let Some(a) = audit {
                tracing::warn!(%channel, mark = a, "high-water mark file missing; rebuilding it from audit.jsonl");
                self.write_mark(channel, a, "(rebuilt from audit.jsonl)")?;
            }
        }
        Ok(match (file, audit) {
            (Some(f), Some(a)) => Some(f.max(a)),
            (f, a) => f.or(a),
        })
    }

    // ---------------------------------------------------------------- object staging

    /// Bytes reserved by staged objects and staged spool volumes, and the quota.
    pub fn staging_usage(&self) -> (u64, u64) {
        (
            self.reserved.values().sum::<u64>() + self.media_bytes,
            self.config.staging_quota_bytes,
        )
    }

    /// Reserves staging space for an object of `len` bytes and creates its `.part` file (space
    /// allocated with fallocate where supported). If the object is already staged with the same
    /// length it is resumed; a different length is a conflict.
    pub fn create_object(
        &mut self,
        object_id: [u8; 16],
        len: u64,
    ) -> Result<ObjectFile, StoreError> {
        let name = part_name(&object_id);
        let shown = format!("staging/objects/{name}");
        if let Some(o) = self.open_objects.get(&object_id) {
            return if o.len == len {
                Ok(ObjectFile {
                    object_id,
                    len,
                    resumed: true,
                })
            } else {
                Err(StoreError::Conflict {
                    what: format!("{shown} is staged with {} bytes, not {len}", o.len),
                })
            };
        }
        match fsutil::type_at(&self.objects, &name).map_err(ioe(format!("stat {shown}")))? {
            Some(FileType::RegularFile) => {
                let file = fsutil::open_file_rw(&self.objects, &name)
                    .map_err(ioe(format!("open {shown}")))?;
                let have = file.metadata().map_err(ioe(format!("stat {shown}")))?.len();
                if have != len {
                    return Err(StoreError::Conflict {
                        what: format!("{shown} is staged with {have} bytes, not {len}"),
                    });
                }
                self.reserved.insert(object_id, len);
                self.open_objects
                    .insert(object_id, OpenObject { file, len });
                return Ok(ObjectFile {
                    object_id,
                    len,
                    resumed: true,
                });
            }
            Some(_) => {
                return Err(StoreError::Conflict {
                    what: format!("{shown} exists and is not a regular file; refusing"),
                });
            }
            None => {}
        }
        let (used, quota) = self.staging_usage();
        if used.saturating_add(len) > quota {
            return Err(StoreError::Quota {
                needed: len,
                used,
                quota,
            });
        }
        let file = fsutil::create_file_excl(&self.objects, &name, 0o600)
            .map_err(ioe(format!("create {shown}")))?;
        let alloc = match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => file.set_len(len),
            Err(rustix::io::Errno::INVAL) if len == 0 => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = alloc {
            drop(file);
            let _ = fsutil::unlink_at(&self.objects, &name);
            return Err(ioe(format!("reserve {len} bytes for {shown}"))(e));
        }
        self.reserved.insert(object_id, len);
        self.open_objects
            .insert(object_id, OpenObject { file, len });
        Ok(ObjectFile {
            object_id,
            len,
            resumed: false,
        })
    }

    fn object(&mut self, object_id: &[u8; 16]) -> Result<&mut OpenObject, StoreError> {
        if !self.open_objects.contains_key(object_id) {
            let name = part_name(object_id);
            let file = fsutil::open_file_rw(&self.objects, &name).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    StoreError::Misuse {
                        what: format!("object {} is not staged", hex::encode(object_id)),
                    }
                } else {
                    ioe(format!("open staging/objects/{name}"))(e)
                }
            })?;
            let len = file
                .metadata()
                .map_err(ioe(format!("stat staging/objects/{name}")))?
                .len();
            self.reserved.insert(*object_id, len);
            self.open_objects
                .insert(*object_id, OpenObject { file, len });
        }
        self.open_objects
            .get_mut(object_id)
            .ok_or_else(|| StoreError::Misuse {
                what: "object vanished".into(),
            })
    }

    /// Writes decoded bytes at `offset` of the object's `.part` file. A storage failure removes
    /// the object (its state is no longer trustworthy) and returns the error.
    pub fn write_at(
        &mut self,
        object_id: [u8; 16],
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let o = self.object(&object_id)?;
        if offset.saturating_add(bytes.len() as u64) > o.len {
            return Err(StoreError::Misuse {
                what: format!(
                    "write of {} bytes at {offset} past the end of object {} ({} bytes)",
                    bytes.len(),
                    hex::encode(object_id),
                    o.len
                ),
            });
        }
        if let Err(e) = o.file.write_all_at(bytes, offset) {
            let _ = self.remove_object(object_id);
            return Err(ioe(format!(
                "write staging/objects/{} (object removed)",
                part_name(&object_id)
            ))(e));
        }
        Ok(())
    }

    /// fsyncs the object's `.part` file. On failure the object is removed (A42).
    pub fn sync_object(&mut self, object_id: [u8; 16]) -> Result<(), StoreError> {
        let o = self.object(&object_id)?;
        if let Err(e) = o.file.sync_data() {
            let _ = self.remove_object(object_id);
            return Err(ioe(format!(
                "fsync staging/objects/{} (object removed)",
                part_name(&object_id)
            ))(e));
        }
        Ok(())
    }

    /// Saves the transport's progress blob for an object. The `.part` file is fsynced first, so
    /// a saved progress never claims blocks whose bytes are not durable; the blob then replaces
    /// the old one atomically (temp + fsync + rename + dir fsync).
    pub fn save_progress(&mut self, object_id: [u8; 16], bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() as u64 > MAX_PROGRESS_BYTES {
            return Err(StoreError::Misuse {
                what: format!(
                    "progress blob of {} bytes exceeds {MAX_PROGRESS_BYTES}",
                    bytes.len()
                ),
            });
        }
        self.sync_object(object_id)?;
        let name = progress_name(&object_id);
        fsutil::atomic_write_at(&self.objects, &name, bytes, 0o600)
            .map_err(ioe(format!("write staging/objects/{name}")))
    }

    /// Every staged object that has a progress blob (for resuming after a restart).
    pub fn load_all_progress(&self) -> Result<ProgressList, StoreError> {
        let mut out = Vec::new();
        for (name, _) in fsutil::list_dir(&self.objects).map_err(ioe("list staging/objects"))? {
            let Some(id) = name.strip_suffix(".progress").and_then(parse_object_id) else {
                continue;
            };
            if fsutil::type_at(&self.objects, &part_name(&id))
                .map_err(ioe(format!("stat staging/objects/{}", part_name(&id))))?
                != Some(FileType::RegularFile)
            {
                continue;
            }
            let bytes = fsutil::read_file_at(&self.objects, &name, MAX_PROGRESS_BYTES)
                .map_err(ioe(format!("read staging/objects/{name}")))?;
            out.push((id, bytes));
        }
        Ok(out)
    }

    /// A read handle on the object's `.part` file, for the verifier.
    pub fn open_object_reader(&self, object_id: [u8; 16]) -> Result<File, StoreError> {
        let name = part_name(&object_id);
        fsutil::open_file_read(&self.objects, &name)
            .map_err(ioe(format!("open staging/objects/{name}")))
    }

    /// Deletes an object's `.part` and `.progress` and releases its reservation. Idempotent.
    pub fn remove_object(&mut self, object_id: [u8; 16]) -> Result<(), StoreError> {
        self.open_objects.remove(&object_id);
        self.reserved.remove(&object_id);
        let part = part_name(&object_id);
        let prog = progress_name(&object_id);
        // Progress first: a .part without .progress is cleaned by reconciliation anyway.
        fsutil::unlink_at(&self.objects, &prog)
            .map_err(ioe(format!("remove staging/objects/{prog}")))?;
        fsutil::unlink_at(&self.objects, &part)
            .map_err(ioe(format!("remove staging/objects/{part}")))?;
        fsutil::fsync(&self.objects).map_err(ioe("fsync staging/objects"))
    }

    /// Lets go of an object whose transfer was abandoned (idle timeout or deadline). With a saved
    /// `.progress` it stays staged (a resend or a restart resumes it) and only its file handle
    /// is closed; without one nothing in it can ever be resumed, so its files and its staging
    /// reservation are removed. Returns true when it was removed. Without this, every abandoned
    /// transfer kept an open fd and its reservation until restart (BUGS.md B1).
    pub fn release_object(&mut self, object_id: [u8; 16]) -> Result<bool, StoreError> {
        let prog = progress_name(&object_id);
        let resumable = fsutil::type_at(&self.objects, &prog)
            .map_err(ioe(format!("stat staging/objects/{prog}")))?
            == Some(FileType::RegularFile);
        if resumable {
            self.open_objects.remove(&object_id);
            return Ok(false);
        }
        self.remove_object(object_id)?;
        Ok(true)
    }

    // ---------------------------------------------------------------- decisions

    /// True if this bundle id was accepted before (audit log) or sits in quarantine. Callers
    /// check this before verifying/extracting, to skip work on a replay.
    pub fn is_accepted(&self, bundle_id: &BundleId) -> bool {
        let hex_id = bundle_id.to_hex();
        self.accepted.contains_key(&hex_id)
            || matches!(
                fsutil::type_at(&self.quarantine, &hex_id),
                Ok(Some(FileType::Directory))
            )
    }

    /// Records a replay of an already-accepted bundle (T56): a `duplicate` audit record, no
    /// second copy, and the bundle's staged object removed. `commit` calls this itself; a caller
    /// that checked [`Store::is_accepted`] before verifying calls it directly to skip the work.
    /// `known` is (channel, sequence, signer name) when the header was decoded.
    pub fn record_duplicate(
        &mut self,
        bundle_id: &BundleId,
        known: Option<(&str, u64, &str)>,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let idhex = bundle_id.to_hex();
        let object_id = bundle_id.object_id();
        self.audit
            .append(AuditRecord {
                decision: "duplicate".into(),
                bundle_id: Some(idhex.clone()),
                object_id: Some(hex::encode(object_id)),
                channel: known.map(|k| k.0.to_owned()),
                sequence: known.map(|k| k.1),
                signer: known.map(|k| k.2.to_owned()),
                path: Some(format!("quarantine/{idhex}")),
                detail: Some("already accepted; no second copy".into()),
                transport: Some(transport),
                ..AuditRecord::default()
            })
            .map_err(ioe("append audit.jsonl"))?;
        self.cleanup_object(object_id);
        Ok(Decision::Duplicate {
            existing: self.dir.join("quarantine").join(idhex),
        })
    }

    /// A fresh private extraction directory for the verifier's [`FileSink`] calls.
    ///
    /// [`FileSink`]: sluice_common::bundle::FileSink
    pub fn stage_extract(&self) -> Result<Extraction, StoreError> {
        let dup = self
            .extract
            .try_clone()
            .map_err(ioe("dup staging/extract fd"))?;
        Extraction::new(dup, &self.dir).map_err(ioe("create staging/extract/<tmp>"))
    }

    /// Commits a verified bundle whose files were streamed into `extraction`.
    ///
    /// Order: duplicate check → high-water mark check (fail closed if corrupt; `Rollback` if
    /// `require_increasing_sequence` and the sequence is not above the mark) → fsync every
    /// directory (files were fsynced as they ended) → write + fsync `receipt.json` → fsync the
    /// extraction dir → `renameat2(RENAME_NOREPLACE)` into `quarantine/<id>` → fsync
    /// `quarantine/` and `staging/extract/` → append + fsync the audit record → replace the
    /// channel mark. A failure before the audit record leaves nothing in quarantine (a renamed
    /// entry is moved back out) and returns a [`StoreError`]; the staged object is kept so a
    /// later pass can retry. After any decision the staged object of this bundle is removed.
    pub fn commit(
        &mut self,
        extraction: Extraction,
        verified: &Verified,
        require_increasing_sequence: bool,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let info = CommitInfo::from_verified(verified);
        self.commit_core(extraction, &info, require_increasing_sequence, transport)
    }

    fn commit_core(
        &mut self,
        mut ext: Extraction,
        info: &CommitInfo,
        require_increasing_sequence: bool,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let idhex = info.id.to_hex();
        let object_id = info.id.object_id();
        if let Some(why) = self.audit.poisoned_reason() {
            return Err(StoreError::Io {
                what: format!(
                    "store degraded: audit log fsync failed earlier ({why}); restart sluice-recv to reconcile before committing {idhex}"
                ),
                source: io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if let Some((msg, err)) = ext.storage_error() {
            return Err(StoreError::Io {
                what: format!("extract bundle {idhex}: {msg}"),
                source: err,
            });
        }
        if ext.has_open_file() {
            return Err(StoreError::Misuse {
                what: format!("commit of {idhex} with a file still open in the extraction"),
            });
        }
        let qpath = self.dir.join("quarantine").join(&idhex);
        if !ext.matches(&info.entries) {
            return Err(StoreError::Misuse {
                what: format!(
                    "extraction {} does not hold exactly the verified manifest of {idhex}; not committing",
                    ext.path().display()
                ),
            });
        }
        if self.is_accepted(&info.id) {
            ext.discard();
            return self.record_duplicate(
                &info.id,
                Some((
                    info.channel.as_str(),
                    info.sequence,
                    info.signer_name.as_str(),
                )),
                transport,
            );
        }
        let mark = self.high_water_mark(&info.channel)?;
        if require_increasing_sequence {
            if let Some(m) = mark {
                if info.sequence <= m {
                    ext.discard();
                    let detail = format!(
                        "channel {:?} requires increasing sequences: {} is not above the last accepted {m}",
                        info.channel, info.sequence
                    );
                    let subject = RejectSubject {
                        object_id: Some(object_id),
                        bundle_id: Some(info.id),
                        channel: Some(info.channel.clone()),
                        sequence: Some(info.sequence),
                    };
                    self.reject_inner(
                        &subject,
                        RejectReason::Rollback,
                        &detail,
                        Some(transport),
                        false,
                    )?;
                    self.cleanup_object(object_id);
                    return Ok(Decision::Rejected {
                        reason: RejectReason::Rollback,
                        detail,
                    });
                }
            }
        }
        // Durability of the content, then the receipt, all still private in staging.
        fsutil::sync_dir_tree(ext.files_fd()).map_err(ioe(format!(
            "fsync directories of {}",
            ext.path().display()
        )))?;
        self.checkpoint(Step::DirsSynced, Some(&mut ext))?;
        let receipt = self.receipt(info, transport.clone());
        let mut receipt_bytes = serde_json::to_vec_pretty(&receipt)
            .map_err(|e| ioe("encode receipt")(io::Error::other(e)))?;
        receipt_bytes.push(b'\n');
        let receipt_hash = blake3::hash(&receipt_bytes).to_hex().to_string();
        (|| {
            let mut f = fsutil::create_file_excl(ext.root_fd(), "receipt.json", 0o644)?;
            f.write_all(&receipt_bytes)?;
            f.sync_all()?;
            fsutil::fsync(ext.root_fd())
        })()
        .map_err(ioe(format!("write {}/receipt.json", ext.path().display())))?;
        self.checkpoint(Step::ReceiptWritten, Some(&mut ext))?;
        // The atomic step: nothing is visible in quarantine before this, everything after.
        fsutil::rename_noreplace(&self.extract, &ext.name, &self.quarantine, &idhex).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::Conflict {
                    what: format!(
                        "quarantine/{idhex} already exists but is not an accepted bundle (a planted file or symlink?); not replacing it: {e}"
                    ),
                }
            } else {
                ioe(format!("rename into quarantine/{idhex}"))(e)
            }
        })?;
        let staged_name = ext.name.clone();
        ext.finished = true;
        drop(ext);
        let durable = self
            .checkpoint(Step::Renamed, None)
            .and_then(|()| fsutil::fsync(&self.quarantine).map_err(ioe("fsync quarantine/")))
            .and_then(|()| fsutil::fsync(&self.extract).map_err(ioe("fsync staging/extract/")))
            .and_then(|()| self.checkpoint(Step::QuarantineSynced, None))
            .and_then(|()| {
                self.audit
                    .append(AuditRecord {
                        decision: "accepted".into(),
                        bundle_id: Some(idhex.clone()),
                        object_id: Some(hex::encode(object_id)),
                        channel: Some(info.channel.clone()),
                        sequence: Some(info.sequence),
                        signer: Some(info.signer_name.clone()),
                        path: Some(format!("quarantine/{idhex}")),
                        receipt_blake3: Some(receipt_hash),
                        transport: Some(transport),
                        ..AuditRecord::default()
                    })
                    .map(drop)
                    .map_err(ioe("append audit.jsonl"))
            });
        if let Err(e) = durable {
            if self.simulated_crash() {
                return Err(e);
            }
            if self.audit.is_poisoned() {
                // The record may or may not be in the log (write done, fsync failed). Do not
                // report it accepted (A42) and do not withdraw it either: a restart reconciles
                // it (re-verifying every file) whichever way the log turned out.
                tracing::error!(bundle = %idhex, error = %e,
                    "audit fsync failed; bundle NOT reported accepted; store degraded until restart");
                return Err(e);
            }
            // Not accepted (A42: no retry-then-trust). Take it back out of quarantine.
            tracing::error!(bundle = %idhex, error = %e, "commit failed after rename; withdrawing the entry");
            match fsutil::rename_noreplace(&self.quarantine, &idhex, &self.extract, &staged_name) {
                Ok(()) => {
                    let _ = fsutil::fsync(&self.quarantine);
                    let _ = fsutil::remove_tree_at(&self.extract, &staged_name);
                }
                Err(e2) => tracing::error!(bundle = %idhex, error = %e2,
                    "could not withdraw the entry; reconciliation will re-check it on restart"),
            }
            return Err(e);
        }
        self.accepted.insert(idhex.clone(), ());
        let e = self
            .channel_max
            .entry(info.channel.clone())
            .or_insert(info.sequence);
        *e = (*e).max(info.sequence);
        let new_mark = mark.map_or(info.sequence, |m| m.max(info.sequence));
        let marked = self
            .checkpoint(Step::Audited, None)
            .and_then(|()| self.write_mark(&info.channel, new_mark, &idhex));
        if self.simulated_crash() {
            return Err(StoreError::Misuse {
                what: "simulated crash".into(),
            });
        }
        if let Err(err) = marked {
            // Accepted already (the audit record is the decision); the in-memory history keeps
            // rollback protection and reconciliation rewrites the mark on the next open.
            tracing::error!(channel = %info.channel, error = %err, "high-water mark update failed; it will be rebuilt from audit.jsonl");
        }
        self.cleanup_object(object_id);
        Ok(Decision::Accepted { path: qpath })
    }

    /// Fault-injection point (a no-op outside tests).
    #[cfg(not(test))]
    fn checkpoint(&mut self, _step: Step, _ext: Option<&mut Extraction>) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(not(test))]
    fn simulated_crash(&self) -> bool {
        false
    }

    #[cfg(test)]
    fn checkpoint(&mut self, step: Step, ext: Option<&mut Extraction>) -> Result<(), StoreError> {
        match self.fault {
            Some(Fault::Crash(s)) if s == step => {
                self.crashed = true;
                if let Some(ext) = ext {
                    ext.finished = true; // a killed process cleans nothing up
                }
                Err(StoreError::Misuse {
                    what: format!("simulated crash after {step:?}"),
                })
            }
            Some(Fault::Eio(s)) if s == step => Err(StoreError::Io {
                what: format!("injected fault after {step:?}"),
                source: io::Error::from_raw_os_error(libc::EIO),
            }),
            _ => Ok(()),
        }
    }

    #[cfg(test)]
    fn simulated_crash(&self) -> bool {
        self.crashed
    }

    fn cleanup_object(&mut self, object_id: [u8; 16]) {
        if let Err(e) = self.remove_object(object_id) {
            tracing::warn!(object = %hex::encode(object_id), error = %e, "could not remove staged object");
        }
    }

    fn receipt(&self, info: &CommitInfo, transport: TransportFigures) -> Receipt {
        let now = time::now_unix();
        Receipt {
            receipt_version: 1,
            bundle_id: info.id.to_hex(),
            format_version: info.format_version,
            channel: info.channel.clone(),
            sequence: info.sequence,
            signer: SignerInfo {
                name: info.signer_name.clone(),
                key_id: info.signer_key.to_hex(),
            },
            created_unix: info.created,
            created_rfc3339: time::rfc3339(info.created),
            expires_unix: info.expires,
            expires_rfc3339: info.expires.map(time::rfc3339),
            note: info.note.clone(),
            received_unix: now,
            received_rfc3339: time::rfc3339(now),
            bundle_bytes: info.bundle_bytes,
            entries: info
                .entries
                .iter()
                .map(|e| ReceiptEntry {
                    path: e.path.clone(),
                    kind: match e.kind {
                        EntryKind::File => "file".into(),
                        EntryKind::Dir => "dir".into(),
                    },
                    size: e.size,
                    blake3: hex::encode(e.blake3),
                    executable: e.executable,
                })
                .collect(),
            transport,
        }
    }

    /// Records a rejection: `rejected/<timestamp>-<id>.json` (reason code, detail, what is
    /// known) and an audit record, then removes the object's staging files. Returns the record's
    /// path. Cleanup happens even if recording fails (the error is still returned).
    pub fn reject(
        &mut self,
        subject: &RejectSubject,
        reason: RejectReason,
        detail: &str,
        transport: Option<TransportFigures>,
    ) -> Result<PathBuf, StoreError> {
        let r = self.reject_inner(subject, reason, detail, transport, false);
        if let Some(id) = subject.object_id {
            self.cleanup_object(id);
        }
        r
    }

    fn reject_inner(
        &mut self,
        subject: &RejectSubject,
        reason: RejectReason,
        detail: &str,
        transport: Option<TransportFigures>,
        reconciled: bool,
    ) -> Result<PathBuf, StoreError> {
        let now = time::now_unix();
        let bundle_hex = subject.bundle_id.map(|b| b.to_hex());
        let object_hex = subject.object_id.map(hex::encode);
        let label = bundle_hex
            .clone()
            .or_else(|| object_hex.clone())
            .unwrap_or_else(|| "unknown".into());
        let record = RejectedRecord {
            time_unix: now,
            time_rfc3339: time::rfc3339(now),
            reason: reason.code().into(),
            detail: detail.into(),
            bundle_id: bundle_hex.clone(),
            object_id: object_hex.clone(),
            channel: subject.channel.clone(),
            sequence: subject.sequence,
            transport: transport.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| ioe("encode rejected record")(io::Error::other(e)))?;
        bytes.push(b'\n');
        let base = format!("{}-{label}", time::compact(now));
        let mut written = None;
        let mut last_err = None;
        for n in 0..100u32 {
            let name = if n == 0 {
                format!("{base}.json")
            } else {
                format!("{base}-{n}.json")
            };
            match fsutil::write_new_at(&self.rejected, &name, &bytes, 0o644) {
                Ok(()) => {
                    written = Some(name);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last_err = Some(ioe(format!("write rejected/{name}"))(e));
                    break;
                }
            }
        }
        let audit = self
            .audit
            .append(AuditRecord {
                decision: "rejected".into(),
                bundle_id: bundle_hex,
                object_id: object_hex,
                channel: subject.channel.clone(),
                sequence: subject.sequence,
                reason: Some(reason.code().into()),
                detail: Some(detail.into()),
                rejected_record: written.as_ref().map(|n| format!("rejected/{n}")),
                transport,
                reconciled,
                ..AuditRecord::default()
            })
            .map_err(ioe("append audit.jsonl"));
        if let Some(e) = last_err {
            return Err(e);
        }
        audit?;
        match written {
            Some(n) => Ok(self.dir.join("rejected").join(n)),
            None => Err(StoreError::Conflict {
                what: format!("rejected/{base}*.json: 100 names taken"),
            }),
        }
    }

    /// Records a transfer that ended without enough symbols to recover the object: an audit
    /// record `incomplete` (reason `insufficient_symbols`). No rejected/ record, because nothing
    /// was judged: the staged object and its progress are kept so a later pass or resend can
    /// complete it (call [`Store::remove_object`] to give up on it instead).
    pub fn record_incomplete(
        &mut self,
        object_id: [u8; 16],
        detail: &str,
        transport: TransportFigures,
    ) -> Result<(), StoreError> {
        self.audit
            .append(AuditRecord {
                decision: "incomplete".into(),
                object_id: Some(hex::encode(object_id)),
                reason: Some(RejectReason::InsufficientSymbols.code().into()),
                detail: Some(detail.into()),
                transport: Some(transport),
                ..AuditRecord::default()
            })
            .map(drop)
            .map_err(ioe("append audit.jsonl"))
    }
}

fn parse_bundle_id(hex_str: &str) -> Option<BundleId> {
    let v = hex::decode(hex_str).ok()?;
    let arr: [u8; 32] = v.try_into().ok()?;
    Some(BundleId(arr))
}

fn bundle_object_hex(bundle_hex: &str) -> String {
    parse_bundle_id(bundle_hex)
        .map(|b| hex::encode(b.object_id()))
        .unwrap_or_default()
}
