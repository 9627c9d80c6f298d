//! [`Store`], the open store handle, and [`Store::open`]: the directory layout, the exclusive
//! lock, the audit log and reconciliation at open. Every other store module adds methods to
//! `Store`; its fields are `pub(super)` for them and nobody else.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::audit::{AcceptedInfo, AuditLog};
use super::error::{StoreError, ioe};
use super::fsutil;
#[cfg(test)]
use super::steps::Fault;

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

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Total bytes the `.part` files in `staging/objects/` may reserve together. Checked before
    /// a new object's space is reserved (fallocate), so a flood of new objects cannot fill disk.
    /// Staged spool volumes have their own quota (`store::media::MediaPolicy`).
    pub staging_quota_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            staging_quota_bytes: 16 << 30,
        }
    }
}

/// The media staging policy: a quota of its own and an expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Bytes all staged volumes may occupy together. Checked while copying, so a volume is
    /// never staged past it (worst case on disk: this plus one 1 MiB copy buffer being written).
    pub quota_bytes: u64,
    /// An object whose newest staged volume is older than this is removed by
    /// `Store::expire_media` (run by every `import` and by `staging purge --expired`).
    pub expiry: Duration,
}

impl MediaPolicy {
    /// Default quota: 96 GiB, the volumes of one largest default bundle (64 GiB) at 35 %
    /// overhead (86.4 GiB) with room to spare.
    pub const DEFAULT_QUOTA_BYTES: u64 = 96 << 30;
    /// Default expiry: 14 days.
    pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(14 * 24 * 3600);
}

impl Default for MediaPolicy {
    fn default() -> Self {
        MediaPolicy {
            quota_bytes: Self::DEFAULT_QUOTA_BYTES,
            expiry: Self::DEFAULT_EXPIRY,
        }
    }
}

/// An open store. One per directory per host (enforced by `flock` on `DIR/.lock`).
pub struct Store {
    pub(super) dir: PathBuf,
    pub(super) _root: OwnedFd,
    pub(super) _lock: OwnedFd,
    pub(super) _staging: OwnedFd,
    pub(super) objects: OwnedFd,
    pub(super) extract: OwnedFd,
    pub(super) quarantine: OwnedFd,
    pub(super) rejected: OwnedFd,
    pub(super) channels: OwnedFd,
    pub(super) audit: AuditLog,
    /// Bundle ids with an `accepted` audit record, with the channel and sequence it recorded
    /// (so a duplicate found before its header was read is still recorded with them).
    pub(super) accepted: HashMap<String, AcceptedInfo>,
    /// Highest accepted sequence per channel per the audit log (rebuild source for marks).
    pub(super) channel_max: HashMap<String, u64>,
    pub(super) open_objects: HashMap<[u8; 16], OpenObject>,
    /// Bytes reserved per staged object.
    pub(super) reserved: HashMap<[u8; 16], u64>,
    /// Bytes of staged spool volumes (`staging/media/`), counted in the staging quota.
    pub(super) media_bytes: u64,
    /// Quota and expiry of `staging/media/` (`Store::set_media_policy`).
    pub(super) media_policy: MediaPolicy,
    pub(super) config: StoreConfig,
    pub(super) reconcile: ReconcileReport,
    #[cfg(test)]
    pub(super) fault: Option<Fault>,
    #[cfg(test)]
    pub(super) crashed: bool,
}

/// An open `.part` file and its declared length (writes past it are refused).
pub(super) struct OpenObject {
    pub(super) file: File,
    pub(super) len: u64,
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
        match lock_within(&lock, LOCK_PATIENCE) {
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
            accepted: chain.accepted.clone(),
            channel_max: chain.channel_max.clone(),
            open_objects: HashMap::new(),
            reserved: HashMap::new(),
            media_bytes: 0,
            media_policy: MediaPolicy::default(),
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
}

/// How long [`Store::open`] retries a held `.lock` before reporting it locked. A lock is held by
/// its open file description, and a process forking at that moment (any `Command::spawn`, in
/// this process or the previous holder's) keeps a copy until its child execs: a store closed a
/// moment ago can look locked for that long. Another listener holds it far longer.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// `flock(LOCK_EX | LOCK_NB)`, retried every 10 ms for up to `patience`.
fn lock_within(lock: &OwnedFd, patience: Duration) -> rustix::io::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match rustix::fs::flock(lock, FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < patience => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
