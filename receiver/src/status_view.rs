//! What the status page shows, as one serializable snapshot ([`StatusView`]): the JSON of
//! `/status.json` and the input of the HTML page, so the two never disagree.
//!
//! Everything here is read from what the listener already persists, never from the packet
//! path: `state/status.json` (rewritten by `listen` every second: counters, heartbeat ledger,
//! live transfers, overdue channels), the tail of `audit.jsonl` (recent outcomes), the audit
//! chain check and the ledger reconciliation of [`inspect::status`], each live transfer's
//! checkpointed block bitmap in `staging/objects/<id>.progress`, and `statvfs` of the store.
//!
//! Many strings here (channel names, reject details, paths) come from bundles or files an
//! attacker may influence. They are carried verbatim; escaping is the renderer's job
//! ([`super::page`]), and JSON escaping is serde's.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Serialize, Serializer};
use sluice_common::transport::params::Limits;
use sluice_common::transport::progress::Progress;

use crate::store::inspect::{self, SentNotReceived};

/// One block of a transfer as the block map shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// Written to staging.
    Complete,
    /// Enough symbols arrived; a decode is running.
    Decoding,
    /// Still short of symbols.
    Missing,
}

impl BlockState {
    /// One letter per block in `/status.json`'s `block_map` (`c`, `d`, `m`).
    pub fn letter(self) -> char {
        match self {
            BlockState::Complete => 'c',
            BlockState::Decoding => 'd',
            BlockState::Missing => 'm',
        }
    }

    /// CSS class and legend word.
    pub fn word(self) -> &'static str {
        match self {
            BlockState::Complete => "complete",
            BlockState::Decoding => "decoding",
            BlockState::Missing => "missing",
        }
    }
}

fn block_map<S: Serializer>(blocks: &[BlockState], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&blocks.iter().map(|b| b.letter()).collect::<String>())
}

/// One transfer in flight.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransferView {
    /// Known only once the bundle's signed header was verified; `None` while in flight.
    pub channel: Option<String>,
    /// Transport object id (32 hex).
    pub object: String,
    /// Per-block state, empty when no block map is available. Serialized as one letter per
    /// block (`c` complete, `d` decoding, `m` missing).
    #[serde(rename = "block_map", serialize_with = "block_map")]
    pub blocks: Vec<BlockState>,
    /// The map is the last checkpoint on disk (written every 64 blocks), so it may lag the
    /// counts, which are live.
    pub block_map_from_checkpoint: bool,
    pub blocks_total: u64,
    pub blocks_missing: u64,
    /// Approximate: complete blocks times the block size, capped at the object length.
    #[serde(rename = "have_bytes")]
    pub bytes_have: u64,
    /// Object length, when the checkpoint or the sender's heartbeat ledger says it.
    #[serde(rename = "need_bytes")]
    pub bytes_need: Option<u64>,
    /// Fraction of symbols lost on the way for this transfer, when known.
    pub loss: Option<f64>,
    /// Spare repair symbols left per block (fraction of K), when known.
    pub repair_margin: Option<f64>,
    /// At the average rate since this page first saw the transfer.
    pub eta_secs: Option<u64>,
    /// When this page first saw the transfer and how many blocks it had then: the ETA's base.
    #[serde(skip)]
    pub first_seen: Option<(u64, u64)>,
}

impl TransferView {
    pub fn percent(&self) -> f64 {
        if self.blocks_total == 0 {
            return 0.0;
        }
        100.0 * (self.blocks_total - self.blocks_missing.min(self.blocks_total)) as f64
            / self.blocks_total as f64
    }
}

