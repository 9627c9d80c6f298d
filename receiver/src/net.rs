//! The receiver's UDP edge: bind, size the kernel receive buffer, read datagrams in batches, and
//! read the kernel's drop counter. Nothing here (or anywhere in this binary) sends.
//!
//! Loss on a diode link is mostly the receiver not draining its queue (an unpaced sender loses
//! 1.6-2.9 % into a default 208 KiB buffer on a lossless link). So we ask for a large buffer, force
//! it when privileged, say loudly when the kernel grants less, and export the socket's own drop
//! counter so operators can tell overrun from wire loss.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};

/// A receive-only UDP socket on the diode's high side.
pub struct DiodeSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Bytes of receive buffer the kernel actually granted (its own doubled figure halved back).
    pub granted_buffer: usize,
    inode: u64,
    local: SocketAddr,
}

/// Reusable buffers for one batched receive: each slot holds up to a full GRO train.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    filled: usize,
}

impl DiodeSocket {
    /// Binds `addr` and asks for `buffer_bytes` of receive buffer (SO_RCVBUFFORCE when the process
    /// may, else SO_RCVBUF capped by net.core.rmem_max).
    pub fn bind(addr: SocketAddr, buffer_bytes: usize) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, buffer_bytes).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, buffer_bytes);
        }
        // Linux reports twice the value set (it counts bookkeeping overhead).
        let granted_buffer = rustix::net::sockopt::socket_recv_buffer_size(&socket)
            .map(|n| n / 2)
            .unwrap_or(0);
        let inode = rustix::fs::fstat(&socket).map(|s| s.st_ino).unwrap_or(0);
        let local = socket.local_addr()?;
        Ok(DiodeSocket {
            socket,
            state,
            granted_buffer,
            inode,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Buffers sized for datagrams of up to `max_datagram` bytes.
    pub fn new_batch(&self, max_datagram: usize, slots: usize) -> RecvBatch {
        let slot = max_datagram.max(1) * self.state.gro_segments().max(1);
        RecvBatch {
            bufs: (0..slots.max(1)).map(|_| vec![0u8; slot]).collect(),
            metas: vec![RecvMeta::default(); slots.max(1)],
            filled: 0,
        }
    }

    /// Waits up to `timeout` for datagrams and reads as many as one batch holds. Returns the
    /// number of slots filled (0 on timeout or interruption).
    pub fn recv(&self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        batch.filled = 0;
        let mut slices: Vec<IoSliceMut<'_>> =
            batch.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        match self.state.recv(
            UdpSockRef::from(&self.socket),
            &mut slices,
            &mut batch.metas,
        ) {
            Ok(n) => {
                batch.filled = n;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        wait_readable(&self.socket, timeout)?;
        Ok(0)
    }

    /// The kernel's count of drops on this socket because its buffer was full (the `drops`
    /// column of /proc/net/udp for our socket's inode). It counts socket buffers, not
    /// datagrams: with UDP GRO (which quinn-udp enables) one drop is a whole coalesced train of
    /// up to 64 datagrams — measured 436 drops = 19 184 datagrams (44 per train) on veth.
    pub fn kernel_drops(&self) -> Option<u64> {
        let table = if self.local.is_ipv4() {
            "/proc/net/udp"
        } else {
            "/proc/net/udp6"
        };
        let text = std::fs::read_to_string(table).ok()?;
        parse_drops(&text, self.inode)
    }
}

impl RecvBatch {
    /// Every datagram of the last receive, splitting GRO trains by their stride.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.metas[..self.filled]
            .iter()
            .zip(&self.bufs)
            .flat_map(|(meta, buf)| {
                let data = &buf[..meta.len.min(buf.len())];
                // `chunks` of an empty slice yields nothing, but a zero-length datagram is still
                // a datagram: hand it on so the state machine counts it as malformed.
                let empty = data.is_empty().then_some(data);
                data.chunks(meta.stride.max(1)).chain(empty)
            })
    }
}

fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn parse_drops(table: &str, inode: u64) -> Option<u64> {
    // Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let line_inode: u64 = cols.get(9)?.parse().ok()?;
        if line_inode != inode {
            return None;
        }
        cols.get(12)?.parse().ok()
    })
}

/// The remediation for a receive buffer smaller than asked: the exact sysctl to run.
pub fn buffer_advice(requested: usize, granted: usize) -> Option<String> {
    (granted < requested).then(|| {
        format!(
            "the kernel granted a {granted}-byte UDP receive buffer but {requested} was asked for; \
             bursts will overflow it and look like wire loss. Fix: `sysctl -w net.core.rmem_max={requested}` \
             (persist it with hardware/sysctl/90-sluice.conf), or run with CAP_NET_ADMIN"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_drops_column_for_our_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
  2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 5\n";
        assert_eq!(parse_drops(table, 4242), Some(17));
        assert_eq!(parse_drops(table, 999), Some(5));
        assert_eq!(parse_drops(table, 1), None);
    }

    #[test]
    fn receives_batches_and_reads_own_drop_counter() {
        let socket = DiodeSocket::bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(socket.granted_buffer > 0);
        // The test's own sender is a plain socket: the receiver code path never sends.
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..4u8 {
            tx.send_to(&[i; 64], socket.local_addr()).unwrap();
        }
        tx.send_to(&[], socket.local_addr()).unwrap();
        let mut batch = socket.new_batch(1500, 8);
        let mut got = Vec::new();
        for _ in 0..50 {
            socket.recv(&mut batch, Duration::from_millis(20)).unwrap();
            got.extend(batch.datagrams().map(|d| d.to_vec()));
            if got.len() == 5 {
                break;
            }
        }
        assert_eq!(got.len(), 5, "four datagrams and one empty one");
        assert_eq!(got.iter().filter(|d| d.is_empty()).count(), 1);
        assert_eq!(socket.kernel_drops(), Some(0));
    }

    #[test]
    fn advice_names_the_sysctl() {
        assert!(buffer_advice(100, 200).is_none());
        assert!(
            buffer_advice(33554432, 212992)
                .unwrap()
                .contains("net.core.rmem_max=33554432")
        );
    }
}
