//! The UDP sending loop `udp` and `watch` share: one socket, one [`Sender`], frames handed to
//! the kernel in GSO batches of equal length, and RaptorQ repair solves on a worker thread.
//!
//! Why the worker: RaptorQ is systematic, so a block's source symbols need no FEC work and go on
//! the wire as soon as the block is read; only its repair symbols need the intermediate-symbol
//! solve (~2.5 ms per 1 MiB block). Solving inline stopped the wire for a whole window's solves
//! (~40 ms per 16 blocks) at every window, which a paced sender never makes up: the token bucket
//! only holds a 64-frame burst. On the worker the solves run during the window's source rounds
//! (≈ 90 % of its frames), so the wire only waits if a solve takes longer than all of them.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_common::exit::CommandError;
use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
use sluice_common::transport::params::recommended_block_size;
use sluice_common::transport::send::{EncodeJob, EncodedBlock, Sender, SenderConfig};
use sluice_common::transport::wire;

use crate::net::DiodeSender;
use crate::prepare::Prepared;
use crate::settings::SendSettings;

/// The longest one wait may last, so a stop request or a new outbox file is noticed promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// The socket, the run's one [`Sender`] and its solve worker.
pub struct Link {
    socket: DiodeSender,
    pub sender: Sender,
    solver: Solver,
    batch: Vec<u8>,
    read_buf: Vec<u8>,
    symbol_size: u16,
    frame_len: usize,
    max_frame: usize,
    gso_batch: usize,
    rate_bits: Option<u64>,
    destination: std::net::SocketAddr,
}

/// What one [`Link::pump`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pumped {
    /// Anything at all: a read, a solve collected, a frame sent.
    pub did_work: bool,
    /// Object bytes read (for progress bars).
    pub bytes_read: u64,
}

impl Link {
    pub fn open(settings: &SendSettings) -> Result<Link, CommandError> {
        let socket = DiodeSender::open(settings.destination, settings.sndbuf).map_err(|e| {
            CommandError::network(format!(
                "cannot open a UDP socket toward {}: {e}",
                settings.destination
            ))
        })?;
        tracing::info!(destination = %settings.destination, send_buffer = socket.send_buffer, "socket open");
        let symbol_size = wire::symbol_size_for_datagram(settings.datagram_len());
        let block_size = recommended_block_size(symbol_size);
        let mut config = SenderConfig::new(
            settings.link_key.clone(),
            sender_id(),
            symbol_size,
            block_size,
        );
        config.window_blocks = settings.window;
        config.overhead_percent = settings.overhead;
        config.passes = settings.passes;
        config.heartbeat_interval = settings.heartbeat;
        config.rate_bytes_per_sec = settings.rate_bits.map(|b| (b / 8).max(1));
        let sender = Sender::new(config, Instant::now(), sluice_host::time::now_unix_ms())
            .map_err(|e| CommandError::usage(format!("sender configuration refused: {e}")))?;
        let frame_len = wire::data_frame_len(symbol_size);
        let max_frame = frame_len.max(wire::heartbeat_len(wire::MAX_LEDGER_ENTRIES));
        let gso_batch = socket.max_batch(frame_len);
        Ok(Link {
            socket,
            sender,
            solver: Solver::spawn(),
            batch: vec![0u8; gso_batch * frame_len + max_frame],
            read_buf: Vec::new(),
            symbol_size,
            frame_len,
            max_frame,
            gso_batch,
            rate_bits: settings.rate_bits,
            destination: settings.destination,
        })
    }

    /// Datagrams per GSO send (1 when the kernel or driver refuses segmentation).
    pub fn gso_batch(&self) -> usize {
        self.gso_batch
    }

