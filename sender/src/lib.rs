//! `sluice-send` as a library: everything the low-side binary does, behind a thin `main`.
//! See `docs/architecture.md`.
//!
//! `commands/` holds one thin adapter per subcommand (flags in, one `Result<Exit, CommandError>`
//! out); what several commands share lives in the modules beside it, and no command module
//! imports another (`scripts/check-purity.sh` checks).

pub mod cli;
pub mod commands;
pub mod config;
pub mod key_seed;
pub mod link;
pub mod media_manifest;
pub mod media_out;
pub mod media_plan;
pub mod net;
pub mod prepare;
pub mod progress;
pub mod settings;
pub mod stop;
