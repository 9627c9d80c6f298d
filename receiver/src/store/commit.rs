//! The commit protocol: a verified bundle's extraction becomes `quarantine/<bundle-id>` with its
//! receipt, audit record and channel mark, in the crash-safe order the store module documents;
//! and the decisions taken on the way (duplicate, rollback). Fault-injection points for the
//! tests sit between the steps.

use std::io::{self, Write};
use std::path::PathBuf;

use rustix::fs::FileType;
use sluice_common::bundle::{BundleId, EntryKind, Header, RejectReason, Verified};
use sluice_host::time;

use super::audit::AcceptedInfo;
use super::error::{StoreError, ioe};
use super::extract::Extraction;
use super::fsutil;
use super::handle::Store;
use super::records::{AuditRecord, Receipt, ReceiptEntry, SignerInfo, TransportFigures};
use super::reject::RejectSubject;
#[cfg(test)]
use super::steps::Fault;
use super::steps::Step;

/// What the store did with a verified bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Committed durably to `path` (`DIR/quarantine/<bundle-id>`).
    Accepted { path: PathBuf },
    /// The same bundle id was accepted before; no second copy. `existing` is its quarantine path
    /// (it may since have been released and removed by an operator).
    Duplicate { existing: PathBuf },
    /// Refused by store-side policy (today: `Rollback`); recorded in rejected/ and the audit log.
    Rejected {
        reason: RejectReason,
        detail: String,
    },
}

/// The fields of a verified bundle that a commit records. Built only from a [`Verified`] outside
/// tests, so nothing unverified can reach quarantine through the public API.
#[derive(Clone, Debug)]
pub(super) struct CommitInfo {
    pub(super) id: BundleId,
    /// The signed header as verified, whole: the receipt and the audit record copy from it.
    pub(super) header: Header,
    pub(super) signer_name: String,
    pub(super) bundle_bytes: u64,
}

impl CommitInfo {
    pub(super) fn from_verified(v: &Verified) -> CommitInfo {
        CommitInfo {
            id: v.id(),
            header: v.header().clone(),
            signer_name: v.signer_name().to_owned(),
            bundle_bytes: v.bundle_bytes(),
        }
    }
}

impl Store {
    /// True if this bundle id was accepted before (audit log) or sits in quarantine. Callers
    /// check this before verifying/extracting, to skip work on a replay.
    pub fn is_accepted(&self, bundle_id: &BundleId) -> bool {
        let hex_id = bundle_id.to_hex();
        self.accepted.contains_key(&hex_id)
            || matches!(
                fsutil::type_at(&self.quarantine, &hex_id),
                Ok(Some(FileType::Directory))
            )
    }

    /// Records a replay of an already-accepted bundle: a `duplicate` audit record, no
    /// second copy, and the bundle's staged object removed. `commit` calls this itself; a caller
    /// that checked [`Store::is_accepted`] before verifying calls it directly to skip the work.
    /// `known` is (channel, sequence, signer name) when the header was decoded; without it the
    /// channel and sequence come from the accepted record, so the duplicate record names them
    /// either way.
    pub fn record_duplicate(
        &mut self,
        bundle_id: &BundleId,
        known: Option<(&str, u64, &str)>,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let idhex = bundle_id.to_hex();
        let object_id = bundle_id.object_id();
        let accepted = self.accepted.get(&idhex);
        let channel = known
            .map(|k| k.0.to_owned())
            .or_else(|| accepted.and_then(|a| a.channel.clone()));
        let sequence = known
            .map(|k| k.1)
            .or_else(|| accepted.and_then(|a| a.sequence));
        // The signer of the copy already accepted (a duplicate is the same signed bytes): callers
        // that only replayed a capture do not know it, and an empty name would mislead.
        let signer = accepted
            .and_then(|a| a.signer.clone())
            .or_else(|| known.map(|k| k.2.to_owned()))
            .filter(|s| !s.is_empty());
        self.audit
            .append(AuditRecord {
                outcome: "duplicate".into(),
                bundle_id: Some(idhex.clone()),
                object_id: Some(hex::encode(object_id)),
                channel,
                sequence,
                signer,
                path: Some(format!("quarantine/{idhex}")),
                detail: Some("already accepted; no second copy".into()),
                transport: Some(transport),
                ..AuditRecord::default()
            })
            .map_err(ioe("append audit.jsonl"))?;
        self.cleanup_object(object_id);
        Ok(Decision::Duplicate {
            existing: self.dir.join("quarantine").join(idhex),
        })
    }

