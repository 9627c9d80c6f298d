//! Raw command-line flags (clap). Validation into a usable configuration happens in each
//! command's module, so this file stays a readable map of the interface.

use clap::{Parser, Subcommand};

use std::path::Path;

use sluice_common::exit::{CommandError, Exit};

use crate::commands;
use sluice_host::cli::{GlobalArgs, config_help};

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
    after_help = commands::exit_summary(),
    mut_arg("config", |a| config_help(a, "`udp` ([send]) and `watch` ([send], [watch])"))
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
    let config = crate::config::load(config)?;
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
