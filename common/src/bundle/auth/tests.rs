use super::*;
use crate::bundle::build::{assemble_unchecked, write_unchecked};
use crate::bundle::keys::SecretKey;
use crate::bundle::{Entry, EntryKind};

fn alice() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}
fn mallory() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn trust(policy: Option<&str>) -> TrustStore {
    let a = alice().public();
    TrustStore::from_parts(vec![("alice".into(), a.to_sluice_text("alice"))], policy)
        .expect("trust store")
}

fn header(key: &SecretKey, channel: &str, sequence: u64) -> Header {
    let body = b"hello";
    Header {
        format_version: FORMAT_VERSION,
        channel: channel.into(),
        sequence,
        created: 1_700_000_000,
        expires: None,
        note: None,
        signer: key.key_id(),
        entries: vec![Entry {
            kind: EntryKind::File,
            path: "a.txt".into(),
            size: body.len() as u64,
            blake3: *blake3::hash(body).as_bytes(),
            executable: false,
        }],
    }
}

fn bundle(key: &SecretKey, channel: &str, sequence: u64) -> Vec<u8> {
    write_unchecked(&header(key, channel, sequence), key, &[b"hello"])
}

fn unauth(step: AuthStep) -> Unauthenticated {
    match step {
        AuthStep::Refused(Refusal::Unauthenticated(u)) => u,
        other => panic!("expected an unauthenticated refusal, got {other:?}"),
    }
}

fn authed_refusal(step: AuthStep) -> AuthenticatedRefusal {
    match step {
        AuthStep::Refused(Refusal::Authenticated(a)) => a,
        other => panic!("expected an authenticated refusal, got {other:?}"),
    }
}

/// Header length field of a bundle.
fn header_len(b: &[u8]) -> usize {
    u32::from_le_bytes(b[18..22].try_into().unwrap()) as usize
}

#[test]
fn authenticates_a_signed_bundle_and_exposes_its_facts() {
    let t = trust(None);
    let b = bundle(&alice(), "up", 7);
    let p = match authenticate(&b, &t, DEFAULT_MAX_HEADER_BYTES) {
        AuthStep::Authenticated(p) => p,
        other => panic!("{other:?}"),
    };
    let h = header_len(&b);
    let prefix: [u8; PREFIX_LEN] = b[..PREFIX_LEN].try_into().unwrap();
    assert_eq!(
        p.id(),
        format::digest(&prefix, &b[PREFIX_LEN..PREFIX_LEN + h])
    );
    assert_eq!(p.object_id(), p.id().object_id());
    assert_eq!(p.channel(), "up");
    assert_eq!(p.sequence(), 7);
    assert_eq!(p.signer(), alice().key_id());
    assert_eq!(p.signer_name(), "alice");
    assert_eq!(p.header(), &header(&alice(), "up", 7));
    assert_eq!(p.envelope_len(), (PREFIX_LEN + h + SIGNATURE_LEN) as u64);
}

#[test]
fn asks_for_exactly_what_it_needs_as_bytes_arrive() {
    let t = trust(None);
    let b = bundle(&alice(), "up", 1);
    let end = PREFIX_LEN + header_len(&b) + SIGNATURE_LEN;
    for n in 0..end {
        match authenticate(&b[..n], &t, DEFAULT_MAX_HEADER_BYTES) {
            AuthStep::NeedMore(more) if n < PREFIX_LEN => assert_eq!(more, PREFIX_LEN - n),
            AuthStep::NeedMore(more) => assert_eq!(more, end - n, "at {n}"),
            other => panic!("at {n}: {other:?}"),
        }
    }
    // Exactly the envelope suffices; file bytes after it are not needed.
    assert!(matches!(
        authenticate(&b[..end], &t, DEFAULT_MAX_HEADER_BYTES),
        AuthStep::Authenticated(_)
    ));
    // An object that ends early is truncated, and that is unauthenticated.
    let step = authenticate(&b[..end - 1], &t, DEFAULT_MAX_HEADER_BYTES).at_end_of_object();
    assert_eq!(unauth(step), Unauthenticated::Truncated);
}

