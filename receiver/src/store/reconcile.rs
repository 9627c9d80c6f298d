//! Restart reconciliation: whatever a crash or a killed process left behind is repaired when the
//! store opens, before anything else runs. Leftover extractions and unresumable staging files are
//! removed; quarantine entries without an audit record are re-verified and either recorded or
//! removed; marks behind the audit log are raised. The [`ReconcileReport`] says what was done, so
//! the operator sees every repair (the listener and importer log it when they open the store).

use std::fmt;

use rustix::fs::FileType;
use sluice_common::bundle::{BundleId, RejectReason};

use super::audit::AcceptedInfo;
use super::error::{StoreError, ioe};
use super::handle::{ReconcileReport, Store};
use super::records::AuditRecord;
use super::reject::RejectSubject;
use super::staging::parse_object_id;
use super::{fsutil, inspect};

impl ReconcileReport {
    /// True when the store was found consistent and nothing was repaired.
    pub fn is_empty(&self) -> bool {
        *self == ReconcileReport::default()
    }
}

/// One line for the operator: counts per kind of repair, naming the channels involved.
impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing to repair");
        }
        let mut parts = Vec::new();
        let counted = [
            (
                self.removed_extractions.len(),
                "unfinished extraction(s) removed",
            ),
            (
                self.removed_staging_files.len(),
                "unresumable staging file(s) removed",
            ),
            (
                self.audit_appended.len(),
                "quarantine entr(ies) re-verified and recorded",
            ),
            (
                self.removed_invalid_entries.len(),
                "unrecorded quarantine entr(ies) failed re-checking and were removed",
            ),
            (
                self.foreign_entries.len(),
                "foreign name(s) in quarantine/ left alone",
            ),
        ];
        for (n, what) in counted {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        for (channel, old, new) in &self.raised_marks {
            let old = old.map_or_else(|| "none".to_string(), |o| o.to_string());
            parts.push(format!(
                "mark of channel {channel:?} raised from {old} to {new}"
            ));
        }
        if !self.corrupt_marks.is_empty() {
            parts.push(format!(
                "corrupt mark(s), channel(s) refusing until repaired: {:?}",
                self.corrupt_marks
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}

impl Store {
    /// What reconciliation did when this store was opened.
    pub fn reconcile_report(&self) -> &ReconcileReport {
        &self.reconcile
    }

    pub(super) fn reconcile(&mut self) -> Result<(), StoreError> {
        let d = self.dir.display().to_string();
        let mut report = ReconcileReport::default();
        // 1. Leftover extractions: never committed, never trustworthy.
        for (name, _) in
            fsutil::list_dir(&self.extract).map_err(ioe(format!("list {d}/staging/extract")))?
        {
            fsutil::remove_tree_at(&self.extract, &name)
                .map_err(ioe(format!("remove {d}/staging/extract/{name}")))?;
            report.removed_extractions.push(name);
        }
        fsutil::fsync(&self.extract).map_err(ioe(format!("fsync {d}/staging/extract")))?;
        // 2. Objects: a .part without .progress holds nothing resumable; temps are debris.
        let names: Vec<String> = fsutil::list_dir(&self.objects)
            .map_err(ioe(format!("list {d}/staging/objects")))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for name in &names {
            let keep = if let Some(id) = name.strip_suffix(".part") {
                parse_object_id(id).is_some() && names.contains(&format!("{id}.progress"))
            } else if let Some(id) = name.strip_suffix(".progress") {
                parse_object_id(id).is_some() && names.contains(&format!("{id}.part"))
            } else {
                false
            };
            if keep {
                if let Some(id) = name.strip_suffix(".part").and_then(parse_object_id) {
                    let st = fsutil::stat_at(&self.objects, name)
                        .map_err(ioe(format!("stat {d}/staging/objects/{name}")))?;
                    self.reserved.insert(id, st.st_size as u64);
                }
            } else {
                fsutil::remove_tree_at(&self.objects, name)
                    .map_err(ioe(format!("remove {d}/staging/objects/{name}")))?;
                report.removed_staging_files.push(name.clone());
            }
        }
        fsutil::fsync(&self.objects).map_err(ioe(format!("fsync {d}/staging/objects")))?;
        // 3. Quarantine entries without an accepted audit record: re-check, then record or
        //    remove. Names the store did not create are reported and left alone.
        for (name, _) in
            fsutil::list_dir(&self.quarantine).map_err(ioe(format!("list {d}/quarantine")))?
        {
            let is_dir = fsutil::type_at(&self.quarantine, &name)
                .map_err(ioe(format!("stat {d}/quarantine/{name}")))?
                == Some(FileType::Directory);
            if !inspect::is_bundle_dir_name(&name) || !is_dir {
                tracing::warn!(entry = %name, "quarantine/: foreign entry (not created by the store); left alone");
                report.foreign_entries.push(name);
                continue;
            }
            if self.accepted.contains_key(&name) {
                continue;
            }
            match inspect::check_entry(&self.quarantine, &name) {
                Ok((receipt, receipt_hash)) => {
                    self.audit
                        .append(AuditRecord {
                            outcome: "accepted".into(),
                            bundle_id: Some(name.clone()),
                            object_id: Some(bundle_object_hex(&name)),
                            channel: Some(receipt.channel.clone()),
                            sequence: Some(receipt.sequence),
                            signer: Some(receipt.signer.name.clone()),
                            path: Some(format!("quarantine/{name}")),
                            receipt_blake3: Some(receipt_hash.clone()),
                            transport: Some(receipt.transport.clone()),
                            detail: Some(
                                "reconciled after restart: entry re-verified against its receipt"
                                    .into(),
                            ),
                            reconciled: true,
                            ..AuditRecord::default()
                        })
                        .map_err(ioe(format!("append {d}/audit.jsonl")))?;
                    self.accepted.insert(
                        name.clone(),
                        AcceptedInfo {
                            channel: Some(receipt.channel.clone()),
                            sequence: Some(receipt.sequence),
                            receipt_blake3: Some(receipt_hash),
                            signer: Some(receipt.signer.name.clone()),
                        },
                    );
                    let e = self
                        .channel_max
                        .entry(receipt.channel.clone())
                        .or_insert(receipt.sequence);
                    *e = (*e).max(receipt.sequence);
                    report.audit_appended.push(name);
                }
                Err(problems) => {
                    let detail = format!(
                        "reconcile: quarantine entry without an audit record failed re-checking: {}",
                        problems.join("; ")
                    );
                    tracing::error!(bundle = %name, %detail, "removing invalid quarantine entry");
                    let tmp = format!("x-{}", fsutil::random_hex(16).map_err(ioe("random"))?);
                    fsutil::rename_noreplace(&self.quarantine, &name, &self.extract, &tmp)
                        .map_err(ioe(format!("move {d}/quarantine/{name} out")))?;
                    fsutil::fsync(&self.quarantine)
                        .map_err(ioe(format!("fsync {d}/quarantine")))?;
                    fsutil::remove_tree_at(&self.extract, &tmp)
                        .map_err(ioe(format!("remove {d}/staging/extract/{tmp}")))?;
                    let subject = RejectSubject {
                        bundle_id: parse_bundle_id(&name),
                        ..RejectSubject::default()
                    };
                    self.reject_inner(&subject, RejectReason::StorageError, &detail, None, true)?;
                    report.removed_invalid_entries.push(name);
                }
            }
        }
        // 4. High-water marks: raise any mark that is behind the audit log (or missing).
        let mut chans: Vec<(String, u64)> = self
            .channel_max
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect();
        chans.sort();
        for (channel, max) in chans {
            match self.read_mark(&channel) {
                Ok(Some(m)) if m.sequence >= max => {}
                Ok(old) => {
                    self.write_mark(&channel, max, "(rebuilt from audit.jsonl)")?;
                    tracing::warn!(%channel, old = ?old.as_ref().map(|m| m.sequence), new = max,
                        "high-water mark raised to match the audit log");
                    report
                        .raised_marks
                        .push((channel, old.map(|m| m.sequence), max));
                }
                Err(StoreError::StateCorrupt { .. }) => report.corrupt_marks.push(channel),
                Err(e) => return Err(e),
            }
        }
        self.reconcile = report;
        Ok(())
    }
}

pub(super) fn parse_bundle_id(hex_str: &str) -> Option<BundleId> {
    let v = hex::decode(hex_str).ok()?;
    let arr: [u8; 32] = v.try_into().ok()?;
    Some(BundleId(arr))
}

fn bundle_object_hex(bundle_hex: &str) -> String {
    parse_bundle_id(bundle_hex)
        .map(|b| hex::encode(b.object_id()))
        .unwrap_or_default()
}
