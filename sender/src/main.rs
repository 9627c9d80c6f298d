//! `sluice-send`: the low side. See `sluice-send --help` and docs/operations.md.
//!
//! `main` only parses flags, sets up logging, runs the command and prints its error, if any,
//! exactly once; the exit code follows the contract in `sluice_common::exit`. Each subcommand
//! lives in the library's `commands/`.

use std::process::ExitCode;

use clap::Parser;
use sluice_send::cli;

fn main() -> ExitCode {
    sluice_host::sigpipe::quiet_on_closed_stdout();
    sluice_host::heap::keep_block_buffers();
    let cli = cli::Cli::parse();
    sluice_host::logging::init(cli.log_format, cli.verbose);
    match cli::dispatch(cli.command, cli.config.as_deref()) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("{e}");
            e.code.into()
        }
    }
}
