//! `sluice-send` as a library: everything the low-side binary does, behind a thin `main`.
//! See `docs/architecture.md`.

pub mod cli;
pub mod commands;
pub mod config;
pub mod link;
pub mod net;
pub mod progress;
