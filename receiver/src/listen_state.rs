//! What a running `listen` exposes about itself: its totals across the run, the Prometheus
//! text for `--metrics`, and `state/status.json` (read by `status`, the status page and
//! promote). Split from `commands/listen.rs`, which owns the loop; this owns the figures.

use std::path::Path;

use sluice_common::exit::Exit;

use crate::config::Listen;
use crate::ingest::{Outcome, OutcomeKind, Pipeline};
use crate::metrics::Exposition;
use crate::report::{outcome_json, rejected_exit};

/// Counters across the listener's life, for metrics, status and the exit code.
#[derive(Default)]
pub struct Totals {
    pub accepted: u64,
    pub duplicates: u64,
    pub incomplete: u64,
    pub storage_errors: u64,
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    pub decided: u64,
}

impl Totals {
    /// Counts an outcome, prints it as JSON when asked, and returns its exit code.
    pub fn record(&mut self, outcome: &Outcome, json: bool) -> Exit {
        let code = match &outcome.kind {
            OutcomeKind::Accepted { .. } => {
                self.accepted += 1;
                Exit::Ok
            }
            OutcomeKind::Duplicate => {
                self.duplicates += 1;
                Exit::Ok
            }
            OutcomeKind::Rejected { reason, .. } => {
                *self.rejected.entry(reason.code()).or_default() += 1;
                rejected_exit(*reason)
            }
            OutcomeKind::Incomplete { .. } => {
                self.incomplete += 1;
                Exit::Ok
            }
            OutcomeKind::StorageError { .. } => {
                self.storage_errors += 1;
                Exit::Ok
            }
        };
        if outcome.kind.is_decision() {
            self.decided += 1;
        }
        crate::report::log_decided(outcome);
        if json {
            println!("{}", outcome_json(outcome));
        }
        code
    }
}

pub fn render_metrics(pipeline: &Pipeline, totals: &Totals, kernel_drops: Option<u64>) -> String {
    let s = pipeline.stats();
    let a = pipeline.admission_counters();
    let mut e = Exposition::default();
    e.counter(
        "sluice_datagrams_total",
        "Datagrams read from the socket.",
        s.datagrams,
    )
    .counter(
        "sluice_frames_malformed_total",
        "Datagrams dropped as malformed.",
        s.malformed,
    )
    .counter(
        "sluice_frames_bad_tag_total",
        "Frames whose integrity tag failed (corruption or forgery).",
        s.bad_tag,
    )
    .counter(
        "sluice_frames_unknown_kind_total",
        "Frames of an unknown version or kind.",
        s.unknown_kind,
    )
    .counter(
        "sluice_frames_over_limit_total",
        "Frames with parameters beyond this receiver's limits.",
        s.over_limit,
    )
    .counter(
        "sluice_frames_param_mismatch_total",
        "Frames whose parameters contradict their object's.",
        s.param_mismatch,
    )
    .counter(
        "sluice_frames_duplicate_total",
        "Symbols received twice.",
        s.duplicate_symbols,
    )
    .counter(
        "sluice_frames_late_total",
        "Symbols for blocks or objects already complete.",
        s.late_symbols,
    )
    .counter(
        "sluice_frames_budget_dropped_total",
        "Symbols dropped because the memory budget was full.",
        s.budget_drops,
    )
    .counter(
        "sluice_frames_staging_refused_total",
        "Frames dropped while their object's staging failure waits out its retry pause.",
        s.staging_refused,
    )
    .counter(
        "sluice_frames_over_cap_total",
        "Symbols beyond K + repair surplus for their block.",
        s.over_cap_symbols,
    )
    .counter(
        "sluice_frames_end_total",
        "Object-end frames received (authenticated, within limits).",
        s.end_frames,
    )
    .counter(
        "sluice_sessions_opened_total",
        "Transfers opened (including restored).",
        s.sessions_opened,
    )
    .counter(
        "sluice_sessions_abandoned_total",
        "Transfers abandoned at the idle timeout or deadline.",
        s.objects_abandoned,
    )
    .counter(
        "sluice_symbols_accepted_total",
        "Symbols buffered for decoding.",
        s.symbols_accepted,
    )
    .counter(
        "sluice_sessions_refused_total",
        "New transfers refused (session table or staging quota full).",
        s.sessions_refused,
    )
    .counter(
        "sluice_blocks_copied_total",
        "Blocks complete without FEC decoding.",
        s.blocks_copied,
    )
    .counter(
        "sluice_blocks_repaired_total",
        "Blocks recovered by RaptorQ decoding.",
        s.blocks_decoded,
    )
    .counter(
        "sluice_blocks_evicted_total",
        "Incomplete blocks evicted to stay within memory.",
        s.blocks_evicted,
    )
    .counter(
        "sluice_heartbeats_total",
        "Authenticated heartbeats received.",
        s.heartbeats,
    )
    .counter(
        "sluice_objects_unauthenticated_refused_total",
        "Objects whose first bytes did not verify under a trusted key (counted, never recorded).",
        a.rejected_unauthenticated,
    )
    .counter(
        "sluice_sessions_unauthenticated_expired_total",
        "Unauthenticated transfers forgotten (idle, replaced, or ended before authenticating).",
        s.sessions_unauthenticated_expired,
    )
    .counter(
        "sluice_records_suppressed_total",
        "Duplicate or rejection records not written (per-bundle hourly window or record budget).",
        a.records_suppressed_window + a.records_suppressed_budget,
    )
    .counter(
        "sluice_replays_unverified_total",
        "Resends of completed objects, counted without a record.",
        a.replays_unverified,
    )
    .counter(
        "sluice_decodes_deferred_total",
        "Decodes that waited for a worker (never run on the receive thread).",
        pipeline.decodes_deferred(),
    )
    .counter(
        "sluice_bundles_accepted_total",
        "Bundles committed to quarantine.",
        totals.accepted,
    )
    .counter(
        "sluice_bundles_duplicate_total",
        "Bundles received again after acceptance.",
        totals.duplicates,
    )
    .counter(
        "sluice_transfers_incomplete_total",
        "Transfers that ended short of symbols.",
        totals.incomplete,
    )
    .counter(
        "sluice_storage_errors_total",
        "Store failures.",
        totals.storage_errors + pipeline.storage_errors,
    )
    .labelled_counter(
        "sluice_bundles_rejected_total",
        "Bundles rejected, by reason.",
        "reason",
        &totals
            .rejected
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>(),
    )
    .gauge(
        "sluice_buffered_bytes",
        "Bytes of symbols buffered now.",
        pipeline.buffered_bytes() as f64,
    )
    .gauge(
        "sluice_sessions",
        "Transfers in progress.",
        pipeline.session_count() as f64,
    );
    if let Some(drops) = kernel_drops {
        e.counter("sluice_kernel_drops_total", "Receive-queue overflows of the UDP socket (overrun, not wire loss). With UDP GRO one overflow drops a whole coalesced train, up to 64 datagrams, so multiply when estimating symbols lost.", drops);
    }
    if let Some(hb) = pipeline.last_heartbeat() {
        e.gauge(
            "sluice_last_heartbeat_age_seconds",
            "Seconds since the last heartbeat whose tag checked (forgeable under the public link key).",
            hb.received_at.elapsed().as_secs_f64(),
        );
    }
    e.finish()
}

