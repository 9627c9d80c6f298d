//! How an ingest outcome is reported to operators and automation: the one log line per outcome
//! (INFO at the default verbosity), the one JSON object per outcome that `listen --json` and
//! `import --json` both print (`sluice.outcome/1`, docs/schema/outcome.schema.json; import adds
//! its media fields), and the exit code a one-shot run's outcome stands for.

use sluice_common::exit::{self, Exit};
use sluice_host::logging::DECISIONS_TARGET;

use crate::ingest::{Outcome, OutcomeKind};

/// The JSON object for one outcome (`listen --json` prints it as is), stamped `time` (now).
pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut v = sluice_host::json::report("outcome");
    let base = serde_json::json!({
        "outcome": outcome.kind.word(),
        "object_id": hex::encode(outcome.object_id),
        "bundle_id": outcome.bundle_id.map(|b| b.to_hex()),
        "channel": outcome.channel,
        "sequence": outcome.sequence,
        "bundle_bytes": bundle_bytes(outcome),
        "source": outcome.figures.source,
        "frames": outcome.figures.frames,
        "repaired_blocks": outcome.figures.repaired_blocks,
        "passes": outcome.figures.passes,
    });
    if let serde_json::Value::Object(fields) = base {
        v.extend(fields);
    }
    let mut v = serde_json::Value::Object(v);
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

/// The bundle's size as its frames declared it; `null` when no frame said (0 in the figures).
fn bundle_bytes(outcome: &Outcome) -> Option<u64> {
    Some(outcome.figures.object_bytes).filter(|&b| b > 0)
}

/// The operator's one line per outcome, shown at the default verbosity (target
/// [`DECISIONS_TARGET`]): bundle id, channel, outcome and bytes always, so `journalctl -u
/// sluice-recv` answers "did last night's bundle arrive?" without `-v`. INFO for what went well
/// (accepted, duplicate), WARN for what needs a look (rejected, incomplete), ERROR for a store
/// failure.
pub fn log_decided(outcome: &Outcome) {
    let bundle = outcome
        .bundle_id
        .map(|b| b.to_hex())
        .unwrap_or_else(|| format!("(object {})", hex::encode(outcome.object_id)));
    let channel = outcome.channel.as_deref().unwrap_or("?");
    let bytes = bundle_bytes(outcome).unwrap_or(0);
    let word = outcome.kind.word();
    match &outcome.kind {
        OutcomeKind::Accepted { path, .. } => tracing::info!(target: DECISIONS_TARGET,
            outcome = word, %bundle, %channel, sequence = outcome.sequence, bytes, %path,
            "bundle {bundle} on {channel}: accepted ({bytes} bytes) into {path}"),
        OutcomeKind::Duplicate => tracing::info!(target: DECISIONS_TARGET,
            outcome = word, %bundle, %channel, sequence = outcome.sequence, bytes,
            "bundle {bundle} on {channel}: duplicate ({bytes} bytes), already in quarantine"),
        OutcomeKind::Rejected { reason, detail } => tracing::warn!(target: DECISIONS_TARGET,
            outcome = word, %bundle, %channel, sequence = outcome.sequence, bytes,
            reason = reason.code(), %detail,
            "bundle {bundle} on {channel}: rejected ({bytes} bytes): {}: {detail}", reason.code()),
        OutcomeKind::Incomplete { missing_blocks } => tracing::warn!(target: DECISIONS_TARGET,
            outcome = word, %bundle, %channel, bytes, missing_blocks,
            "bundle {bundle}: incomplete, blocks missing: {missing_blocks}; progress kept for \
             the next pass"),
        OutcomeKind::StorageError { detail } => tracing::error!(target: DECISIONS_TARGET,
            outcome = word, %bundle, %channel, bytes, %detail,
            "bundle {bundle}: store failure: {detail}"),
    }
}

/// The exit code a rejection stands for (its reason's class: 4, 5, 6, or 7/8 for a transfer
/// or store failure recorded as a rejection).
pub fn rejected_exit(reason: sluice_common::bundle::RejectReason) -> Exit {
    exit::from_code_or_failure(reason.exit_code())
}
