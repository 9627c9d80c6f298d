//! One module per subcommand; each returns an exit code from `sluice_common::exit`.

pub mod audit;
pub mod doctor;
pub mod import;
pub mod listen;
pub mod status;
pub mod verify;

use crate::cli::Command;

pub fn dispatch(command: Command) -> i32 {
    match command {
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Import(args) => import::run(args),
        Command::Status(args) => status::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}
