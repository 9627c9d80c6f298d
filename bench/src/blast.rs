//! Raw UDP ceiling: an unpaced blaster (`sendmmsg` batches or UDP GSO) and a `recvmmsg` counter.
//!
//! Every datagram starts with its sequence number (u64 LE), so the receiver counts losses, gaps
//! and reordering. After the blast the sender sends a few end markers (sequence `u64::MAX`, then
//! the total sent) so the receiver knows the exact sent count, including tail losses, and stops.
//! MB/s is 10^6 bytes of UDP payload per second.
//!
//! The sender may also pace ([`Pacing`]), to compare pacing mechanisms on the same path
//! (bench/README.md, "Pacing mechanisms"): Sluice's userspace token bucket
//! (`sluice_common::transport::pacer`, waking per GSO batch as `sender/src/link.rs` does), or the
//! kernel's `fq` qdisc, through `SO_MAX_PACING_RATE` or per-batch `SO_TXTIME` departure times.
//! The kernel mechanisms need `tc qdisc replace dev IF root fq` on the sending interface.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg, setsockopt, sockopt};
use sluice_tests::relay::recv_batch;

const END_MARKER: u64 = u64::MAX;
/// Largest UDP payload over IPv4; also the cap on one GSO send.
const MAX_UDP_PAYLOAD: usize = 65507;
/// The kernel's UDP_MAX_SEGMENTS on older kernels (newer allow 128): stay portable.
const MAX_GSO_SEGMENTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One `sendmmsg` call per batch of datagrams.
    Sendmmsg,
    /// One `send` of a batch with UDP_SEGMENT set: the kernel splits it into datagrams.
    Gso,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sendmmsg" => Ok(Mode::Sendmmsg),
            "gso" => Ok(Mode::Gso),
            _ => Err(format!("unknown mode {s:?} (sendmmsg|gso)")),
        }
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sendmmsg => "sendmmsg",
            Mode::Gso => "gso",
        }
    }
}

/// CPU seconds of the calling thread (so `pair` mode reports each side separately).
fn cpu_now() -> f64 {
    getrusage(UsageWho::RUSAGE_THREAD)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// UDP `RcvbufErrors` of the calling thread's network namespace (all sockets).
/// `/proc/thread-self`, not `/proc/net` (= `/proc/self/net`): the latter shows the namespace of
/// the process's main thread, so a thread that joined another namespace with `setns` (the
/// harness's receivers, `sluice_tests::Netns::run_in`) would read the wrong counters.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let vals: Vec<&str> = lines.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    vals.get(i)?.parse().ok()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[derive(Clone, Debug)]
pub struct RecvOpts {
    pub addr: SocketAddr,
    /// Hard limit on the run.
    pub secs: f64,
    /// SO_RCVBUF (forced as root); None = kernel default.
    pub rcvbuf: Option<usize>,
    /// Stop after this long without traffic once something arrived.
    pub idle_exit: f64,
}

#[derive(Clone, Debug, Default)]
pub struct RecvReport {
    /// From the sender's end marker; None if no marker arrived.
    pub sent_datagrams: Option<u64>,
    pub received_datagrams: u64,
    pub received_bytes: u64,
    /// First to last datagram.
    pub secs: f64,
    pub lost: u64,
    pub gaps: u64,
    pub reordered: u64,
    pub rcvbuf: usize,
    pub rcvbuf_errors: Option<u64>,
    pub cpu_secs: f64,
}

impl RecvReport {
    pub fn mb_per_s(&self) -> f64 {
        per_second(self.received_bytes, self.secs) / 1e6
    }
    pub fn datagrams_per_s(&self) -> f64 {
        per_second(self.received_datagrams, self.secs)
    }
    pub fn loss_percent(&self) -> f64 {
        let total = self.received_datagrams + self.lost;
        if total > 0 {
            self.lost as f64 * 100.0 / total as f64
        } else {
            0.0
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "role": "recv",
            "sent_datagrams": self.sent_datagrams,
            "received_datagrams": self.received_datagrams,
            "received_bytes": self.received_bytes,
            "secs": round3(self.secs),
            "mb_per_s": round3(self.mb_per_s()),
            "datagrams_per_s": self.datagrams_per_s().round(),
            "lost": self.lost,
            "loss_percent": round3(self.loss_percent()),
            "gaps": self.gaps,
            "reordered": self.reordered,
            "rcvbuf": self.rcvbuf,
            "rcvbuf_errors": self.rcvbuf_errors,
            "cpu_secs": round3(self.cpu_secs),
        })
    }
}

