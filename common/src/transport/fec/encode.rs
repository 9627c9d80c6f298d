//! The sending half of the adapter: a block's source symbols ([`SourceBlock`]), its repair
//! symbols ([`RepairJob`] → [`RepairEncoder`]) and both at once ([`BlockEncoder`]).

use std::sync::Arc;

use raptorq::SourceBlockEncoder;

use super::{FecError, block_geometry, block_oti};
use crate::transport::params::{ESI_LIMIT, ObjectParams};

/// Repair symbols generated per raptorq call when streaming many: bounds the temporary memory.
const REPAIR_BATCH: u32 = 64;

/// A block's source symbols: the block zero-padded to K × T. Building one does no FEC work
/// (RaptorQ is systematic: source symbol `i` is bytes `i·T..(i+1)·T`), so a sender can put
/// source symbols on the wire while the block's [`RepairJob`] solves on another thread.
#[derive(Clone)]
pub struct SourceBlock {
    block: u32,
    k: u32,
    symbol_size: u16,
    /// Shared with the block's [`RepairJob`] until the solve has copied what it needs.
    padded: Arc<Vec<u8>>,
}

impl std::fmt::Debug for SourceBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceBlock")
            .field("block", &self.block)
            .field("k", &self.k)
            .field("symbol_size", &self.symbol_size)
            .finish_non_exhaustive()
    }
}

impl SourceBlock {
    /// Takes block `block`'s bytes (exactly its length) and pads them in place to K × T (give
    /// `block_bytes` a capacity of K × T to avoid a reallocation).
    pub fn new(params: &ObjectParams, block: u32, block_bytes: Vec<u8>) -> Result<Self, FecError> {
        let (block_len, k) = block_geometry(params, block)?;
        if block_bytes.len() != block_len as usize {
            return Err(FecError::BlockLength {
                expected: block_len,
                got: block_bytes.len(),
            });
        }
        let mut padded = block_bytes;
        padded.resize(k as usize * usize::from(params.symbol_size), 0);
        Ok(Self {
            block,
            k,
            symbol_size: params.symbol_size,
            padded: Arc::new(padded),
        })
    }

    /// Our block number.
    pub fn block(&self) -> u32 {
        self.block
    }

    /// K: the number of source symbols (ESIs `0..K`); repair ESIs are `K..2^24`.
    pub fn source_symbol_count(&self) -> u32 {
        self.k
    }

    /// Source symbol `esi < K`, without copying (the last one zero-padded).
    pub fn source_symbol(&self, esi: u32) -> Result<&[u8], FecError> {
        if esi >= self.k {
            return Err(FecError::EsiOutOfRange(esi));
        }
        let t = usize::from(self.symbol_size);
        let start = esi as usize * t;
        self.padded
            .get(start..start + t)
            .ok_or(FecError::EsiOutOfRange(esi))
    }

    /// The repair solve for this block, to run here or on a worker thread.
    pub fn repair_job(&self) -> RepairJob {
        RepairJob {
            block: self.block,
            k: self.k,
            symbol_size: self.symbol_size,
            padded: Arc::clone(&self.padded),
        }
    }
}

/// The expensive part of encoding a block: solving RaptorQ's intermediate symbols. Owned and
/// `Send`; [`run`](Self::run) it anywhere.
pub struct RepairJob {
    block: u32,
    k: u32,
    symbol_size: u16,
    padded: Arc<Vec<u8>>,
}

impl std::fmt::Debug for RepairJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairJob")
            .field("block", &self.block)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl RepairJob {
    /// Our block number.
    pub fn block(&self) -> u32 {
        self.block
    }

    /// Solve. `k ≤ 56403`, `T ≥ 1` and `padded.len() == K × T` were checked when the
    /// [`SourceBlock`] was built, which is everything raptorq asserts here.
    pub fn run(self) -> RepairEncoder {
        let inner = SourceBlockEncoder::new(0, &block_oti(self.k, self.symbol_size), &self.padded);
        RepairEncoder {
            block: self.block,
            k: self.k,
            symbol_size: self.symbol_size,
            inner,
        }
    }
}

/// Generates repair symbols (ESI ≥ K) of one block from its solved intermediate symbols.
pub struct RepairEncoder {
    block: u32,
    k: u32,
    symbol_size: u16,
    inner: SourceBlockEncoder,
}

