//! Moving one opaque object across a lossy, reordering one-way channel (see docs/protocol.md).
//!
//! - [`wire`]: the frame format and the per-frame integrity tag (fields are read and written
//!   with the crate's one codec). Everything from the network or a spool volume passes
//!   [`wire::decode`] first.
//! - [`params`]: object and block geometry, the receiver's [`params::Limits`] (checked before
//!   any allocation) and the sender's recommended block sizes.
//! - [`fec`]: the RaptorQ adapter, the only code that names raptorq types; per-block encoder,
//!   bounded symbol assembler and pure decode jobs.
//!
//! Data flows sender → [`fec::BlockEncoder`] → [`wire::encode_data`] → datagram →
//! [`wire::decode`] → [`params::Limits::check`] → [`fec::BlockAssembler`] → block bytes.

pub mod fec;
pub mod pacer;
pub mod params;
pub mod progress;
pub mod recv;
pub mod send;
pub mod wire;
