//! The threads the pipeline starts: a pool of RaptorQ decode workers and the one verifier
//! thread. A resend of an object the transport already completed is only counted
//! (`Admission::handle_replay`): forged frames naming a known object id cost nothing to send, so
//! they never reach the verifier or a record.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver as Rx, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use sluice_common::bundle::trust::TrustStore;
use sluice_common::transport::recv::{DecodeTask, Decoded, ReceiverConfig};
use sluice_host::time::now_unix_ms;

use super::admit::Admit;
use super::commit::{VerifyJob, verify_and_commit};
use super::outcome::Outcome;
use crate::store::Store;

/// How many verifications may wait behind the running one. Each waiting one is a complete
/// object on disk, so this bounds nothing in memory; it keeps the receive loop from racing ahead
/// of verification without limit.
const VERIFY_QUEUE: usize = 64;

/// The decode pool: tasks in (at most `2 × workers` queued), results out.
pub(super) struct Decoders {
    pub(super) tx: SyncSender<DecodeTask>,
    pub(super) rx: Rx<Decoded>,
    pub(super) threads: Vec<JoinHandle<()>>,
}

/// Starts `workers` (at least one) decode threads. They stop when `tx` is dropped.
pub(super) fn spawn_decoders(workers: usize) -> Decoders {
    let (decode_tx, decode_rx) = mpsc::sync_channel::<DecodeTask>(2 * workers.max(1));
    let decode_rx = Arc::new(Mutex::new(decode_rx));
    let (decoded_tx, decoded_rx) = mpsc::channel::<Decoded>();
    let threads = (0..workers.max(1))
        .map(|i| {
            let jobs = Arc::clone(&decode_rx);
            let results = decoded_tx.clone();
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || {
                    loop {
                        let job = match jobs.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if results.send(job.run()).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning a decode thread")
        })
        .collect();
    Decoders {
        tx: decode_tx,
        rx: decoded_rx,
        threads,
    }
}

/// Buffered bytes below which [`Pipeline::wait_for_room`](super::Pipeline::wait_for_room) lets a paused input go on.
#[derive(Clone, Copy, Debug)]
pub struct Room {
    pub total: u64,
    pub unauthenticated: u64,
}

impl Room {
    /// Half of each bound of `config`: the other half holds the window of partial blocks the
    /// input keeps feeding while decodes catch up.
    pub fn half_of(config: &ReceiverConfig) -> Room {
        Room {
            total: config.max_buffered_bytes / 2,
            unauthenticated: config.unauthenticated_session_bytes() / 2,
        }
    }
}

/// The decode pool's input side. Decoding never runs on the receive thread: a forged all-repair
/// block costs tens of ms of CPU, and that thread must keep draining the socket. When the
/// workers' queue is full a task waits here; its memory is already charged to the transport
/// receiver's budget (`DecodeTask` holds its block's symbols until `handle_decoded`), so this
/// queue is bounded by that budget.
pub(super) struct DecodeQueue {
    tx: Option<SyncSender<DecodeTask>>,
    deferred: VecDeque<DecodeTask>,
    /// Tasks handed to workers and not yet collected.
    pub(super) in_flight: usize,
    /// Tasks that had to wait for a queue slot, since start.
    pub(super) deferred_total: u64,
}

impl DecodeQueue {
    pub(super) fn new(tx: SyncSender<DecodeTask>) -> Self {
        DecodeQueue {
            tx: Some(tx),
            deferred: VecDeque::new(),
            in_flight: 0,
            deferred_total: 0,
        }
    }

    /// Hands `task` to the workers, or defers it (in order) if their queue is full.
    pub(super) fn submit(&mut self, task: DecodeTask) {
        let waiting = if self.deferred.is_empty() {
            self.try_send(task)
        } else {
            Some(task)
        };
        if let Some(task) = waiting {
            self.deferred_total += 1;
            self.deferred.push_back(task);
        }
    }

    fn try_send(&mut self, task: DecodeTask) -> Option<DecodeTask> {
        let Some(tx) = &self.tx else {
            return Some(task);
        };
        match tx.try_send(task) {
            Ok(()) => {
                self.in_flight += 1;
                None
            }
            Err(mpsc::TrySendError::Full(task) | mpsc::TrySendError::Disconnected(task)) => {
                Some(task)
            }
        }
    }

    /// Moves deferred tasks to the workers while their queue has room.
    pub(super) fn flush(&mut self) {
        while let Some(task) = self.deferred.pop_front() {
            if let Some(task) = self.try_send(task) {
                self.deferred.push_front(task);
                return;
            }
        }
    }

    /// Moves every deferred task to the workers, waiting for room (shutdown only).
    pub(super) fn flush_blocking(&mut self) {
        while let Some(task) = self.deferred.pop_front() {
            match &self.tx {
                Some(tx) if tx.send(task).is_ok() => self.in_flight += 1,
                _ => return,
            }
        }
    }

    /// Stops the workers (after the tasks already queued).
    pub(super) fn close(&mut self) {
        self.tx = None;
    }
}

/// The verifier thread: jobs in, one message per job out (`None` for a job that decided nothing
/// worth reporting).
pub(super) struct Verifier {
    pub(super) tx: SyncSender<VerifyJob>,
    pub(super) rx: Rx<Option<Outcome>>,
    pub(super) thread: JoinHandle<()>,
}

/// Starts the verifier thread. It stops when `tx` is dropped, after the queued jobs.
pub(super) fn spawn_verifier(
    store: Arc<Mutex<Store>>,
    trust: Arc<TrustStore>,
    gate: Arc<Admit>,
) -> Verifier {
    let (verify_tx, verify_rx) = mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
    let (outcome_tx, outcome_rx) = mpsc::channel::<Option<Outcome>>();
    let thread = std::thread::Builder::new()
        .name("verify".into())
        .spawn(move || {
            for job in verify_rx {
                // This thread's clocks, read once per object at the edge.
                let now = Instant::now();
                let now_unix = now_unix_ms() / 1000;
                let outcome = verify_and_commit(&store, &trust, &gate, job, now, now_unix);
                if outcome_tx.send(outcome).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the verifier thread");
    Verifier {
        tx: verify_tx,
        rx: outcome_rx,
        thread,
    }
}
