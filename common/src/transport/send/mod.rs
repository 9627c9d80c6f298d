//! The sender state machine: turns queued objects into paced, interleaved frames.
//!
//! See [`Sender`] for how to drive it.

use std::collections::VecDeque;
use std::time::Instant;

use super::fec::{RepairEncoder, RepairJob, SourceBlock};
use super::pacer::{DEFAULT_BURST_FRAMES, IP_UDP_OVERHEAD, Pacer};
use super::params::{ESI_LIMIT, ObjectParams};
use super::wire::{self, DataHeader, Frame, Heartbeat, LedgerEntry, ObjectEnd};

mod config;
pub use config::{SendError, SenderConfig};

/// Ledger entries a heartbeat carries (the most recently started objects).
pub const LEDGER_LEN: usize = 16;
/// How many object-end frames close each pass.
pub const END_FRAME_COPIES: u32 = 3;
/// Data frames between two copies of an object-end frame, so one loss burst does not take all.
pub const END_FRAME_SPACING: u32 = 32;

/// A request for the caller to read `len` bytes of object `object_id` at `offset` (block
/// `block`) and hand them back through [`Sender::handle_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// The object.
    pub object_id: [u8; 16],
    /// Block index.
    pub block: u64,
    /// Byte offset of the block in the object.
    pub offset: u64,
    /// Bytes to read (the block's length).
    pub len: usize,
    /// Which pass of the object this read serves (each pass re-reads the object).
    pub pass: u16,
}

/// The expensive part of encoding a block: RaptorQ's intermediate-symbol solve, needed only for
/// its repair symbols. Pure and `Send`: the driver runs it on a worker thread while the block's
/// source symbols are already on the wire, and gives the result to
/// [`Sender::handle_encoded`].
#[derive(Debug)]
pub struct EncodeJob {
    request: ReadRequest,
    job: RepairJob,
}

impl EncodeJob {
    /// The block this job solves.
    pub fn request(&self) -> &ReadRequest {
        &self.request
    }

    /// Solve the block's intermediate symbols.
    pub fn run(self) -> EncodedBlock {
        EncodedBlock {
            request: self.request,
            encoder: self.job.run(),
        }
    }
}

/// The result of an [`EncodeJob`].
#[derive(Debug)]
pub struct EncodedBlock {
    request: ReadRequest,
    encoder: RepairEncoder,
}

/// Counters (monotonic, for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// All frames written.
    pub frames: u64,
    /// Bytes of all frames written (without IP/UDP overhead).
    pub bytes: u64,
    /// Data-symbol frames.
    pub data_frames: u64,
    /// Heartbeat frames.
    pub heartbeat_frames: u64,
    /// Object-end frames.
    pub end_frames: u64,
    /// Data frames of the current (or last) pass of the current (or last) object.
    pub data_frames_this_pass: u64,
    /// Passes finished over all objects.
    pub passes_completed: u64,
    /// Objects whose last pass finished.
    pub objects_completed: u64,
    /// Paced only: wire bytes of the rate left unused because the token bucket was full (the
    /// sender was late, busy or had nothing ready). Unpaced: 0.
    pub pacing_unused_bytes: u64,
}

#[derive(Debug)]
struct Queued {
    object_id: [u8; 16],
    params: ObjectParams,
}

#[derive(Debug)]
struct Current {
    object_id: [u8; 16],
    params: ObjectParams,
    pass: u16,
    /// First block of the window.
    window_start: u64,
    /// The window's blocks (None until read).
    slots: Vec<Option<Slot>>,
    /// Blocks of the window already requested from the caller.
    requested: usize,
    /// Symbol round within the window and the slot within the round.
    round: u32,
    slot: usize,
    frames_this_pass: u64,
}