    /// A fresh private extraction directory for the verifier's [`FileSink`] calls.
    ///
    /// [`FileSink`]: sluice_common::bundle::FileSink
    pub fn stage_extract(&self) -> Result<Extraction, StoreError> {
        let dup = self
            .extract
            .try_clone()
            .map_err(ioe("dup staging/extract fd"))?;
        Extraction::new(dup, &self.dir).map_err(ioe("create staging/extract/<tmp>"))
    }

    /// Commits a verified bundle whose files were streamed into `extraction`.
    ///
    /// Order: duplicate check → high-water mark check (fail closed if corrupt; `Rollback` if
    /// `require_increasing_sequence` and the sequence is not above the mark) → fsync every
    /// directory (files were fsynced as they ended) → write + fsync `receipt.json` → fsync the
    /// extraction dir → `renameat2(RENAME_NOREPLACE)` into `quarantine/<id>` → fsync
    /// `quarantine/` and `staging/extract/` → append + fsync the audit record → replace the
    /// channel mark. A failure before the audit record leaves nothing in quarantine (a renamed
    /// entry is moved back out) and returns a [`StoreError`]; the staged object is kept so a
    /// later pass can retry. After any decision the staged object of this bundle is removed.
    pub fn commit(
        &mut self,
        extraction: Extraction,
        verified: &Verified,
        require_increasing_sequence: bool,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let info = CommitInfo::from_verified(verified);
        self.commit_core(extraction, &info, require_increasing_sequence, transport)
    }

