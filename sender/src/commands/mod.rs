//! One thin adapter per subcommand: flags in, `Result<Exit, CommandError>` out. `main` prints
//! the error once and exits with its code. No command module imports another; what they share
//! lives outside `commands/` (`settings`, `prepare`, `link`).

pub mod bundle;
pub mod doctor;
pub mod keygen;
pub mod media;
pub mod udp;
pub mod watch;

use std::path::Path;

use sluice_common::exit::{CommandError, Exit};

use crate::cli::Command;

/// Runs one subcommand with the --config file (if any) applied.
pub fn dispatch(command: Command, config: Option<&Path>) -> Result<Exit, CommandError> {
    let config = config
        .map(crate::config::load)
        .transpose()?
        .unwrap_or_default();
    match command {
        Command::Keygen(args) => keygen::run(args),
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

/// Every subcommand's exit codes with what they mean there, for `--help` and its tests.
pub fn exit_codes() -> Vec<(&'static str, &'static [(Exit, &'static str)])> {
    vec![
        ("keygen", keygen::EXIT_CODES),
        ("bundle create", bundle::CREATE_EXIT_CODES),
        ("bundle inspect", bundle::INSPECT_EXIT_CODES),
        ("udp", udp::EXIT_CODES),
        ("watch", watch::EXIT_CODES),
        ("doctor", doctor::EXIT_CODES),
        ("media", media::EXIT_CODES),
    ]
}

/// The top-level `--help` line: every code any subcommand returns.
pub fn exit_summary() -> String {
    let all: Vec<Exit> = exit_codes()
        .into_iter()
        .flat_map(|(_, codes)| codes.iter().map(|(e, _)| *e))
        .collect();
    sluice_common::exit::help_summary(&all, 96)
}
