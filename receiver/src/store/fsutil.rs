//! Directory-fd-relative file operations that never follow a symlink.
//!
//! Every path the store touches below its root is reached one component at a time from an open
//! directory fd, with `O_NOFOLLOW` (and `O_DIRECTORY` for directories, `O_CREAT | O_EXCL` for new
//! files). A symlink a local user planted therefore makes the operation fail with `ELOOP`,
//! `ENOTDIR` or `EEXIST` instead of redirecting a write.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags};

/// Mode of directories visible in quarantine.
pub const DIR_MODE: u32 = 0o755;
/// Mode of private staging directories.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Refuses a path component that could escape or alias: empty, `.`, `..`, containing `/` or NUL.
/// Paths are validated by the bundle path policy before they get here; this is the second fence.
pub fn check_component(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing unsafe path component {name:?}"),
        ));
    }
    Ok(())
}

/// Splits a manifest path into checked components.
pub fn components(path: &str) -> io::Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        check_component(p)?;
    }
    Ok(parts)
}

fn explain_dir_open(name: &str, e: rustix::io::Errno) -> io::Error {
    let err: io::Error = e.into();
    if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
        io::Error::new(
            err.kind(),
            format!("{name:?} is a symlink or not a directory; refusing to follow it ({err})"),
        )
    } else {
        err
    }
}

/// Opens an existing directory below `dir` without following a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &str) -> io::Result<OwnedFd> {
    check_component(name)?;
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| explain_dir_open(name, e))
}

/// Creates `name` below `dir` if it does not exist, opens it without following a symlink and
/// sets its mode exactly (independent of the umask).
pub fn ensure_dir_at(dir: impl AsFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    check_component(name)?;
    let dir = dir.as_fd();
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = open_dir_at(dir, name)?;
    // Only write when needed, so an existing store on a read-only mount can still be inspected.
    if rfs::fstat(&fd)?.st_mode & 0o7777 != mode {
        rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    Ok(fd)
}

/// Creates a new directory (it must not exist), with the exact mode, and opens it.
pub fn create_dir_excl(dir: impl AsFd, name: &str, mode: u32) -> io::Result<OwnedFd> {
    check_component(name)?;
    let dir = dir.as_fd();
    rfs::mkdirat(dir, name, Mode::from_raw_mode(mode))?;
    let fd = open_dir_at(dir, name)?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// Creates a new regular file (`O_CREAT | O_EXCL | O_NOFOLLOW`) with exactly `mode`.
pub fn create_file_excl(dir: impl AsFd, name: &str, mode: u32) -> io::Result<File> {
    check_component(name)?;
    let fd = rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| {
        let err: io::Error = e.into();
        if e == rustix::io::Errno::EXIST {
            io::Error::new(
                err.kind(),
                format!("{name:?} already exists (possibly a planted symlink); refusing ({err})"),
            )
        } else {
            err
        }
    })?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(File::from(fd))
}

/// Opens an existing regular file read-only without following a symlink.
pub fn open_file_read(dir: impl AsFd, name: &str) -> io::Result<File> {
    open_regular(dir, name, OFlags::RDONLY)
}

/// Opens an existing regular file read-write without following a symlink.
pub fn open_file_rw(dir: impl AsFd, name: &str) -> io::Result<File> {
    open_regular(dir, name, OFlags::RDWR)
}

/// Opens `name` in `dir` with `access`, refusing symlinks (NOFOLLOW) and anything that is not a
/// regular file (a FIFO or device planted at the name).
fn open_regular(dir: impl AsFd, name: &str, access: OFlags) -> io::Result<File> {
    check_component(name)?;
    let fd = rfs::openat(
        dir,
        name,
        access | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name:?} is not a regular file"),
        ));
    }
    Ok(File::from(fd))
}

/// Reads a whole regular file (no-follow), refusing files larger than `max` bytes.
pub fn read_file_at(dir: impl AsFd, name: &str, max: u64) -> io::Result<Vec<u8>> {
    let f = open_file_read(dir, name)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name:?} is larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// `fsync` on any fd (file or directory). An error is returned once and never retried (a retry
/// that succeeded would not prove the data durable, so it is never trusted).
pub fn fsync(fd: impl AsFd) -> io::Result<()> {
    rfs::fsync(fd).map_err(Into::into)
}

/// Tells the kernel the first `len` bytes of `file` will not be read again soon: it starts
/// writing back what is dirty and drops from the page cache what is already clean. Used behind a
/// stream (a staged object the verifier has read, a file being extracted), so a large transfer
/// neither waits for one huge write-out at its final fsync nor fills the page cache with GiBs it
/// will not read. Only advice: data is never lost, durability still comes from fsync, and a
/// failure is harmless, so callers ignore it.
pub fn drop_behind(file: &File, len: u64) -> io::Result<()> {
    match std::num::NonZeroU64::new(len) {
        Some(len) => rfs::fadvise(file, 0, Some(len), rfs::Advice::DontNeed).map_err(Into::into),
        None => Ok(()),
    }
}

