//! How an ingest outcome is reported to automation: the one JSON object per bundle that
//! `listen --json` and `import --json` both print (import adds its media fields), and the exit
//! code each outcome stands for.

use sluice_common::exit::{self, Exit};

use crate::ingest::{Outcome, OutcomeKind};

/// The JSON object for one outcome (`listen --json` prints it as is).
pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut v = serde_json::json!({
        "outcome": outcome.kind.word(),
        "object_id": hex::encode(outcome.object_id),
        "bundle_id": outcome.bundle_id.map(|b| b.to_hex()),
        "channel": outcome.channel,
        "sequence": outcome.sequence,
        "frames": outcome.figures.frames,
        "repaired_blocks": outcome.figures.repaired_blocks,
        "passes": outcome.figures.passes,
    });
    match &outcome.kind {
        OutcomeKind::Accepted {
            path,
            verified_early,
        } => {
            v["path"] = path.clone().into();
            v["verified_early"] = (*verified_early).into();
        }
        OutcomeKind::Rejected { reason, detail } => {
            v["reason"] = reason.code().into();
            v["detail"] = detail.clone().into();
        }
        OutcomeKind::Incomplete { missing_blocks } => {
            v["missing_blocks"] = (*missing_blocks).into()
        }
        OutcomeKind::StorageError { detail } => v["detail"] = detail.clone().into(),
        OutcomeKind::Duplicate => {}
    }
    v
}

/// The exit code a rejection stands for (its reason's class: 4, 5, 6, or 7/8 for a transfer
/// or store failure recorded as a rejection).
pub fn rejected_exit(reason: sluice_common::bundle::RejectReason) -> Exit {
    exit::from_code_or_failure(reason.exit_code())
}
