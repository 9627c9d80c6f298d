//! The two rate limits of the verifier side, as plain state machines with the time passed in
//! (so they are unit-tested without sleeping): [`RecordBudget`] caps how many unauthenticated
//! rejections are written to disk, and [`VerifyRetries`] paces re-verification of a complete
//! object whose verdict was a storage error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_common::bundle::RejectReason;

/// How many records of *unauthenticated* rejections the store writes: a burst of
/// [`RecordBudget::BURST`], refilled at that many per hour.
///
/// With the public default link key anyone can make the receiver assemble one-frame junk objects
/// that fail before any signature verified (malformed, truncated, bad signature, unknown signer).
/// Recording each would let a flood grow `rejected/` and `audit.jsonl` without bound. Past the
/// budget such objects are still discarded and counted (metrics, status, `--json`), just not
/// written to disk. Rejections of bundles a trusted signer really signed are always recorded:
/// those are rare and matter.
pub struct RecordBudget {
    tokens: f64,
    refilled_at: Instant,
    suppressed: u64,
    warned_at: Option<Instant>,
}

impl RecordBudget {
    pub const BURST: f64 = 200.0;
    const PER_SECOND: f64 = Self::BURST / 3600.0;

    /// A full budget, as of `now`.
    pub fn new(now: Instant) -> Self {
        RecordBudget {
            tokens: Self::BURST,
            refilled_at: now,
            suppressed: 0,
            warned_at: None,
        }
    }

    /// Whether a rejection for `reason` may be written at `now`.
    pub fn allow(&mut self, reason: RejectReason, now: Instant) -> bool {
        let unauthenticated = matches!(
            reason,
            RejectReason::Malformed
                | RejectReason::Truncated
                | RejectReason::BadSignature
                | RejectReason::UnknownSigner
                | RejectReason::WeakKey
        );
        if !unauthenticated {
            return true;
        }
        let earned = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64()
            * Self::PER_SECOND;
        self.tokens = (self.tokens + earned).min(Self::BURST);
        self.refilled_at = self.refilled_at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        self.suppressed += 1;
        if self
            .warned_at
            .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 60)
        {
            self.warned_at = Some(now);
            tracing::warn!(
                suppressed = self.suppressed,
                "many unauthenticated objects are failing verification (a flood, or a sender with \
                 the wrong link key?); their records are no longer written, only counted"
            );
        }
        false
    }
}

/// Complete objects whose verdict was a storage error, and when each is verified again.
///
/// The object is whole in staging and the transport receiver drops resends of it as late, so
/// nobody else would ever retry it: the pipeline retries verification itself, with backoff
/// (2 s doubling to 5 min, [`VerifyRetries::MAX_TRIES`] tries), until a decision ends it.
#[derive(Debug, Default)]
pub struct VerifyRetries {
    /// Object → (tries so far, next try; `None` once handed out by [`VerifyRetries::due`]).
    by_object: HashMap<[u8; 16], (u32, Option<Instant>)>,
}

impl VerifyRetries {
    pub const MAX_TRIES: u32 = 12;

    /// The wait before try number `tries` (1-based): 2 s, 4 s, … capped at 5 min.
    pub fn backoff(tries: u32) -> Duration {
        Duration::from_secs((2u64 << tries.saturating_sub(1).min(8)).min(300))
    }

    /// Objects whose next try is due at `now`; each is handed out once per scheduled try.
    pub fn due(&mut self, now: Instant) -> Vec<[u8; 16]> {
        let mut due: Vec<[u8; 16]> = self
            .by_object
            .iter_mut()
            .filter(|(_, (_, at))| at.is_some_and(|t| t <= now))
            .map(|(id, (_, at))| {
                *at = None;
                *id
            })
            .collect();
        due.sort_unstable();
        due
    }

