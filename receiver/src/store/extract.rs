//! [`Extraction`]: the [`FileSink`] the verifier streams a bundle's files into.
//!
//! It writes below `staging/extract/<random>/files/` (staging is mode 0700, so nothing there is
//! visible to other users) using only directory-fd-relative, no-follow, create-new operations.
//! Each file is fsynced when it ends, and each directory as soon as the manifest's byte order has
//! left it (the verifier's thread, not under the store lock), so `Store::commit` fsyncs only the
//! directories still open (at most the path depth) before it writes the receipt and renames the
//! whole `<random>` directory into quarantine: a signed bundle with 100 000 directories no longer
//! holds the store lock through 100 000 fsyncs. Dropping an `Extraction` that was not committed
//! deletes it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use sluice_common::bundle::{Entry, EntryKind, FileSink};

use super::fsutil;

/// Mode of a quarantined file.
pub fn file_mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

struct Current {
    file: File,
    path: String,
    expected: u64,
    written: u64,
    drop_behind: fsutil::DropBehind,
}

/// Bytes of a file being extracted after which their writeback is started and what is already
/// written back leaves the page cache. Without this nothing reaches the disk until `end_file`'s
/// fsync (the kernel's background threshold is 10 % of RAM, GiBs), so a large file's whole
/// write-out would wait at the end of the transfer.
const DROP_STEP: u64 = 8 << 20;

pub struct Extraction {
    /// `staging/extract/`.
    pub(super) extract_dir: OwnedFd,
    /// The random directory name under `staging/extract/`.
    pub(super) name: String,
    /// `staging/extract/<name>/`.
    pub(super) root: OwnedFd,
    /// `staging/extract/<name>/files/`.
    files: OwnedFd,
    path: PathBuf,
    current: Option<Current>,
    bytes_written: u64,
    files_written: u64,
    /// The first I/O error a sink call hit (a storage fault, not a verification verdict).
    storage_error: Option<(io::ErrorKind, Option<i32>, String)>,
    /// Set once the directory has moved into quarantine or been deleted.
    pub(super) finished: bool,
    /// (path, kind, size) of every entry completed, in order: checked against the verified
    /// manifest at commit, so an extraction can only be committed under its own `Verified`.
    completed: Vec<(String, EntryKind, u64)>,
    /// The directories holding the entry being written, outermost first, with their paths.
    /// Entries in byte order keep a directory's contents together (a sibling such as `a/b-x`
    /// may sort between `a/b` and `a/b/c`; then `a/b` is simply entered and fsynced again), so
    /// a directory popped here has had its last change: it is fsynced when popped. Bounded by
    /// the bundle format's path depth.
    open_dirs: Vec<(String, OwnedFd)>,
    /// Directory fsyncs done while extracting (off the store lock).
    pub(super) dirs_synced: u64,
}

impl Extraction {
    pub(super) fn new(extract_dir: OwnedFd, store_dir: &Path) -> io::Result<Extraction> {
        let name = format!("x-{}", fsutil::random_hex(16)?);
        let root = fsutil::create_dir_excl(&extract_dir, &name, fsutil::DIR_MODE)?;
        let files = match fsutil::create_dir_excl(&root, "files", fsutil::DIR_MODE) {
            Ok(f) => f,
            Err(e) => {
                let _ = fsutil::remove_tree_at(&extract_dir, &name);
                return Err(e);
            }
        };
        let path = store_dir.join("staging").join("extract").join(&name);
        Ok(Extraction {
            extract_dir,
            name,
            root,
            files,
            path,
            current: None,
            bytes_written: 0,
            files_written: 0,
            storage_error: None,
            finished: false,
            completed: Vec::new(),
            open_dirs: Vec::new(),
            dirs_synced: 0,
        })
    }

    /// Where the extraction lives (for logs and tests).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The first storage error a sink call hit, if any: lets the caller tell "disk full" from a
    /// verification failure when the verifier returns an error.
    pub fn storage_failure(&self) -> Option<&str> {
        self.storage_error.as_ref().map(|(_, _, m)| m.as_str())
    }

