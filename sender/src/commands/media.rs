//! `sluice-send media`: write bundles as spool volumes onto removable media (docs/media.md).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::spool::{self, HEADER_LEN, MAX_VOLUMES, VolumeHeader};
use sluice_common::transport::params::{ObjectParams, recommended_block_size};
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_common::transport::wire::{self, LinkKey};

use crate::prepare::{self, Prepared};

/// What each exit code means for `media` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "every bundle written"),
    (
        Exit::Failure,
        "internal error (the partial volume set is removed)",
    ),
    (
        Exit::Usage,
        "bad flags, trust directory or link key, or no secret link key",
    ),
    (Exit::Input, "a bundle, the link key or --out unreadable"),
    (
        Exit::Invalid,
        "a bundle failed its own verification (nothing is written then)",
    ),
    (
        Exit::Untrusted,
        "a bundle's signer is not trusted (nothing is written then)",
    ),
    (
        Exit::Policy,
        "a bundle's policy check failed (nothing is written then)",
    ),
    (Exit::Storage, "the medium is full, read-only or failed"),
];

/// Write signed bundles onto removable media as spool volumes (RaptorQ frames in files)
///
/// Each bundle is first verified against --trust, then cut into blocks, RaptorQ-encoded with
/// --overhead % repair symbols and written as the same authenticated frames the UDP path sends,
/// spread over N volume files so that a lost or damaged volume costs every block only 1/N of its
/// symbols. Put the volumes on separate media; `sluice-recv import` rebuilds the bundle from any
/// sufficient subset, even when the media arrive one at a time.
///
/// Layout: DIR/<first 16 hex of bundle id>/vol-001-of-004.sluicevol …, plus
/// DIR/SLUICE-MANIFEST.txt and DIR/sluice-manifest.json describing what was written.
///
/// Examples:
///
///   sluice-send media --out /media/usb --trust ./trust --link-key link.key update.sluice
///   sluice-send media --out ./spool --trust ./trust --link-key link.key --volumes 4 update.sluice
///   # then copy each volume to its own disc
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, after_help = sluice_common::exit::help_table(EXIT_CODES))]
pub struct Args {
    /// Directory on the medium (must exist) to write the volumes into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Trust directory (*.pub signer keys, optional policy.toml) to check each bundle against.
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Volumes per bundle (at least; more when a bundle does not fit --volume-size).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub volumes: u16,
    /// Repair symbols per block in percent of its source symbols. Default: the smallest value
    /// ≥ 10 that survives the loss of any one volume when there is more than one, else 10.
    #[arg(long, value_name = "PCT")]
    pub overhead: Option<u32>,
    /// Largest volume file in bytes. Default 4 GiB − 1 MiB, safe for FAT32.
    #[arg(long, default_value_t = DEFAULT_VOLUME_SIZE, value_name = "BYTES")]
    pub volume_size: u64,
    /// Shared link key (`sluice-send link-keygen`); the same file as the receiver's. Required
    /// unless --insecure-public-link-key is given.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Write the volumes under the documented public link key (test media only).
    #[arg(long)]
    pub insecure_public_link_key: bool,
    /// Print a JSON summary on stdout instead of the human one.
    #[arg(long)]
    pub json: bool,
    /// Bundle files to write.
    #[arg(required = true, value_name = "BUNDLE")]
    pub bundles: Vec<PathBuf>,
}

/// FAT32 refuses files of 4 GiB and more.
pub const DEFAULT_VOLUME_SIZE: u64 = (4 << 30) - (1 << 20);
/// Payload bytes per frame on media: no MTU applies, so symbols are large (fewer frames, less
/// header overhead) but within the receiver's default symbol limit (8914).
pub const MEDIA_SYMBOL_SIZE: u16 = 4096;
/// Blocks interleaved at once. 8 × ~1.9 MiB keeps the importer's window well inside its budget.
pub const MEDIA_WINDOW_BLOCKS: u32 = 8;
/// Largest overhead the automatic choice will consider.
const MAX_AUTO_OVERHEAD: u32 = 1000;
/// Bytes of write buffer across all volumes of one bundle.
const WRITE_BUFFER_TOTAL: usize = 32 << 20;

/// The geometry of one bundle's volume set, computed before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub volumes: u16,
    pub overhead: u32,
    pub survivable: u16,
    /// Data frames per volume.
    pub frames: Vec<u64>,
    pub frame_len: u32,
}

