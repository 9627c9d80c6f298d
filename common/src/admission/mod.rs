//! Admission: what the receiver does with an object once it is authenticated, verified or
//! refused — accept, duplicate, reject, retry — and which of those outcomes may be written down.
//!
//! This module owns the decision and its bounds, not the effects: [`Admission`] is a sans-IO
//! state machine. The caller passes in the time (milliseconds on a clock that never goes
//! backwards, e.g. `Instant` elapsed since start; a backwards step counts as no time passing),
//! the facts from [`Verified`] or [`AuthenticatedPrefix`], and what the store knows (already
//! accepted? the channel's high-water mark), and performs the [`Decision`] it gets back.
//!
//! Rules, in the order [`Admission::handle_verified`] applies them:
//! 1. **Id check.** The verified bundle id must be the one the transport object is named after
//!    (`id.object_id() == object_id`). A mismatch is a valid bundle replayed under another object
//!    id: nothing new was signed, so it is refused as unauthenticated and never recorded.
//! 2. **Duplicate.** A bundle the store already accepted is a duplicate, and a duplicate is only
//!    ever decided from facts that verified again (a trusted signature over the same header).
//!    Frames that merely name an accepted object id go to [`Admission::handle_replay`] and are
//!    counted, never recorded.
//! 3. **Channel.** The channel from the verified header must still have a rule in the trust
//!    store (`signer_not_allowed` otherwise).
//! 4. **Freshness.** With the channel's `require_increasing_sequence`, the verified sequence
//!    must be above the store's high-water mark for the verified channel (`rollback`). Both come
//!    from the verified facts, never from a pre-read header. (Expiry is `verify`'s; an early
//!    verification re-checks it with [`crate::bundle::verify::recheck_freshness`].)
//! 5. Then [`Decision::Accept`] for a complete [`Verified`], or [`Decision::Proceed`] (stream
//!    and verify the body) for an [`AuthenticatedPrefix`].
//!
//! Records: an accepted bundle is always recorded (each needs a new bundle a trusted signer
//! made). Every other record — duplicates and authenticated rejections — needs (a) no earlier
//! record about the same bundle within [`RECORD_WINDOW_MS`] and (b) a token from one shared
//! bucket. Unauthenticated refusals are never recorded: they only move [`Counters`].
//!
//! # How a receiver drives it
//!
//! One `Admission` per receiver (it holds the budget), consulted while the store lock is held
//! from the [`StoreFacts`] lookup through the effect, so the store's own duplicate and rollback
//! checks at commit never disagree with it:
//! 1. [`crate::bundle::auth::authenticate_from`] on the staged object. `Refused(r)` →
//!    [`Admission::handle_refused`] with [`Refused::from_auth`]. `Authenticated(p)` →
//!    [`Admission::handle_verified`] with `(&p).into()`; on [`Decision::Proceed`] verify the
//!    whole bundle.
//! 2. Verification `Ok(v)` → [`Admission::handle_verified`] with `(&v).into()`;
//!    [`Decision::Accept`] → commit. `Err(e)` → [`Admission::handle_refused`] with
//!    [`Refused::after_prefix`]`(&p, e.reason)`.
//! 3. Any store or staging failure → [`Admission::handle_storage_failure`]; the caller's timer
//!    follows [`Admission::next_retry_at`] and re-queues [`Admission::take_due_retry`].
//! 4. A resend the transport drops as already completed → [`Admission::handle_replay`].
//!
//! # Bounds (worst cases)
//!
//! | limit | value | worst case |
//! |---|---|---|
//! | records of non-accept decisions | bucket of [`RECORD_BURST`] = 100, refilled one per [`RECORD_REFILL_EVERY_MS`] = 36 s (100/h) | ≤ 200 records in any hour (a full bucket plus an hour of refill), 100/h sustained, 2 400/day; unaffected by any volume of unauthenticated input |
//! | records per bundle | one non-accept record per bundle per [`RECORD_WINDOW_MS`] = 1 h | a captured bundle replayed forever (or with a junk body) costs ≤ 1 record/h, and all of them together stay within the bucket |
//! | records of unauthenticated refusals | 0 | counters only ([`Counters`], a fixed set of `u64`s) |
//! | remembered bundle ids (for the window) | [`MAX_REMEMBERED_BUNDLES`] = 4 096 | ≈ 256 KiB; when full, expired ids go first, then the oldest (that bundle may then be recorded again within the hour, still inside the bucket) |
//! | objects awaiting a storage retry | [`MAX_RETRYING_OBJECTS`] = 256 | ≈ 16 KiB; a failure beyond that is [`Decision::GiveUp`] at once |
//! | retry schedule | [`RETRY_FIRST_MS`] = 2 s doubling to [`RETRY_CAP_MS`] = 5 min, [`RETRY_MAX_ATTEMPTS`] = 12 | 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300 s: the last retry ≈ 28.5 min after the first failure, then give up |

