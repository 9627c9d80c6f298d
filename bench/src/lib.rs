//! Sluice's benchmark harness (see bench/README.md).

pub mod blast;
pub mod case;
pub mod peer;
pub mod table;
pub mod verdict;