/// `count` per second over `secs`; 0 for a run that took no time.
fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Bind a receiving socket (done before the sender starts, so nothing is lost to ICMP).
pub fn bind_recv(opts: &RecvOpts) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind(opts.addr).with_context(|| format!("binding {}", opts.addr))?;
    if let Some(n) = opts.rcvbuf {
        if is_root() {
            setsockopt(&s, sockopt::RcvBufForce, &n).context("SO_RCVBUFFORCE")?;
        } else {
            setsockopt(&s, sockopt::RcvBuf, &n).context("SO_RCVBUF")?;
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s)
}

/// Count datagrams on a socket from [`bind_recv`] until an end marker, `secs`, or idleness.
pub fn run_recv(sock: &UdpSocket, opts: &RecvOpts) -> anyhow::Result<RecvReport> {
    const BATCH: usize = 64;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; 65536]).collect();
    let mut hdr = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut lens = [0usize; BATCH];
    let fd = sock.as_raw_fd();
    let errs0 = udp_rcvbuf_errors();
    let cpu0 = cpu_now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(opts.secs);
    let idle = Duration::from_secs_f64(opts.idle_exit);
    let mut r = RecvReport {
        rcvbuf: nix::sys::socket::getsockopt(sock, sockopt::RcvBuf).unwrap_or(0),
        ..Default::default()
    };
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut next_seq = 0u64;
    let mut max_seq = None::<u64>;
    'outer: loop {
        let now = Instant::now();
        if now >= deadline || last.is_some_and(|l| now.duration_since(l) >= idle) {
            break;
        }
        let n = recv_batch(fd, &mut hdr, &mut bufs, &mut lens, |_| {})
            .map_err(|e| anyhow::anyhow!("recvmmsg: {e}"))?;
        if n == 0 {
            continue;
        }
        let t = Instant::now();
        for (b, &len) in bufs.iter().zip(&lens[..n]) {
            if len < 8 {
                continue;
            }
            let seq = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            if seq == END_MARKER {
                if len >= 16 {
                    r.sent_datagrams =
                        Some(u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")));
                }
                break 'outer;
            }
            first.get_or_insert(t);
            last = Some(t);
            r.received_datagrams += 1;
            r.received_bytes += len as u64;
            if seq == next_seq {
                next_seq += 1;
            } else if seq > next_seq {
                r.gaps += 1;
                next_seq = seq + 1;
            } else {
                r.reordered += 1;
            }
            max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
        }
    }
    r.secs = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let expected = r.sent_datagrams.unwrap_or(max_seq.map_or(0, |m| m + 1));
    r.lost = expected.saturating_sub(r.received_datagrams);
    r.rcvbuf_errors = match (errs0, udp_rcvbuf_errors()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    r.cpu_secs = cpu_now() - cpu0;
    Ok(r)
}

/// How a GSO blast is paced. Rates are wire bits per second: payload + 28 bytes IP/UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Unpaced.
    None,
    /// Sluice's token bucket; `catch_up: false` is the bucket before issue 15 (budget past one
    /// 64-frame batch dropped).
    User { bits: u64, catch_up: bool },
    /// `SO_MAX_PACING_RATE` (the `fq` qdisc spaces the socket's packets).
    Fq { bits: u64 },
    /// `SO_TXTIME`: each GSO send carries its departure time, `fq` holds it until then.
    TxTime { bits: u64 },
}

