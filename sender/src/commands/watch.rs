//! `sluice-send watch`: a long-running sender that sends every complete bundle appearing in an
//! outbox directory, for nightly jobs nobody watches.
//!
//! One [`Sender`] state machine lives for the whole run: bundles are queued into it one after
//! another and, between bundles, it keeps emitting heartbeats, so the high side sees one sender
//! with a continuous heartbeat sequence and a ledger of what was sent. The outbox directory itself
//! is the only state: a bundle leaves it (renamed into `sent/` or `failed/`) only once its fate is
//! decided, so a restart resumes by looking at the directory again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::VerifyError;
use sluice_common::exit::{CommandError, Exit};
use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
use sluice_common::transport::send::SenderStats;
use sluice_common::transport::wire;

use crate::config::Config;
use crate::link::Link;
use crate::prepare::{self, PrepareError, Prepared};
use crate::settings::{self, LinkArgs, SendSettings};

/// Default seconds between outbox scans.
pub const DEFAULT_POLL_SECS: f64 = 2.0;
/// Default seconds a bundle's size and mtime must stay unchanged before it is sent.
pub const DEFAULT_STABLE_SECS: u64 = 2;
/// The only file names the watcher sends.
pub const BUNDLE_SUFFIX: &str = ".sluice";

/// What each exit code means for `watch` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (
        Exit::Ok,
        "stopped by SIGINT/SIGTERM (the bundle in flight stays in the outbox)",
    ),
    (Exit::Failure, "internal error"),
    (
        Exit::Usage,
        "bad flags, config, profile, trust directory or link key, or no secret link key",
    ),
    (Exit::Input, "the profile or link key unreadable"),
    (Exit::Storage, "the outbox cannot be read or written"),
    (
        Exit::Network,
        "a socket or send failed (the bundle in flight stays)",
    ),
];

/// Watch an outbox directory and send every complete bundle that appears in it
///
/// Writers must make a bundle appear atomically: copy it under a name starting with `.` or
/// ending in `.tmp` (both ignored), then rename it to `NAME.sluice` in the same directory. As a
/// second guard for writers that do not rename, a bundle is only taken once its size and mtime
/// stayed unchanged for --stable-secs.
///
/// Each bundle is verified against --trust, sent with --passes passes, then moved to
/// OUTBOX/sent/ beside a send record sent/NAME.sluice.sent.json (bundle id, channel, sequence,
/// bytes, frames, passes, start/end time, rate). A bundle that fails its own verification is
/// moved to OUTBOX/failed/ with NAME.sluice.reason.json (reason code, detail, remediation). Heartbeats
/// keep flowing while idle, so the receiver can tell "nothing to send" from "link dead".
///
/// Delivery is at least once: a bundle leaves the outbox only after its last pass, so a crash
/// or SIGTERM mid-send leaves it there and the next start sends it again (the receiver records
/// a duplicate if the first copy had arrived). A file in sent/ is never sent again.
///
/// Examples:
///
///   sluice-send watch --outbox /srv/outbox --to 10.0.0.2:7000 --trust /etc/sluice/trust \
///       --link-key /etc/sluice/link.key --rate 800M
///   sluice-send --config /etc/sluice/send.toml watch
///
/// SIGTERM/SIGINT: the current frame batch goes out, the bundle in flight stays in the outbox,
/// exit 0.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, after_help = sluice_common::exit::help_table(EXIT_CODES))]
pub struct Args {
    /// The outbox directory to watch (must exist; sent/ and failed/ are created in it).
    /// Required (here or as `outbox` in the --config file's [watch] section).
    #[arg(long, value_name = "DIR")]
    pub outbox: Option<PathBuf>,
    /// Seconds between outbox scans [default: 2].
    #[arg(long, value_name = "SECS")]
    pub poll: Option<f64>,
    /// Seconds a bundle's size and mtime must stay unchanged before it is sent [default: 2].
    #[arg(long, value_name = "SECS")]
    pub stable_secs: Option<u64>,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Print one JSON line per sent or failed bundle on stdout instead of a human line.
    #[arg(long)]
    pub json: bool,
}

/// What `watch` settled on.
struct WatchSettings {
    outbox: PathBuf,
    poll: Duration,
    stable: Duration,
    json: bool,
}