#[test]
fn prefix_refusals_are_unauthenticated_and_decided_on_22_bytes() {
    let t = trust(None);
    let good = bundle(&alice(), "up", 1);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good[..PREFIX_LEN].to_vec();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>, u32, Unauthenticated)> = vec![
        (
            "bad magic",
            with(&|b| b[0] = b'S'),
            DEFAULT_MAX_HEADER_BYTES,
            Unauthenticated::BadMagic,
        ),
        (
            "version 2",
            with(&|b| b[8] = 2),
            DEFAULT_MAX_HEADER_BYTES,
            Unauthenticated::UnsupportedVersion,
        ),
        (
            "header length 0",
            with(&|b| b[18..22].copy_from_slice(&0u32.to_le_bytes())),
            DEFAULT_MAX_HEADER_BYTES,
            Unauthenticated::HeaderLength,
        ),
        (
            "header one over the policy bound",
            with(&|b| b[18..22].copy_from_slice(&(1024 * 1024 + 1u32).to_le_bytes())),
            DEFAULT_MAX_HEADER_BYTES,
            Unauthenticated::HeaderLength,
        ),
        (
            "header over the format maximum with a looser bound",
            with(&|b| b[18..22].copy_from_slice(&u32::MAX.to_le_bytes())),
            u32::MAX,
            Unauthenticated::HeaderLength,
        ),
        (
            "a tight policy bound",
            good[..PREFIX_LEN].to_vec(),
            8,
            Unauthenticated::HeaderLength,
        ),
        (
            "unknown key id",
            with(&|b| b[10..18].copy_from_slice(&mallory().key_id().0)),
            DEFAULT_MAX_HEADER_BYTES,
            Unauthenticated::UnknownSigner,
        ),
    ];
    for (name, bytes, bound, want) in cases {
        assert_eq!(bytes.len(), PREFIX_LEN, "{name}");
        assert_eq!(unauth(authenticate(&bytes, &t, bound)), want, "{name}");
    }
}

