//! Staged objects under `staging/objects/`: the `.part` file a transfer is reassembled into, its
//! `.progress` blob, and the staging quota that every new reservation is checked against (so a
//! flood of new objects cannot fill the disk). Nothing here decides anything about a bundle.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::{FallocateFlags, FileType};

use super::error::{StoreError, ioe};
use super::fsutil;
use super::handle::{OpenObject, Store};

/// Largest `.progress` blob accepted from the transport layer.
pub const MAX_PROGRESS_BYTES: u64 = 16 << 20;

/// A transport object id (16 bytes; `BundleId::object_id` for bundles).
pub type ObjectId = [u8; 16];
/// Staged objects with their saved progress blobs.
pub type ProgressList = Vec<(ObjectId, Vec<u8>)>;

/// A staged object's reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectFile {
    pub object_id: [u8; 16],
    pub len: u64,
    /// True when the `.part` file already existed with this length (a resumed transfer).
    pub resumed: bool,
}

/// A `.part` object as listed by [`Store::staged_objects`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialObject {
    pub object_id: [u8; 16],
    pub len: u64,
    /// A `.progress` blob exists: a restart of `listen` resumes it.
    pub resumable: bool,
    pub modified: std::time::SystemTime,
}

/// `staging/objects/<hex>.part`: the object's bytes.
pub(super) fn part_name(id: &[u8; 16]) -> String {
    format!("{}.part", hex::encode(id))
}

/// `staging/objects/<hex>.progress`: the transport's saved progress for it.
pub(super) fn progress_name(id: &[u8; 16]) -> String {
    format!("{}.progress", hex::encode(id))
}

/// The object id a staging file name starts with, if it is one.
pub(super) fn parse_object_id(hex_str: &str) -> Option<[u8; 16]> {
    if hex_str.len() != 32 {
        return None;
    }
    let v = hex::decode(hex_str).ok()?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&v);
    Some(id)
}

impl Store {
    /// Bytes reserved by staged objects, and the quota. Staged spool volumes are counted
    /// apart (`Store::media_usage`), so hostile media cannot refuse a transfer from `listen`.
    pub fn staging_usage(&self) -> (u64, u64) {
        (
            self.reserved.values().sum::<u64>(),
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

    pub(super) fn object(&mut self, object_id: &[u8; 16]) -> Result<&mut OpenObject, StoreError> {
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
        let written = o.file.write_all_at(bytes, offset);
        self.removed_on_failure(object_id, "write", written)
    }

    /// fsyncs the object's `.part` file. On failure the object is removed (no retry-then-trust).
    pub fn sync_object(&mut self, object_id: [u8; 16]) -> Result<(), StoreError> {
        let o = self.object(&object_id)?;
        let synced = o.file.sync_data();
        self.removed_on_failure(object_id, "fsync", synced)
    }

    /// After a failed `what` (write, fsync) the object's bytes are no longer trustworthy: it is
    /// removed, and the error says so. Both writers of a `.part` file follow this one rule.
    fn removed_on_failure(
        &mut self,
        object_id: [u8; 16],
        what: &str,
        result: io::Result<()>,
    ) -> Result<(), StoreError> {
        result.map_err(|e| {
            let _ = self.remove_object(object_id);
            ioe(format!(
                "{what} staging/objects/{} (object removed)",
                part_name(&object_id)
            ))(e)
        })
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

    /// Every `.part` object in `staging/objects/` with its length, whether it can resume (has
    /// a `.progress`), and when it was last written (`sluice-recv staging list`).
    pub fn staged_objects(&self) -> Result<Vec<PartialObject>, StoreError> {
        let mut out = Vec::new();
        for (name, _) in fsutil::list_dir(&self.objects).map_err(ioe("list staging/objects"))? {
            let Some(id) = name.strip_suffix(".part").and_then(parse_object_id) else {
                continue;
            };
            let st = fsutil::stat_at(&self.objects, &name)
                .map_err(ioe(format!("stat staging/objects/{name}")))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                continue;
            }
            let resumable = fsutil::type_at(&self.objects, &progress_name(&id))
                .map_err(ioe(format!("stat staging/objects/{}", progress_name(&id))))?
                == Some(FileType::RegularFile);
            out.push(PartialObject {
                object_id: id,
                len: st.st_size as u64,
                resumable,
                modified: std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(st.st_mtime).unwrap_or(0)),
            });
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
    /// transfer kept an open fd and its reservation until restart .
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
}
