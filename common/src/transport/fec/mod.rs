//! The RaptorQ adapter: the only module in the workspace that names `raptorq` types.
//!
//! Owns per-block encoding ([`SourceBlock`] for the systematic source symbols, [`RepairJob`] →
//! [`RepairEncoder`] for repair symbols, [`BlockEncoder`] for both), per-block symbol collection
//! ([`BlockAssembler`]) and decoding ([`DecodeJob`]). Every block of an object is its own
//! RaptorQ source block, encoded with `SourceBlockEncoder`/`SourceBlockDecoder` and SBN 0 in
//! raptorq's terms (our block number lives in our frame header); the whole-object
//! `Encoder`/`Decoder` are never used because they hold the whole object in memory.
//!
//! raptorq panics on several inputs (code reading of raptorq 2.0.1):
//! a symbol whose length is not T, an ESI ≥ 2^24, block data that is not a multiple of T, more
//! than 56403 source symbols, an SBN it does not know, a zero symbol size. Every public function
//! here checks all of those first and returns a [`FecError`] instead, so no wire input can reach
//! a raptorq panic. raptorq 2.0.1 already caches encoding plans per K process-wide (64 entries),
//! so `BlockEncoder::new` gets the cached-plan speed-up without a cache of its own.
//!
//! RaptorQ corrects erasures, not errors: symbols must have passed the frame tag before they
//! get here, and the first symbol stored for an ESI wins.

use raptorq::ObjectTransmissionInformation;
use thiserror::Error;

use super::params::{ObjectParams, ParamsError, RAPTORQ_MAX_SOURCE_SYMBOLS};

mod assemble;
mod encode;

pub use assemble::{AddOutcome, Assembled, BlockAssembler, DecodeJob, NeedMore};
pub use encode::{BlockEncoder, RepairEncoder, RepairJob, SourceBlock};

/// Symbols more than the last failed attempt before a [`BlockAssembler`] offers another
/// [`DecodeJob`]. Each extra symbol cuts the failure odds by ~256×, so two is plenty.
pub const RETRY_STEP: u32 = 2;

/// Why the FEC adapter refused an input. None of these is reachable as a panic.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FecError {
    /// The object parameters exceed the receiver's limits.
    #[error("object parameters refused: {0}")]
    Params(#[from] ParamsError),
    /// Zero symbol size or block size.
    #[error("zero symbol size or block size")]
    ZeroSize,
    /// The block number is beyond the object's last block.
    #[error("block {block} out of range (object has {blocks} blocks)")]
    BlockOutOfRange {
        /// Requested block.
        block: u64,
        /// Blocks in the object.
        blocks: u64,
    },
    /// The block data handed to the encoder is not the block's length.
    #[error("block data is {got} bytes, block is {expected}")]
    BlockLength {
        /// The block's length per the params.
        expected: u32,
        /// Bytes given.
        got: usize,
    },
    /// K above RaptorQ's maximum of 56403.
    #[error("{0} source symbols exceeds RaptorQ's maximum")]
    TooManySourceSymbols(u32),
    /// ESI ≥ 2^24, or a source ESI ≥ K where a source symbol was asked for.
    #[error("encoding symbol id {0} out of range")]
    EsiOutOfRange(u32),
    /// A symbol or output buffer that is not exactly T bytes.
    #[error("symbol is {got} bytes, symbol size is {expected}")]
    SymbolLength {
        /// T.
        expected: u16,
        /// Bytes given.
        got: usize,
    },
}

/// The block's length and K, after checking everything raptorq would panic on.
fn block_geometry(params: &ObjectParams, block: u32) -> Result<(u32, u32), FecError> {
    if params.symbol_size == 0 || params.block_size == 0 {
        return Err(FecError::ZeroSize);
    }
    let blocks = params.block_count();
    let block_len = params
        .block_len(u64::from(block))
        .ok_or(FecError::BlockOutOfRange {
            block: u64::from(block),
            blocks,
        })?;
    let k = params.source_symbols(u64::from(block));
    if k > RAPTORQ_MAX_SOURCE_SYMBOLS {
        return Err(FecError::TooManySourceSymbols(k));
    }
    Ok((block_len, k))
}

/// raptorq's description of one source block padded to `k × t` bytes: one source block, one
/// sub-block, alignment 1. `k ≤ 56403` and `t ≥ 1` are checked by the callers, which is
/// exactly what `ObjectTransmissionInformation::new` asserts.
fn block_oti(k: u32, t: u16) -> ObjectTransmissionInformation {
    ObjectTransmissionInformation::new(u64::from(k) * u64::from(t), t, 1, 1, 1)
}