impl std::str::FromStr for Pacing {
    type Err = String;
    /// `none`, `user:1600M`, `user-drop:1600M`, `fq:1600M`, `txtime:1600M`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Pacing::None);
        }
        let (kind, rate) = s
            .split_once(':')
            .ok_or("expected KIND:RATE, e.g. fq:1600M")?;
        let t = rate.trim();
        let (num, mul) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
            Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
            Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
            _ => (t, 1.0),
        };
        let bits = (num.parse::<f64>().map_err(|e| format!("{rate}: {e}"))? * mul) as u64;
        match kind {
            "user" => Ok(Pacing::User {
                bits,
                catch_up: true,
            }),
            "user-drop" => Ok(Pacing::User {
                bits,
                catch_up: false,
            }),
            "fq" => Ok(Pacing::Fq { bits }),
            "txtime" => Ok(Pacing::TxTime { bits }),
            _ => Err(format!(
                "unknown pacing {kind:?} (none|user|user-drop|fq|txtime)"
            )),
        }
    }
}

// SO_MAX_PACING_RATE (bytes per second; u32 is what every kernel accepts) through nix's own
// sockopt machinery, so this crate needs no unsafe code of its own.
mod pacing_opt {
    // nix's macro names `libc` and its helper macros unqualified.
    use nix::libc;
    use nix::{setsockopt_impl, sockopt_impl};
    sockopt_impl!(
        /// `SO_MAX_PACING_RATE` in bytes per second.
        MaxPacingRate,
        SetOnly,
        libc::SOL_SOCKET,
        libc::SO_MAX_PACING_RATE,
        u32
    );
}
use pacing_opt::MaxPacingRate;

#[derive(Clone, Debug)]
pub struct SendOpts {
    pub addr: SocketAddr,
    /// UDP payload bytes per datagram (1472 fills an MTU-1500 frame).
    pub size: usize,
    pub secs: f64,
    pub mode: Mode,
    /// Datagrams per sendmmsg call, or segments per GSO send (capped to fit 64 KiB).
    pub batch: usize,
    pub sndbuf: Option<usize>,
    /// Pacing (GSO mode only).
    pub pacing: Pacing,
}

#[derive(Clone, Debug, Default)]
pub struct SendReport {
    pub mode: &'static str,
    pub size: usize,
    pub batch: usize,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    pub secs: f64,
    /// Send calls that failed (ECONNREFUSED while nobody listens, ENOBUFS...).
    pub errors: u64,
    pub cpu_secs: f64,
}

impl SendReport {
    pub fn mb_per_s(&self) -> f64 {
        per_second(self.sent_bytes, self.secs) / 1e6
    }
    pub fn datagrams_per_s(&self) -> f64 {
        per_second(self.sent_datagrams, self.secs)
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "role": "send",
            "mode": self.mode,
            "size": self.size,
            "batch": self.batch,
            "sent_datagrams": self.sent_datagrams,
            "sent_bytes": self.sent_bytes,
            "secs": round3(self.secs),
            "mb_per_s": round3(self.mb_per_s()),
            "datagrams_per_s": self.datagrams_per_s().round(),
            "errors": self.errors,
            "cpu_secs": round3(self.cpu_secs),
            "wire_mbit_per_s": round3(
                (self.sent_bytes + 28 * self.sent_datagrams) as f64 * 8.0 / self.secs.max(1e-9) / 1e6
            ),
        })
    }
}

