//! `sluice-send media`: write bundles as spool volumes onto one or several removable media
//! (docs/media.md). The geometry lives in `media_plan.rs`, checks and writing in `media_out.rs`,
//! the per-medium manifests in `media_manifest.rs`; this module is flags in, summary out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::spool::MAX_VOLUMES;

use crate::media_manifest;
use crate::media_out::{self, Action, Job};
use crate::media_plan;
use crate::prepare;

/// What each exit code means for `media` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (
        Exit::Ok,
        "every bundle written (or already on the media, verified)",
    ),
    (
        Exit::Failure,
        "internal error (the partial volume set is removed)",
    ),
    (
        Exit::Usage,
        "bad flags, trust directory or link key, or no secret link key; --volume-size too large \
         for a FAT medium",
    ),
    (Exit::Input, "a bundle, the link key or an --out unreadable"),
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
    (
        Exit::Storage,
        "a medium is full, read-only or failed, or holds a different file of a volume's name",
    ),
];

/// Write signed bundles onto removable media as spool volumes (RaptorQ frames in files)
///
/// Each bundle is first verified against --trust, then cut into blocks, RaptorQ-encoded with
/// --overhead % repair symbols and written as the same authenticated frames the UDP path sends,
/// spread over N volume files so that a lost or damaged volume costs every block only 1/N of its
/// symbols. `sluice-recv import` rebuilds the bundle from any sufficient subset, even when the
/// media arrive one at a time.
///
/// Several media: repeat --out, one per mounted stick or disc. Volume i goes to the i-th --out
/// modulo their number, so by default each medium gets one volume, and the automatic overhead is
/// the smallest that survives losing any one whole medium (52 % for 3 media, 35 % for 4). To
/// choose yourself: --volumes is rounded up to a multiple of the media; losing a medium loses
/// volumes/media volumes, and the output and manifests say what the chosen --overhead survives,
/// e.g. "any 1 of 3 media may be lost". --overhead 10 with 3 media needs all three.
///
/// Layout on each medium: DIR/<first 16 hex of bundle id>/vol-001-of-003.sluicevol …, plus
/// DIR/SLUICE-MANIFEST.txt and DIR/sluice-manifest.json listing every bundle on that medium,
/// from this run and earlier ones. Writing a bundle that is already there again verifies its
/// volumes and rewrites nothing; a different file of a volume's name is never overwritten.
///
/// Sizes take suffixes: k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024 (700M, 1G, 1.5GiB).
/// On a FAT medium every file must stay under 4 GiB, so a larger --volume-size is refused.
///
/// Examples:
///
///   sluice-send media --out /media/usb --trust ./trust --link-key link.key update.sluice
///   sluice-send media --out /media/a --out /media/b --out /media/c --trust ./trust \
///       --link-key link.key update.sluice
///   sluice-send media --out ./spool --volume-size 700M --trust ./trust --link-key link.key u.sluice
///   # then copy each volume to its own CD
///   sluice-send media --out /mnt/fuse --no-space-check --trust ./trust --link-key link.key u.sluice
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, after_help = sluice_common::exit::help_table(EXIT_CODES))]
pub struct Args {
    /// Directory on a medium (must exist) to write volumes into. Repeat it to spread each
    /// bundle's volumes over several media: volume i goes to the i-th --out modulo their number.
    #[arg(long, required = true, value_name = "DIR")]
    pub out: Vec<PathBuf>,
    /// Trust directory (*.pub signer keys, optional policy.toml) to check each bundle against.
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Volumes per bundle, at least (rounded up to a multiple of the --out media; more when a
    /// bundle does not fit --volume-size). Default: one per --out.
    #[arg(long, value_name = "N")]
    pub volumes: Option<u16>,
    /// Repair symbols per block in percent of its source symbols. Default: the smallest value
    /// ≥ 10 that survives the loss of any one medium when there are several, else of any one
    /// volume when there are several, else 10.
    #[arg(long, value_name = "PCT")]
    pub overhead: Option<u32>,
    /// Largest volume file: bytes, or a size with a suffix (700M, 4GiB). The default stays under
    /// FAT32's 4 GiB file limit.
    #[arg(
        long,
        default_value = media_plan::DEFAULT_VOLUME_SIZE_TEXT,
        value_name = "SIZE",
        value_parser = sluice_common::size::parse_size
    )]
    pub volume_size: u64,
    /// Write without checking free space first, for FUSE and network mounts that report 0 bytes
    /// free while they have room. A medium that really is full then fails while writing, and
    /// the partial set is removed.
    #[arg(long)]
    pub no_space_check: bool,
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

