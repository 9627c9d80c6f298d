//! `sluice-promote`: see `sluice-promote --help` and docs/promotion.md.

use clap::Parser;
use sluice_promote::cli;

fn main() -> std::process::ExitCode {
    sluice_host::sigpipe::quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    sluice_host::logging::init(cli.log_format, cli.verbose);
    let code = cli::dispatch(cli.command);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
