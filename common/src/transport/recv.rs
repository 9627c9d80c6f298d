//! The receiver state machine: authenticated frames in, block writes and outcomes out.
//!
//! See [`Receiver`] for how to drive it and [`ReceiverConfig`] for every bound it keeps.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::fec::{AddOutcome, Assembled, BlockAssembler, DecodeJob, NeedMore};
use super::params::{ESI_LIMIT, Limits, ObjectParams};
use super::progress::Progress;
use super::wire::{self, DataFrame, Frame, FrameError, Heartbeat, LedgerEntry, LinkKey, ObjectEnd};

/// Bytes charged per symbol slot on top of its payload (ESI, source slot, dedup entry).
pub const SYMBOL_OVERHEAD: u64 = 24;
/// Object ids remembered after completion, so late frames and later passes of a finished object
/// are dropped instead of re-opening it. 1024 × ~40 bytes.
pub const COMPLETED_MEMORY: usize = 1024;

/// Data frames for a completed object, after its final pass's end frame, that mean someone is
/// sending it again (a resend or a replay) rather than reordering stragglers of the same send:
/// four times the widest reorder window tested (256 frames; a real diode reorders nothing).
/// Smaller resends are caught by their own final end frame ([`REPLAY_END_GAP`]).
pub const REPLAY_FRAMES: u32 = 1024;

/// A final-pass end frame for a completed object this long after the previous one, with data
/// frames in between, is another send of it. The sender writes its end-frame copies back to back,
/// so copies of one send arrive well within this.
pub const REPLAY_END_GAP: Duration = Duration::from_millis(100);
/// Operator events kept when the driver does not poll them; older ones are dropped (counted).
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Receiver configuration. Every limit states its default and the worst-case memory it allows.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Key of the per-frame integrity tag.
    pub link_key: LinkKey,
    /// Geometry limits, checked on every frame before anything is allocated.
    pub limits: Limits,
    /// Live objects at once. Default 64. Each costs a progress bitmap of at most
    /// `limits.max_blocks / 8` bytes (128 KiB by default) plus a few hundred bytes: ≤ 8.2 MiB.
    pub max_sessions: usize,
    /// Budget for buffered symbols + in-flight decode jobs + queued `Write` data. Default
    /// 48 MiB, enough for a 16-block window of 1 MiB blocks from two senders at once. Hard cap:
    /// [`Receiver::buffered_bytes`] never exceeds it.
    pub max_buffered_bytes: u64,
    /// Sum of the declared lengths of live objects (staging disk the driver may need). Default
    /// 64 GiB. A new object that would exceed it is refused before anything is allocated.
    pub max_staging_bytes: u64,
    /// An object that received no valid frame for this long is abandoned. Default 120 s.
    pub idle_timeout: Duration,
    /// An object still incomplete this long after it was opened is abandoned (slow-drip
    /// defence). Default 24 h.
    pub object_deadline: Duration,
    /// After the end frame of the final pass, wait this long for reordered stragglers before
    /// declaring the object `Incomplete`. Default 2 s.
    pub end_grace: Duration,
    /// Emit [`Effect::Checkpoint`] every this many written blocks of an object. Default 64.
    pub checkpoint_every_blocks: u32,
    /// After [`Receiver::handle_staging_failed`], frames of that object are dropped for this
    /// long; the next frame after it opens a new session (and a new staging attempt). Default 5 s.
    pub staging_retry: Duration,
}

impl ReceiverConfig {
    /// Defaults (see each field) with the given key.
    pub fn new(link_key: LinkKey) -> Self {
        Self {
            link_key,
            limits: Limits::default(),
            max_sessions: 64,
            max_buffered_bytes: 48 << 20,
            max_staging_bytes: 64 << 30,
            idle_timeout: Duration::from_secs(120),
            object_deadline: Duration::from_secs(24 * 3600),
            end_grace: Duration::from_secs(2),
            checkpoint_every_blocks: 64,
            staging_retry: Duration::from_secs(5),
        }
    }
}

/// Why an object was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AbandonReason {
    /// No valid frame for `idle_timeout`.
    IdleTimeout,
    /// Still incomplete `object_deadline` after it was opened.
    Deadline,
}

