//! What became of an object ([`Outcome`]), as the pipeline reports it to `listen` and `import`,
//! and the log line every outcome gets. A leaf: the rest of the pipeline imports it, it imports
//! nothing of the pipeline.

use std::time::Instant;

use sluice_common::bundle::{BundleId, RejectReason};
use sluice_common::transport::wire::LedgerEntry;

use crate::store::{Source, TransportFigures};

/// Per-object transport figures gathered while frames arrive.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tally {
    /// Symbols the transport receiver stored for the object.
    pub(super) frames: u64,
    /// Frames the transport receiver infers lost (its running count for the object).
    pub(super) lost_frames: u64,
    pub(super) repaired_blocks: u64,
    pub(super) passes: u64,
    /// The object's declared length (from its frames), for the decision's log line and JSON.
    pub(super) object_bytes: u64,
}

impl Tally {
    /// The figures a receipt and an audit record carry; `bad_frames` is the receiver's count.
    pub(super) fn figures(self, bad_frames: u64, source: Source) -> TransportFigures {
        TransportFigures {
            frames: self.frames,
            lost_frames: self.lost_frames,
            bad_frames,
            repaired_blocks: self.repaired_blocks,
            passes: self.passes.max(1),
            source,
            object_bytes: self.object_bytes,
        }
    }
}

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

/// The pipeline's detailed line per outcome, at DEBUG: the operator's one line per decision
/// (INFO/WARN) is `crate::report::log_decided`, printed by `listen` and `import`.
pub(super) fn log_outcome(outcome: &Outcome) {
    let object = hex::encode(outcome.object_id);
    let bundle = outcome.bundle_id.map(|b| b.to_hex()).unwrap_or_default();
    let channel = outcome.channel.clone().unwrap_or_default();
    match &outcome.kind {
        OutcomeKind::Accepted {
            path,
            verified_early,
        } => tracing::debug!(decision = "accepted", %bundle, %channel,
            sequence = outcome.sequence, %path, verified_early, frames = outcome.figures.frames,
            repaired_blocks = outcome.figures.repaired_blocks, "bundle accepted into quarantine"),
        OutcomeKind::Duplicate => tracing::debug!(decision = "duplicate", %bundle, %channel,
            "bundle already in quarantine; recorded as a duplicate, no second copy"),
        OutcomeKind::Rejected { reason, detail } => tracing::debug!(decision = "rejected", %bundle,
            %object, %channel, reason = reason.code(), %detail, "bundle rejected"),
        OutcomeKind::Incomplete { missing_blocks } => tracing::debug!(decision = "incomplete",
            %object, missing_blocks, "transfer ended short of symbols; progress kept for the next pass"),
        OutcomeKind::StorageError { detail } => tracing::debug!(decision = "storage_error",
            %object, %detail, "store failure; the detail says what is kept and what is retried"),
    }
}
