//! How to send over UDP: the options `udp` and `watch` share (`[send]` in a --config file fills
//! them), and what they settle on once the profile, the file and the built-in defaults applied.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use sluice_common::exit::{CommandError, Exit};
use sluice_common::profile::Profile;
use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
use sluice_common::transport::params::recommended_block_size;
use sluice_common::transport::wire::{self, LinkKey};

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
    /// Pacing rate in bits per second on the wire, with an optional k/M/G suffix (e.g. 800M).
    /// Default: the profile's recommended rate, else the gbe-fibre-1500 profile's (909M), which
    /// is safe on any diode of 1 GbE or faster. `0` sends unpaced (warned: a diode has no
    /// back-pressure, so whatever the link or receiver cannot absorb is lost).
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
    /// Shared link key (`sluice-send link-keygen`); the same file as the receiver's. Required
    /// unless --to is a loopback address or --insecure-public-link-key is given.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Send under the documented public link key although --to is not loopback: the receiver
    /// then detects corruption but not forgery. For test links only.
    #[arg(long)]
    pub insecure_public_link_key: bool,
    /// Seconds between heartbeat frames, also while idle [default: 1].
    #[arg(long, value_name = "SECS")]
    pub heartbeat_interval: Option<f64>,
    /// UDP send buffer to request, in bytes or with a suffix (8MiB) [default: 8388608].
    #[arg(long, value_name = "SIZE", value_parser = sluice_common::size::parse_size_usize)]
    pub sndbuf: Option<usize>,
}

/// The profile whose rate paces a sender given neither `--rate` nor `--profile`: the slowest
/// diode the project ships a profile for, so the default never overruns a 1 GbE link or a
/// receiver that keeps up with one (issue 15: unpaced lost whole bundles at 5 % loss).
pub const DEFAULT_RATE_PROFILE: &str = "gbe-fibre-1500";

/// Where the pacing rate came from, for the log line and the JSON summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// `--rate` or `rate` in the --config file (`0` = unpaced).
    Explicit,
    /// The `--profile`'s `recommended_rate_bps`.
    Profile,
    /// Neither: [`DEFAULT_RATE_PROFILE`]'s rate.
    Default,
}

impl RateSource {
    /// The word in JSON summaries (`rate_source`).
    pub fn as_str(self) -> &'static str {
        match self {
            RateSource::Explicit => "rate",
            RateSource::Profile => "profile",
            RateSource::Default => "default",
        }
    }
}

/// What `udp` (or `watch`) settled on after applying the profile and flags.
#[derive(Debug, Clone)]
pub struct SendSettings {
    pub destination: SocketAddr,
    pub mtu: u32,
    /// Wire bits per second, `None` = unpaced (only ever from an explicit `--rate 0`, or a
    /// profile whose `recommended_rate_bps` is 0).
    pub rate_bits: Option<u64>,
    pub rate_source: RateSource,
    pub overhead: u32,
    pub passes: u16,
    pub window: u32,
    pub heartbeat: Duration,
    pub link_key: LinkKey,
    pub sndbuf: usize,
}

impl SendSettings {
    /// UDP payload bytes per datagram: the MTU less the IPv4 and UDP headers.
    pub fn datagram_len(&self) -> usize {
        datagram_len(self.mtu)
    }

    /// Says at start how the sender paces: INFO with the rate and where it came from, or a
    /// warning when unpaced.
    pub fn log_pacing(&self) {
        match (self.rate_bits, self.rate_source) {
            (Some(bits), RateSource::Default) => tracing::info!(
                rate_bits_per_sec = bits,
                "pacing at {} Mbit/s, the {DEFAULT_RATE_PROFILE} profile's rate (no --rate and no \
                 --profile); set --profile or --rate for a faster diode",
                bits / 1_000_000
            ),
            (Some(bits), source) => tracing::info!(
                rate_bits_per_sec = bits,
                source = source.as_str(),
                "pacing at {} Mbit/s",
                bits / 1_000_000
            ),
            (None, source) => tracing::warn!(
                source = source.as_str(),
                "sending unpaced (--rate 0, or a profile without a rate): a diode has no back-pressure, so frames the link or \
                 the receiver cannot absorb are lost, and beyond the repair overhead whole \
                 bundles; pace a little under the line rate, e.g. --profile gbe-fibre-1500 or \
                 --rate 900M"
            ),
        }
    }
}

/// UDP payload bytes per datagram at `mtu`.
pub fn datagram_len(mtu: u32) -> usize {
    (mtu as usize).saturating_sub(IP_UDP_OVERHEAD)
}

