//! `sluice-promote` as a library: takes verified bundles out of the Sluice quarantine store
//! through scan → M-of-N reviewer approval → publish (docs/promotion.md), behind a thin `main`.
//!
//! A separate process from `sluice-recv`: it reads the store, writes only `DIR/promote/` and its
//! publish targets, appends to the store's hash-chained audit log through
//! `sluice_recv::store::audit::append_shared` (never taking the receiver's `DIR/.lock`), and has
//! no UDP or diode code (`scripts/check-purity.sh` checks).

pub mod approval;
pub mod cli;
pub mod config;
pub mod engine;
pub mod publish;
pub mod scan;
pub mod state;
