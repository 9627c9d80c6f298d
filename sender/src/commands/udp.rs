//! `sluice-send udp`: send bundles across a diode as paced RaptorQ UDP frames.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::transport::pacer::IP_UDP_OVERHEAD;

use crate::link::Link;
use crate::prepare::{self, Prepared};
use crate::settings::{self, LinkArgs, RateSource, SendSettings};

/// What each exit code means for `udp` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "every bundle sent"),
    (Exit::Failure, "internal error"),
    (
        Exit::Usage,
        "bad flags, config, profile, trust directory or link key, or no secret link key",
    ),
    (Exit::Input, "a bundle, profile or link key unreadable"),
    (
        Exit::Invalid,
        "a bundle failed its own verification (nothing is sent then)",
    ),
    (
        Exit::Untrusted,
        "a bundle's signer is not trusted (nothing is sent then)",
    ),
    (
        Exit::Policy,
        "a bundle's policy check failed (nothing is sent then)",
    ),
    (
        Exit::Network,
        "the socket could not be opened or a send failed",
    ),
    (
        Exit::Interrupted,
        "SIGINT/SIGTERM before every pass was out",
    ),
];

/// Send signed bundles one way across a data diode as RaptorQ forward-error-corrected UDP frames
///
/// Each bundle is first verified against --trust (signature and every file hash: no point sending
/// garbage across a one-way link). It is then cut into blocks, each block RaptorQ-encoded with
/// --overhead % repair symbols, and the symbols of a window of blocks are interleaved so a burst
/// of lost frames costs each block only a little. Frames are paced to --rate because a diode has
/// no back-pressure: overrunning it loses frames. Without --rate or --profile the pace is the
/// gbe-fibre-1500 profile's 909 Mbit/s; `--rate 0` sends unpaced (and warns). Extra --passes
/// send fresh repair symbols only, so every pass adds information for a receiver that missed
/// something.
///
/// Examples:
///
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --link-key link.key update.sluice
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --link-key link.key --rate 800M update.sluice
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --link-key link.key --profile 10gbe-jumbo-9000 --passes 2 *.sluice
///
/// The link key is required unless --to is loopback (`sluice-send link-keygen` makes one).
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, after_help = sluice_common::exit::help_table(EXIT_CODES))]
pub struct Args {
    #[command(flatten)]
    pub link: LinkArgs,
    /// Print a JSON summary on stdout instead of the human one.
    #[arg(long)]
    pub json: bool,
    /// Bundle files to send, in order.
    #[arg(required = true, value_name = "BUNDLE")]
    pub bundles: Vec<PathBuf>,
}

/// Sends every bundle (`args.link` already merged with --config by the dispatcher).
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let settings = settings::settle(&args.link)?;
    settings.log_pacing();
    let trust = prepare::load_trust(
        args.link.trust.as_deref(),
        "--trust DIR is required (or `trust` in the --config file's [send])",
    )?;
    let mut prepared = Vec::new();
    for path in &args.bundles {
        prepared.push(
            prepare::prepare(path, &trust)
                .map_err(|e| e.into_command_error(path, "nothing was sent"))?,
        );
    }
    let stop = crate::stop::on_signals()?;
    let report = send(&settings, &prepared, &stop, !args.json)?;
    if args.json {
        println!(
            "{}",
            sluice_host::json::stamp("send", report.to_json(&prepared, &settings))
        );
    } else {
        report.print(&prepared, &settings);
    }
    Ok(if report.interrupted {
        Exit::Interrupted
    } else {
        Exit::Ok
    })
}

/// What a send run did.
pub struct SendReport {
    pub frames: u64,
    pub wire_bytes: u64,
    /// Paced: wire bytes of the configured rate left unused (see `SenderStats`).
    pub pacing_unused_bytes: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub gso_batch: usize,
}

impl SendReport {
    fn payload_bytes(prepared: &[Prepared]) -> u64 {
        prepared.iter().map(|p| p.len).sum()
    }

