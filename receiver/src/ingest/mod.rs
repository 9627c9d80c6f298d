//! The one pipeline behind `listen` (UDP) and `import` (spool volumes): frames → the transport
//! [`Receiver`] → staging object in the store → bundle verification → quarantine commit or a
//! recorded rejection.
//!
//! Threads, and why:
//! - the caller's thread owns the [`Receiver`] state machine and performs its effects, except
//!   staging I/O;
//! - one staging writer ([`crate::stager`]) creates, writes, checkpoints and fsyncs staged
//!   objects in effect order, so copying blocks into the page cache (the receive thread's
//!   largest cost) never stops the socket from being drained;
//! - decode workers run RaptorQ [`DecodeTask`]s, the only CPU-heavy step of reception, so a decode
//!   never delays draining the socket;
//! - one verifier thread verifies complete objects and commits them. Verification streams the
//!   whole bundle through blake3 and into an extraction directory (seconds for a large bundle), so
//!   it runs outside the store lock: the lock is taken only to open the object, stage the
//!   extraction, and commit;
//! - up to [`early::MAX_RUNNING`] early verifiers ([`crate::ingest::early`]) do that streaming while an
//!   object still arrives, following the bytes the staging writer has written, so the verifier
//!   thread usually only re-checks freshness and commits. They never decide a rejection.
//!
//! Memory stays bounded: the [`Receiver`] caps buffered symbols, in-flight decodes and queued
//! writes at its budget; the decode queue holds at most `2 × workers` tasks (each already counted
//! in that budget); blocks handed to the staging writer are capped at
//! [`crate::stager::QUEUE_BYTES`] (32 MiB) on top; the verifier queue holds object ids only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver as Rx, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use sluice_host::time::now_unix_ms as unix_ms;

use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::{self, VerifyOptions};
use sluice_common::bundle::{BundleId, RejectReason};
use sluice_common::transport::progress::Progress;
use sluice_common::transport::recv::{
    AbandonReason, DecodeTask, Decoded, Effect, Event, Receiver, ReceiverConfig, ReceiverStats,
};
use sluice_common::transport::wire::LedgerEntry;

pub mod early;
pub mod frontier;
pub mod stager;

use crate::store::{Decision, RejectSubject, Source, Store, StoreError, TransportFigures};
use early::EarlyVerify;
use stager::{StageDone, StageOp, Stager};

/// What became of one object, as reported to the operator and counted in metrics.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub object_id: [u8; 16],
    pub bundle_id: Option<BundleId>,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    pub kind: OutcomeKind,
    pub figures: TransportFigures,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    Accepted {
        path: String,
        /// The files were verified and extracted while the bundle arrived ([`crate::ingest::early`]),
        /// not after its last block.
        verified_early: bool,
    },
    Duplicate,
    Rejected {
        reason: RejectReason,
        detail: String,
    },
    /// Not enough symbols arrived; progress is kept for a later pass or volume.
    Incomplete {
        missing_blocks: u64,
    },
    /// The store failed; the staged object is kept so the next pass can retry.
    StorageError {
        detail: String,
    },
}

impl OutcomeKind {
    /// Stable word for logs, `--json` and metrics.
    pub fn word(&self) -> &'static str {
        match self {
            OutcomeKind::Accepted { .. } => "accepted",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::Rejected { .. } => "rejected",
            OutcomeKind::Incomplete { .. } => "incomplete",
            OutcomeKind::StorageError { .. } => "storage_error",
        }
    }

    /// Whether this ends the object's story (as opposed to "waiting for more").
    pub fn is_decision(&self) -> bool {
        !matches!(
            self,
            OutcomeKind::Incomplete { .. } | OutcomeKind::StorageError { .. }
        )
    }
}

/// The last heartbeat seen, for status and metrics.
#[derive(Clone, Debug)]
pub struct LastHeartbeat {
    pub sender_id: [u8; 16],
    pub sequence: u64,
    pub sent_at_unix_ms: u64,
    pub received_at: Instant,
    pub received_at_unix_ms: u64,
    pub ledger: Vec<LedgerEntry>,
}

/// Per-object transport figures gathered while frames arrive.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    frames: u64,
    repaired_blocks: u64,
    passes: u64,
}

struct VerifyJob {
    object_id: [u8; 16],
    figures: TransportFigures,
    /// A resend of an object this run already completed: record a duplicate, verify nothing.
    replay: bool,
    /// The early verifier that followed this object while it arrived, if one did.
    early: Option<EarlyVerify>,
}

/// What the verifier thread remembers of recent decisions, so a resend of an object it already
/// accepted can be recorded as a duplicate without receiving it again. Bounded like the
/// transport receiver's own memory of completed objects.
#[derive(Default)]
struct RecentDecisions {
    by_object: HashMap<[u8; 16], (BundleId, String, u64)>,
    order: std::collections::VecDeque<[u8; 16]>,
}

