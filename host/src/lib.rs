//! `sluice-host`: the host edges both binaries share. `sluice-common` may not touch files, clocks
//! or the OS; the few OS-facing helpers that the sender and the receiver both need live here once,
//! instead of being compiled into each binary from the other's tree.
//!
//! What it owns: the global flags of both binaries (`cli`), reading a `--config` file
//! (`config`), log setup (`logging`), the host checks of both `doctor`s (`hostcheck`), heap
//! tuning for block-sized buffers (`heap`), quiet SIGPIPE (`sigpipe`), the JSON convention
//! (`json`), reading a trust directory
//! (`trust_dir`) and a link-key file (`linkkey`), and wall-clock time (`time`).

pub mod cli;
pub mod config;
#[cfg(feature = "fake-host")]
pub mod fakehost;
pub mod heap;
pub mod helpcheck;
pub mod hostcheck;
pub mod json;
pub mod linkkey;
pub mod logging;
pub mod sigpipe;
pub mod time;
pub mod trust_dir;

/// `0.1.0 (commit 1234567890ab)`: the workspace version and the build's git commit (host/build.rs),
/// shown by both binaries' `--version` and the status page.
pub const VERSION: &str = env!("SLUICE_VERSION");

/// The full git commit this build came from, or `unknown` (host/build.rs).
pub const GIT_COMMIT: &str = env!("SLUICE_GIT_COMMIT");

/// What every Sluice binary does first, before parsing flags: a closed stdout ends the process
/// quietly (`sigpipe`), and block-sized buffers stay in the heap between blocks (`heap`).
pub fn process_start() {
    sigpipe::quiet_on_closed_stdout();
    heap::keep_block_buffers();
}

/// A command's result as the process exit: the error, if any, printed once on stderr (message
/// and remediation), and its code from the contract in `sluice_common::exit`.
pub fn exit_with(
    result: Result<sluice_common::exit::Exit, sluice_common::exit::CommandError>,
) -> std::process::ExitCode {
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            if logging::json_errors() {
                eprintln!("{}", json::error_object(&e));
            } else {
                eprintln!("{e}");
            }
            e.code.into()
        }
    }
}
