//! Writing a bundle's spool volumes onto one or several media (docs/media.md, "Writing"): the
//! checks made before anything is written (FAT32 file size, free space, what the media already
//! hold), and writing — or, when an identical volume is already there, verifying — each volume.
//! `media_plan.rs` settles the geometry, `media_manifest.rs` keeps each medium's manifest,
//! `commands/media.rs` is the flag adapter.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice_common::exit::CommandError;
use sluice_common::size::describe_bytes;
use sluice_common::spool::{HEADER_LEN, VolumeHeader};
use sluice_common::transport::send::Sender;
use sluice_common::transport::wire::{self, LinkKey};

use crate::media_plan::{DEFAULT_VOLUME_SIZE_TEXT, Plan, sender_config, volume_name, volume_of};
use crate::prepare::Prepared;

/// `statfs` type of FAT12/16/32 (Linux `MSDOS_SUPER_MAGIC`, also what vfat mounts report).
pub const MSDOS_SUPER_MAGIC: u64 = 0x4d44;
/// The largest file FAT32 can hold: its size field is 32 bits, so every file is < 4 GiB.
pub const FAT_MAX_FILE_BYTES: u64 = (4 << 30) - 1;
/// Slack per medium for the manifests, beyond the volumes.
pub const MANIFEST_SLACK_BYTES: u64 = 1 << 20;
/// Bytes of write (and verify) buffer across all volumes of one bundle.
const WRITE_BUFFER_TOTAL: usize = 32 << 20;

/// The bundle's directory on each medium: the first 16 hex digits of its id.
pub fn bundle_dir_name(prepared: &Prepared) -> String {
    prepared.id.to_hex()[..16].to_string()
}

/// What a run does with one volume file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Not on the medium yet: created (`O_EXCL`), written, fsynced.
    Create,
    /// A file of that name is already there with this volume's exact header and length: its
    /// records are compared with what this run produces, and it is left as it is.
    Verify,
}

/// One bundle's volume set as it will be (or was) written.
pub struct Job {
    pub prepared: Prepared,
    pub plan: Plan,
    pub dir_name: String,
    pub names: Vec<String>,
    pub actions: Vec<Action>,
}

impl Job {
    /// Where volume `v` lives.
    pub fn path(&self, outs: &[PathBuf], v: usize) -> PathBuf {
        outs[self.plan.medium_of(v)]
            .join(&self.dir_name)
            .join(&self.names[v])
    }

    /// Bytes this run writes onto medium `m` (volumes already there cost nothing).
    pub fn bytes_to_write(&self, m: usize) -> u64 {
        (0..self.names.len())
            .filter(|&v| self.plan.medium_of(v) == m && self.actions[v] == Action::Create)
            .map(|v| self.plan.volume_bytes(v))
            .sum()
    }
}

fn header(link_key: &LinkKey, job_plan: &Plan, prepared: &Prepared, v: usize) -> [u8; HEADER_LEN] {
    VolumeHeader {
        volume_index: v as u16,
        volume_count: job_plan.volumes,
        object_id: prepared.id.object_id(),
        object_len: prepared.len,
        frame_len: job_plan.frame_len,
        frame_count: job_plan.frames[v],
    }
    .encode(link_key.as_bytes())
}

fn never_overwritten(path: &Path, what: &str) -> CommandError {
    CommandError::storage(format!(
        "{} {what}; volumes are never overwritten: move it away (or remove it if it is left from \
         an interrupted run), or write to another --out",
        path.display()
    ))
}