impl Current {
    /// Where read `r`'s block sits in the window; a read of another object, pass or a block
    /// before the window is unexpected (both the source and the repair step check this).
    fn window_index(&self, r: &ReadRequest) -> Result<usize, SendError> {
        if self.object_id != r.object_id || self.pass != r.pass || r.block < self.window_start {
            return Err(SendError::UnexpectedRead);
        }
        usize::try_from(r.block - self.window_start).map_err(|_| SendError::UnexpectedRead)
    }
}

/// One block of the window: its source symbols as soon as it is read, its repair encoder once
/// the solve is done.
#[derive(Debug)]
struct Slot {
    source: SourceBlock,
    repair: Option<RepairEncoder>,
}

enum Next {
    Control(Frame<'static>),
    Data { header: DataHeader, slot: usize },
}

#[derive(Debug)]
struct PendingEnd {
    frame: ObjectEnd,
    /// Data frames still to go before this copy is due.
    after_frames: u32,
}

/// The sender. Sans-IO: it reads no clock, file or socket.
///
/// # Driving order
///
/// 1. `queue_object(now, id, len, unix_ms)` for each object to send. Objects are sent one after
///    another, each with all its passes before the next: pass 1 of A, pass 2 of A, …, then B.
/// 2. Loop:
///    - while [`poll_read`](Self::poll_read) returns a request, read those bytes from the
///      object and call [`handle_read`](Self::handle_read), which also encodes inline; or call
///      [`handle_source`](Self::handle_source), run the [`EncodeJob`] it returns on a worker
///      thread and give the result to [`handle_encoded`](Self::handle_encoded). RaptorQ is
///      systematic, so the block's source symbols go out while its repair solve runs: the
///      solve only has to finish before the window reaches its repair rounds. Each pass reads
///      the object again; at most one window of blocks is held.
///    - while [`poll_transmit`](Self::poll_transmit)`(now, buf)` returns `Some(n)`, send
///      `buf[..n]` as one datagram (or spool record). Batch them for GSO if you like.
///    - sleep until [`poll_timeout`](Self::poll_timeout) (pacing or the next heartbeat), or
///      until an encode job finishes, then repeat with a fresh `now`.
/// 3. Stop when [`is_finished`](Self::is_finished) (heartbeats continue while you keep
///    polling, which is useful for a long-running sender that is idle).
///
/// `now` must not go backwards (a `now` earlier than a previous one counts as no time passing).
///
/// # What goes on the wire
///
/// For each object and pass, block 0 (which carries the bundle's signed prefix and header) is
/// sent first, alone, then the rest is cut into windows of `window_blocks` blocks. Within a
/// window the symbols are interleaved, one per block in turn (block0 esi0, block1 esi0, …,
/// block0 esi1, …), so a burst of lost frames is spread thin across blocks. Pass `p` (1-based)
/// sends ESIs `(p-1)·(K+R) .. p·(K+R)` of every block: pass 1 is the K source symbols plus R
/// repair symbols, every later pass is K+R repair symbols never sent before. After the last
/// window of a pass, [`END_FRAME_COPIES`] object-end frames go out, spread
/// [`END_FRAME_SPACING`] data frames apart (or back to back when nothing else is left).
/// Heartbeats carry the last [`LEDGER_LEN`] objects started.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    pacer: Pacer,
    /// Wall-clock anchor: `unix_ms` at `Instant`.
    clock: (Instant, u64),
    queue: VecDeque<Queued>,
    current: Option<Current>,
    pending_ends: VecDeque<PendingEnd>,
    next_heartbeat: Instant,
    /// The latest `now` seen by [`poll_transmit`](Self::poll_transmit): what
    /// [`poll_timeout`](Self::poll_timeout) answers when reads are due at once.
    last_poll: Instant,
    heartbeat_seq: u64,
    ledger: VecDeque<LedgerEntry>,
    stats: SenderStats,
}