use std::collections::{BTreeMap, HashMap};

use crate::bundle::auth::{AuthenticatedPrefix, Refusal, Unauthenticated};
use crate::bundle::trust::{TrustStore, check_sequence};
use crate::bundle::{BundleId, RejectReason, Verified};

/// Records the bucket holds when full: how many non-accept records a burst may write at once.
pub const RECORD_BURST: u32 = 100;
/// The bucket earns one record per this many milliseconds (36 s: 100 per hour).
pub const RECORD_REFILL_EVERY_MS: u64 = 36_000;
/// At most one non-accept record per bundle within this window (one hour).
pub const RECORD_WINDOW_MS: u64 = 3_600_000;
/// Bundle ids remembered for the per-bundle window.
pub const MAX_REMEMBERED_BUNDLES: usize = 4096;
/// First retry delay after a staging or storage failure.
pub const RETRY_FIRST_MS: u64 = 2_000;
/// Longest retry delay.
pub const RETRY_CAP_MS: u64 = 300_000;
/// Storage failures of one object before it is given up (a resend delivers it again).
pub const RETRY_MAX_ATTEMPTS: u32 = 12;
/// Objects with a retry pending at once.
pub const MAX_RETRYING_OBJECTS: usize = 256;

/// Whether a trusted signer is known to have written what was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Nothing proves who wrote it: counted, never recorded, never logged with its content.
    Unauthenticated,
    /// A trusted key signed the header: recordable within the budget and the per-bundle window.
    Authenticated,
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Commit the verified bundle to quarantine and write its `accepted` record.
    Accept,
    /// The authenticated header passes every rule decided here: stream and verify the body,
    /// then call [`Admission::handle_verified`] again with the [`Verified`].
    Proceed,
    /// Already in quarantine: discard this copy; write a `duplicate` record only if `record`.
    Duplicate { record: bool },
    /// Discard the object; write a `rejected` record only if `record` (never when
    /// `class` is [`Class::Unauthenticated`]).
    Reject {
        record: bool,
        reason: RejectReason,
        class: Class,
    },
    /// Keep the staged object and try again at `at_ms` (see [`Admission::take_due_retry`]).
    Retry { attempt: u32, at_ms: u64 },
    /// Stop retrying this object: drop it; a later resend delivers it again.
    GiveUp { attempts: u32 },
}

/// The facts admission needs from a bundle that authenticated: only constructible from a
/// [`Verified`] or an [`AuthenticatedPrefix`], so they never come from a pre-read header.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    id: BundleId,
    channel: &'a str,
    sequence: u64,
    /// The whole bundle verified (not just its header).
    complete: bool,
}

impl<'a> From<&'a Verified> for Facts<'a> {
    fn from(v: &'a Verified) -> Self {
        Facts {
            id: v.id(),
            channel: &v.header().channel,
            sequence: v.header().sequence,
            complete: true,
        }
    }
}

impl<'a> From<&'a AuthenticatedPrefix> for Facts<'a> {
    fn from(p: &'a AuthenticatedPrefix) -> Self {
        Facts {
            id: p.id(),
            channel: p.channel(),
            sequence: p.sequence(),
            complete: false,
        }
    }
}

/// What the store knows about the bundle named by the [`Facts`], looked up by the caller with
/// the verified id and channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreFacts {
    /// The store already holds (or held) this bundle id as accepted.
    pub already_accepted: bool,
    /// The high-water mark of the verified channel; `None` if nothing was accepted on it.
    pub last_sequence: Option<u64>,
}

/// A refusal, classified. Authenticated only when it comes from the authenticator's own
/// [`Refusal::Authenticated`] or follows an [`AuthenticatedPrefix`]; anything else is
/// unauthenticated, whatever its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    reason: RejectReason,
    /// `Some` exactly when authenticated: the signed bundle id, for the per-bundle window.
    id: Option<BundleId>,
    /// The authenticator's finer kind, for counters.
    kind: Option<Unauthenticated>,
}