    /// Schedules another try of `object_id` after a storage error at `now`. Returns the try's
    /// number, or `Err(tries)` (and forgets the object) once [`Self::MAX_TRIES`] are used up.
    pub fn schedule(&mut self, object_id: [u8; 16], now: Instant) -> Result<u32, u32> {
        let tries = self.by_object.get(&object_id).map_or(0, |r| r.0) + 1;
        if tries > Self::MAX_TRIES {
            self.by_object.remove(&object_id);
            return Err(tries);
        }
        self.by_object
            .insert(object_id, (tries, Some(now + Self::backoff(tries))));
        Ok(tries)
    }

    /// Ends the retries of `object_id` (a decision was reached, or it is gone from staging).
    pub fn forget(&mut self, object_id: [u8; 16]) {
        self.by_object.remove(&object_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_spends_a_burst_then_refills_by_the_hour() {
        let t0 = Instant::now();
        let mut b = RecordBudget::new(t0);
        for _ in 0..RecordBudget::BURST as usize {
            assert!(b.allow(RejectReason::BadSignature, t0));
        }
        assert!(!b.allow(RejectReason::Malformed, t0));
        assert_eq!(b.suppressed, 1);
        // Authenticated rejections are always written.
        assert!(b.allow(RejectReason::Rollback, t0));
        assert!(b.allow(RejectReason::Expired, t0));
        // 18 s earn one record back (200 per hour); a refused attempt keeps what was earned.
        assert!(!b.allow(RejectReason::Truncated, t0 + Duration::from_secs(10)));
        assert!(b.allow(RejectReason::Truncated, t0 + Duration::from_secs(20)));
        assert!(!b.allow(RejectReason::Truncated, t0 + Duration::from_secs(20)));
        assert_eq!(b.suppressed, 3);
        // A long quiet period refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(10 * 3600);
        for _ in 0..RecordBudget::BURST as usize {
            assert!(b.allow(RejectReason::UnknownSigner, later));
        }
        assert!(!b.allow(RejectReason::UnknownSigner, later));
    }

    #[test]
    fn budget_tolerates_time_passed_out_of_order() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut b = RecordBudget::new(t0);
        // An earlier `now` (another thread's reading) earns nothing and breaks nothing.
        assert!(b.allow(RejectReason::Malformed, t0 - Duration::from_secs(50)));
        assert!(b.tokens <= RecordBudget::BURST);
    }

    #[test]
    fn retries_back_off_and_give_up() {
        assert_eq!(VerifyRetries::backoff(1), Duration::from_secs(2));
        assert_eq!(VerifyRetries::backoff(2), Duration::from_secs(4));
        assert_eq!(VerifyRetries::backoff(8), Duration::from_secs(256));
        assert_eq!(VerifyRetries::backoff(9), Duration::from_secs(300));
        assert_eq!(VerifyRetries::backoff(12), Duration::from_secs(300));

        let t0 = Instant::now();
        let id = [7; 16];
        let mut r = VerifyRetries::default();
        assert_eq!(r.schedule(id, t0), Ok(1));
        assert!(r.due(t0).is_empty());
        assert!(r.due(t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(r.due(t0 + Duration::from_secs(2)), vec![id]);
        // Handed out once per scheduled try.
        assert!(r.due(t0 + Duration::from_secs(60)).is_empty());
        let mut now = t0;
        for want in 2..=VerifyRetries::MAX_TRIES {
            assert_eq!(r.schedule(id, now), Ok(want));
            now += VerifyRetries::backoff(want);
            assert_eq!(r.due(now), vec![id]);
        }
        assert_eq!(r.schedule(id, now), Err(VerifyRetries::MAX_TRIES + 1));
        assert!(r.due(now + Duration::from_secs(3600)).is_empty());
        // A fresh storage error starts counting again.
        assert_eq!(r.schedule(id, now), Ok(1));
        r.forget(id);
        assert!(r.due(now + Duration::from_secs(3600)).is_empty());
    }
}
