//! One module per subcommand; each returns an exit code from `sluice_common::exit`.

pub mod listen;
pub mod verify;

use crate::cli::Command;

pub fn dispatch(command: Command) -> i32 {
    match command {
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => listen::run(args),
    }
}
