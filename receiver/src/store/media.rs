//! Staged spool volumes: authenticated volumes copied off removable media, kept until their
//! object is decided, so volumes of one bundle may arrive on separate media at different times.
//!
//! ```text
//! DIR/staging/media/<object-id>/vol-<index>.sluicevol     a copy (header + whole records only)
//! DIR/staging/media/<object-id>/t-<random>                a copy in progress (removed on open)
//! ```
//!
//! Same discipline as the rest of the store: directory-fd relative, no-follow, create-new,
//! the copy fsynced before it is renamed (no-replace) into its final name, then the directory
//! fsynced. The bytes count against the staging quota together with `staging/objects/`.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use rustix::fs::FileType;
use sluice_common::bundle::BundleId;

use super::error::{StoreError, ioe};
use super::fsutil;
use super::handle::Store;
use super::reconcile::parse_bundle_id;
use super::staging::parse_object_id;

const MEDIA_DIR: &str = "media";
const COPY_BUFFER: usize = 1 << 20;

/// Why staging a volume failed: the source medium, or the store.
#[derive(Debug)]
pub enum StageError {
    /// Reading the source failed (EIO on a failing disc, the medium removed).
    Source(io::Error),
    Store(StoreError),
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        StageError::Store(e)
    }
}

/// A staged volume, opened for reading.
pub struct StagedVolume {
    pub index: u16,
    pub file: File,
    pub len: u64,
}

pub fn volume_name(index: u16) -> String {
    format!("vol-{index:03}.sluicevol")
}