impl Sender {
    /// A sender; `now` and `unix_ms` anchor the wall clock used in heartbeats. The first
    /// heartbeat is due immediately.
    pub fn new(config: SenderConfig, now: Instant, unix_ms: u64) -> Result<Self, SendError> {
        if config.symbol_size == 0 {
            return Err(SendError::Invalid("symbol_size is 0"));
        }
        if config.block_size < u32::from(config.symbol_size) {
            return Err(SendError::Invalid("block_size below symbol_size"));
        }
        if config.window_blocks == 0 {
            return Err(SendError::Invalid("window_blocks is 0"));
        }
        if config.passes == 0 {
            return Err(SendError::Invalid("passes is 0"));
        }
        let frame_wire = (wire::data_frame_len(config.symbol_size) + IP_UDP_OVERHEAD) as u64;
        let burst = config
            .burst_bytes
            .unwrap_or(DEFAULT_BURST_FRAMES * frame_wire);
        Ok(Self {
            pacer: Pacer::new(config.rate_bytes_per_sec, burst),
            config,
            clock: (now, unix_ms),
            queue: VecDeque::new(),
            current: None,
            pending_ends: VecDeque::new(),
            next_heartbeat: now,
            last_poll: now,
            heartbeat_seq: 0,
            ledger: VecDeque::new(),
            stats: SenderStats::default(),
        })
    }

