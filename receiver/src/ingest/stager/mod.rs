//! Staging I/O on its own thread: creating staged objects, writing their blocks, checkpoints
//! and the final fsync, in exactly the order the transport emitted them.
//!
//! Why a thread: writing a block into the page cache is the receive thread's largest cost
//! (67 % of its samples in a paced run on a VM whose page cache filled at 0.3-0.4 GB/s; about
//! 60 % in session 1's profile), and while the receive thread copies, nobody drains the socket,
//! which overflows a whole GRO train at a time. Here the copies run on another core and the
//! receive thread only hands over owned buffers.
//!
//! Order is the contract: one FIFO, one thread, so a checkpoint's fsync covers every write
//! queued before it (progress never names a block whose bytes are not durable) and an object's
//! final fsync follows all its blocks. Failures are reported back with the object's
//! *generation* (bumped at every Open), so a late failure of an attempt that was already given
//! up cannot kill a newer session of the same object; after a failure, the rest of that
//! attempt's queued work is skipped rather than failing once per block.
//!
//! Memory: queued block bytes are capped at [`QUEUE_BYTES`]; past it the receive thread waits
//! (the same back-pressure as writing inline, just later). Worst case 32 MiB plus one block.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::frontier::Frontier;
use crate::store::Store;

/// Block bytes that may wait for the writer.
pub const QUEUE_BYTES: u64 = 32 << 20;

/// One staging operation, for object `object_id` in its attempt `generation`.
#[derive(Debug)]
pub enum StageOp {
    Open {
        object_id: [u8; 16],
        generation: u64,
        len: u64,
        /// Told about every block written, for an early verifier following the object.
        frontier: Option<Arc<Frontier>>,
    },
    Write {
        object_id: [u8; 16],
        generation: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// Make everything written so far durable, then save `progress` (if any).
    Checkpoint {
        object_id: [u8; 16],
        generation: u64,
        progress: Option<Vec<u8>>,
    },
    /// Every block is written: fsync, save `progress` (if any), report [`StageDone::Synced`].
    /// For an attempt an early verifier followed to its end (its frontier is whole) neither the
    /// fsync nor the progress happens: the verifier has the files, the object is deleted at
    /// commit, and should the receiver stop before that, the last checkpoint still describes
    /// durable bytes, so a restart receives the rest again instead of trusting bytes that may
    /// not have reached the disk.
    Complete {
        object_id: [u8; 16],
        generation: u64,
        progress: Option<Vec<u8>>,
    },
    /// The transfer was abandoned: close the file; free it unless progress was saved.
    Release { object_id: [u8; 16] },
}

impl StageOp {
    fn attempt(&self) -> Option<([u8; 16], u64)> {
        match self {
            StageOp::Open {
                object_id,
                generation,
                ..
            }
            | StageOp::Write {
                object_id,
                generation,
                ..
            }
            | StageOp::Checkpoint {
                object_id,
                generation,
                ..
            }
            | StageOp::Complete {
                object_id,
                generation,
                ..
            } => Some((*object_id, *generation)),
            StageOp::Release { .. } => None,
        }
    }

