//! `sluice-recv`: the high side. See `sluice-recv --help` and docs/operations.md.
//!
//! `main` only parses flags, sets up logging and maps the outcome to the exit-code contract in
//! `sluice_common::exit`; each subcommand lives in the library's `commands/`.

use clap::Parser;
use sluice_recv::{cli, commands};

fn main() -> std::process::ExitCode {
    sluice_host::sigpipe::quiet_on_closed_stdout();
    sluice_host::heap::keep_block_buffers();
    let cli = cli::Cli::parse();
    sluice_host::logging::init(cli.log_format, cli.verbose);
    let code = commands::dispatch(cli.command, cli.config.as_deref());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
