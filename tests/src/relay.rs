//! Seeded, deterministic UDP impairment relay: owns the sockets, nothing else.
//!
//! The decisions are the pure [`Impairer`] of `sluice_testkit::impair` (the same model the
//! in-memory simulations use); [`Relay`] wraps it around two UDP sockets with
//! `recvmmsg`/`sendmmsg` batches and 32 MiB socket buffers, and adds the socket-level counters
//! (`socket_drops`, `send_errors`) to its [`RelayStats`].

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, RecvMsg, SockaddrStorage, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};
pub use sluice_testkit::impair::{ImpairConfig, ImpairStats as RelayStats, Impairer};
use socket2::{Domain, Protocol, Socket, Type};

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
            let stats = &mut self.imp.stats;
            let n = recv_batch(fd, &mut rhdr, &mut bufs, &mut lens, |m| {
                if let Ok(cmsgs) = m.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::RxqOvfl(d) = c {
                            stats.socket_drops = u64::from(d);
                        }
                    }
                }
            })?;
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

/// One `recvmmsg` batch into `bufs`, waiting for the first datagram only: each datagram's length
/// goes into `lens` and its message to `each` (for control messages). Returns how many arrived, 0
/// when the call timed out or was interrupted. The relay and `sluice-bench`'s counter share it.
pub fn recv_batch(
    fd: RawFd,
    hdr: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    mut each: impl FnMut(&RecvMsg<'_, '_, SockaddrStorage>),
) -> nix::Result<usize> {
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
        .iter_mut()
        .map(|b| [IoSliceMut::new(&mut b[..])])
        .collect();
    match recvmmsg(fd, hdr, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
        Ok(res) => {
            let mut n = 0;
            for (slot, m) in lens.iter_mut().zip(res) {
                *slot = m.bytes;
                each(&m);
                n += 1;
            }
            Ok(n)
        }
        Err(Errno::EAGAIN | Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}
