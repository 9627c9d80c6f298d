//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use std::path::Path;

use sluice_common::exit::{CommandError, Exit};

use crate::commands;
use sluice_host::cli::{GlobalArgs, config_help};

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
    after_help = commands::exit_summary(),
    mut_arg("config", |a| config_help(a, "`listen` ([listen]) and `status` ([status], and `store`/`trust` of [listen])"))
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
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
    let config = crate::config::load(config)?;
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
