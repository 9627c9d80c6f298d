//! One module per subcommand; each returns an exit code from `sluice_common::exit`.

pub mod bundle;
pub mod doctor;
pub mod keygen;
pub mod media;
pub mod udp;
pub mod watch;

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
        Command::Keygen(args) => keygen::run(args),
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Udp(mut args) => {
            crate::config::merge_send(&mut args.link, &mut args.json, &config.send);
            udp::run(args)
        }
        Command::Watch(args) => watch::run(args, &config),
        Command::Doctor(args) => doctor::run(args),
        Command::Media(args) => media::run(args),
    }
}