    pub fn to_json(&self, prepared: &[Prepared], settings: &SendSettings) -> serde_json::Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        serde_json::json!({
            "bundles": prepared.iter().map(|p| serde_json::json!({
                "path": p.path.display().to_string(),
                "bundle_id": p.id.to_hex(),
                "channel": p.channel,
                "sequence": p.sequence,
                "bundle_bytes": p.len,
            })).collect::<Vec<_>>(),
            "destination": settings.destination.to_string(),
            "bundle_bytes": Self::payload_bytes(prepared),
            "frames": self.frames,
            "wire_bytes": self.wire_bytes,
            "pacing_unused_bytes": self.pacing_unused_bytes,
            "passes": settings.passes,
            "overhead_percent": settings.overhead,
            "mtu": settings.mtu,
            "rate_limit_bits_per_sec": settings.rate_bits,
            "rate_source": settings.rate_source.as_str(),
            "duration_secs": secs,
            "goodput_mb_per_sec": Self::payload_bytes(prepared) as f64 / secs / 1e6,
            "wire_mbit_per_sec": self.wire_bytes as f64 * 8.0 / secs / 1e6,
            "gso_segments_per_send": self.gso_batch,
            "interrupted": self.interrupted,
        })
    }

    pub fn print(&self, prepared: &[Prepared], settings: &SendSettings) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        // An interrupted run cannot say which bundles got all their passes out, so it does not
        // claim any was "sent".
        let verb = if self.interrupted {
            "not fully sent (interrupted)"
        } else {
            "sent"
        };
        for p in prepared {
            println!(
                "{verb} {} ({} bytes, channel {}, seq {}) id {}",
                p.path.display(),
                p.len,
                p.channel,
                p.sequence,
                p.id
            );
        }
        let pace = match (settings.rate_bits, settings.rate_source) {
            (None, _) => "unpaced".to_string(),
            (Some(b), RateSource::Default) => format!(
                "paced at {} Mbit/s ({} default)",
                b / 1_000_000,
                settings::DEFAULT_RATE_PROFILE
            ),
            (Some(b), _) => format!("paced at {} Mbit/s", b / 1_000_000),
        };
        println!(
            "{} frames, {} wire bytes in {:.2} s ({:.1} MB/s of bundle, {:.0} Mbit/s on the wire, {pace}) to {} with {} % overhead, {} pass(es){}",
            self.frames,
            self.wire_bytes,
            secs,
            Self::payload_bytes(prepared) as f64 / secs / 1e6,
            self.wire_bytes as f64 * 8.0 / secs / 1e6,
            settings.destination,
            settings.overhead,
            settings.passes,
            if self.interrupted {
                "; stopped by SIGINT/SIGTERM before the last pass: send again to complete (the \
                 receiver resumes what arrived)"
            } else {
                ""
            }
        );
    }
}

/// Drives the sender state machine over the socket until every bundle's passes are out.
pub fn send(
    settings: &SendSettings,
    prepared: &[Prepared],
    stop: &AtomicBool,
    show_progress: bool,
) -> Result<SendReport, CommandError> {
    let mut link = Link::open(settings)?;
    let start = Instant::now();
    for p in prepared {
        link.sender
            .queue_object(
                start,
                p.id.object_id(),
                p.len,
                sluice_host::time::now_unix_ms(),
            )
            .map_err(|e| CommandError::usage(format!("{}: {e}", p.path.display())))?;
    }
    let by_object: std::collections::HashMap<[u8; 16], &Prepared> =
        prepared.iter().map(|p| (p.id.object_id(), p)).collect();

    let total = prepared.iter().map(|p| p.len).sum::<u64>() * u64::from(settings.passes);
    let progress = if show_progress {
        crate::progress::bytes(total, "sending")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut interrupted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let pumped = link.pump(|id| by_object.get(id).copied())?;
        progress.inc(pumped.bytes_read);
        if link.sender.is_finished() {
            break;
        }
        if !pumped.did_work {
            let wake = link.next_wake(Instant::now() + Duration::from_millis(50));
            link.wait(wake)?;
        }
    }
    progress.finish_and_clear();
    let stats = link.sender.stats();
    Ok(SendReport {
        frames: stats.frames,
        wire_bytes: stats.bytes + IP_UDP_OVERHEAD as u64 * stats.frames,
        pacing_unused_bytes: stats.pacing_unused_bytes,
        elapsed: start.elapsed(),
        interrupted,
        gso_batch: link.gso_batch(),
    })
}