#[test]
fn need_more_never_exceeds_the_bound() {
    let t = trust(None);
    let mut b = bundle(&alice(), "up", 1)[..PREFIX_LEN].to_vec();
    b[18..22].copy_from_slice(&DEFAULT_MAX_HEADER_BYTES.to_le_bytes());
    match authenticate(&b, &t, DEFAULT_MAX_HEADER_BYTES) {
        AuthStep::NeedMore(n) => {
            assert_eq!(
                b.len() + n,
                max_input_bytes(DEFAULT_MAX_HEADER_BYTES),
                "the largest allowed header"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        max_input_bytes(u32::MAX),
        PREFIX_LEN + format::MAX_HEADER_BYTES as usize + SIGNATURE_LEN
    );
}

#[test]
fn signature_is_checked_before_the_header_is_decoded() {
    let t = trust(None);
    // Garbage that is not postcard at all, and a header with an overlong varint (0x81 0x00
    // for format_version 1): neither is decoded unless a trusted key signed it, so both
    // are bad signatures (unauthenticated), never malformed or non_canonical.
    let canonical = format::encode_header(&header(&alice(), "up", 1));
    assert_eq!(canonical[0], 0x01);
    let mut overlong = vec![0x81, 0x00];
    overlong.extend_from_slice(&canonical[1..]);
    let garbage = vec![0xff; 300];
    for hb in [&garbage, &overlong] {
        // Signed by an untrusted key but claiming alice's key id.
        let forged = assemble_unchecked(FORMAT_VERSION, alice().key_id(), hb, &mallory());
        assert_eq!(
            unauth(authenticate(&forged, &t, DEFAULT_MAX_HEADER_BYTES)),
            Unauthenticated::BadSignature
        );
        // Under mallory's own key id: refused on the prefix.
        let other = assemble_unchecked(FORMAT_VERSION, mallory().key_id(), hb, &mallory());
        assert_eq!(
            unauth(authenticate(&other, &t, DEFAULT_MAX_HEADER_BYTES)),
            Unauthenticated::UnknownSigner
        );
    }
    // One flipped bit anywhere in prefix-after-magic, header or signature.
    let good = bundle(&alice(), "up", 1);
    let end = PREFIX_LEN + header_len(&good) + SIGNATURE_LEN;
    for i in [10, PREFIX_LEN, PREFIX_LEN + 5, end - SIGNATURE_LEN, end - 1] {
        let mut b = good.clone();
        b[i] ^= 0x01;
        let u = unauth(authenticate(&b, &t, DEFAULT_MAX_HEADER_BYTES));
        let want = if i < 18 {
            Unauthenticated::UnknownSigner
        } else {
            Unauthenticated::BadSignature
        };
        assert_eq!(u, want, "bit flipped at {i}");
    }
}

#[test]
fn refusals_after_the_signature_are_authenticated() {
    let t = trust(None);
    let canonical = format::encode_header(&header(&alice(), "up", 1));
    let mut overlong = vec![0x81, 0x00];
    overlong.extend_from_slice(&canonical[1..]);
    // Header says mallory signed, prefix says alice: alice signed a contradiction.
    let mismatched = format::encode_header(&header(&mallory(), "up", 1));
    let cases: Vec<(&str, Vec<u8>, RejectReason)> = vec![
        ("overlong varint", overlong, RejectReason::NonCanonical),
        ("not postcard", vec![0xff; 40], RejectReason::Malformed),
        (
            "signer differs from prefix",
            mismatched,
            RejectReason::Malformed,
        ),
    ];
    for (name, hb, want) in cases {
        let b = assemble_unchecked(FORMAT_VERSION, alice().key_id(), &hb, &alice());
        let r = authed_refusal(authenticate(&b, &t, DEFAULT_MAX_HEADER_BYTES));
        assert_eq!(r.reason(), want, "{name}");
        assert_eq!(r.signer_name(), "alice", "{name}");
        let prefix: [u8; PREFIX_LEN] = b[..PREFIX_LEN].try_into().unwrap();
        assert_eq!(r.id(), format::digest(&prefix, &hb), "{name}");
        assert_eq!(r.channel(), None, "{name}");
    }
}

#[test]
fn channel_signer_policy_is_applied_to_the_authenticated_header() {
    let t = trust(Some(
        "[defaults]\nallow_any_trusted_signer = false\n[channels.up]\nsigners = [\"alice\"]\n",
    ));
    assert!(matches!(
        authenticate(&bundle(&alice(), "up", 3), &t, DEFAULT_MAX_HEADER_BYTES),
        AuthStep::Authenticated(_)
    ));
    let r = authed_refusal(authenticate(
        &bundle(&alice(), "elsewhere", 3),
        &t,
        DEFAULT_MAX_HEADER_BYTES,
    ));
    assert_eq!(r.reason(), RejectReason::SignerNotAllowed);
    assert_eq!(r.channel(), Some("elsewhere"));
    assert_eq!(r.sequence(), Some(3));
    assert!(r.detail().contains("elsewhere"), "{}", r.detail());
}

/// A reader that hands out at most `chunk` bytes per call and counts what it gave.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    given: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.chunk).min(self.data.len() - self.given);
        out[..n].copy_from_slice(&self.data[self.given..self.given + n]);
        self.given += n;
        Ok(n)
    }
}

