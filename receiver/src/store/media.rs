//! Staged spool volumes: authenticated volumes copied off removable media, kept until their
//! object is decided, so volumes of one bundle may arrive on separate media at different times.
//!
//! ```text
//! DIR/staging/media/<object-id>/vol-<index>-<geometry>.sluicevol   a copy (header + checked records)
//! DIR/staging/media/<object-id>/t-<random>                        a copy in progress (removed on open)
//! ```
//!
//! `<geometry>` is 16 hex digits naming the header's (volume count, object length, frame length),
//! so a hostile volume claiming another geometry for a real object id is kept beside the real
//! one, never in its place; `import` feeds the geometry with the most records
//! (receiver/src/commands/import.rs).
//!
//! Same discipline as the rest of the store: directory-fd relative, no-follow, create-new,
//! the copy fsynced before it is renamed (no-replace) into its final name, then the directory
//! fsynced. Staged volumes have their own quota ([`MediaPolicy::quota_bytes`], separate from the
//! objects' staging quota, so media can never starve `listen`) and expire
//! ([`MediaPolicy::expiry`]) when no volume of their object arrived for that long.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;
use sluice_common::bundle::BundleId;

use super::error::{StoreError, ioe};
use super::fsutil;
pub use super::handle::MediaPolicy;
use super::handle::Store;
use super::reconcile::parse_bundle_id;
use super::staging::parse_object_id;

const MEDIA_DIR: &str = "media";
/// Bytes read from the medium per read call while copying (whole records at a time).
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

/// What staging one volume did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staged {
    /// Copied; this many records passed the check.
    New { records: u64 },
    /// A staged copy of the same volume (same geometry) already has at least as many records.
    AlreadyStaged { records: u64 },
    /// Not one record passed the check: nothing was kept.
    NoValidRecords,
}

/// One volume to stage: where its records are and how to judge each.
pub struct VolumeCopy<'a> {
    pub object_id: [u8; 16],
    pub index: u16,
    /// Fingerprint of the header's geometry ([`geometry_id`]).
    pub geometry: u64,
    /// The header as read from the medium (written first).
    pub header: &'a [u8],
    pub source: &'a File,
    pub body_offset: u64,
    /// Whole records present on the medium.
    pub records: u64,
    pub frame_len: usize,
}

/// A staged volume, opened for reading.
pub struct StagedVolume {
    pub index: u16,
    pub file: File,
    pub len: u64,
}

/// One object's staged volumes, for `sluice-recv staging list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedMedia {
    pub object_id: [u8; 16],
    /// (volume index, geometry fingerprint or `None` for a pre-geometry name, bytes)
    pub volumes: Vec<(u16, Option<u64>, u64)>,
    pub bytes: u64,
    /// When the newest volume was staged.
    pub newest: SystemTime,
}

/// The geometry fingerprint of a volume header: the first 8 bytes of BLAKE3 over volume count,
/// object length and frame length (not secret; it only keeps geometries apart on disk).
pub fn geometry_id(volume_count: u16, object_len: u64, frame_len: u32) -> u64 {
    let mut b = [0u8; 14];
    b[..2].copy_from_slice(&volume_count.to_be_bytes());
    b[2..10].copy_from_slice(&object_len.to_be_bytes());
    b[10..].copy_from_slice(&frame_len.to_be_bytes());
    let h = blake3::hash(&b);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

pub fn volume_name(index: u16, geometry: u64) -> String {
    format!("vol-{index:03}-{geometry:016x}.sluicevol")
}

/// Index and geometry of a staged volume name; `vol-NNN.sluicevol` (staged before geometry was
/// part of the name) has no geometry.
fn parse_volume_name(name: &str) -> Option<(u16, Option<u64>)> {
    let rest = name.strip_prefix("vol-")?.strip_suffix(".sluicevol")?;
    let (digits, geometry) = match rest.split_once('-') {
        Some((d, g)) if g.len() == 16 && g.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (d, Some(u64::from_str_radix(g, 16).ok()?))
        }
        Some(_) => return None,
        None => (rest, None),
    };
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, geometry))
}

impl Store {
    /// Replaces the media staging policy (`import --media-quota`, `--media-expiry-days`).
    pub fn set_media_policy(&mut self, policy: MediaPolicy) {
        self.media_policy = policy;
    }

    /// Bytes of staged volumes, and the media quota.
    pub fn media_usage(&self) -> (u64, u64) {
        (self.media_bytes, self.media_policy.quota_bytes)
    }

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