impl Refused {
    /// The authenticator's refusal.
    pub fn from_auth(r: &Refusal) -> Self {
        match r {
            Refusal::Unauthenticated(u) => Self::unauthenticated(*u),
            Refusal::Authenticated(a) => Refused {
                reason: a.reason(),
                id: Some(a.id()),
                kind: None,
            },
        }
    }

    /// Refused before any signature verified.
    pub fn unauthenticated(kind: Unauthenticated) -> Self {
        Refused {
            reason: kind.reason(),
            id: None,
            kind: Some(kind),
        }
    }

    /// The full verification failed after `prefix` authenticated (a path, size, expiry or body
    /// rule). The header is signed, so the refusal is recordable; the body may not be, which is
    /// why records stay within the per-bundle window. Pass [`RejectReason::StorageError`] only
    /// if the disk failed (it becomes a retry).
    pub fn after_prefix(prefix: &AuthenticatedPrefix, reason: RejectReason) -> Self {
        Refused {
            reason,
            id: Some(prefix.id()),
            kind: None,
        }
    }

    /// A verification failure with no [`AuthenticatedPrefix`] behind it: nothing proves who
    /// wrote the bytes, so it is unauthenticated whatever the reason.
    pub fn without_prefix(reason: RejectReason) -> Self {
        Refused {
            reason,
            id: None,
            kind: None,
        }
    }

    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    pub fn class(&self) -> Class {
        if self.id.is_some() {
            Class::Authenticated
        } else {
            Class::Unauthenticated
        }
    }
}

/// Metrics: every decision is counted here, recorded or not. Fixed size (the map is keyed by
/// `&'static str` codes, a closed set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub accepted: u64,
    pub duplicates: u64,
    pub duplicates_recorded: u64,
    /// Frames or objects naming an accepted object id, not verified again: never recorded.
    pub replays_unverified: u64,
    pub rejected_authenticated: u64,
    pub rejected_recorded: u64,
    pub rejected_unauthenticated: u64,
    /// Unauthenticated refusals by code ([`Unauthenticated::code`] or [`RejectReason::code`]).
    pub unauthenticated_by_code: BTreeMap<&'static str, u64>,
    pub id_mismatches: u64,
    pub rollbacks: u64,
    /// Records not written because the bundle had one within the window.
    pub records_suppressed_window: u64,
    /// Records not written because the bucket was empty.
    pub records_suppressed_budget: u64,
    pub retries_scheduled: u64,
    pub retries_given_up: u64,
}

/// The token bucket for non-accept records, in whole tokens (no floats: exact in tests).
#[derive(Clone, Debug)]
struct Bucket {
    tokens: u32,
    /// When the last whole token was earned (or the bucket was last seen full).
    refilled_at: u64,
}

