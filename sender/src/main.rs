//! `sluice-send`: the low side. See `sluice-send --help` and docs/operations.md.
//!
//! `main` only parses flags, sets up logging and maps the outcome to the exit-code contract in
//! `sluice_common::exit`; each subcommand lives in `commands/`.

mod cli;
mod commands;
mod config;
mod link;
mod logging;
mod net;
mod progress;
// The doctor's host checks and the trust-directory loader are the receiver's files, compiled
// here too: one implementation, two binaries.
#[path = "../../receiver/src/heap.rs"]
mod heap;
#[path = "../../receiver/src/hostcheck.rs"]
mod hostcheck;
#[path = "../../receiver/src/sigpipe.rs"]
mod sigpipe;
#[path = "../../receiver/src/trust_dir.rs"]
mod trust_dir;
// Unix seconds to RFC 3339 without a date crate, for send records: the store's helper.
#[path = "../../receiver/src/store/time.rs"]
#[allow(dead_code)]
mod time;

use clap::Parser;

fn main() -> std::process::ExitCode {
    sigpipe::quiet_on_closed_stdout();
    heap::keep_block_buffers();
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let code = commands::dispatch(cli.command, cli.config.as_deref());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
