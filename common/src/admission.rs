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
        let within_window = self
            .recorded
            .get(&id)
            .is_some_and(|at| now_ms.saturating_sub(*at) < RECORD_WINDOW_MS);
        if within_window {
            self.counters.records_suppressed_window += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Header;
    use crate::bundle::auth::{self, AuthStep, DEFAULT_MAX_HEADER_BYTES};
    use crate::bundle::build::{assemble_unchecked, write_unchecked};
    use crate::bundle::format::{self, FORMAT_VERSION};
    use crate::bundle::keys::SecretKey;

    const HOUR: u64 = RECORD_WINDOW_MS;

    fn key() -> SecretKey {
        SecretKey::from_seed(&[1; 32])
    }

    fn trust() -> TrustStore {
        let policy = "[defaults]\nallow_any_trusted_signer = false\n\
                      [channels.up]\nrequire_increasing_sequence = true\n\
                      [channels.loose]\nrequire_increasing_sequence = false\n";
        TrustStore::from_parts(
            vec![("alice".into(), key().public().to_sluice_text("alice"))],
            Some(policy),
        )
        .expect("trust store")
    }

    fn header(channel: &str, sequence: u64) -> Header {
        Header {
            format_version: FORMAT_VERSION,
            channel: channel.into(),
            sequence,
            created: 0,
            expires: None,
            note: None,
            signer: key().key_id(),
            entries: vec![],
        }
    }

    /// A verified bundle with a distinct id per (channel, sequence, n).
    fn verified(channel: &str, sequence: u64, n: u8) -> Verified {
        let mut id = [n; 32];
        id[..8].copy_from_slice(&sequence.to_le_bytes());
        id[8] = channel.len() as u8;
        Verified::new(header(channel, sequence), BundleId(id), "alice".into(), 100)
    }

    fn prefix(channel: &str, sequence: u64) -> AuthenticatedPrefix {
        let b = write_unchecked(&header(channel, sequence), &key(), &[]);
        match auth::authenticate(&b, &trust(), DEFAULT_MAX_HEADER_BYTES) {
            AuthStep::Authenticated(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn rejected(record: bool, reason: RejectReason, class: Class) -> Decision {
        Decision::Reject {
            record,
            reason,
            class,
        }
    }

    #[test]
    fn each_rule_of_handle_verified() {
        use Class::*;
        use RejectReason::*;
        let t = trust();
        let fresh = StoreFacts::default();
        let mark = |m| StoreFacts {
            already_accepted: false,
            last_sequence: Some(m),
        };
        let accepted = StoreFacts {
            already_accepted: true,
            last_sequence: Some(9),
        };
        let v = |c, s| verified(c, s, 1);
        let p = prefix;
        // (name, facts source, object id matches, store facts, expected)
        enum Src {
            V(Verified),
            P(AuthenticatedPrefix),
        }
        let cases: Vec<(&str, Src, bool, StoreFacts, Decision)> = vec![
            (
                "new bundle verified",
                Src::V(v("up", 1)),
                true,
                fresh,
                Decision::Accept,
            ),
            (
                "new header authenticated",
                Src::P(p("up", 1)),
                true,
                fresh,
                Decision::Proceed,
            ),
            (
                "above the mark",
                Src::V(v("up", 6)),
                true,
                mark(5),
                Decision::Accept,
            ),
            (
                "at the mark: rollback",
                Src::V(v("up", 5)),
                true,
                mark(5),
                rejected(true, Rollback, Authenticated),
            ),
            (
                "below the mark: rollback",
                Src::V(v("up", 4)),
                true,
                mark(5),
                rejected(true, Rollback, Authenticated),
            ),
            (
                "rollback known from the header alone",
                Src::P(p("up", 2)),
                true,
                mark(5),
                rejected(true, Rollback, Authenticated),
            ),
            (
                "channel without the rule",
                Src::V(v("loose", 1)),
                true,
                mark(5),
                Decision::Accept,
            ),
            (
                "channel no longer in policy",
                Src::V(v("gone", 1)),
                true,
                fresh,
                rejected(true, SignerNotAllowed, Authenticated),
            ),
            (
                "already accepted",
                Src::V(v("up", 9)),
                true,
                accepted,
                Decision::Duplicate { record: true },
            ),
            (
                "already accepted, header only",
                Src::P(p("up", 9)),
                true,
                accepted,
                Decision::Duplicate { record: true },
            ),
            (
                "id mismatch",
                Src::V(v("up", 1)),
                false,
                fresh,
                rejected(false, Malformed, Unauthenticated),
            ),
            (
                "id mismatch wins over duplicate",
                Src::V(v("up", 9)),
                false,
                accepted,
                rejected(false, Malformed, Unauthenticated),
            ),
            (
                "id mismatch, header only",
                Src::P(p("up", 1)),
                false,
                fresh,
                rejected(false, Malformed, Unauthenticated),
            ),
        ];
        for (name, src, matches, store, want) in cases {
            let mut a = Admission::new(0);
            let facts: Facts<'_> = match &src {
                Src::V(v) => v.into(),
                Src::P(p) => p.into(),
            };
            let mut object_id = facts.id.object_id();
            if !matches {
                object_id[0] ^= 0xff;
            }
            assert_eq!(
                a.handle_verified(0, object_id, facts, &t, store),
                want,
                "{name}"
            );
            let c = a.counters();
            assert_eq!(c.id_mismatches, u64::from(!matches), "{name}");
            if !matches {
                // Nothing recorded, no budget spent.
                assert_eq!(
                    c.unauthenticated_by_code.get("id_mismatch"),
                    Some(&1),
                    "{name}"
                );
                assert_eq!(a.record_tokens(0), RECORD_BURST, "{name}");
            }
        }
    }

    #[test]
    fn the_sequence_comes_from_the_verified_facts() {
        // The facts type can only be built from Verified or AuthenticatedPrefix: the channel
        // and sequence checked are the verified ones. A bundle on "up" with sequence 3 against
        // the mark of "up" = 5 is a rollback even if something else claimed sequence 6.
        let t = trust();
        let v = verified("up", 3, 1);
        let mut a = Admission::new(0);
        let store = StoreFacts {
            already_accepted: false,
            last_sequence: Some(5),
        };
        let d = a.handle_verified(0, v.id().object_id(), (&v).into(), &t, store);
        assert_eq!(
            d,
            rejected(true, RejectReason::Rollback, Class::Authenticated)
        );
        assert_eq!(a.counters().rollbacks, 1);
    }

    #[test]
    fn duplicate_recorded_at_most_once_per_bundle_per_hour() {
        let t = trust();
        let dup = StoreFacts {
            already_accepted: true,
            last_sequence: None,
        };
        let v1 = verified("up", 1, 1);
        let v2 = verified("up", 2, 1);
        let mut a = Admission::new(0);
        // (time, bundle, expect record)
        let steps: &[(u64, &Verified, bool)] = &[
            (0, &v1, true),
            (1, &v1, false),
            (HOUR - 1, &v1, false),
            (HOUR - 1, &v2, true),
            (HOUR, &v1, true),
            (HOUR + 5, &v1, false),
            (2 * HOUR - 2, &v2, false),
            (2 * HOUR - 1, &v2, true),
        ];
        for (i, (now, v, record)) in steps.iter().enumerate() {
            let d = a.handle_verified(*now, v.id().object_id(), (*v).into(), &t, dup);
            assert_eq!(d, Decision::Duplicate { record: *record }, "step {i}");
        }
        assert_eq!(a.counters().duplicates, steps.len() as u64);
        assert_eq!(a.counters().duplicates_recorded, 4);
        assert_eq!(a.counters().records_suppressed_window, 4);
        // Unverified replays (forged frames naming the object) are never recorded.
        for now in [0, HOUR, 5 * HOUR] {
            assert_eq!(
                a.handle_replay(now, v1.id().object_id()),
                Decision::Duplicate { record: false }
            );
        }
        assert_eq!(a.counters().replays_unverified, 3);
    }

    #[test]
    fn an_acceptance_counts_as_the_bundles_record_for_the_hour() {
        let t = trust();
        let v = verified("up", 1, 1);
        let mut a = Admission::new(0);
        let oid = v.id().object_id();
        assert_eq!(
            a.handle_verified(0, oid, (&v).into(), &t, StoreFacts::default()),
            Decision::Accept
        );
        let dup = StoreFacts {
            already_accepted: true,
            last_sequence: Some(1),
        };
        let d = a.handle_verified(10, oid, (&v).into(), &t, dup);
        assert_eq!(d, Decision::Duplicate { record: false });
        let d = a.handle_verified(HOUR, oid, (&v).into(), &t, dup);
        assert_eq!(d, Decision::Duplicate { record: true });
    }

    /// `n` distinct authenticated rollbacks at `now`; how many were recorded.
    fn rollbacks(a: &mut Admission, t: &TrustStore, now: u64, first: u8, n: u32) -> u32 {
        let store = StoreFacts {
            already_accepted: false,
            last_sequence: Some(1_000_000),
        };
        let mut recorded = 0;
        for i in 0..n {
            let v = verified("up", u64::from(i), first);
            match a.handle_verified(now, v.id().object_id(), (&v).into(), t, store) {
                Decision::Reject {
                    record,
                    reason: RejectReason::Rollback,
                    class: Class::Authenticated,
                } => recorded += u32::from(record),
                other => panic!("{other:?}"),
            }
        }
        recorded
    }

    #[test]
    fn record_budget_exhausts_and_refills() {
        let t = trust();
        let mut a = Admission::new(0);
        // (time, distinct bundles rejected, records expected). Each step uses new bundle ids so
        // the per-bundle window never interferes.
        let steps: &[(u64, u32, u32)] = &[
            (0, 150, RECORD_BURST),             // the burst, then nothing
            (RECORD_REFILL_EVERY_MS - 1, 5, 0), // not a whole token yet
            (RECORD_REFILL_EVERY_MS, 5, 1),     // one token earned
            (RECORD_REFILL_EVERY_MS * 3, 5, 2), // two more
            (RECORD_REFILL_EVERY_MS * 3 + HOUR, 500, RECORD_BURST), // an hour refills the burst, no more
            (100 * HOUR, 500, RECORD_BURST), // idle for days banks no more than the burst
        ];
        for (i, (now, n, want)) in steps.iter().enumerate() {
            let got = rollbacks(&mut a, &t, *now, i as u8 + 1, *n);
            assert_eq!(got, *want, "step {i} at {now} ms");
        }
        let c = a.counters();
        assert_eq!(c.rejected_authenticated, 1165);
        assert_eq!(c.rejected_recorded, 3 * u64::from(RECORD_BURST) + 3);
        assert_eq!(c.records_suppressed_budget, 1165 - c.rejected_recorded);
    }

    #[test]
    fn worst_case_records_in_any_hour() {
        // A flood of authenticated rejections at one per second for two hours: the records in
        // the first hour are the burst plus an hour of refill, and 100/h after that.
        let t = trust();
        let mut a = Admission::new(0);
        let store = StoreFacts {
            already_accepted: false,
            last_sequence: Some(u64::MAX),
        };
        let mut per_hour = [0u32; 2];
        for s in 0..7200u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&s.to_le_bytes());
            let v = Verified::new(header("up", 1), BundleId(id), "alice".into(), 1);
            if let Decision::Reject { record: true, .. } =
                a.handle_verified(s * 1000, v.id().object_id(), (&v).into(), &t, store)
            {
                per_hour[(s / 3600) as usize] += 1;
            }
        }
        assert_eq!(per_hour, [RECORD_BURST + 99, 100]);
    }

    #[test]
    fn unauthenticated_refusals_never_record_or_spend_budget() {
        let mut a = Admission::new(0);
        let oid = [7u8; 16];
        for i in 0..10_000u64 {
            let u = Unauthenticated::ALL[(i % 7) as usize];
            let d = a.handle_refused(i, oid, Refused::unauthenticated(u));
            assert_eq!(d, rejected(false, u.reason(), Class::Unauthenticated));
        }
        for reason in [
            RejectReason::HashMismatch,
            RejectReason::NonCanonical,
            RejectReason::Expired,
        ] {
            let d = a.handle_refused(0, oid, Refused::without_prefix(reason));
            assert_eq!(d, rejected(false, reason, Class::Unauthenticated));
        }
        assert_eq!(a.record_tokens(10_000), RECORD_BURST);
        let c = a.counters();
        assert_eq!(c.rejected_unauthenticated, 10_003);
        assert_eq!(c.rejected_recorded, 0);
        assert_eq!(c.unauthenticated_by_code.values().sum::<u64>(), 10_003);
        assert_eq!(c.unauthenticated_by_code.get("bad_signature"), Some(&1_428));
        assert_eq!(c.unauthenticated_by_code.get("hash_mismatch"), Some(&1));
    }

    #[test]
    fn authenticated_refusals_are_recorded_once_per_bundle_per_hour() {
        let t = trust();
        // Alice signed a header with an overlong varint: refused after the signature verified.
        let canonical = format::encode_header(&header("up", 1));
        let mut overlong = vec![0x81, 0x00];
        overlong.extend_from_slice(&canonical[1..]);
        let b = assemble_unchecked(FORMAT_VERSION, key().key_id(), &overlong, &key());
        let refusal = match auth::authenticate(&b, &t, DEFAULT_MAX_HEADER_BYTES) {
            AuthStep::Refused(r) => r,
            other => panic!("{other:?}"),
        };
        let r = Refused::from_auth(&refusal);
        assert_eq!(r.class(), Class::Authenticated);
        assert_eq!(r.reason(), RejectReason::NonCanonical);
        let p = prefix("up", 1);
        let body = Refused::after_prefix(&p, RejectReason::HashMismatch);
        assert_eq!(body.class(), Class::Authenticated);

        let mut a = Admission::new(0);
        let oid = [1u8; 16];
        // (time, refusal, expect record)
        let steps: &[(u64, Refused, bool)] = &[
            (0, r, true),
            (1, r, false),
            (2, body, true),
            (HOUR - 1, body, false),
            (HOUR, r, true),
            (HOUR + 2, body, true),
        ];
        for (i, (now, refused, record)) in steps.iter().enumerate() {
            let d = a.handle_refused(*now, oid, *refused);
            assert_eq!(
                d,
                rejected(*record, refused.reason(), Class::Authenticated),
                "step {i}"
            );
        }
        assert_eq!(a.counters().rejected_unauthenticated, 0);
    }

    #[test]
    fn retry_schedule_is_exponential_capped_and_finite() {
        let mut a = Admission::new(0);
        let oid = [3u8; 16];
        let want_delays_s = [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300];
        let mut now = 1_000;
        for (i, delay) in want_delays_s.iter().enumerate() {
            let attempt = i as u32 + 1;
            let d = a.handle_storage_failure(now, oid);
            let at_ms = now + delay * 1000;
            assert_eq!(d, Decision::Retry { attempt, at_ms }, "attempt {attempt}");
            assert_eq!(retry_delay_ms(attempt), delay * 1000);
            assert_eq!(a.next_retry_at(), Some(at_ms));
            assert_eq!(a.take_due_retry(at_ms - 1), None, "not yet due");
            assert_eq!(a.take_due_retry(at_ms), Some(oid));
            assert_eq!(a.take_due_retry(at_ms), None, "handed out once");
            assert_eq!(a.next_retry_at(), None);
            now = at_ms;
        }
        assert_eq!(
            a.handle_storage_failure(now, oid),
            Decision::GiveUp {
                attempts: RETRY_MAX_ATTEMPTS
            }
        );
        assert_eq!(
            want_delays_s.iter().sum::<u64>(),
            1710,
            "≈ 28.5 min, as documented"
        );
        // After giving up, a later resend's failure starts the schedule again.
        assert_eq!(
            a.handle_storage_failure(now, oid),
            Decision::Retry {
                attempt: 1,
                at_ms: now + 2_000
            }
        );
        assert_eq!(retry_delay_ms(u32::MAX), RETRY_CAP_MS);
        assert_eq!(a.counters().retries_given_up, 1);
    }

    #[test]
    fn a_decision_or_storage_refusal_drives_the_retry_state() {
        let t = trust();
        let v = verified("up", 1, 1);
        let oid = v.id().object_id();
        let mut a = Admission::new(0);
        assert!(matches!(
            a.handle_storage_failure(0, oid),
            Decision::Retry { attempt: 1, .. }
        ));
        // A storage error reported as a verify refusal is a retry, not a rejection.
        let p = prefix("up", 1);
        assert!(matches!(
            a.handle_refused(
                0,
                oid,
                Refused::after_prefix(&p, RejectReason::StorageError)
            ),
            Decision::Retry { attempt: 2, .. }
        ));
        assert_eq!(
            a.handle_verified(5, oid, (&v).into(), &t, StoreFacts::default()),
            Decision::Accept
        );
        assert_eq!(a.next_retry_at(), None, "a decision ends the retries");
        assert!(matches!(
            a.handle_storage_failure(9, oid),
            Decision::Retry { attempt: 1, .. }
        ));
    }

    #[test]
    fn retrying_objects_are_bounded() {
        let mut a = Admission::new(0);
        for i in 0..MAX_RETRYING_OBJECTS {
            let mut oid = [0u8; 16];
            oid[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(matches!(
                a.handle_storage_failure(0, oid),
                Decision::Retry { .. }
            ));
        }
        assert_eq!(
            a.handle_storage_failure(0, [0xff; 16]),
            Decision::GiveUp { attempts: 0 }
        );
    }

    #[test]
    fn remembered_bundles_are_bounded() {
        let t = trust();
        let mut a = Admission::new(0);
        for i in 0..(MAX_REMEMBERED_BUNDLES as u64 + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            let v = Verified::new(header("loose", i), BundleId(id), "alice".into(), 1);
            let d = a.handle_verified(
                i,
                v.id().object_id(),
                (&v).into(),
                &t,
                StoreFacts::default(),
            );
            assert_eq!(d, Decision::Accept);
        }
        assert_eq!(a.recorded.len(), MAX_REMEMBERED_BUNDLES);
        // The oldest went first.
        assert!(!a.recorded.contains_key(&BundleId([0u8; 32])));
    }

    #[test]
    fn a_clock_stepping_back_neither_panics_nor_refills() {
        let t = trust();
        let mut a = Admission::new(HOUR);
        assert_eq!(rollbacks(&mut a, &t, HOUR, 1, 150), RECORD_BURST);
        assert_eq!(rollbacks(&mut a, &t, 0, 2, 5), 0);
        assert_eq!(a.record_tokens(0), 0);
        assert!(matches!(
            a.handle_storage_failure(0, [1; 16]),
            Decision::Retry { .. }
        ));
    }
}