    pub(super) fn commit_core(
        &mut self,
        mut ext: Extraction,
        info: &CommitInfo,
        require_increasing_sequence: bool,
        transport: TransportFigures,
    ) -> Result<Decision, StoreError> {
        let idhex = info.id.to_hex();
        let object_id = info.id.object_id();
        if let Some(why) = self.audit.poisoned_reason() {
            return Err(StoreError::Io {
                what: format!(
                    "store degraded: audit log fsync failed earlier ({why}); restart sluice-recv to reconcile before committing {idhex}"
                ),
                source: io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if let Some((msg, err)) = ext.storage_error() {
            return Err(StoreError::Io {
                what: format!("extract bundle {idhex}: {msg}"),
                source: err,
            });
        }
        if ext.has_open_file() {
            return Err(StoreError::Misuse {
                what: format!("commit of {idhex} with a file still open in the extraction"),
            });
        }
        let qpath = self.dir.join("quarantine").join(&idhex);
        if !ext.matches(&info.header.entries) {
            return Err(StoreError::Misuse {
                what: format!(
                    "extraction {} does not hold exactly the verified manifest of {idhex}; not committing",
                    ext.path().display()
                ),
            });
        }
        if self.is_accepted(&info.id) {
            ext.discard();
            return self.record_duplicate(
                &info.id,
                Some((
                    info.header.channel.as_str(),
                    info.header.sequence,
                    info.signer_name.as_str(),
                )),
                transport,
            );
        }
        let mark = self.high_water_mark(&info.header.channel)?;
        if require_increasing_sequence {
            if let Some(m) = mark {
                if info.header.sequence <= m {
                    ext.discard();
                    let detail = format!(
                        "channel {:?} requires increasing sequences: {} is not above the last accepted {m}",
                        info.header.channel, info.header.sequence
                    );
                    let subject = RejectSubject {
                        object_id: Some(object_id),
                        bundle_id: Some(info.id),
                        channel: Some(info.header.channel.clone()),
                        sequence: Some(info.header.sequence),
                    };
                    self.reject_inner(
                        &subject,
                        RejectReason::Rollback,
                        &detail,
                        Some(transport),
                        false,
                    )?;
                    self.cleanup_object(object_id);
                    return Ok(Decision::Rejected {
                        reason: RejectReason::Rollback,
                        detail,
                    });
                }
            }
        }
        // Durability of the content, then the receipt, all still private in staging.
        // Directories the extraction already left were fsynced then, off the lock; only the
        // open ones (at most the path depth) are left.
        ext.sync_open_dirs().map_err(ioe(format!(
            "fsync directories of {}",
            ext.path().display()
        )))?;
        self.checkpoint(Step::DirsSynced, Some(&mut ext))?;
        let receipt = self.receipt(info, transport.clone());
        let mut receipt_bytes = serde_json::to_vec_pretty(&receipt)
            .map_err(|e| ioe("encode receipt")(io::Error::other(e)))?;
        receipt_bytes.push(b'\n');
        let receipt_hash = blake3::hash(&receipt_bytes).to_hex().to_string();
        (|| {
            let mut f = fsutil::create_file_excl(ext.root_fd(), "receipt.json", 0o644)?;
            f.write_all(&receipt_bytes)?;
            f.sync_all()?;
            fsutil::fsync(ext.root_fd())
        })()
        .map_err(ioe(format!("write {}/receipt.json", ext.path().display())))?;
        self.checkpoint(Step::ReceiptWritten, Some(&mut ext))?;
        // The atomic step: nothing is visible in quarantine before this, everything after.
        fsutil::rename_noreplace(&self.extract, &ext.name, &self.quarantine, &idhex).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::Conflict {
                    what: format!(
                        "quarantine/{idhex} already exists but is not an accepted bundle (a planted file or symlink?); not replacing it: {e}"
                    ),
                }
            } else {
                ioe(format!("rename into quarantine/{idhex}"))(e)
            }
        })?;
        let staged_name = ext.name.clone();
        ext.finished = true;
        drop(ext);
        let durable = self
            .checkpoint(Step::Renamed, None)
            .and_then(|()| fsutil::fsync(&self.quarantine).map_err(ioe("fsync quarantine/")))
            .and_then(|()| fsutil::fsync(&self.extract).map_err(ioe("fsync staging/extract/")))
            .and_then(|()| self.checkpoint(Step::QuarantineSynced, None))
            .and_then(|()| {
                self.audit
                    .append(AuditRecord {
                        outcome: "accepted".into(),
                        bundle_id: Some(idhex.clone()),
                        object_id: Some(hex::encode(object_id)),
                        channel: Some(info.header.channel.clone()),
                        sequence: Some(info.header.sequence),
                        signer: Some(info.signer_name.clone()),
                        path: Some(format!("quarantine/{idhex}")),
                        receipt_blake3: Some(receipt_hash.clone()),
                        transport: Some(transport),
                        ..AuditRecord::default()
                    })
                    .map(drop)
                    .map_err(ioe("append audit.jsonl"))
            });
        if let Err(e) = durable {
            if self.simulated_crash() {
                return Err(e);
            }
            if self.audit.is_poisoned() {
                // The record may or may not be in the log (write done, fsync failed). Do not
                // report it accepted and do not withdraw it either: a restart reconciles
                // it (re-verifying every file) whichever way the log turned out.
                tracing::error!(bundle = %idhex, error = %e,
                    "audit fsync failed; bundle NOT reported accepted; store degraded until restart");
                return Err(e);
            }
            // Not accepted (no retry-then-trust). Take it back out of quarantine.
            tracing::error!(bundle = %idhex, error = %e, "commit failed after rename; withdrawing the entry");
            match fsutil::rename_noreplace(&self.quarantine, &idhex, &self.extract, &staged_name) {
                Ok(()) => {
                    let _ = fsutil::fsync(&self.quarantine);
                    let _ = fsutil::remove_tree_at(&self.extract, &staged_name);
                }
                Err(e2) => tracing::error!(bundle = %idhex, error = %e2,
                    "could not withdraw the entry; reconciliation will re-check it on restart"),
            }
            return Err(e);
        }
        self.accepted.insert(
            idhex.clone(),
            AcceptedInfo {
                channel: Some(info.header.channel.clone()),
                sequence: Some(info.header.sequence),
                receipt_blake3: Some(receipt_hash),
                signer: Some(info.signer_name.clone()),
            },
        );
        let e = self
            .channel_max
            .entry(info.header.channel.clone())
            .or_insert(info.header.sequence);
        *e = (*e).max(info.header.sequence);
        let new_mark = mark.map_or(info.header.sequence, |m| m.max(info.header.sequence));
        let marked = self
            .checkpoint(Step::Audited, None)
            .and_then(|()| self.write_mark(&info.header.channel, new_mark, &idhex));
        if self.simulated_crash() {
            return Err(StoreError::Misuse {
                what: "simulated crash".into(),
            });
        }
        if let Err(err) = marked {
            // Accepted already (the audit record is the decision); the in-memory history keeps
            // rollback protection and reconciliation rewrites the mark on the next open.
            tracing::error!(channel = %info.header.channel, error = %err, "high-water mark update failed; it will be rebuilt from audit.jsonl");
        }
        self.cleanup_object(object_id);
        Ok(Decision::Accepted { path: qpath })
    }

