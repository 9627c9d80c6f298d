//! One thin adapter per subcommand: flags in, `Result<Exit, CommandError>` out. `main` prints
//! the error once and exits with its code. No command module imports another; what they share
//! lives outside `commands/` (`setup`, `report`, `config`).

pub mod audit;
pub mod doctor;
pub mod import;
pub mod listen;
pub mod staging;
pub mod status;
pub mod verify;

use sluice_common::exit::Exit;

/// Every subcommand's exit codes with what they mean there, for `--help` and its tests.
pub fn exit_codes() -> Vec<(&'static str, &'static [(Exit, &'static str)])> {
    vec![
        ("verify", verify::EXIT_CODES),
        ("listen", listen::EXIT_CODES),
        ("import", import::EXIT_CODES),
        ("status", status::EXIT_CODES),
        ("audit verify", audit::EXIT_CODES),
        ("staging list", staging::EXIT_CODES),
        ("staging purge", staging::EXIT_CODES),
        ("doctor", doctor::EXIT_CODES),
    ]
}

/// The top-level `--help` line: every code any subcommand returns.
pub fn exit_summary() -> String {
    sluice_common::exit::commands_summary(&exit_codes(), 96)
}
