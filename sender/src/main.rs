//! `sluice-send`: the low side. See `sluice-send --help` and docs/operations.md.
//!
//! `main` only parses flags, sets up logging, runs the command and prints its error, if any,
//! exactly once; the exit code follows the contract in `sluice_common::exit`. Each subcommand
//! lives in the library's `commands/`.

use std::process::ExitCode;

use clap::Parser;
use sluice_send::cli;

fn main() -> ExitCode {
    sluice_host::process_start();
    let cli = cli::Cli::parse();
    sluice_host::logging::init(cli.global.log_format, cli.global.verbose);
    sluice_host::exit_with(cli::dispatch(cli.command, cli.global.config.as_deref()))
}
