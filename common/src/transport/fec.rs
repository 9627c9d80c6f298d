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

use std::collections::HashSet;
use std::sync::Arc;

use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use thiserror::Error;

use super::params::{ESI_LIMIT, Limits, ObjectParams, ParamsError, RAPTORQ_MAX_SOURCE_SYMBOLS};

/// Symbols more than the last failed attempt before a [`BlockAssembler`] offers another
/// [`DecodeJob`]. Each extra symbol cuts the failure odds by ~256×, so two is plenty.
pub const RETRY_STEP: u32 = 2;

/// Repair symbols generated per raptorq call when streaming many: bounds the temporary memory.
const REPAIR_BATCH: u32 = 64;

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

/// What [`BlockAssembler::add`] did with a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Stored.
    Stored,
    /// An ESI already held; the first copy wins.
    Duplicate,
    /// The block already holds K + surplus symbols; dropped (bounds ESI floods).
    Full,
    /// The block was already produced by [`BlockAssembler::poll`]; dropped.
    Finished,
}

/// What a [`BlockAssembler`] can produce now.
#[derive(Debug)]
pub enum Assembled {
    /// Fewer than K symbols, or no new attempt due yet: wait for more.
    Pending,
    /// Every source symbol was present: the block's bytes, copied, no decoding needed.
    Complete(Vec<u8>),
    /// ≥ K symbols with some source missing: run this (anywhere) to decode.
    Decode(DecodeJob),
}

/// Collects the symbols of one block, bounded at `K + repair_surplus` symbols, in one arena
/// whose capacity never exceeds that many symbols.
#[derive(Debug)]
pub struct BlockAssembler {
    block: u32,
    block_len: u32,
    k: u32,
    symbol_size: u16,
    max_symbols: u32,
    /// Payloads in arrival order, T bytes each.
    arena: Vec<u8>,
    /// ESI of each arena slot.
    esis: Vec<u32>,
    /// For each source ESI, its arena slot + 1 (0 = absent). Allocated on the first symbol.
    source_slot: Vec<u32>,
    source_count: u32,
    /// Repair ESIs held, for deduplication.
    repair_seen: HashSet<u32>,
    /// Symbols held when the last decode job was handed out.
    last_attempt: Option<u32>,
    finished: bool,
}

impl BlockAssembler {
    /// An empty assembler for block `block` of an object with `params`, after checking
    /// `params` against `limits`. Allocates nothing until the first symbol.
    pub fn new(params: &ObjectParams, block: u32, limits: &Limits) -> Result<Self, FecError> {
        limits.check(params)?;
        let (block_len, k) = block_geometry(params, block)?;
        Ok(Self {
            block,
            block_len,
            k,
            symbol_size: params.symbol_size,
            max_symbols: limits.max_stored_symbols(k),
            arena: Vec::new(),
            esis: Vec::new(),
            source_slot: Vec::new(),
            source_count: 0,
            repair_seen: HashSet::new(),
            last_attempt: None,
            finished: false,
        })
    }

    /// Our block number.
    pub fn block(&self) -> u32 {
        self.block
    }

    /// K.
    pub fn source_symbol_count(&self) -> u32 {
        self.k
    }

    /// The block's true length.
    pub fn block_len(&self) -> u32 {
        self.block_len
    }

    /// Distinct symbols held.
    pub fn symbols_held(&self) -> u32 {
        u32::try_from(self.esis.len()).unwrap_or(u32::MAX)
    }

    /// Source symbols held.
    pub fn source_symbols_held(&self) -> u32 {
        self.source_count
    }

    /// Whether K + surplus symbols are held, so further symbols are dropped.
    pub fn is_full(&self) -> bool {
        self.symbols_held() >= self.max_symbols
    }

    /// Heap bytes this assembler holds (capacities, for the receiver's memory budget).
    pub fn bytes_held(&self) -> usize {
        self.arena.capacity()
            + self.esis.capacity() * 4
            + self.source_slot.capacity() * 4
            + self.repair_seen.capacity() * 8
    }

    /// Store symbol `esi`. Errors mean the input was invalid for this block (never a panic).
    pub fn add(&mut self, esi: u32, payload: &[u8]) -> Result<AddOutcome, FecError> {
        if payload.len() != usize::from(self.symbol_size) {
            return Err(FecError::SymbolLength {
                expected: self.symbol_size,
                got: payload.len(),
            });
        }
        if esi >= ESI_LIMIT {
            return Err(FecError::EsiOutOfRange(esi));
        }
        if self.finished {
            return Ok(AddOutcome::Finished);
        }
        if self.holds(esi) {
            return Ok(AddOutcome::Duplicate);
        }
        if self.is_full() {
            return Ok(AddOutcome::Full);
        }
        self.reserve_one();
        self.arena.extend_from_slice(payload);
        self.esis.push(esi);
        let slot_plus_one = self.symbols_held();
        if esi < self.k {
            if self.source_slot.is_empty() {
                self.source_slot = vec![0; self.k as usize];
            }
            if let Some(slot) = self.source_slot.get_mut(esi as usize) {
                *slot = slot_plus_one;
            }
            self.source_count += 1;
        } else {
            self.repair_seen.insert(esi);
        }
        Ok(AddOutcome::Stored)
    }

    /// Symbols the arena grows by when it is full: a quarter of what it holds (at least 16), never
    /// past `max_symbols`. A quarter, not a doubling, so capacity stays within 25 % (plus 16
    /// symbols) of what is held: the receiver charges its budget per stored symbol by this growth.
    fn growth(&self) -> usize {
        let held = self.esis.len();
        let room = (self.max_symbols as usize).saturating_sub(held);
        (held / 4).max(16).min(room).max(1)
    }

