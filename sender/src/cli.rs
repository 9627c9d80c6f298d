//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use crate::commands;
use sluice_host::logging::LogFormat;

/// Sign approved files into a bundle and send it one way: over a data diode as RaptorQ
/// forward-error-corrected UDP frames, or onto removable media as spool volumes.
///
/// Typical low-side session:
///
///   sluice-send keygen --out officer            # once: officer.key (secret) + officer.pub
///   sluice-send bundle create --key officer.key --channel updates --out u.sluice ./approved/
///   sluice-send udp --to 10.0.0.2:7000 --rate 800M u.sluice
///
/// Exit codes: 0 ok, 1 failure, 2 usage/config, 3 input unreadable, 4 invalid bundle,
/// 7 incomplete, 8 storage, 9 network, 130 interrupted (docs/operations.md).
#[derive(Debug, Parser)]
#[command(name = "sluice-send", version = env!("SLUICE_VERSION"), about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line) for a SIEM.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More log detail (-v info, -vv debug, -vvv trace). Default: warnings and errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// TOML configuration file with any option of `udp` and `watch` ([send], [watch]); flags
    /// given on the command line override it. See docs/configuration.md.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // Help text (short and long) comes from `keygen::Args`' doc comment.
    Keygen(commands::keygen::Args),
    /// Create or inspect signed bundles.
    #[command(subcommand)]
    Bundle(commands::bundle::BundleCommand),
    /// Send bundles across a diode as paced RaptorQ UDP frames.
    Udp(commands::udp::Args),
    // Help text (short and long: the outbox convention, exit codes) comes from `watch::Args`.
    Watch(commands::watch::Args),
    /// Preflight checks of this host (socket buffers, MTU, static neighbour, link key, profile).
    Doctor(commands::doctor::Args),
    /// Write bundles onto removable media as spool volumes.
    Media(commands::media::Args),
}
