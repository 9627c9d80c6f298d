//! The receiver state machine: authenticated frames in, block writes and outcomes out.
//!
//! See [`Receiver`] for how to drive it and [`ReceiverConfig`] for every bound it keeps.
//!
//! Layout: this file holds the public types, [`Receiver`] itself, its accessors and the frame
//! dispatch; `session` owns the session table (admission, completion, end frames, timeouts,
//! staging failures) and `blocks` owns block memory (symbol buffers, the byte budget and its
//! LRU eviction, copies and decodes, and the lost-frame count). Both add methods to
//! [`Receiver`] and use this file's types; `session` imports `blocks` (its buffer type) and
//! `blocks` imports nothing of `session`.

mod blocks;
mod session;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::fec::{DecodeJob, NeedMore};
use super::params::{Limits, ObjectParams};
use super::progress::Progress;
use super::wire::{self, Frame, FrameError, Heartbeat, LedgerEntry, LinkKey};
use crate::bundle::auth::{DEFAULT_MAX_HEADER_BYTES, max_input_bytes};
use session::{CompletedObject, Session};

/// Bytes charged per stored symbol on top of the arena growth it causes: its ESI slot, a dedup
/// entry (a repair ESI's hash-set slot, amortised over the set's doubling) and the LRU entry.
pub const SYMBOL_OVERHEAD: u64 = 24;
/// Bytes charged per block buffer for its bookkeeping (the `BlockBuf`, its map and LRU slots).
pub const BLOCK_OVERHEAD: u64 = 256;
/// The most bytes of an object's start that are offered for authentication
/// ([`Effect::Authenticate`]): prefix + header + signature under the default header bound of
/// [`crate::bundle::auth`] (1 MiB + 86 bytes).
pub fn default_auth_prefix_bytes() -> u64 {
    max_input_bytes(DEFAULT_MAX_HEADER_BYTES) as u64
}
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
    /// Unauthenticated sessions (see [`Receiver`], "Authenticate first") at once. Default 2;
    /// each may hold [`ReceiverConfig::unauthenticated_session_bytes`]. A new one beyond this
    /// replaces the unauthenticated session with the fewest symbols stored in the last one to
    /// two seconds (the youngest among equals), so a flood of forged
    /// one-frame objects replaces itself, and forged sessions kept alive by a drip lose their
    /// slots, never a real object that is receiving its first block.
    pub max_unauthenticated_sessions: usize,
    /// An unauthenticated session with no valid frame for this long is forgotten
    /// ([`Effect::Forgotten`]). Default 10 s: a real sender sends its object's first block first,
    /// so the session authenticates after about one block.
    pub unauthenticated_idle_timeout: Duration,
    /// Most bytes of an object's start held and offered for authentication. Default
    /// [`default_auth_prefix_bytes`] (1 MiB + 86).
    pub max_auth_prefix_bytes: u64,
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
            max_unauthenticated_sessions: 2,
            unauthenticated_idle_timeout: Duration::from_secs(10),
            max_auth_prefix_bytes: default_auth_prefix_bytes(),
        }
    }

    /// Bytes all unauthenticated sessions together may hold (symbols, decodes in flight and
    /// completed blocks): half of `max_buffered_bytes` (24 MiB of the default 48). Authenticated
    /// sessions always keep the other half.
    pub fn unauthenticated_pool_bytes(&self) -> u64 {
        self.max_buffered_bytes / 2
    }

    /// Bytes one unauthenticated session may hold: the pool split between
    /// `max_unauthenticated_sessions` (12 MiB each with the defaults). A first block that needs
    /// decoding is charged twice while it decodes (its symbols stay in the assembler, the decode
    /// job works on a copy): 2 × 4.2 MB at jumbo T, which a quarter of the default budget (6 MiB)
    /// could not hold, so a jumbo transfer with any loss in its first block never authenticated
    /// (`sluice-bench --quick`, case `mtu9000-loss5`). The rest holds the blocks that follow
    /// while it decodes and authenticates.
    pub fn unauthenticated_session_bytes(&self) -> u64 {
        self.unauthenticated_pool_bytes() / self.max_unauthenticated_sessions.max(1) as u64
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
    /// The contiguous start of an unauthenticated object grew: check the bundle prefix, header
    /// and signature in `prefix` (at most `max_auth_prefix_bytes`) and answer with
    /// [`Receiver::authenticate`] or [`Receiver::refuse`]; to wait for more, do nothing (it is
    /// offered again when more arrives). `complete` means no more will come (the object or the
    /// bound ends here), so a check that still needs more is a refusal. Until then the object has
    /// no staging file and nothing of it is persisted.
    Authenticate {
        /// The object.
        object_id: [u8; 16],
        /// Its first bytes.
        prefix: Vec<u8>,
        /// No more bytes will be offered.
        complete: bool,
    },
    /// An unauthenticated session was dropped (idle, replaced by a newer one, or its final pass
    /// ended before it authenticated). Nothing was staged; forget any figures kept for it.
    Forgotten {
        /// The object.
        object_id: [u8; 16],
    },
    /// A new authenticated object: create or reserve its staging file of `params.object_len`
    /// bytes.
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

/// A block decode to run off the receive path. Pure and `Send`; holds the block's symbols, taken
/// from its assembler, not copied (charged to the budget until [`Receiver::handle_decoded`],
/// which gives them back if the decode needs more).
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

/// What [`Receiver::handle_datagram`] did with one datagram, for drivers that keep per-object
/// figures: they learn which object a stored symbol belongs to without parsing frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A data frame's symbol was stored for `object_id` (counted in
    /// [`ReceiverStats::symbols_accepted`]).
    Stored {
        /// The object.
        object_id: [u8; 16],
        /// The object's data frames inferred lost so far in this session: ids the sender skipped
        /// from the receiver's point of view, counted per block until the block completes (a
        /// frame sent after its block was already complete is never needed and not counted).
        /// A reordered straggler is taken back off when it arrives. Exact on a link that loses
        /// but does not reorder, as long as no block buffer is evicted; never counts a frame
        /// that was stored.
        lost_frames: u64,
    },
    /// Anything else: a heartbeat, an end frame, or a frame dropped and counted in
    /// [`ReceiverStats`].
    Other,
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
    /// Sessions that authenticated ([`Receiver::authenticate`]).
    pub sessions_authenticated: u64,
    /// Unauthenticated sessions refused by the driver ([`Receiver::refuse`]).
    pub sessions_unauthenticated_refused: u64,
    /// Unauthenticated sessions forgotten: idle, replaced, or ended before authenticating.
    pub sessions_unauthenticated_expired: u64,
    /// Object-end frames for an object with no session: they open none (an end frame alone
    /// must not reserve anything).
    pub end_frames_without_session: u64,
}

