//! [`Pipeline`]: the caller's side of the ingest path. It owns the transport [`Receiver`] and
//! performs its effects: an object's first bytes are authenticated here (signature over the raw
//! prefix and header, then [`Admission`](sluice_common::admission::Admission)) before anything of
//! it is staged, staging I/O goes to the staging writer, decodes to the worker pool (never run on
//! this thread: a full queue defers them), complete objects to the verifier thread; outcomes
//! come back to the caller. It keeps the per-object transport figures that end up in receipts
//! and audit records.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver as Rx, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use sluice_common::admission::Counters;
use sluice_common::bundle::trust::TrustStore;
use sluice_common::transport::progress::Progress;
use sluice_common::transport::recv::{
    AbandonReason, Decoded, Effect, Event, Handled, Receiver, ReceiverConfig, ReceiverStats,
};
use sluice_host::time::now_unix_ms as unix_ms;

use super::admit::Admit;
use super::commit::VerifyJob;
use super::early::{self, EarlyVerify};
use super::first_bytes::{self, FirstBytes};
use super::outcome::{LastHeartbeat, Outcome, OutcomeKind, Tally, log_outcome};
use super::stager::{StageDone, StageOp, Stager};
use super::workers::{self, DecodeQueue, Decoders, Room, Verifier};
use crate::store::{Source, Store, StoreError, TransportFigures};

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
    /// Decode tasks to the workers (never run on this thread; a full queue defers them).
    decodes: DecodeQueue,
    decoded_rx: Rx<Decoded>,
    decoders: Vec<JoinHandle<()>>,
    verify_tx: Option<SyncSender<VerifyJob>>,
    /// One message per verifier job; `None` for a job that decided nothing worth reporting.
    outcome_rx: Rx<Option<Outcome>>,
    verifier: Option<JoinHandle<()>>,
    pending_verifications: usize,
    /// Admission (decisions, record budget, retries), shared with the verifier thread.
    gate: Arc<Admit>,
    /// The latest `now` the caller passed in (for work done in calls that take no time, like
    /// [`Pipeline::take_outcomes`]).
    now: Instant,
    local_outcomes: Vec<Outcome>,
    last_heartbeat: Option<LastHeartbeat>,
    /// Store failures on the receive path (writes, progress) since start.
    pub storage_errors: u64,
}

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

        let gate = Arc::new(Admit::new(now));
        let decoders = workers::spawn_decoders(decode_workers);
        let verifier =
            workers::spawn_verifier(Arc::clone(&store), Arc::clone(&trust), Arc::clone(&gate));
        let Decoders {
            tx: decode_tx,
            rx: decoded_rx,
            threads: decoders,
        } = decoders;
        let Verifier {
            tx: verify_tx,
            rx: outcome_rx,
            thread: verifier,
        } = verifier;

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
            decodes: DecodeQueue::new(decode_tx),
            decoded_rx,
            decoders,
            verify_tx: Some(verify_tx),
            outcome_rx,
            verifier: Some(verifier),
            pending_verifications: 0,
            gate,
            now,
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
        self.now = self.now.max(now);
        if let Handled::Stored {
            object_id,
            lost_frames,
        } = self.receiver.handle_datagram(now, datagram)
        {
            let tally = self.tallies.entry(object_id).or_default();
            tally.frames += 1;
            tally.lost_frames = lost_frames;
        }
        self.drain_effects(now);
    }

    /// Performs queued effects, collects decode results and runs due timeouts. Call after a
    /// batch of datagrams and whenever [`poll_timeout`](Self::poll_timeout) passes.
    pub fn drive(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let ms = self.gate.ms(now);
        loop {
            let due = self.gate.lock().take_due_retry(ms);
            let Some(id) = due else { break };
            tracing::info!(object = %hex::encode(id), "retrying verification after a storage error");
            self.enqueue_verification(id);
        }
        self.decodes.flush();
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
                out.push(outcome);
            }
        }
        out
    }

    /// Admission's counters: every decision, recorded or not (unauthenticated refusals, records
    /// suppressed by the budget or the per-bundle window, replays, retries).
    pub fn admission_counters(&self) -> Counters {
        self.gate.counters()
    }

    /// Decode tasks that had to wait for a worker, since start.
    pub fn decodes_deferred(&self) -> u64 {
        self.decodes.deferred_total
    }

    /// Bytes the transport receiver holds for unauthenticated sessions.
    pub fn unauthenticated_bytes(&self) -> u64 {
        self.receiver.unauthenticated_bytes()
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

    /// Waits until the transport holds at most `room.total` bytes, and unauthenticated sessions at
    /// most `room.unauthenticated`, or until waiting cannot free any (no decode outstanding). For
    /// a caller that can pause its input, as `import` can: media have no deadline, so decodes
    /// falling behind on a busy machine must not fill the budget (or an unauthenticated object's
    /// share while its first block decodes) and evict blocks whose symbols do not come again in
    /// this run (`media_e2e.rs::losing_any_one_of_four_volumes_is_survivable` lost blocks so).
    pub fn wait_for_room(&mut self, now: Instant, room: Room) {
        while self.receiver.buffered_bytes() > room.total
            || self.receiver.unauthenticated_bytes() > room.unauthenticated
        {
            self.decodes.flush();
            if self.decodes.in_flight == 0 || !self.collect_decoded_blocking(now) {
                return;
            }
        }
    }

    /// Waits for every in-flight decode, then persists the progress of every live object, so a
    /// restart (or the next import) resumes exactly here.
    pub fn checkpoint_all(&mut self, now: Instant) {
        // Shutting down: waiting for a queue slot is fine now.
        self.decodes.flush_blocking();
        while self.decodes.in_flight > 0 && self.collect_decoded_blocking(now) {}
        let ids: Vec<[u8; 16]> = self.tallies.keys().copied().collect();
        for id in ids {
            self.checkpoint(id);
        }
    }

    /// Stops the workers after the verifier has finished every queued object, returning the
    /// outcomes not yet taken.
    pub fn finish(mut self) -> Vec<Outcome> {
        self.decodes.close();
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
                    self.decodes.in_flight = self.decodes.in_flight.saturating_sub(1);
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
                self.decodes.in_flight = self.decodes.in_flight.saturating_sub(1);
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
                self.tallies
                    .entry(params.object_id)
                    .or_default()
                    .object_bytes = params.object_len;
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
                self.decodes.submit(task);
            }
            Effect::Authenticate {
                object_id,
                prefix,
                complete,
            } => self.authenticate(now, object_id, &prefix, complete),
            Effect::Forgotten { object_id } => {
                // An unauthenticated session dropped: nothing was staged or recorded.
                self.tallies.remove(&object_id);
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
                // The end frame that ended the pass is not signed: the record is budgeted
                // (common/src/admission, `handle_incomplete`); the log line and outcome stay.
                let ms = self.gate.ms(now);
                let may_record = self.gate.lock().handle_incomplete(ms, object_id);
                let recorded = if may_record {
                    self.lock_store()
                        .record_incomplete(object_id, &detail, figures.clone())
                } else {
                    Ok(())
                };
                if let Err(e) = recorded {
                    self.storage_errors += 1;
                    tracing::error!(error = %e, "recording an incomplete transfer failed");
                }
                self.report_incomplete(object_id, missing_blocks, figures);
            }
            Effect::Replayed { object_id } => {
                // Frames naming an object this run completed, not verified again: counted only
                // (a duplicate is recorded only when a resend authenticates again).
                let ms = self.gate.ms(now);
                self.gate.lock().handle_replay(ms, object_id);
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
                self.report_incomplete(object_id, missing_blocks, figures);
            }
        }
    }

    /// The start of an unauthenticated object grew: [`first_bytes::decide`] checks it; only an
    /// object it lets proceed is authenticated in the transport (and so staged).
    fn authenticate(&mut self, now: Instant, object_id: [u8; 16], prefix: &[u8], complete: bool) {
        let verdict = first_bytes::decide(
            &self.store,
            &self.trust,
            &self.gate,
            now,
            object_id,
            prefix,
            complete,
            || self.figures(object_id),
        );
        match verdict {
            FirstBytes::Wait => {}
            FirstBytes::Stage => {
                self.receiver.authenticate(now, object_id);
            }
            FirstBytes::Refuse { outcome, failed } => {
                self.receiver.refuse(object_id);
                self.tallies.remove(&object_id);
                self.storage_errors += failed;
                if let Some(outcome) = outcome {
                    self.report(outcome);
                }
            }
        }
    }

    /// A transfer that ended short of symbols: no bundle is known yet, so nothing but the
    /// object, the blocks still missing and its transport figures.
    fn report_incomplete(
        &mut self,
        object_id: [u8; 16],
        missing_blocks: u64,
        figures: TransportFigures,
    ) {
        self.report(Outcome {
            object_id,
            bundle_id: None,
            channel: None,
            sequence: None,
            kind: OutcomeKind::Incomplete { missing_blocks },
            figures,
        });
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
        let s = self.receiver.stats();
        let tally = self.tallies.get(&object_id).copied().unwrap_or_default();
        tally.figures(s.bad_tag + s.malformed, self.source)
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
        self.decodes.close();
        self.verify_tx = None;
    }
}