/// One decision from the audit log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecentOutcome {
    /// RFC 3339 with milliseconds (the audit record's `time`).
    pub time: String,
    /// The audit record's `time_unix_ms`.
    pub time_unix_ms: Option<u64>,
    /// `accepted`, `duplicate`, `rejected` or `incomplete`.
    pub outcome: String,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub bundle_id: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HeartbeatView {
    pub sender_id: String,
    pub sequence: u64,
    pub age_secs: u64,
    /// Bundles in the sender's ledger (sent recently, received or not).
    pub ledger_entries: usize,
    /// False when the listener runs with the public link key: anyone on the low network can
    /// forge heartbeats, so this one is advisory (a status file without the field counts as
    /// unauthenticated).
    pub authenticated: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreView {
    pub path: String,
    pub free_bytes: Option<u64>,
    pub size_bytes: Option<u64>,
    pub quarantine_entries: usize,
    pub rejected_records: usize,
    pub staging_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditView {
    pub records: usize,
    pub chain_ok: bool,
    /// When the last audit record was written (its `time`), and the same as unix ms.
    pub last_record: Option<String>,
    pub last_record_unix_ms: Option<u64>,
}

/// Everything the page shows. `/status.json` is this, as [`StatusView::to_json`] writes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusView {
    /// When the snapshot was taken: `time`/`time_unix_ms` in the JSON.
    #[serde(skip)]
    pub generated_at_unix_ms: u64,
    /// The listener wrote `state/status.json` within the last 10 s and says it is running.
    pub listener_up: bool,
    /// The listener status file's `updated_at`: `listener_updated_at`/`_unix_ms` in the JSON.
    #[serde(skip)]
    pub listener_updated_at_unix_ms: Option<u64>,
    pub bind: Option<String>,
    pub kernel_drops: Option<u64>,
    /// Listener counters, in the order `listen` writes them (`rejected.<reason>` flattened).
    pub counters: Vec<(String, u64)>,
    pub transfers: Vec<TransferView>,
    /// Newest first, at most [`RECENT`].
    pub recent: Vec<RecentOutcome>,
    pub overdue_channels: Vec<String>,
    pub last_heartbeat: Option<HeartbeatView>,
    pub sent_not_received: Vec<SentNotReceived>,
    pub audit: AuditView,
    pub store: StoreView,
    /// Parts that could not be read, shown instead of failing the page.
    pub errors: Vec<String>,
}

impl StatusView {
    /// `/status.json` (`sluice.receiver-status/1`, docs/json.md): the schema key first, the
    /// snapshot's time as `time`/`time_unix_ms`, the listener's last update as
    /// `listener_updated_at`/`listener_updated_at_unix_ms` (both `null` when unknown).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        let mut m = sluice_host::json::object("receiver-status");
        sluice_host::json::set_time(&mut m, "time", self.generated_at_unix_ms);
        match self.listener_updated_at_unix_ms {
            Some(ms) => sluice_host::json::set_time(&mut m, "listener_updated_at", ms),
            None => {
                m.insert("listener_updated_at".into(), Value::Null);
                m.insert("listener_updated_at_unix_ms".into(), Value::Null);
            }
        }
        if let Ok(Value::Object(fields)) = serde_json::to_value(self) {
            m.extend(fields);
        }
        Value::Object(m)
    }
}

/// Recent outcomes shown.
pub const RECENT: usize = 20;
/// Bytes of `audit.jsonl`'s end read for recent outcomes.
const AUDIT_TAIL_BYTES: u64 = 128 << 10;
/// The listener rewrites status.json every second; older than this, it is not running.
const LISTENER_STALE_MS: u64 = 10_000;

/// Builds a snapshot of the store at `dir`. `previous` (the last snapshot) gives transfer rates.
/// `live`: transfers as the listener loop itself reported them ([`MetricsPage::set_transfers`]),
/// used instead of the checkpoint-based ones when given. Blocking file I/O: call it off the
/// async threads.
///
/// [`MetricsPage::set_transfers`]: crate::metrics::MetricsPage::set_transfers
pub fn build(
    dir: &Path,
    previous: Option<&StatusView>,
    live: Option<Vec<TransferView>>,
) -> StatusView {
    let now_ms = sluice_host::time::now_unix_ms();
    let mut view = StatusView {
        generated_at_unix_ms: now_ms,
        ..StatusView::default()
    };
    view.store.path = dir.display().to_string();
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            view.store.free_bytes = Some(s.f_bavail.saturating_mul(s.f_frsize));
            view.store.size_bytes = Some(s.f_blocks.saturating_mul(s.f_frsize));
        }
        Err(e) => view.errors.push(format!("statvfs: {e}")),
    }
    let report = match inspect::status(dir) {
        Ok(r) => r,
        Err(e) => {
            view.errors.push(format!("store: {e}"));
            return view;
        }
    };
    view.errors.extend(report.errors.iter().cloned());
    view.errors.extend(report.listener_error.iter().cloned());
    view.store.quarantine_entries = report.quarantine_entries;
    view.store.rejected_records = report.rejected_records;
    view.store.staging_bytes = report.staging_bytes;
    let last = report.last_audit_record.as_ref();
    view.audit = AuditView {
        records: report.audit_records,
        chain_ok: report.audit_chain_ok,
        last_record: last.and_then(|r| r["time"].as_str().map(str::to_owned)),
        last_record_unix_ms: last.and_then(|r| r["time_unix_ms"].as_u64()),
    };
    view.sent_not_received = report.sent_not_received;
    view.recent = recent_outcomes(&dir.join("audit.jsonl"), &mut view.errors);
    if let Some(listener) = &report.listener {
        apply_listener(&mut view, listener, now_ms);
        view.transfers = transfers(dir, listener, previous, now_ms);
    }
    if let Some(live) = live {
        view.transfers = live
            .into_iter()
            .map(|mut t| {
                let done = t.blocks_total.saturating_sub(t.blocks_missing);
                t.first_seen = Some((now_ms, done));
                if t.eta_secs.is_none() {
                    t.eta_secs = previous.and_then(|p| eta(p, &mut t, now_ms));
                }
                t
            })
            .collect();
    }
    view
}

