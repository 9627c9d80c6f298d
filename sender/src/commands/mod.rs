//! One thin adapter per subcommand: flags in, `Result<Exit, CommandError>` out. `main` prints
//! the error once and exits with its code. No command module imports another; what they share
//! lives outside `commands/` (`settings`, `prepare`, `link`).

pub mod bundle;
pub mod doctor;
pub mod keygen;
pub mod link_keygen;
pub mod media;
pub mod udp;
pub mod watch;

use sluice_common::exit::Exit;

/// Every subcommand's exit codes with what they mean there, for `--help` and its tests.
pub fn exit_codes() -> Vec<(&'static str, &'static [(Exit, &'static str)])> {
    vec![
        ("keygen", keygen::EXIT_CODES),
        ("link-keygen", link_keygen::EXIT_CODES),
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
    sluice_common::exit::commands_summary(&exit_codes(), 96)
}