/// Looks at what the media already hold for this bundle, before anything is written: each volume
/// is created, or verified when a file of its name has its exact header and length. Anything
/// else of that name — another bundle's volume, another geometry or link key, a symlink, a
/// torn copy — is refused, as is a volume of another set of the same bundle in its directory
/// (the importer would see two sets of one bundle).
pub fn inspect(
    link_key: &LinkKey,
    prepared: Prepared,
    plan: Plan,
    outs: &[PathBuf],
) -> Result<Job, CommandError> {
    let dir_name = bundle_dir_name(&prepared);
    let names: Vec<String> = (0..usize::from(plan.volumes))
        .map(|i| volume_name(i, plan.volumes))
        .collect();
    for out in outs {
        let dir = out.join(&dir_name);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(never_overwritten(&dir, "exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_failure("cannot inspect", &dir, &e, outs.len())),
        }
        let entries =
            std::fs::read_dir(&dir).map_err(|e| io_failure("cannot list", &dir, &e, outs.len()))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_failure("cannot list", &dir, &e, outs.len()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".sluicevol") && !names.contains(&name) {
                return Err(CommandError::storage(format!(
                    "{} already holds {name}, a volume of this bundle written with another \
                     --volumes, --volume-size or number of --out; two volume sets of one bundle \
                     would confuse the import. Remove {} first, or repeat the earlier run's \
                     flags (its SLUICE-MANIFEST.txt lists them)",
                    dir.display(),
                    dir.display()
                )));
            }
        }
    }
    let mut actions = Vec::with_capacity(names.len());
    for v in 0..names.len() {
        let path = outs[plan.medium_of(v)].join(&dir_name).join(&names[v]);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                actions.push(Action::Create);
                continue;
            }
            Err(e) => return Err(io_failure("cannot inspect", &path, &e, outs.len())),
        };
        if !meta.is_file() {
            return Err(never_overwritten(&path, "exists and is not a regular file"));
        }
        let mut head = [0u8; HEADER_LEN];
        let same = meta.len() == plan.volume_bytes(v)
            && open_existing(&path)
                .and_then(|f| f.read_exact_at(&mut head, 0))
                .is_ok()
            && head == header(link_key, &plan, &prepared, v);
        if !same {
            return Err(never_overwritten(
                &path,
                &format!(
                    "exists but is not volume {} of {} of this bundle as this run writes it \
                     (another bundle, --overhead, link key, or a torn copy)",
                    v + 1,
                    plan.volumes
                ),
            ));
        }
        actions.push(Action::Verify);
    }
    Ok(Job {
        prepared,
        plan,
        dir_name,
        names,
        actions,
    })
}

