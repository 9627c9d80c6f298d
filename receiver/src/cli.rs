//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use std::path::Path;

use sluice_common::exit::{CommandError, Exit};

use crate::commands;
use sluice_host::logging::LogFormat;

/// Receive signed bundles from a data diode or removable media, verify every byte against
/// trusted signers, and commit them to a quarantine store. Never transmits anything.
///
/// Typical high-side setup:
///
///   sluice-recv verify --trust /etc/sluice/trust u.sluice      # check one bundle file
///   sluice-recv listen --bind 10.0.0.2:7000 --store /var/lib/sluice --trust /etc/sluice/trust --link-key /etc/sluice/link.key
///
/// Each command's --help has examples and what each of its exit codes means.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-recv",
    version = sluice_host::VERSION,
    about,
    long_about,
    verbatim_doc_comment,
    max_term_width = 100,
    after_help = commands::exit_summary()
)]
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
    // Each subcommand's help text (short and long, examples, exit codes) comes from its `Args`
    // doc comment and `EXIT_CODES`: a doc comment on a variant here would replace it.
    Verify(commands::verify::Args),
    Listen(Box<commands::listen::Args>),
    Import(commands::import::Args),
    Status(commands::status::Args),
    Audit(commands::audit::Args),
    Staging(commands::staging::Args),
    Doctor(commands::doctor::Args),
}

/// Runs one subcommand with the --config file (if any) applied. It lives beside the flags it
/// matches on, so `commands/` never imports `cli`: the two form no import circle.
pub fn dispatch(command: Command, config: Option<&Path>) -> Result<Exit, CommandError> {
    use crate::commands::{audit, doctor, import, listen, staging, status, verify};
    let config = config
        .map(crate::config::load)
        .transpose()?
        .unwrap_or_default();
    match command {
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => listen::run(listen::settle(*args, &config.listen)?),
        Command::Import(args) => import::run(args),
        Command::Status(args) => status::run(status::settle(args, &config)?),
        Command::Audit(args) => audit::run(args),
        Command::Staging(args) => staging::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use sluice_host::helpcheck::{missing_from_subcommands, missing_from_top_level, render_help};

    use super::*;

    fn help(path: &[&str]) -> String {
        render_help(Cli::command(), path)
    }

    #[test]
    fn top_level_help_names_every_code_a_command_returns() {
        let top = help(&[]);
        let missing = missing_from_top_level(&top, &commands::exit_codes());
        assert!(missing.is_empty(), "{missing:#?}\n{top}");
        assert!(top.contains("9 network"), "{top}");
    }

    #[test]
    fn every_subcommand_help_has_its_codes_and_an_example() {
        let missing = missing_from_subcommands(
            &Cli::command(),
            "sluice-recv",
            &commands::exit_codes(),
            &["  sluice-recv --config "],
        );
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        assert!(help(&["audit"]).contains("  sluice-recv audit verify "));
    }

    #[test]
    fn the_example_session_stays_one_command_per_line() {
        let top = help(&[]);
        assert!(
            top.lines()
                .any(|l| l.trim_start().starts_with("sluice-recv listen --bind")),
            "{top}"
        );
    }
}
