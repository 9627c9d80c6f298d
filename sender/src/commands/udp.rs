//! `sluice-send udp`: send bundles across a diode as paced RaptorQ UDP frames.

use std::fs::File;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_common::bundle::BundleId;
use sluice_common::bundle::verify::{self, DiscardSink, VerifyOptions};
use sluice_common::exit;
use sluice_common::profile::Profile;
use sluice_common::transport::params::recommended_block_size;
use sluice_common::transport::wire::{self, LinkKey};

use crate::link::Link;

/// Send signed bundles one way across a data diode as RaptorQ forward-error-corrected UDP frames.
///
/// Each bundle is first verified against --trust (signature and every file hash: no point sending
/// garbage across a one-way link). It is then cut into blocks, each block RaptorQ-encoded with
/// --overhead % repair symbols, and the symbols of a window of blocks are interleaved so a burst
/// of lost frames costs each block only a little. Frames are paced to --rate because a diode has
/// no back-pressure: overrunning it loses frames. Extra --passes send fresh repair symbols only,
/// so every pass adds information for a receiver that missed something.
///
/// Examples:
///
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --rate 800M update.sluice
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --profile 10gbe-jumbo-9000 --passes 2 *.sluice
///
/// Exit codes: 0 sent; 2 bad flags or config; 3 a bundle unreadable; 4-6 a bundle failed its own
/// verification (nothing is sent then); 9 network error; 130 interrupted.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
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

/// How to send: the options `udp` and `watch` share (and `[send]` in a --config file fills).
#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// The diode's far side: receiver address and UDP port. Required (here or as `to` in the
    /// --config file's [send] section).
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Trust directory (*.pub signer keys, optional policy.toml) to check each bundle against
    /// before sending (`watch` reads it once at start). Required (here or in --config).
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Diode profile: a name (e.g. gbe-fibre-1500; looked up in $SLUICE_PROFILES,
    /// /etc/sluice/profiles, /usr/share/sluice/profiles, then built in) or a TOML file. It
    /// supplies defaults for --mtu, --rate, --overhead, --window and --passes.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Pacing rate in bits per second on the wire, with an optional k/M/G suffix (e.g. 800M);
    /// `0` sends unpaced. Default: the profile's recommended rate, else unpaced.
    #[arg(long, value_name = "BITS/S")]
    pub rate: Option<String>,
    /// Repair symbols per block per pass, in percent of its source symbols. Default: the
    /// profile's, else 10.
    #[arg(long, value_name = "PCT")]
    pub overhead: Option<u32>,
    /// Link MTU in bytes; each datagram is MTU − 28 bytes. Default: the profile's, else 1500.
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// Times each bundle is sent; passes after the first carry only fresh repair symbols.
    #[arg(long, value_name = "N")]
    pub passes: Option<u16>,
    /// Blocks interleaved at once (memory: window × block size). Default: the profile's, else
    /// as many blocks as fit in 20 MiB, at most 16 (16 at MTU 1500, 4 at MTU 9000).
    #[arg(long, value_name = "BLOCKS")]
    pub window: Option<u32>,
    /// Shared link key (32 raw bytes or 64 hex digits); must match the receiver's. Default: the
    /// documented public key, which lets the receiver detect corruption but not forgery.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Seconds between heartbeat frames, also while idle [default: 1].
    #[arg(long, value_name = "SECS")]
    pub heartbeat_interval: Option<f64>,
    /// UDP send buffer to request, in bytes [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub sndbuf: Option<usize>,
}

/// What `udp` settled on after applying the profile and flags.
#[derive(Debug, Clone)]
pub struct SendSettings {
    pub destination: SocketAddr,
    pub mtu: u32,
    pub rate_bits: Option<u64>,
    pub overhead: u32,
    pub passes: u16,
    pub window: u32,
    pub heartbeat: Duration,
    pub link_key: LinkKey,
    pub sndbuf: usize,
}

/// One bundle ready to send: opened, verified, identified.
pub struct Prepared {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub id: BundleId,
    pub channel: String,
    pub sequence: u64,
}

/// A user-facing failure with its exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

fn run_inner(args: Args) -> Result<i32, Failure> {
    let settings = settle(&args.link)?;
    if settings.rate_bits.is_none() {
        tracing::warn!(
            "sending unpaced (no --rate and no --profile): a diode has no back-pressure, so frames \
             the link or the receiver cannot absorb are lost; pace a little under the line rate, \
             e.g. --profile gbe-fibre-1500 or --rate 900M"
        );
    }
    let trust = load_trust(args.link.trust.as_deref())?;
    let mut prepared = Vec::new();
    for path in &args.bundles {
        prepared.push(prepare(path, &trust)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
            Failure::new(
                exit::FAILURE,
                format!("cannot install a signal handler: {e}"),
            )
        })?;
    }
    let report = send(&settings, &prepared, &stop, !args.json)?;
    if args.json {
        println!("{}", report.to_json(&prepared, &settings));
    } else {
        report.print(&prepared, &settings);
    }
    Ok(if report.interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

/// Loads the trust directory given as --trust (or in --config).
pub fn load_trust(dir: Option<&Path>) -> Result<sluice_common::bundle::trust::TrustStore, Failure> {
    let dir = dir.ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            "--trust DIR is required (or `trust` in the --config file's [send])",
        )
    })?;
    sluice_host::trust_dir::load_trust_dir(dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("{e:#}")))
}

