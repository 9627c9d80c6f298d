//! `sluice-recv` as a library: everything the high-side binary does, behind a thin `main`.
//! See `docs/architecture.md` for what each module may import and one datagram's path from the
//! socket to the quarantine commit.
//!
//! This crate never transmits toward the diode: it contains no code that sends datagrams
//! (`scripts/check-purity.sh` proves it).
//!
//! `commands/` holds one thin adapter per subcommand (flags in, one `Result<Exit, CommandError>`
//! out); what several commands share lives outside it (`setup`, `report`), and no command module
//! imports another (`scripts/check-purity.sh` checks that too).

pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod ingest;
pub mod listen_state;
pub mod media;
pub mod metrics;
pub mod net;
pub mod progress;
pub mod rebuild;
pub mod report;
pub mod setup;
pub mod status_view;
pub mod store;
