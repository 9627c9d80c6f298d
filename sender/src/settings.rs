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

/// What `udp` (or `watch`) settled on after applying the profile and flags.
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

impl SendSettings {
    /// UDP payload bytes per datagram: the MTU less the IPv4 and UDP headers.
    pub fn datagram_len(&self) -> usize {
        datagram_len(self.mtu)
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
        .map_err(|e| CommandError::usage(format!("--to {to}: {e}")))?
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
    let rate_bits = match &args.rate {
        Some(text) => parse_rate(text)?,
        None => profile.as_ref().map(|p| p.recommended_rate_bps),
    };
    let link_key = load_link_key(args.link_key.as_deref())?;
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

/// The link key of `--link-key` (or the public default), through the one loader both binaries
/// share: an unreadable file is an input error, bytes that are no key a usage error.
pub fn load_link_key(path: Option<&std::path::Path>) -> Result<LinkKey, CommandError> {
    use sluice_host::linkkey::LinkKeyError;
    sluice_host::linkkey::load_link_key(path).map_err(|e| match e {
        LinkKeyError::Read(m) => CommandError::input(m),
        LinkKeyError::Format(m) => CommandError::usage(m),
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

/// Parses `800M`, `1.5G`, `250k`, `0` (bits per second).
pub fn parse_rate(text: &str) -> Result<Option<u64>, CommandError> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let value: f64 = number.parse().map_err(|_| {
        CommandError::usage(format!(
            "--rate {text:?} is not a rate: use bits per second with an optional k/M/G suffix, e.g. 800M"
        ))
    })?;
    let bits = value * scale;
    if !(0.0..=1e12).contains(&bits) {
        return Err(CommandError::usage(format!(
            "--rate {text:?} is out of range (0 to 1000G)"
        )));
    }
    Ok((bits >= 1.0).then_some(bits as u64))
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

    #[test]
    fn datagrams_leave_room_for_the_ip_and_udp_headers() {
        assert_eq!(datagram_len(1500), 1472);
        assert_eq!(datagram_len(9000), 8972);
    }
}
