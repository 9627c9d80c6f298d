//! Sluice's shared test kit: the pure, deterministic pieces every test suite needs, so each
//! exists once.
//!
//! - [`impair`]: the one seeded impairment model (drop, duplicate, reorder, corrupt, truncate),
//!   run by the in-memory simulations here and by the UDP relay in `sluice-tests`.
//! - [`sim`]: the simulated diode (senders → impairment → receiver on a virtual clock) behind
//!   this crate's `sim_*` tests.
//! - [`drive`]: driving a sans-IO sender to completion ("the frames of an object").
//!
//! No sockets, no processes, no sleeping except [`drive::drive_paced`]. Socket and process
//! fixtures (listener, relay, namespace diode) live in `sluice-tests`, which depends on this
//! crate; `sluice-common` does not, so there is no dependency cycle and one copy of its types.

pub mod drive;
pub mod impair;
pub mod sim;