    /// Fault-injection point (a no-op outside tests).
    #[cfg(not(test))]
    pub(super) fn checkpoint(
        &mut self,
        _step: Step,
        _ext: Option<&mut Extraction>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(not(test))]
    pub(super) fn simulated_crash(&self) -> bool {
        false
    }

    #[cfg(test)]
    pub(super) fn checkpoint(
        &mut self,
        step: Step,
        ext: Option<&mut Extraction>,
    ) -> Result<(), StoreError> {
        match self.fault {
            Some(Fault::Crash(s)) if s == step => {
                self.crashed = true;
                if let Some(ext) = ext {
                    ext.finished = true; // a killed process cleans nothing up
                }
                Err(StoreError::Misuse {
                    what: format!("simulated crash after {step:?}"),
                })
            }
            Some(Fault::Eio(s)) if s == step => Err(StoreError::Io {
                what: format!("injected fault after {step:?}"),
                source: io::Error::from_raw_os_error(libc::EIO),
            }),
            _ => Ok(()),
        }
    }

    #[cfg(test)]
    pub(super) fn simulated_crash(&self) -> bool {
        self.crashed
    }

    pub(super) fn cleanup_object(&mut self, object_id: [u8; 16]) {
        if let Err(e) = self.remove_object(object_id) {
            tracing::warn!(object = %hex::encode(object_id), error = %e, "could not remove staged object");
        }
    }

    pub(super) fn receipt(&self, info: &CommitInfo, transport: TransportFigures) -> Receipt {
        let now = time::now_unix_ms();
        let ms = |secs: u64| secs.saturating_mul(1000);
        Receipt {
            schema: super::records::RECEIPT_SCHEMA.into(),
            bundle_id: info.id.to_hex(),
            format_version: info.header.format_version,
            channel: info.header.channel.clone(),
            sequence: info.header.sequence,
            signer: SignerInfo {
                name: info.signer_name.clone(),
                key_id: info.header.signer.to_hex(),
            },
            created: time::rfc3339_ms(ms(info.header.created)),
            created_unix_ms: ms(info.header.created),
            expires: info.header.expires.map(|e| time::rfc3339_ms(ms(e))),
            expires_unix_ms: info.header.expires.map(ms),
            note: info.header.note.clone(),
            received: time::rfc3339_ms(now),
            received_unix_ms: now,
            bundle_bytes: info.bundle_bytes,
            entries: info
                .header
                .entries
                .iter()
                .map(|e| ReceiptEntry {
                    path: e.path.clone(),
                    kind: match e.kind {
                        EntryKind::File => "file".into(),
                        EntryKind::Dir => "dir".into(),
                    },
                    size_bytes: e.size,
                    blake3: (e.kind == EntryKind::File).then(|| hex::encode(e.blake3)),
                    executable: e.executable,
                })
                .collect(),
            transport,
        }
    }
}
