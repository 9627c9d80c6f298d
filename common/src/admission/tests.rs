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

/// Forged end frames with ever new pass numbers for a live object write one `incomplete`
/// record per object per hour, and all objects together stay within the shared bucket.
#[test]
fn incomplete_records_are_once_per_object_per_hour_within_the_bucket() {
    let mut a = Admission::new(0);
    let id = [1u8; 16];
    assert!(a.handle_incomplete(0, id));
    for t in 1..1000u64 {
        assert!(!a.handle_incomplete(t * 2_000, id), "end frame {t}");
    }
    assert!(a.handle_incomplete(RECORD_WINDOW_MS + 1, id));
    let mut b = Admission::new(0);
    let written = (0..10_000u32)
        .filter(|i| {
            let mut other = [0u8; 16];
            other[..4].copy_from_slice(&i.to_be_bytes());
            b.handle_incomplete(0, other)
        })
        .count();
    assert_eq!(written, RECORD_BURST as usize);
    assert_eq!(
        b.counters().records_suppressed_budget,
        10_000 - u64::from(RECORD_BURST)
    );
}