fn parse_volume_name(name: &str) -> Option<u16> {
    let digits = name.strip_prefix("vol-")?.strip_suffix(".sluicevol")?;
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Store {
    fn media_root(&self) -> Result<OwnedFd, StoreError> {
        fsutil::ensure_dir_at(&self._staging, MEDIA_DIR, fsutil::PRIVATE_DIR_MODE)
            .map_err(ioe("open staging/media"))
    }

    /// Bytes of staged volumes; also removes copies a crash left half-done. Called on open.
    pub(super) fn scan_media(&mut self) -> Result<u64, StoreError> {
        let root = self.media_root()?;
        let mut total = 0u64;
        for (obj, lossy) in fsutil::list_dir(&root).map_err(ioe("list staging/media"))? {
            let shown = format!("staging/media/{obj}");
            if lossy
                || parse_object_id(&obj).is_none()
                || fsutil::type_at(&root, &obj).map_err(ioe(format!("stat {shown}")))?
                    != Some(FileType::Directory)
            {
                fsutil::remove_tree_at(&root, &obj).map_err(ioe(format!("remove {shown}")))?;
                continue;
            }
            let dir = fsutil::open_dir_at(&root, &obj).map_err(ioe(format!("open {shown}")))?;
            for (name, _) in fsutil::list_dir(&dir).map_err(ioe(format!("list {shown}")))? {
                let is_file = fsutil::type_at(&dir, &name)
                    .map_err(ioe(format!("stat {shown}/{name}")))?
                    == Some(FileType::RegularFile);
                if parse_volume_name(&name).is_some() && is_file {
                    let st = fsutil::stat_at(&dir, &name)
                        .map_err(ioe(format!("stat {shown}/{name}")))?;
                    total += st.st_size as u64;
                } else {
                    fsutil::remove_tree_at(&dir, &name)
                        .map_err(ioe(format!("remove {shown}/{name}")))?;
                }
            }
            fsutil::fsync(&dir).map_err(ioe(format!("fsync {shown}")))?;
        }
        fsutil::fsync(&root).map_err(ioe("fsync staging/media"))?;
        Ok(total)
    }

    /// Length of the staged copy of volume `index` of `object_id`, if there is one.
    fn staged_volume_len(
        &self,
        object_id: [u8; 16],
        index: u16,
    ) -> Result<Option<u64>, StoreError> {
        let root = self.media_root()?;
        let obj = hex::encode(object_id);
        let dir = match fsutil::open_dir_at(&root, &obj) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ioe(format!("open staging/media/{obj}"))(e)),
        };
        let name = volume_name(index);
        match fsutil::type_at(&dir, &name)
            .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?
        {
            None => Ok(None),
            Some(_) => Ok(Some(
                fsutil::stat_at(&dir, &name)
                    .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?
                    .st_size as u64,
            )),
        }
    }

    /// Copies an authenticated volume into staging: `header` (as read from the medium), then
    /// `body_len` bytes of whole records read from `source` at `body_offset`. A staged copy of
    /// the same volume that is shorter (a truncated earlier copy) is replaced; an equal or
    /// longer one is kept and `Ok(false)` returned.
    pub fn stage_media_volume(
        &mut self,
        object_id: [u8; 16],
        index: u16,
        header: &[u8],
        source: &File,
        body_offset: u64,
        body_len: u64,
    ) -> Result<bool, StageError> {
        let total = header.len() as u64 + body_len;
        let existing = self.staged_volume_len(object_id, index)?;
        if existing.is_some_and(|have| have >= total) {
            return Ok(false);
        }
        let (used, quota) = self.staging_usage();
        let used = used.saturating_sub(existing.unwrap_or(0));
        if used.saturating_add(total) > quota {
            return Err(StoreError::Quota {
                needed: total,
                used,
                quota,
            }
            .into());
        }
        let root = self.media_root()?;
        let obj = hex::encode(object_id);
        let dir = fsutil::ensure_dir_at(&root, &obj, fsutil::PRIVATE_DIR_MODE)
            .map_err(ioe(format!("create staging/media/{obj}")))?;
        let tmp = format!("t-{}", fsutil::random_hex(8).map_err(ioe("random"))?);
        let shown = format!("staging/media/{obj}/{tmp}");
        let file =
            fsutil::create_file_excl(&dir, &tmp, 0o600).map_err(ioe(format!("create {shown}")))?;
        let copied = copy_into(&file, header, source, body_offset, body_len, &shown);
        if let Err(e) = copied.and_then(|()| {
            file.sync_data()
                .map_err(|e| StageError::Store(ioe(format!("fsync {shown}"))(e)))
        }) {
            drop(file);
            let _ = fsutil::unlink_at(&dir, &tmp);
            return Err(e);
        }
        drop(file);
        let name = volume_name(index);
        if existing.is_some() {
            fsutil::unlink_at(&dir, &name)
                .map_err(ioe(format!("remove staging/media/{obj}/{name}")))?;
            self.media_bytes = self.media_bytes.saturating_sub(existing.unwrap_or(0));
        }
        fsutil::rename_noreplace(&dir, &tmp, &dir, &name)
            .map_err(ioe(format!("rename {shown} to {name}")))?;
        fsutil::fsync(&dir).map_err(ioe(format!("fsync staging/media/{obj}")))?;
        fsutil::fsync(&root).map_err(ioe("fsync staging/media"))?;
        self.media_bytes += total;
        Ok(true)
    }

    /// Every staged volume of an object, opened (no-follow, regular files only), by index.
    pub fn staged_volumes(&self, object_id: [u8; 16]) -> Result<Vec<StagedVolume>, StoreError> {
        let root = self.media_root()?;
        let obj = hex::encode(object_id);
        let dir = match fsutil::open_dir_at(&root, &obj) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ioe(format!("open staging/media/{obj}"))(e)),
        };
        let mut out = Vec::new();
        for (name, _) in fsutil::list_dir(&dir).map_err(ioe(format!("list staging/media/{obj}")))? {
            let Some(index) = parse_volume_name(&name) else {
                continue;
            };
            let file = fsutil::open_file_read(&dir, &name)
                .map_err(ioe(format!("open staging/media/{obj}/{name}")))?;
            let len = file
                .metadata()
                .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?
                .len();
            out.push(StagedVolume { index, file, len });
        }
        out.sort_by_key(|v| v.index);
        Ok(out)
    }

    /// Objects with staged volumes (only the tests list them; `import` works from the volumes
    /// it is given).
    #[cfg(test)]
    fn staged_media_objects(&self) -> Result<Vec<[u8; 16]>, StoreError> {
        let root = self.media_root()?;
        Ok(fsutil::list_dir(&root)
            .map_err(ioe("list staging/media"))?
            .into_iter()
            .filter_map(|(n, _)| parse_object_id(&n))
            .collect())
    }

    /// Removes an object's staged volumes (after its decision). Idempotent.
    pub fn remove_staged_volumes(&mut self, object_id: [u8; 16]) -> Result<(), StoreError> {
        let freed: u64 = self.staged_volumes(object_id)?.iter().map(|v| v.len).sum();
        let root = self.media_root()?;
        let obj = hex::encode(object_id);
        fsutil::remove_tree_at(&root, &obj).map_err(ioe(format!("remove staging/media/{obj}")))?;
        fsutil::fsync(&root).map_err(ioe("fsync staging/media"))?;
        self.media_bytes = self.media_bytes.saturating_sub(freed);
        Ok(())
    }

    /// The accepted bundle whose transport object this is, if any (volumes of an accepted
    /// bundle are a replay: recorded as a duplicate, never staged).
    pub fn accepted_bundle_for_object(&self, object_id: [u8; 16]) -> Option<BundleId> {
        self.accepted
            .keys()
            .filter_map(|k| parse_bundle_id(k))
            .find(|b| b.object_id() == object_id)
    }
}

