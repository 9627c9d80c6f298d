//! The in-process simulated diode of the `sim_*` tests: senders → the seeded [`Impairer`] →
//! receiver, with a virtual clock and a fake staging store that applies `Write` effects. Owns
//! the simulation loop and the deterministic object content ([`content`], [`whole`]).
//!
//! Everything is deterministic for a given seed. Nothing here sleeps or touches the network.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::progress::Progress;
use sluice_common::transport::recv::{
    AbandonReason, DecodeTask, Effect, Handled, Receiver, ReceiverConfig,
};
use sluice_common::transport::send::{ReadRequest, Sender, SenderConfig};
use sluice_common::transport::wire::{LinkKey, MAX_FRAME_LEN};

use crate::impair::{ImpairConfig, Impairer};

/// The link key used by the "genuine" side of every test.
pub fn key() -> LinkKey {
    LinkKey::from_bytes([7; 32])
}

/// Deterministic object content: block-sized chunks generated from (seed, offset), so any
/// block can be produced again without storing the object.
pub fn content(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.fill_bytes(&mut out);
    out
}

/// A read function for [`crate::drive`] serving the object of content seed `seed`.
pub fn reads(seed: u64) -> impl FnMut(&ReadRequest) -> Vec<u8> {
    move |r| content(seed, r.offset, r.len)
}

/// The whole object, for small objects compared byte by byte. Blocks are generated at their
/// offsets, as the sender's reads would be.
pub fn whole(seed: u64, len: u64, block_size: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(u64::from(block_size)) as usize;
        out.extend_from_slice(&content(seed, off, n));
        off += n as u64;
    }
    out
}

/// Every frame of one pass of object [`oid`]`(seed)` (`len` bytes of [`content`]) as the
/// genuine side sends it at the fixed instant `now`: symbols of `symbol_size`, blocks of
/// `block_size`, two blocks interleaved at a time (so a block's symbols are not all adjacent).
/// The capture the receiver-level tests feed, drop from and replay.
pub fn one_pass_frames(
    now: Instant,
    seed: u64,
    len: u64,
    symbol_size: u16,
    block_size: u32,
) -> Vec<Vec<u8>> {
    let mut c = SenderConfig::new(key(), [9; 16], symbol_size, block_size);
    c.window_blocks = 2;
    let mut s = Sender::new(c, now, 1_800_000_000_000).expect("sender");
    s.queue_object(now, oid(seed), len, 1_800_000_000_000)
        .expect("queue");
    crate::drive::frames(&mut s, now, reads(seed))
}

/// A sender with id `[id; 16]` that sends each object `passes` times, in symbols of
/// `symbol_size` and blocks of `block_size`.
pub fn sender(id: u8, symbol_size: u16, block_size: u32, passes: u16) -> Sender {
    let mut c = SenderConfig::new(key(), [id; 16], symbol_size, block_size);
    c.passes = passes;
    Sender::new(c, Instant::now(), 1_800_000_000_000).expect("sender")
}

/// (block, esi) of a data frame under [`key`]; `None` for any other frame (heartbeat, end).
pub fn symbol_of(frame: &[u8]) -> Option<(u32, u32)> {
    match sluice_common::transport::wire::decode(&key(), frame).ok()? {
        sluice_common::transport::wire::Frame::Data(d) => Some((d.header.block, d.header.esi)),
        _ => None,
    }
}

/// Fake staging file: either the bytes in memory, or a streaming blake3 of the object in
/// offset order (blocks arriving out of order wait in a small map) for objects too big to hold.
pub enum Staging {
    Mem {
        data: Vec<u8>,
    },
    Hashed {
        hasher: Box<blake3::Hasher>,
        next: u64,
        pending: BTreeMap<u64, Vec<u8>>,
        max_pending: usize,
    },
}

impl Staging {
    fn write(&mut self, offset: u64, bytes: Vec<u8>) {
        match self {
            Staging::Mem { data } => {
                let o = offset as usize;
                data[o..o + bytes.len()].copy_from_slice(&bytes);
            }
            Staging::Hashed {
                hasher,
                next,
                pending,
                max_pending,
            } => {
                assert!(offset >= *next, "block at {offset} written twice");
                assert!(
                    pending.insert(offset, bytes).is_none(),
                    "block written twice"
                );
                while let Some(b) = pending.remove(next) {
                    hasher.update(&b);
                    *next += b.len() as u64;
                }
                *max_pending = (*max_pending).max(pending.len());
            }
        }
    }
}

