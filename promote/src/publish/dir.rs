//! `dir` target: the entry's files appear as `PATH/<bundle-id>/…` all at once. They are copied
//! (re-hashed against the receipt while copying) into `PATH/.sluice-tmp-<id>`, fsynced, and
//! renamed into place with RENAME_NOREPLACE. An existing `PATH/<bundle-id>` that matches the
//! receipt means "already published"; one that does not is a conflict.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{CWD, RenameFlags};

use super::{Entry, PubError, hash_copy};

pub fn preflight(base: &Path) -> Result<(), PubError> {
    fs::create_dir_all(base)
        .map_err(|e| PubError::Retry(format!("dir target {}: {e}", base.display())))?;
    let m = fs::symlink_metadata(base)
        .map_err(|e| PubError::Retry(format!("dir target {}: {e}", base.display())))?;
    if !m.is_dir() {
        return Err(PubError::Retry(format!(
            "dir target {} is not a directory",
            base.display()
        )));
    }
    Ok(())
}

fn io_retry(what: &str) -> impl Fn(io::Error) -> PubError + '_ {
    move |e| PubError::Retry(format!("{what}: {e}"))
}

/// Does `root` hold exactly the receipt's files (same bytes)? Extra files make it a mismatch.
fn matches_receipt(root: &Path, e: &Entry) -> io::Result<bool> {
    let mut want = std::collections::BTreeSet::new();
    for r in &e.receipt.entries {
        want.insert(r.path.clone());
        let p = root.join(&r.path);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => return Ok(false),
        };
        match r.kind.as_str() {
            "dir" if m.is_dir() => {}
            "file" if m.is_file() => {
                if m.len() != r.size_bytes || Some(hash_copy(&p, None)?) != r.blake3 {
                    return Ok(false);
                }
            }
            _ => return Ok(false),
        }
    }
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        for ent in fs::read_dir(&d)? {
            let ent = ent?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = ent.file_type()?;
            if ft.is_dir() {
                stack.push((ent.path(), r.clone()));
                // Implicit parent directories are not receipt entries.
                continue;
            }
            if !want.contains(&r) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

pub fn publish(base: &Path, e: &Entry) -> Result<String, PubError> {
    preflight(base)?;
    let fin = base.join(&e.id);
    if fs::symlink_metadata(&fin).is_ok() {
        return if matches_receipt(&fin, e).map_err(io_retry("check existing copy"))? {
            Ok(format!("{} already present and identical", fin.display()))
        } else {
            Err(PubError::Fatal(format!(
                "{} exists with different content; refusing to replace it",
                fin.display()
            )))
        };
    }
    let tmp = base.join(format!(".sluice-tmp-{}", e.id));
    if fs::symlink_metadata(&tmp).is_ok() {
        // Left by an interrupted attempt: never visible under the final name, so just redo it.
        fs::remove_dir_all(&tmp).map_err(io_retry("remove interrupted staging"))?;
    }
    fs::create_dir(&tmp).map_err(io_retry("create staging dir"))?;
    let mut dirs = vec![tmp.clone()];
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut entries: Vec<_> = e.receipt.entries.iter().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for r in entries {
        let to = tmp.join(&r.path);
        if let Some(parent) = to.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent).map_err(io_retry("create directory"))?;
                dirs.push(parent.to_path_buf());
            }
        }
        if r.kind == "dir" {
            if !to.exists() {
                fs::create_dir(&to).map_err(io_retry("create directory"))?;
            }
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
                .map_err(io_retry("chmod"))?;
            dirs.push(to);
            continue;
        }
        let mode = if r.executable { 0o755 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&to)
            .map_err(io_retry("create file"))?;
        let h = hash_copy(&e.path_of(&r.path), Some(&mut out)).map_err(io_retry("copy"))?;
        if Some(&h) != r.blake3.as_ref() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(PubError::Fatal(format!(
                "{}: quarantine copy no longer matches its receipt; not publishing",
                r.path
            )));
        }
        out.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_retry("chmod"))?;
        out.sync_all().map_err(io_retry("fsync"))?;
        files += 1;
        bytes += r.size_bytes;
    }
    for d in dirs.iter().rev() {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io_retry("fsync directory"))?;
    }
    rustix::fs::renameat_with(CWD, &tmp, CWD, &fin, RenameFlags::NOREPLACE)
        .map_err(|e| PubError::Retry(format!("rename into {}: {e}", fin.display())))?;
    File::open(base)
        .and_then(|f| f.sync_all())
        .map_err(io_retry("fsync target directory"))?;
    Ok(format!("{} ({files} files, {bytes} bytes)", fin.display()))
}