/// Watches until stopped; `config` fills what the flags leave open.
pub fn run(args: Args, config: &Config) -> Result<Exit, CommandError> {
    let mut link = args.link;
    let mut json = args.json;
    crate::config::merge_send(&mut link, &mut json, &config.send);
    let settings = settings::settle(&link)?;
    settings.log_pacing();
    let trust = prepare::load_trust(
        link.trust.as_deref(),
        "--trust DIR is required (or `trust` in the --config file's [send])",
    )?;
    let outbox = args.outbox.or(config.watch.outbox.clone()).ok_or_else(|| {
        CommandError::usage("--outbox DIR is required (or `outbox` in the --config file's [watch])")
    })?;
    let poll = args.poll.or(config.watch.poll).unwrap_or(DEFAULT_POLL_SECS);
    if !(0.05..=3600.0).contains(&poll) {
        return Err(CommandError::usage("--poll must be 0.05 to 3600 seconds"));
    }
    let stable = args
        .stable_secs
        .or(config.watch.stable_secs)
        .unwrap_or(DEFAULT_STABLE_SECS);
    if stable > 86_400 {
        return Err(CommandError::usage("--stable-secs must be at most 86400"));
    }
    let watch = WatchSettings {
        outbox,
        poll: Duration::from_secs_f64(poll),
        stable: Duration::from_secs(stable),
        json,
    };
    if !watch.outbox.is_dir() {
        return Err(CommandError::usage(format!(
            "outbox {} is not a directory; create it (writers rename finished bundles into it)",
            watch.outbox.display()
        )));
    }
    for sub in ["sent", "failed"] {
        std::fs::create_dir_all(watch.outbox.join(sub)).map_err(|e| {
            CommandError::storage(format!(
                "cannot create {}: {e}",
                watch.outbox.join(sub).display()
            ))
        })?;
    }
    let stop = crate::stop::on_signals()?;
    let mut watcher = Watcher {
        link: Link::open(&settings)?,
        settings,
        watch,
        trust,
        seen: HashMap::new(),
    };
    tracing::info!(outbox = %watcher.watch.outbox.display(), destination = %watcher.settings.destination,
        "watching the outbox");
    watcher.run(&stop)
}

/// A candidate's last observed size and mtime, and since when they have not changed.
struct Seen {
    size: u64,
    mtime: SystemTime,
    unchanged_since: Instant,
    /// A file the watcher could not handle (unreadable, cannot be moved) is skipped until it
    /// changes, instead of being retried every scan.
    skip: bool,
}

/// The bundle being sent and the counters when it started.
struct InFlight {
    prepared: Prepared,
    name: OsString,
    started_unix_ms: u64,
    started: Instant,
    stats_at_start: SenderStats,
}

struct Watcher {
    link: Link,
    settings: SendSettings,
    watch: WatchSettings,
    trust: TrustStore,
    seen: HashMap<OsString, Seen>,
}

