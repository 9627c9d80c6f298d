//! Block memory: one buffer per block with symbols (allocated on its first symbol, reserved at
//! its worst case), the byte budget they share with in-flight decodes and unpolled writes, LRU
//! eviction when the budget is full, and turning a buffer into a block write (straight copy of
//! the source symbols, or a decode task).

use std::time::Instant;

use super::{DecodeTask, Decoded, Effect, Handled, Receiver, SYMBOL_OVERHEAD};
use crate::transport::fec::{AddOutcome, Assembled, BlockAssembler, NeedMore};
use crate::transport::params::{ESI_LIMIT, ObjectParams};
use crate::transport::wire::DataFrame;

struct Symbol<'a> {
    block: u64,
    esi: u32,
    payload: &'a [u8],
}

/// A block's buffered symbols.
#[derive(Debug)]
pub(super) struct BlockBuf {
    pub(super) asm: BlockAssembler,
    /// Bytes reserved for `asm`: its worst case, charged when the block is first seen.
    pub(super) reserved: u64,
    /// LRU key in `Receiver::lru` (None while a decode is in flight).
    pub(super) tick: Option<u64>,
    pub(super) in_flight: bool,
    /// Symbol ids from here on count toward lost frames when skipped.
    pub(super) gap_from: u32,
    /// One past the highest symbol id stored in this buffer (at least `gap_from`).
    pub(super) next_esi: u32,
}

/// Where gap counting starts for a block buffer whose first symbol is `esi`. A source symbol
/// (`esi < K`) is the start of a send, which sends ids from 0, so ids below it were lost. A
/// repair symbol first means a later pass, or a refill after the buffer was evicted or
/// released: what was sent before is unknown, so counting starts at that symbol.
fn gap_from(params: &ObjectParams, block: u64, esi: u32) -> u32 {
    if esi < params.source_symbols(block) {
        0
    } else {
        esi
    }
}

impl Receiver {
    /// Worst-case bytes of one block's assembler: `K + repair_surplus` symbols of T bytes
    /// plus their bookkeeping. Charged up front so the budget can never be overrun by growth.
    pub(super) fn block_reserve(&self, params: &ObjectParams, block: u64) -> u64 {
        let k = params.source_symbols(block);
        let max = u64::from(self.config.limits.max_stored_symbols(k));
        max * (u64::from(params.symbol_size) + SYMBOL_OVERHEAD) + u64::from(k) * 4
    }

    pub(super) fn handle_data(&mut self, now: Instant, frame: DataFrame<'_>) -> Handled {
        let params = frame.header.params;
        let d = Symbol {
            block: u64::from(frame.header.block),
            esi: frame.header.esi,
            payload: frame.payload,
        };
        if self.config.limits.check(&params).is_err()
            || d.block >= params.block_count()
            || d.esi >= ESI_LIMIT
            || d.payload.len() != usize::from(params.symbol_size)
        {
            self.stats.over_limit += 1;
            return Handled::Other;
        }
        if self.session_for(now, &params).is_none() {
            return Handled::Other;
        }
        let id = params.object_id;
        let Some(s) = self.sessions.get(&id) else {
            return Handled::Other;
        };
        if s.progress.is_done(d.block) {
            self.stats.late_symbols += 1;
            return Handled::Other;
        }
        if !s.blocks.contains_key(&d.block) {
            // First symbol of this block: reserve its worst case before allocating anything.
            let reserve = self.block_reserve(&params, d.block);
            if !self.make_room(reserve, (id, d.block)) {
                self.stats.budget_drops += 1;
                return Handled::Other;
            }
            let Ok(block32) = u32::try_from(d.block) else {
                self.stats.over_limit += 1;
                return Handled::Other;
            };
            let Ok(asm) = BlockAssembler::new(&params, block32, &self.config.limits) else {
                self.stats.over_limit += 1;
                return Handled::Other;
            };
            let Some(s) = self.sessions.get_mut(&id) else {
                return Handled::Other;
            };
            s.blocks.insert(
                d.block,
                BlockBuf {
                    asm,
                    reserved: reserve,
                    tick: None,
                    in_flight: false,
                    gap_from: gap_from(&params, d.block, d.esi),
                    next_esi: gap_from(&params, d.block, d.esi),
                },
            );
            self.buffered += reserve;
        }
        self.tick += 1;
        let tick = self.tick;
        let Some(s) = self.sessions.get_mut(&id) else {
            return Handled::Other;
        };
        let Some(b) = s.blocks.get_mut(&d.block) else {
            return Handled::Other;
        };
        match b.asm.add(d.esi, d.payload) {
            Ok(AddOutcome::Stored) => self.stats.symbols_accepted += 1,
            Ok(AddOutcome::Duplicate) => {
                self.stats.duplicate_symbols += 1;
                return Handled::Other;
            }
            Ok(AddOutcome::Full) => {
                self.stats.over_cap_symbols += 1;
                return Handled::Other;
            }
            Ok(AddOutcome::Finished) => {
                self.stats.late_symbols += 1;
                return Handled::Other;
            }
            Err(_) => {
                self.stats.over_limit += 1;
                return Handled::Other;
            }
        }
        // The sender sends each block's symbol ids in increasing order, so a stored id past the
        // next expected one means the ids in between were lost; a stored id below it fills a
        // gap counted earlier (reordering), so that frame was late, not lost.
        if d.esi >= b.next_esi {
            s.lost_frames += u64::from(d.esi - b.next_esi);
            b.next_esi = d.esi + 1;
        } else if d.esi >= b.gap_from {
            s.lost_frames = s.lost_frames.saturating_sub(1);
        }
        let lost_frames = s.lost_frames;
        if !b.in_flight {
            if let Some(old) = b.tick.replace(tick) {
                self.lru.remove(&old);
            }
            self.lru.insert(tick, (id, d.block));
        }
        self.poll_block(&id, d.block);
        Handled::Stored {
            object_id: id,
            lost_frames,
        }
    }