fn apply_listener(view: &mut StatusView, l: &serde_json::Value, now_ms: u64) {
    let updated = l["updated_at_unix_ms"].as_u64();
    view.listener_updated_at_unix_ms = updated;
    view.listener_up = l["running"].as_bool() == Some(true)
        && updated.is_some_and(|u| now_ms.saturating_sub(u) <= LISTENER_STALE_MS);
    view.bind = l["bind"].as_str().map(str::to_owned);
    view.kernel_drops = l["kernel_drops"].as_u64();
    if let Some(counters) = l["counters"].as_object() {
        for (name, value) in counters {
            match value {
                serde_json::Value::Object(by_reason) => {
                    for (reason, n) in by_reason {
                        view.counters
                            .push((format!("{name}.{reason}"), n.as_u64().unwrap_or(0)));
                    }
                }
                v => view.counters.push((name.clone(), v.as_u64().unwrap_or(0))),
            }
        }
    }
    view.overdue_channels = l["overdue_channels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let hb = &l["last_heartbeat"];
    if let (Some(sender), Some(sequence)) = (hb["sender_id"].as_str(), hb["sequence"].as_u64()) {
        view.last_heartbeat = Some(HeartbeatView {
            sender_id: sender.to_owned(),
            sequence,
            age_secs: now_ms.saturating_sub(hb["received_at_unix_ms"].as_u64().unwrap_or(now_ms))
                / 1000,
            ledger_entries: hb["ledger"].as_array().map_or(0, Vec::len),
            authenticated: hb["authenticated"].as_bool().unwrap_or(false),
        });
    }
}

/// The last [`RECENT`] decisions of the audit log, newest first.
fn recent_outcomes(path: &Path, errors: &mut Vec<String>) -> Vec<RecentOutcome> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(format!("audit.jsonl: {e}"));
            return Vec::new();
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(AUDIT_TAIL_BYTES);
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(AUDIT_TAIL_BYTES).read_to_end(&mut tail).is_err()
    {
        errors.push("audit.jsonl: unreadable".into());
        return Vec::new();
    }
    let mut lines: Vec<&[u8]> = tail.split(|&b| b == b'\n').collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // cut mid-line
    }
    let str_of = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned);
    lines
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|r| {
            matches!(
                r["outcome"].as_str(),
                Some("accepted" | "duplicate" | "rejected" | "incomplete")
            )
        })
        .take(RECENT)
        .map(|r| RecentOutcome {
            time: str_of(&r, "time").unwrap_or_default(),
            time_unix_ms: r["time_unix_ms"].as_u64(),
            outcome: str_of(&r, "outcome").unwrap_or_default(),
            channel: str_of(&r, "channel"),
            sequence: r["sequence"].as_u64(),
            reason: str_of(&r, "reason"),
            detail: str_of(&r, "detail"),
            bundle_id: str_of(&r, "bundle_id"),
        })
        .collect()
}