impl Plan {
    pub fn volume_bytes(&self, v: usize) -> u64 {
        HEADER_LEN as u64 + self.frames[v] * u64::from(self.frame_len)
    }
    pub fn total_bytes(&self) -> u64 {
        (0..self.frames.len()).map(|v| self.volume_bytes(v)).sum()
    }
}

/// The volume of a data frame: `(block + esi) mod V`. Every block's symbols (consecutive ESIs)
/// cycle through all volumes, so each volume holds ⌊P/V⌋ or ⌈P/V⌉ of each block's P symbols,
/// whatever the sender's interleaving (docs/media.md, "Spreading across volumes").
pub fn volume_of(block: u32, esi: u32, volumes: u16) -> u16 {
    spool::volume_for_frame(u64::from(block) + u64::from(esi), volumes)
}

fn sender_config(link_key: LinkKey, overhead: u32) -> SenderConfig {
    let mut c = SenderConfig::new(
        link_key,
        crate::link::sender_id(),
        MEDIA_SYMBOL_SIZE,
        recommended_block_size(MEDIA_SYMBOL_SIZE),
    );
    c.window_blocks = MEDIA_WINDOW_BLOCKS;
    c.overhead_percent = overhead;
    c.passes = 1;
    c.rate_bytes_per_sec = None;
    c.heartbeat_interval = Duration::from_secs(24 * 3600);
    c
}

/// Frames per volume and the losses survivable for an object of `len` bytes.
pub fn plan_for(object_id: [u8; 16], len: u64, volumes: u16, overhead: u32) -> Plan {
    let config = sender_config(LinkKey::public_default(), overhead);
    let params = ObjectParams {
        object_id,
        object_len: len,
        block_size: config.block_size,
        symbol_size: config.symbol_size,
    };
    let v = u64::from(volumes.max(1));
    let mut frames = vec![0u64; v as usize];
    let mut survivable = spool::survivable_volume_losses(volumes, overhead);
    for b in 0..params.block_count() {
        let k = params.source_symbols(b);
        let p = u64::from(k) + u64::from(config.repair_symbols(k));
        let (q, r) = (p / v, p % v);
        for (i, f) in frames.iter_mut().enumerate() {
            // ESIs e with (b + e) mod V == i: q of them, plus one if i's offset is among the
            // first r residues after b.
            let offset = (i as u64 + v - b % v) % v;
            *f += q + u64::from(offset < r);
        }
        // Losing the L fullest volumes loses L·q + min(L, r) symbols of this block.
        let block_ok = (0..v)
            .rev()
            .find(|&l| p - (l * q + l.min(r)) >= u64::from(k))
            .unwrap_or(0) as u16;
        survivable = survivable.min(block_ok);
    }
    Plan {
        volumes,
        overhead,
        survivable,
        frames,
        frame_len: wire::data_frame_len(MEDIA_SYMBOL_SIZE) as u32,
    }
}

/// Settles volume count and overhead together: more volumes can follow from a larger overhead
/// (more bytes), and the automatic overhead depends on the volume count.
pub fn settle_plan(
    object_id: [u8; 16],
    len: u64,
    min_volumes: u16,
    overhead: Option<u32>,
    volume_size: u64,
) -> Result<Plan, CommandError> {
    let frame_len = wire::data_frame_len(MEDIA_SYMBOL_SIZE) as u64;
    if volume_size < HEADER_LEN as u64 + frame_len {
        return Err(CommandError::usage(format!(
            "--volume-size {volume_size} is smaller than one volume header plus one frame ({} bytes)",
            HEADER_LEN as u64 + frame_len
        )));
    }
    let mut volumes = min_volumes.max(1);
    loop {
        let plan = match overhead {
            Some(o) => plan_for(object_id, len, volumes, o),
            None if volumes == 1 => plan_for(object_id, len, 1, 10),
            None => (10..=MAX_AUTO_OVERHEAD)
                .map(|o| plan_for(object_id, len, volumes, o))
                .find(|p| p.survivable >= 1)
                .ok_or_else(|| {
                    CommandError::usage(format!(
                        "no overhead up to {MAX_AUTO_OVERHEAD} % survives losing one of {volumes} volumes"
                    ))
                })?,
        };
        let largest = (0..plan.frames.len())
            .map(|v| plan.volume_bytes(v))
            .max()
            .unwrap_or(0);
        if largest <= volume_size {
            return Ok(plan);
        }
        let needed = plan.total_bytes().div_ceil(volume_size.max(1));
        let next = u16::try_from(needed)
            .unwrap_or(u16::MAX)
            .max(volumes.saturating_add(1));
        if next > MAX_VOLUMES {
            return Err(CommandError::usage(format!(
                "the bundle needs more than {MAX_VOLUMES} volumes of at most {volume_size} bytes; raise --volume-size"
            )));
        }
        volumes = next;
    }
}

