//! Object and block geometry, and the receiver's limits on it.
//!
//! Owns [`ObjectParams`] (how one object is cut into blocks and symbols), [`Limits`] (what a
//! receiver agrees to allocate for, checked **before** any allocation) and the sender's
//! recommended block sizes. Every data and object-end frame carries the full `ObjectParams`, so
//! a receiver can check a frame against its limits without any prior state.
//!
//! Geometry: the object of `object_len` bytes is cut into `block_count()` blocks of
//! `block_size` bytes each (the last one may be shorter). Block `i` has
//! `K_i = ceil(len_i / symbol_size)` source symbols; the last symbol of a block is zero-padded to
//! `symbol_size` bytes. Every block is an independent RaptorQ source block.

use thiserror::Error;

/// RaptorQ's hard maximum of source symbols per source block (RFC 6330 K'_max). Never exceeded:
/// [`Limits::check`] refuses larger blocks before raptorq sees them.
pub const RAPTORQ_MAX_SOURCE_SYMBOLS: u32 = 56_403;

/// Exclusive upper bound on an encoding symbol id: RaptorQ ESIs are 24 bits, and raptorq panics
/// on larger ones.
pub const ESI_LIMIT: u32 = 1 << 24;

/// Largest block index the wire can carry plus one (the block field is a u32).
pub const WIRE_MAX_BLOCKS: u64 = 1 << 32;

/// One object's identity and geometry, exactly as carried in data and object-end frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectParams {
    /// Random id the sender picks per object (per send of a bundle).
    pub object_id: [u8; 16],
    /// Total object length in bytes.
    pub object_len: u64,
    /// Nominal bytes per block; the last block may be shorter.
    pub block_size: u32,
    /// Bytes per symbol (T): the payload length of every data frame of this object.
    pub symbol_size: u16,
}

impl ObjectParams {
    /// Number of blocks: `ceil(object_len / block_size)`, 0 for an empty object (or a zero
    /// `block_size`, which [`Limits::check`] refuses).
    pub fn block_count(&self) -> u64 {
        if self.block_size == 0 {
            return 0;
        }
        self.object_len.div_ceil(u64::from(self.block_size))
    }

    /// Byte offset of block `block` within the object (`None` when out of range).
    pub fn block_offset(&self, block: u64) -> Option<u64> {
        (block < self.block_count()).then(|| block * u64::from(self.block_size))
    }

    /// Length in bytes of block `block` (`None` when out of range). Only the last block may be
    /// shorter than `block_size`.
    pub fn block_len(&self, block: u64) -> Option<u32> {
        let offset = self.block_offset(block)?;
        let rest = self.object_len - offset;
        // Bounded by block_size, which is a u32.
        Some(u32::try_from(rest.min(u64::from(self.block_size))).unwrap_or(self.block_size))
    }

    /// K for block `block`: its number of source symbols (`0` when out of range or T is 0).
    pub fn source_symbols(&self, block: u64) -> u32 {
        match self.block_len(block) {
            Some(len) if self.symbol_size > 0 => len.div_ceil(u32::from(self.symbol_size)),
            _ => 0,
        }
    }

    /// K of a full (nominal) block: the largest K of any block of this object.
    pub fn max_source_symbols(&self) -> u32 {
        if self.symbol_size == 0 {
            return 0;
        }
        self.block_size.div_ceil(u32::from(self.symbol_size))
    }
}

/// What a receiver is willing to allocate for. Checked against every frame's parameters before
/// anything is allocated for it. Defaults and their worst cases are in docs/protocol.md §Limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest object accepted. Bounds staging disk use per object, not memory.
    pub max_object_bytes: u64,
    /// Smallest symbol size accepted. Small symbols make forged traffic cost far more CPU per
    /// byte than real traffic (RaptorQ decode cost grows with K, and a 1 MiB block at T = 64
    /// has K = 16 384), so anything below what senders produce (T ≥ 514: `sluice-send` refuses
    /// an MTU below 600) is refused.
    pub min_symbol_size: u16,
    /// Largest symbol size accepted: the payload of a 9000-byte-MTU datagram.
    pub max_symbol_size: u16,
    /// Largest block accepted. One block is the unit of decoder memory.
    pub max_block_bytes: u32,
    /// Largest K (source symbols per block). RaptorQ decode cost grows super-linearly in K; the
    /// sender's recommended blocks have K ≤ 2041 (≈1 MiB at T = 514, 742 at T = 1414, 471 at
    /// jumbo T), so nothing larger is admitted.
    pub max_source_symbols: u32,
    /// Extra symbols stored per block beyond K, so a decode that fails at exactly K (≈1/256)
    /// can be retried with more; anything beyond K + surplus is dropped (bounds ESI floods).
    pub repair_surplus: u32,
    /// Largest number of blocks per object. Bounds per-object bookkeeping such as the progress
    /// bitmap (one bit per block).
    pub max_blocks: u64,
}

impl Limits {
    /// Default largest object: 64 GiB.
    pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 64 << 30;
    /// Default smallest symbol: 512 bytes. Worst case it admits: a 1 MiB block of K = 2048
    /// all-repair symbols, which decodes at the same cost per byte as a real sender's block.
    pub const DEFAULT_MIN_SYMBOL_SIZE: u16 = 512;
    /// Default largest symbol: 9000 MTU − 20 (IPv4) − 8 (UDP) − 58 (frame overhead).
    pub const DEFAULT_MAX_SYMBOL_SIZE: u16 = 8914;
    /// Default largest block: 16 MiB.
    pub const DEFAULT_MAX_BLOCK_BYTES: u32 = 16 << 20;
    /// Default largest K: 2048, the most any recommended block has (see
    /// [`recommended_block_size`]); a larger K only makes a forged block costlier to decode.
    pub const DEFAULT_MAX_SOURCE_SYMBOLS: u32 = 2048;
    /// Default symbols stored beyond K.
    pub const DEFAULT_REPAIR_SURPLUS: u32 = 16;
    /// Default largest block count: 2^20 (a 128 KiB progress bitmap).
    pub const DEFAULT_MAX_BLOCKS: u64 = 1 << 20;