fn open_existing(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Why a FAT filesystem cannot take `--volume-size`, or `None`: the decision, apart from the
/// `statfs` that finds `fs_type`.
pub fn fat_refusal(fs_type: u64, volume_size: u64) -> Option<String> {
    (fs_type == MSDOS_SUPER_MAGIC && volume_size > FAT_MAX_FILE_BYTES).then(|| {
        format!(
            "is a FAT filesystem, where every file must be smaller than 4 GiB, but --volume-size \
             is {}; give --volume-size {DEFAULT_VOLUME_SIZE_TEXT} (the default) or less, or use a \
             medium formatted exFAT or ext4",
            describe_bytes(volume_size)
        )
    })
}

/// The FAT32 guard for every `--out`, before anything is written.
pub fn check_fat(outs: &[PathBuf], volume_size: u64) -> Result<(), CommandError> {
    for out in outs {
        let fs = query_medium("cannot query the filesystem of", out, outs, |p| {
            rustix::fs::statfs(p)
        })?;
        // f_type's integer type differs between architectures; the magic fits any of them.
        #[allow(clippy::unnecessary_cast)]
        let fs_type = fs.f_type as u64;
        if let Some(why) = fat_refusal(fs_type, volume_size) {
            return Err(CommandError::usage(format!(
                "--out {} {why}",
                out.display()
            )));
        }
    }
    Ok(())
}

/// The refusal when medium `m` (of `outs`) needs `needed` bytes and reports `free`, or `None`.
pub fn space_refusal(outs: &[PathBuf], m: usize, needed: u64, free: u64) -> Option<String> {
    if needed <= free {
        return None;
    }
    let dir = outs[m].display();
    let n = outs.len();
    let mut s = if n == 1 {
        format!(
            "not enough space on {dir}: {} needed, {} free. Use a larger medium; or spread the \
             volumes over several media by repeating --out (e.g. --out /media/a --out /media/b: \
             each holds its share of the volumes, plus the overhead that surviving a lost medium \
             needs); or write to a larger directory with --volume-size at most what one medium \
             holds (e.g. --volume-size 700M) and copy each volume onto its own medium",
            describe_bytes(needed),
            describe_bytes(free)
        )
    } else {
        format!(
            "not enough space on medium {} of {n} ({dir}): {} needed there, {} free. Free space \
             on it or use a larger medium in its place; or repeat --out once more for another \
             medium, so that each holds fewer volumes",
            m + 1,
            describe_bytes(needed),
            describe_bytes(free)
        )
    };
    if free == 0 {
        s.push_str(&format!(
            ". {dir} reports 0 bytes free: if it is a FUSE or network mount that does not report \
             its free space, and you know it has room, add --no-space-check"
        ));
    } else {
        s.push_str(". (--no-space-check skips this check, for mounts that misreport free space)");
    }
    Some(s)
}

/// The free-space check: each medium must hold what this run writes onto it plus the
/// manifests. Skipped with `--no-space-check`.
pub fn check_space(outs: &[PathBuf], jobs: &[Job]) -> Result<(), CommandError> {
    for (m, out) in outs.iter().enumerate() {
        let to_write: u64 = jobs.iter().map(|j| j.bytes_to_write(m)).sum();
        let needed = to_write + MANIFEST_SLACK_BYTES;
        let vfs = query_medium("cannot query free space on", out, outs, |p| {
            rustix::fs::statvfs(p)
        })?;
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        if let Some(why) = space_refusal(outs, m, needed, free) {
            return Err(CommandError::storage(why));
        }
    }
    Ok(())
}

/// One filesystem query (`statfs`, `statvfs`) on medium `out` of `outs`, failing as every
/// other I/O error on a medium does ([`io_failure`]).
fn query_medium<T>(
    what: &str,
    out: &Path,
    outs: &[PathBuf],
    query: impl FnOnce(&Path) -> rustix::io::Result<T>,
) -> Result<T, CommandError> {
    query(out).map_err(|e| io_failure(what, out, &std::io::Error::from(e), outs.len()))
}

/// An I/O failure with a sentence on what to do; `media` is how many --out were given, for the
/// advice when a medium fills up.
pub fn io_failure(what: &str, path: &Path, e: &std::io::Error, media: usize) -> CommandError {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) if media > 1 => {
            " — this medium filled up while writing (it held less than it reported, or something \
             else wrote to it); the partial set was removed: free space on it, use a larger \
             medium, or repeat --out once more so that each medium holds fewer volumes"
        }
        Some(libc::ENOSPC) => {
            " — the medium filled up while writing (it held less than it reported, or something \
             else wrote to it); the partial set was removed: use a larger medium, or spread the \
             volumes over several media by repeating --out"
        }
        Some(libc::EROFS) => " — the medium is read-only (write-protect switch, or mounted ro)",
        Some(libc::EEXIST) => {
            " — it appeared while this run was writing (another sluice-send on the same \
             medium?); volumes are never overwritten: run again once the other is done"
        }
        Some(libc::EFBIG) => {
            " — the filesystem refuses a file this large (FAT32 holds files < 4 GiB): lower \
             --volume-size"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => " — permission denied",
        Some(libc::EIO) => " — I/O error: the medium may be failing or was removed",
        _ => "",
    };
    CommandError::storage(format!("{what} {}: {e}{hint}", path.display()))
}

fn sync_dir(dir: &Path, media: usize) -> Result<(), CommandError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failure("cannot fsync directory", dir, &e, media))
}

/// Where one volume's frames go.
enum Sink {
    Write(BufWriter<File>),
    /// An identical volume already on the medium: its records are read back and compared.
    Compare(BufReader<File>, Vec<u8>),
}

