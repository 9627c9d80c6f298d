//! A staging failure (disk full, I/O error) drops the object's session and everything queued for
//! it, refuses its frames for `staging_retry`, and then lets the next resend start over — while
//! the listener runs, with no restart (threat model G5).

use std::time::{Duration, Instant};

use sluice_common::transport::recv::{Effect, Receiver, ReceiverConfig};
use sluice_testkit::sim::{key, oid, one_pass_frames};

const T: u16 = 512;
const BLOCK: u32 = 512 * 16;
const LEN: u64 = 5 * BLOCK as u64 + 100;
const SEED: u64 = 31;

/// Feeds every frame again at `at` and returns the effects, which must start with a fresh
/// session's `Open`.
fn resend_opens_afresh(r: &mut Receiver, all: &[Vec<u8>], at: Instant) -> Vec<Effect> {
    for f in all {
        r.handle_datagram(at, f);
    }
    authenticate_offered(r, at);
    let effects = drain(r);
    assert!(
        matches!(effects.first(), Some(Effect::Open { .. })),
        "{effects:?}"
    );
    effects
}

fn for_object(e: &Effect) -> bool {
    let id = oid(SEED);
    match e {
        Effect::Open { params } => params.object_id == id,
        Effect::Write { object_id, .. }
        | Effect::Checkpoint { object_id }
        | Effect::Complete { object_id, .. }
        | Effect::Incomplete { object_id, .. }
        | Effect::Replayed { object_id }
        | Effect::Abandoned { object_id, .. }
        | Effect::Authenticate { object_id, .. }
        | Effect::Forgotten { object_id } => *object_id == id,
        Effect::Decode(task) => task.object_id() == id,
    }
}

fn drain(r: &mut Receiver) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

/// The object is unauthenticated until its start is offered: nothing is staged before. This
/// driver trusts it (arbitrary bytes, not a bundle), which queues `Open` and the held blocks.
fn authenticate_offered(r: &mut Receiver, at: Instant) {
    let offered = drain(r);
    assert!(
        offered
            .iter()
            .all(|e| matches!(e, Effect::Authenticate { .. })),
        "{offered:?}"
    );
    assert!(!offered.is_empty(), "the object's start was offered");
    assert!(r.authenticate(at, oid(SEED)));
}

#[test]
fn staging_failure_refuses_the_object_then_a_resend_starts_over() {
    let t0 = Instant::now();
    let all = one_pass_frames(t0, SEED, LEN, T, BLOCK);
    let mut config = ReceiverConfig::new(key());
    config.staging_retry = Duration::from_secs(5);
    let mut r = Receiver::new(config);

    // Enough frames for several blocks to complete before the driver performs Open.
    for f in &all[..all.len() / 2] {
        r.handle_datagram(t0, f);
    }
    authenticate_offered(&mut r, t0);
    let first = r.poll_effect().expect("an effect");
    assert!(matches!(first, Effect::Open { .. }), "{first:?}");
    // Open failed: everything queued behind it for this object is dropped, its budget freed.
    r.handle_staging_failed(t0, oid(SEED));
    let rest = drain(&mut r);
    assert!(!rest.iter().any(for_object), "{rest:?}");
    assert_eq!(r.session_count(), 0);
    assert_eq!(r.buffered_bytes(), 0);
    assert_eq!(r.staging_bytes(), 0);

    // The rest of the pass, within the retry pause: refused, no session, no effect.
    let refused_before = r.stats().staging_refused;
    for f in &all[all.len() / 2..] {
        r.handle_datagram(t0 + Duration::from_secs(1), f);
    }
    assert!(r.stats().staging_refused > refused_before);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.session_count(), 0);

    // A resend after the pause opens a fresh session and completes the object.
    let effects = resend_opens_afresh(&mut r, &all, t0 + Duration::from_secs(6));
    let written: u64 = effects
        .iter()
        .map(|e| match e {
            Effect::Write { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(written, LEN);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Complete { len, .. } if *len == LEN)),
        "{effects:?}"
    );
}

#[test]
fn a_failure_after_some_writes_drops_only_what_is_still_queued() {
    let t0 = Instant::now();
    let all = one_pass_frames(t0, SEED, LEN, T, BLOCK);
    let mut r = Receiver::new(ReceiverConfig::new(key()));
    for f in &all {
        r.handle_datagram(t0, f);
    }
    authenticate_offered(&mut r, t0);
    // Open and the first write succeed; the second write fails (EIO).
    assert!(matches!(r.poll_effect(), Some(Effect::Open { .. })));
    assert!(matches!(r.poll_effect(), Some(Effect::Write { .. })));
    assert!(matches!(r.poll_effect(), Some(Effect::Write { .. })));
    r.handle_staging_failed(t0, oid(SEED));
    let rest = drain(&mut r);
    assert!(!rest.iter().any(for_object), "{rest:?}");
    assert_eq!(r.buffered_bytes(), 0);
    // The state machine had completed it (its Complete was still queued): a resend after the
    // pause is a new transfer, not a replay of a completed object.
    let later = t0 + ReceiverConfig::new(key()).staging_retry + Duration::from_millis(1);
    let effects = resend_opens_afresh(&mut r, &all, later);
    assert!(effects.iter().any(|e| matches!(e, Effect::Complete { .. })));
    assert_eq!(r.stats().replays, 0);
}
