//! Seeded, deterministic UDP impairment relay.
//!
//! [`Impairer`] is the pure part: datagrams in, impaired datagrams out, every decision drawn from
//! a ChaCha8 generator seeded with `seed`. Each impairment has its own RNG stream, so turning one
//! impairment on does not change the decisions of another (the datagrams lost at `--loss 5` with
//! seed 7 are the same whether or not `--duplicate` is also set). [`Relay`] wraps it around two UDP
//! sockets with `recvmmsg`/`sendmmsg` batches and 32 MiB socket buffers.
//!
//! Per datagram, in this order: burst drop → random loss → truncate → corrupt (BER, then the
//! one-bit `--corrupt PCT`) → duplicate → reorder window → forward.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt,
    sockopt,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use socket2::{Domain, Protocol, Socket, Type};

/// What to do to the datagrams. All percentages are 0..=100 and may be fractional.
#[derive(Clone, Debug)]
pub struct ImpairConfig {
    /// Independent random loss, percent.
    pub loss_pct: f64,
    /// With `burst_len > 0`: in every period of `burst_every` datagrams, the last `burst_len` are
    /// dropped (datagram index `i` is dropped when `i % burst_every >= burst_every - burst_len`).
    pub burst_every: u64,
    pub burst_len: u64,
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
pub struct RelayStats {
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
    /// Datagrams the kernel dropped on the relay's own listening socket because it could not keep
    /// up (SO_RXQ_OVFL). These never reached the impairment logic: a test asserting exact counts
    /// must see 0 here (pace the sender, or the relay's decisions shift).
    pub socket_drops: u64,
    /// sendmmsg failures (e.g. ECONNREFUSED while nothing listens on the target); each skips one datagram.
    pub send_errors: u64,
}

impl RelayStats {
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
    pub stats: RelayStats,
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
            stats: RelayStats::default(),
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
        if c.burst_len > 0 && c.burst_every > 0 && i % c.burst_every >= c.burst_every - c.burst_len
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

/// Socket buffer size the relay asks for (and forces as root).
pub const RELAY_SOCKET_BUFFER: usize = 32 << 20;
const BATCH: usize = 64;
const MAX_DGRAM: usize = 65536;

/// Make a UDP socket with big buffers; as root the size is forced past `net.core.{r,w}mem_max`.
pub fn big_buffer_udp_socket(bind: SocketAddr, size: usize) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_recv_buffer_size(size)?;
    s.set_send_buffer_size(size)?;
    if nix::unistd::geteuid().is_root() {
        // Failure only means we keep the (clamped) size set above.
        let _ = setsockopt(&s, sockopt::RcvBufForce, &size);
        let _ = setsockopt(&s, sockopt::SndBufForce, &size);
    }
    s.bind(&bind.into())?;
    Ok(s.into())
}

/// A running impairment relay over real sockets.
pub struct Relay {
    rx: UdpSocket,
    tx: UdpSocket,
    imp: Impairer,
    target: SocketAddr,
}

impl Relay {
    /// Listen on `listen` (port 0 = pick one) and forward to `target`.
    pub fn bind(listen: SocketAddr, target: SocketAddr, cfg: ImpairConfig) -> io::Result<Self> {
        cfg.validate().map_err(io::Error::other)?;
        let rx = big_buffer_udp_socket(listen, RELAY_SOCKET_BUFFER)?;
        // Ask the kernel to report its drop counter for this socket with every datagram.
        setsockopt(&rx, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        let any: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let tx = big_buffer_udp_socket(any, RELAY_SOCKET_BUFFER)?;
        tx.connect(target)?;
        Ok(Self {
            rx,
            tx,
            imp: Impairer::new(cfg),
            target,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.rx.local_addr().expect("bound socket has an address")
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Relay until `stop` is set; `live` (if given) is refreshed after every batch.
    pub fn run(
        mut self,
        stop: &AtomicBool,
        live: Option<&Mutex<RelayStats>>,
    ) -> io::Result<RelayStats> {
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_DGRAM]).collect();
        let new_rhdr =
            || MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
        let mut rhdr = new_rhdr();
        let mut calls = 0u64;
        let mut shdr = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(BATCH * 2);
        let mut lens = [0usize; BATCH];
        let fd = self.rx.as_raw_fd();
        let mut short_timeout = None::<bool>;
        while !stop.load(Ordering::Relaxed) {
            let want_short = self.imp.pending() > 0;
            if short_timeout != Some(want_short) {
                let t = if want_short { 2 } else { 50 };
                self.rx.set_read_timeout(Some(Duration::from_millis(t)))?;
                short_timeout = Some(want_short);
            }
            calls += 1;
            if calls % 32 == 0 {
                // The kernel shrinks each header's msg_controllen to what it used (0 while no drop
                // has happened) and nix does not reset it, so refresh the headers now and then to
                // keep seeing the SO_RXQ_OVFL drop counter.
                rhdr = new_rhdr();
            }
            let n = {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut rhdr,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(res) => {
                        let mut n = 0;
                        for (slot, m) in lens.iter_mut().zip(res) {
                            *slot = m.bytes;
                            n += 1;
                            if let Ok(cmsgs) = m.cmsgs() {
                                for c in cmsgs {
                                    if let ControlMessageOwned::RxqOvfl(d) = c {
                                        self.imp.stats.socket_drops = u64::from(d);
                                    }
                                }
                            }
                        }
                        n
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => 0,
                    Err(e) => return Err(e.into()),
                }
            };
            let now = Instant::now();
            for (b, &len) in bufs.iter().zip(&lens[..n]) {
                self.imp.push(b[..len].to_vec(), now, &mut out);
            }
            self.imp.flush_due(now, &mut out);
            self.send_all(&mut shdr, &mut out);
            if let Some(l) = live {
                *l.lock().expect("stats lock") = self.imp.stats.clone();
            }
        }
        self.imp.flush_all(&mut out);
        self.send_all(&mut shdr, &mut out);
        if let Some(l) = live {
            *l.lock().expect("stats lock") = self.imp.stats.clone();
        }
        Ok(self.imp.stats)
    }

    fn send_all(&mut self, hdr: &mut MultiHeaders<SockaddrStorage>, out: &mut Vec<Vec<u8>>) {
        let fd = self.tx.as_raw_fd();
        let mut start = 0;
        while start < out.len() {
            let end = (start + BATCH).min(out.len());
            let iovs: Vec<[IoSlice<'_>; 1]> =
                out[start..end].iter().map(|d| [IoSlice::new(d)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = vec![None; iovs.len()];
            match sendmmsg(fd, hdr, &iovs, &addrs, [], MsgFlags::empty()) {
                Ok(res) => {
                    let sent = res.count();
                    start += sent.max(1);
                    if sent == 0 {
                        self.imp.stats.send_errors += 1;
                        self.imp.stats.forwarded -= 1;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => {
                    // The first datagram of the batch failed (ECONNREFUSED from an earlier ICMP,
                    // ENOBUFS...): skip it and count it, never spin.
                    self.imp.stats.send_errors += 1;
                    self.imp.stats.forwarded -= 1;
                    start += 1;
                }
            }
        }
        out.clear();
    }

    /// Run on a background thread; stop it with [`RelayHandle::stop`].
    pub fn spawn(self) -> RelayHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(RelayStats::default()));
        let addr = self.local_addr();
        let (s, l) = (stop.clone(), live.clone());
        let thread = std::thread::Builder::new()
            .name("sluice-relay".into())
            .spawn(move || self.run(&s, Some(&l)))
            .expect("spawn relay thread");
        RelayHandle {
            stop,
            live,
            addr,
            thread: Some(thread),
        }
    }
}

/// Handle to a relay running on a thread. Dropping it stops the relay.
pub struct RelayHandle {
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<RelayStats>>,
    addr: SocketAddr,
    thread: Option<JoinHandle<io::Result<RelayStats>>>,
}

impl RelayHandle {
    /// Where senders should send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Counters as of the last completed batch.
    pub fn stats(&self) -> RelayStats {
        self.live.lock().expect("stats lock").clone()
    }
    /// Stop, flush held-back datagrams, and return the final counters.
    pub fn stop(mut self) -> io::Result<RelayStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| io::Error::other("relay thread panicked"))?
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