    /// Queue an object of `len` bytes. `unix_ms` re-anchors the wall clock at `now`.
    pub fn queue_object(
        &mut self,
        now: Instant,
        object_id: [u8; 16],
        len: u64,
        unix_ms: u64,
    ) -> Result<(), SendError> {
        let params = ObjectParams {
            object_id,
            object_len: len,
            block_size: self.config.block_size,
            symbol_size: self.config.symbol_size,
        };
        // The highest ESI of the last pass must fit RaptorQ's 24-bit ESI space.
        let k = params.source_symbols(0);
        let per_pass = u64::from(k) + u64::from(self.config.repair_symbols(k));
        if per_pass * u64::from(self.config.passes) > u64::from(ESI_LIMIT) {
            return Err(SendError::Invalid("too many passes for the ESI space"));
        }
        self.clock = (now, unix_ms);
        self.queue.push_back(Queued { object_id, params });
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            pacing_unused_bytes: self.pacer.unused_bytes(),
            ..self.stats
        }
    }

    /// Everything queued was sent, all passes, with its end frames.
    pub fn is_finished(&self) -> bool {
        self.queue.is_empty() && self.current.is_none() && self.pending_ends.is_empty()
    }

    /// The next read the sender needs, if any. Each request is returned once.
    pub fn poll_read(&mut self) -> Option<ReadRequest> {
        self.start_next_object();
        let cur = self.current.as_mut()?;
        if cur.requested >= cur.slots.len() {
            return None;
        }
        let block = cur.window_start + cur.requested as u64;
        cur.requested += 1;
        Some(ReadRequest {
            object_id: cur.object_id,
            block,
            offset: cur.params.block_offset(block).unwrap_or(0),
            len: cur.params.block_len(block).unwrap_or(0) as usize,
            pass: cur.pass,
        })
    }

    /// Answer a [`ReadRequest`] with the block's bytes and encode it inline.
    pub fn handle_read(&mut self, request: ReadRequest, data: Vec<u8>) -> Result<(), SendError> {
        let job = self.handle_source(request, data)?;
        self.handle_encoded(job.run())
    }

    /// Answer a [`ReadRequest`] with the block's bytes: its source symbols may be sent from now
    /// on. Returns the block's repair solve, to run anywhere and hand to
    /// [`handle_encoded`](Self::handle_encoded) before the window needs its repair symbols.
    pub fn handle_source(
        &mut self,
        request: ReadRequest,
        data: Vec<u8>,
    ) -> Result<EncodeJob, SendError> {
        let idx = self.slot_index(&request)?;
        if data.len() != request.len {
            return Err(SendError::ShortRead {
                want: request.len,
                got: data.len(),
            });
        }
        let cur = self.current.as_mut().ok_or(SendError::UnexpectedRead)?;
        let block = u32::try_from(request.block).map_err(|_| SendError::UnexpectedRead)?;
        let source = SourceBlock::new(&cur.params, block, data)
            .map_err(|_| SendError::Invalid("block refused by the FEC encoder"))?;
        let job = source.repair_job();
        let slot = cur.slots.get_mut(idx).ok_or(SendError::UnexpectedRead)?;
        *slot = Some(Slot {
            source,
            repair: None,
        });
        Ok(EncodeJob { request, job })
    }

    /// Accept the repair encoder of a block whose source was given to
    /// [`handle_source`](Self::handle_source).
    pub fn handle_encoded(&mut self, block: EncodedBlock) -> Result<(), SendError> {
        let r = &block.request;
        let cur = self.current.as_mut().ok_or(SendError::UnexpectedRead)?;
        let idx = cur.window_index(r)?;
        match cur.slots.get_mut(idx) {
            Some(Some(slot)) if slot.repair.is_none() => {
                slot.repair = Some(block.encoder);
                Ok(())
            }
            _ => Err(SendError::UnexpectedRead),
        }
    }

    fn slot_index(&self, r: &ReadRequest) -> Result<usize, SendError> {
        let cur = self.current.as_ref().ok_or(SendError::UnexpectedRead)?;
        let idx = cur.window_index(r)?;
        match cur.slots.get(idx) {
            Some(None) if idx < cur.requested => Ok(idx),
            _ => Err(SendError::UnexpectedRead),
        }
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.clock;
        let elapsed = now.saturating_duration_since(at).as_millis();
        ms.saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    fn start_next_object(&mut self) {
        if self.current.is_some() {
            return;
        }
        let Some(q) = self.queue.pop_front() else {
            return;
        };
        let entry = LedgerEntry {
            object_id: q.object_id,
            object_len: q.params.object_len,
            first_sent_unix_ms: self.unix_ms(self.clock.0),
            pass: 1,
            passes: self.config.passes,
        };
        if self.ledger.len() >= LEDGER_LEN {
            self.ledger.pop_front();
        }
        self.ledger.push_back(entry);
        let mut cur = Current {
            object_id: q.object_id,
            params: q.params,
            pass: 1,
            window_start: 0,
            slots: Vec::new(),
            requested: 0,
            round: 0,
            slot: 0,
            frames_this_pass: 0,
        };
        self.stats.data_frames_this_pass = 0;
        Self::open_window(&self.config, &mut cur, 0);
        self.current = Some(cur);
    }

    fn open_window(config: &SenderConfig, cur: &mut Current, start: u64) {
        let blocks = cur.params.block_count();
        // Block 0 is a window of its own, first in every pass: it carries the bundle's signed
        // prefix and header, and a receiver holds an object it cannot yet authenticate in a
        // small memory share with no staging (transport/recv/mod.rs, "Authenticate first"), so
        // the sooner that block is whole the sooner the rest is staged normally.
        let width = if start == 0 {
            1
        } else {
            u64::from(config.window_blocks)
        };
        let n = (blocks.saturating_sub(start)).min(width);
        cur.window_start = start;
        cur.slots = (0..n).map(|_| None).collect();
        cur.requested = 0;
        cur.round = 0;
        cur.slot = 0;
    }

    /// Symbols per pass for block `block`.
    fn per_pass(config: &SenderConfig, params: &ObjectParams, block: u64) -> u32 {
        let k = params.source_symbols(block);
        k.saturating_add(config.repair_symbols(k))
    }

    /// Whether [`poll_read`](Self::poll_read) has a request to give now. True right after the
    /// [`poll_transmit`](Self::poll_transmit) that ended a window: that call opens the next
    /// window and returns `None`, and no frame can go out until its blocks are read.
    pub fn wants_read(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|cur| cur.requested < cur.slots.len())
            || (self.current.is_none() && !self.queue.is_empty())
    }

    /// When to call [`poll_read`](Self::poll_read) and [`poll_transmit`](Self::poll_transmit)
    /// again: at once (the latest `now` seen) while [`wants_read`](Self::wants_read), else the
    /// next heartbeat or when the pacer allows the next frame.
    ///
    /// Without the first case a driver that sleeps until this instant after the window-ending
    /// transmit slept until the next heartbeat (its 50 ms cap in `sluice-send`) with the next
    /// window unread, at every window: 0.86-0.93 of the set rate at MTU 9000 (bench/README.md).
    /// `testkit/tests/sim_paced_link.rs::a_driver_sleeping_until_poll_timeout_keeps_the_rate`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.wants_read() {
            return Some(self.last_poll);
        }
        let paced = self.pacer.ready_at().filter(|_| self.has_frame_ready());
        Some(paced.map_or(self.next_heartbeat, |r| r.min(self.next_heartbeat)))
    }

    fn has_frame_ready(&self) -> bool {
        if !self.pending_ends.is_empty() {
            return true;
        }
        let Some(cur) = self.current.as_ref() else {
            return false;
        };
        if cur.slots.is_empty() || cur.slots.iter().any(Option::is_none) {
            return false;
        }
        // Window done (the next poll opens the next one), or the next symbol can be written.
        Self::next_position(&self.config, cur)
            .is_none_or(|(round, slot)| Self::symbol_ready(&self.config, cur, round, slot))
    }

    /// The next (round, slot) from the window cursor on whose block still has a symbol in
    /// this pass, or `None` when the window is done. The first block of a window is never
    /// shorter than the others, so it bounds the rounds.
    fn next_position(config: &SenderConfig, cur: &Current) -> Option<(u32, usize)> {
        let nslots = cur.slots.len();
        let max_round = Self::per_pass(config, &cur.params, cur.window_start);
        let (mut round, mut slot) = (cur.round, cur.slot);
        while round < max_round {
            let block = cur.window_start + slot as u64;
            if round < Self::per_pass(config, &cur.params, block) {
                return Some((round, slot));
            }
            slot += 1;
            if slot >= nslots {
                slot = 0;
                round += 1;
            }
        }
        None
    }

    /// Whether the symbol at (round, slot) can be written now: source symbols as soon as the
    /// block is read, repair symbols once its solve came back.
    fn symbol_ready(config: &SenderConfig, cur: &Current, round: u32, slot: usize) -> bool {
        let Some(Some(s)) = cur.slots.get(slot) else {
            return false;
        };
        Self::esi(config, cur, round, slot) < s.source.source_symbol_count() || s.repair.is_some()
    }

    /// The ESI sent at (round, slot) in the current pass.
    fn esi(config: &SenderConfig, cur: &Current, round: u32, slot: usize) -> u32 {
        let per_pass = Self::per_pass(config, &cur.params, cur.window_start + slot as u64);
        u32::from(cur.pass - 1)
            .saturating_mul(per_pass)
            .saturating_add(round)
    }

    /// Write the next frame into `buf` (at least [`wire::data_frame_len`]`(symbol_size)` bytes,
    /// and at least [`wire::heartbeat_len`]`(16)`) and return its length, or `None` when nothing
    /// may be sent now: paced out, waiting for reads, or idle between heartbeats.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.last_poll = self.last_poll.max(now);
        self.start_next_object();
        if !self.pacer.can_send(now) {
            return None;
        }
        let n = match self.next_frame(now)? {
            Next::Control(frame) => wire::encode(&self.config.link_key, &frame, buf).ok()?,
            Next::Data { header, slot } => {
                let t = usize::from(header.params.symbol_size);
                let len = wire::data_frame_len(header.params.symbol_size);
                let frame = buf.get_mut(..len)?;
                let block = self.current.as_ref()?.slots.get(slot)?.as_ref()?;
                let payload = frame.get_mut(wire::DATA_HEADER_LEN..wire::DATA_HEADER_LEN + t)?;
                if header.esi < block.source.source_symbol_count() {
                    payload.copy_from_slice(block.source.source_symbol(header.esi).ok()?);
                } else {
                    block
                        .repair
                        .as_ref()?
                        .write_repair_symbol(header.esi, payload)
                        .ok()?;
                }
                wire::seal_data_in_place(&self.config.link_key, &header, frame).ok()?;
                len
            }
        };
        self.pacer.consume(now, n + IP_UDP_OVERHEAD);
        self.stats.frames += 1;
        self.stats.bytes += n as u64;
        Some(n)
    }

    fn next_frame(&mut self, now: Instant) -> Option<Next> {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            self.heartbeat_seq += 1;
            self.stats.heartbeat_frames += 1;
            return Some(Next::Control(Frame::Heartbeat(Heartbeat {
                sender_id: self.config.sender_id,
                sequence: self.heartbeat_seq,
                sent_at_unix_ms: self.unix_ms(now),
                ledger: self.ledger.iter().copied().collect(),
            })));
        }
        if self
            .pending_ends
            .front()
            .is_some_and(|e| e.after_frames == 0)
        {
            return self.pop_end();
        }
        if let Some((header, slot)) = self.next_data() {
            for e in &mut self.pending_ends {
                e.after_frames = e.after_frames.saturating_sub(1);
            }
            self.stats.data_frames += 1;
            self.stats.data_frames_this_pass += 1;
            return Some(Next::Data { header, slot });
        }
        // Nothing else to send: the remaining end copies go now.
        self.pop_end()
    }

    fn pop_end(&mut self) -> Option<Next> {
        let e = self.pending_ends.pop_front()?;
        self.stats.end_frames += 1;
        Some(Next::Control(Frame::ObjectEnd(e.frame)))
    }

    /// The header of the next data frame and the window slot of its encoder.
    fn next_data(&mut self) -> Option<(DataHeader, usize)> {
        let config = &self.config;
        let cur = self.current.as_mut()?;
        if cur.slots.is_empty() {
            // A zero-length object: its pass is just the end frames.
            self.finish_pass();
            return None;
        }
        if cur.slots.iter().any(Option::is_none) {
            return None;
        }
        if let Some((round, slot)) = Self::next_position(config, cur) {
            if !Self::symbol_ready(config, cur, round, slot) {
                // Its repair solve is still running: wait for handle_encoded.
                return None;
            }
            let esi = Self::esi(config, cur, round, slot);
            cur.round = round;
            cur.slot = slot + 1;
            if cur.slot >= cur.slots.len() {
                cur.slot = 0;
                cur.round += 1;
            }
            cur.frames_this_pass += 1;
            let header = DataHeader {
                params: cur.params,
                block: u32::try_from(cur.window_start + slot as u64).ok()?,
                esi,
            };
            return Some((header, slot));
        }
        let nslots = cur.slots.len();
        // Window done: next window, next pass, or next object.
        let next_start = cur.window_start + nslots as u64;
        if next_start < cur.params.block_count() {
            Self::open_window(config, cur, next_start);
            return None;
        }
        self.finish_pass();
        None
    }

    fn finish_pass(&mut self) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let end = ObjectEnd {
            params: cur.params,
            pass: cur.pass,
            passes: self.config.passes,
            frames_sent_this_pass: cur.frames_this_pass,
        };
        for i in 0..END_FRAME_COPIES {
            self.pending_ends.push_back(PendingEnd {
                frame: end,
                after_frames: i * END_FRAME_SPACING,
            });
        }
        self.stats.passes_completed += 1;
        if cur.pass < self.config.passes {
            cur.pass += 1;
            cur.frames_this_pass = 0;
            self.stats.data_frames_this_pass = 0;
            let id = cur.object_id;
            let pass = cur.pass;
            Self::open_window(&self.config, cur, 0);
            if let Some(e) = self.ledger.iter_mut().rev().find(|e| e.object_id == id) {
                e.pass = pass;
            }
        } else {
            self.current = None;
            self.stats.objects_completed += 1;
        }
    }
}