impl Watcher {
    fn run(&mut self, stop: &AtomicBool) -> Result<Exit, CommandError> {
        let mut current: Option<InFlight> = None;
        let mut next_scan = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                if let Some(c) = &current {
                    tracing::warn!(bundle = %c.prepared.path.display(),
                        "stopping mid-send: the bundle stays in the outbox and is sent again at the next start");
                }
                tracing::info!("stopped");
                return Ok(Exit::Ok);
            }
            let now = Instant::now();
            if current.is_none() && now >= next_scan {
                next_scan = now + self.watch.poll;
                if let Some(next) = self.next_bundle(now)? {
                    // Start at once, and look again as soon as it is done.
                    current = Some(next);
                    next_scan = now;
                }
            }
            let prepared = current.as_ref().map(|c| &c.prepared);
            let did_work = self
                .link
                .pump(|id| prepared.filter(|p| p.id.object_id() == *id))?
                .did_work;
            if current.is_some() && self.link.sender.is_finished() {
                if let Some(done) = current.take() {
                    self.finish(done)?;
                }
                continue;
            }
            if did_work {
                continue;
            }
            let cap = if current.is_none() {
                next_scan.min(now + Duration::from_millis(200))
            } else {
                now + Duration::from_millis(200)
            };
            let wake = self.link.next_wake(cap);
            self.link.wait(wake)?;
        }
    }

    /// Scans the outbox and starts sending the next ready bundle, moving any that fail their own
    /// verification to failed/ on the way. `None` when nothing is ready.
    fn next_bundle(&mut self, now: Instant) -> Result<Option<InFlight>, CommandError> {
        loop {
            let ready = self.scan(now)?;
            let Some(name) = ready else {
                return Ok(None);
            };
            let path = self.watch.outbox.join(&name);
            // A bundle that fails its own verification goes to failed/; one that cannot be read
            // (vanished, permissions) is skipped until it changes.
            match prepare::prepare(&path, &self.trust) {
                Ok(prepared) => {
                    let stats_at_start = self.link.sender.stats();
                    let started_unix_ms = sluice_host::time::now_unix_ms();
                    self.link
                        .sender
                        .queue_object(
                            Instant::now(),
                            prepared.id.object_id(),
                            prepared.len,
                            started_unix_ms,
                        )
                        .map_err(|e| CommandError::usage(format!("{}: {e}", path.display())))?;
                    tracing::info!(bundle = %path.display(), id = %prepared.id, channel = %prepared.channel,
                        sequence = prepared.sequence, bytes = prepared.len, "sending");
                    return Ok(Some(InFlight {
                        prepared,
                        name,
                        started_unix_ms,
                        started: Instant::now(),
                        stats_at_start,
                    }));
                }
                Err(PrepareError::Invalid(e)) => self.fail(&name, &e)?,
                Err(PrepareError::Open(e) | PrepareError::Stat(e)) => {
                    let detail = format!("{}: {e}", path.display());
                    tracing::warn!(bundle = %path.display(), %detail,
                        "cannot read this bundle; skipping it until it changes");
                    if let Some(s) = self.seen.get_mut(&name) {
                        s.skip = true;
                    }
                }
            }
        }
    }

    /// Lists the outbox and returns the next bundle that is ready: a regular file named
    /// `*.sluice` not starting with `.`, whose size and mtime have not changed for the stability
    /// period (observed by this process, and by its mtime's age). Bundles go out in name order.
    fn scan(&mut self, now: Instant) -> Result<Option<OsString>, CommandError> {
        let unlistable = |e: std::io::Error| {
            CommandError::storage(format!(
                "cannot list the outbox {}: {e}",
                self.watch.outbox.display()
            ))
        };
        let entries = std::fs::read_dir(&self.watch.outbox).map_err(unlistable)?;
        let mut present = Vec::new();
        for entry in entries {
            let entry = entry.map_err(unlistable)?;
            let name = entry.file_name();
            if !is_candidate_name(&name) {
                continue;
            }
            // Not followed: a symlink or directory named *.sluice is not a bundle.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
            let size = meta.len();
            let seen = self.seen.entry(name.clone()).or_insert(Seen {
                size,
                mtime,
                unchanged_since: now,
                skip: false,
            });
            if seen.size != size || seen.mtime != mtime {
                *seen = Seen {
                    size,
                    mtime,
                    unchanged_since: now,
                    skip: false,
                };
            }
            present.push(name);
        }
        self.seen.retain(|name, _| present.contains(name));
        present.sort();
        let stable = self.watch.stable;
        let wall = SystemTime::now();
        Ok(present.into_iter().find(|name| {
            let s = &self.seen[name];
            let mtime_age = wall.duration_since(s.mtime).unwrap_or(Duration::ZERO);
            !s.skip && now.duration_since(s.unchanged_since) >= stable && mtime_age >= stable
        }))
    }

    /// The last pass is out: move the bundle to sent/ (it is never sent again), then write its
    /// send record.
    fn finish(&mut self, done: InFlight) -> Result<(), CommandError> {
        let stats = self.link.sender.stats();
        let ended_unix_ms = sluice_host::time::now_unix_ms();
        let elapsed = done.started.elapsed().as_secs_f64().max(1e-9);
        let p = &done.prepared;
        let sent_dir = self.watch.outbox.join("sent");
        let target = move_out(&p.path, &sent_dir, &done.name)?;
        let frames = (stats.data_frames - done.stats_at_start.data_frames)
            + (stats.end_frames - done.stats_at_start.end_frames);
        let wire_bytes =
            frames * (wire::data_frame_len(self.link_symbol_size()) + IP_UDP_OVERHEAD) as u64;
        let record = serde_json::json!({
            "schema": sluice_host::json::schema_id("send-record"),
            "outcome": "sent",
            "file": target.file_name().map(|n| n.to_string_lossy().into_owned()),
            "bundle_id": p.id.to_hex(),
            "object_id": p.id.to_hex()[..32].to_string(),
            "channel": p.channel,
            "sequence": p.sequence,
            "bundle_bytes": p.len,
            "frames": frames,
            "passes": self.settings.passes,
            "overhead_percent": self.settings.overhead,
            "destination": self.settings.destination.to_string(),
            "start_unix_ms": done.started_unix_ms,
            "end_unix_ms": ended_unix_ms,
            "start": rfc3339_ms(done.started_unix_ms),
            "end": rfc3339_ms(ended_unix_ms),
            "duration_secs": elapsed,
            "rate_limit_bits_per_sec": self.settings.rate_bits,
            "rate_source": self.settings.rate_source.as_str(),
            "goodput_mb_per_sec": p.len as f64 * f64::from(self.settings.passes) / elapsed / 1e6,
            "wire_mbit_per_sec": wire_bytes as f64 * 8.0 / elapsed / 1e6,
        });
        let record_path = sent_dir.join(record_name(&target, ".sent.json"));
        write_record(&record_path, &record)?;
        tracing::info!(bundle = %target.display(), id = %p.id, frames, "sent; moved to sent/");
        if self.watch.json {
            println!("{record}");
        } else {
            println!(
                "sent {} ({} bytes, channel {}, seq {}) id {} in {:.1} s -> {}",
                done.name.to_string_lossy(),
                p.len,
                p.channel,
                p.sequence,
                p.id,
                elapsed,
                target.display()
            );
        }
        Ok(())
    }

    fn link_symbol_size(&self) -> u16 {
        wire::symbol_size_for_datagram(self.settings.datagram_len())
    }

    /// A bundle that fails its own verification is never sent: it goes to failed/ with a
    /// reason record an operator can act on.
    fn fail(&mut self, name: &OsString, e: &VerifyError) -> Result<(), CommandError> {
        let path = self.watch.outbox.join(name);
        let failed_dir = self.watch.outbox.join("failed");
        let target = match move_out(&path, &failed_dir, name) {
            Ok(t) => t,
            Err(f) => {
                tracing::error!(bundle = %path.display(), error = %f.message,
                    "a bundle failed its verification but cannot be moved to failed/; skipping it");
                if let Some(s) = self.seen.get_mut(name) {
                    s.skip = true;
                }
                return Ok(());
            }
        };
        let now = sluice_host::time::now_unix_ms();
        let record = serde_json::json!({
            "schema": sluice_host::json::schema_id("send-record"),
            "outcome": "failed",
            "file": target.file_name().map(|n| n.to_string_lossy().into_owned()),
            "reason": e.reason.code(),
            "detail": e.detail,
            "remediation": e.remediation(),
            "exit_code": e.reason.exit_code(),
            "time_unix_ms": now,
            "time": rfc3339_ms(now),
        });
        write_record(
            &failed_dir.join(record_name(&target, ".reason.json")),
            &record,
        )?;
        tracing::warn!(bundle = %path.display(), reason = e.reason.code(), detail = %e.detail,
            "bundle failed its own verification; moved to failed/, nothing sent");
        if self.watch.json {
            println!("{record}");
        } else {
            println!(
                "FAILED {} ({}: {}) -> {}. {}",
                name.to_string_lossy(),
                e.reason.code(),
                e.detail,
                target.display(),
                e.remediation()
            );
        }
        self.seen.remove(name);
        Ok(())
    }
}

