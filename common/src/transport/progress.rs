//! Persistable per-object progress: which blocks of a partly received object are already written.
//!
//! The receiver's driver stores [`Progress::to_bytes`] next to the staging file (on a
//! [`Effect::Checkpoint`](super::recv::Effect::Checkpoint) hint, on `Incomplete`, and on shutdown)
//! and hands it back through [`Receiver::restore`](super::recv::Receiver::restore) after a
//! restart, so a later pass completes only the missing blocks.
//!
//! The bytes are read back from disk, which an attacker on the high side (or a torn write) may
//! have changed, so [`Progress::from_bytes`] treats them like wire input: checksum first, then
//! the version, then the parameters against the receiver's [`Limits`], then the bitmap length
//! against the block count, all before allocating anything.
//!
//! Format, version 1 (all integers little-endian):
//!
//! ```text
//! magic "SLPG" | version u8 = 1 | object_id [16] | object_len u64 | block_size u32 |
//! symbol_size u16 | bitmap_len u32 | bitmap [bitmap_len] (bit i of byte i/8 = block i done,
//! least significant bit first; unused high bits zero) | blake3(all preceding bytes) [32]
//! ```

use thiserror::Error;

use super::params::{Limits, ObjectParams};
use crate::codec::{CodecError, Reader, Writer};

const MAGIC: &[u8; 4] = b"SLPG";
const VERSION: u8 = 1;
const FIXED_LEN: usize = 4 + 1 + 16 + 8 + 4 + 2 + 4;
const CHECKSUM_LEN: usize = 32;

/// Why stored progress was refused. Callers should discard the record and start the object over.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProgressError {
    /// Shorter than the fixed header plus checksum.
    #[error("progress record truncated")]
    Truncated,
    /// The blake3 checksum does not match: torn write or tampering.
    #[error("progress record checksum mismatch")]
    BadChecksum,
    /// Not a progress record, or a version this build does not read.
    #[error("progress record has unknown magic or version")]
    UnknownVersion,
    /// The stored object parameters exceed the receiver's limits.
    #[error("progress record parameters exceed limits")]
    OverLimit,
    /// The bitmap length does not match the block count, or has bits past the last block.
    #[error("progress record bitmap does not match the block count")]
    BadBitmap,
}

impl From<CodecError> for ProgressError {
    fn from(_: CodecError) -> Self {
        ProgressError::Truncated
    }
}

/// The completed-block bitmap of one object, with the parameters it was pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The object (id and geometry) the receiver pinned.
    pub params: ObjectParams,
    /// Bit `i` set = block `i` was written (and its `Write` effect handed to the driver).
    done: Vec<u8>,
}

impl Progress {
    /// An empty record (no block done) for `params`, which must already be within limits.
    pub(crate) fn new(params: ObjectParams) -> Self {
        let blocks = params.block_count();
        let len = usize::try_from(blocks.div_ceil(8)).unwrap_or(0);
        Self {
            params,
            done: vec![0; len],
        }
    }

    /// The object's id.
    pub fn object_id(&self) -> [u8; 16] {
        self.params.object_id
    }

    /// Number of blocks of the object.
    pub fn block_count(&self) -> u64 {
        self.params.block_count()
    }

    /// Whether block `block` is done (false when out of range).
    pub fn is_done(&self, block: u64) -> bool {
        let Ok(byte) = usize::try_from(block / 8) else {
            return false;
        };
        self.done
            .get(byte)
            .is_some_and(|b| b & (1 << (block % 8)) != 0)
    }

    /// Mark `block` done; out-of-range blocks are ignored.
    pub(crate) fn set_done(&mut self, block: u64) {
        if block >= self.block_count() {
            return;
        }
        if let Some(b) = usize::try_from(block / 8)
            .ok()
            .and_then(|i| self.done.get_mut(i))
        {
            *b |= 1 << (block % 8);
        }
    }

    /// Number of blocks done.
    pub fn done_count(&self) -> u64 {
        self.done.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Indices of blocks not yet done, in order.
    pub fn missing_blocks(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.block_count()).filter(|b| !self.is_done(*b))
    }

    /// Whether every block is done.
    pub fn is_complete(&self) -> bool {
        self.done_count() == self.block_count()
    }

    /// Serialize in the versioned, checksummed format described in the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body_len = FIXED_LEN + self.done.len();
        let mut out = vec![0u8; body_len + CHECKSUM_LEN];
        let (body, sum) = out.split_at_mut(body_len);
        let mut w = Writer::new(body);
        w.bytes(MAGIC);
        w.u8(VERSION);
        w.bytes(&self.params.object_id);
        w.u64_le(self.params.object_len);
        w.u32_le(self.params.block_size);
        w.u16_le(self.params.symbol_size);
        w.u32_le(u32::try_from(self.done.len()).unwrap_or(u32::MAX));
        w.bytes(&self.done);
        w.finish(body_len);
        sum.copy_from_slice(blake3::hash(body).as_bytes());
        out
    }

    /// Parse and validate a record produced by [`Progress::to_bytes`].
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, ProgressError> {
        if bytes.len() < FIXED_LEN + CHECKSUM_LEN {
            return Err(ProgressError::Truncated);
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes().as_slice() != sum {
            return Err(ProgressError::BadChecksum);
        }
        let mut r = Reader::new(body);
        if r.array::<4>()? != *MAGIC || r.u8()? != VERSION {
            return Err(ProgressError::UnknownVersion);
        }
        let object_id = r.array::<16>()?;
        let object_len = r.u64_le()?;
        let block_size = r.u32_le()?;
        let symbol_size = r.u16_le()?;
        let bitmap_len = r.u32_le()?;
        let params = ObjectParams {
            object_id,
            object_len,
            block_size,
            symbol_size,
        };
        if limits.check(&params).is_err() {
            return Err(ProgressError::OverLimit);
        }
        let blocks = params.block_count();
        if u64::from(bitmap_len) != blocks.div_ceil(8) || r.remaining() != bitmap_len as usize {
            return Err(ProgressError::BadBitmap);
        }
        let done = r.rest().to_vec();
        // No bits past the last block.
        if blocks % 8 != 0 {
            let mask = !((1u8 << (blocks % 8)) - 1);
            if done.last().is_some_and(|b| b & mask != 0) {
                return Err(ProgressError::BadBitmap);
            }
        }
        Ok(Self { params, done })
    }
}