/// "any 1 of 4 volumes may be lost".
pub fn survival_text(plan: &Plan) -> String {
    match (plan.volumes, plan.survivable) {
        (1, _) => {
            "a single volume: it must arrive (damaged records are repaired within the overhead)"
                .to_string()
        }
        (v, 0) => format!("all {v} volumes are needed (no whole volume may be lost)"),
        (v, s) => format!("any {s} of {v} volumes may be lost"),
    }
}

struct Written {
    prepared: Prepared,
    plan: Plan,
    dir_name: String,
    files: Vec<String>,
}

fn volume_name(index: usize, count: u16) -> String {
    format!("vol-{:03}-of-{:03}.sluicevol", index + 1, count)
}

fn io_failure(what: &str, path: &Path, e: &std::io::Error) -> CommandError {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) => {
            " — the medium is full; use a larger medium, or --volume-size with more volumes spread over several media"
        }
        Some(libc::EROFS) => " — the medium is read-only (write-protect switch, or mounted ro)",
        Some(libc::EEXIST) => {
            " — it already exists; volumes are never overwritten: use an empty --out"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => " — permission denied",
        Some(libc::EIO) => " — I/O error: the medium may be failing or was removed",
        _ => "",
    };
    CommandError::storage(format!("{what} {}: {e}{hint}", path.display()))
}

/// Writes every bundle's volume set and the manifests.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    if args.volumes == 0 || args.volumes > MAX_VOLUMES {
        return Err(CommandError::usage(format!(
            "--volumes must be 1..={MAX_VOLUMES}"
        )));
    }
    let link_key = sluice_host::linkkey::load_for(
        args.link_key.as_deref(),
        sluice_host::linkkey::Endpoint::Media,
        args.insecure_public_link_key,
    )?;
    let out_meta = std::fs::metadata(&args.out).map_err(|e| {
        CommandError::input(format!(
            "--out {}: {e} (mount the medium and give an existing directory)",
            args.out.display()
        ))
    })?;
    if !out_meta.is_dir() {
        return Err(CommandError::input(format!(
            "--out {} is not a directory",
            args.out.display()
        )));
    }
    let trust = prepare::load_trust(Some(&args.trust), "--trust DIR is required")?;
    let mut work = Vec::new();
    for path in &args.bundles {
        let prepared = prepare::prepare(path, &trust)
            .map_err(|e| e.into_command_error(path, "nothing was written"))?;
        let plan = settle_plan(
            prepared.id.object_id(),
            prepared.len,
            args.volumes,
            args.overhead,
            args.volume_size,
        )
        .map_err(|e| CommandError::new(e.code, format!("{}: {}", path.display(), e.message)))?;
        work.push((prepared, plan));
    }
    // Free space first: a half-written set is worse than none.
    let needed: u64 = work.iter().map(|(_, p)| p.total_bytes()).sum::<u64>() + (1 << 20);
    let vfs = rustix::fs::statvfs(&args.out).map_err(|e| {
        io_failure(
            "cannot query free space on",
            &args.out,
            &std::io::Error::from(e),
        )
    })?;
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if needed > free {
        return Err(CommandError::storage(format!(
            "the medium is full: {needed} bytes needed, {free} free on {}; use a larger medium or \
             --volume-size with more volumes",
            args.out.display()
        )));
    }
    let started = Instant::now();
    let total: u64 = work.iter().map(|(p, _)| p.len).sum();
    let bar = crate::progress::bytes(total, "writing");
    let mut written = Vec::new();
    for (prepared, plan) in work {
        written.push(write_bundle(&args, &link_key, prepared, plan, &bar)?);
    }
    bar.finish_and_clear();
    write_manifests(&args.out, &written)?;
    let elapsed = started.elapsed();
    report(&args, &written, elapsed);
    Ok(Exit::Ok)
}