fn copy_into(
    dest: &File,
    header: &[u8],
    source: &File,
    body_offset: u64,
    body_len: u64,
    shown: &str,
) -> Result<(), StageError> {
    let store_err = |e: io::Error| StageError::Store(ioe(format!("write {shown}"))(e));
    let mut w = dest;
    w.write_all(header).map_err(store_err)?;
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut done = 0u64;
    while done < body_len {
        let n = (body_len - done).min(COPY_BUFFER as u64) as usize;
        source
            .read_exact_at(&mut buf[..n], body_offset + done)
            .map_err(StageError::Source)?;
        w.write_all(&buf[..n]).map_err(store_err)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::StoreConfig;
    use super::*;

    fn source(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("src");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        (d, f)
    }

    #[test]
    fn stages_lists_replaces_shorter_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let body = vec![7u8; 3000];
        let (_d, src) = source(&body);
        let id = [5u8; 16];
        assert!(
            store
                .stage_media_volume(id, 2, b"HEADER", &src, 1000, 1000)
                .unwrap()
        );
        assert_eq!(store.staged_volume_len(id, 2).unwrap(), Some(1006));
        // Same or shorter again: kept as is.
        assert!(
            !store
                .stage_media_volume(id, 2, b"HEADER", &src, 0, 500)
                .unwrap()
        );
        // Longer (an intact copy after a truncated one): replaces.
        assert!(
            store
                .stage_media_volume(id, 2, b"HEADER", &src, 0, 2000)
                .unwrap()
        );
        let vols = store.staged_volumes(id).unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!((vols[0].index, vols[0].len), (2, 2006));
        assert_eq!(store.staging_usage().0, 2006);
        assert_eq!(store.staged_media_objects().unwrap(), vec![id]);
        drop(store);
        // Reopening counts the staged bytes again and removes debris.
        let media = dir.path().join("staging/media").join(hex::encode(id));
        std::fs::write(media.join("t-deadbeef"), b"half").unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.staging_usage().0, 2006);
        assert!(!media.join("t-deadbeef").exists());
        store.remove_staged_volumes(id).unwrap();
        assert!(!media.exists());
        assert_eq!(store.staging_usage().0, 0);
    }

    #[test]
    fn quota_counts_staged_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(
            dir.path(),
            StoreConfig {
                staging_quota_bytes: 4000,
            },
        )
        .unwrap();
        let (_d, src) = source(&[1u8; 8000]);
        store
            .stage_media_volume([1; 16], 0, b"H", &src, 0, 3000)
            .unwrap();
        let err = store
            .stage_media_volume([1; 16], 1, b"H", &src, 0, 3000)
            .unwrap_err();
        assert!(matches!(err, StageError::Store(StoreError::Quota { .. })));
        // A new object's reservation sees the volumes too.
        assert!(matches!(
            store.create_object([2; 16], 2000),
            Err(StoreError::Quota { .. })
        ));
    }

    #[test]
    fn planted_symlink_at_a_volume_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let target = dir.path().join("outside");
        std::fs::write(&target, b"keep").unwrap();
        let obj = dir
            .path()
            .join("staging/media")
            .join(hex::encode([3u8; 16]));
        std::fs::create_dir_all(&obj).unwrap();
        std::os::unix::fs::symlink(&target, obj.join(volume_name(0))).unwrap();
        let (_d, src) = source(&[9u8; 100]);
        // The symlink is an existing entry: staging refuses to open it as a volume.
        let listed = store.staged_volumes([3; 16]);
        assert!(listed.is_err());
        let _ = store.stage_media_volume([3; 16], 0, b"H", &src, 0, 100);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