/// Writes (or verifies) one bundle's volumes across `outs`. On failure what this run created is
/// removed; volumes that were already there are left as they were.
pub fn write_job(
    link_key: &LinkKey,
    job: &Job,
    outs: &[PathBuf],
    bar: &indicatif::ProgressBar,
) -> Result<(), CommandError> {
    let mut created_dirs = Vec::new();
    let mut created = Vec::new();
    let result = write_volumes(link_key, job, outs, &mut created_dirs, &mut created, bar);
    if let Err(f) = result {
        // Never leave a partial set behind that looks like a volume set.
        for p in &created {
            let _ = std::fs::remove_file(p);
        }
        for d in &created_dirs {
            let _ = std::fs::remove_dir(d);
        }
        return Err(f);
    }
    if created.is_empty() {
        return Ok(());
    }
    for m in 0..outs.len() {
        if job.bytes_to_write(m) > 0 {
            sync_dir(&outs[m].join(&job.dir_name), outs.len())?;
            sync_dir(&outs[m], outs.len())?;
        }
    }
    Ok(())
}

fn write_volumes(
    link_key: &LinkKey,
    job: &Job,
    outs: &[PathBuf],
    created_dirs: &mut Vec<PathBuf>,
    created: &mut Vec<PathBuf>,
    bar: &indicatif::ProgressBar,
) -> Result<(), CommandError> {
    let (prepared, plan) = (&job.prepared, &job.plan);
    let media = outs.len();
    for out in outs {
        let dir = out.join(&job.dir_name);
        match std::fs::create_dir(&dir) {
            Ok(()) => created_dirs.push(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_failure("cannot create", &dir, &e, media)),
        }
    }
    let per_volume_buf = (WRITE_BUFFER_TOTAL / job.names.len().max(1)).clamp(64 << 10, 4 << 20);
    let mut sinks = Vec::with_capacity(job.names.len());
    for v in 0..job.names.len() {
        let path = job.path(outs, v);
        let head = header(link_key, plan, prepared, v);
        let sink = match job.actions[v] {
            Action::Create => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|e| io_failure("cannot create volume", &path, &e, media))?;
                created.push(path.clone());
                // Counts are known up front (plan_for), so the final header goes first.
                let mut w = BufWriter::with_capacity(per_volume_buf, file);
                w.write_all(&head)
                    .map_err(|e| io_failure("cannot write", &path, &e, media))?;
                Sink::Write(w)
            }
            Action::Verify => {
                let file = open_existing(&path)
                    .map_err(|e| io_failure("cannot read back", &path, &e, media))?;
                let mut r = BufReader::with_capacity(per_volume_buf, file);
                let mut got = [0u8; HEADER_LEN];
                r.read_exact(&mut got)
                    .map_err(|e| io_failure("cannot read back", &path, &e, media))?;
                if got != head {
                    return Err(never_overwritten(
                        &path,
                        "changed while this run inspected it",
                    ));
                }
                Sink::Compare(r, vec![0u8; plan.frame_len as usize])
            }
        };
        sinks.push((sink, path, 0u64));
    }

    let start = Instant::now();
    let now_ms = sluice_host::time::now_unix_ms();
    let object_id = prepared.id.object_id();
    let mut sender = Sender::new(
        sender_config(link_key.clone(), plan.overhead),
        start,
        now_ms,
    )
    .map_err(|e| CommandError::usage(format!("sender configuration refused: {e}")))?;
    sender
        .queue_object(start, object_id, prepared.len, now_ms)
        .map_err(|e| CommandError::usage(format!("{}: {e}", prepared.path.display())))?;
    let frame_len = plan.frame_len as usize;
    let mut buf = vec![0u8; frame_len.max(wire::heartbeat_len(wire::MAX_LEDGER_ENTRIES))];
    let mut read_buf = Vec::new();
    loop {
        while let Some(request) = sender.poll_read() {
            read_buf.resize(request.len, 0);
            prepared.read_exact_at(&mut read_buf, request.offset)?;
            bar.inc(request.len as u64);
            sender
                .handle_read(request, std::mem::take(&mut read_buf))
                .map_err(CommandError::internal)?;
        }
        let now = Instant::now();
        while let Some(n) = sender.poll_transmit(now, &mut buf) {
            let frame = &buf[..n];
            // Heartbeats and object-end frames are link signals; a volume holds data only.
            if frame.get(3) != Some(&wire::KIND_DATA) {
                continue;
            }
            if n != frame_len {
                return Err(CommandError::internal(format!(
                    "a data frame of {n} bytes, expected {frame_len}"
                )));
            }
            let block = u32::from_be_bytes([frame[34], frame[35], frame[36], frame[37]]);
            let esi = u32::from_be_bytes([frame[38], frame[39], frame[40], frame[41]]);
            let v = usize::from(volume_of(block, esi, plan.volumes));
            let (sink, path, count) = &mut sinks[v];
            *count += 1;
            if *count > plan.frames[v] {
                return Err(CommandError::internal(format!(
                    "volume {} received more frames than planned ({}); nothing usable was written",
                    v + 1,
                    plan.frames[v]
                )));
            }
            match sink {
                Sink::Write(w) => w
                    .write_all(frame)
                    .map_err(|e| io_failure("cannot write", path, &e, media))?,
                Sink::Compare(r, got) => {
                    let same = r.read_exact(got).is_ok() && got.as_slice() == frame;
                    if !same {
                        return Err(never_overwritten(
                            path,
                            &format!(
                                "has this volume's header but differs from it at record {} \
                                 (damaged since it was written?)",
                                *count - 1
                            ),
                        ));
                    }
                }
            }
        }
        if sender.is_finished() {
            break;
        }
    }
    for (v, (sink, path, count)) in sinks.into_iter().enumerate() {
        if count != plan.frames[v] {
            return Err(CommandError::internal(format!(
                "volume {} got {count} frames, the plan said {}; the set was removed",
                v + 1,
                plan.frames[v]
            )));
        }
        if let Sink::Write(w) = sink {
            let file = w
                .into_inner()
                .map_err(|e| io_failure("cannot write", &path, e.error(), media))?;
            file.sync_all()
                .map_err(|e| io_failure("cannot fsync", &path, &e, media))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_plan::{DEFAULT_VOLUME_SIZE, DEFAULT_VOLUME_SIZE_TEXT};

    #[test]
    fn the_default_volume_size_fits_fat32_and_larger_ones_are_refused_there() {
        assert_eq!(
            sluice_common::size::parse_size(DEFAULT_VOLUME_SIZE_TEXT),
            Ok(DEFAULT_VOLUME_SIZE)
        );
        assert_eq!(fat_refusal(MSDOS_SUPER_MAGIC, DEFAULT_VOLUME_SIZE), None);
        assert_eq!(fat_refusal(MSDOS_SUPER_MAGIC, FAT_MAX_FILE_BYTES), None);
        let why = fat_refusal(MSDOS_SUPER_MAGIC, 4 << 30).unwrap();
        assert!(
            why.contains("FAT") && why.contains("4294967296 bytes"),
            "{why}"
        );
        assert!(fat_refusal(MSDOS_SUPER_MAGIC, 5_000_000_000).is_some());
        // ext4 (0xEF53), exFAT (0x2011BAB0), tmpfs (0x01021994): no such limit.
        for other in [0xEF53, 0x2011_BAB0, 0x0102_1994] {
            assert_eq!(fat_refusal(other, 5_000_000_000), None);
        }
    }

    #[test]
    fn space_advice_fits_one_medium_or_several() {
        let one = [PathBuf::from("/media/usb")];
        let why = space_refusal(&one, 0, 3_000_000_000, 1_000_000_000).unwrap();
        assert!(why.contains("3.00 GB (3000000000 bytes) needed"), "{why}");
        assert!(
            why.contains("larger medium") && why.contains("repeating --out"),
            "{why}"
        );
        assert!(why.contains("--volume-size"), "{why}");
        assert!(!why.contains("medium 1 of"), "{why}");
        let three = [
            PathBuf::from("/media/a"),
            PathBuf::from("/media/b"),
            PathBuf::from("/media/c"),
        ];
        let why = space_refusal(&three, 1, 2_000_000, 1_000_000).unwrap();
        assert!(why.contains("medium 2 of 3 (/media/b)"), "{why}");
        assert!(why.contains("repeat --out once more"), "{why}");
        assert_eq!(space_refusal(&three, 1, 1_000, 1_000), None);
        let fuse = space_refusal(&one, 0, 2_000_000, 0).unwrap();
        assert!(fuse.contains("reports 0 bytes free") && fuse.contains("--no-space-check"));
    }
}