    /// Make room for `cost` more bytes, evicting least-recently-fed blocks other than
    /// `protect`. False if the budget cannot fit it.
    pub(super) fn make_room(&mut self, cost: u64, protect: ([u8; 16], u64)) -> bool {
        while self.buffered + cost > self.config.max_buffered_bytes {
            let victim = self
                .lru
                .iter()
                .find(|(_, key)| **key != protect)
                .map(|(t, key)| (*t, *key));
            let Some((t, (id, block))) = victim else {
                return false;
            };
            self.lru.remove(&t);
            if let Some(b) = self
                .sessions
                .get_mut(&id)
                .and_then(|s| s.blocks.remove(&block))
            {
                self.buffered = self.buffered.saturating_sub(b.reserved);
                self.stats.blocks_evicted += 1;
            }
        }
        true
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// Drop one block's buffer (not in the LRU any more, reservation released).
    pub(super) fn drop_block(&mut self, id: &[u8; 16], block: u64) -> Option<BlockBuf> {
        let b = self.sessions.get_mut(id)?.blocks.remove(&block)?;
        if let Some(t) = b.tick {
            self.lru.remove(&t);
        }
        self.release(b.reserved);
        Some(b)
    }

    /// Copy the block out, or hand out a decode job, if its assembler has enough symbols.
    pub(super) fn poll_block(&mut self, id: &[u8; 16], block: u64) {
        let Some(b) = self
            .sessions
            .get_mut(id)
            .and_then(|s| s.blocks.get_mut(&block))
        else {
            return;
        };
        if b.in_flight {
            return;
        }
        match b.asm.poll() {
            Assembled::Pending => {
                if b.asm.is_exhausted() {
                    // Full, and decoding from everything stored failed: start the block over
                    // (a later pass refills it).
                    self.drop_block(id, block);
                    self.stats.blocks_evicted += 1;
                }
            }
            Assembled::Complete(data) => {
                self.drop_block(id, block);
                // Released the reservation (≥ K × T ≥ the block) before charging the write.
                self.buffered += data.len() as u64;
                self.stats.blocks_copied += 1;
                self.emit_write(id, block, data);
            }
            Assembled::Decode(job) => {
                let t = self
                    .sessions
                    .get(id)
                    .map_or(0, |s| u64::from(s.progress.params.symbol_size));
                let cost = u64::from(job.symbols()) * (t + 4);
                if !self.make_room(cost, (*id, block)) {
                    // The assembler offers another job after a few more symbols.
                    self.stats.budget_drops += 1;
                    return;
                }
                let Some(b) = self
                    .sessions
                    .get_mut(id)
                    .and_then(|s| s.blocks.get_mut(&block))
                else {
                    return;
                };
                b.in_flight = true;
                if let Some(t) = b.tick.take() {
                    self.lru.remove(&t);
                }
                self.buffered += cost;
                self.in_flight.insert((*id, block), cost);
                self.effects.push_back(Effect::Decode(DecodeTask {
                    object_id: *id,
                    block,
                    job,
                }));
            }
        }
    }

    /// Accept the result of a [`DecodeTask`].
    pub fn handle_decoded(&mut self, now: Instant, decoded: Decoded) {
        let _ = now;
        let id = decoded.object_id;
        let block = decoded.block;
        let job_bytes = self.in_flight.remove(&(id, block)).unwrap_or(0);
        self.release(job_bytes);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.progress.is_done(block) {
            return;
        }
        match decoded.result {
            Ok(data) => {
                self.drop_block(&id, block);
                if !self.make_room(data.len() as u64, (id, block)) {
                    // Cannot happen (the block's reservation and the job were just released),
                    // but never overrun the budget: the symbols come again on a later pass.
                    self.stats.budget_drops += 1;
                    return;
                }
                self.buffered += data.len() as u64;
                self.stats.blocks_decoded += 1;
                self.emit_write(&id, block, data);
            }
            Err(NeedMore { .. }) => {
                self.stats.decode_retries += 1;
                let Some(b) = s.blocks.get_mut(&block) else {
                    return;
                };
                b.in_flight = false;
                self.tick += 1;
                b.tick = Some(self.tick);
                self.lru.insert(self.tick, (id, block));
                self.poll_block(&id, block);
            }
        }
    }

    pub(super) fn emit_write(&mut self, id: &[u8; 16], block: u64, data: Vec<u8>) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let offset = s.progress.params.block_offset(block).unwrap_or(0);
        s.progress.set_done(block);
        s.writes_since_checkpoint += 1;
        let checkpoint = s.writes_since_checkpoint >= self.config.checkpoint_every_blocks;
        if checkpoint {
            s.writes_since_checkpoint = 0;
        }
        self.effects.push_back(Effect::Write {
            object_id: *id,
            block,
            offset,
            data,
        });
        if !self.maybe_complete(id) && checkpoint {
            self.effects
                .push_back(Effect::Checkpoint { object_id: *id });
        }
    }
}
