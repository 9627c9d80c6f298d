//! Block memory: one buffer per block with symbols (allocated on its first symbol, charged per
//! stored symbol), the byte budget they share with in-flight decodes, unpolled writes and the
//! blocks unauthenticated sessions hold, eviction when the budget is full (never of a block that
//! made more progress than the one asking, never of an authenticated session's block for an
//! unauthenticated one), and turning a buffer into a block write (straight copy of the source
//! symbols, or a decode task).

use std::time::Instant;

use super::{BLOCK_OVERHEAD, DecodeTask, Decoded, Effect, Handled, Receiver, SYMBOL_OVERHEAD};
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
    /// Bytes charged for `asm` so far: [`BLOCK_OVERHEAD`] plus, per stored symbol, the growth
    /// it caused and [`SYMBOL_OVERHEAD`].
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
        let Some(s) = self.sessions.get_mut(&id) else {
            return Handled::Other;
        };
        if s.progress.is_done(d.block) {
            self.stats.late_symbols += 1;
            return Handled::Other;
        }
        let authenticated = s.authenticated;
        // The block's buffer, created (allocating nothing yet) on its first symbol.
        let new_block = !s.blocks.contains_key(&d.block);
        if new_block {
            let Ok(block32) = u32::try_from(d.block) else {
                self.stats.over_limit += 1;
                return Handled::Other;
            };
            let Ok(asm) = BlockAssembler::new(&params, block32, &self.config.limits) else {
                self.stats.over_limit += 1;
                return Handled::Other;
            };
            s.blocks.insert(
                d.block,
                BlockBuf {
                    asm,
                    reserved: 0,
                    tick: None,
                    in_flight: false,
                    gap_from: gap_from(&params, d.block, d.esi),
                    next_esi: gap_from(&params, d.block, d.esi),
                },
            );
        }
        let Some(b) = s.blocks.get(&d.block) else {
            return Handled::Other;
        };
        let held_symbols = b.asm.symbols_held();
        // Charge what storing this symbol allocates, before it is allocated. `None`: it would
        // not be stored (duplicate, full, finished), so `add` below counts it and allocates
        // nothing.
        let cost = b
            .asm
            .add_cost(d.esi)
            .map(|c| c + SYMBOL_OVERHEAD + if new_block { BLOCK_OVERHEAD } else { 0 });
        if let Some(cost) = cost {
            if !self.make_room(cost, (id, d.block), authenticated, held_symbols) {
                self.stats.budget_drops += 1;
                if new_block {
                    self.take_block(&id, d.block);
                }
                return Handled::Other;
            }
        }
        self.tick += 1;
        let tick = self.tick;
        let Some(s) = self.sessions.get_mut(&id) else {
            return Handled::Other;
        };
        let Some(b) = s.blocks.get_mut(&d.block) else {
            return Handled::Other;
        };
        let outcome = b.asm.add(d.esi, d.payload);
        if let (Ok(AddOutcome::Stored), Some(cost)) = (&outcome, cost) {
            b.reserved += cost;
            s.bytes += cost;
            s.recent.record(now);
            self.buffered += cost;
            if !authenticated {
                self.unauth_buffered += cost;
            }
        }
        // Every outcome is counted once; only a stored symbol is kept.
        let counter = match outcome {
            Ok(AddOutcome::Stored) => &mut self.stats.symbols_accepted,
            Ok(AddOutcome::Duplicate) => &mut self.stats.duplicate_symbols,
            Ok(AddOutcome::Full) => &mut self.stats.over_cap_symbols,
            Ok(AddOutcome::Finished) => &mut self.stats.late_symbols,
            Err(_) => &mut self.stats.over_limit,
        };
        *counter += 1;
        let dropped = !matches!(outcome, Ok(AddOutcome::Stored));
        if dropped {
            if new_block {
                self.take_block(&id, d.block);
            }
            return Handled::Other;
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
        let offers_start = !authenticated && d.block == 0 && d.esi < b.asm.source_symbol_count();
        if !b.in_flight {
            if let Some(old) = b.tick.replace(tick) {
                self.lru.remove(&old);
            }
            self.lru.insert(tick, (id, d.block));
        }
        self.poll_block(&id, d.block);
        if offers_start {
            self.offer_prefix(&id);
        }
        Handled::Stored {
            object_id: id,
            lost_frames,
        }
    }

    /// Whether block `block` of an unauthenticated session carries bytes offered for
    /// authentication (its offset is below `max_auth_prefix_bytes`): such a block is never
    /// evicted, and may evict its own session's later blocks, so a real object's first block
    /// completes even while the rest of it crowds the session's share.
    fn is_prefix_block(&self, id: &[u8; 16], block: u64) -> bool {
        self.sessions.get(id).is_some_and(|s| {
            !s.authenticated
                && s.progress
                    .params
                    .block_offset(block)
                    .is_some_and(|o| o < self.config.max_auth_prefix_bytes)
        })
    }

    /// Make room for `cost` more bytes for block `protect`, whose session is `authenticated`
    /// and which holds `held_symbols` symbols: within the whole budget, and for an
    /// unauthenticated session also within the unauthenticated pool and its own share. Evicts,
    /// least recently fed first, only blocks that (a) hold no more symbols than `held_symbols`
    /// (a new or unfed block never evicts one making progress), except that an unauthenticated
    /// session's first (prefix) blocks may evict its own later ones; (b) for an
    /// unauthenticated requester, belong to unauthenticated sessions (and only to its own while
    /// it is over its share); and (c) are not an unauthenticated session's prefix blocks.
    /// The cost counts toward the session's share (symbols, held blocks); symbols lent to a
    /// decode job do not (they are bounded by the pool and the budget). While a session's first
    /// block decodes, the session may use the whole pool: its authentication is
    /// a decode away, and what arrives meanwhile is not sent again in this pass (a jumbo first
    /// block takes tens of milliseconds to decode while the next blocks arrive at line rate).
    /// False if that cannot make room.
    pub(super) fn make_room(
        &mut self,
        cost: u64,
        protect: ([u8; 16], u64),
        authenticated: bool,
        held_symbols: u32,
    ) -> bool {
        let pool = self.config.unauthenticated_pool_bytes();
        let first_block_decoding = self.in_flight.contains_key(&(protect.0, 0));
        let share = if first_block_decoding {
            pool
        } else {
            self.config.unauthenticated_session_bytes()
        };
        let requester_prefix = self.is_prefix_block(&protect.0, protect.1);
        loop {
            let session_bytes = self.sessions.get(&protect.0).map_or(0, |s| s.bytes);
            let over_budget = self.buffered + cost > self.config.max_buffered_bytes;
            let over_pool = !authenticated && self.unauth_buffered + cost > pool;
            let over_share = !authenticated && session_bytes + cost > share;
            if !over_budget && !over_pool && !over_share {
                return true;
            }
            let victim = self.lru.iter().find_map(|(t, key)| {
                if *key == protect || (over_share && key.0 != protect.0) {
                    return None;
                }
                let s = self.sessions.get(&key.0)?;
                if !authenticated && s.authenticated {
                    return None;
                }
                if self.is_prefix_block(&key.0, key.1) {
                    return None;
                }
                let b = s.blocks.get(&key.1)?;
                let own_later = requester_prefix && key.0 == protect.0;
                (own_later || b.asm.symbols_held() <= held_symbols).then_some((*t, *key))
            });
            let Some((t, (id, block))) = victim else {
                return false;
            };
            self.lru.remove(&t);
            if self.take_block(&id, block).is_some() {
                self.stats.blocks_evicted += 1;
            }
        }
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// Release the budget of an in-flight decode of `(id, block)`.
    pub(super) fn release_in_flight(&mut self, id: [u8; 16], block: u64) {
        if let Some((cost, unauth)) = self.in_flight.remove(&(id, block)) {
            self.release(cost);
            if unauth {
                self.unauth_buffered = self.unauth_buffered.saturating_sub(cost);
            }
        }
    }

    /// Remove one block's buffer, releasing what it was charged (LRU entry, budget, the
    /// session's bytes and, for an unauthenticated session, the pool).
    pub(super) fn take_block(&mut self, id: &[u8; 16], block: u64) -> Option<BlockBuf> {
        let s = self.sessions.get_mut(id)?;
        let b = s.blocks.remove(&block)?;
        s.bytes = s.bytes.saturating_sub(b.reserved);
        let unauth = !s.authenticated;
        if let Some(t) = b.tick {
            self.lru.remove(&t);
        }
        self.release(b.reserved);
        if unauth {
            self.unauth_buffered = self.unauth_buffered.saturating_sub(b.reserved);
        }
        Some(b)
    }

    /// Copy the block out, or hand out a decode job, if its assembler has enough symbols.
    pub(super) fn poll_block(&mut self, id: &[u8; 16], block: u64) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let authenticated = s.authenticated;
        let Some(b) = s.blocks.get_mut(&block) else {
            return;
        };
        if b.in_flight {
            return;
        }
        let held_before = b.asm.bytes_held() as u64;
        match b.asm.poll() {
            Assembled::Pending => {
                if b.asm.is_exhausted() {
                    // Full, and decoding from everything stored failed: start the block over
                    // (a later pass refills it).
                    self.take_block(id, block);
                    self.stats.blocks_evicted += 1;
                }
            }
            Assembled::Complete(data) => {
                self.take_block(id, block);
                // Released the block's charge (≥ K × T ≥ the block) before charging the write.
                self.buffered += data.len() as u64;
                self.stats.blocks_copied += 1;
                self.emit_write(id, block, data);
            }
            Assembled::Decode(job) => {
                // The job took the assembler's symbols: their charge moves from the block (and
                // its session's share) to the decode in flight, until `handle_decoded`.
                let lent = held_before.saturating_sub(b.asm.bytes_held() as u64);
                b.reserved = b.reserved.saturating_sub(lent);
                b.in_flight = true;
                if let Some(t) = b.tick.take() {
                    self.lru.remove(&t);
                }
                s.bytes = s.bytes.saturating_sub(lent);
                self.in_flight.insert((*id, block), (lent, !authenticated));
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
        let data = match decoded.result {
            Ok(data) => data,
            Err(failed) => return self.take_back(id, block, failed),
        };
        self.release_in_flight(id, block);
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        if s.progress.is_done(block) {
            return;
        }
        let authenticated = s.authenticated;
        self.take_block(&id, block);
        if !self.make_room(data.len() as u64, (id, block), authenticated, u32::MAX) {
            // Only when the unauthenticated pool is full of other sessions' held blocks: the
            // symbols come again on a later pass.
            self.stats.budget_drops += 1;
            return;
        }
        self.buffered += data.len() as u64;
        self.stats.blocks_decoded += 1;
        self.emit_write(&id, block, data);
    }

    /// A decode failed: its symbols go back to their block, and their charge with them (the
    /// budget is unchanged: they were charged as in flight). Released if the block is gone.
    fn take_back(&mut self, id: [u8; 16], block: u64, failed: NeedMore) {
        self.stats.decode_retries += 1;
        let Some((cost, _)) = self.in_flight.get(&(id, block)).copied() else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return self.release_in_flight(id, block);
        };
        let Some(b) = s.blocks.get_mut(&block).filter(|b| b.in_flight) else {
            return self.release_in_flight(id, block);
        };
        self.in_flight.remove(&(id, block));
        b.asm.restore(failed);
        b.reserved += cost;
        b.in_flight = false;
        s.bytes += cost;
        self.tick += 1;
        b.tick = Some(self.tick);
        self.lru.insert(self.tick, (id, block));
        self.poll_block(&id, block);
    }

    /// A block is complete (its bytes already charged to `buffered`). Authenticated: a `Write`
    /// (and maybe `Checkpoint`/`Complete`). Unauthenticated: held in the session, and its start
    /// offered for authentication if it grew.
    pub(super) fn emit_write(&mut self, id: &[u8; 16], block: u64, data: Vec<u8>) {
        let Some(s) = self.sessions.get_mut(id) else {
            self.release(data.len() as u64);
            return;
        };
        s.progress.set_done(block);
        if !s.authenticated {
            let len = data.len() as u64;
            s.bytes += len;
            s.held.insert(block, data);
            self.unauth_buffered += len;
            self.offer_prefix(id);
            return;
        }
        let offset = s.progress.params.block_offset(block).unwrap_or(0);
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