    /// The first storage error as (message, error carrying the original errno when known).
    pub(super) fn storage_error(&self) -> Option<(String, io::Error)> {
        self.storage_error.as_ref().map(|(kind, raw, msg)| {
            let err = match raw {
                Some(code) => io::Error::from_raw_os_error(*code),
                None => io::Error::new(*kind, msg.clone()),
            };
            (msg.clone(), err)
        })
    }

    /// True if exactly these entries (path, kind, size, in order) were completed.
    pub(super) fn matches(&self, entries: &[Entry]) -> bool {
        self.completed.len() == entries.len()
            && self
                .completed
                .iter()
                .zip(entries)
                .all(|((p, k, n), e)| *p == e.path && *k == e.kind && *n == e.size)
    }

    pub(super) fn has_open_file(&self) -> bool {
        self.current.is_some()
    }

    pub(super) fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Deletes the extraction now (also done on drop).
    pub fn discard(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if self.finished {
            return;
        }
        self.current = None;
        if let Err(e) = fsutil::remove_tree_at(&self.extract_dir, &self.name) {
            tracing::error!(path = %self.path.display(), error = %e, "could not remove staging extraction");
        }
        let _ = fsutil::fsync(&self.extract_dir);
        self.finished = true;
    }

    fn track<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if self.storage_error.is_none() {
                self.storage_error = Some((e.kind(), e.raw_os_error(), e.to_string()));
            }
            // Nothing received after a failure is trustworthy; close any half-written file.
            self.current = None;
        }
        r
    }

    /// Makes `open_dirs` the parent directories of `comps[..n-1]` (creating them as needed,
    /// mode 0755): directories the entry is not in are fsynced and closed, the missing ones
    /// opened.
    fn enter(&mut self, comps: &[&str]) -> io::Result<()> {
        let parents = comps.len().saturating_sub(1);
        let mut keep = 0;
        while keep < parents
            && keep < self.open_dirs.len()
            && self.open_dirs[keep].0 == comps[..=keep].join("/")
        {
            keep += 1;
        }
        while self.open_dirs.len() > keep {
            if let Some((_, fd)) = self.open_dirs.pop() {
                fsutil::fsync(&fd)?;
                self.dirs_synced += 1;
            }
        }
        for i in keep..parents {
            let fd = {
                let base = match self.open_dirs.last() {
                    Some((_, fd)) => fd.as_fd(),
                    None => self.files.as_fd(),
                };
                fsutil::ensure_dir_at(base, comps[i], fsutil::DIR_MODE)?
            };
            self.open_dirs.push((comps[..=i].join("/"), fd));
        }
        Ok(())
    }

    /// The directory the current entry goes into.
    fn base(&self) -> BorrowedFd<'_> {
        match self.open_dirs.last() {
            Some((_, fd)) => fd.as_fd(),
            None => self.files.as_fd(),
        }
    }

    /// fsyncs the directories still open, innermost first, then `files/`: what is left for
    /// `Store::commit` to do under the lock (at most the path depth plus one). Returns how many.
    pub(super) fn sync_open_dirs(&mut self) -> io::Result<u64> {
        let mut n = 0;
        while let Some((_, fd)) = self.open_dirs.pop() {
            fsutil::fsync(&fd)?;
            n += 1;
        }
        fsutil::fsync(&self.files)?;
        Ok(n + 1)
    }

    /// What both entry kinds do first: refuse while a file is open (`busy` says which call),
    /// open the directories above `path`, and return its last component, to create in
    /// [`base`](Self::base).
    fn enter_parent<'p>(&mut self, path: &'p str, busy: &'static str) -> io::Result<&'p str> {
        if self.current.is_some() {
            return Err(io::Error::other(busy));
        }
        let comps = fsutil::components(path)?;
        self.enter(&comps)?;
        Ok(comps.last().copied().unwrap_or(""))
    }

    fn do_create_dir(&mut self, entry: &Entry) -> io::Result<()> {
        let last = self.enter_parent(&entry.path, "create_dir while a file is open")?;
        // A directory may already exist as the implicit parent of an earlier file entry.
        fsutil::ensure_dir_at(self.base(), last, fsutil::DIR_MODE)?;
        self.completed.push((entry.path.clone(), EntryKind::Dir, 0));
        Ok(())
    }

    fn do_begin_file(&mut self, entry: &Entry) -> io::Result<()> {
        let last = self.enter_parent(&entry.path, "begin_file while another file is open")?;
        let file = fsutil::create_file_excl(self.base(), last, file_mode(entry.executable))?;
        self.current = Some(Current {
            file,
            path: entry.path.clone(),
            expected: entry.size,
            written: 0,
            drop_behind: fsutil::DropBehind::new(DROP_STEP),
        });
        Ok(())
    }

    fn do_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let cur = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("write without begin_file"))?;
        let new_len = cur.written.saturating_add(bytes.len() as u64);
        if new_len > cur.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: more bytes than the manifest size {}",
                    cur.path, cur.expected
                ),
            ));
        }
        cur.file.write_all(bytes)?;
        cur.written = new_len;
        self.bytes_written += bytes.len() as u64;
        // Advice only; `end_file`'s fsync is what makes the bytes durable.
        cur.drop_behind.advance(&cur.file, cur.written);
        Ok(())
    }

    fn do_end_file(&mut self, entry: &Entry) -> io::Result<()> {
        let cur = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("end_file without begin_file"))?;
        if cur.path != entry.path || cur.written != cur.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: wrote {} of {} bytes before end_file",
                    cur.path, cur.written, cur.expected
                ),
            ));
        }
        // fsync now (bounded open fds for bundles with many files); an error is final.
        cur.file.sync_all()?;
        self.files_written += 1;
        self.completed
            .push((entry.path.clone(), EntryKind::File, entry.size));
        Ok(())
    }
}