impl Bucket {
    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.refilled_at);
        let earned = elapsed / RECORD_REFILL_EVERY_MS;
        if earned > 0 {
            self.refilled_at += earned * RECORD_REFILL_EVERY_MS;
            self.tokens = u64::from(self.tokens)
                .saturating_add(earned)
                .min(u64::from(RECORD_BURST)) as u32;
        }
        // A full bucket banks nothing: the next token is earned a full period after it is spent.
        if self.tokens == RECORD_BURST {
            self.refilled_at = self.refilled_at.max(now);
        }
    }

    fn take(&mut self, now: u64) -> bool {
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct RetryState {
    attempts: u32,
    due: Option<u64>,
}

/// The admission state machine. See the module docs for the rules and bounds.
#[derive(Clone, Debug)]
pub struct Admission {
    bucket: Bucket,
    /// Bundle id → when its last record (accept, duplicate or rejection) was written.
    recorded: HashMap<BundleId, u64>,
    /// Object id → when its last `incomplete` record was written (end frames are not signed,
    /// so these are budgeted per object like the rest; at most [`MAX_REMEMBERED_BUNDLES`]).
    incomplete_recorded: HashMap<[u8; 16], u64>,
    retries: HashMap<[u8; 16], RetryState>,
    counters: Counters,
}

impl Admission {
    /// A fresh state at `now_ms` with a full record bucket.
    pub fn new(now_ms: u64) -> Self {
        Admission {
            bucket: Bucket {
                tokens: RECORD_BURST,
                refilled_at: now_ms,
            },
            recorded: HashMap::new(),
            incomplete_recorded: HashMap::new(),
            retries: HashMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Records the bucket could write right now (for status output).
    pub fn record_tokens(&mut self, now_ms: u64) -> u32 {
        self.bucket.refill(now_ms);
        self.bucket.tokens
    }

    /// Decide about an object whose header authenticated ([`AuthenticatedPrefix`]) or whose
    /// whole bundle verified ([`Verified`]). `object_id` is the transport's; `store` is what
    /// the store knows about `facts`' id and channel.
    pub fn handle_verified(
        &mut self,
        now_ms: u64,
        object_id: [u8; 16],
        facts: Facts<'_>,
        trust: &TrustStore,
        store: StoreFacts,
    ) -> Decision {
        // 1. The bundle must be the one the object is named after. Not recorded: replaying a
        //    valid bundle under fresh object ids would otherwise write a record each time.
        if facts.id.object_id() != object_id {
            self.counters.id_mismatches += 1;
            return self.reject_unauthenticated(object_id, RejectReason::Malformed, "id_mismatch");
        }
        // 2. Already accepted: a duplicate, recorded at most once per bundle per window.
        if store.already_accepted {
            self.retries.remove(&object_id);
            self.counters.duplicates += 1;
            let record = self.may_record(now_ms, facts.id);
            if record {
                self.counters.duplicates_recorded += 1;
            }
            return Decision::Duplicate { record };
        }
        // 3-4. Channel rule and freshness, from the verified channel and sequence.
        let refusal = match trust.rule(facts.channel) {
            None => Some(RejectReason::SignerNotAllowed),
            Some(rule) if rule.require_increasing_sequence => {
                check_sequence(store.last_sequence, facts.sequence).err()
            }
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            if reason == RejectReason::Rollback {
                self.counters.rollbacks += 1;
            }
            return self.reject_authenticated(now_ms, object_id, facts.id, reason);
        }
        // 5.
        if !facts.complete {
            return Decision::Proceed;
        }
        self.retries.remove(&object_id);
        self.counters.accepted += 1;
        // The accepted record counts as this bundle's record for the window, so a resend within
        // the hour is a duplicate without a second record.
        self.remember(now_ms, facts.id);
        Decision::Accept
    }

    /// Decide about a refused object (from the authenticator or the full verification).
    pub fn handle_refused(
        &mut self,
        now_ms: u64,
        object_id: [u8; 16],
        refused: Refused,
    ) -> Decision {
        if refused.reason == RejectReason::StorageError {
            // The disk failed, not the bundle.
            return self.handle_storage_failure(now_ms, object_id);
        }
        match refused.id {
            Some(id) => self.reject_authenticated(now_ms, object_id, id, refused.reason),
            None => {
                let code = refused
                    .kind
                    .map_or_else(|| refused.reason.code(), Unauthenticated::code);
                self.reject_unauthenticated(object_id, refused.reason, code)
            }
        }
    }

    /// Frames or a completed object naming an object id this run already decided, not verified
    /// again (forged data or end frames cost nothing to send): counted, never recorded.
    pub fn handle_replay(&mut self, _now_ms: u64, _object_id: [u8; 16]) -> Decision {
        self.counters.replays_unverified += 1;
        Decision::Duplicate { record: false }
    }

    /// A pass of an authenticated transfer ended short (its end frame arrived with blocks
    /// missing). End frames carry no signature, so anyone who knows a live object id can send
    /// them with a new pass number: the `incomplete` record is written at most once per object
    /// per [`RECORD_WINDOW_MS`], from the shared bucket. Returns whether to write it.
    pub fn handle_incomplete(&mut self, now_ms: u64, object_id: [u8; 16]) -> bool {
        if suppressed_in_window(
            &mut self.counters,
            &self.incomplete_recorded,
            &object_id,
            now_ms,
        ) {
            return false;
        }
        if self.incomplete_recorded.len() >= MAX_REMEMBERED_BUNDLES {
            self.incomplete_recorded
                .retain(|_, at| now_ms.saturating_sub(*at) < RECORD_WINDOW_MS);
        }
        if self.incomplete_recorded.len() >= MAX_REMEMBERED_BUNDLES || !self.bucket.take(now_ms) {
            self.counters.records_suppressed_budget += 1;
            return false;
        }
        self.incomplete_recorded.insert(object_id, now_ms);
        true
    }

    /// Staging or the store failed for this object: retry with exponential backoff, or give up.
    pub fn handle_storage_failure(&mut self, now_ms: u64, object_id: [u8; 16]) -> Decision {
        let attempts = self.retries.get(&object_id).map_or(0, |r| r.attempts) + 1;
        let full =
            !self.retries.contains_key(&object_id) && self.retries.len() >= MAX_RETRYING_OBJECTS;
        if attempts > RETRY_MAX_ATTEMPTS || full {
            self.retries.remove(&object_id);
            self.counters.retries_given_up += 1;
            return Decision::GiveUp {
                attempts: attempts - 1,
            };
        }
        let at_ms = now_ms.saturating_add(retry_delay_ms(attempts));
        self.retries.insert(
            object_id,
            RetryState {
                attempts,
                due: Some(at_ms),
            },
        );
        self.counters.retries_scheduled += 1;
        Decision::Retry {
            attempt: attempts,
            at_ms,
        }
    }

    /// The earliest pending retry time, for the caller's timer.
    pub fn next_retry_at(&self) -> Option<u64> {
        self.retries.values().filter_map(|r| r.due).min()
    }

    /// One object whose retry is due at `now_ms`, if any. It stays known (with its attempt
    /// count) until a decision about it or its next failure.
    pub fn take_due_retry(&mut self, now_ms: u64) -> Option<[u8; 16]> {
        let (id, state) = self
            .retries
            .iter_mut()
            .filter(|(_, r)| r.due.is_some_and(|d| d <= now_ms))
            .min_by_key(|(_, r)| r.due)?;
        state.due = None;
        Some(*id)
    }

    fn reject_unauthenticated(
        &mut self,
        object_id: [u8; 16],
        reason: RejectReason,
        code: &'static str,
    ) -> Decision {
        self.retries.remove(&object_id);
        self.counters.rejected_unauthenticated += 1;
        *self
            .counters
            .unauthenticated_by_code
            .entry(code)
            .or_default() += 1;
        Decision::Reject {
            record: false,
            reason,
            class: Class::Unauthenticated,
        }
    }

    fn reject_authenticated(
        &mut self,
        now_ms: u64,
        object_id: [u8; 16],
        id: BundleId,
        reason: RejectReason,
    ) -> Decision {
        self.retries.remove(&object_id);
        self.counters.rejected_authenticated += 1;
        let record = self.may_record(now_ms, id);
        if record {
            self.counters.rejected_recorded += 1;
        }
        Decision::Reject {
            record,
            reason,
            class: Class::Authenticated,
        }
    }

    /// Whether a non-accept record about `id` may be written now; if so, it is remembered.
    fn may_record(&mut self, now_ms: u64, id: BundleId) -> bool {
        if suppressed_in_window(&mut self.counters, &self.recorded, &id, now_ms) {
            return false;
        }
        if !self.bucket.take(now_ms) {
            self.counters.records_suppressed_budget += 1;
            return false;
        }
        self.remember(now_ms, id);
        true
    }

    fn remember(&mut self, now_ms: u64, id: BundleId) {
        if self.recorded.len() >= MAX_REMEMBERED_BUNDLES && !self.recorded.contains_key(&id) {
            self.recorded
                .retain(|_, at| now_ms.saturating_sub(*at) < RECORD_WINDOW_MS);
            if self.recorded.len() >= MAX_REMEMBERED_BUNDLES {
                // Rare (more than 4 096 records or accepts within an hour); linear is fine.
                if let Some(oldest) = self
                    .recorded
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| *k)
                {
                    self.recorded.remove(&oldest);
                }
            }
        }
        self.recorded.insert(id, now_ms);
    }
}

/// Delay before retry number `attempt` (1-based): 2 s doubling, capped at 5 min.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    RETRY_FIRST_MS
        .saturating_mul(1u64 << shift)
        .min(RETRY_CAP_MS)
}

/// The one-record-per-window rule of bundle records and `incomplete` records alike: true (and
/// counted as suppressed) if `key` was recorded less than [`RECORD_WINDOW_MS`] before `now_ms`.
fn suppressed_in_window<K: std::hash::Hash + Eq>(
    counters: &mut Counters,
    recorded_at: &HashMap<K, u64>,
    key: &K,
    now_ms: u64,
) -> bool {
    let within = recorded_at
        .get(key)
        .is_some_and(|at| now_ms.saturating_sub(*at) < RECORD_WINDOW_MS);
    if within {
        counters.records_suppressed_window += 1;
    }
    within
}

#[cfg(test)]
mod tests;