impl RecentDecisions {
    const CAPACITY: usize = sluice_common::transport::recv::COMPLETED_MEMORY;

    fn remember(&mut self, outcome: &Outcome) {
        let (Some(bundle), Some(channel), Some(sequence)) =
            (outcome.bundle_id, outcome.channel.clone(), outcome.sequence)
        else {
            return;
        };
        if !matches!(
            outcome.kind,
            OutcomeKind::Accepted { .. } | OutcomeKind::Duplicate
        ) {
            return;
        }
        if self
            .by_object
            .insert(outcome.object_id, (bundle, channel, sequence))
            .is_none()
        {
            self.order.push_back(outcome.object_id);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_object.remove(&old);
            }
        }
    }
}

/// See the module documentation.
pub struct Pipeline {
    receiver: Receiver,
    /// How long an object whose staging failed is refused before a retry (from the config).
    staging_retry: std::time::Duration,
    store: Arc<Mutex<Store>>,
    trust: Arc<TrustStore>,
    /// Early verifiers of objects still arriving (at most [`early::MAX_RUNNING`] running).
    early: HashMap<[u8; 16], EarlyVerify>,
    /// Staging I/O (object files, block writes, checkpoints, the final fsync) in effect order.
    stager: Stager,
    /// The current staging attempt of each object with one (bumped at every Open), so a late
    /// failure of an abandoned attempt cannot end a newer one.
    generations: HashMap<[u8; 16], u64>,
    next_generation: u64,
    source: Source,
    tallies: HashMap<[u8; 16], Tally>,
    decode_tx: Option<SyncSender<DecodeTask>>,
    decoded_rx: Rx<Decoded>,
    decoders: Vec<JoinHandle<()>>,
    verify_tx: Option<SyncSender<VerifyJob>>,
    /// One message per verifier job; `None` for a job that decided nothing worth reporting.
    outcome_rx: Rx<Option<Outcome>>,
    verifier: Option<JoinHandle<()>>,
    pending_verifications: usize,
    /// Decode tasks handed to workers and not yet collected.
    decodes_in_flight: usize,
    /// Complete objects whose verdict was a storage error: (attempts, next try). The object is
    /// whole in staging and the receiver will drop resends of it as late, so the pipeline
    /// retries verification itself with backoff (BUGS.md B2).
    verify_retries: HashMap<[u8; 16], (u32, Option<Instant>)>,
    local_outcomes: Vec<Outcome>,
    last_heartbeat: Option<LastHeartbeat>,
    /// Store failures on the receive path (writes, progress) since start.
    pub storage_errors: u64,
}

/// How many verifications may wait behind the running one. Each waiting one is a complete
/// object on disk, so this bounds nothing in memory; it keeps the receive loop from racing ahead
/// of verification without limit.
const VERIFY_QUEUE: usize = 64;