/// The receiver. Sans-IO: it reads no clock, file or socket, and never panics on input.
///
/// # Driving order
///
/// 1. For each datagram (UDP or spool record): [`handle_datagram`](Self::handle_datagram)`(now,
///    bytes)`. It never fails: anything bad is counted in [`stats`](Self::stats) and dropped.
///    Its [`Handled`] says which object a stored symbol belongs to, with the object's running
///    count of frames inferred lost.
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
///
/// # Authenticate first
///
/// Anyone holding the link key (the public default key: anyone on the low network) can make
/// frames, so a new session is *unauthenticated* until the driver says otherwise. Such a session
/// gets no staging file and no staging quota, is never checkpointed (so nothing of it survives a
/// restart), holds its completed blocks in memory instead of writing them, lives within a small
/// fixed share of the memory budget ([`ReceiverConfig::unauthenticated_pool_bytes`], and
/// [`ReceiverConfig::unauthenticated_session_bytes`] each), never evicts an authenticated
/// session's blocks, and is forgotten after [`ReceiverConfig::unauthenticated_idle_timeout`].
/// Each time its contiguous start grows it is offered to the driver as
/// [`Effect::Authenticate`]; the driver checks the bundle signature over those bytes and calls
/// [`Receiver::authenticate`] (the session becomes a normal one: `Open`, its held blocks as
/// `Write`s) or [`Receiver::refuse`]. The start is first block 0's leading source symbols (as
/// they double), then its completed blocks. A real sender sends each object's first block
/// first, source symbols in order (`transport/send/`), so a real bundle whose header fits
/// in its first frames authenticates at its first frame, and otherwise after about one block.
///
/// Block memory is charged per stored symbol (the arena growth it causes plus
/// [`SYMBOL_OVERHEAD`]), not at a block's worst case up front. When the budget is full, a symbol
/// may evict only a block holding no more symbols than its own block (so a new or unfed block
/// never evicts a block that is making progress), and an unauthenticated one only blocks of other
/// unauthenticated sessions.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    sessions: HashMap<[u8; 16], Session>,
    completed: HashMap<[u8; 16], CompletedObject>,
    completed_order: VecDeque<[u8; 16]>,
    /// Least-recently-fed index of blocks with buffered symbols and no decode in flight.
    lru: BTreeMap<u64, ([u8; 16], u64)>,
    tick: u64,
    /// Bytes held by in-flight decode tasks, by (object, block), and whether they were charged
    /// to the unauthenticated share.
    in_flight: HashMap<([u8; 16], u64), (u64, bool)>,
    buffered: u64,
    /// Bytes held by unauthenticated sessions (part of `buffered`).
    unauth_buffered: u64,
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
            unauth_buffered: 0,
            staging: 0,
            staging_failed: HashMap::new(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
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

    /// Bytes currently held by unauthenticated sessions. Never above
    /// [`ReceiverConfig::unauthenticated_pool_bytes`].
    pub fn unauthenticated_bytes(&self) -> u64 {
        self.unauth_buffered
    }

    /// Live unauthenticated sessions.
    pub fn unauthenticated_sessions(&self) -> usize {
        self.sessions.values().filter(|s| !s.authenticated).count()
    }

    /// The persistable progress of a live authenticated object (`None` for an unauthenticated
    /// one: nothing of it may survive a restart).
    pub fn progress(&self, object_id: &[u8; 16]) -> Option<Progress> {
        self.sessions
            .get(object_id)
            .filter(|s| s.authenticated)
            .map(|s| s.progress.clone())
    }

    /// The parameters a live session pinned from its first frame, authenticated or not (so
    /// unverified: for display and simulation, never for a decision).
    pub fn session_params(&self, object_id: &[u8; 16]) -> Option<ObjectParams> {
        self.sessions.get(object_id).map(|s| s.progress.params)
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
                let idle = if s.authenticated {
                    self.config.idle_timeout
                } else {
                    self.config.unauthenticated_idle_timeout
                };
                [
                    Some(s.last_activity + idle),
                    Some(s.opened_at + self.config.object_deadline),
                    s.incomplete_at,
                ]
            })
            .flatten()
            .min()
    }

    /// Handle one datagram. Never fails, never panics; see [`ReceiverStats`] for what is
    /// dropped and why, and [`Handled`] for what it reports back.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Handled {
        self.stats.datagrams += 1;
        let frame = match wire::decode(&self.config.link_key, datagram) {
            Ok(f) => f,
            Err(e) => {
                self.count_wire_error(&e);
                return Handled::Other;
            }
        };
        match frame {
            Frame::Data(d) => self.handle_data(now, d),
            Frame::Heartbeat(h) => {
                self.handle_heartbeat(h);
                Handled::Other
            }
            Frame::ObjectEnd(e) => {
                self.handle_end(now, e);
                Handled::Other
            }
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
}