/// Something the driver must do. Poll with [`Receiver::poll_effect`] after every `handle_*`
/// call; `Write` data counts against the memory budget until it is polled.
#[derive(Debug)]
pub enum Effect {
    /// A new object: create or reserve its staging file of `params.object_len` bytes.
    Open {
        /// The object.
        params: ObjectParams,
    },
    /// Write `data` at `offset` of the object's staging file: block `block` is complete and
    /// exact (authenticated symbols only, decoded or copied).
    Write {
        /// The object.
        object_id: [u8; 16],
        /// Block index.
        block: u64,
        /// Byte offset in the object.
        offset: u64,
        /// The block's bytes.
        data: Vec<u8>,
    },
    /// Run [`DecodeTask::run`] (inline or on a worker) and give the result to
    /// [`Receiver::handle_decoded`].
    Decode(DecodeTask),
    /// A good moment to persist [`Receiver::progress`] for this object.
    Checkpoint {
        /// The object.
        object_id: [u8; 16],
    },
    /// Every block of the object was handed out as a `Write` (zero-length objects: none). The
    /// session is gone; late frames for it are dropped.
    Complete {
        /// The object.
        object_id: [u8; 16],
        /// Its length.
        len: u64,
    },
    /// The final pass ended (plus `end_grace`) with blocks still missing: not enough symbols
    /// arrived. Buffered symbols are released, the progress stays (persist it): a later pass or
    /// resend completes only the missing blocks. Nothing partial is ever reported complete.
    /// The session keeps its slot and staging quota until `idle_timeout`, then `Abandoned`.
    Incomplete {
        /// The object.
        object_id: [u8; 16],
        /// Blocks not yet written.
        missing_blocks: u64,
    },
    /// An object completed earlier is being sent again (a nightly resend or a replayed capture):
    /// its frames are dropped as late, and this is reported once per resend so the driver can
    /// record a duplicate. Best effort: a resend whose final end frames are all lost, or a tiny
    /// resend that completes within [`REPLAY_END_GAP`], may go unreported.
    Replayed {
        /// The object.
        object_id: [u8; 16],
    },
    /// The session was dropped (its progress with it; persist on `Checkpoint`/`Incomplete` if
    /// you want to resume).
    Abandoned {
        /// The object.
        object_id: [u8; 16],
        /// Why.
        reason: AbandonReason,
        /// Blocks not yet written.
        missing_blocks: u64,
    },
}

/// Things an operator wants to see; no action needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An authenticated heartbeat.
    Heartbeat {
        /// Sender identity.
        sender_id: [u8; 16],
        /// Heartbeat sequence number.
        sequence: u64,
        /// Sender's wall clock.
        sent_at_unix_ms: u64,
        /// Recently sent objects.
        ledger: Vec<LedgerEntry>,
    },
    /// The end frame of a pass arrived (first copy only).
    PassEnded {
        /// The object.
        object_id: [u8; 16],
        /// Which pass.
        pass: u16,
        /// Of how many.
        passes: u16,
        /// Blocks still missing at that moment (stragglers may still complete some).
        missing_blocks: u64,
    },
}

/// A block decode to run off the receive path. Pure and `Send`; holds a copy of the block's
/// symbols (charged to the budget until [`Receiver::handle_decoded`]).
#[derive(Debug)]
pub struct DecodeTask {
    object_id: [u8; 16],
    block: u64,
    job: DecodeJob,
}

impl DecodeTask {
    /// The object.
    pub fn object_id(&self) -> [u8; 16] {
        self.object_id
    }

    /// The block.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Decode (RaptorQ); give the result to [`Receiver::handle_decoded`].
    pub fn run(self) -> Decoded {
        Decoded {
            object_id: self.object_id,
            block: self.block,
            result: self.job.run(),
        }
    }
}

/// The result of a [`DecodeTask`].
#[derive(Debug)]
pub struct Decoded {
    object_id: [u8; 16],
    block: u64,
    result: Result<Vec<u8>, NeedMore>,
}

/// Why [`Receiver::restore`] refused a progress record.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// The object is already live in this receiver.
    #[error("object already has a live session")]
    AlreadyOpen,
    /// The parameters exceed this receiver's limits.
    #[error("progress parameters exceed limits")]
    OverLimit,
    /// The session table or the staging quota is full.
    #[error("session table or staging quota full")]
    Refused,
}