/// How a receiver session ended, as seen by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Complete {
        len: u64,
    },
    Incomplete {
        missing_blocks: u64,
    },
    Abandoned {
        reason: AbandonReason,
        missing_blocks: u64,
    },
}

/// Per-object record of what the driver saw.
#[derive(Default)]
pub struct ObjectLog {
    pub staging: Option<Staging>,
    pub params: Option<ObjectParams>,
    pub opens: u32,
    pub writes: u64,
    pub blocks_written: HashSet<u64>,
    pub outcomes: Vec<Outcome>,
    pub checkpoints: u64,
}

/// One simulated sender and where its object bytes come from.
pub struct SimSender {
    pub sender: Sender,
    /// (object_id) → content seed.
    pub seeds: HashMap<[u8; 16], u64>,
    /// blake3 of everything read during pass 1 of each object (reads are in order).
    pub read_hash: HashMap<[u8; 16], blake3::Hasher>,
}

/// The whole simulation.
pub struct Sim {
    pub senders: Vec<SimSender>,
    pub receiver: Receiver,
    /// The link between the senders and the receiver; its `stats` say what it did.
    pub link: Impairer,
    pub now: Instant,
    /// Virtual time per frame offered.
    pub frame_time: Duration,
    /// Keep objects above this size as a hash instead of bytes.
    pub hash_above: u64,
    pub objects: HashMap<[u8; 16], ObjectLog>,
    /// Largest `buffered_bytes()` observed after any call.
    pub max_buffered: u64,
    pub max_sessions_seen: usize,
    /// Frames injected ahead of the genuine ones (delivered first).
    pub inject_first: Vec<Vec<u8>>,
    /// Authenticate every object at its first stored symbol (default): the simulation carries
    /// arbitrary bytes, not bundles, and tests the transport. `false` leaves objects
    /// unauthenticated until their start is offered (`Effect::Authenticate`), as a receiver
    /// that checks signatures sees them.
    pub trust_first_frame: bool,
    /// With `trust_first_frame` off: how many of an object's first bytes its "signed header"
    /// takes, i.e. how long an offered start must be to authenticate. `None` (the default): a
    /// whole first block (or the whole object), as if every header filled block 0, so only a
    /// completed block authenticates. `Some(n)` models a bundle whose header is `n` bytes, which
    /// the receiver can authenticate from block 0's leading source symbols.
    pub header_bytes: Option<u64>,
    /// Datagrams that arrive while one decode runs (0, the default: decodes finish inline).
    /// Models a receiver whose decode workers are slow or starved of CPU: a jumbo block takes
    /// tens of milliseconds to decode, and the link keeps delivering meanwhile.
    pub decode_lag_frames: u64,
    /// Decodes running under `decode_lag_frames`: (datagram count at which it finishes, task).
    decoding: VecDeque<(u64, DecodeTask)>,
    /// Datagrams delivered so far.
    delivered: u64,
}

impl Sim {
    /// A simulation whose link impairs as `link` says (`ImpairConfig::default()`: a clean link).
    pub fn new(receiver: Receiver, link: ImpairConfig) -> Self {
        Self {
            senders: Vec::new(),
            receiver,
            link: Impairer::new(link),
            now: Instant::now(),
            frame_time: Duration::from_micros(10),
            hash_above: 256 << 20,
            objects: HashMap::new(),
            max_buffered: 0,
            max_sessions_seen: 0,
            inject_first: Vec::new(),
            trust_first_frame: true,
            header_bytes: None,
            decode_lag_frames: 0,
            decoding: VecDeque::new(),
            delivered: 0,
        }
    }

    /// A simulation of a default receiver (under [`key`]) behind `link` impaired with `seed`.
    pub fn seeded(link: ImpairConfig, seed: u64) -> Self {
        Sim::new(
            Receiver::new(ReceiverConfig::new(key())),
            ImpairConfig { seed, ..link },
        )
    }

