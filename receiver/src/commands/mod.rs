//! One module per subcommand; each returns an exit code from `sluice_common::exit`.

pub mod audit;
pub mod doctor;
pub mod import;
pub mod listen;
pub mod status;
pub mod verify;

use std::path::Path;

use sluice_common::exit;

use crate::cli::Command;

pub fn dispatch(command: Command, config: Option<&Path>) -> i32 {
    let config = match config.map(crate::config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    match command {
        Command::Verify(args) => verify::run(args),
        Command::Listen(args) => match crate::config::resolve_listen(*args, &config.listen) {
            Ok(settings) => listen::run(settings),
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        },
        Command::Import(args) => import::run(args),
        Command::Status(args) => match crate::config::resolve_status(args, &config) {
            Ok(settings) => status::run(settings),
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        },
        Command::Audit(args) => audit::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}