impl Pipeline {
    /// Starts the pipeline over an opened store, restoring every staged object's progress so a
    /// later pass completes only what is missing (objects whose progress says complete go
    /// straight to verification).
    pub fn start(
        store: Store,
        trust: TrustStore,
        config: ReceiverConfig,
        source: Source,
        decode_workers: usize,
        now: Instant,
    ) -> Result<Pipeline, StoreError> {
        let limits = config.limits;
        let staging_retry = config.staging_retry;
        let mut receiver = Receiver::new(config);
        let staged = store.load_all_progress()?;
        let store = Arc::new(Mutex::new(store));
        let trust = Arc::new(trust);

        let (decode_tx, decode_rx) = mpsc::sync_channel::<DecodeTask>(2 * decode_workers.max(1));
        let decode_rx = Arc::new(Mutex::new(decode_rx));
        let (decoded_tx, decoded_rx) = mpsc::channel::<Decoded>();
        let decoders = (0..decode_workers.max(1))
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

        let (verify_tx, verify_rx) = mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
        let (outcome_tx, outcome_rx) = mpsc::channel::<Option<Outcome>>();
        let verifier = {
            let store = Arc::clone(&store);
            let trust = Arc::clone(&trust);
            std::thread::Builder::new()
                .name("verify".into())
                .spawn(move || {
                    let mut recent = RecentDecisions::default();
                    let mut budget = RecordBudget::new();
                    for job in verify_rx {
                        let outcome = if job.replay {
                            record_replay(&store, &recent, job)
                        } else {
                            Some(verify_and_commit(&store, &trust, &mut budget, job))
                        };
                        if let Some(outcome) = &outcome {
                            recent.remember(outcome);
                        }
                        if outcome_tx.send(outcome).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning the verifier thread")
        };

        let mut pipeline = Pipeline {
            receiver: Receiver::new(ReceiverConfig::new(Default::default())),
            staging_retry,
            stager: Stager::spawn(Arc::clone(&store)),
            trust,
            early: HashMap::new(),
            generations: HashMap::new(),
            next_generation: 0,
            store,
            source,
            tallies: HashMap::new(),
            decode_tx: Some(decode_tx),
            decoded_rx,
            decoders,
            verify_tx: Some(verify_tx),
            outcome_rx,
            verifier: Some(verifier),
            pending_verifications: 0,
            decodes_in_flight: 0,
            verify_retries: HashMap::new(),
            local_outcomes: Vec::new(),
            last_heartbeat: None,
            storage_errors: 0,
        };
        for (object_id, bytes) in staged {
            match Progress::from_bytes(&bytes, &limits) {
                Ok(progress) if progress.is_complete() => {
                    pipeline.enqueue_verification(object_id);
                }
                Ok(progress) => match receiver.restore(now, progress) {
                    // Listed in status (live_transfers) from the start, not only once a frame
                    // for it arrives.
                    Ok(()) => {
                        pipeline.tallies.entry(object_id).or_default();
                    }
                    Err(e) => {
                        tracing::warn!(object = %hex::encode(object_id), error = %e,
                            "staged progress not restored; a later pass starts this object over");
                    }
                },
                Err(e) => {
                    tracing::warn!(object = %hex::encode(object_id), error = %e,
                        "staged progress unreadable; discarding that partial object");
                    let _ = pipeline.lock_store().remove_object(object_id);
                }
            }
        }
        pipeline.receiver = receiver;
        pipeline.drive(now);
        Ok(pipeline)
    }

    fn lock_store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock would be a bug; the store's on-disk state is still
        // consistent (every step is crash-safe), so keep going with it.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One datagram or spool record. Never fails: the state machine counts what it drops.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let before = self.receiver.symbols_accepted();
        self.receiver.handle_datagram(now, datagram);
        if self.receiver.symbols_accepted() != before
            && let Some(id) = datagram.get(4..20)
        {
            let mut object_id = [0u8; 16];
            object_id.copy_from_slice(id);
            self.tallies.entry(object_id).or_default().frames += 1;
        }
        self.drain_effects(now);
    }

    /// Performs queued effects, collects decode results and runs due timeouts. Call after a
    /// batch of datagrams and whenever [`poll_timeout`](Self::poll_timeout) passes.
    pub fn drive(&mut self, now: Instant) {
        let due: Vec<[u8; 16]> = self
            .verify_retries
            .iter_mut()
            .filter(|(_, (_, at))| at.is_some_and(|t| t <= now))
            .map(|(id, (_, at))| {
                *at = None;
                *id
            })
            .collect();
        for id in due {
            tracing::info!(object = %hex::encode(id), "retrying verification after a storage error");
            self.enqueue_verification(id);
        }
        if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
            self.receiver.handle_timeout(now);
        }
        self.collect_decoded(now);
        self.drain_effects(now);
        self.collect_staged(now);
    }

    /// When [`drive`](Self::drive) next has work, if nothing arrives before.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.receiver.poll_timeout()
    }

    /// Outcomes decided since the last call (verifications finish on their own thread).
    pub fn take_outcomes(&mut self) -> Vec<Outcome> {
        let mut out = std::mem::take(&mut self.local_outcomes);
        while let Ok(outcome) = self.outcome_rx.try_recv() {
            self.pending_verifications = self.pending_verifications.saturating_sub(1);
            if let Some(outcome) = outcome {
                self.schedule_retry(&outcome);
                out.push(outcome);
            }
        }
        out
    }

    /// After a verifier storage error on an object still whole in staging, try again with
    /// backoff (2 s doubling to 5 min, 12 tries); any decision ends the retries.
    fn schedule_retry(&mut self, outcome: &Outcome) {
        const MAX_TRIES: u32 = 12;
        let id = outcome.object_id;
        if outcome.kind.is_decision() {
            self.verify_retries.remove(&id);
            return;
        }
        if !matches!(outcome.kind, OutcomeKind::StorageError { .. }) {
            return;
        }
        let staged = self.lock_store().open_object_reader(id).is_ok();
        let tries = self.verify_retries.get(&id).map_or(0, |r| r.0) + 1;
        if !staged || tries > MAX_TRIES {
            self.verify_retries.remove(&id);
            tracing::warn!(object = %hex::encode(id), tries,
                "not retrying verification; a resend after a restart delivers this object");
            return;
        }
        let backoff = std::time::Duration::from_secs((2u64 << (tries - 1).min(8)).min(300));
        self.verify_retries
            .insert(id, (tries, Some(Instant::now() + backoff)));
    }

    /// Verifications queued or running.
    pub fn pending_verifications(&self) -> usize {
        self.pending_verifications
    }

    pub fn stats(&self) -> ReceiverStats {
        self.receiver.stats()
    }