pub fn write_status(
    path: &Path,
    pipeline: &Pipeline,
    totals: &Totals,
    drops: Option<u64>,
    args: &Listen,
    overdue_channels: &[String],
    heartbeats_authenticated: bool,
) {
    let s = pipeline.stats();
    let a = pipeline.admission_counters();
    let heartbeat = pipeline.last_heartbeat().map(|hb| {
        serde_json::json!({
            "sender_id": hex::encode(hb.sender_id),
            "sequence": hb.sequence,
            "sent_at": sluice_host::time::rfc3339_ms(hb.sent_at_unix_ms),
            "sent_at_unix_ms": hb.sent_at_unix_ms,
            "received_at": sluice_host::time::rfc3339_ms(hb.received_at_unix_ms),
            "received_at_unix_ms": hb.received_at_unix_ms,
            "authenticated": heartbeats_authenticated,
            "ledger": hb.ledger.iter().map(|l| serde_json::json!({
                "object_id": hex::encode(l.object_id),
                "object_bytes": l.object_len,
                "first_sent": sluice_host::time::rfc3339_ms(l.first_sent_unix_ms),
                "first_sent_unix_ms": l.first_sent_unix_ms,
                "pass": l.pass,
                "passes": l.passes,
            })).collect::<Vec<_>>(),
        })
    });
    let live: Vec<_> = pipeline
        .live_objects()
        .into_iter()
        .map(|(id, missing, total)| serde_json::json!({"object_id": hex::encode(id), "missing_blocks": missing, "blocks": total}))
        .collect();
    let now_ms = sluice_host::time::now_unix_ms();
    let status = serde_json::json!({
        "schema": sluice_host::json::schema_id("listener-status"),
        "running": true,
        "pid": std::process::id(),
        "bind": args.bind.to_string(),
        "updated_at": sluice_host::time::rfc3339_ms(now_ms),
        "updated_at_unix_ms": now_ms,
        "last_heartbeat": heartbeat,
        "live_transfers": live,
        "overdue_channels": overdue_channels,
        "kernel_drops": drops,
        "counters": {
            "datagrams": s.datagrams, "bad_tag": s.bad_tag, "malformed": s.malformed,
            "symbols_accepted": s.symbols_accepted, "blocks_copied": s.blocks_copied,
            "blocks_repaired": s.blocks_decoded, "accepted": totals.accepted,
            "duplicates": totals.duplicates, "incomplete": totals.incomplete,
            "rejected": &totals.rejected,
            "unknown_kind": s.unknown_kind, "over_limit": s.over_limit,
            "param_mismatch": s.param_mismatch, "duplicate_symbols": s.duplicate_symbols,
            "late_symbols": s.late_symbols, "over_cap_symbols": s.over_cap_symbols,
            "budget_drops": s.budget_drops, "sessions_refused": s.sessions_refused,
            "sessions_opened": s.sessions_opened, "sessions_abandoned": s.objects_abandoned,
            "staging_refused": s.staging_refused,
            "unauthenticated_refused": a.rejected_unauthenticated,
            "unauthenticated_by_code": &a.unauthenticated_by_code,
            "records_suppressed": a.records_suppressed_window + a.records_suppressed_budget,
            "replays_unverified": a.replays_unverified,
            "decodes_deferred": pipeline.decodes_deferred(),
        },
    });
    write_json_atomically(path, &status);
}

pub fn write_status_final(path: &Path, totals: &Totals, drops: Option<u64>) {
    let mut status = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    status["running"] = false.into();
    let now_ms = sluice_host::time::now_unix_ms();
    status["updated_at"] = sluice_host::time::rfc3339_ms(now_ms).into();
    status["updated_at_unix_ms"] = now_ms.into();
    status["kernel_drops"] = drops.into();
    status["counters"]["accepted"] = totals.accepted.into();
    write_json_atomically(path, &status);
}

/// Status is advisory (the audit log is the record), so a failed write is logged, not fatal.
fn write_json_atomically(path: &Path, value: &serde_json::Value) {
    let tmp = path.with_extension("json.tmp");
    let result = std::fs::write(&tmp, value.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::debug!(error = %e, path = %path.display(), "could not write the status file");
    }
}