    /// Collects finished solves, answers the sender's reads (`object` finds the bundle an
    /// object id belongs to) and sends every frame due now.
    pub fn pump<'a>(
        &mut self,
        object: impl Fn(&[u8; 16]) -> Option<&'a Prepared>,
    ) -> Result<Pumped, CommandError> {
        let mut pumped = Pumped::default();
        while let Some(done) = self.solver.try_collect()? {
            pumped.did_work = true;
            self.accept(done)?;
        }
        // The transmit that ends a window opens the next one and returns `None`: read its
        // blocks and transmit again at once instead of sleeping with nothing to send
        // (`Sender::wants_read`).
        loop {
            self.answer_reads(&object, &mut pumped)?;
            pumped.did_work |= self.transmit()?;
            if !self.sender.wants_read() {
                return Ok(pumped);
            }
        }
    }

    /// Reads every block the sender asks for and hands its repair solve to the worker.
    fn answer_reads<'a>(
        &mut self,
        object: &impl Fn(&[u8; 16]) -> Option<&'a Prepared>,
        pumped: &mut Pumped,
    ) -> Result<(), CommandError> {
        while let Some(request) = self.sender.poll_read() {
            pumped.did_work = true;
            let p = object(&request.object_id)
                .ok_or_else(|| CommandError::internal("the sender asked for an unknown object"))?;
            // Room for the zero padding to K × T, so the block is padded in place (no copy).
            self.read_buf
                .reserve_exact(request.len.next_multiple_of(usize::from(self.symbol_size)));
            self.read_buf.resize(request.len, 0);
            p.read_exact_at(&mut self.read_buf, request.offset)?;
            pumped.bytes_read += request.len as u64;
            let job = self
                .sender
                .handle_source(request, std::mem::take(&mut self.read_buf))
                .map_err(CommandError::internal)?;
            if let Some(job) = self.solver.submit(job) {
                // The worker is gone (it cannot panic on checked input, but never hang on it).
                self.accept(job.run())?;
            }
        }
        Ok(())
    }

    fn accept(&mut self, done: EncodedBlock) -> Result<(), CommandError> {
        self.sender
            .handle_encoded(done)
            .map_err(CommandError::internal)
    }

    /// Fills GSO batches with equal-length frames; a frame of another length (heartbeat,
    /// end-of-pass) goes out on its own.
    fn transmit(&mut self) -> Result<bool, CommandError> {
        let now = Instant::now();
        let (mut filled, mut seg, mut count) = (0usize, 0usize, 0usize);
        let mut sent_any = false;
        let max_frame = self.max_frame;
        while let Some(n) = self
            .sender
            .poll_transmit(now, &mut self.batch[filled..filled + max_frame])
        {
            sent_any = true;
            if count > 0 && n != seg {
                self.send(0, filled, seg)?;
                self.send(filled, filled + n, n)?;
                (filled, count) = (0, 0);
                continue;
            }
            seg = n;
            filled += n;
            count += 1;
            if count >= self.gso_batch {
                self.send(0, filled, seg)?;
                (filled, count) = (0, 0);
            }
        }
        if count > 0 {
            self.send(0, filled, seg)?;
        }
        Ok(sent_any)
    }

    fn send(&self, from: usize, to: usize, seg: usize) -> Result<(), CommandError> {
        self.socket
            .send_batch(&self.batch[from..to], seg)
            .map_err(|e| {
                CommandError::network(format!("sending to {} failed: {e}", self.destination))
                    .help("check the route and MTU toward the diode (`sluice-send doctor`)")
            })
    }

    /// When the sender next has something to do, at the latest `cap` (a scan, a stop check).
    /// Paced, the token bucket frees one frame at a time: waking for each would send one
    /// datagram per syscall and sleep per frame, so wake when a whole GSO batch is due; the
    /// pacer's burst allowance (64 frames) covers it, so the average rate is unchanged.
    pub fn next_wake(&self, cap: Instant) -> Instant {
        let due = self
            .sender
            .poll_timeout()
            .map(|t| t + batch_pacing_delay(self.rate_bits, self.gso_batch, self.frame_len));
        due.map_or(cap, |t| t.min(cap))
    }

    /// Sleeps until `until` (at most [`MAX_WAIT`]) or until a solve comes back.
    pub fn wait(&mut self, until: Instant) -> Result<(), CommandError> {
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(MAX_WAIT);
        if wait.is_zero() {
            return Ok(());
        }
        match self.solver.wait(wait)? {
            Some(done) => self.accept(done),
            None => Ok(()),
        }
    }
}