fn write_bundle(
    args: &Args,
    link_key: &LinkKey,
    prepared: Prepared,
    plan: Plan,
    bar: &indicatif::ProgressBar,
) -> Result<Written, CommandError> {
    let dir_name = prepared.id.to_hex()[..16].to_string();
    let dir = args.out.join(&dir_name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_failure("cannot create", &dir, &e)),
    }
    let names: Vec<String> = (0..plan.volumes as usize)
        .map(|i| volume_name(i, plan.volumes))
        .collect();
    let mut created: Vec<PathBuf> = Vec::new();
    let result = write_volumes(link_key, &prepared, &plan, &dir, &names, &mut created, bar);
    if let Err(f) = result {
        // Never leave a partial set behind that looks like a volume set.
        for p in &created {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir(&dir);
        return Err(f);
    }
    sync_dir(&dir)?;
    sync_dir(&args.out)?;
    Ok(Written {
        prepared,
        plan,
        dir_name,
        files: names,
    })
}

fn sync_dir(dir: &Path) -> Result<(), CommandError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failure("cannot fsync directory", dir, &e))
}

fn write_volumes(
    link_key: &LinkKey,
    prepared: &Prepared,
    plan: &Plan,
    dir: &Path,
    names: &[String],
    created: &mut Vec<PathBuf>,
    bar: &indicatif::ProgressBar,
) -> Result<(), CommandError> {
    let object_id = prepared.id.object_id();
    let per_volume_buf = (WRITE_BUFFER_TOTAL / names.len().max(1)).clamp(64 << 10, 4 << 20);
    let mut writers = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&path)
            .map_err(|e| io_failure("cannot create volume", &path, &e))?;
        created.push(path.clone());
        // Counts are known up front (plan_for), so the final header goes first.
        let header = VolumeHeader {
            volume_index: i as u16,
            volume_count: plan.volumes,
            object_id,
            object_len: prepared.len,
            frame_len: plan.frame_len,
            frame_count: plan.frames[i],
        };
        let mut w = BufWriter::with_capacity(per_volume_buf, file);
        w.write_all(&header.encode(link_key.as_bytes()))
            .map_err(|e| io_failure("cannot write", &path, &e))?;
        writers.push((w, path, 0u64));
    }

    let start = Instant::now();
    let now_ms = sluice_host::time::now_unix_ms();
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
            prepared
                .file
                .read_exact_at(&mut read_buf, request.offset)
                .map_err(|e| {
                    CommandError::input(format!(
                        "reading {} at {}: {e}",
                        prepared.path.display(),
                        request.offset
                    ))
                })?;
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
            let (w, path, count) = &mut writers[v];
            *count += 1;
            if *count > plan.frames[v] {
                return Err(CommandError::internal(format!(
                    "volume {} received more frames than planned ({}); nothing usable was written",
                    v + 1,
                    plan.frames[v]
                )));
            }
            w.write_all(frame)
                .map_err(|e| io_failure("cannot write", path, &e))?;
        }
        if sender.is_finished() {
            break;
        }
    }
    for (v, (w, path, count)) in writers.into_iter().enumerate() {
        if count != plan.frames[v] {
            return Err(CommandError::internal(format!(
                "volume {} got {count} frames, the plan said {}; the set was removed",
                v + 1,
                plan.frames[v]
            )));
        }
        let file = w
            .into_inner()
            .map_err(|e| io_failure("cannot write", &path, e.error()))?;
        file.sync_all()
            .map_err(|e| io_failure("cannot fsync", &path, &e))?;
    }
    Ok(())
}

