//! The sender's UDP edge: one socket toward the diode, large send buffer, and batched sends.
//!
//! Per-datagram syscall cost, not bandwidth, caps a UDP sender (bench/README.md, udpblast: about
//! 180-290 k datagrams/s per core with `sendmmsg`, 2-2.7x that with UDP GSO on the same path). So
//! frames of equal length are handed to the kernel as one GSO batch (`UDP_SEGMENT`) through
//! quinn-udp, which falls back to one datagram per `sendmsg` if the driver refuses segmentation
//! (EIO/EINVAL).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};

/// GSO batches are one IP packet before segmentation: their total payload must fit in 64 KiB.
const GSO_MAX_BYTES: usize = 65_000;

/// A send-only UDP socket aimed at the diode's far side.
pub struct DiodeSender {
    socket: UdpSocket,
    state: UdpSocketState,
    destination: SocketAddr,
    /// What the kernel granted for SO_SNDBUF (may be less than asked).
    pub send_buffer: usize,
}

impl DiodeSender {
    /// Binds an ephemeral local port in the destination's address family.
    pub fn open(destination: SocketAddr, send_buffer: usize) -> io::Result<Self> {
        let local: SocketAddr = if destination.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal address")
        } else {
            "[::]:0".parse().expect("literal address")
        };
        let socket = UdpSocket::bind(local)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Best effort: a small send buffer only costs throughput (we block on POLLOUT instead).
        let _ = state.set_send_buffer_size(UdpSockRef::from(&socket), send_buffer);
        let send_buffer = state
            .send_buffer_size(UdpSockRef::from(&socket))
            .unwrap_or(0);
        Ok(DiodeSender {
            socket,
            state,
            destination,
            send_buffer,
        })
    }

    /// How many equal-length frames of `frame_len` bytes one [`send_batch`](Self::send_batch)
    /// may carry (1 when GSO is unavailable).
    pub fn max_batch(&self, frame_len: usize) -> usize {
        let by_bytes = GSO_MAX_BYTES / frame_len.max(1);
        self.state.max_gso_segments().min(by_bytes).max(1)
    }

    /// Sends `frames`, a concatenation of datagrams that are all `frame_len` bytes long except
    /// possibly the last, as one GSO batch (or one datagram when `frames.len() == frame_len`).
    /// Blocks while the socket buffer is full: a diode has no back-pressure, but our own kernel
    /// queue does, and waiting there is better than dropping.
    pub fn send_batch(&self, frames: &[u8], frame_len: usize) -> io::Result<()> {
        let transmit = Transmit {
            destination: self.destination,
            ecn: None,
            contents: frames,
            segment_size: (frames.len() > frame_len).then_some(frame_len),
            src_ip: None,
        };
        loop {
            match self
                .state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
            {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(&self.socket, Duration::from_millis(100))?
                }
                // Nobody listens on a diode's far side; a stray ICMP from a test loopback must
                // not end a transfer.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

fn wait_writable(socket: &UdpSocket, timeout: Duration) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_batch_arrives_as_separate_datagrams() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sender = DiodeSender::open(receiver.local_addr().unwrap(), 1 << 20).unwrap();
        let frame_len = 100;
        let count = sender.max_batch(frame_len).min(10);
        let mut frames = Vec::new();
        for i in 0..count {
            frames.extend(std::iter::repeat_n(i as u8, frame_len));
        }
        sender.send_batch(&frames, frame_len).unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..count {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(n, frame_len, "each segment is its own datagram");
            assert!(buf[..n].iter().all(|&b| b == i as u8));
        }
    }
}
