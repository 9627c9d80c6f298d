//! `sluice-recv`: the high side. See `sluice-recv --help` and docs/operations.md.
//!
//! This binary never transmits toward the diode: it contains no code that sends datagrams.
//! `main` only parses flags, sets up logging and maps the outcome to the exit-code contract in
//! `sluice_common::exit`; each subcommand lives in `commands/`.

mod cli;
mod commands;
mod config;
mod early;
mod heap;
mod hostcheck;
mod ingest;
mod logging;
mod media;
mod metrics;
mod net;
mod sigpipe;
mod stager;
mod store;
mod trust_dir;

use clap::Parser;

fn main() -> std::process::ExitCode {
    sigpipe::quiet_on_closed_stdout();
    heap::keep_block_buffers();
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let code = commands::dispatch(cli.command, cli.config.as_deref());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
