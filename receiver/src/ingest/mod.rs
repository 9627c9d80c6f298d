//! The one pipeline behind `listen` (UDP) and `import` (spool volumes): frames → the transport
//! [`Receiver`] → staging object in the store → bundle verification → quarantine commit or a
//! recorded rejection.
//!
//! Authenticate first: the transport [`Receiver`] keeps a new object *unauthenticated* (no
//! staging file, no quota, nothing persisted, a small memory share) until its first bytes are
//! offered; the pipeline checks the ed25519 signature over the raw prefix and header
//! (`sluice_common::bundle::auth`) and asks [`admit`]'s `Admission` about the signed facts
//! before anything of the object is staged. Unauthenticated refusals are counted, never
//! recorded or logged; every other non-accept record is within admission's budget.
//!
//! Threads, and why:
//! - the caller's thread owns the [`Receiver`] state machine and performs its effects, except
//!   staging I/O and decoding;
//! - one staging writer ([`stager`]) creates, writes, checkpoints and fsyncs staged
//!   objects in effect order, so copying blocks into the page cache (the receive thread's
//!   largest cost) never stops the socket from being drained;
//! - decode workers run RaptorQ [`DecodeTask`]s, the only CPU-heavy step of reception, so a decode
//!   never delays draining the socket (when their queue is full a task waits in the pipeline,
//!   counted, never decoded inline);
//! - one verifier thread verifies complete objects and commits them. Verification streams the
//!   whole bundle through blake3 and into an extraction directory (seconds for a large bundle), so
//!   it runs outside the store lock: the lock is taken only to open the object, stage the
//!   extraction, and commit;
//! - up to [`early::MAX_RUNNING`] early verifiers ([`early`]) do that streaming while an
//!   object still arrives, following the bytes the staging writer has written, so the verifier
//!   thread usually only re-checks freshness and commits. They never decide a rejection.
//!
//! Memory stays bounded: the [`Receiver`] caps buffered symbols, in-flight decodes and queued
//! writes at its budget; the decode queue holds at most `2 × workers` tasks (each already counted
//! in that budget); blocks handed to the staging writer are capped at
//! [`stager::QUEUE_BYTES`] (32 MiB) on top; the verifier queue holds object ids only.
//!
//! Source layout (each file says what it owns; none imports this file, and no two import each
//! other):
//!
//! ```text
//! outcome    Outcome, OutcomeKind, LastHeartbeat, the outcome log line
//! admit      the one Admission behind a mutex, its clock       imports nothing of ingest
//! frontier   how far an object's bytes are written             nothing
//! stager     the staging writer thread                         frontier
//! early      early verifiers                                   frontier
//! first_bytes  the decision about an object's first bytes      admit, outcome
//! commit     verify_and_commit: one object's decision          admit, early, outcome
//! workers    decode pool and verifier thread                   admit, commit, outcome
//! pipeline   Pipeline: the Receiver and its effects            admit, commit, early, outcome,
//!                                                              stager, workers
//! ```

use std::path::Path;

mod admit;
mod commit;
pub mod early;
mod first_bytes;
pub mod frontier;
mod outcome;
mod pipeline;
pub mod stager;
mod workers;

pub use outcome::{LastHeartbeat, Outcome, OutcomeKind};
pub use pipeline::Pipeline;
pub use workers::Room;

use crate::store::{Store, StoreConfig, StoreError};

/// Opens the store for `listen` or `import`, and tells the operator what restart
/// reconciliation repaired (nothing, usually).
pub fn open_store(dir: &Path, staging_quota_bytes: u64) -> Result<Store, StoreError> {
    let store = Store::open(
        dir,
        StoreConfig {
            staging_quota_bytes,
        },
    )?;
    let report = store.reconcile_report();
    if report.is_empty() {
        tracing::info!(store = %dir.display(), "store opened; reconciliation found nothing to repair");
    } else {
        tracing::info!(store = %dir.display(), repaired = %report,
            "store opened; reconciliation repaired what an interrupted run left behind");
    }
    Ok(store)
}
