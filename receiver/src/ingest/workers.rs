//! The threads the pipeline starts: a pool of RaptorQ decode workers and the one verifier
//! thread (with its memory of recent decisions, so a resend of an object it already accepted is
//! recorded as a duplicate without receiving it again).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver as Rx, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use sluice_common::bundle::BundleId;
use sluice_common::bundle::trust::TrustStore;
use sluice_common::transport::recv::{DecodeTask, Decoded};
use sluice_host::time::now_unix_ms;

use super::budget::RecordBudget;
use super::commit::{VerifyJob, verify_and_commit};
use super::outcome::{Outcome, OutcomeKind, log_outcome};
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

/// The verifier thread: jobs in, one message per job out (`None` for a job that decided nothing
/// worth reporting).
pub(super) struct Verifier {
    pub(super) tx: SyncSender<VerifyJob>,
    pub(super) rx: Rx<Option<Outcome>>,
    pub(super) thread: JoinHandle<()>,
}

/// Starts the verifier thread. It stops when `tx` is dropped, after the queued jobs.
pub(super) fn spawn_verifier(store: Arc<Mutex<Store>>, trust: Arc<TrustStore>) -> Verifier {
    let (verify_tx, verify_rx) = mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
    let (outcome_tx, outcome_rx) = mpsc::channel::<Option<Outcome>>();
    let thread = std::thread::Builder::new()
        .name("verify".into())
        .spawn(move || {
            let mut recent = RecentDecisions::default();
            let mut budget = RecordBudget::new(Instant::now());
            for job in verify_rx {
                let outcome = if job.replay {
                    record_replay(&store, &recent, job)
                } else {
                    // This thread's clocks, read once per object at the edge.
                    let now = Instant::now();
                    let now_unix = now_unix_ms() / 1000;
                    Some(verify_and_commit(
                        &store,
                        &trust,
                        &mut budget,
                        job,
                        now,
                        now_unix,
                    ))
                };
                if let Some(outcome) = &outcome {
                    recent.remember(outcome);
                }
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

/// What the verifier thread remembers of recent decisions, so a resend of an object it already
/// accepted can be recorded as a duplicate without receiving it again. Bounded like the
/// transport receiver's own memory of completed objects.
#[derive(Default)]
struct RecentDecisions {
    by_object: HashMap<[u8; 16], (BundleId, String, u64)>,
    order: VecDeque<[u8; 16]>,
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