    pub fn add_sender(&mut self, sender: Sender) -> usize {
        self.senders.push(SimSender {
            sender,
            seeds: HashMap::new(),
            read_hash: HashMap::new(),
        });
        self.senders.len() - 1
    }

    pub fn queue(&mut self, sender: usize, object_id: [u8; 16], len: u64, seed: u64) {
        let s = &mut self.senders[sender];
        s.seeds.insert(object_id, seed);
        s.sender
            .queue_object(self.now, object_id, len, 1_800_000_000_000)
            .expect("queue");
    }

    /// Feed one datagram to the receiver and perform every effect.
    pub fn deliver(&mut self, datagram: &[u8]) {
        self.delivered += 1;
        self.finish_decodes(self.delivered);
        let handled = self.receiver.handle_datagram(self.now, datagram);
        if let (true, Handled::Stored { object_id, .. }) = (self.trust_first_frame, handled) {
            self.receiver.authenticate(self.now, object_id);
        }
        self.drain();
    }

    /// Perform all pending receiver effects (decodes inline).
    pub fn drain(&mut self) {
        self.observe();
        while let Some(e) = self.receiver.poll_effect() {
            match e {
                // The simulation carries arbitrary bytes, not bundles: it trusts every object
                // (the receiver's real authentication is tested in receiver/ and tests/).
                Effect::Authenticate {
                    object_id,
                    prefix,
                    complete,
                } => {
                    let first_block = self
                        .receiver
                        .session_params(&object_id)
                        .and_then(|p| p.block_len(0))
                        .map_or(0, u64::from);
                    let header = self.header_bytes.unwrap_or(first_block);
                    if complete || prefix.len() as u64 >= header {
                        self.receiver.authenticate(self.now, object_id);
                    }
                }
                Effect::Forgotten { .. } => {}
                Effect::Open { params } => {
                    let log = self.objects.entry(params.object_id).or_default();
                    log.opens += 1;
                    log.params = Some(params);
                    if log.staging.is_none() {
                        log.staging = Some(if params.object_len > self.hash_above {
                            Staging::Hashed {
                                hasher: Box::new(blake3::Hasher::new()),
                                next: 0,
                                pending: BTreeMap::new(),
                                max_pending: 0,
                            }
                        } else {
                            Staging::Mem {
                                data: vec![0; params.object_len as usize],
                            }
                        });
                    }
                }
                Effect::Write {
                    object_id,
                    block,
                    offset,
                    data,
                } => {
                    let log = self.objects.get_mut(&object_id).expect("write before open");
                    log.writes += 1;
                    assert!(
                        log.blocks_written.insert(block),
                        "block {block} written twice"
                    );
                    log.staging.as_mut().expect("staging").write(offset, data);
                }
                Effect::Decode(task) if self.decode_lag_frames == 0 => {
                    let done = task.run();
                    self.receiver.handle_decoded(self.now, done);
                }
                Effect::Decode(task) => {
                    // One decode worker: a task starts when the one before it finished.
                    let start = self.decoding.back().map_or(self.delivered, |(at, _)| *at);
                    self.decoding
                        .push_back((start.max(self.delivered) + self.decode_lag_frames, task));
                }
                Effect::Checkpoint { object_id } => {
                    self.objects.entry(object_id).or_default().checkpoints += 1;
                }
                Effect::Complete { object_id, len } => {
                    self.record(object_id, Outcome::Complete { len });
                }
                Effect::Incomplete {
                    object_id,
                    missing_blocks,
                } => self.record(object_id, Outcome::Incomplete { missing_blocks }),
                // Counted in the receiver's stats; sim_replay asserts on it.
                Effect::Replayed { .. } => {}
                Effect::Abandoned {
                    object_id,
                    reason,
                    missing_blocks,
                } => self.record(
                    object_id,
                    Outcome::Abandoned {
                        reason,
                        missing_blocks,
                    },
                ),
            }
            self.observe();
        }
        while self.receiver.poll_event().is_some() {}
    }

    /// Hands the receiver every lagged decode that has finished by datagram `count`.
    fn finish_decodes(&mut self, count: u64) {
        while self.decoding.front().is_some_and(|(at, _)| *at <= count) {
            let Some((_, task)) = self.decoding.pop_front() else {
                break;
            };
            let done = task.run();
            self.receiver.handle_decoded(self.now, done);
            self.drain();
        }
    }