    /// Grow the arena by [`Self::growth`] symbols when it is full.
    fn reserve_one(&mut self) {
        let t = usize::from(self.symbol_size);
        if self.arena.capacity() - self.arena.len() >= t {
            return;
        }
        let grow = self.growth();
        self.arena.reserve_exact(grow * t);
        self.esis.reserve_exact(grow);
    }

    /// Whether symbol `esi` is already stored (a source slot filled, or a repair ESI seen).
    fn holds(&self, esi: u32) -> bool {
        if esi < self.k {
            self.source_slot
                .get(esi as usize)
                .is_some_and(|slot| *slot != 0)
        } else {
            self.repair_seen.contains(&esi)
        }
    }

    /// Heap bytes that storing symbol `esi` would allocate (arena and ESI growth, the source
    /// slot table on the first source symbol), or `None` if [`Self::add`] would not store it
    /// (duplicate, full, finished, out of range). Lets a caller charge its budget per stored
    /// symbol, before the allocation.
    pub fn add_cost(&self, esi: u32) -> Option<u64> {
        if self.finished || esi >= ESI_LIMIT || self.is_full() {
            return None;
        }
        if self.holds(esi) {
            return None;
        }
        let t = u64::from(self.symbol_size);
        let mut cost = 0u64;
        if self.arena.capacity() - self.arena.len() < usize::from(self.symbol_size) {
            cost += self.growth() as u64 * (t + 4);
        }
        if esi < self.k && self.source_slot.is_empty() {
            cost += u64::from(self.k) * 4;
        }
        Some(cost)
    }

    /// Produce the block if possible. After `Complete`, the assembler is spent (later symbols
    /// are `Finished`). A `Decode` job is offered at ≥ K symbols and then again only once
    /// [`RETRY_STEP`] more symbols arrived; if the job fails with [`NeedMore`], keep adding and
    /// polling. If the caller gets the block from a job, it should drop the assembler.
    pub fn poll(&mut self) -> Assembled {
        if self.finished {
            return Assembled::Pending;
        }
        if self.source_count == self.k {
            self.finished = true;
            return Assembled::Complete(self.copy_source());
        }
        let held = self.symbols_held();
        if held < self.k {
            return Assembled::Pending;
        }
        let due = match self.last_attempt {
            None => true,
            Some(last) => {
                held >= last.saturating_add(RETRY_STEP) || (self.is_full() && held > last)
            }
        };
        if !due {
            return Assembled::Pending;
        }
        self.last_attempt = Some(held);
        Assembled::Decode(DecodeJob {
            block: self.block,
            block_len: self.block_len,
            k: self.k,
            symbol_size: self.symbol_size,
            arena: self.arena.clone(),
            esis: self.esis.clone(),
        })
    }

    /// Whether the block can no longer be produced from this session's symbols: full, and the
    /// decode at full already failed (odds ~256^-(surplus+1)).
    pub fn is_exhausted(&self) -> bool {
        self.is_full() && self.last_attempt == Some(self.symbols_held())
    }

    fn copy_source(&mut self) -> Vec<u8> {
        let t = usize::from(self.symbol_size);
        let len = self.block_len as usize;
        let mut out = vec![0u8; len];
        for (esi, slot) in self.source_slot.iter().enumerate() {
            let start = esi * t;
            let n = t.min(len.saturating_sub(start));
            let from = (*slot as usize).saturating_sub(1) * t;
            if let (Some(dst), Some(src)) = (
                out.get_mut(start..start + n),
                self.arena.get(from..from + n),
            ) {
                dst.copy_from_slice(src);
            }
        }
        self.arena = Vec::new();
        self.esis = Vec::new();
        self.source_slot = Vec::new();
        self.repair_seen = HashSet::new();
        out
    }
}

/// Decoding needs more symbols: RaptorQ fails at exactly K with probability ≈ 1/256.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("block {block} did not decode from {symbols} symbols; need more")]
pub struct NeedMore {
    /// Our block number.
    pub block: u32,
    /// Symbols the attempt had.
    pub symbols: u32,
}

/// One decode attempt: owned, pure and `Send`, so the receiver may run it on a worker thread.
#[derive(Debug, Clone)]
pub struct DecodeJob {
    block: u32,
    block_len: u32,
    k: u32,
    symbol_size: u16,
    arena: Vec<u8>,
    esis: Vec<u32>,
}

impl DecodeJob {
    /// Our block number.
    pub fn block(&self) -> u32 {
        self.block
    }

    /// Symbols this attempt has.
    pub fn symbols(&self) -> u32 {
        u32::try_from(self.esis.len()).unwrap_or(u32::MAX)
    }

    /// Decode: the block's bytes (exactly its true length), or [`NeedMore`].
    pub fn run(self) -> Result<Vec<u8>, NeedMore> {
        let need_more = NeedMore {
            block: self.block,
            symbols: self.symbols(),
        };
        let t = usize::from(self.symbol_size);
        // Every ESI < 2^24 and every payload is T bytes (checked in `BlockAssembler::add`), and
        // K ≤ 56403 with T ≥ 1 (checked in `block_geometry`): no raptorq assertion can fire.
        let oti = block_oti(self.k, self.symbol_size);
        let mut decoder =
            SourceBlockDecoder::new(0, &oti, u64::from(self.k) * u64::from(self.symbol_size));
        let packets = self
            .esis
            .iter()
            .zip(self.arena.chunks_exact(t))
            .map(|(esi, symbol)| EncodingPacket::new(PayloadId::new(0, *esi), symbol.to_vec()));
        match decoder.decode(packets) {
            Some(mut bytes) => {
                bytes.truncate(self.block_len as usize);
                Ok(bytes)
            }
            None => Err(need_more),
        }
    }
}
