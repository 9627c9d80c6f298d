//! The one impairment model of the test suites: a pure, seeded decision stream over datagrams
//! (drop, duplicate, reorder, corrupt, truncate). The in-memory simulations ([`crate::sim`]) and
//! the UDP relay (`sluice-tests`' `Relay` and the `sluice-relay` binary) both run it, so a seed
//! means the same thing in both.
//!
//! [`Impairer`]: datagrams in, impaired datagrams out, every decision drawn from a ChaCha8
//! generator seeded with `seed`. Each impairment has its own RNG stream, so turning one
//! impairment on does not change the decisions of another (the datagrams lost at `--loss 5` with
//! seed 7 are the same whether or not `--duplicate` is also set). No sockets and no clock: the
//! caller passes `now`, which only decides when a partly filled reorder window is flushed
//! ([`Impairer::flush_due`]).
//!
//! Per datagram, in this order: burst drop (periodic, or the one `drop_range`) → random loss →
//! truncate → corrupt (BER, then the one-bit `corrupt_pct`) → duplicate → reorder window →
//! forward.

use std::ops::Range;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to do to the datagrams. All percentages are 0..=100 and may be fractional.
#[derive(Clone, Debug)]
pub struct ImpairConfig {
    /// Independent random loss, percent.
    pub loss_pct: f64,
    /// With `burst_len > 0`: in every period of `burst_every` datagrams, the last `burst_len` are
    /// dropped (datagram index `i` is dropped when `i % burst_every >= burst_every - burst_len`).
    pub burst_every: u64,
    pub burst_len: u64,
    /// Drop every datagram whose index (0-based, over all datagrams received) is in this range:
    /// one outage, counted as a burst.
    pub drop_range: Option<Range<u64>>,
    /// Random permutation within consecutive windows of this many datagrams (0 or 1 = off).
    pub reorder_window: usize,
    /// A partly filled reorder window is shuffled and flushed after this long.
    pub reorder_flush: Duration,
    /// Percent of datagrams forwarded twice.
    pub duplicate_pct: f64,
    /// Bit error rate: each bit flips with this probability (0 = off).
    pub corrupt_ber: f64,
    /// Percent of datagrams that get exactly one random bit flipped.
    pub corrupt_pct: f64,
    /// Percent of datagrams cut to a random shorter length (0..len-1 bytes).
    pub truncate_pct: f64,
    pub seed: u64,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        Self {
            loss_pct: 0.0,
            burst_every: 0,
            burst_len: 0,
            drop_range: None,
            reorder_window: 0,
            reorder_flush: Duration::from_millis(20),
            duplicate_pct: 0.0,
            corrupt_ber: 0.0,
            corrupt_pct: 0.0,
            truncate_pct: 0.0,
            seed: 0,
        }
    }
}

impl ImpairConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("loss", self.loss_pct),
            ("duplicate", self.duplicate_pct),
            ("corrupt", self.corrupt_pct),
            ("truncate", self.truncate_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("--{name} must be a percentage in 0..=100, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.corrupt_ber) {
            return Err(format!(
                "--corrupt-ber must be in 0..=1, got {}",
                self.corrupt_ber
            ));
        }
        if self.burst_len > 0 && self.burst_len > self.burst_every {
            return Err("--burst-len must be <= --burst-every".into());
        }
        Ok(())
    }
}

/// Counters. `dropped` = burst + random loss (`dropped_burst` is the burst share).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub dropped_burst: u64,
    pub duplicated: u64,
    /// Datagrams with at least one flipped bit.
    pub corrupted: u64,
    pub bits_flipped: u64,
    /// Datagrams that left their reorder window at a different position than they entered it.
    pub reordered: u64,
    pub truncated: u64,
    /// Socket-level counters, filled in by the UDP relay (`sluice-tests`); always 0 in memory.
    ///
    /// Datagrams the kernel dropped on the relay's own listening socket because it could not keep
    /// up (SO_RXQ_OVFL). These never reached the impairment logic: a test asserting exact counts
    /// must see 0 here (pace the sender, or the relay's decisions shift).
    pub socket_drops: u64,
    /// sendmmsg failures (e.g. ECONNREFUSED while nothing listens on the target); each skips one datagram.
    pub send_errors: u64,
}

impl ImpairStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "received": self.received,
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "dropped_burst": self.dropped_burst,
            "duplicated": self.duplicated,
            "corrupted": self.corrupted,
            "bits_flipped": self.bits_flipped,
            "reordered": self.reordered,
            "truncated": self.truncated,
            "socket_drops": self.socket_drops,
            "send_errors": self.send_errors,
        })
    }
}

fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(id);
    r
}

fn chance(rng: &mut ChaCha8Rng, pct: f64) -> bool {
    // Always draw when enabled so the stream position depends only on the datagram index.
    pct > 0.0 && rng.random::<f64>() * 100.0 < pct
}