fn manifest_json(written: &[Written]) -> serde_json::Value {
    serde_json::json!({
        "format": "sluice-media-manifest-v1",
        "written_unix_ms": sluice_host::time::now_unix_ms(),
        "bundles": written.iter().map(|w| serde_json::json!({
            "bundle_id": w.prepared.id.to_hex(),
            "object_id": hex::encode(w.prepared.id.object_id()),
            "source": w.prepared.path.display().to_string(),
            "channel": w.prepared.channel,
            "sequence": w.prepared.sequence,
            "bytes": w.prepared.len,
            "directory": w.dir_name,
            "volumes": w.plan.volumes,
            "overhead_percent": w.plan.overhead,
            "survivable_volume_losses": w.plan.survivable,
            "survival": survival_text(&w.plan),
            "frame_len": w.plan.frame_len,
            "files": w.files.iter().enumerate().map(|(i, f)| serde_json::json!({
                "path": format!("{}/{f}", w.dir_name),
                "volume": i + 1,
                "of": w.plan.volumes,
                "frames": w.plan.frames[i],
                "bytes": w.plan.volume_bytes(i),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn manifest_text(written: &[Written]) -> String {
    let mut s = String::from(
        "SLUICE MEDIUM — spool volumes for sluice-recv import (docs/media.md)\n\
         The importer trusts only each volume's authenticated header and frames, never this file.\n\n",
    );
    for w in written {
        s.push_str(&format!(
            "bundle {}\n  channel {}  sequence {}  {} bytes  from {}\n  {} volume(s), {} % overhead: {}\n",
            w.prepared.id.to_hex(),
            w.prepared.channel,
            w.prepared.sequence,
            w.prepared.len,
            w.prepared.path.display(),
            w.plan.volumes,
            w.plan.overhead,
            survival_text(&w.plan),
        ));
        for (i, f) in w.files.iter().enumerate() {
            s.push_str(&format!(
                "    {}/{f}  volume {} of {}  {} bytes\n",
                w.dir_name,
                i + 1,
                w.plan.volumes,
                w.plan.volume_bytes(i)
            ));
        }
        s.push('\n');
    }
    s
}

/// Manifests describe this run. They are replaced atomically (temp + rename) if present, since
/// they are informational; volumes are never replaced.
fn write_manifests(out: &Path, written: &[Written]) -> Result<(), CommandError> {
    let mut json =
        serde_json::to_vec_pretty(&manifest_json(written)).map_err(CommandError::internal)?;
    json.push(b'\n');
    for (name, bytes) in [
        ("SLUICE-MANIFEST.txt", manifest_text(written).into_bytes()),
        ("sluice-manifest.json", json),
    ] {
        let tmp = out.join(format!(".{name}.tmp-{}", std::process::id()));
        let path = out.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_failure("cannot write manifest", &path, &e));
        }
    }
    sync_dir(out)
}

fn report(args: &Args, written: &[Written], elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let bytes: u64 = written.iter().map(|w| w.prepared.len).sum();
    let on_medium: u64 = written.iter().map(|w| w.plan.total_bytes()).sum();
    if args.json {
        let mut v = manifest_json(written);
        v["out"] = args.out.display().to_string().into();
        v["bundle_bytes"] = bytes.into();
        v["medium_bytes"] = on_medium.into();
        v["duration_secs"] = secs.into();
        v["mb_per_sec"] = (bytes as f64 / secs / 1e6).into();
        println!("{v}");
        return;
    }
    for w in written {
        println!(
            "wrote {} ({} bytes, channel {}, seq {}) id {}",
            w.prepared.path.display(),
            w.prepared.len,
            w.prepared.channel,
            w.prepared.sequence,
            w.prepared.id
        );
        println!(
            "  {} volume(s) in {}/{}, {} % overhead: {}",
            w.plan.volumes,
            args.out.display(),
            w.dir_name,
            w.plan.overhead,
            survival_text(&w.plan)
        );
    }
    println!(
        "{on_medium} bytes on the medium in {secs:.2} s ({:.1} MB/s of bundle); manifests: SLUICE-MANIFEST.txt, sluice-manifest.json",
        bytes as f64 / secs / 1e6
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_is_spread_over_every_volume() {
        // 4 volumes with the sender's window of 8 blocks: a plain round-robin over the send order
        // would put each block into one volume; (block + esi) mod V never does.
        let plan = plan_for([1; 16], 100 << 20, 4, 35);
        assert_eq!(plan.survivable, 1, "{plan:?}");
        let total: u64 = plan.frames.iter().sum();
        let (min, max) = (
            plan.frames.iter().min().unwrap(),
            plan.frames.iter().max().unwrap(),
        );
        assert!(max - min <= 60, "{plan:?} total {total}");
    }

    #[test]
    fn automatic_overhead_survives_one_loss() {
        let p = settle_plan([2; 16], 300 << 20, 4, None, DEFAULT_VOLUME_SIZE).unwrap();
        assert_eq!(p.volumes, 4);
        assert!(p.survivable >= 1);
        assert!(p.overhead >= 34 && p.overhead <= 40, "{}", p.overhead);
        let single = settle_plan([2; 16], 1 << 20, 1, None, DEFAULT_VOLUME_SIZE).unwrap();
        assert_eq!((single.volumes, single.overhead), (1, 10));
    }

    #[test]
    fn volume_size_forces_more_volumes() {
        let p = settle_plan([3; 16], 64 << 20, 1, None, 20 << 20).unwrap();
        assert!(p.volumes >= 4, "{p:?}");
        assert!((0..p.frames.len()).all(|v| p.volume_bytes(v) <= 20 << 20));
        assert!(p.survivable >= 1);
    }
}