/// A stable identity for heartbeats: derived from the host name, so the high side sees the same
/// sender across restarts.
pub fn sender_id() -> [u8; 16] {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_bytes();
    let hash = blake3::derive_key("sluice 2026 sender id v1", host);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

/// How long a paced sender needs to earn `gso_batch − 1` more frames of `frame_len` bytes (plus
/// IP/UDP headers) at `rate_bits` bit/s; zero when unpaced.
pub fn batch_pacing_delay(rate_bits: Option<u64>, gso_batch: usize, frame_len: usize) -> Duration {
    match rate_bits {
        Some(rate) if rate > 0 && gso_batch > 1 => {
            let bits = (gso_batch - 1) as f64 * (frame_len + IP_UDP_OVERHEAD) as f64 * 8.0;
            Duration::from_secs_f64(bits / rate as f64)
        }
        _ => Duration::ZERO,
    }
}

/// One thread running repair solves in submission order. At most one window of jobs is ever
/// outstanding (the sender requests the next window only when the current one is sent), so the
/// unbounded channels hold at most `window_blocks` blocks: memory the window budget already
/// counts.
struct Solver {
    jobs: Option<mpsc::Sender<EncodeJob>>,
    done: mpsc::Receiver<EncodedBlock>,
    outstanding: usize,
    thread: Option<JoinHandle<()>>,
}

impl Solver {
    fn spawn() -> Solver {
        let (jobs_tx, jobs_rx) = mpsc::channel::<EncodeJob>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raptorq-solve".into())
            .spawn(move || {
                for job in jobs_rx {
                    if done_tx.send(job.run()).is_err() {
                        return;
                    }
                }
            })
            .ok();
        Solver {
            jobs: thread.is_some().then_some(jobs_tx),
            done: done_rx,
            outstanding: 0,
            thread,
        }
    }

    /// Queues a job; gives it back when there is no worker to run it.
    fn submit(&mut self, job: EncodeJob) -> Option<EncodeJob> {
        let Some(tx) = &self.jobs else {
            return Some(job);
        };
        match tx.send(job) {
            Ok(()) => {
                self.outstanding += 1;
                None
            }
            Err(mpsc::SendError(job)) => {
                self.jobs = None;
                Some(job)
            }
        }
    }

    fn try_collect(&mut self) -> Result<Option<EncodedBlock>, CommandError> {
        if self.outstanding == 0 {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(done) => {
                self.outstanding -= 1;
                Ok(Some(done))
            }
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(Self::lost()),
        }
    }

    /// Waits up to `timeout` for a solve, or just sleeps when none is outstanding.
    fn wait(&mut self, timeout: Duration) -> Result<Option<EncodedBlock>, CommandError> {
        if self.outstanding == 0 {
            std::thread::sleep(timeout);
            return Ok(None);
        }
        match self.done.recv_timeout(timeout) {
            Ok(done) => {
                self.outstanding -= 1;
                Ok(Some(done))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Self::lost()),
        }
    }

    /// The worker died with solves outstanding: they never come back and the sender would wait
    /// for them forever, so stop with an internal error instead.
    fn lost() -> CommandError {
        CommandError::internal(
            "the RaptorQ solve thread stopped with blocks outstanding; the transfer was cut short",
        )
    }
}

impl Drop for Solver {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_delay_is_zero_unpaced_and_one_batch_of_frames_paced() {
        assert_eq!(batch_pacing_delay(None, 44, 1472), Duration::ZERO);
        assert_eq!(
            batch_pacing_delay(Some(1_000_000_000), 1, 1472),
            Duration::ZERO
        );
        // 43 frames of 1500 wire bytes at 1 Gbit/s = 516 µs.
        let d = batch_pacing_delay(Some(1_000_000_000), 44, 1472);
        assert_eq!(d.as_micros(), 516);
    }
}
