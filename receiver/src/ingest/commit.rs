//! The verifier thread's decision for one complete staged object: authenticate its first bytes
//! (the signature over the raw prefix and header, before anything in them is decoded), ask
//! [`Admission`](sluice_common::admission::Admission) about the signed facts, take over an early
//! verifier's work if it still holds (or verify from the start), ask again with the [`Verified`]
//! facts, then commit, record within the budget, or only count. Every branch ends in at most one
//! [`Outcome`]; unauthenticated refusals end in none (they are counted, never recorded or logged).
//!
//! [`Verified`]: sluice_common::bundle::Verified

use std::time::Instant;

use sluice_common::admission::{Class, Decision as Admit, Refused};
use sluice_common::bundle::RejectReason;
use sluice_common::bundle::auth::{self, AuthStep, DEFAULT_MAX_HEADER_BYTES, Refusal};
use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::{self, VerifyOptions};

use super::admit::{self, Admit as Gate};
use super::early::EarlyVerify;
use super::outcome::{Outcome, OutcomeKind, log_outcome};
use crate::store::{Decision, RejectSubject, Store, TransportFigures};

/// One complete object for the verifier thread.
pub(super) struct VerifyJob {
    pub(super) object_id: [u8; 16],
    pub(super) figures: TransportFigures,
    /// The early verifier that followed this object while it arrived, if one did.
    pub(super) early: Option<EarlyVerify>,
}

