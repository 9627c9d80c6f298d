//! The quarantine store: staging for objects being reassembled, the commit protocol that moves a
//! verified bundle into `quarantine/`, rejected records, the hash-chained audit log and the
//! durable per-channel high-water marks. docs/store.md is the specification.
//!
//! Layout under the store directory `DIR`:
//!
//! ```text
//! DIR/.lock                              flock(LOCK_EX): one receiver per store
//! DIR/staging/            (0700)         private to the receiver
//!     objects/<object-id>.part           bundle file being reassembled (written at offsets)
//!     objects/<object-id>.progress       transport progress (opaque; atomic replace)
//!     extract/x-<random>/files/...       a bundle's files while they verify
//!     extract/x-<random>/receipt.json
//! DIR/quarantine/<bundle-id>/files/...   committed bundles (files 0644/0755, dirs 0755)
//! DIR/quarantine/<bundle-id>/receipt.json
//! DIR/rejected/<timestamp>-<id>.json     one reason record per rejected object
//! DIR/audit.jsonl                        hash-chained decision log
//! DIR/state/channels/c-<hex>.json        per-channel high-water mark (fail closed if corrupt)
//! DIR/state/status.json                  written by the listener (heartbeats), read by status
//! ```
//!
//! Commit order (see [`Store::commit`]): files fsynced at end_file → every directory fsynced →
//! receipt written and fsynced → `renameat2(NOREPLACE)` into `quarantine/` → fsync
//! `quarantine/` and `staging/extract/` → audit record appended and fsynced → high-water mark
//! replaced atomically. The audit record comes before the mark because the mark is derived state:
//! it can always be rebuilt upward from the audit log (and from quarantine), never the reverse.

//!
//! Source layout: one concern per module, with what each imports from the others:
//!
//! ```text
//! error      StoreError and its operator hints          imports nothing of the store
//! steps      named commit steps (test fault points)     nothing
//! records    on-disk JSON formats                       nothing
//! fsutil     dir-fd relative, no-follow file helpers    nothing
//! audit      the hash-chained log                       records
//! extract    a bundle's files while they verify         fsutil
//! handle     Store, StoreConfig, MediaPolicy, open      audit, error, fsutil, steps
//! staging    .part/.progress objects and the quota      error, fsutil, handle
//! marks      per-channel high-water marks               error, fsutil, handle, records
//! reject     rejected and incomplete records            error, fsutil, handle, records
//! commit     the commit protocol and duplicates         audit, error, extract, fsutil, handle,
//!                                                       records, reject, steps
//! reconcile  repairs on open                            audit, error, fsutil, handle, inspect,
//!                                                       records, reject, staging
//! media      staged spool volumes                       error, fsutil, handle, reconcile, staging
//! overdue    expect_every: overdue channels, missing    nothing
//!            sends, the listener's OverdueWatch
//! inspect    read-only status and audit verification    audit, extract, fsutil, overdue, records,
//!                                                       staging
//! ```
//!
//! `handle` holds [`Store`] itself (fields `pub(super)`), its configuration, the reconcile report
//! and opening; every concern module above imports it to add methods to `Store`, and it imports
//! only `audit`, `error`, `fsutil` and `steps` (the test fault points). `mod.rs` only declares
//! the modules and re-exports the public API, so no module imports another that imports it back.

pub mod audit; // pub: sluice-promote appends through audit::append_shared
mod commit;
mod error;
mod extract;
mod fsutil;
mod handle;
pub mod inspect;
mod marks;
pub mod media;
mod overdue;
mod reconcile;
pub mod records;
mod reject;
mod staging;
mod steps;
#[cfg(test)]
mod tests;

#[cfg(test)]
use commit::CommitInfo;
pub use commit::Decision;
pub use error::StoreError;
pub use extract::Extraction;
pub use fsutil::DropBehind;
pub use handle::{ReconcileReport, Store, StoreConfig};
#[cfg_attr(not(test), allow(unused_imports))]
pub use records::{Source, TransportFigures};
pub use reject::RejectSubject;
pub use staging::{MAX_PROGRESS_BYTES, ObjectFile, ObjectId, PartialObject, ProgressList};
#[cfg(test)]
use steps::{Fault, Step};