/// Blast unpaced for `secs`, then send end markers.
pub fn run_send(opts: &SendOpts) -> anyhow::Result<SendReport> {
    if opts.size < 16 || opts.size > MAX_UDP_PAYLOAD {
        bail!("--size must be 16..={MAX_UDP_PAYLOAD}");
    }
    let bind: SocketAddr = if opts.addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(opts.addr)
        .with_context(|| format!("connecting to {}", opts.addr))?;
    if let Some(n) = opts.sndbuf {
        if is_root() {
            setsockopt(&sock, sockopt::SndBufForce, &n).context("SO_SNDBUFFORCE")?;
        } else {
            setsockopt(&sock, sockopt::SndBuf, &n).context("SO_SNDBUF")?;
        }
    }
    let batch = match opts.mode {
        Mode::Sendmmsg => opts.batch.clamp(1, 1024),
        Mode::Gso => opts
            .batch
            .clamp(1, MAX_GSO_SEGMENTS)
            .min(MAX_UDP_PAYLOAD / opts.size)
            .max(1),
    };
    let mut rep = SendReport {
        mode: opts.mode.name(),
        size: opts.size,
        batch,
        ..Default::default()
    };
    let fd = sock.as_raw_fd();
    let cpu0 = cpu_now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(opts.secs);
    let mut seq = 0u64;
    match opts.mode {
        Mode::Sendmmsg => {
            let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| vec![0xa5u8; opts.size]).collect();
            let mut hdr = MultiHeaders::<SockaddrStorage>::preallocate(batch, None);
            let addrs: Vec<Option<SockaddrStorage>> = vec![None; batch];
            while Instant::now() < deadline {
                for (i, b) in bufs.iter_mut().enumerate() {
                    b[..8].copy_from_slice(&(seq + i as u64).to_le_bytes());
                }
                let iovs: Vec<[IoSlice<'_>; 1]> = bufs.iter().map(|b| [IoSlice::new(b)]).collect();
                match sendmmsg(fd, &mut hdr, &iovs, &addrs, [], MsgFlags::empty()) {
                    Ok(res) => {
                        let n = res.count() as u64;
                        seq += n;
                    }
                    Err(_) => rep.errors += 1,
                }
            }
        }
        Mode::Gso => {
            setsockopt(&sock, sockopt::UdpGsoSegment, &(opts.size as i32))
                .context("UDP_SEGMENT (GSO) not supported here")?;
            let mut buf = vec![0xa5u8; batch * opts.size];
            let mut gate = Gate::new(&sock, opts.pacing, batch, opts.size)?;
            while Instant::now() < deadline {
                for i in 0..batch {
                    let o = i * opts.size;
                    buf[o..o + 8].copy_from_slice(&(seq + i as u64).to_le_bytes());
                }
                gate.wait();
                match gate.send(&sock, &buf) {
                    Ok(_) => seq += batch as u64,
                    Err(_) => rep.errors += 1,
                }
            }
        }
    }
    rep.secs = start.elapsed().as_secs_f64();
    rep.cpu_secs = cpu_now() - cpu0;
    rep.sent_datagrams = seq;
    rep.sent_bytes = seq * opts.size as u64;
    // End markers: a few, spaced, so one survives a lossy path.
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&END_MARKER.to_le_bytes());
    marker[8..].copy_from_slice(&seq.to_le_bytes());
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        let _ = sock.send(&marker);
    }
    Ok(rep)
}

/// The paced GSO sender's gate: waits for the userspace bucket, or stamps departure times.
struct Gate {
    pacing: Pacing,
    pacer: Option<sluice_common::transport::pacer::Pacer>,
    /// Wire bytes of one GSO batch.
    batch_wire: u64,
    /// Per-frame wire bytes.
    frame_wire: usize,
    batch: usize,
    /// SO_TXTIME: next departure time, CLOCK_MONOTONIC nanoseconds.
    next_txtime: u64,
}