/// Counters (monotonic). Every dropped datagram lands in exactly one `dropped_*`/`late`/`dup`
/// counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams: u64,
    /// Too short, inconsistent lengths, bad encoding.
    pub malformed: u64,
    /// Integrity tag did not verify (wrong key, corruption, forgery).
    pub bad_tag: u64,
    /// Unknown version or frame kind.
    pub unknown_kind: u64,
    /// Parameters outside `Limits`, block or ESI out of range.
    pub over_limit: u64,
    /// Parameters differ from the ones pinned for the object.
    pub param_mismatch: u64,
    /// Symbol already buffered.
    pub duplicate_symbols: u64,
    /// Symbol for a block already written or an object already complete.
    pub late_symbols: u64,
    /// Symbol beyond `K + repair_surplus` for its block.
    pub over_cap_symbols: u64,
    /// Symbol dropped because the budget was full and nothing could be evicted.
    pub budget_drops: u64,
    /// New object refused (session table full or staging quota).
    pub sessions_refused: u64,
    /// Symbols buffered.
    pub symbols_accepted: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Object-end frames received (authenticated, within limits).
    pub end_frames: u64,
    /// Sessions opened (including restored).
    pub sessions_opened: u64,
    /// Objects completed.
    pub objects_completed: u64,
    /// Resends of completed objects detected ([`Effect::Replayed`]).
    pub replays: u64,
    /// `Incomplete` outcomes.
    pub objects_incomplete: u64,
    /// Sessions abandoned.
    pub objects_abandoned: u64,
    /// Blocks written by straight copy of all source symbols.
    pub blocks_copied: u64,
    /// Blocks written after a RaptorQ decode.
    pub blocks_decoded: u64,
    /// Decode attempts that needed more symbols.
    pub decode_retries: u64,
    /// Incomplete blocks whose symbols were evicted to make room.
    pub blocks_evicted: u64,
    /// Operator events dropped because the queue was full.
    pub events_dropped: u64,
    /// Frames dropped because their object's staging failed and its retry is not due yet.
    pub staging_refused: u64,
}

struct Symbol<'a> {
    block: u64,
    esi: u32,
    payload: &'a [u8],
}

#[derive(Debug)]
struct BlockBuf {
    asm: BlockAssembler,
    /// Bytes reserved for `asm`: its worst case, charged when the block is first seen.
    reserved: u64,
    /// LRU key in `Receiver::lru` (None while a decode is in flight).
    tick: Option<u64>,
    in_flight: bool,
}

#[derive(Debug)]
struct Session {
    progress: Progress,
    blocks: HashMap<u64, BlockBuf>,
    opened_at: Instant,
    last_activity: Instant,
    /// (pass, passes) of the last end frame seen.
    last_end: Option<(u16, u16)>,
    /// After the final pass's end: when to declare it incomplete.
    incomplete_at: Option<Instant>,
    writes_since_checkpoint: u32,
}

impl Session {
    fn missing(&self) -> u64 {
        self.progress
            .block_count()
            .saturating_sub(self.progress.done_count())
    }
}

/// What the receiver remembers of a completed object, to tell late stragglers from a resend.
#[derive(Debug, Clone, Copy, Default)]
struct CompletedObject {
    /// When the last final-pass end frame for it arrived.
    final_end_at: Option<Instant>,
    /// Data frames for it since then.
    frames_after_final_end: u32,
    /// Whether the resend in progress was already reported.
    replay_reported: bool,
}

