//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use crate::commands;
use sluice_host::logging::LogFormat;

/// Receive signed bundles from a data diode or removable media, verify every byte against
/// trusted signers, and commit them to a quarantine store. Never transmits anything.
///
/// Typical high-side setup:
///
///   sluice-recv verify --trust /etc/sluice/trust u.sluice      # check one bundle file
///   sluice-recv listen --bind 10.0.0.2:7000 --store /var/lib/sluice --trust /etc/sluice/trust
///
/// Exit codes: 0 ok, 1 failure, 2 usage/config, 3 input unreadable, 4 invalid bundle,
/// 5 untrusted signer, 6 policy refused, 7 incomplete, 8 storage, 130 interrupted
/// (docs/operations.md).
#[derive(Debug, Parser)]
#[command(name = "sluice-recv", version = env!("SLUICE_VERSION"), about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line) for a SIEM.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More log detail (-v info, -vv debug, -vvv trace). Default: warnings and errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// TOML configuration file with any option of `listen` ([listen]) and `status` ([status]);
    /// flags given on the command line override it. See docs/configuration.md.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Verify(commands::verify::Args),
    /// Listen for frames from the diode and commit verified bundles to the store.
    Listen(Box<commands::listen::Args>),
    /// Import spool volumes from removable media and commit verified bundles to the store.
    Import(commands::import::Args),
    /// Show what the store holds (quarantine, rejected, staging, audit, channel marks), overdue
    /// channels (with --trust) and bundles sent but never received.
    Status(commands::status::Args),
    /// Audit-log and quarantine integrity checks.
    Audit(commands::audit::Args),
    /// Preflight checks of this host (socket buffers, MTU, store, free space, trust, clock).
    Doctor(commands::doctor::Args),
}
