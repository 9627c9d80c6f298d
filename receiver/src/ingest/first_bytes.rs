//! The decision about an unauthenticated object's first bytes, taken on the receive thread when
//! the transport offers them (`Effect::Authenticate`): the ed25519 signature over the raw prefix
//! and header ([`auth::authenticate`]; nothing in them is decoded before it verified), then
//! [`Admission`](sluice_common::admission::Admission) on the signed facts. Only an object
//! admission lets proceed is staged. A refusal is recorded only when a trusted signer signed the
//! bytes and admission allows a record; an unauthenticated one is only counted (no record, no log
//! line, no outcome).

use std::sync::Mutex;
use std::time::Instant;

use sluice_common::admission::{Class, Decision as Admitted, Refused};
use sluice_common::bundle::auth::{self, AuthStep, DEFAULT_MAX_HEADER_BYTES, Refusal};
use sluice_common::bundle::trust::TrustStore;

use super::admit::{self, Admit};
use super::outcome::{Outcome, OutcomeKind};
use crate::store::{RejectSubject, Store, TransportFigures};

/// What to do with the object.
pub(super) enum FirstBytes {
    /// Not enough of its start yet: wait (it is offered again when it grows).
    Wait,
    /// Signed by a trusted key and admissible: authenticate it in the transport (stage it).
    Stage,
    /// Refuse it in the transport. `outcome` is reported (already recorded if a record was
    /// allowed) only for a trusted signer's bundle; `failed` counts store failures.
    Refuse {
        outcome: Option<Outcome>,
        failed: u64,
    },
}

/// Decides about `prefix`, the first bytes of `object_id` (`complete`: no more will come).
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    store: &Mutex<Store>,
    trust: &TrustStore,
    gate: &Admit,
    now: Instant,
    object_id: [u8; 16],
    prefix: &[u8],
    complete: bool,
    figures: impl FnOnce() -> TransportFigures,
) -> FirstBytes {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let mut step = auth::authenticate(prefix, trust, DEFAULT_MAX_HEADER_BYTES);
    if complete {
        step = step.at_end_of_object();
    }
    let ms = gate.ms(now);
    let (decision, subject, detail) = match step {
        AuthStep::NeedMore(_) => return FirstBytes::Wait,
        AuthStep::Refused(refusal) => {
            let decision = gate
                .lock()
                .handle_refused(ms, object_id, Refused::from_auth(&refusal));
            match refusal {
                Refusal::Unauthenticated(_) => {
                    return FirstBytes::Refuse {
                        outcome: None,
                        failed: 0,
                    };
                }
                Refusal::Authenticated(a) => (
                    decision,
                    RejectSubject {
                        object_id: Some(object_id),
                        bundle_id: Some(a.id()),
                        channel: a.channel().map(str::to_string),
                        sequence: a.sequence(),
                    },
                    a.detail().to_string(),
                ),
            }
        }
        AuthStep::Authenticated(p) => {
            let facts = admit::store_facts(&lock(), &p.id(), p.channel());
            // The store cannot say now: stage it, and the verifier decides at the end.
            let Ok(facts) = facts else {
                return FirstBytes::Stage;
            };
            let decision = gate
                .lock()
                .handle_verified(ms, object_id, (&p).into(), trust, facts);
            if decision == Admitted::Proceed {
                return FirstBytes::Stage;
            }
            (
                decision,
                RejectSubject {
                    object_id: Some(object_id),
                    bundle_id: Some(p.id()),
                    channel: Some(p.channel().to_string()),
                    sequence: Some(p.sequence()),
                },
                "refused on its signed header before it was staged".to_string(),
            )
        }
    };
    let figures = figures();
    let mut failed = 0;
    let kind = match decision {
        Admitted::Duplicate { record } => {
            if record && let Some(id) = subject.bundle_id {
                let known = subject
                    .channel
                    .as_deref()
                    .zip(subject.sequence)
                    .map(|(c, s)| (c, s, ""));
                if let Err(e) = lock().record_duplicate(&id, known, figures.clone()) {
                    failed += 1;
                    tracing::error!(error = %e, "recording a duplicate failed");
                }
            }
            OutcomeKind::Duplicate
        }
        Admitted::Reject {
            record,
            reason,
            class: Class::Authenticated,
        } => {
            if record
                && let Err(e) = lock().reject(&subject, reason, &detail, Some(figures.clone()))
            {
                failed += 1;
                tracing::error!(error = %e, "recording a rejection failed");
            }
            OutcomeKind::Rejected { reason, detail }
        }
        // A signed bundle under another object id: unauthenticated, only counted.
        _ => {
            return FirstBytes::Refuse {
                outcome: None,
                failed: 0,
            };
        }
    };
    FirstBytes::Refuse {
        outcome: Some(Outcome {
            object_id,
            bundle_id: subject.bundle_id,
            channel: subject.channel,
            sequence: subject.sequence,
            kind,
            figures,
        }),
        failed,
    }
}
