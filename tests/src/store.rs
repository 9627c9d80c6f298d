//! Typed readers of a receiver store, for every e2e and attack test: the audit log, receipts and
//! rejected records as the receiver's own record types (`sluice_recv::store::records`, so a
//! renamed or retyped field breaks the build instead of comparing against `null`), quarantine
//! and staging listings, and `sluice-recv audit verify`.
//!
//! Readers may run while a listener writes: an unterminated last line of `audit.jsonl` (an
//! append in progress) is skipped; any complete line that is not an [`AuditRecord`] panics.

use std::path::Path;
use std::process::Command;

pub use sluice_recv::store::records::{
    AuditRecord, ChannelMark, GENESIS, Receipt, ReceiptEntry, RejectedRecord, SignerInfo, Source,
    TransportFigures,
};

/// Every complete record of `STORE/audit.jsonl`, in order (empty when there is no log yet).
pub fn audit_records(store: &Path) -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(store.join("audit.jsonl")).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("audit line {l:?} is not a record: {e}"))
        })
        .collect()
}

/// Audit records with `outcome == d` (`accepted`, `duplicate`, `rejected`, `incomplete`).
pub fn decisions(store: &Path, d: &str) -> Vec<AuditRecord> {
    audit_records(store)
        .into_iter()
        .filter(|r| r.outcome == d)
        .collect()
}

/// How many audit records are not `accepted` (rejected, duplicate, incomplete): the records
/// unauthenticated input must never cause (issue #12), counted the same way by every attack
/// suite.
pub fn non_accept_records(store: &Path) -> usize {
    audit_records(store)
        .iter()
        .filter(|r| r.outcome != "accepted")
        .count()
}

/// Every `STORE/rejected/*.json` record (each is written whole under its final name).
pub fn rejected_records(store: &Path) -> Vec<RejectedRecord> {
    let Ok(rd) = std::fs::read_dir(store.join("rejected")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not a rejected record: {e}", p.display()))
        })
        .collect()
}

/// `STORE/quarantine/<bundle_id>/receipt.json`, or `None` while it does not exist.
pub fn receipt(store: &Path, bundle_id: &str) -> Option<Receipt> {
    let path = store
        .join("quarantine")
        .join(bundle_id)
        .join("receipt.json");
    let bytes = std::fs::read(&path).ok()?;
    Some(
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} is not a receipt: {e}", path.display())),
    )
}

/// Names under `STORE/quarantine/`, sorted.
pub fn quarantine_ids(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("quarantine"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Everything below `dir` as (relative path, is a directory), sorted by path.
fn walk(dir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if is_dir {
                stack.push(p);
            }
            out.push((rel, is_dir));
        }
    }
    out.sort();
    out
}

/// Every file below `STORE/staging/` (relative paths), for orphan checks.
pub fn staging_files(store: &Path) -> Vec<String> {
    walk(&store.join("staging"))
        .into_iter()
        .filter(|(_, is_dir)| !is_dir)
        .map(|(rel, _)| rel)
        .collect()
}

/// Everything left below `STORE/staging/` (files and directories, relative), except the store's
/// fixed layout directories `objects`, `extract` and `media` themselves (anything inside them
/// is a leftover).
pub fn staging_leftovers(store: &Path) -> Vec<String> {
    walk(&store.join("staging"))
        .into_iter()
        .filter(|(rel, is_dir)| {
            !(*is_dir && ["objects", "extract", "media"].contains(&rel.as_str()))
        })
        .map(|(rel, _)| rel)
        .collect()
}

/// What `sluice-recv audit verify --json` said.
#[derive(Debug)]
pub struct AuditVerify {
    pub code: i32,
    /// The JSON report on stdout (`Null` when there was none).
    pub report: serde_json::Value,
    /// stdout and stderr, for failure messages.
    pub output: String,
}

/// `RECV_BIN audit verify --json --store STORE`.
pub fn audit_verify(recv_bin: &Path, store: &Path) -> AuditVerify {
    let out = Command::new(recv_bin)
        .args(["audit", "verify", "--json", "--store"])
        .arg(store)
        .output()
        .expect("run audit verify");
    AuditVerify {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