/// Verifies a complete staged object and commits, rejects or drops it. Runs on the verifier
/// thread; `now` and `now_unix` (seconds) are read there once per object.
pub(super) fn verify_and_commit(
    store: &std::sync::Mutex<Store>,
    trust: &TrustStore,
    gate: &Gate,
    job: VerifyJob,
    now: Instant,
    now_unix: u64,
) -> Option<Outcome> {
    let store_mutex = store;
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let ms = gate.ms(now);
    let VerifyJob {
        object_id,
        figures,
        early: early_job,
    } = job;
    let mut outcome = Outcome {
        object_id,
        bundle_id: None,
        channel: None,
        sequence: None,
        kind: OutcomeKind::Duplicate,
        figures: figures.clone(),
    };

    // 1. Authenticate first: only the prefix, header and signature are read (at most
    //    auth::max_input_bytes), and nothing in them is decoded before the signature verified.
    let step = lock()
        .open_object_reader(object_id)
        .map_err(|e| e.to_string())
        .and_then(|reader| {
            auth::authenticate_from(
                std::io::BufReader::new(reader),
                trust,
                DEFAULT_MAX_HEADER_BYTES,
            )
            .map_err(|e| e.to_string())
        });
    let prefix = match step {
        Err(detail) => return storage_failure(store_mutex, gate, ms, outcome, detail),
        Ok(AuthStep::Authenticated(p)) => p,
        Ok(AuthStep::Refused(refusal)) => {
            let decision = gate
                .lock()
                .handle_refused(ms, object_id, Refused::from_auth(&refusal));
            let Refusal::Authenticated(a) = refusal else {
                // Unauthenticated: counted by admission, nothing recorded or logged.
                let _ = lock().remove_object(object_id);
                return None;
            };
            outcome.bundle_id = Some(a.id());
            outcome.channel = a.channel().map(str::to_string);
            outcome.sequence = a.sequence();
            let subject = RejectSubject {
                object_id: Some(object_id),
                bundle_id: Some(a.id()),
                channel: a.channel().map(str::to_string),
                sequence: a.sequence(),
            };
            outcome.kind = perform(&mut lock(), decision, &subject, a.detail(), &figures)?;
            log_outcome(&outcome);
            return Some(outcome);
        }
        Ok(AuthStep::NeedMore(_)) => {
            // authenticate_from never ends there; treat it as the truncation it would be.
            let _ = lock().remove_object(object_id);
            return None;
        }
    };
    // From here on every field is signed by a trusted key.
    outcome.bundle_id = Some(prefix.id());
    outcome.channel = Some(prefix.channel().to_string());
    outcome.sequence = Some(prefix.sequence());
    let subject = RejectSubject {
        object_id: Some(object_id),
        bundle_id: Some(prefix.id()),
        channel: Some(prefix.channel().to_string()),
        sequence: Some(prefix.sequence()),
    };

    // 2. The signed header's facts: id, duplicate, channel rule, rollback.
    {
        let mut store = lock();
        let facts = match admit::store_facts(&store, &prefix.id(), prefix.channel()) {
            Ok(f) => f,
            Err(e) => {
                drop(store);
                return storage_failure(store_mutex, gate, ms, outcome, e.to_string());
            }
        };
        let decision = gate
            .lock()
            .handle_verified(ms, object_id, (&prefix).into(), trust, facts);
        if decision != Admit::Proceed {
            outcome.kind = perform(
                &mut store,
                decision,
                &subject,
                "refused on its signed header",
                &figures,
            )?;
            drop(store);
            log_outcome(&outcome);
            return Some(outcome);
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
                    .high_water_mark(prefix.channel())
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
                    Ok(()) if verified.id() == prefix.id() => {
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
                let last = store.high_water_mark(prefix.channel());
                match (staged, last) {
                    (Ok((r, x)), Ok(last)) => (r, x, last),
                    (Err(e), _) | (_, Err(e)) => {
                        drop(store);
                        return storage_failure(store_mutex, gate, ms, outcome, e.to_string());
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

    // 4. Decide again from the Verified facts, holding the store lock through the effect so
    //    the store's own duplicate and rollback checks at commit agree with admission.
    match verified {
        Ok(verified) => {
            let mut store = lock();
            let facts = match admit::store_facts(&store, &verified.id(), &verified.header().channel)
            {
                Ok(f) => f,
                Err(e) => {
                    drop(store);
                    extraction.discard();
                    return storage_failure(store_mutex, gate, ms, outcome, e.to_string());
                }
            };
            let decision =
                gate.lock()
                    .handle_verified(ms, object_id, (&verified).into(), trust, facts);
            if decision != Admit::Accept {
                extraction.discard();
                outcome.kind = perform(
                    &mut store,
                    decision,
                    &subject,
                    "refused after verification",
                    &figures,
                )?;
            } else {
                let require_increasing = trust
                    .rule(&verified.header().channel)
                    .is_some_and(|r| r.require_increasing_sequence);
                outcome.kind = match store.commit(
                    extraction,
                    &verified,
                    require_increasing,
                    figures.clone(),
                ) {
                    Ok(Decision::Accepted { path }) => OutcomeKind::Accepted {
                        path: path.display().to_string(),
                        verified_early,
                    },
                    Ok(Decision::Duplicate { .. }) => OutcomeKind::Duplicate,
                    Ok(Decision::Rejected { reason, detail }) => {
                        OutcomeKind::Rejected { reason, detail }
                    }
                    Err(e) => {
                        // The store failed, not the bundle (a full disk, a planted entry): keep
                        // the staged object and retry with backoff, as before admission took
                        // over the retries.
                        drop(store);
                        return storage_failure(store_mutex, gate, ms, outcome, e.to_string());
                    }
                };
            }
        }
        Err(e) => {
            let storage_failure_detail = extraction.storage_failure().map(str::to_string);
            extraction.discard();
            if let (RejectReason::StorageError, Some(detail)) = (e.reason, storage_failure_detail) {
                // The disk failed, not the bundle: keep the object and retry with backoff.
                return storage_failure(store_mutex, gate, ms, outcome, detail);
            }
            let decision =
                gate.lock()
                    .handle_refused(ms, object_id, Refused::after_prefix(&prefix, e.reason));
            outcome.kind = perform(&mut lock(), decision, &subject, &e.detail, &figures)?;
        }
    }
    log_outcome(&outcome);
    Some(outcome)
}

/// Staging or the store failed for this object: while it is still staged, admission schedules a
/// retry with backoff (the pipeline re-queues it when due) or gives up.
fn storage_failure(
    store: &std::sync::Mutex<Store>,
    gate: &Gate,
    ms: u64,
    mut outcome: Outcome,
    detail: String,
) -> Option<Outcome> {
    let object_id = outcome.object_id;
    let staged = store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .open_object_reader(object_id)
        .is_ok();
    let next = if staged {
        match gate.lock().handle_storage_failure(ms, object_id) {
            Admit::Retry { attempt, at_ms } => format!(
                "; retry {attempt} in {} s",
                at_ms.saturating_sub(ms).div_ceil(1000)
            ),
            _ => "; not retried again: a resend delivers it".to_string(),
        }
    } else {
        "; the staged object is gone: a resend delivers it".to_string()
    };
    outcome.kind = OutcomeKind::StorageError {
        detail: format!("{detail}{next}"),
    };
    log_outcome(&outcome);
    Some(outcome)
}

/// A duplicate of an accepted bundle: recorded when admission allows it, the staged object
/// removed either way.
fn perform_duplicate(
    store: &mut Store,
    record: bool,
    subject: &RejectSubject,
    figures: &TransportFigures,
) -> OutcomeKind {
    let written = match (record, subject.bundle_id) {
        (true, Some(id)) => {
            let known = subject
                .channel
                .as_deref()
                .zip(subject.sequence)
                .map(|(c, s)| (c, s, ""));
            store
                .record_duplicate(&id, known, figures.clone())
                .map(|_| ())
        }
        _ => Ok(()),
    };
    let _ = store.remove_object(subject.object_id.unwrap_or_default());
    match written {
        Ok(()) => OutcomeKind::Duplicate,
        Err(e) => OutcomeKind::StorageError {
            detail: e.to_string(),
        },
    }
}

/// Performs a non-accept [`Admit`] decision about a signed bundle: a record only when admission
/// allows one, the staged object removed either way. `None` for an unauthenticated decision
/// (an id mismatch) or one that is not a verdict: counted by admission, no record, no outcome.
fn perform(
    store: &mut Store,
    decision: Admit,
    subject: &RejectSubject,
    detail: &str,
    figures: &TransportFigures,
) -> Option<OutcomeKind> {
    let object_id = subject.object_id.unwrap_or_default();
    let (record, reason, class) = match decision {
        Admit::Duplicate { record } => {
            return Some(perform_duplicate(store, record, subject, figures));
        }
        Admit::Reject {
            record,
            reason,
            class,
        } => (record, reason, class),
        _ => {
            let _ = store.remove_object(object_id);
            return None;
        }
    };
    if class == Class::Unauthenticated {
        let _ = store.remove_object(object_id);
        return None;
    }
    if !record {
        let _ = store.remove_object(object_id);
        return Some(OutcomeKind::Rejected {
            reason,
            detail: format!(
                "{detail} (not recorded: this bundle was recorded within the hour, or the \
                 record budget is spent)"
            ),
        });
    }
    Some(
        match store.reject(subject, reason, detail, Some(figures.clone())) {
            Ok(_) => OutcomeKind::Rejected {
                reason,
                detail: detail.to_string(),
            },
            Err(e) => OutcomeKind::StorageError {
                detail: format!("rejecting ({reason}: {detail}) failed to record: {e}"),
            },
        },
    )
}