#[test]
fn from_a_reader_reads_only_what_each_step_needs() {
    let t = trust(None);
    let good = bundle(&alice(), "up", 1);
    let envelope = PREFIX_LEN + header_len(&good) + SIGNATURE_LEN;
    let mut lying = good[..PREFIX_LEN].to_vec();
    lying[18..22].copy_from_slice(&DEFAULT_MAX_HEADER_BYTES.to_le_bytes());
    lying.extend_from_slice(&[0; 100]);
    let mut too_long = good.clone();
    too_long[18..22].copy_from_slice(&(DEFAULT_MAX_HEADER_BYTES + 1).to_le_bytes());
    // (name, bytes, chunk, expect authenticated or this refusal, bytes consumed)
    type Case<'a> = (&'a str, &'a [u8], usize, Option<Unauthenticated>, usize);
    let cases: Vec<Case<'_>> = vec![
        ("whole bundle, big reads", &good, 1 << 20, None, envelope),
        ("whole bundle, one byte a call", &good, 1, None, envelope),
        (
            "ends inside the signature",
            &good[..envelope - 1],
            7,
            Some(Unauthenticated::Truncated),
            envelope - 1,
        ),
        (
            "ends inside the prefix",
            &good[..5],
            7,
            Some(Unauthenticated::Truncated),
            5,
        ),
        ("empty object", &[], 7, Some(Unauthenticated::Truncated), 0),
        (
            "header length lies on a short object",
            &lying,
            1 << 20,
            Some(Unauthenticated::Truncated),
            lying.len(),
        ),
        (
            "header longer than the bound",
            &too_long,
            1 << 20,
            Some(Unauthenticated::HeaderLength),
            PREFIX_LEN,
        ),
    ];
    for (name, data, chunk, want, consumed) in cases {
        let mut r = Trickle {
            data,
            chunk,
            given: 0,
        };
        let step = authenticate_from(&mut r, &t, DEFAULT_MAX_HEADER_BYTES).expect(name);
        match (step, want) {
            (AuthStep::Authenticated(p), None) => {
                assert_eq!(p.envelope_len() as usize, consumed, "{name}")
            }
            (step, Some(u)) => assert_eq!(unauth(step), u, "{name}"),
            (step, None) => panic!("{name}: {step:?}"),
        }
        assert_eq!(r.given, consumed, "{name}: bytes read");
    }
}

#[test]
fn from_a_reader_passes_io_errors_through() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let e = authenticate_from(Broken, &trust(None), DEFAULT_MAX_HEADER_BYTES).unwrap_err();
    assert_eq!(e.to_string(), "disk on fire");
}

#[test]
fn unauthenticated_kinds_map_to_reject_reasons() {
    for (i, u) in Unauthenticated::ALL.iter().enumerate() {
        assert_eq!(u.index(), i);
        let r = Refusal::Unauthenticated(*u);
        assert_eq!(r.reason(), u.reason());
        assert!(!u.code().is_empty());
    }
    assert_eq!(
        Unauthenticated::HeaderLength.reason(),
        RejectReason::Malformed
    );
    assert_eq!(
        Unauthenticated::BadSignature.reason(),
        RejectReason::BadSignature
    );
}

mod forged {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever follows a well-formed prefix naming a trusted key, without that key's
        /// signature it is a bad signature: never decoded, never an authenticated refusal.
        #[test]
        fn forged_envelopes_are_bad_signatures(
            header in proptest::collection::vec(any::<u8>(), 1..600),
            sig in proptest::collection::vec(any::<u8>(), 64),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = format::encode_prefix(FORMAT_VERSION, alice().key_id(), header.len() as u32).to_vec();
            b.extend_from_slice(&header);
            b.extend_from_slice(&sig);
            b.extend_from_slice(&tail);
            let step = authenticate(&b, &trust(None), DEFAULT_MAX_HEADER_BYTES);
            prop_assert!(matches!(step, AuthStep::Refused(Refusal::Unauthenticated(Unauthenticated::BadSignature))), "{step:?}");
        }

        /// Arbitrary bytes never authenticate and never panic.
        #[test]
        fn arbitrary_bytes_never_authenticate(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let step = authenticate(&bytes, &trust(None), DEFAULT_MAX_HEADER_BYTES).at_end_of_object();
            prop_assert!(matches!(step, AuthStep::Refused(Refusal::Unauthenticated(_))), "{step:?}");
        }
    }
}