impl FileSink for Extraction {
    fn create_dir(&mut self, entry: &Entry) -> io::Result<()> {
        let r = self.do_create_dir(entry);
        self.track(r)
    }
    fn begin_file(&mut self, entry: &Entry) -> io::Result<()> {
        let r = self.do_begin_file(entry);
        self.track(r)
    }
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let r = self.do_write(bytes);
        self.track(r)
    }
    fn end_file(&mut self, entry: &Entry) -> io::Result<()> {
        let r = self.do_end_file(entry);
        self.track(r)
    }
}

impl Drop for Extraction {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreConfig};
    use super::*;

    fn entry(kind: EntryKind, path: &str, body: &[u8]) -> Entry {
        Entry {
            kind,
            path: path.into(),
            size: body.len() as u64,
            blake3: *blake3::hash(body).as_bytes(),
            executable: false,
        }
    }

    #[test]
    fn directories_are_fsynced_as_the_manifest_leaves_them_not_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let mut ext = store.stage_extract().unwrap();
        // 600 directories, each with a file, and a sibling that sorts between a directory and
        // its contents (`d000-x` < `d000/f`).
        let mut entries = Vec::new();
        for i in 0..600 {
            entries.push(entry(EntryKind::Dir, &format!("top/d{i:03}"), b""));
            if i == 0 {
                entries.push(entry(EntryKind::File, "top/d000-x", b"sibling"));
            }
            entries.push(entry(EntryKind::File, &format!("top/d{i:03}/f"), b"body"));
        }
        entries.insert(0, entry(EntryKind::Dir, "top", b""));
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            sorted.iter().map(|e| &e.path).collect::<Vec<_>>(),
            entries.iter().map(|e| &e.path).collect::<Vec<_>>(),
            "the test's manifest is in byte order"
        );
        for e in &entries {
            match e.kind {
                EntryKind::Dir => ext.create_dir(e).unwrap(),
                _ => {
                    ext.begin_file(e).unwrap();
                    let body: &[u8] = if e.path.ends_with("-x") {
                        b"sibling"
                    } else {
                        b"body"
                    };
                    ext.write(body).unwrap();
                    ext.end_file(e).unwrap();
                }
            }
        }
        // Every directory but the ones still open was fsynced on the way, off the lock.
        assert_eq!(ext.dirs_synced, 599, "synced while extracting");
        // What commit does under the store lock: the open path (top, d599) and files/.
        assert_eq!(ext.sync_open_dirs().unwrap(), 3);
        assert!(ext.matches(&entries));
        assert!(ext.path().join("files/top/d599/f").is_file());
    }
}