    fn record(&mut self, object_id: [u8; 16], outcome: Outcome) {
        self.objects
            .entry(object_id)
            .or_default()
            .outcomes
            .push(outcome);
    }

    fn observe(&mut self) {
        self.max_buffered = self.max_buffered.max(self.receiver.buffered_bytes());
        self.max_sessions_seen = self.max_sessions_seen.max(self.receiver.session_count());
    }

    /// Run every sender to completion through the link, then flush the link and let the
    /// receiver's end grace pass.
    pub fn run(&mut self) {
        let inject = std::mem::take(&mut self.inject_first);
        for f in &inject {
            self.deliver(f);
        }
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut out = Vec::new();
        let mut idle_rounds = 0u32;
        loop {
            let mut progressed = false;
            for i in 0..self.senders.len() {
                let s = &mut self.senders[i];
                while let Some(req) = s.sender.poll_read() {
                    let seed = s.seeds[&req.object_id];
                    let data = content(seed, req.offset, req.len);
                    if req.pass == 1 {
                        s.read_hash.entry(req.object_id).or_default().update(&data);
                    }
                    s.sender.handle_read(req, data).expect("read");
                }
                if let Some(n) = s.sender.poll_transmit(self.now, &mut buf) {
                    progressed = true;
                    self.link.push(buf[..n].to_vec(), self.now, &mut out);
                }
            }
            for d in std::mem::take(&mut out) {
                self.deliver(&d);
            }
            if progressed {
                idle_rounds = 0;
                self.now += self.frame_time;
            } else {
                idle_rounds += 1;
            }
            if self.senders.iter().all(|s| s.sender.is_finished()) {
                break;
            }
            if idle_rounds > 3 {
                // Waiting on the pacer or a heartbeat: jump to the earliest sender timeout.
                let t = self
                    .senders
                    .iter()
                    .filter_map(|s| s.sender.poll_timeout())
                    .min()
                    .expect("a sender with nothing to do and no timeout");
                self.now = self.now.max(t);
                idle_rounds = 0;
            }
        }
        self.link.flush_all(&mut out);
        for d in std::mem::take(&mut out) {
            self.deliver(&d);
        }
        self.finish_decodes(u64::MAX);
        self.settle();
    }

    /// Let the receiver's end grace elapse (not its idle timeout).
    pub fn settle(&mut self) {
        self.now += Duration::from_secs(3);
        self.receiver.handle_timeout(self.now);
        self.drain();
    }

    pub fn log(&self, id: &[u8; 16]) -> &ObjectLog {
        self.objects.get(id).expect("object seen")
    }

    /// The object's staged bytes (in-memory staging only).
    pub fn staged(&self, id: &[u8; 16]) -> &[u8] {
        match self.log(id).staging.as_ref().expect("staging") {
            Staging::Mem { data } => data,
            Staging::Hashed { .. } => panic!("object staged as a hash"),
        }
    }

    /// blake3 of the staged object (hashed staging), and the largest number of blocks that
    /// waited out of order.
    pub fn staged_hash(&self, id: &[u8; 16]) -> (blake3::Hash, usize) {
        match self.log(id).staging.as_ref().expect("staging") {
            Staging::Hashed {
                hasher,
                max_pending,
                pending,
                ..
            } => {
                assert!(pending.is_empty(), "blocks left out of order");
                (hasher.finalize(), *max_pending)
            }
            Staging::Mem { data } => (blake3::hash(data), 0),
        }
    }

    /// The expected blake3 of an object, from what its sender read during pass 1.
    pub fn read_hash(&self, sender: usize, id: &[u8; 16]) -> blake3::Hash {
        self.senders[sender]
            .read_hash
            .get(id)
            .map(|h| h.finalize())
            .unwrap_or_else(|| blake3::hash(b""))
    }

    /// Progress of a live session, as bytes (what a driver would persist).
    pub fn progress_bytes(&self, id: &[u8; 16]) -> Option<Vec<u8>> {
        self.receiver.progress(id).map(|p: Progress| p.to_bytes())
    }
}

/// A 16-byte object id from a number.
pub fn oid(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8] = 0xA5;
    id
}
