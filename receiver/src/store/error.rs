//! [`StoreError`]: every way a store operation fails, with an operator hint per errno. Every
//! variant maps to the `storage_error` reject reason and exit code 8, so callers never have to
//! tell store failures apart to decide what to do, only to explain them.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[cfg(test)]
use sluice_common::bundle::RejectReason;

/// A store failure. Every variant maps to [`RejectReason::StorageError`] and exit code 8.
#[derive(Debug)]
pub enum StoreError {
    /// A filesystem call failed. `what` names the operation and path.
    Io { what: String, source: io::Error },
    /// Another receiver holds `DIR/.lock`.
    Locked { lock: PathBuf },
    /// Reserving a new object would exceed the staging quota.
    Quota { needed: u64, used: u64, quota: u64 },
    /// Copying a volume into `staging/media/` would pass the media quota
    /// (`store::media::MediaPolicy`); `needed` is what the copy had reached when it stopped.
    MediaQuota { needed: u64, used: u64, quota: u64 },
    /// The channel's high-water mark file exists but cannot be trusted: accepting on this channel
    /// is refused until an operator repairs it (fail closed, never reset to 0).
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
            StoreError::MediaQuota {
                needed,
                used,
                quota,
            } => write!(
                f,
                "store: media staging quota exceeded: a volume copy reached {needed} bytes with \
                 {used} of {quota} already staged; see `sluice-recv staging list`, remove what \
                 is not wanted with `sluice-recv staging purge`, or raise `import --media-quota`"
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
    /// Exit code (`exit::STORAGE`).
    pub fn exit_code(&self) -> i32 {
        sluice_common::exit::STORAGE
    }
}

// Tests pin the mapping and the errno behind a failure; production code never needs either
// (every store failure is `storage_error`, and the Display text already carries the errno).
#[cfg(test)]
impl StoreError {
    pub(super) fn reject_reason(&self) -> RejectReason {
        RejectReason::StorageError
    }
    pub(super) fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `map_err` helper: wraps an `io::Error` with the operation and path it came from.
pub(super) fn ioe(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}
