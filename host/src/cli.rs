//! The flags every subcommand of both binaries takes (`--log-format`, `-v`, `--config`), defined
//! once and flattened into each `Cli` so that names, env vars and help stay the same, and shown
//! under their own "Global options" heading in every `--help` (`receiver/src/cli.rs` tests).
//!
//! What `--config` applies to differs per binary, so each `Cli` replaces its help with
//! [`config_help`] naming the commands that really read the file.

use std::path::PathBuf;

use crate::logging::LogFormat;

/// The heading global options appear under in every `--help`.
pub const HEADING: &str = "Global options";

#[derive(Debug, clap::Args)]
#[command(next_help_heading = HEADING)]
pub struct GlobalArgs {
    /// Log format on stderr: `text` for people, `json` (one object per line) for a SIEM.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More log detail (-v info, -vv debug, -vvv trace). Default: warnings and errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// TOML configuration file (each binary names the commands that read it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--config`'s help: which commands read the file (`readers`, e.g. "`udp` ([send]) and
/// `watch` ([send], [watch])") and that every other command ignores it. Both binaries' `Cli`
/// apply it with `mut_arg("config", …)`.
pub fn config_help(arg: clap::Arg, readers: &'static str) -> clap::Arg {
    arg.help(format!(
        "TOML configuration file, read only by {readers}; other commands ignore it. Flags \
         given on the command line override it. See docs/configuration.md."
    ))
}
