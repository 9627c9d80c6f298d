//! Sluice's shared test kit: the pure, deterministic pieces every test suite needs, so each
//! exists once.
//!
//! - [`impair`]: the one seeded impairment model (drop, duplicate, reorder, corrupt, truncate),
//!   run by the in-memory simulations here and by the UDP relay in `sluice-tests`.
//! - [`sim`]: the simulated diode (senders → impairment → receiver on a virtual clock) behind
//!   this crate's `sim_*` tests.
//! - [`drive`]: driving a sans-IO sender to completion ("the frames of an object").
//! - [`vectors`]: the golden-vector file format, the one-test-per-vector macro
//!   ([`vector_tests!`]) and the parser for the hex worked examples in docs/.
//!
//! No sockets, no processes, no sleeping except [`drive::drive_paced`]. Socket and process
//! fixtures (listener, relay, namespace diode) live in `sluice-tests`, which depends on this
//! crate. `sluice-common` uses it only as a dev-dependency of its integration tests (the vector
//! tests), which link the same `sluice-common` library as this crate: one copy of its types.

pub mod drive;
pub mod impair;
pub mod sim;
pub mod vectors;