impl Gate {
    fn new(sock: &UdpSocket, pacing: Pacing, batch: usize, size: usize) -> anyhow::Result<Gate> {
        use sluice_common::transport::pacer::Pacer;
        let frame_wire = size + 28;
        let mut pacer = None;
        match pacing {
            Pacing::None => {}
            Pacing::User { bits, catch_up } => {
                let burst = 64 * frame_wire as u64;
                let catch = if catch_up {
                    sluice_common::transport::pacer::CATCH_UP
                } else {
                    Duration::ZERO
                };
                pacer = Some(Pacer::with_catch_up(Some(bits / 8), burst, catch));
            }
            Pacing::Fq { bits } => {
                let bytes = u32::try_from(bits / 8).unwrap_or(u32::MAX);
                setsockopt(sock, MaxPacingRate, &bytes).context("SO_MAX_PACING_RATE")?;
            }
            Pacing::TxTime { .. } => {
                let cfg = nix::libc::sock_txtime {
                    clockid: nix::libc::CLOCK_MONOTONIC,
                    flags: 0,
                };
                setsockopt(sock, sockopt::TxTime, &cfg).context("SO_TXTIME")?;
            }
        }
        Ok(Gate {
            pacing,
            pacer,
            batch_wire: (batch * frame_wire) as u64,
            frame_wire,
            batch,
            next_txtime: 0,
        })
    }

    /// Userspace pacing: sleeps until the bucket allows the next batch (like `sender/src/link.rs`:
    /// when a whole batch is due), then charges it frame by frame.
    fn wait(&mut self) {
        let Some(p) = self.pacer.as_mut() else { return };
        let Pacing::User { bits, .. } = self.pacing else {
            return;
        };
        let batch_delay = Duration::from_secs_f64(
            (self.batch - 1) as f64 * self.frame_wire as f64 * 8.0 / bits as f64,
        );
        while !p.can_send(Instant::now()) {
            let due = p.ready_at().map_or(Instant::now(), |r| r + batch_delay);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let now = Instant::now();
        for _ in 0..self.batch {
            p.consume(now, self.frame_wire);
        }
    }

    fn send(&mut self, sock: &UdpSocket, buf: &[u8]) -> std::io::Result<usize> {
        let Pacing::TxTime { bits } = self.pacing else {
            return sock.send(buf);
        };
        use nix::sys::socket::{ControlMessage, sendmsg};
        use nix::time::{ClockId, clock_gettime};
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0);
        // A late sender catches up by at most 10 ms, like the userspace bucket.
        let floor = now.saturating_sub(10_000_000);
        let at = self.next_txtime.max(floor);
        self.next_txtime = at + self.batch_wire * 8 * 1_000_000_000 / bits.max(1);
        let iov = [IoSlice::new(buf)];
        let cmsg = [ControlMessage::TxTime(&at)];
        sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(std::io::Error::from)
    }
}

/// Receiver on a thread + sender, on loopback (or any local address), in one process.
pub fn run_pair(
    addr: SocketAddr,
    send: &SendOpts,
    rcvbuf: Option<usize>,
) -> anyhow::Result<(SendReport, RecvReport)> {
    let ropts = RecvOpts {
        addr,
        secs: send.secs + 5.0,
        rcvbuf,
        idle_exit: 2.0,
    };
    let sock = bind_recv(&ropts)?;
    let local = sock.local_addr()?;
    let h = std::thread::spawn(move || run_recv(&sock, &ropts));
    let s = run_send(&SendOpts {
        addr: local,
        ..send.clone()
    })?;
    let r = h
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok((s, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_counts_add_up_on_loopback() {
        for mode in [Mode::Sendmmsg, Mode::Gso] {
            let send = SendOpts {
                addr: "127.0.0.1:0".parse().unwrap(),
                size: 1472,
                secs: 0.2,
                mode,
                batch: 64,
                sndbuf: None,
                pacing: Pacing::None,
            };
            let (s, r) = run_pair("127.0.0.1:0".parse().unwrap(), &send, Some(8 << 20)).unwrap();
            assert!(s.sent_datagrams > 0, "{s:?}");
            // The end marker carries the exact count; everything is either received or lost.
            assert_eq!(r.sent_datagrams, Some(s.sent_datagrams), "{r:?}");
            assert_eq!(r.received_datagrams + r.lost, s.sent_datagrams, "{r:?}");
            assert_eq!(r.received_bytes, r.received_datagrams * 1472);
            if mode == Mode::Gso {
                assert_eq!(s.batch, 44, "64 KiB cap: 44 x 1472");
            }
        }
    }
}
