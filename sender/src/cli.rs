//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use std::path::Path;

use sluice_common::exit::{CommandError, Exit};

use crate::commands;
use sluice_host::logging::LogFormat;

/// Sign approved files into a bundle and send it one way: over a data diode as RaptorQ
/// forward-error-corrected UDP frames, or onto removable media as spool volumes.
///
/// Typical low-side session:
///
///   sluice-send keygen --out officer            # once: officer.key (secret) + officer.pub
///   sluice-send link-keygen --out link.key      # once: the link key; copy it to the high side
///   sluice-send bundle create --key officer.key --channel updates --out u.sluice ./approved/
///   sluice-send udp --to 10.0.0.2:7000 --trust ./trust --link-key link.key --rate 800M u.sluice
///
/// Each command's --help has examples and what each of its exit codes means.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-send",
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
    /// TOML configuration file with any option of `udp` and `watch` ([send], [watch]); flags
    /// given on the command line override it. See docs/configuration.md.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // Each subcommand's help text (short and long, examples, exit codes) comes from its `Args`
    // doc comment and `EXIT_CODES`: a doc comment on a variant here would replace it.
    Keygen(commands::keygen::Args),
    LinkKeygen(commands::link_keygen::Args),
    /// Create or inspect signed bundles
    ///
    /// Examples:
    ///
    ///   sluice-send bundle create --key alice.key --channel updates --out u.sluice approved/
    ///   sluice-send bundle inspect u.sluice
    #[command(subcommand, verbatim_doc_comment)]
    Bundle(commands::bundle::BundleCommand),
    Udp(commands::udp::Args),
    Watch(commands::watch::Args),
    Doctor(commands::doctor::Args),
    Media(commands::media::Args),
}

/// Runs one subcommand with the --config file (if any) applied. It lives beside the flags it
/// matches on, so `commands/` never imports `cli`: the two form no import circle.
pub fn dispatch(command: Command, config: Option<&Path>) -> Result<Exit, CommandError> {
    use crate::commands::{bundle, doctor, keygen, link_keygen, media, udp, watch};
    let config = config
        .map(crate::config::load)
        .transpose()?
        .unwrap_or_default();
    match command {
        Command::Keygen(args) => keygen::run(args),
        Command::LinkKeygen(args) => link_keygen::run(args),
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Udp(mut args) => {
            crate::config::merge_send(&mut args.link, &mut args.json, &config.send);
            udp::run(args)
        }
        Command::Watch(args) => watch::run(args, &config),
        Command::Doctor(args) => doctor::run(args),
        Command::Media(args) => media::run(args),
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
    }

    #[test]
    fn every_subcommand_help_has_its_codes_and_an_example() {
        let missing =
            missing_from_subcommands(&Cli::command(), "sluice-send", &commands::exit_codes(), &[]);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        assert!(help(&["bundle"]).contains("  sluice-send bundle inspect "));
    }

    #[test]
    fn the_example_session_stays_one_command_per_line() {
        let top = help(&[]);
        assert!(
            top.lines()
                .any(|l| l.trim_start().starts_with("sluice-send bundle create")),
            "{top}"
        );
    }
}