/// Applies profile defaults, then flags (already merged with --config, which wins over the
/// profile), then the built-in defaults.
pub fn settle(args: &LinkArgs) -> Result<SendSettings, CommandError> {
    let profile = match &args.profile {
        Some(p) => Some(load_profile(p)?),
        None => None,
    };
    let to = args.to.as_deref().ok_or_else(|| {
        CommandError::usage("--to HOST:PORT is required (or `to` in the --config file's [send])")
    })?;
    let destination = to
        .to_socket_addrs()
        .map_err(|e| {
            CommandError::usage(format!("--to {to}: {e}")).help(
                "give the receiver's address and UDP port as HOST:PORT, e.g. --to 10.0.0.2:7000",
            )
        })?
        .next()
        .ok_or_else(|| CommandError::usage(format!("--to {to} resolves to nothing")))?;
    let mtu = args.mtu.or(profile.as_ref().map(|p| p.mtu)).unwrap_or(1500);
    // 600, not IPv4's 576: the receiver refuses symbols under 512 bytes
    // (`Limits::DEFAULT_MIN_SYMBOL_SIZE`), and T = MTU − 28 − 58.
    if !(600..=65_535).contains(&mtu) {
        return Err(CommandError::usage(format!(
            "--mtu {mtu} is outside 600..=65535"
        )));
    }
    let (rate_bits, rate_source) = match (&args.rate, &profile) {
        (Some(text), _) => (parse_rate(text)?, RateSource::Explicit),
        (None, Some(p)) => (Some(p.recommended_rate_bps), RateSource::Profile),
        (None, None) => (Some(default_rate_bits()?), RateSource::Default),
    };
    let link_key = sluice_host::linkkey::load_for(
        args.link_key.as_deref(),
        sluice_host::linkkey::Endpoint::Udp(destination.ip()),
        args.insecure_public_link_key,
    )?;
    let passes = args
        .passes
        .or(profile.as_ref().map(|p| p.passes))
        .unwrap_or(1);
    if !(1..=100).contains(&passes) {
        return Err(CommandError::usage("--passes must be 1..=100"));
    }
    let heartbeat_interval = args.heartbeat_interval.unwrap_or(1.0);
    if !(heartbeat_interval > 0.0 && heartbeat_interval <= 3600.0) {
        return Err(CommandError::usage(
            "--heartbeat-interval must be in (0, 3600] seconds",
        ));
    }
    Ok(SendSettings {
        destination,
        mtu,
        rate_bits: rate_bits.filter(|&r| r > 0),
        rate_source,
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
    let block = recommended_block_size(wire::symbol_size_for_datagram(datagram_len(mtu)));
    (DEFAULT_WINDOW_BYTES / block.max(1)).clamp(1, 16)
}

/// The built-in [`DEFAULT_RATE_PROFILE`]'s `recommended_rate_bps` (the compiled-in copy, so a
/// profile directory cannot change what "no flags" means).
pub fn default_rate_bits() -> Result<u64, CommandError> {
    sluice_common::profile::builtin(DEFAULT_RATE_PROFILE)
        .and_then(|text| Profile::parse(text).ok())
        .map(|p| p.recommended_rate_bps)
        .ok_or_else(|| {
            CommandError::internal(format!(
                "the built-in {DEFAULT_RATE_PROFILE} profile is missing or invalid"
            ))
        })
}

/// Resolves `--profile` (a file, a name in a profile directory, or a built-in profile; see
/// `hostcheck::find_profile`) and maps lookup failures onto the exit-code contract.
pub fn load_profile(name_or_path: &str) -> Result<Profile, CommandError> {
    use sluice_host::hostcheck::{ProfileLookupError, find_profile};
    find_profile(name_or_path)
        .map(|found| found.profile)
        .map_err(|e| {
            let code = match e {
                ProfileLookupError::Unreadable { .. } => Exit::Input,
                _ => Exit::Usage,
            };
            CommandError::new(code, e.to_string())
        })
}

/// Parses `800M`, `1.5G`, `250k`, `0` (bits per second) with the parser every size flag shares
/// (`sluice_common::size`, documented in docs/configuration.md "Sizes and rates").
pub fn parse_rate(text: &str) -> Result<Option<u64>, CommandError> {
    let bits = sluice_common::size::parse_rate(text)
        .map_err(|e| CommandError::usage(format!("--rate {e}")))?;
    if bits > MAX_RATE_BITS {
        return Err(CommandError::usage(format!(
            "--rate {text:?} is out of range (0 to 1000G)"
        )));
    }
    Ok((bits > 0).then_some(bits))
}

/// The fastest rate the pacer is asked for: 1 Tbit/s, far above any diode.
const MAX_RATE_BITS: u64 = 1_000_000_000_000;

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

    fn args(rate: Option<&str>, profile: Option<&str>) -> LinkArgs {
        LinkArgs {
            to: Some("127.0.0.1:7000".into()),
            trust: None,
            profile: profile.map(String::from),
            rate: rate.map(String::from),
            overhead: None,
            mtu: None,
            passes: None,
            window: None,
            link_key: None,
            insecure_public_link_key: false,
            heartbeat_interval: None,
            sndbuf: None,
        }
    }

    /// Issue 15: no --rate and no --profile paces at gbe-fibre-1500's rate; unpaced needs an
    /// explicit `--rate 0`.
    #[test]
    fn the_default_is_paced_and_unpaced_needs_rate_zero() {
        let s = settle(&args(None, None)).unwrap();
        assert_eq!(s.rate_bits, Some(909_000_000));
        assert_eq!(s.rate_source, RateSource::Default);
        assert_eq!(default_rate_bits().unwrap(), 909_000_000);

        let s = settle(&args(Some("0"), None)).unwrap();
        assert_eq!(s.rate_bits, None);
        assert_eq!(s.rate_source, RateSource::Explicit);

        let s = settle(&args(Some("1600M"), None)).unwrap();
        assert_eq!(s.rate_bits, Some(1_600_000_000));

        let s = settle(&args(None, Some("10gbe-jumbo-9000"))).unwrap();
        assert_eq!(s.rate_source, RateSource::Profile);
        assert!(s.rate_bits.unwrap() > 909_000_000);
    }

    #[test]
    fn datagrams_leave_room_for_the_ip_and_udp_headers() {
        assert_eq!(datagram_len(1500), 1472);
        assert_eq!(datagram_len(9000), 8972);
    }
}