    /// Length of the staged copy named `name` of `object_id`, if there is one.
    fn staged_len(&self, object_id: [u8; 16], name: &str) -> Result<Option<u64>, StoreError> {
        let root = self.media_root()?;
        let obj = hex::encode(object_id);
        let dir = match fsutil::open_dir_at(&root, &obj) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ioe(format!("open staging/media/{obj}"))(e)),
        };
        match fsutil::type_at(&dir, name)
            .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?
        {
            None => Ok(None),
            Some(_) => Ok(Some(
                fsutil::stat_at(&dir, name)
                    .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?
                    .st_size as u64,
            )),
        }
    }

    /// Copies an authenticated volume into staging: its header, then each record that `keep`
    /// accepts (the others never reach the disk). The copy counts against the media quota as
    /// it is written and stops with [`StoreError::MediaQuota`] before passing it. A staged copy
    /// of the same volume and geometry with at least as many records is kept; one with fewer
    /// (a truncated earlier copy) is replaced.
    pub fn stage_media_volume(
        &mut self,
        v: &VolumeCopy<'_>,
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Staged, StageError> {
        let name = volume_name(v.index, v.geometry);
        let header_len = v.header.len() as u64;
        let frame_len = v.frame_len.max(1) as u64;
        let existing = self.staged_len(v.object_id, &name)?;
        let existing_records = existing.map(|l| l.saturating_sub(header_len) / frame_len);
        if let Some(have) = existing_records
            && have >= v.records
        {
            return Ok(Staged::AlreadyStaged { records: have });
        }
        let root = self.media_root()?;
        let obj = hex::encode(v.object_id);
        let dir = fsutil::ensure_dir_at(&root, &obj, fsutil::PRIVATE_DIR_MODE)
            .map_err(ioe(format!("create staging/media/{obj}")))?;
        let tmp = format!("t-{}", fsutil::random_hex(8).map_err(ioe("random"))?);
        let shown = format!("staging/media/{obj}/{tmp}");
        let file =
            fsutil::create_file_excl(&dir, &tmp, 0o600).map_err(ioe(format!("create {shown}")))?;
        // Room left for this copy; the replaced copy's bytes are freed only once it is replaced.
        let room = self
            .media_policy
            .quota_bytes
            .saturating_sub(self.media_bytes);
        let copied = copy_checked(&file, v, keep, room, &shown).and_then(|kept| {
            file.sync_data()
                .map_err(|e| StageError::Store(ioe(format!("fsync {shown}"))(e)))?;
            Ok(kept)
        });
        drop(file);
        let kept = match copied {
            Ok(kept) if kept > existing_records.unwrap_or(0) => kept,
            other => {
                let _ = fsutil::unlink_at(&dir, &tmp);
                return match other {
                    Err(StageError::Store(StoreError::MediaQuota { needed, .. })) => {
                        Err(StageError::Store(StoreError::MediaQuota {
                            needed,
                            used: self.media_bytes,
                            quota: self.media_policy.quota_bytes,
                        }))
                    }
                    Err(e) => Err(e),
                    Ok(0) if existing_records.is_none() => {
                        // Nothing staged for the object yet: leave no empty directory behind.
                        let _ =
                            fsutil::remove_tree_at(&root, &obj).and_then(|()| fsutil::fsync(&root));
                        Ok(Staged::NoValidRecords)
                    }
                    Ok(_) => Ok(Staged::AlreadyStaged {
                        records: existing_records.unwrap_or(0),
                    }),
                };
            }
        };
        if let Some(old) = existing {
            fsutil::unlink_at(&dir, &name)
                .map_err(ioe(format!("remove staging/media/{obj}/{name}")))?;
            self.media_bytes = self.media_bytes.saturating_sub(old);
        }
        fsutil::rename_noreplace(&dir, &tmp, &dir, &name)
            .map_err(ioe(format!("rename {shown} to {name}")))?;
        fsutil::fsync(&dir).map_err(ioe(format!("fsync staging/media/{obj}")))?;
        fsutil::fsync(&root).map_err(ioe("fsync staging/media"))?;
        self.media_bytes += header_len + kept * frame_len;
        Ok(Staged::New { records: kept })
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
            let Some((index, _)) = parse_volume_name(&name) else {
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

    /// Every object with staged volumes, with sizes and ages (`sluice-recv staging list`).
    pub fn staged_media(&self) -> Result<Vec<StagedMedia>, StoreError> {
        let root = self.media_root()?;
        let mut out = Vec::new();
        for (obj, _) in fsutil::list_dir(&root).map_err(ioe("list staging/media"))? {
            let Some(object_id) = parse_object_id(&obj) else {
                continue;
            };
            let dir = fsutil::open_dir_at(&root, &obj)
                .map_err(ioe(format!("open staging/media/{obj}")))?;
            let mut entry = StagedMedia {
                object_id,
                volumes: Vec::new(),
                bytes: 0,
                newest: SystemTime::UNIX_EPOCH,
            };
            for (name, _) in
                fsutil::list_dir(&dir).map_err(ioe(format!("list staging/media/{obj}")))?
            {
                let Some((index, geometry)) = parse_volume_name(&name) else {
                    continue;
                };
                let st = fsutil::stat_at(&dir, &name)
                    .map_err(ioe(format!("stat staging/media/{obj}/{name}")))?;
                let mtime = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(st.st_mtime).unwrap_or(0));
                entry.newest = entry.newest.max(mtime);
                entry.bytes += st.st_size as u64;
                entry.volumes.push((index, geometry, st.st_size as u64));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Removes every object whose newest staged volume is older than the policy's expiry, as of
    /// `now`; returns what was removed.
    pub fn expire_media(&mut self, now: SystemTime) -> Result<Vec<StagedMedia>, StoreError> {
        let expiry = self.media_policy.expiry;
        let mut removed = Vec::new();
        for m in self.staged_media()? {
            if now.duration_since(m.newest).is_ok_and(|age| age > expiry) {
                self.remove_staged_volumes(m.object_id)?;
                removed.push(m);
            }
        }
        Ok(removed)
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

/// Copies the header and every record `keep` accepts; returns the records kept. Stops with
/// `MediaQuota` before the copy would pass `room` bytes.
fn copy_checked(
    dest: &File,
    v: &VolumeCopy<'_>,
    keep: &mut dyn FnMut(&[u8]) -> bool,
    room: u64,
    shown: &str,
) -> Result<u64, StageError> {
    let store_err = |e: io::Error| StageError::Store(ioe(format!("write {shown}"))(e));
    let frame_len = v.frame_len.max(1);
    let mut w = BufWriter::with_capacity(COPY_BUFFER, dest);
    // Only `needed` means anything here: the caller knows the quota and what it had used.
    let within_room = |written: u64| -> Result<(), StageError> {
        if written > room {
            return Err(StoreError::MediaQuota {
                needed: written,
                used: 0,
                quota: 0,
            }
            .into());
        }
        Ok(())
    };
    let mut written = v.header.len() as u64;
    within_room(written)?;
    w.write_all(v.header).map_err(store_err)?;
    let per_read = (COPY_BUFFER / frame_len).max(1) as u64;
    let mut buf = vec![0u8; per_read as usize * frame_len];
    let mut done = 0u64;
    let mut kept = 0u64;
    while done < v.records {
        let n = (v.records - done).min(per_read);
        let bytes = &mut buf[..n as usize * frame_len];
        v.source
            .read_exact_at(bytes, v.body_offset + done * frame_len as u64)
            .map_err(StageError::Source)?;
        for record in bytes.chunks_exact(frame_len) {
            if !keep(record) {
                continue;
            }
            written += frame_len as u64;
            within_room(written)?;
            w.write_all(record).map_err(store_err)?;
            kept += 1;
        }
        done += n;
    }
    w.flush().map_err(store_err)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::super::StoreConfig;
    use super::*;

    const FRAME: usize = 10;

    fn source(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("src");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        (d, f)
    }

    fn copy<'a>(id: [u8; 16], index: u16, src: &'a File, records: u64) -> VolumeCopy<'a> {
        VolumeCopy {
            object_id: id,
            index,
            geometry: 7,
            header: b"HEADER",
            source: src,
            body_offset: 0,
            records,
            frame_len: FRAME,
        }
    }

    fn all(_: &[u8]) -> bool {
        true
    }

    #[test]
    fn stages_lists_replaces_shorter_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let (_d, src) = source(&[7u8; 3000]);
        let id = [5u8; 16];
        // Volume 2 of object `id`, `records` records long.
        let stage = |store: &mut Store, records: u64| {
            store
                .stage_media_volume(&copy(id, 2, &src, records), &mut all)
                .unwrap()
        };
        assert_eq!(stage(&mut store, 100), Staged::New { records: 100 });
        assert_eq!(
            store.staged_len(id, &volume_name(2, 7)).unwrap(),
            Some(1006)
        );
        // Same or fewer records again: kept as is.
        assert_eq!(
            stage(&mut store, 50),
            Staged::AlreadyStaged { records: 100 }
        );
        // More (an intact copy after a truncated one): replaces.
        assert_eq!(stage(&mut store, 200), Staged::New { records: 200 });
        let vols = store.staged_volumes(id).unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!((vols[0].index, vols[0].len), (2, 2006));
        assert_eq!(store.media_usage().0, 2006);
        // Media bytes are not in the objects' staging quota.
        assert_eq!(store.staging_usage().0, 0);
        let listed = store.staged_media().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].volumes, vec![(2, Some(7), 2006)]);
        drop(store);
        // Reopening counts the staged bytes again and removes debris.
        let media = dir.path().join("staging/media").join(hex::encode(id));
        std::fs::write(media.join("t-deadbeef"), b"half").unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.media_usage().0, 2006);
        assert!(!media.join("t-deadbeef").exists());
        store.remove_staged_volumes(id).unwrap();
        assert!(!media.exists());
        assert_eq!(store.media_usage().0, 0);
    }

    #[test]
    fn junk_records_never_land_and_an_all_junk_volume_stages_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        // Records whose first byte is 1 are "valid"; every other one is junk.
        let mut body = vec![0u8; 100 * FRAME];
        for r in (0..100).step_by(4) {
            body[r * FRAME] = 1;
        }
        let (_d, src) = source(&body);
        let mut valid = |r: &[u8]| r[0] == 1;
        assert_eq!(
            store
                .stage_media_volume(&copy([1; 16], 0, &src, 100), &mut valid)
                .unwrap(),
            Staged::New { records: 25 }
        );
        assert_eq!(store.media_usage().0, 6 + 25 * FRAME as u64);
        let (_z, zeros) = source(&vec![0u8; 100 * FRAME]);
        assert_eq!(
            store
                .stage_media_volume(&copy([2; 16], 0, &zeros, 100), &mut valid)
                .unwrap(),
            Staged::NoValidRecords
        );
        assert!(
            !dir.path()
                .join("staging/media")
                .join(hex::encode([2u8; 16]))
                .exists()
        );
    }

    #[test]
    fn the_media_quota_stops_a_copy_and_leaves_the_objects_quota_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(
            dir.path(),
            StoreConfig {
                staging_quota_bytes: 4000,
            },
        )
        .unwrap();
        store.set_media_policy(MediaPolicy {
            quota_bytes: 4000,
            ..MediaPolicy::default()
        });
        let (_d, src) = source(&[1u8; 8000]);
        store
            .stage_media_volume(&copy([1; 16], 0, &src, 300), &mut all)
            .unwrap();
        let err = store
            .stage_media_volume(&copy([1; 16], 1, &src, 300), &mut all)
            .unwrap_err();
        assert!(
            matches!(err, StageError::Store(StoreError::MediaQuota { .. })),
            "{err:?}"
        );
        // The refused copy left nothing behind, and the used bytes never passed the quota.
        assert_eq!(store.media_usage(), (3006, 4000));
        assert_eq!(store.staged_volumes([1; 16]).unwrap().len(), 1);
        // A transfer from `listen` still gets its reservation.
        store.create_object([2; 16], 3000).unwrap();
    }

    #[test]
    fn a_second_geometry_is_kept_beside_the_first_and_expiry_removes_old_objects() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let (_d, src) = source(&[3u8; 1000]);
        let mut other = copy([4; 16], 1, &src, 5);
        other.geometry = 8;
        store
            .stage_media_volume(&copy([4; 16], 1, &src, 50), &mut all)
            .unwrap();
        store.stage_media_volume(&other, &mut all).unwrap();
        assert_eq!(store.staged_volumes([4; 16]).unwrap().len(), 2);
        let now = SystemTime::now();
        assert!(store.expire_media(now).unwrap().is_empty());
        let later = now + MediaPolicy::DEFAULT_EXPIRY + Duration::from_secs(60);
        let gone = store.expire_media(later).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].object_id, [4; 16]);
        assert_eq!(store.media_usage().0, 0);
        assert!(store.staged_media().unwrap().is_empty());
    }

    #[test]
    fn volume_names_parse_with_and_without_geometry() {
        assert_eq!(
            parse_volume_name(&volume_name(3, 0xab)),
            Some((3, Some(0xab)))
        );
        assert_eq!(parse_volume_name("vol-003.sluicevol"), Some((3, None)));
        assert_eq!(parse_volume_name("vol-003-xyz.sluicevol"), None);
        assert_eq!(parse_volume_name("vol-3.sluicevol"), None);
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
        std::os::unix::fs::symlink(&target, obj.join(volume_name(0, 7))).unwrap();
        let (_d, src) = source(&[9u8; 100]);
        // The symlink is an existing entry: staging refuses to open it as a volume.
        let listed = store.staged_volumes([3; 16]);
        assert!(listed.is_err());
        let _ = store.stage_media_volume(&copy([3; 16], 0, &src, 10), &mut all);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