    fn queued_bytes(&self) -> u64 {
        match self {
            StageOp::Write { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}

/// What the writer tells the receive thread.
#[derive(Debug)]
pub enum StageDone {
    /// Staging this attempt failed: `what` failed with `error`. Its later queued work is skipped.
    Failed {
        object_id: [u8; 16],
        generation: u64,
        what: &'static str,
        error: String,
    },
    /// Every block of the object is written (and durable with its progress saved, unless an
    /// early verifier followed it to the end): verify it.
    Synced {
        object_id: [u8; 16],
        generation: u64,
    },
    /// A checkpoint or release failed; the transfer goes on (logged, counted).
    Warning { object_id: [u8; 16], error: String },
}

/// Bytes queued, shared with the writer; the receive thread waits while it is over the cap.
#[derive(Default)]
struct Gate {
    queued: Mutex<u64>,
    drained: Condvar,
    writer_alive: AtomicBool,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `n` more bytes fit (always admits when nothing is queued, so one block larger
    /// than the cap still goes through), then counts them.
    fn admit(&self, n: u64) {
        let mut queued = self.lock();
        while *queued > 0 && *queued + n > QUEUE_BYTES && self.writer_alive.load(Ordering::Acquire)
        {
            queued = self
                .drained
                .wait_timeout(queued, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *queued += n;
    }

    fn release(&self, n: u64) {
        let mut queued = self.lock();
        *queued = queued.saturating_sub(n);
        self.drained.notify_all();
    }
}

/// The writer thread and its two channels.
pub struct Stager {
    ops: Option<mpsc::Sender<StageOp>>,
    done: mpsc::Receiver<StageDone>,
    gate: Arc<Gate>,
    thread: Option<JoinHandle<()>>,
    store: Arc<Mutex<Store>>,
    /// Results produced inline (after the writer died), delivered like the writer's.
    inline_done: Vec<StageDone>,
    /// The writer's memory when staging inline. Attempts queued to the dead writer are lost
    /// with it; their frontiers were aborted when its state dropped (`WriterState`'s `Drop`).
    inline_state: WriterState,
}

impl Stager {
    pub fn spawn(store: Arc<Mutex<Store>>) -> Stager {
        let (ops_tx, ops_rx) = mpsc::channel::<StageOp>();
        let (done_tx, done_rx) = mpsc::channel::<StageDone>();
        let gate = Arc::new(Gate::default());
        gate.writer_alive.store(true, Ordering::Release);
        let thread = {
            let store = Arc::clone(&store);
            let gate = Arc::clone(&gate);
            std::thread::Builder::new()
                .name("stage".into())
                .spawn(move || {
                    let _alive = AliveFlag(Arc::clone(&gate));
                    let mut state = WriterState::default();
                    for op in ops_rx {
                        let n = op.queued_bytes();
                        let result = perform(&store, &mut state, op);
                        gate.release(n);
                        if let Some(done) = result
                            && done_tx.send(done).is_err()
                        {
                            return;
                        }
                    }
                })
                .ok()
        };
        if thread.is_none() {
            gate.writer_alive.store(false, Ordering::Release);
        }
        Stager {
            ops: thread.is_some().then_some(ops_tx),
            done: done_rx,
            gate,
            thread,
            store,
            inline_done: Vec::new(),
            inline_state: WriterState::default(),
        }
    }

    /// Queues `op` (waiting while [`QUEUE_BYTES`] are queued); performs it inline if the writer
    /// is gone, so staging never silently stops.
    pub fn submit(&mut self, op: StageOp) {
        let n = op.queued_bytes();
        let Some(tx) = &self.ops else {
            self.run_inline(op);
            return;
        };
        self.gate.admit(n);
        if let Err(mpsc::SendError(op)) = tx.send(op) {
            self.gate.release(n);
            self.ops = None;
            tracing::error!("the staging writer thread stopped; staging on the receive thread");
            self.run_inline(op);
        }
    }

    fn run_inline(&mut self, op: StageOp) {
        if let Some(done) = perform(&self.store, &mut self.inline_state, op) {
            self.inline_done.push(done);
        }
    }

    /// Results ready now.
    pub fn poll(&mut self) -> Vec<StageDone> {
        let mut out = std::mem::take(&mut self.inline_done);
        out.extend(self.done.try_iter());
        out
    }

    /// Waits for the writer to finish everything queued and returns its last results.
    pub fn finish(&mut self) -> Vec<StageDone> {
        self.ops = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.poll()
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        self.ops = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Clears `writer_alive` when the writer thread ends, however it ends, so a waiting receive
/// thread stops waiting for a drain that cannot come.
struct AliveFlag(Arc<Gate>);

impl Drop for AliveFlag {
    fn drop(&mut self) {
        self.0.writer_alive.store(false, Ordering::Release);
        self.0.drained.notify_all();
    }
}

/// Attempts that failed, whose remaining queued work is skipped. Bounded: an entry is removed
/// when that object's next attempt opens, and at most a few hundred attempts can fail while
/// their queued ops drain.
#[derive(Default)]
struct FailedAttempts(HashSet<([u8; 16], u64)>);

impl FailedAttempts {
    const MAX: usize = 1024;

    fn insert(&mut self, attempt: ([u8; 16], u64)) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(attempt);
    }
}

/// What the writer remembers between operations.
#[derive(Default)]
struct WriterState {
    failed: FailedAttempts,
    /// The frontier of each open attempt that has an early verifier: (generation, frontier).
    /// At most one per staged object, removed when the attempt completes, fails or is released.
    frontiers: HashMap<[u8; 16], (u64, Arc<Frontier>)>,
}

impl WriterState {
    fn frontier(&self, object_id: &[u8; 16], generation: u64) -> Option<&Arc<Frontier>> {
        self.frontiers
            .get(object_id)
            .filter(|(g, _)| *g == generation)
            .map(|(_, f)| f)
    }

    /// Ends the attempt's frontier: its early verifier stops waiting for bytes.
    fn end_frontier(&mut self, object_id: &[u8; 16], abort: bool) {
        if let Some((_, f)) = self.frontiers.remove(object_id)
            && abort
        {
            f.abort();
        }
    }

    fn fail(
        &mut self,
        object_id: [u8; 16],
        generation: u64,
        what: &'static str,
        error: String,
    ) -> Option<StageDone> {
        self.failed.insert((object_id, generation));
        if self.frontier(&object_id, generation).is_some() {
            self.end_frontier(&object_id, true);
        }
        Some(StageDone::Failed {
            object_id,
            generation,
            what,
            error,
        })
    }
}

impl Drop for WriterState {
    /// A writer that stops (shutdown, or a panic) reports no more writes: no early verifier may
    /// keep waiting for them.
    fn drop(&mut self) {
        for (_, (_, f)) in self.frontiers.drain() {
            f.abort();
        }
    }
}

fn perform(store: &Mutex<Store>, state: &mut WriterState, op: StageOp) -> Option<StageDone> {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(attempt) = op.attempt() {
        if matches!(op, StageOp::Open { .. }) {
            state.failed.0.retain(|(id, _)| *id != attempt.0);
        } else if state.failed.0.contains(&attempt) {
            return None;
        }
    }
    match op {
        StageOp::Open {
            object_id,
            generation,
            len,
            frontier,
        } => {
            // A newer attempt replaces an older one's frontier (whose verifier then gives up).
            state.end_frontier(&object_id, true);
            match lock().create_object(object_id, len) {
                Ok(_) => {
                    if let Some(f) = frontier {
                        state.frontiers.insert(object_id, (generation, f));
                    }
                    None
                }
                Err(e) => {
                    if let Some(f) = frontier {
                        f.abort();
                    }
                    state.fail(
                        object_id,
                        generation,
                        "cannot stage a new object",
                        e.to_string(),
                    )
                }
            }
        }
        StageOp::Write {
            object_id,
            generation,
            offset,
            data,
        } => match lock().write_at(object_id, offset, &data) {
            Ok(()) => {
                if let Some(f) = state.frontier(&object_id, generation) {
                    f.written(offset, data.len() as u64);
                }
                None
            }
            Err(e) => state.fail(
                object_id,
                generation,
                "writing a block to staging failed",
                e.to_string(),
            ),
        },
        StageOp::Checkpoint {
            object_id,
            progress,
            ..
        } => {
            // Data first, then the claim: progress must never name a block whose bytes are
            // not durable.
            let mut store = lock();
            let result = store.sync_object(object_id).and_then(|()| match &progress {
                Some(bytes) => store.save_progress(object_id, bytes),
                None => Ok(()),
            });
            result.err().map(|e| StageDone::Warning {
                object_id,
                error: format!("saving progress failed: {e}"),
            })
        }
        StageOp::Complete {
            object_id,
            generation,
            progress,
        } => {
            // Every write is in; the early verifier reads the rest by itself. A frontier short of
            // the end here would leave it waiting for bytes that will never be reported.
            let whole = state.frontier(&object_id, generation).map(|f| f.is_whole());
            let followed = whole == Some(true);
            if whole.is_some() {
                state.end_frontier(&object_id, !followed);
            }
            if followed {
                return Some(StageDone::Synced {
                    object_id,
                    generation,
                });
            }
            let mut store = lock();
            match store.sync_object(object_id) {
                Ok(()) => {
                    // Whole on disk; record that so a crash before the verdict re-verifies
                    // instead of re-receiving.
                    if let Some(bytes) = &progress
                        && let Err(e) = store.save_progress(object_id, bytes)
                    {
                        tracing::warn!(object = %hex::encode(object_id), error = %e,
                            "saving the complete object's progress failed; a restart before \
                             its verdict receives it again");
                    }
                    Some(StageDone::Synced {
                        object_id,
                        generation,
                    })
                }
                Err(e) => {
                    let _ = store.remove_object(object_id);
                    drop(store);
                    state.fail(
                        object_id,
                        generation,
                        "fsync of a complete object failed",
                        e.to_string(),
                    )
                }
            }
        }
        StageOp::Release { object_id } => {
            state.end_frontier(&object_id, true);
            lock()
                .release_object(object_id)
                .err()
                .map(|e| StageDone::Warning {
                    object_id,
                    error: format!("releasing an abandoned object failed: {e}"),
                })
        }
    }
}

#[cfg(test)]
mod tests;