/// Applies profile defaults, then flags (already merged with --config, which wins over the
/// profile), then the built-in defaults.
pub fn settle(args: &LinkArgs) -> Result<SendSettings, Failure> {
    let profile = match &args.profile {
        Some(p) => Some(load_profile(p)?),
        None => None,
    };
    let to = args.to.as_deref().ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            "--to HOST:PORT is required (or `to` in the --config file's [send])",
        )
    })?;
    let destination = to
        .to_socket_addrs()
        .map_err(|e| Failure::new(exit::USAGE, format!("--to {to}: {e}")))?
        .next()
        .ok_or_else(|| Failure::new(exit::USAGE, format!("--to {to} resolves to nothing")))?;
    let mtu = args.mtu.or(profile.as_ref().map(|p| p.mtu)).unwrap_or(1500);
    if !(576..=65_535).contains(&mtu) {
        return Err(Failure::new(
            exit::USAGE,
            format!("--mtu {mtu} is outside 576..=65535"),
        ));
    }
    let rate_bits = match &args.rate {
        Some(text) => parse_rate(text).map_err(|e| Failure::new(exit::USAGE, e))?,
        None => profile.as_ref().map(|p| p.recommended_rate_bps),
    };
    let link_key = match &args.link_key {
        None => LinkKey::public_default(),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                Failure::new(
                    exit::INPUT,
                    format!("cannot read link key {}: {e}", path.display()),
                )
            })?;
            sluice_common::linkkey::parse_link_key(&bytes).map_err(|e| {
                Failure::new(exit::USAGE, format!("link key {}: {e}", path.display()))
            })?
        }
    };
    let passes = args
        .passes
        .or(profile.as_ref().map(|p| p.passes))
        .unwrap_or(1);
    if !(1..=100).contains(&passes) {
        return Err(Failure::new(exit::USAGE, "--passes must be 1..=100"));
    }
    let heartbeat_interval = args.heartbeat_interval.unwrap_or(1.0);
    if !(heartbeat_interval > 0.0 && heartbeat_interval <= 3600.0) {
        return Err(Failure::new(
            exit::USAGE,
            "--heartbeat-interval must be in (0, 3600] seconds",
        ));
    }
    Ok(SendSettings {
        destination,
        mtu,
        rate_bits: rate_bits.filter(|&r| r > 0),
        overhead: args
            .overhead
            .or(profile.as_ref().map(|p| p.recommended_overhead_percent))
            .unwrap_or(10),
        passes,
        window: args
            .window
            .or(profile.as_ref().map(|p| p.window_blocks))
            .unwrap_or_else(|| default_window(mtu))
            .clamp(1, 1024),
        heartbeat: Duration::from_secs_f64(heartbeat_interval),
        link_key,
        sndbuf: args.sndbuf.unwrap_or(8 << 20),
    })
}

/// Bytes of blocks a default window spans. The receiver buffers every block of a window at its
/// worst case at once, and its default memory budget is 48 MiB (`sluice-recv listen --memory`):
/// 16 blocks of 1 MiB fit at MTU 1500, but 16 jumbo blocks (471 × 8914 B ≈ 4.2 MB) do not, and
/// a receiver that cannot hold a window evicts blocks before any completes. The sender holds
/// about 3 × the window (block copy, RaptorQ source and intermediate symbols), so 20 MiB keeps
/// both sides near 64 MiB of RSS at either MTU.
const DEFAULT_WINDOW_BYTES: u32 = 20 << 20;

/// Blocks per window when neither --window nor a profile says: as many as fit in
/// [`DEFAULT_WINDOW_BYTES`], at most 16.
pub fn default_window(mtu: u32) -> u32 {
    let datagram = mtu.saturating_sub(28) as usize;
    let block = recommended_block_size(wire::symbol_size_for_datagram(datagram));
    (DEFAULT_WINDOW_BYTES / block.max(1)).clamp(1, 16)
}

/// Resolves `--profile` (a file, a name in a profile directory, or a built-in profile; see
/// `hostcheck::find_profile`) and maps lookup failures onto the exit-code contract.
pub fn load_profile(name_or_path: &str) -> Result<Profile, Failure> {
    use sluice_host::hostcheck::{ProfileLookupError, find_profile};
    find_profile(name_or_path)
        .map(|found| found.profile)
        .map_err(|e| {
            let code = match e {
                ProfileLookupError::Unreadable { .. } => exit::INPUT,
                _ => exit::USAGE,
            };
            Failure::new(code, e.to_string())
        })
}