/// Whether the watcher considers a directory entry at all: `*.sluice`, not hidden.
pub fn is_candidate_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(BUNDLE_SUFFIX) && name.len() > BUNDLE_SUFFIX.len()
}

/// Renames `path` into `dir` (same filesystem: atomic) under `name`, or `STEM.N.sluice` when
/// that name is taken, and makes the rename durable. Returns the new path.
fn move_out(path: &Path, dir: &Path, name: &OsString) -> Result<PathBuf, CommandError> {
    let text = name.to_string_lossy();
    let stem = text
        .strip_suffix(BUNDLE_SUFFIX)
        .unwrap_or(&text)
        .to_string();
    let mut target = dir.join(name);
    let mut n = 1u32;
    while target.exists() {
        target = dir.join(format!("{stem}.{n}{BUNDLE_SUFFIX}"));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|e| {
        CommandError::storage(format!(
            "cannot move {} to {}: {e}",
            path.display(),
            target.display()
        ))
    })?;
    for d in [dir, path.parent().unwrap_or(Path::new("."))] {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(target)
}

/// `NAME.sluice` → `NAME.sluice<suffix>`.
fn record_name(target: &Path, suffix: &str) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}{suffix}")
}

/// Writes a JSON record durably (temporary name, fsync, rename).
fn write_record(path: &Path, value: &serde_json::Value) -> Result<(), CommandError> {
    let tmp = path.with_extension("json.tmp");
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| CommandError::storage(format!("cannot write {}: {e}", path.display())))
}

fn rfc3339_ms(unix_ms: u64) -> String {
    sluice_host::time::rfc3339_ms(unix_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_bundle_names_are_candidates() {
        for ok in ["a.sluice", "2026-11-27.updates.sluice"] {
            assert!(is_candidate_name(ok.as_ref()), "{ok}");
        }
        for no in [
            ".a.sluice",
            "a.sluice.tmp",
            "a.tmp",
            ".sluice",
            "a.sluice.part",
            "sent",
        ] {
            assert!(!is_candidate_name(no.as_ref()), "{no}");
        }
    }
}
