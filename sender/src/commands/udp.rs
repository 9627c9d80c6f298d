//! Not built yet.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> i32 {
    eprintln!("error: not implemented yet");
    sluice_common::exit::FAILURE
}