    pub fn buffered_bytes(&self) -> u64 {
        self.receiver.buffered_bytes()
    }

    pub fn session_count(&self) -> usize {
        self.receiver.session_count()
    }

    /// The store the pipeline works on (for callers that stage their own inputs, like
    /// `import`). Lock it only between calls into the pipeline.
    pub fn store(&self) -> Arc<Mutex<Store>> {
        Arc::clone(&self.store)
    }

    pub fn last_heartbeat(&self) -> Option<&LastHeartbeat> {
        self.last_heartbeat.as_ref()
    }

    /// Live objects and how many blocks each still misses.
    pub fn live_objects(&self) -> Vec<([u8; 16], u64, u64)> {
        self.tallies
            .keys()
            .filter_map(|id| {
                let p = self.receiver.progress(id)?;
                Some((*id, p.block_count() - p.done_count(), p.block_count()))
            })
            .collect()
    }

    /// Waits for every in-flight decode, then persists the progress of every live object, so a
    /// restart (or the next import) resumes exactly here.
    pub fn checkpoint_all(&mut self, now: Instant) {
        while self.decodes_in_flight > 0 && self.collect_decoded_blocking(now) {}
        let ids: Vec<[u8; 16]> = self.tallies.keys().copied().collect();
        for id in ids {
            self.checkpoint(id);
        }
    }

    /// Stops the workers after the verifier has finished every queued object, returning the
    /// outcomes not yet taken.
    pub fn finish(mut self) -> Vec<Outcome> {
        self.decode_tx = None;
        // Everything queued for staging lands first; objects it completes still get verified.
        for done in self.stager.finish() {
            if let StageDone::Synced { object_id, .. } = done {
                self.enqueue_verification(object_id);
            } else if let StageDone::Failed {
                object_id, error, ..
            } = done
            {
                self.storage_errors += 1;
                tracing::error!(object = %hex::encode(object_id), %error,
                    "staging failed while stopping; a resend after the restart delivers it");
            }
        }
        // Objects still arriving will not complete in this run: their extractions go now.
        for (_, e) in self.early.drain() {
            e.abort_and_wait();
        }
        self.verify_tx = None;
        if let Some(v) = self.verifier.take() {
            let _ = v.join();
        }
        for d in self.decoders.drain(..) {
            let _ = d.join();
        }
        self.take_outcomes()
    }