/// Live transfers from the listener's status, with each one's checkpointed block map.
fn transfers(
    dir: &Path,
    listener: &serde_json::Value,
    previous: Option<&StatusView>,
    now_ms: u64,
) -> Vec<TransferView> {
    let Some(live) = listener["live_transfers"].as_array() else {
        return Vec::new();
    };
    let ledger_len: HashMap<String, u64> = listener["last_heartbeat"]["ledger"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    Some((
                        e["object_id"].as_str()?.to_owned(),
                        e["object_bytes"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for t in live {
        let Some(object) = t["object_id"].as_str() else {
            continue;
        };
        // Only ever 32 hex digits: anything else must not become a path.
        if object.len() != 32 || !object.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let total = t["blocks"].as_u64().unwrap_or(0);
        let missing = t["missing_blocks"].as_u64().unwrap_or(total).min(total);
        let progress = read_progress(dir, object);
        let blocks = progress
            .as_ref()
            .filter(|p| p.block_count() == total)
            .map(|p| {
                (0..total)
                    .map(|b| {
                        if p.is_done(b) {
                            BlockState::Complete
                        } else {
                            BlockState::Missing
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (bytes_need, block_size) = match &progress {
            Some(p) => (
                Some(p.params.object_len),
                Some(u64::from(p.params.block_size)),
            ),
            None => {
                let need = ledger_len.get(object).copied();
                (need, need.map(|n| n.div_ceil(total.max(1))))
            }
        };
        let done = total - missing;
        let bytes_have = match (bytes_need, block_size) {
            (Some(need), Some(bs)) => done.saturating_mul(bs).min(need),
            _ => 0,
        };
        let mut view = TransferView {
            channel: None,
            object: object.to_owned(),
            blocks,
            block_map_from_checkpoint: true,
            blocks_total: total,
            blocks_missing: missing,
            bytes_have,
            bytes_need,
            ..TransferView::default()
        };
        view.first_seen = Some((now_ms, done));
        view.eta_secs = previous.and_then(|p| eta(p, &mut view, now_ms));
        out.push(view);
    }
    out
}

/// Average rate since the transfer was first seen (carried from snapshot to snapshot), so two
/// snapshots within one listener refresh do not read as a stall.
fn eta(previous: &StatusView, now: &mut TransferView, now_ms: u64) -> Option<u64> {
    let before = previous.transfers.iter().find(|t| t.object == now.object)?;
    let (since_ms, done_then) = before.first_seen?;
    now.first_seen = Some((since_ms, done_then));
    let done = now.blocks_total.saturating_sub(now.blocks_missing);
    let gained = done.checked_sub(done_then).filter(|&g| g > 0)?;
    let dt_ms = now_ms.checked_sub(since_ms).filter(|&d| d > 0)?;
    Some(now.blocks_missing.saturating_mul(dt_ms) / gained / 1000)
}

fn read_progress(dir: &Path, object: &str) -> Option<Progress> {
    let path = dir
        .join("staging")
        .join("objects")
        .join(format!("{object}.progress"));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    // Geometry limits were enforced when the listener wrote this; here only the checksum and
    // the bitmap's consistency matter, so accept any size the format can express.
    let limits = Limits {
        max_object_bytes: u64::MAX,
        max_blocks: u64::MAX,
        max_block_bytes: u32::MAX,
        max_source_symbols: u32::MAX,
        min_symbol_size: 1,
        max_symbol_size: u16::MAX,
        ..Limits::default()
    };
    Progress::from_bytes(&bytes, &limits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(done: u64, total: u64) -> TransferView {
        TransferView {
            object: "ab".repeat(16),
            blocks_total: total,
            blocks_missing: total - done,
            ..TransferView::default()
        }
    }

    #[test]
    fn eta_uses_the_average_rate_since_first_seen() {
        let mut first = transfer(10, 40);
        first.first_seen = Some((1_000, 10));
        let previous = StatusView {
            generated_at_unix_ms: 9_000,
            transfers: vec![first],
            ..StatusView::default()
        };
        // 10 more blocks in 10 s since first seen: 20 missing take 20 s.
        let mut now = transfer(20, 40);
        assert_eq!(eta(&previous, &mut now, 11_000), Some(20));
        assert_eq!(now.first_seen, Some((1_000, 10)));
        // No progress yet: no estimate rather than infinity.
        let mut stalled = transfer(10, 40);
        assert_eq!(eta(&previous, &mut stalled, 11_000), None);
    }

    #[test]
    fn the_json_leads_with_its_schema_and_gives_times_in_both_forms() {
        let view = StatusView {
            generated_at_unix_ms: 1_795_757_075_042,
            ..StatusView::default()
        };
        let v = view.to_json();
        assert_eq!(v["schema"], "sluice.receiver-status/1");
        assert_eq!(v["time"], "2026-11-27T05:24:35.042Z");
        assert_eq!(v["time_unix_ms"], 1_795_757_075_042_u64);
        assert!(v["listener_updated_at"].is_null() && v["listener_updated_at_unix_ms"].is_null());
        assert!(v.get("generated_at_unix_ms").is_none());
    }

    #[test]
    fn a_store_without_a_listener_gives_a_view_with_no_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let view = build(dir.path(), None, None);
        assert!(!view.listener_up);
        assert!(view.transfers.is_empty() && view.recent.is_empty());
        assert!(view.audit.chain_ok);
        assert!(view.store.size_bytes.is_some_and(|s| s > 0));
    }

    #[test]
    fn a_heartbeat_without_the_authenticated_mark_counts_as_unauthenticated() {
        let mut view = StatusView::default();
        let status = |auth: Option<bool>| {
            let mut hb = serde_json::json!({
                "sender_id": "ab".repeat(16), "sequence": 1, "received_at_unix_ms": 1000,
                "ledger": [],
            });
            if let Some(a) = auth {
                hb["authenticated"] = a.into();
            }
            serde_json::json!({ "last_heartbeat": hb })
        };
        for (auth, want) in [(None, false), (Some(false), false), (Some(true), true)] {
            apply_listener(&mut view, &status(auth), 2000);
            assert_eq!(view.last_heartbeat.as_ref().unwrap().authenticated, want);
        }
    }
}
