//! One module per subcommand; each returns an exit code from `sluice_common::exit`.

pub mod bundle;
pub mod doctor;
pub mod keygen;
pub mod media;
pub mod udp;

use crate::cli::Command;

pub fn dispatch(command: Command) -> i32 {
    match command {
        Command::Keygen(args) => keygen::run(args),
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Udp(args) => udp::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Media(args) => media::run(args),
    }
}
