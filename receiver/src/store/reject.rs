//! Recording what was not accepted: a rejection (`rejected/<timestamp>-<id>.json` plus an audit
//! record) and an incomplete transfer (audit record only, staging kept for a later pass).

use std::io;
use std::path::PathBuf;

use sluice_common::bundle::{BundleId, RejectReason};
use sluice_host::time;

use super::error::{StoreError, ioe};
use super::fsutil;
use super::handle::Store;
use super::records::{AuditRecord, RejectedRecord, TransportFigures};

/// What a rejection is about: whatever is known at the stage it failed.
#[derive(Clone, Debug, Default)]
pub struct RejectSubject {
    pub object_id: Option<[u8; 16]>,
    pub bundle_id: Option<BundleId>,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
}

impl Store {
    /// Records a rejection: `rejected/<timestamp>-<id>.json` (reason code, detail, what is
    /// known) and an audit record, then removes the object's staging files. Returns the record's
    /// path. Cleanup happens even if recording fails (the error is still returned).
    pub fn reject(
        &mut self,
        subject: &RejectSubject,
        reason: RejectReason,
        detail: &str,
        transport: Option<TransportFigures>,
    ) -> Result<PathBuf, StoreError> {
        let r = self.reject_inner(subject, reason, detail, transport, false);
        if let Some(id) = subject.object_id {
            self.cleanup_object(id);
        }
        r
    }

    pub(super) fn reject_inner(
        &mut self,
        subject: &RejectSubject,
        reason: RejectReason,
        detail: &str,
        transport: Option<TransportFigures>,
        reconciled: bool,
    ) -> Result<PathBuf, StoreError> {
        let now = time::now_unix_ms();
        let bundle_hex = subject.bundle_id.map(|b| b.to_hex());
        let object_hex = subject.object_id.map(hex::encode);
        let label = bundle_hex
            .clone()
            .or_else(|| object_hex.clone())
            .unwrap_or_else(|| "unknown".into());
        let record = RejectedRecord {
            schema: super::records::REJECTED_SCHEMA.into(),
            time: time::rfc3339_ms(now),
            time_unix_ms: now,
            reason: reason.code().into(),
            detail: detail.into(),
            bundle_id: bundle_hex.clone(),
            object_id: object_hex.clone(),
            channel: subject.channel.clone(),
            sequence: subject.sequence,
            transport: transport.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| ioe("encode rejected record")(io::Error::other(e)))?;
        bytes.push(b'\n');
        let base = format!("{}-{label}", time::compact(now));
        let mut written = None;
        let mut last_err = None;
        for n in 0..100u32 {
            let name = if n == 0 {
                format!("{base}.json")
            } else {
                format!("{base}-{n}.json")
            };
            match fsutil::write_new_at(&self.rejected, &name, &bytes, 0o644) {
                Ok(()) => {
                    written = Some(name);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last_err = Some(ioe(format!("write rejected/{name}"))(e));
                    break;
                }
            }
        }
        let audit = self
            .audit
            .append(AuditRecord {
                outcome: "rejected".into(),
                bundle_id: bundle_hex,
                object_id: object_hex,
                channel: subject.channel.clone(),
                sequence: subject.sequence,
                reason: Some(reason.code().into()),
                detail: Some(detail.into()),
                rejected_record: written.as_ref().map(|n| format!("rejected/{n}")),
                transport,
                reconciled,
                ..AuditRecord::default()
            })
            .map_err(ioe("append audit.jsonl"));
        if let Some(e) = last_err {
            return Err(e);
        }
        audit?;
        match written {
            Some(n) => Ok(self.dir.join("rejected").join(n)),
            None => Err(StoreError::Conflict {
                what: format!("rejected/{base}*.json: 100 names taken"),
            }),
        }
    }

    /// Records a transfer that ended without enough symbols to recover the object: an audit
    /// record `incomplete` (reason `insufficient_symbols`). No rejected/ record, because nothing
    /// was judged: the staged object and its progress are kept so a later pass or resend can
    /// complete it (call [`Store::remove_object`] to give up on it instead).
    pub fn record_incomplete(
        &mut self,
        object_id: [u8; 16],
        detail: &str,
        transport: TransportFigures,
    ) -> Result<(), StoreError> {
        self.audit
            .append(AuditRecord {
                outcome: "incomplete".into(),
                object_id: Some(hex::encode(object_id)),
                reason: Some(RejectReason::InsufficientSymbols.code().into()),
                detail: Some(detail.into()),
                transport: Some(transport),
                ..AuditRecord::default()
            })
            .map(drop)
            .map_err(ioe("append audit.jsonl"))
    }
}
