//! The verifier thread's decision for one complete staged object: read its header, skip a
//! known duplicate, take over an early verifier's work if it still holds (or verify from the
//! start), then commit or record the rejection. Every branch ends in exactly one [`Outcome`].

use std::sync::Mutex;
use std::time::Instant;

use sluice_common::bundle::RejectReason;
use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::{self, VerifyOptions};

use super::budget::RecordBudget;
use super::early::EarlyVerify;
use super::outcome::{Outcome, OutcomeKind, log_outcome};
use crate::store::{Decision, RejectSubject, Store, StoreError, TransportFigures};

/// One complete object for the verifier thread.
pub(super) struct VerifyJob {
    pub(super) object_id: [u8; 16],
    pub(super) figures: TransportFigures,
    /// A resend of an object this run already completed: record a duplicate, verify nothing.
    pub(super) replay: bool,
    /// The early verifier that followed this object while it arrived, if one did.
    pub(super) early: Option<EarlyVerify>,
}

/// Verifies a complete staged object and commits or rejects it. Runs on the verifier thread;
/// `now` and `now_unix` (seconds) are read there once per object.
pub(super) fn verify_and_commit(
    store: &Mutex<Store>,
    trust: &TrustStore,
    budget: &mut RecordBudget,
    job: VerifyJob,
    now: Instant,
    now_unix: u64,
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
                now,
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
            now,
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
                            now: now_unix,
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
                now: now_unix,
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
                (reason, _) => reject(
                    &mut lock(),
                    budget,
                    &subject,
                    reason,
                    &e.detail,
                    &figures,
                    now,
                ),
            }
        }
    };
    log_outcome(&outcome);
    outcome
}

/// Records a rejection unless it is an unauthenticated one over the [`RecordBudget`]; either
/// way the staged object goes.
fn reject(
    store: &mut Store,
    budget: &mut RecordBudget,
    subject: &RejectSubject,
    reason: RejectReason,
    detail: &str,
    figures: &TransportFigures,
    now: Instant,
) -> OutcomeKind {
    if !budget.allow(reason, now) {
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