/// Parses `800M`, `1.5G`, `250k`, `0` (bits per second).
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("--rate {text:?} is not a rate: use bits per second with an optional k/M/G suffix, e.g. 800M")
    })?;
    let bits = value * scale;
    if !(0.0..=1e12).contains(&bits) {
        return Err(format!("--rate {text:?} is out of range (0 to 1000G)"));
    }
    Ok((bits >= 1.0).then_some(bits as u64))
}

/// Opens a bundle and verifies it fully against the trust directory before anything is sent.
pub fn prepare(
    path: &Path,
    trust: &sluice_common::bundle::trust::TrustStore,
) -> Result<Prepared, Failure> {
    let open = || {
        File::open(path).map_err(|e| {
            Failure::new(
                exit::INPUT,
                format!("cannot open bundle {}: {e}", path.display()),
            )
        })
    };
    let file = open()?;
    let len = file
        .metadata()
        .map_err(|e| Failure::new(exit::INPUT, format!("cannot stat {}: {e}", path.display())))?
        .len();
    let options = VerifyOptions {
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        last_sequence: None,
    };
    let verified = verify::verify(
        std::io::BufReader::with_capacity(1 << 20, open()?),
        trust,
        &options,
        &mut DiscardSink,
    )
    .map_err(|e| {
        Failure::new(
            e.reason.exit_code(),
            format!(
                "{} failed its own verification ({}: {}); nothing was sent. {}",
                path.display(),
                e.reason.code(),
                e.detail,
                e.remediation()
            ),
        )
    })?;
    Ok(Prepared {
        path: path.to_path_buf(),
        file,
        len,
        id: verified.id(),
        channel: verified.header().channel.clone(),
        sequence: verified.header().sequence,
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
                "bytes": p.len,
            })).collect::<Vec<_>>(),
            "destination": settings.destination.to_string(),
            "bytes": Self::payload_bytes(prepared),
            "frames": self.frames,
            "wire_bytes": self.wire_bytes,
            "pacing_unused_bytes": self.pacing_unused_bytes,
            "passes": settings.passes,
            "overhead_percent": settings.overhead,
            "mtu": settings.mtu,
            "rate_limit_bits_per_sec": settings.rate_bits,
            "duration_secs": secs,
            "goodput_mb_per_sec": Self::payload_bytes(prepared) as f64 / secs / 1e6,
            "wire_mbit_per_sec": self.wire_bytes as f64 * 8.0 / secs / 1e6,
            "gso_segments_per_send": self.gso_batch,
            "interrupted": self.interrupted,
        })
    }

    pub fn print(&self, prepared: &[Prepared], settings: &SendSettings) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        for p in prepared {
            println!(
                "sent {} ({} bytes, channel {}, seq {}) id {}",
                p.path.display(),
                p.len,
                p.channel,
                p.sequence,
                p.id
            );
        }
        println!(
            "{} frames, {} wire bytes in {:.2} s ({:.1} MB/s of bundle, {:.0} Mbit/s on the wire) to {} with {} % overhead, {} pass(es){}",
            self.frames,
            self.wire_bytes,
            secs,
            Self::payload_bytes(prepared) as f64 / secs / 1e6,
            self.wire_bytes as f64 * 8.0 / secs / 1e6,
            settings.destination,
            settings.overhead,
            settings.passes,
            if self.interrupted {
                " — INTERRUPTED"
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
) -> Result<SendReport, Failure> {
    let mut link = Link::open(settings)?;
    let start = Instant::now();
    for p in prepared {
        link.sender
            .queue_object(start, p.id.object_id(), p.len, unix_ms())
            .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", p.path.display())))?;
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
        wire_bytes: stats.bytes + 28 * stats.frames,
        pacing_unused_bytes: stats.pacing_unused_bytes,
        elapsed: start.elapsed(),
        interrupted,
        gso_batch: link.gso_batch(),
    })
}

/// A stable identity for heartbeats: derived from the host name, so the high side sees the same
/// sender across restarts.
pub fn sender_id() -> [u8; 16] {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_bytes();
    let hash = blake3::derive_key("sluice 2026 sender id v1", host);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_window_fits_the_receivers_default_budget() {
        assert_eq!(default_window(1500), 16);
        let jumbo = default_window(9000);
        assert!((1..16).contains(&jumbo), "{jumbo}");
        let block = recommended_block_size(wire::symbol_size_for_datagram(8972));
        assert!(u64::from(jumbo) * u64::from(block) <= 20 << 20);
    }

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("800M").unwrap(), Some(800_000_000));
        assert_eq!(parse_rate("1.5G").unwrap(), Some(1_500_000_000));
        assert_eq!(parse_rate("250k").unwrap(), Some(250_000));
        assert_eq!(parse_rate("0").unwrap(), None);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-5M").is_err());
    }
}
