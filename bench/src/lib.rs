//! Sluice's benchmark harness (see bench/README.md).

pub mod blast;
pub mod table;