/// The deterministic impairment core: no sockets, no clocks except the `now` passed in.
pub struct Impairer {
    cfg: ImpairConfig,
    loss: ChaCha8Rng,
    truncate: ChaCha8Rng,
    corrupt: ChaCha8Rng,
    ber: ChaCha8Rng,
    dup: ChaCha8Rng,
    reorder: ChaCha8Rng,
    /// Bits still to pass before the next BER flip (a stream model across datagrams).
    ber_skip: u64,
    window: Vec<Vec<u8>>,
    window_started: Option<Instant>,
    pub stats: ImpairStats,
}

impl Impairer {
    pub fn new(cfg: ImpairConfig) -> Self {
        let s = cfg.seed;
        let mut me = Self {
            loss: stream(s, 1),
            truncate: stream(s, 2),
            corrupt: stream(s, 3),
            ber: stream(s, 4),
            dup: stream(s, 5),
            reorder: stream(s, 6),
            ber_skip: 0,
            window: Vec::new(),
            window_started: None,
            stats: ImpairStats::default(),
            cfg,
        };
        me.ber_skip = me.next_ber_gap();
        me
    }

    pub fn config(&self) -> &ImpairConfig {
        &self.cfg
    }

    /// Geometric gap (in bits) to the next bit error.
    fn next_ber_gap(&mut self) -> u64 {
        let p = self.cfg.corrupt_ber;
        if p <= 0.0 {
            return u64::MAX;
        }
        if p >= 1.0 {
            return 0;
        }
        let u: f64 = self.ber.random::<f64>();
        let g = ((1.0 - u).ln() / (1.0 - p).ln()).floor();
        if g >= u64::MAX as f64 {
            u64::MAX
        } else {
            g as u64
        }
    }

    /// Feed one received datagram; whatever is ready to leave is appended to `out`.
    pub fn push(&mut self, mut d: Vec<u8>, now: Instant, out: &mut Vec<Vec<u8>>) {
        let i = self.stats.received;
        self.stats.received += 1;
        let c = &self.cfg;
        if (c.burst_len > 0
            && c.burst_every > 0
            && i % c.burst_every >= c.burst_every - c.burst_len)
            || c.drop_range.as_ref().is_some_and(|r| r.contains(&i))
        {
            self.stats.dropped += 1;
            self.stats.dropped_burst += 1;
            return;
        }
        if chance(&mut self.loss, self.cfg.loss_pct) {
            self.stats.dropped += 1;
            return;
        }
        if chance(&mut self.truncate, self.cfg.truncate_pct) && !d.is_empty() {
            let n = self.truncate.random_range(0..d.len());
            d.truncate(n);
            self.stats.truncated += 1;
        }
        let mut flipped = 0u64;
        if self.cfg.corrupt_ber > 0.0 {
            let bits = d.len() as u64 * 8;
            let mut pos = 0u64;
            loop {
                let remaining = bits - pos;
                if self.ber_skip >= remaining {
                    self.ber_skip -= remaining;
                    break;
                }
                pos += self.ber_skip;
                d[(pos / 8) as usize] ^= 1 << (pos % 8);
                flipped += 1;
                pos += 1;
                self.ber_skip = self.next_ber_gap();
            }
        }
        if chance(&mut self.corrupt, self.cfg.corrupt_pct) && !d.is_empty() {
            let bit = self.corrupt.random_range(0..d.len() * 8);
            d[bit / 8] ^= 1 << (bit % 8);
            flipped += 1;
        }
        if flipped > 0 {
            self.stats.corrupted += 1;
            self.stats.bits_flipped += flipped;
        }
        let dup = chance(&mut self.dup, self.cfg.duplicate_pct);
        if dup {
            self.stats.duplicated += 1;
            self.enqueue(d.clone(), now, out);
        }
        self.enqueue(d, now, out);
    }

    fn enqueue(&mut self, d: Vec<u8>, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.cfg.reorder_window <= 1 {
            self.stats.forwarded += 1;
            out.push(d);
            return;
        }
        if self.window.is_empty() {
            self.window_started = Some(now);
        }
        self.window.push(d);
        if self.window.len() >= self.cfg.reorder_window {
            self.flush_window(out);
        }
    }

    fn flush_window(&mut self, out: &mut Vec<Vec<u8>>) {
        let n = self.window.len();
        if n == 0 {
            return;
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut self.reorder);
        let mut slots: Vec<Option<Vec<u8>>> = self.window.drain(..).map(Some).collect();
        for (pos, &from) in perm.iter().enumerate() {
            if pos != from {
                self.stats.reordered += 1;
            }
            out.push(
                slots[from]
                    .take()
                    .expect("permutation visits each slot once"),
            );
        }
        self.stats.forwarded += n as u64;
        self.window_started = None;
    }

    /// Flush a partly filled reorder window whose first datagram is older than `reorder_flush`.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if let Some(t) = self.window_started
            && now.duration_since(t) >= self.cfg.reorder_flush
        {
            self.flush_window(out);
        }
    }

    /// Flush everything held back (at shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Vec<u8>>) {
        self.flush_window(out);
    }

    pub fn pending(&self) -> usize {
        self.window.len()
    }
}
