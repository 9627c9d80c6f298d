//! Sluice's pure core.
//!
//! Everything that decides anything lives here, and nothing here performs I/O: no sockets, no
//! files, no clocks, no OS randomness. Callers pass `now`, seeds and bytes in (through
//! `std::io::Read`/`Write` implementations they own) and perform the effects returned to them.
//! That is what makes every loss, reorder, attack and crash scenario an ordinary deterministic
//! unit test.
//!
//! ```text
//!  files ─► bundle::build ─► .sluice ─► transport::Sender ─► frames ─► (UDP | spool volumes)
//!                                                                          │
//!  quarantine ◄─ (receiver store) ◄─ bundle::verify ◄─ object ◄─ transport::Receiver
//! ```
//!
//! - [`transport`]: frame format (docs/protocol.md), per-frame integrity tag, the RaptorQ adapter
//!   (the only code that names raptorq types), pacing, and the `Sender` / `Receiver` state machines
//!   that move one opaque object of any size across a lossy, reordering one-way channel.
//! - [`bundle`]: the signed bundle format (docs/bundle.md), keys, path policy, trust store and
//!   policy, and the streaming verifier whose `Verified` value is the only ticket into quarantine.
//! - [`spool`]: spool volumes, the same frames written as fixed-size records onto removable media.
//! - [`exit`]: the exit-code contract both binaries share.
//! - [`size`]: the one parser for sizes (`1.5GiB`, `700M`) and rates (`800M`) on every flag.
//! - `codec` (crate-private): the one bounds-checked byte reader, writer and constant-time
//!   compare that every binary format above is parsed and written with.
#![forbid(unsafe_code)]

pub mod admission;
pub mod bundle;
mod codec;
pub mod exit;
pub mod linkkey;
pub mod profile;
pub mod size;
pub mod spool;
pub mod transport;