impl std::fmt::Debug for RepairEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairEncoder")
            .field("block", &self.block)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl RepairEncoder {
    /// Our block number.
    pub fn block(&self) -> u32 {
        self.block
    }

    /// Write repair symbol `esi ≥ K` into `out`, which must be exactly T bytes.
    pub fn write_repair_symbol(&self, esi: u32, out: &mut [u8]) -> Result<(), FecError> {
        if out.len() != usize::from(self.symbol_size) {
            return Err(FecError::SymbolLength {
                expected: self.symbol_size,
                got: out.len(),
            });
        }
        let mut written = false;
        self.repair_symbols(esi, 1, |_, symbol| {
            out.copy_from_slice(symbol);
            written = true;
        })?;
        debug_assert!(written);
        Ok(())
    }

    /// Generate `count` repair symbols starting at ESI `first_esi ≥ K`, calling
    /// `emit(esi, symbol)` for each in order. Refuses ranges that leave the 24-bit ESI space.
    pub fn repair_symbols(
        &self,
        first_esi: u32,
        count: u32,
        mut emit: impl FnMut(u32, &[u8]),
    ) -> Result<(), FecError> {
        if first_esi < self.k {
            return Err(FecError::EsiOutOfRange(first_esi));
        }
        let end = u64::from(first_esi) + u64::from(count);
        if end > u64::from(ESI_LIMIT) {
            return Err(FecError::EsiOutOfRange(
                u32::try_from(end - 1).unwrap_or(u32::MAX),
            ));
        }
        let mut next = first_esi;
        let mut left = count;
        while left > 0 {
            let n = left.min(REPAIR_BATCH);
            // `next ≥ K` and `next + n ≤ 2^24`, checked above: raptorq's PayloadId assertion holds.
            for packet in self.inner.repair_packets(next - self.k, n) {
                emit(packet.payload_id().encoding_symbol_id(), packet.data());
            }
            next += n;
            left -= n;
        }
        Ok(())
    }
}

/// Encodes one block: its [`SourceBlock`] plus its solved [`RepairEncoder`], built in one go.
/// `Send`, so it may be built on a worker thread.
#[derive(Debug)]
pub struct BlockEncoder {
    source: SourceBlock,
    repair: RepairEncoder,
}

impl BlockEncoder {
    /// Encode block `block` of an object with `params`; `block_bytes` must be exactly that
    /// block's bytes.
    pub fn new(params: &ObjectParams, block: u32, block_bytes: &[u8]) -> Result<Self, FecError> {
        let (block_len, k) = block_geometry(params, block)?;
        // Length first: the capacity below is only as large as the caller's real block.
        if block_bytes.len() != block_len as usize {
            return Err(FecError::BlockLength {
                expected: block_len,
                got: block_bytes.len(),
            });
        }
        let mut owned = Vec::with_capacity(k as usize * usize::from(params.symbol_size));
        owned.extend_from_slice(block_bytes);
        Self::from_vec(params, block, owned)
    }

    /// Like [`new`](Self::new) but takes ownership of the block's bytes and pads them in place,
    /// saving a copy of the block (give `block_bytes` a capacity of K × T to avoid a
    /// reallocation).
    pub fn from_vec(
        params: &ObjectParams,
        block: u32,
        block_bytes: Vec<u8>,
    ) -> Result<Self, FecError> {
        let source = SourceBlock::new(params, block, block_bytes)?;
        let repair = source.repair_job().run();
        Ok(Self { source, repair })
    }

    /// Our block number.
    pub fn block(&self) -> u32 {
        self.source.block
    }

    /// K: the number of source symbols (ESIs `0..K`); repair ESIs are `K..2^24`.
    pub fn source_symbol_count(&self) -> u32 {
        self.source.k
    }

    /// Bytes per symbol.
    pub fn symbol_size(&self) -> u16 {
        self.source.symbol_size
    }

    /// Source symbol `esi < K`, without copying (the last one zero-padded).
    pub fn source_symbol(&self, esi: u32) -> Result<&[u8], FecError> {
        self.source.source_symbol(esi)
    }

    /// Write symbol `esi` (source or repair) into `out`, which must be exactly T bytes, e.g.
    /// the payload region of a data frame before [`seal_data_in_place`](super::wire::seal_data_in_place).
    pub fn write_symbol(&self, esi: u32, out: &mut [u8]) -> Result<(), FecError> {
        if out.len() != usize::from(self.source.symbol_size) {
            return Err(FecError::SymbolLength {
                expected: self.source.symbol_size,
                got: out.len(),
            });
        }
        if esi < self.source.k {
            out.copy_from_slice(self.source.source_symbol(esi)?);
            return Ok(());
        }
        self.repair.write_repair_symbol(esi, out)
    }

    /// Generate `count` repair symbols starting at ESI `first_esi ≥ K`, calling
    /// `emit(esi, symbol)` for each in order. Refuses ranges that leave the 24-bit ESI space.
    pub fn repair_symbols(
        &self,
        first_esi: u32,
        count: u32,
        emit: impl FnMut(u32, &[u8]),
    ) -> Result<(), FecError> {
        self.repair.repair_symbols(first_esi, count, emit)
    }
}
