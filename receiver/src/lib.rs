//! `sluice-recv` as a library: everything the high-side binary does, behind a thin `main`.
//! See `docs/architecture.md` for what each module may import and one datagram's path from the
//! socket to the quarantine commit.
//!
//! This crate never transmits toward the diode: it contains no code that sends datagrams
//! (`scripts/check-purity.sh` proves it).

pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod net;
pub mod progress;
pub mod store;
