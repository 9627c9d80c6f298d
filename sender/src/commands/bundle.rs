//! Not built yet.

#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Not built yet.
    Create,
}

pub fn run(_cmd: BundleCommand) -> i32 {
    eprintln!("error: not implemented yet");
    sluice_common::exit::FAILURE
}