    /// Check `params` against these limits. Passing means every block's K is in
    /// `1..=max_source_symbols` (for a non-empty object), so the FEC adapter can be used safely.
    pub fn check(&self, params: &ObjectParams) -> Result<(), ParamsError> {
        if params.object_len > self.max_object_bytes {
            return Err(ParamsError::ObjectTooLarge {
                len: params.object_len,
                max: self.max_object_bytes,
            });
        }
        if params.symbol_size < self.min_symbol_size.max(1)
            || params.symbol_size > self.max_symbol_size
        {
            return Err(ParamsError::SymbolSize {
                symbol_size: params.symbol_size,
                min: self.min_symbol_size.max(1),
                max: self.max_symbol_size,
            });
        }
        if params.block_size == 0 || params.block_size > self.max_block_bytes {
            return Err(ParamsError::BlockSize {
                block_size: params.block_size,
                max: self.max_block_bytes,
            });
        }
        let k_max = self.max_source_symbols.min(RAPTORQ_MAX_SOURCE_SYMBOLS);
        let k = params.max_source_symbols();
        if k > k_max {
            return Err(ParamsError::TooManySourceSymbols { k, max: k_max });
        }
        let blocks = params.block_count();
        let max_blocks = self.max_blocks.min(WIRE_MAX_BLOCKS);
        if blocks > max_blocks {
            return Err(ParamsError::TooManyBlocks {
                blocks,
                max: max_blocks,
            });
        }
        Ok(())
    }

    /// Most symbols stored for a block with `k` source symbols: `k + repair_surplus`.
    pub fn max_stored_symbols(&self, k: u32) -> u32 {
        k.saturating_add(self.repair_surplus)
    }

    /// Upper bound on the payload bytes one block assembler holds under these limits. A block
    /// stores at most `K + repair_surplus` symbols of T bytes, and `K × T < block_size + T`, so
    /// the bound is `max_block_bytes + (repair_surplus + 1) × max_symbol_size`
    /// (16 MiB + 17 × 8914 ≈ 16.14 MiB with the defaults).
    pub fn worst_case_block_bytes(&self) -> u64 {
        u64::from(self.max_block_bytes)
            + (u64::from(self.repair_surplus) + 1) * u64::from(self.max_symbol_size)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_object_bytes: Self::DEFAULT_MAX_OBJECT_BYTES,
            min_symbol_size: Self::DEFAULT_MIN_SYMBOL_SIZE,
            max_symbol_size: Self::DEFAULT_MAX_SYMBOL_SIZE,
            max_block_bytes: Self::DEFAULT_MAX_BLOCK_BYTES,
            max_source_symbols: Self::DEFAULT_MAX_SOURCE_SYMBOLS,
            repair_surplus: Self::DEFAULT_REPAIR_SURPLUS,
            max_blocks: Self::DEFAULT_MAX_BLOCKS,
        }
    }
}

/// Why object parameters were refused by [`Limits::check`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ParamsError {
    /// `object_len` above `max_object_bytes`.
    #[error("object of {len} bytes exceeds the limit of {max}")]
    ObjectTooLarge {
        /// Declared length.
        len: u64,
        /// Configured maximum.
        max: u64,
    },
    /// Symbol size outside `min_symbol_size..=max_symbol_size`.
    #[error("symbol size {symbol_size} outside {min}..={max}")]
    SymbolSize {
        /// Declared symbol size.
        symbol_size: u16,
        /// Configured minimum.
        min: u16,
        /// Configured maximum.
        max: u16,
    },
    /// Block size zero or above `max_block_bytes`.
    #[error("block size {block_size} outside 1..={max}")]
    BlockSize {
        /// Declared block size.
        block_size: u32,
        /// Configured maximum.
        max: u32,
    },
    /// A full block would have more source symbols than allowed.
    #[error("{k} source symbols per block exceeds the limit of {max}")]
    TooManySourceSymbols {
        /// K of a full block.
        k: u32,
        /// Configured maximum (never above RaptorQ's 56403).
        max: u32,
    },
    /// More blocks than allowed.
    #[error("{blocks} blocks exceeds the limit of {max}")]
    TooManyBlocks {
        /// Declared block count.
        blocks: u64,
        /// Configured maximum.
        max: u64,
    },
}

/// The block size a sender should use at symbol size `symbol_size`: a whole number of symbols,
/// about 1 MiB for small symbols (K ≈ 742 at T = 1414) and K = 471 (≈ 4 MiB) at T = 8914, so K
/// stays below ~1000 where RaptorQ encode and decode run at several hundred MB/s per core
/// (bench/benches/fec.rs). Always within [`Limits::default`] for any T it admits.
pub fn recommended_block_size(symbol_size: u16) -> u32 {
    const TARGET_SMALL: u32 = 1 << 20;
    const K_FOR_LARGE: u32 = 471;
    let t = u32::from(symbol_size.max(1));
    let k = if t >= 4096 {
        K_FOR_LARGE
    } else {
        // ~1 MiB, but never more than the default K limit for tiny symbols.
        TARGET_SMALL
            .div_ceil(t)
            .clamp(1, Limits::DEFAULT_MAX_SOURCE_SYMBOLS)
    };
    k * t
}