/// Writes every bundle's volume set over the media and updates each medium's manifests.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let media = check_outs(&args.out)?;
    if let Some(v) = args.volumes
        && (v == 0 || v > MAX_VOLUMES)
    {
        return Err(CommandError::usage(format!(
            "--volumes must be 1..={MAX_VOLUMES}"
        )));
    }
    let link_key = sluice_host::linkkey::load_for(
        args.link_key.as_deref(),
        sluice_host::linkkey::Endpoint::Media,
        args.insecure_public_link_key,
    )?;
    // Up front, before any bundle is read: a refused size costs nothing.
    media_out::check_fat(&args.out, args.volume_size)?;
    let trust = prepare::load_trust(Some(&args.trust), "--trust DIR is required")?;
    let mut jobs: Vec<Job> = Vec::new();
    for path in &args.bundles {
        let prepared = prepare::prepare(path, &trust)
            .map_err(|e| e.into_command_error(path, "nothing was written"))?;
        let with_path = |e: CommandError| {
            CommandError::new(e.code, format!("{}: {}", path.display(), e.message))
        };
        let plan = media_plan::settle_plan(
            prepared.id.object_id(),
            prepared.len,
            args.volumes.unwrap_or(media),
            args.overhead,
            args.volume_size,
            media,
        )
        .map_err(with_path)?;
        if jobs.iter().any(|j| j.prepared.id == prepared.id) {
            continue; // the same bundle named twice is written once
        }
        jobs.push(media_out::inspect(&link_key, prepared, plan, &args.out)?);
    }
    // Free space first: a half-written set is worse than none.
    if !args.no_space_check {
        media_out::check_space(&args.out, &jobs)?;
    }
    let started = Instant::now();
    let total: u64 = jobs.iter().map(|j| j.prepared.len).sum();
    let bar = crate::progress::bytes(total, "writing");
    for job in &jobs {
        media_out::write_job(&link_key, job, &args.out, &bar)?;
    }
    bar.finish_and_clear();
    let now_ms = sluice_host::time::now_unix_ms();
    for (m, out) in args.out.iter().enumerate() {
        let fresh = jobs
            .iter()
            .map(|j| media_manifest::bundle_entry(j, &args.out, Some(m), now_ms))
            .collect();
        media_manifest::update(out, fresh, now_ms, args.out.len())?;
    }
    report(&args, &jobs, started.elapsed(), now_ms);
    Ok(Exit::Ok)
}

/// Every --out must be an existing directory, and no medium may be named twice (two volumes on
/// one medium would make "any one medium may be lost" untrue). Returns the number of media.
fn check_outs(outs: &[PathBuf]) -> Result<u16, CommandError> {
    use std::os::unix::fs::MetadataExt;
    let media = u16::try_from(outs.len())
        .ok()
        .filter(|&n| n <= MAX_VOLUMES)
        .ok_or_else(|| CommandError::usage(format!("at most {MAX_VOLUMES} --out")))?;
    let mut seen: Vec<(u64, u64, &PathBuf)> = Vec::new();
    for out in outs {
        let meta = std::fs::metadata(out).map_err(|e| {
            CommandError::input(format!(
                "--out {}: {e} (mount the medium and give an existing directory)",
                out.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(CommandError::input(format!(
                "--out {} is not a directory",
                out.display()
            )));
        }
        if let Some((_, _, first)) = seen
            .iter()
            .find(|(dev, ino, _)| (*dev, *ino) == (meta.dev(), meta.ino()))
        {
            return Err(CommandError::usage(format!(
                "--out {} and --out {} are the same directory; give each medium once",
                first.display(),
                out.display()
            )));
        }
        seen.push((meta.dev(), meta.ino(), out));
    }
    Ok(media)
}

fn report(args: &Args, jobs: &[Job], elapsed: Duration, now_ms: u64) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let bytes: u64 = jobs.iter().map(|j| j.prepared.len).sum();
    let on_media: u64 = jobs.iter().map(|j| j.plan.total_bytes()).sum();
    let written: u64 = (0..args.out.len())
        .map(|m| jobs.iter().map(|j| j.bytes_to_write(m)).sum::<u64>())
        .sum();
    if args.json {
        let v = sluice_host::json::stamp(
            "media",
            serde_json::json!({
                "bundles": jobs
                    .iter()
                    .map(|j| media_manifest::bundle_entry(j, &args.out, None, now_ms))
                    .collect::<Vec<_>>(),
                "out": args.out.iter().map(|o| o.display().to_string()).collect::<Vec<_>>(),
                "bundle_bytes": bytes,
                "medium_bytes": on_media,
                "written_bytes": written,
                "duration_secs": secs,
                "mb_per_sec": bytes as f64 / secs / 1e6,
            }),
        );
        println!("{v}");
        return;
    }
    for j in jobs {
        let p = &j.prepared;
        let verified = j.actions.iter().filter(|a| **a == Action::Verify).count();
        let what = match verified {
            0 => "wrote",
            n if n == j.actions.len() => "already on the media (verified, nothing rewritten):",
            _ => "completed",
        };
        println!(
            "{what} {} ({} bytes, channel {}, seq {}) id {}",
            p.path.display(),
            p.len,
            p.channel,
            p.sequence,
            p.id
        );
        println!(
            "  {} volume(s), {} % overhead: {}",
            j.plan.volumes,
            j.plan.overhead,
            media_plan::survival_text(&j.plan)
        );
        for v in 0..j.names.len() {
            println!(
                "    {}  {}",
                j.path(&args.out, v).display(),
                match j.actions[v] {
                    Action::Create => "written",
                    Action::Verify => "already there, verified",
                }
            );
        }
    }
    println!(
        "{written} bytes written ({on_media} bytes of volumes on the media) in {secs:.2} s \
         ({:.1} MB/s of bundle); each medium's {} and {} list everything on it",
        bytes as f64 / secs / 1e6,
        media_manifest::MANIFEST_TXT,
        media_manifest::MANIFEST_JSON,
    );
}