/// [`drop_behind`] for a stream through a file: once it has advanced `step` bytes since the last
/// call, everything before its position is dropped.
#[derive(Debug)]
pub struct DropBehind {
    step: u64,
    done: u64,
}

impl DropBehind {
    pub const fn new(step: u64) -> DropBehind {
        DropBehind { step, done: 0 }
    }

    /// The stream is at `pos` in `file`.
    pub fn advance(&mut self, file: &File, pos: u64) {
        if pos.saturating_sub(self.done) >= self.step {
            // Advice only (see `drop_behind`).
            let _ = drop_behind(file, pos);
            self.done = pos;
        }
    }

    /// The stream starts over at 0.
    pub fn rewind(&mut self) {
        self.done = 0;
    }
}

/// The type of `name` below `dir`, without following a symlink; `None` if it does not exist.
pub fn type_at(dir: impl AsFd, name: &str) -> io::Result<Option<FileType>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Size and permission bits of `name` below `dir` (no-follow).
pub fn stat_at(dir: impl AsFd, name: &str) -> io::Result<rfs::Stat> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Names in a directory (excluding `.` and `..`), sorted. Non-UTF-8 names are returned lossily
/// with `lossy = true` so callers can report them without touching them.
pub fn list_dir(dir: impl AsFd) -> io::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let d = rfs::Dir::read_from(dir)?;
    for entry in d {
        let entry = entry?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        match std::str::from_utf8(raw) {
            Ok(s) => out.push((s.to_owned(), false)),
            Err(_) => out.push((String::from_utf8_lossy(raw).into_owned(), true)),
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `name` below `dir` recursively, never following a symlink (a symlink is unlinked,
/// not its target). Missing is fine.
pub fn remove_tree_at(dir: impl AsFd, name: &str) -> io::Result<()> {
    check_component(name)?;
    let dir = dir.as_fd();
    match type_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = open_dir_at(dir, name)?;
            for (child, lossy) in list_dir(&sub)? {
                if lossy {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("non-UTF-8 name inside {name:?}; remove it by hand"),
                    ));
                }
                remove_tree_at(&sub, &child)?;
            }
            drop(sub);
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(Into::into)
        }
        Some(_) => match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// Removes a non-directory entry; missing is fine.
pub fn unlink_at(dir: impl AsFd, name: &str) -> io::Result<()> {
    check_component(name)?;
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Random lowercase hex string of `bytes` random bytes (for temp names).
pub fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| io::Error::other(format!("getrandom: {e}")))?;
    Ok(hex::encode(buf))
}

/// Writes `name` atomically: a temp file in the same directory, written and fsynced, renamed over
/// `name`, then the directory fsynced. The temp file is removed on any error.
pub fn atomic_write_at(dir: impl AsFd, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_via_temp(dir.as_fd(), name, bytes, mode, |dir, tmp| {
        rfs::renameat(dir, tmp, dir, name).map_err(io::Error::from)
    })
}

/// Writes a new file `name` that must not exist yet: `O_EXCL` create, write, fsync, then the
/// directory fsynced after a no-replace rename from a temp name (so a reader never sees a
/// partial file under `name`). Returns `AlreadyExists` if `name` exists.
pub fn write_new_at(dir: impl AsFd, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_via_temp(dir.as_fd(), name, bytes, mode, |dir, tmp| {
        rename_noreplace(dir, tmp, dir, name)
    })
}

/// The one temp-file protocol of [`atomic_write_at`] and [`write_new_at`], which differ only in
/// how the finished temp file takes `name` (`rename_into`): write and fsync a fresh temp file
/// in `dir`, rename it, fsync `dir`; remove the temp file on any error.
fn write_via_temp(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    mode: u32,
    rename_into: impl FnOnce(BorrowedFd<'_>, &str) -> io::Result<()>,
) -> io::Result<()> {
    check_component(name)?;
    let tmp = format!(".{name}.tmp-{}", random_hex(6)?);
    let result = (|| {
        let mut f = create_file_excl(dir, &tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        rename_into(dir, &tmp)?;
        fsync(dir)
    })();
    if result.is_err() {
        let _ = unlink_at(dir, &tmp);
    }
    result
}

/// `renameat2(..., RENAME_NOREPLACE)`: fails with `AlreadyExists` rather than replacing anything
/// (including a planted symlink) at the destination.
pub fn rename_noreplace(
    from_dir: impl AsFd,
    from: &str,
    to_dir: impl AsFd,
    to: &str,
) -> io::Result<()> {
    check_component(from)?;
    check_component(to)?;
    rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE).map_err(|e| {
        let err: io::Error = e.into();
        if e == rustix::io::Errno::EXIST || e == rustix::io::Errno::NOTEMPTY {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{to:?} already exists (not replacing it; possibly planted) ({err})"),
            )
        } else {
            err
        }
    })
}