/// The receiver. Sans-IO: it reads no clock, file or socket, and never panics on input.
///
/// # Driving order
///
/// 1. For each datagram (UDP or spool record): [`handle_datagram`](Self::handle_datagram)`(now,
///    bytes)`. It never fails: anything bad is counted in [`stats`](Self::stats) and dropped.
/// 2. Drain [`poll_effect`](Self::poll_effect) and perform each [`Effect`] in order: `Open`
///    (create the staging file), `Write` (write at offset), `Decode` (run the task, now or on a
///    worker, then [`handle_decoded`](Self::handle_decoded)), `Checkpoint` (persist
///    [`progress`](Self::progress)), `Complete` / `Incomplete` / `Abandoned` (outcomes).
///    Drain effects promptly: queued `Write` data counts against the memory budget.
/// 3. Drain [`poll_event`](Self::poll_event) for operator events (heartbeats, pass ends).
/// 4. When [`poll_timeout`](Self::poll_timeout) passes, call
///    [`handle_timeout`](Self::handle_timeout)`(now)` and drain effects again.
///
/// After a restart, feed stored progress to [`restore`](Self::restore) before any datagram.
/// `now` must be monotonic.
///
/// # Pipeline and bounds
///
/// datagram → frame decode + tag ([`wire::decode`]) → [`Limits`] + block/ESI range → session
/// table (pinned params, `max_sessions`, staging quota; refused *before* allocating) → block
/// buffer (allocated on a block's first symbol; ESI dedup; at most `K + repair_surplus`
/// symbols) → straight copy when all K source symbols are present, else a decode job once K
/// symbols are present. When a symbol would exceed `max_buffered_bytes`, the least recently fed
/// incomplete block is evicted (a later pass refills it); if nothing can be evicted the symbol
/// is dropped.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    sessions: HashMap<[u8; 16], Session>,
    completed: HashMap<[u8; 16], CompletedObject>,
    completed_order: VecDeque<[u8; 16]>,
    /// Least-recently-fed index of blocks with buffered symbols and no decode in flight.
    lru: BTreeMap<u64, ([u8; 16], u64)>,
    tick: u64,
    /// Bytes held by in-flight decode tasks, by (object, block).
    in_flight: HashMap<([u8; 16], u64), u64>,
    buffered: u64,
    staging: u64,
    /// Objects whose staging failed, and when a new session may try again. At most
    /// `max_sessions` entries (one per session that could have failed).
    staging_failed: HashMap<[u8; 16], Instant>,
    effects: VecDeque<Effect>,
    events: VecDeque<Event>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver with no sessions.
    pub fn new(config: ReceiverConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            completed: HashMap::new(),
            completed_order: VecDeque::new(),
            lru: BTreeMap::new(),
            tick: 0,
            in_flight: HashMap::new(),
            buffered: 0,
            staging: 0,
            staging_failed: HashMap::new(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

    /// Symbols stored so far ([`ReceiverStats::symbols_accepted`] without copying every
    /// counter: drivers read it once per datagram).
    pub fn symbols_accepted(&self) -> u64 {
        self.stats.symbols_accepted
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Bytes currently held for symbols, in-flight decodes and unpolled writes. Never above
    /// `max_buffered_bytes`.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sum of the declared lengths of live objects.
    pub fn staging_bytes(&self) -> u64 {
        self.staging
    }

    /// The persistable progress of a live object.
    pub fn progress(&self, object_id: &[u8; 16]) -> Option<Progress> {
        self.sessions.get(object_id).map(|s| s.progress.clone())
    }

    /// The next effect to perform.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        let e = self.effects.pop_front()?;
        if let Effect::Write { data, .. } = &e {
            self.release(data.len() as u64);
        }
        Some(e)
    }

    /// The next operator event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline (idle, absolute, end grace) of any session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|s| {
                [
                    Some(s.last_activity + self.config.idle_timeout),
                    Some(s.opened_at + self.config.object_deadline),
                    s.incomplete_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Re-open an object from stored progress (after a restart), so only missing blocks are
    /// written. Emits no `Open` (the staging file exists); emits `Complete` at once if nothing
    /// is missing.
    pub fn restore(&mut self, now: Instant, progress: Progress) -> Result<(), RestoreError> {
        let params = progress.params;
        if self.config.limits.check(&params).is_err() {
            return Err(RestoreError::OverLimit);
        }
        if self.sessions.contains_key(&params.object_id) {
            return Err(RestoreError::AlreadyOpen);
        }
        if !self.admit(&params) {
            return Err(RestoreError::Refused);
        }
        self.completed.remove(&params.object_id);
        self.insert_session(now, progress);
        self.maybe_complete(&params.object_id);
        Ok(())
    }

    /// Handle one datagram. Never fails, never panics; see [`ReceiverStats`] for what is
    /// dropped and why.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.datagrams += 1;
        let frame = match wire::decode(&self.config.link_key, datagram) {
            Ok(f) => f,
            Err(e) => {
                self.count_wire_error(&e);
                return;
            }
        };
        match frame {
            Frame::Data(d) => self.handle_data(now, d),
            Frame::Heartbeat(h) => self.handle_heartbeat(h),
            Frame::ObjectEnd(e) => self.handle_end(now, e),
        }
    }

    fn count_wire_error(&mut self, e: &FrameError) {
        match e {
            FrameError::BadTag => self.stats.bad_tag += 1,
            FrameError::UnknownVersion(_) | FrameError::UnknownKind(_) => {
                self.stats.unknown_kind += 1
            }
            FrameError::EsiOutOfRange(_) | FrameError::BadGeometry | FrameError::BadPass => {
                self.stats.over_limit += 1
            }
            FrameError::TooShort
            | FrameError::BadMagic
            | FrameError::BadLength
            | FrameError::TooManyLedgerEntries
            | FrameError::BufferTooSmall => self.stats.malformed += 1,
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    fn handle_heartbeat(&mut self, h: Heartbeat) {
        self.stats.heartbeats += 1;
        self.push_event(Event::Heartbeat {
            sender_id: h.sender_id,
            sequence: h.sequence,
            sent_at_unix_ms: h.sent_at_unix_ms,
            ledger: h.ledger,
        });
    }

    /// Whether a new object fits the session table and the staging quota.
    fn admit(&mut self, params: &ObjectParams) -> bool {
        let fits = self.sessions.len() < self.config.max_sessions
            && self
                .staging
                .checked_add(params.object_len)
                .is_some_and(|s| s <= self.config.max_staging_bytes);
        if !fits {
            self.stats.sessions_refused += 1;
        }
        fits
    }

    fn insert_session(&mut self, now: Instant, progress: Progress) {
        self.staging += progress.params.object_len;
        self.stats.sessions_opened += 1;
        self.sessions.insert(
            progress.params.object_id,
            Session {
                progress,
                blocks: HashMap::new(),
                opened_at: now,
                last_activity: now,
                last_end: None,
                incomplete_at: None,
                writes_since_checkpoint: 0,
            },
        );
    }

    /// Find the live session for `params` (checking the pinned params) or open one. `None`
    /// means the frame was counted and must be dropped.
    fn session_for(&mut self, now: Instant, params: &ObjectParams) -> Option<()> {
        if let Some(done) = self.completed.get_mut(&params.object_id) {
            self.stats.late_symbols += 1;
            if done.final_end_at.is_some() {
                done.frames_after_final_end = done.frames_after_final_end.saturating_add(1);
                if done.frames_after_final_end >= REPLAY_FRAMES && !done.replay_reported {
                    done.replay_reported = true;
                    self.stats.replays += 1;
                    self.effects.push_back(Effect::Replayed {
                        object_id: params.object_id,
                    });
                }
            }
            return None;
        }
        if let Some(s) = self.sessions.get_mut(&params.object_id) {
            if s.progress.params != *params {
                self.stats.param_mismatch += 1;
                return None;
            }
            s.last_activity = now;
            return Some(());
        }
        if let Some(retry_at) = self.staging_failed.get(&params.object_id) {
            if now < *retry_at {
                self.stats.staging_refused += 1;
                return None;
            }
            self.staging_failed.remove(&params.object_id);
        }
        if !self.admit(params) {
            return None;
        }
        self.insert_session(now, Progress::new(*params));
        self.effects.push_back(Effect::Open { params: *params });
        Some(())
    }

    /// Worst-case bytes of one block's assembler: `K + repair_surplus` symbols of T bytes
    /// plus their bookkeeping. Charged up front so the budget can never be overrun by growth.
    fn block_reserve(&self, params: &ObjectParams, block: u64) -> u64 {
        let k = params.source_symbols(block);
        let max = u64::from(self.config.limits.max_stored_symbols(k));
        max * (u64::from(params.symbol_size) + SYMBOL_OVERHEAD) + u64::from(k) * 4
    }

    fn handle_data(&mut self, now: Instant, frame: DataFrame<'_>) {
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
            return;
        }
        if self.session_for(now, &params).is_none() {
            return;
        }
        let id = params.object_id;
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        if s.progress.is_done(d.block) {
            self.stats.late_symbols += 1;
            return;
        }
        if !s.blocks.contains_key(&d.block) {
            // First symbol of this block: reserve its worst case before allocating anything.
            let reserve = self.block_reserve(&params, d.block);
            if !self.make_room(reserve, (id, d.block)) {
                self.stats.budget_drops += 1;
                return;
            }
            let Ok(block32) = u32::try_from(d.block) else {
                self.stats.over_limit += 1;
                return;
            };
            let Ok(asm) = BlockAssembler::new(&params, block32, &self.config.limits) else {
                self.stats.over_limit += 1;
                return;
            };
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            s.blocks.insert(
                d.block,
                BlockBuf {
                    asm,
                    reserved: reserve,
                    tick: None,
                    in_flight: false,
                },
            );
            self.buffered += reserve;
        }
        self.tick += 1;
        let tick = self.tick;
        let Some(b) = self
            .sessions
            .get_mut(&id)
            .and_then(|s| s.blocks.get_mut(&d.block))
        else {
            return;
        };
        match b.asm.add(d.esi, d.payload) {
            Ok(AddOutcome::Stored) => self.stats.symbols_accepted += 1,
            Ok(AddOutcome::Duplicate) => {
                self.stats.duplicate_symbols += 1;
                return;
            }
            Ok(AddOutcome::Full) => {
                self.stats.over_cap_symbols += 1;
                return;
            }
            Ok(AddOutcome::Finished) => {
                self.stats.late_symbols += 1;
                return;
            }
            Err(_) => {
                self.stats.over_limit += 1;
                return;
            }
        }
        if !b.in_flight {
            if let Some(old) = b.tick.replace(tick) {
                self.lru.remove(&old);
            }
            self.lru.insert(tick, (id, d.block));
        }
        self.poll_block(&id, d.block);
    }

    /// Make room for `cost` more bytes, evicting least-recently-fed blocks other than
    /// `protect`. False if the budget cannot fit it.
    fn make_room(&mut self, cost: u64, protect: ([u8; 16], u64)) -> bool {
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

    fn release(&mut self, bytes: u64) {
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// Drop one block's buffer (not in the LRU any more, reservation released).
    fn drop_block(&mut self, id: &[u8; 16], block: u64) -> Option<BlockBuf> {
        let b = self.sessions.get_mut(id)?.blocks.remove(&block)?;
        if let Some(t) = b.tick {
            self.lru.remove(&t);
        }
        self.release(b.reserved);
        Some(b)
    }

    /// Copy the block out, or hand out a decode job, if its assembler has enough symbols.
    fn poll_block(&mut self, id: &[u8; 16], block: u64) {
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

    /// The driver could not stage object `object_id` (its [`Effect::Open`] or a later write
    /// failed: disk full, quota, I/O error). Drops the session, its buffers and every effect
    /// still queued for it (their budget released), and drops its frames for
    /// `config.staging_retry`; the first frame after that opens a fresh session, so a resend or
    /// a later pass retries staging once space is freed, with no restart. Progress saved
    /// earlier for the object is the driver's to keep or discard.
    pub fn handle_staging_failed(&mut self, now: Instant, object_id: [u8; 16]) {
        if self.remove_session(&object_id).is_some() {
            self.stats.objects_abandoned += 1;
        }
        // It may have completed in the state machine already (its Complete still queued): it
        // is not complete on disk, so resends must not be dropped as replays.
        if self.completed.remove(&object_id).is_some() {
            self.completed_order.retain(|id| *id != object_id);
            self.stats.objects_completed = self.stats.objects_completed.saturating_sub(1);
        }
        let mut kept = VecDeque::with_capacity(self.effects.len());
        for effect in std::mem::take(&mut self.effects) {
            match effect {
                Effect::Write {
                    object_id: id,
                    data,
                    ..
                } if id == object_id => self.release(data.len() as u64),
                Effect::Decode(task) if task.object_id == object_id => {
                    let cost = self.in_flight.remove(&(object_id, task.block)).unwrap_or(0);
                    self.release(cost);
                }
                Effect::Open { params } if params.object_id == object_id => {}
                Effect::Checkpoint { object_id: id }
                | Effect::Complete { object_id: id, .. }
                | Effect::Incomplete { object_id: id, .. }
                    if id == object_id => {}
                other => kept.push_back(other),
            }
        }
        self.effects = kept;
        if self.staging_failed.len() >= self.config.max_sessions.max(1)
            && !self.staging_failed.contains_key(&object_id)
        {
            // Forget the retry that is due first: it only shortens that object's pause.
            if let Some(first) = self
                .staging_failed
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(id, _)| *id)
            {
                self.staging_failed.remove(&first);
            }
        }
        self.staging_failed
            .insert(object_id, now + self.config.staging_retry);
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

    fn emit_write(&mut self, id: &[u8; 16], block: u64, data: Vec<u8>) {
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

    /// Complete the object if every block is done. True if it completed.
    fn maybe_complete(&mut self, id: &[u8; 16]) -> bool {
        if !self
            .sessions
            .get(id)
            .is_some_and(|s| s.progress.is_complete())
        {
            return false;
        }
        let Some(s) = self.remove_session(id) else {
            return false;
        };
        self.remember_completed(*id);
        self.stats.objects_completed += 1;
        self.effects.push_back(Effect::Complete {
            object_id: *id,
            len: s.progress.params.object_len,
        });
        true
    }

    fn remember_completed(&mut self, id: [u8; 16]) {
        if self
            .completed
            .insert(id, CompletedObject::default())
            .is_none()
        {
            self.completed_order.push_back(id);
        }
        while self.completed_order.len() > COMPLETED_MEMORY {
            if let Some(old) = self.completed_order.pop_front() {
                self.completed.remove(&old);
            }
        }
    }

    /// Drop a session and every buffer it holds (in-flight decodes are released when they
    /// come back).
    fn remove_session(&mut self, id: &[u8; 16]) -> Option<Session> {
        let mut s = self.sessions.remove(id)?;
        self.staging = self.staging.saturating_sub(s.progress.params.object_len);
        self.release_blocks(&mut s);
        Some(s)
    }

    fn release_blocks(&mut self, s: &mut Session) {
        for (_, b) in s.blocks.drain() {
            if let Some(t) = b.tick {
                self.lru.remove(&t);
            }
            self.buffered = self.buffered.saturating_sub(b.reserved);
        }
    }

    fn handle_end(&mut self, now: Instant, e: ObjectEnd) {
        let params = e.params;
        if self.config.limits.check(&params).is_err() {
            self.stats.over_limit += 1;
            return;
        }
        self.stats.end_frames += 1;
        if let Some(done) = self.completed.get_mut(&params.object_id) {
            if e.pass >= e.passes {
                let resent = done.frames_after_final_end > 0
                    && done
                        .final_end_at
                        .is_some_and(|t| now.saturating_duration_since(t) > REPLAY_END_GAP);
                if resent && !done.replay_reported {
                    self.stats.replays += 1;
                    self.effects.push_back(Effect::Replayed {
                        object_id: params.object_id,
                    });
                }
                *done = CompletedObject {
                    final_end_at: Some(now),
                    ..CompletedObject::default()
                };
            }
            return;
        }
        if self.session_for(now, &params).is_none() {
            return;
        }
        let id = params.object_id;
        // A zero-length object is complete on its (authenticated) end frame.
        if self.maybe_complete(&id) {
            return;
        }
        let grace = self.config.end_grace;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.last_end == Some((e.pass, e.passes)) {
            return;
        }
        s.last_end = Some((e.pass, e.passes));
        if e.pass >= e.passes {
            s.incomplete_at = Some(now + grace);
        }
        let missing = s.missing();
        self.push_event(Event::PassEnded {
            object_id: id,
            pass: e.pass,
            passes: e.passes,
            missing_blocks: missing,
        });
    }

    /// Expire sessions whose deadlines passed, and report objects whose final pass ended
    /// without enough symbols.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut incomplete = Vec::new();
        for (id, s) in &self.sessions {
            if now >= s.opened_at + self.config.object_deadline {
                expired.push((*id, AbandonReason::Deadline));
            } else if now >= s.last_activity + self.config.idle_timeout {
                expired.push((*id, AbandonReason::IdleTimeout));
            } else if s.incomplete_at.is_some_and(|t| now >= t) {
                incomplete.push(*id);
            }
        }
        expired.sort_unstable();
        incomplete.sort_unstable();
        for (id, reason) in expired {
            if let Some(s) = self.remove_session(&id) {
                self.stats.objects_abandoned += 1;
                self.effects.push_back(Effect::Abandoned {
                    object_id: id,
                    reason,
                    missing_blocks: s.missing(),
                });
            }
        }
        for id in incomplete {
            let Some(mut s) = self.sessions.remove(&id) else {
                continue;
            };
            s.incomplete_at = None;
            self.release_blocks(&mut s);
            let missing = s.missing();
            self.sessions.insert(id, s);
            self.stats.objects_incomplete += 1;
            self.effects.push_back(Effect::Checkpoint { object_id: id });
            self.effects.push_back(Effect::Incomplete {
                object_id: id,
                missing_blocks: missing,
            });
        }
    }
}