    fn collect_decoded(&mut self, now: Instant) {
        loop {
            match self.decoded_rx.try_recv() {
                Ok(decoded) => {
                    self.decodes_in_flight = self.decodes_in_flight.saturating_sub(1);
                    self.receiver.handle_decoded(now, decoded);
                    self.drain_effects(now);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Waits for one decode result; false if none can come.
    fn collect_decoded_blocking(&mut self, now: Instant) -> bool {
        match self
            .decoded_rx
            .recv_timeout(std::time::Duration::from_secs(5))
        {
            Ok(decoded) => {
                self.decodes_in_flight = self.decodes_in_flight.saturating_sub(1);
                self.receiver.handle_decoded(now, decoded);
                self.drain_effects(now);
                true
            }
            Err(_) => false,
        }
    }

    fn drain_effects(&mut self, now: Instant) {
        while let Some(effect) = self.receiver.poll_effect() {
            self.perform(now, effect);
        }
        while let Some(event) = self.receiver.poll_event() {
            self.note_event(now, event);
        }
    }

    fn perform(&mut self, now: Instant, effect: Effect) {
        match effect {
            Effect::Open { params } => {
                self.tallies.entry(params.object_id).or_default();
                self.next_generation += 1;
                let generation = self.next_generation;
                self.generations.insert(params.object_id, generation);
                let frontier = self
                    .start_early(params.object_id, params.object_len)
                    .map(|e| e.frontier());
                self.stager.submit(StageOp::Open {
                    object_id: params.object_id,
                    generation,
                    len: params.object_len,
                    frontier,
                });
            }
            Effect::Write {
                object_id,
                offset,
                data,
                ..
            } => {
                let generation = self.generation(object_id);
                self.stager.submit(StageOp::Write {
                    object_id,
                    generation,
                    offset,
                    data,
                });
            }
            Effect::Decode(task) => {
                self.tallies
                    .entry(task.object_id())
                    .or_default()
                    .repaired_blocks += 1;
                let task = match &self.decode_tx {
                    Some(tx) => match tx.try_send(task) {
                        Ok(()) => {
                            self.decodes_in_flight += 1;
                            None
                        }
                        Err(mpsc::TrySendError::Full(task))
                        | Err(mpsc::TrySendError::Disconnected(task)) => Some(task),
                    },
                    None => Some(task),
                };
                // Workers busy: decode here rather than queue without bound. This is the
                // back-pressure that keeps the budget honest.
                if let Some(task) = task {
                    let decoded = task.run();
                    self.receiver.handle_decoded(now, decoded);
                }
            }
            Effect::Checkpoint { object_id } => self.checkpoint(object_id),
            Effect::Complete { object_id, .. } => {
                let generation = self.generation(object_id);
                let progress = self.receiver.progress(&object_id).map(|p| p.to_bytes());
                self.stager.submit(StageOp::Complete {
                    object_id,
                    generation,
                    progress,
                });
            }
            Effect::Incomplete {
                object_id,
                missing_blocks,
            } => {
                self.checkpoint(object_id);
                let figures = self.figures(object_id);
                let detail = format!(
                    "the last pass ended with {missing_blocks} block(s) short of symbols; \
                     progress is kept and the next pass or resend completes only those"
                );
                let recorded =
                    self.lock_store()
                        .record_incomplete(object_id, &detail, figures.clone());
                if let Err(e) = recorded {
                    self.storage_errors += 1;
                    tracing::error!(error = %e, "recording an incomplete transfer failed");
                }
                self.report(Outcome {
                    object_id,
                    bundle_id: None,
                    channel: None,
                    sequence: None,
                    kind: OutcomeKind::Incomplete { missing_blocks },
                    figures,
                });
            }
            Effect::Replayed { object_id } => {
                let figures = self.figures(object_id);
                if let Some(tx) = &self.verify_tx
                    && tx
                        .send(VerifyJob {
                            object_id,
                            figures,
                            replay: true,
                            early: None,
                        })
                        .is_ok()
                {
                    self.pending_verifications += 1;
                }
            }
            Effect::Abandoned {
                object_id,
                reason,
                missing_blocks,
            } => {
                let why = match reason {
                    AbandonReason::IdleTimeout => "no valid frame arrived within the idle timeout",
                    AbandonReason::Deadline => "it was still incomplete at its absolute deadline",
                };
                tracing::warn!(object = %hex::encode(object_id), missing_blocks,
                    "transfer abandoned: {why}; saved progress (if any) is kept for a later resend");
                // Close its file and, when nothing was saved, free its staging reservation
                // (after its queued writes).
                self.stager.submit(StageOp::Release { object_id });
                self.generations.remove(&object_id);
                self.early.remove(&object_id);
                let figures = self.figures(object_id);
                self.tallies.remove(&object_id);
                self.report(Outcome {
                    object_id,
                    bundle_id: None,
                    channel: None,
                    sequence: None,
                    kind: OutcomeKind::Incomplete { missing_blocks },
                    figures,
                });
            }
        }
    }

    fn note_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Heartbeat {
                sender_id,
                sequence,
                sent_at_unix_ms,
                ledger,
            } => {
                self.last_heartbeat = Some(LastHeartbeat {
                    sender_id,
                    sequence,
                    sent_at_unix_ms,
                    received_at: now,
                    received_at_unix_ms: unix_ms(),
                    ledger,
                });
            }
            Event::PassEnded {
                object_id,
                pass,
                passes,
                missing_blocks,
            } => {
                let tally = self.tallies.entry(object_id).or_default();
                tally.passes = tally.passes.max(u64::from(pass));
                tracing::info!(object = %hex::encode(object_id), pass, passes, missing_blocks,
                    "sender finished a pass");
            }
        }
    }

    fn checkpoint(&mut self, object_id: [u8; 16]) {
        let Some(progress) = self.receiver.progress(&object_id) else {
            return;
        };
        let generation = self.generation(object_id);
        self.stager.submit(StageOp::Checkpoint {
            object_id,
            generation,
            progress: Some(progress.to_bytes()),
        });
    }

    /// The object's current staging attempt (0 if it never opened one in this run: restored).
    fn generation(&self, object_id: [u8; 16]) -> u64 {
        self.generations.get(&object_id).copied().unwrap_or(0)
    }

    /// Results of the staging writer: a complete object goes to verification; a failed
    /// attempt (if still the current one) ends the session until its retry.
    fn collect_staged(&mut self, now: Instant) {
        for done in self.stager.poll() {
            match done {
                StageDone::Synced {
                    object_id,
                    generation,
                } => {
                    if self.generations.get(&object_id) == Some(&generation) {
                        self.generations.remove(&object_id);
                    }
                    self.enqueue_verification(object_id);
                }
                StageDone::Failed {
                    object_id,
                    generation,
                    what,
                    error,
                } => {
                    if self.generation(object_id) == generation {
                        self.generations.remove(&object_id);
                        self.staging_failed(now, object_id, what, &error);
                        self.drain_effects(now);
                    }
                }
                StageDone::Warning { object_id, error } => {
                    self.storage_errors += 1;
                    tracing::error!(object = %hex::encode(object_id), %error, "staging");
                }
            }
        }
    }

    fn figures(&self, object_id: [u8; 16]) -> TransportFigures {
        let tally = self.tallies.get(&object_id).copied().unwrap_or_default();
        TransportFigures {
            frames: tally.frames,
            lost_frames: 0,
            bad_frames: {
                let s = self.receiver.stats();
                s.bad_tag + s.malformed
            },
            repaired_blocks: tally.repaired_blocks,
            passes: tally.passes.max(1),
            source: self.source,
        }
    }

    /// Starts an early verifier for a newly opened object when a slot is free.
    fn start_early(&mut self, object_id: [u8; 16], len: u64) -> Option<&EarlyVerify> {
        // A newer attempt of the same object replaces the older one's verifier.
        self.early.remove(&object_id);
        let running = self.early.values().filter(|e| e.is_running()).count();
        if running >= early::MAX_RUNNING {
            return None;
        }
        let verifier = EarlyVerify::spawn(
            Arc::clone(&self.store),
            Arc::clone(&self.trust),
            object_id,
            len,
        )?;
        Some(self.early.entry(object_id).or_insert(verifier))
    }

    fn enqueue_verification(&mut self, object_id: [u8; 16]) {
        let figures = self.figures(object_id);
        self.tallies.remove(&object_id);
        let early = self.early.remove(&object_id);
        if let Some(tx) = &self.verify_tx {
            // Blocking here (queue full) is intentional back-pressure: 64 complete objects are
            // already waiting on disk.
            if tx
                .send(VerifyJob {
                    object_id,
                    figures,
                    replay: false,
                    early,
                })
                .is_ok()
            {
                self.pending_verifications += 1;
            }
        }
    }

    /// Staging an object failed (disk full, quota, I/O error). The transport drops the session
    /// and its frames for `staging_retry`, then the next frame retries from scratch, so space
    /// freed while the listener runs is used by the next pass or resend (no restart). One error
    /// line and one `storage_error` outcome per attempt, not one per block.
    fn staging_failed(&mut self, now: Instant, object_id: [u8; 16], what: &str, e: &str) {
        self.storage_errors += 1;
        self.receiver.handle_staging_failed(now, object_id);
        self.stager.submit(StageOp::Release { object_id });
        self.early.remove(&object_id);
        let figures = self.figures(object_id);
        self.tallies.remove(&object_id);
        let detail = format!(
            "{what}: {e}; its frames are dropped for {} s, then the next pass or resend \
             retries staging",
            self.staging_retry.as_secs()
        );
        self.report(Outcome {
            object_id,
            bundle_id: None,
            channel: None,
            sequence: None,
            kind: OutcomeKind::StorageError { detail },
            figures,
        });
    }

    /// Outcomes decided on this thread (incomplete, abandoned) queue beside the verifier's.
    fn report(&mut self, outcome: Outcome) {
        log_outcome(&outcome);
        self.local_outcomes.push(outcome);
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.decode_tx = None;
        self.verify_tx = None;
    }
}

/// Records a resend of an object this run already decided. Only accepted bundles get a
/// `duplicate` record: a replayed capture of something rejected is counted in metrics but not
/// written again, so replaying garbage cannot grow the audit log.
fn record_replay(
    store: &Mutex<Store>,
    recent: &RecentDecisions,
    job: VerifyJob,
) -> Option<Outcome> {
    let (bundle, channel, sequence) = recent.by_object.get(&job.object_id)?.clone();
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    let kind = match store.record_duplicate(
        &bundle,
        Some((&channel, sequence, "")),
        job.figures.clone(),
    ) {
        Ok(_) => OutcomeKind::Duplicate,
        Err(e) => OutcomeKind::StorageError {
            detail: e.to_string(),
        },
    };
    let outcome = Outcome {
        object_id: job.object_id,
        bundle_id: Some(bundle),
        channel: Some(channel),
        sequence: Some(sequence),
        kind,
        figures: job.figures,
    };
    log_outcome(&outcome);
    Some(outcome)
}

/// Verifies a complete staged object and commits or rejects it. Runs on the verifier thread.
fn verify_and_commit(
    store: &Mutex<Store>,
    trust: &TrustStore,
    budget: &mut RecordBudget,
    job: VerifyJob,
) -> Outcome {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let VerifyJob {
        object_id,
        figures,
        early: early_job,
        ..
    } = job;
    let mut outcome = Outcome {
        object_id,
        bundle_id: None,
        channel: None,
        sequence: None,
        kind: OutcomeKind::Duplicate,
        figures: figures.clone(),
    };
    let storage = |e: StoreError| OutcomeKind::StorageError {
        detail: e.to_string(),
    };

    // 1. Read the header (no trust decision yet) for the id, channel and sequence.
    let reader = match lock().open_object_reader(object_id) {
        Ok(r) => r,
        Err(e) => {
            outcome.kind = storage(e);
            log_outcome(&outcome);
            return outcome;
        }
    };
    let header = verify::inspect(std::io::BufReader::new(reader));
    let (envelope, header) = match header {
        Ok(h) => h,
        Err(e) => {
            outcome.kind = reject(
                &mut lock(),
                budget,
                &RejectSubject {
                    object_id: Some(object_id),
                    bundle_id: None,
                    channel: None,
                    sequence: None,
                },
                e.reason,
                &e.detail,
                &figures,
            );
            log_outcome(&outcome);
            return outcome;
        }
    };
    outcome.bundle_id = Some(envelope.id);
    outcome.channel = Some(header.channel.clone());
    outcome.sequence = Some(header.sequence);
    let subject = RejectSubject {
        object_id: Some(object_id),
        bundle_id: Some(envelope.id),
        channel: Some(header.channel.clone()),
        sequence: Some(header.sequence),
    };
    if envelope.id.object_id() != object_id {
        // A transport object must carry the bundle it names: anything else is a sender bug or a
        // mix-and-match attempt, and would defeat duplicate detection.
        outcome.kind = reject(
            &mut lock(),
            budget,
            &subject,
            RejectReason::Malformed,
            "the transport object id does not match the bundle inside it",
            &figures,
        );
        log_outcome(&outcome);
        return outcome;
    }

    // 2. Already accepted: record the replay and skip the work.
    {
        let mut store = lock();
        if store.is_accepted(&envelope.id) {
            outcome.kind = match store.record_duplicate(
                &envelope.id,
                Some((&header.channel, header.sequence, "")),
                figures.clone(),
            ) {
                Ok(_) => OutcomeKind::Duplicate,
                Err(e) => storage(e),
            };
            log_outcome(&outcome);
            return outcome;
        }
    }

    // 3. Verification. An early verifier that followed the object while it arrived has usually
    //    streamed it already: its work counts only if it succeeded, names this bundle and the
    //    freshness rules (expiry, sequence) still hold now. Anything else is verified here from
    //    the start, into a private extraction, outside the store lock.
    let now_secs = unix_ms() / 1000;
    let mut verified_early = false;
    let mut done_early = None;
    if let Some(early) = early_job {
        match early.join() {
            Ok((verified, extraction)) => {
                let fresh = lock()
                    .high_water_mark(&header.channel)
                    .map_err(|e| e.to_string())
                    .and_then(|last_sequence| {
                        let options = VerifyOptions {
                            now: now_secs,
                            last_sequence,
                        };
                        verify::recheck_freshness(&verified, trust, &options)
                            .map_err(|e| e.to_string())
                    });
                match fresh {
                    Ok(()) if verified.id() == envelope.id => {
                        verified_early = true;
                        done_early = Some((Ok(verified), extraction));
                    }
                    Ok(()) => extraction.discard(),
                    Err(why) => {
                        tracing::debug!(object = %hex::encode(object_id), %why,
                            "early verification no longer holds; verifying the complete object");
                        extraction.discard();
                    }
                }
            }
            Err(why) => {
                tracing::debug!(object = %hex::encode(object_id), %why,
                    "early verification gave up; verifying the complete object");
            }
        }
    }
    let (verified, extraction) = match done_early {
        Some(done) => done,
        None => {
            let (reader, extraction, last_sequence) = {
                let store = lock();
                let staged = store.open_object_reader(object_id).and_then(|reader| {
                    let extraction = store.stage_extract()?;
                    Ok((reader, extraction))
                });
                let last = store.high_water_mark(&header.channel);
                match (staged, last) {
                    (Ok((r, x)), Ok(last)) => (r, x, last),
                    (Err(e), _) | (_, Err(e)) => {
                        drop(store);
                        outcome.kind = storage(e);
                        log_outcome(&outcome);
                        return outcome;
                    }
                }
            };
            let mut extraction = extraction;
            let options = VerifyOptions {
                now: now_secs,
                last_sequence,
            };
            let verified = verify::verify(
                std::io::BufReader::with_capacity(1 << 20, reader),
                trust,
                &options,
                &mut extraction,
            );
            (verified, extraction)
        }
    };
    let require_increasing = trust
        .rule(&header.channel)
        .is_some_and(|r| r.require_increasing_sequence);
    outcome.kind = match verified {
        Ok(verified) => {
            match lock().commit(extraction, &verified, require_increasing, figures.clone()) {
                Ok(Decision::Accepted { path }) => OutcomeKind::Accepted {
                    path: path.display().to_string(),
                    verified_early,
                },
                Ok(Decision::Duplicate { .. }) => OutcomeKind::Duplicate,
                Ok(Decision::Rejected { reason, detail }) => {
                    OutcomeKind::Rejected { reason, detail }
                }
                Err(e) => storage(e),
            }
        }
        Err(e) => {
            let storage_failure = extraction.storage_failure().map(str::to_string);
            extraction.discard();
            match (e.reason, storage_failure) {
                // The disk failed, not the bundle: keep the object for the next pass.
                (RejectReason::StorageError, Some(detail)) => OutcomeKind::StorageError { detail },
                (reason, _) => reject(&mut lock(), budget, &subject, reason, &e.detail, &figures),
            }
        }
    };
    log_outcome(&outcome);
    outcome
}

/// How many records of *unauthenticated* rejections the store writes: a burst of
/// [`RecordBudget::BURST`], refilled at that many per hour.
///
/// With the public default link key anyone can make the receiver assemble one-frame junk objects
/// that fail before any signature verified (malformed, truncated, bad signature, unknown signer).
/// Recording each would let a flood grow `rejected/` and `audit.jsonl` without bound (research
/// P8). Past the budget such objects are still discarded and counted (metrics, status, `--json`),
/// just not written to disk. Rejections of bundles a trusted signer really signed are always
/// recorded: those are rare and matter.
pub struct RecordBudget {
    tokens: f64,
    refilled_at: Instant,
    suppressed: u64,
    warned_at: Option<Instant>,
}

impl Default for RecordBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordBudget {
    pub const BURST: f64 = 200.0;
    const PER_SECOND: f64 = Self::BURST / 3600.0;

    pub fn new() -> Self {
        RecordBudget {
            tokens: Self::BURST,
            refilled_at: Instant::now(),
            suppressed: 0,
            warned_at: None,
        }
    }

    /// Whether a rejection for `reason` may be written.
    fn allow(&mut self, reason: RejectReason) -> bool {
        let unauthenticated = matches!(
            reason,
            RejectReason::Malformed
                | RejectReason::Truncated
                | RejectReason::BadSignature
                | RejectReason::UnknownSigner
                | RejectReason::WeakKey
        );
        if !unauthenticated {
            return true;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled_at).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + earned).min(Self::BURST);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        self.suppressed += 1;
        if self
            .warned_at
            .is_none_or(|t| now.duration_since(t).as_secs() >= 60)
        {
            self.warned_at = Some(now);
            tracing::warn!(
                suppressed = self.suppressed,
                "many unauthenticated objects are failing verification (a flood, or a sender with \
                 the wrong link key?); their records are no longer written, only counted"
            );
        }
        false
    }
}

fn reject(
    store: &mut Store,
    budget: &mut RecordBudget,
    subject: &RejectSubject,
    reason: RejectReason,
    detail: &str,
    figures: &TransportFigures,
) -> OutcomeKind {
    if !budget.allow(reason) {
        if let Some(id) = subject.object_id {
            let _ = store.remove_object(id);
        }
        return OutcomeKind::Rejected {
            reason,
            detail: format!(
                "{detail} (not recorded: over the budget for unauthenticated rejections)"
            ),
        };
    }
    match store.reject(subject, reason, detail, Some(figures.clone())) {
        Ok(_) => OutcomeKind::Rejected {
            reason,
            detail: detail.to_string(),
        },
        Err(e) => OutcomeKind::StorageError {
            detail: format!("rejecting ({reason}: {detail}) failed to record: {e}"),
        },
    }
}

fn log_outcome(outcome: &Outcome) {
    let object = hex::encode(outcome.object_id);
    let bundle = outcome.bundle_id.map(|b| b.to_hex()).unwrap_or_default();
    let channel = outcome.channel.clone().unwrap_or_default();
    match &outcome.kind {
        OutcomeKind::Accepted {
            path,
            verified_early,
        } => tracing::info!(decision = "accepted", %bundle, %channel,
            sequence = outcome.sequence, %path, verified_early, frames = outcome.figures.frames,
            repaired_blocks = outcome.figures.repaired_blocks, "bundle accepted into quarantine"),
        OutcomeKind::Duplicate => tracing::info!(decision = "duplicate", %bundle, %channel,
            "bundle already in quarantine; recorded as a duplicate, no second copy"),
        OutcomeKind::Rejected { reason, detail } => tracing::warn!(decision = "rejected", %bundle,
            %object, %channel, reason = reason.code(), %detail, "bundle rejected"),
        OutcomeKind::Incomplete { missing_blocks } => tracing::warn!(decision = "incomplete",
            %object, missing_blocks, "transfer ended short of symbols; progress kept for the next pass"),
        OutcomeKind::StorageError { detail } => tracing::error!(decision = "storage_error",
            %object, %detail, "store failure; the detail says what is kept and what is retried"),
    }
}

/// Opens the store and trust directory with the errors an operator can act on.
pub fn open_store(dir: &Path, staging_quota_bytes: u64) -> Result<Store, StoreError> {
    Store::open(
        dir,
        crate::store::StoreConfig {
            staging_quota_bytes,
        },
    )
}
