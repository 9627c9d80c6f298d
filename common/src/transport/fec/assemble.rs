//! The receiving half of the adapter: one block's symbols collected within a bound
//! ([`BlockAssembler`]) and decoded off the receive path ([`DecodeJob`]).

use std::collections::HashSet;

use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder};
use thiserror::Error;

use super::{FecError, RETRY_STEP, block_geometry, block_oti};
use crate::transport::params::{ESI_LIMIT, Limits, ObjectParams};

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
    /// ≥ K symbols with some source missing: run this (anywhere) to decode. The job takes the
    /// symbols with it (no copy); if it fails, hand its [`NeedMore`] to
    /// [`BlockAssembler::restore`] before polling again.
    Decode(DecodeJob),
}

/// Marks a source slot whose symbol is lent to the outstanding [`DecodeJob`].
const LENT: u32 = u32::MAX;

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
    /// For each source ESI, its arena slot + 1 (0 = absent, [`LENT`] = in the outstanding
    /// job). Allocated on the first symbol.
    source_slot: Vec<u32>,
    source_count: u32,
    /// Source symbols held here consecutively from ESI 0: the block's start, readable before
    /// it decodes ([`BlockAssembler::source_prefix`]).
    leading_sources: u32,
    /// Repair ESIs held, for deduplication.
    repair_seen: HashSet<u32>,
    /// Symbols held when the last decode job was handed out.
    last_attempt: Option<u32>,
    /// Symbols the outstanding decode job took (0: none out). They still count as held: the
    /// cap, duplicates and the next attempt's threshold see them.
    lent: u32,
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
            leading_sources: 0,
            repair_seen: HashSet::new(),
            last_attempt: None,
            lent: 0,
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

    /// Distinct symbols held, here or lent to the outstanding decode job.
    pub fn symbols_held(&self) -> u32 {
        u32::try_from(self.esis.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.lent)
    }

    /// Source symbols held.
    pub fn source_symbols_held(&self) -> u32 {
        self.source_count
    }

    /// Whether K + surplus symbols are held, so further symbols are dropped.
    pub fn is_full(&self) -> bool {
        self.symbols_held() >= self.max_symbols
    }

    /// Heap bytes this assembler holds (capacities, for the receiver's memory budget); not what
    /// an outstanding decode job took.
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
        let slot_plus_one = u32::try_from(self.esis.len()).unwrap_or(LENT - 1);
        if esi < self.k {
            if self.source_slot.is_empty() {
                self.source_slot = vec![0; self.k as usize];
            }
            if let Some(slot) = self.source_slot.get_mut(esi as usize) {
                *slot = slot_plus_one;
            }
            self.source_count += 1;
            self.count_leading_sources();
        } else {
            self.repair_seen.insert(esi);
        }
        Ok(AddOutcome::Stored)
    }

    /// Symbols the arena grows by when it is full: a quarter of what it holds (at least 16), never
    /// past `max_symbols`. A quarter, not a doubling, so capacity stays within 25 % (plus 16
    /// symbols) of what is held: the receiver charges its budget per stored symbol by this growth.
    fn growth(&self) -> usize {
        let here = self.esis.len();
        let room = self.max_symbols.saturating_sub(self.symbols_held()) as usize;
        (here / 4).max(16).min(room).max(1)
    }

    /// Advances [`Self::leading_sources`] over the source symbols held here from its end on.
    fn count_leading_sources(&mut self) {
        while let Some(slot) = self.source_slot.get(self.leading_sources as usize) {
            if *slot == 0 || *slot == LENT {
                break;
            }
            self.leading_sources += 1;
        }
    }

    /// Bytes of the block's start held as source symbols from ESI 0 on, consecutively (RaptorQ
    /// is systematic: source symbol `i` is bytes `i·T..(i+1)·T`), at most the block's length:
    /// what is known of the block before it decodes. 0 while they are lent to a decode job.
    pub fn source_prefix_len(&self) -> usize {
        (self.leading_sources as usize * usize::from(self.symbol_size)).min(self.block_len as usize)
    }

    /// The first `len` bytes of [`Self::source_prefix_len`] (fewer if it is shorter), copied.
    pub fn source_prefix(&self, len: usize) -> Vec<u8> {
        let t = usize::from(self.symbol_size);
        let len = len.min(self.source_prefix_len());
        let mut out = Vec::with_capacity(len);
        for slot in self.source_slot.iter() {
            if out.len() >= len {
                break;
            }
            let from = (*slot as usize).saturating_sub(1) * t;
            let n = t.min(len - out.len());
            match self.arena.get(from..from + n) {
                Some(bytes) => out.extend_from_slice(bytes),
                None => break,
            }
        }
        out
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
    /// [`RETRY_STEP`] more symbols arrived. The job takes the symbols (a block's worth of
    /// memory is never held twice); symbols that arrive meanwhile are kept here. If the job
    /// fails, [`restore`](Self::restore) its [`NeedMore`], keep adding and polling; until then
    /// this is `Pending`. If the caller gets the block from a job, it should drop the assembler.
    pub fn poll(&mut self) -> Assembled {
        if self.finished || self.lent > 0 {
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
        self.lent = held;
        self.leading_sources = 0;
        for slot in self.source_slot.iter_mut().filter(|s| **s != 0) {
            *slot = LENT;
        }
        Assembled::Decode(DecodeJob {
            block: self.block,
            block_len: self.block_len,
            k: self.k,
            symbol_size: self.symbol_size,
            arena: std::mem::take(&mut self.arena),
            esis: std::mem::take(&mut self.esis),
        })
    }

    /// Takes back the symbols of a failed decode job, followed by those that arrived while it
    /// ran. The arena grows by at most what the symbols that arrived meanwhile occupied. A
    /// `NeedMore` of another block, or with no job out, is dropped.
    pub fn restore(&mut self, failed: NeedMore) {
        let LentSymbols { arena, esis } = failed.lent;
        if self.lent == 0 || failed.block != self.block || esis.len() != self.lent as usize {
            return;
        }
        let t = usize::from(self.symbol_size);
        let later_arena = std::mem::replace(&mut self.arena, arena);
        let later_esis = std::mem::replace(&mut self.esis, esis);
        self.lent = 0;
        self.arena.reserve_exact(later_arena.len());
        self.esis.reserve_exact(later_esis.len());
        for (esi, payload) in later_esis.into_iter().zip(later_arena.chunks_exact(t)) {
            self.arena.extend_from_slice(payload);
            self.esis.push(esi);
        }
        for (slot, esi) in self.esis.iter().enumerate() {
            if let Some(s) = self.source_slot.get_mut(*esi as usize) {
                *s = u32::try_from(slot + 1).unwrap_or(LENT - 1);
            }
        }
        self.count_leading_sources();
    }

    /// Whether the block can no longer be produced from this session's symbols: full, and the
    /// decode at full already failed (odds ~256^-(surplus+1)).
    pub fn is_exhausted(&self) -> bool {
        self.lent == 0 && self.is_full() && self.last_attempt == Some(self.symbols_held())
    }

    /// Every source symbol is here (so all lead from ESI 0): the block is their prefix.
    fn copy_source(&mut self) -> Vec<u8> {
        let out = self.source_prefix(self.block_len as usize);
        self.arena = Vec::new();
        self.esis = Vec::new();
        self.source_slot = Vec::new();
        self.leading_sources = 0;
        self.repair_seen = HashSet::new();
        out
    }
}

/// Decoding needs more symbols: RaptorQ fails at exactly K with probability ≈ 1/256. Carries
/// the attempt's symbols back to [`BlockAssembler::restore`].
#[derive(Debug, Error)]
#[error("block {block} did not decode from {symbols} symbols; need more")]
pub struct NeedMore {
    /// Our block number.
    pub block: u32,
    /// The symbols, going back to their assembler.
    lent: LentSymbols,
    /// Symbols the attempt had.
    pub symbols: u32,
}

/// A failed attempt's symbols on their way back (the payloads are not shown by `Debug`).
struct LentSymbols {
    arena: Vec<u8>,
    esis: Vec<u32>,
}

impl std::fmt::Debug for LentSymbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} symbols", self.esis.len())
    }
}

/// One decode attempt: owned, pure and `Send`, so the receiver may run it on a worker thread.
/// It holds its assembler's symbols (moved, not copied) until it succeeds or hands them back.
#[derive(Debug)]
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
            None => Err(NeedMore {
                block: self.block,
                symbols: self.symbols(),
                lent: LentSymbols {
                    arena: self.arena,
                    esis: self.esis,
                },
            }),
        }
    }
}
