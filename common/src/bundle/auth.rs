//! Authenticate first: decide whether the first bytes of an object (fixed prefix, header,
//! signature) were signed by a trusted key, before anything inside the header is decoded.
//!
//! This module owns the step between "bytes arrived" and "a trusted signer said this". It is
//! the only place that constructs [`AuthenticatedPrefix`] and [`AuthenticatedRefusal`] (private
//! fields, no public constructor), so a value of either type is proof that the signature verified
//! with `verify_strict` under a key in the [`TrustStore`].
//!
//! Order of checks in [`authenticate`], each only after the previous one passed:
//! 1. fixed prefix (22 bytes): magic, format version, header length `1 ..= max_header_bytes`;
//! 2. the prefix's signer key id names at least one trusted key (checked on the 22 bytes, so
//!    junk under an unknown key id is refused before its header is even waited for);
//! 3. all of prefix + header + signature present (else `NeedMore`);
//! 4. `verify_strict` over `blake3(DOMAIN ‖ prefix ‖ header)` under each trusted key with that id;
//! 5. only now: postcard decode, canonical re-encoding, prefix/header agreement, channel name
//!    and note rules ([`verify::decode_envelope_header`]), then the channel's signer list.
//!
//! Refusals at steps 1-4 are [`Unauthenticated`]: a fieldless enum, so nothing an attacker chose
//! (key id, lengths, bytes) can reach a record, a log field or an allocation through it.
//! Refusals at step 5 are [`AuthenticatedRefusal`]s: a trusted signer really signed those bytes,
//! so they carry the bundle id and a detail and may be recorded (within the admission budget,
//! see [`crate::admission`]).
//!
//! # Bounds (worst cases)
//!
//! | limit | value | worst case |
//! |---|---|---|
//! | header bytes, policy | [`DEFAULT_MAX_HEADER_BYTES`] = 1 MiB (caller may pass another, clamped to [`format::MAX_HEADER_BYTES`] = 16 MiB) | the caller buffers at most [`max_input_bytes`] = 22 + bound + 64 bytes before a decision; nothing is buffered for a header longer than the bound, because it is refused on the 22-byte prefix |
//! | allocation before the signature verified | 0 bytes | this module reads the caller's slice in place; the digest is streamed through blake3 |
//! | allocation after it verified | one copy of the header (≤ bound) plus the decoded header (≤ ~4× a 1 MiB header, see [`format::MAX_HEADER_BYTES`]) | only for bytes a trusted key signed |
//! | signature checks per object | one `verify_strict` per trusted key sharing the key id (normally 1; at most [`super::trust::MAX_TRUSTED_KEYS`]) | one blake3 pass over ≤ bound bytes |
//! | records, log fields | 0 from an [`Unauthenticated`] refusal | it carries no data |

use std::io::{self, Read};

use ed25519_dalek::Signature;

use super::format::{self, FORMAT_VERSION, MAGIC, PREFIX_LEN, SIGNATURE_LEN};
use super::trust::TrustStore;
use super::verify::{self, Envelope};
use super::{BundleId, Header, KeyId, RejectReason};

/// Default policy bound on the header length. Real manifests are far smaller (a 5 000-file
/// bundle with 60-byte paths is about 0.5 MiB), and the bound is what an unauthenticated sender
/// can make the receiver buffer per object before the signature is checked.
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 1024 * 1024;

/// The most bytes [`authenticate`] ever asks for with this bound: prefix + header + signature.
/// A caller that never buffers more than this per object cannot be made to hold more.
pub fn max_input_bytes(max_header_bytes: u32) -> usize {
    PREFIX_LEN + effective_bound(max_header_bytes) as usize + SIGNATURE_LEN
}

/// The policy bound never exceeds what the format allows.
fn effective_bound(max_header_bytes: u32) -> u32 {
    max_header_bytes.min(format::MAX_HEADER_BYTES)
}

/// What [`authenticate`] decided about the bytes given so far.
#[derive(Debug)]
pub enum AuthStep {
    /// Call again with at least this many more bytes (appended to the ones given). Never asks
    /// beyond [`max_input_bytes`] in total.
    NeedMore(usize),
    /// The signature verified and the header decoded canonically.
    Authenticated(AuthenticatedPrefix),
    /// Refused; see [`Refusal`] for what may be recorded.
    Refused(Refusal),
}

impl AuthStep {
    /// The object ended with the bytes given: a `NeedMore` becomes a truncation refusal (which
    /// is unauthenticated: the signature was never complete).
    pub fn at_end_of_object(self) -> AuthStep {
        match self {
            AuthStep::NeedMore(_) => {
                AuthStep::Refused(Refusal::Unauthenticated(Unauthenticated::Truncated))
            }
            other => other,
        }
    }
}

/// Why bytes were refused, split by what is known about who wrote them.
#[derive(Debug)]
pub enum Refusal {
    /// Refused before any signature verified. Count it (metrics); never record or log its bytes.
    Unauthenticated(Unauthenticated),
    /// A trusted signer signed these bytes and policy refused them.
    Authenticated(AuthenticatedRefusal),
}

impl Refusal {
    /// The reject reason, for metrics and (authenticated only) records.
    pub fn reason(&self) -> RejectReason {
        match self {
            Refusal::Unauthenticated(u) => u.reason(),
            Refusal::Authenticated(a) => a.reason,
        }
    }
}

/// A refusal before the signature verified. Deliberately fieldless: the only information it
/// carries is which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unauthenticated {
    /// The first 8 bytes are not the bundle magic.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion,
    /// Header length 0, or above the policy bound.
    HeaderLength,
    /// The prefix's key id names no trusted key.
    UnknownSigner,
    /// Every trusted key with that id is unusable (weak or invalid); the trust store normally
    /// refuses such keys when it is built.
    WeakKey,
    /// The signature does not verify under any trusted key with that id.
    BadSignature,
    /// The object ended before prefix, header and signature were complete.
    Truncated,
}

impl Unauthenticated {
    /// Every variant, in a fixed order (for per-kind counters).
    pub const ALL: [Unauthenticated; 7] = [
        Unauthenticated::BadMagic,
        Unauthenticated::UnsupportedVersion,
        Unauthenticated::HeaderLength,
        Unauthenticated::UnknownSigner,
        Unauthenticated::WeakKey,
        Unauthenticated::BadSignature,
        Unauthenticated::Truncated,
    ];

    /// Position in [`Unauthenticated::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reject reason this maps to (the same codes `verify` uses).
    pub fn reason(self) -> RejectReason {
        match self {
            Unauthenticated::BadMagic
            | Unauthenticated::UnsupportedVersion
            | Unauthenticated::HeaderLength => RejectReason::Malformed,
            Unauthenticated::UnknownSigner => RejectReason::UnknownSigner,
            Unauthenticated::WeakKey => RejectReason::WeakKey,
            Unauthenticated::BadSignature => RejectReason::BadSignature,
            Unauthenticated::Truncated => RejectReason::Truncated,
        }
    }

    /// Stable snake_case code, finer than [`RejectReason::code`], for metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            Unauthenticated::BadMagic => "bad_magic",
            Unauthenticated::UnsupportedVersion => "unsupported_version",
            Unauthenticated::HeaderLength => "header_length",
            Unauthenticated::UnknownSigner => "unknown_signer",
            Unauthenticated::WeakKey => "weak_key",
            Unauthenticated::BadSignature => "bad_signature",
            Unauthenticated::Truncated => "truncated",
        }
    }
}

/// A bundle header a trusted key signed, decoded canonically and allowed on its channel. The
/// file contents are NOT verified yet: this is the ticket to stream them through
/// [`verify::verify`], never into quarantine.
#[derive(Clone, Debug)]
pub struct AuthenticatedPrefix {
    id: BundleId,
    header: Header,
    signer_name: String,
    envelope_len: u64,
}

impl AuthenticatedPrefix {
    /// The bundle id: the signed digest.
    pub fn id(&self) -> BundleId {
        self.id
    }
    /// The transport object id a conforming sender uses for this bundle.
    pub fn object_id(&self) -> [u8; 16] {
        self.id.object_id()
    }
    pub fn channel(&self) -> &str {
        &self.header.channel
    }
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }
    /// Key id of the trusted key that verified.
    pub fn signer(&self) -> KeyId {
        self.header.signer
    }
    /// Name of the trusted key that verified (the `.pub` file stem).
    pub fn signer_name(&self) -> &str {
        &self.signer_name
    }
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Bytes from the start of the object to the first file content byte.
    pub fn envelope_len(&self) -> u64 {
        self.envelope_len
    }
}

/// A refusal of bytes a trusted key signed: safe to record (budgeted), because its content came
/// from a trusted signer.
#[derive(Clone, Debug)]
pub struct AuthenticatedRefusal {
    id: BundleId,
    signer_name: String,
    reason: RejectReason,
    detail: String,
    channel: Option<String>,
    sequence: Option<u64>,
}

impl AuthenticatedRefusal {
    pub fn id(&self) -> BundleId {
        self.id
    }
    pub fn signer_name(&self) -> &str {
        &self.signer_name
    }
    pub fn reason(&self) -> RejectReason {
        self.reason
    }
    /// Human detail (may quote signed header content, escaped).
    pub fn detail(&self) -> &str {
        &self.detail
    }
    /// The channel, when the header decoded far enough to know it.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
}

fn refuse(u: Unauthenticated) -> AuthStep {
    AuthStep::Refused(Refusal::Unauthenticated(u))
}

/// Authenticate the start of an object. `bytes` are the object's first bytes as they arrived
/// (more than the envelope is fine: file contents after it are ignored). See the module docs for
/// the order of checks; call again with more bytes on [`AuthStep::NeedMore`], and use
/// [`AuthStep::at_end_of_object`] when the object has no more.
pub fn authenticate(bytes: &[u8], trust: &TrustStore, max_header_bytes: u32) -> AuthStep {
    // Step 1: the fixed prefix. Only its 22 bytes are looked at until the length passed.
    let Some(prefix) = bytes.first_chunk::<PREFIX_LEN>() else {
        return AuthStep::NeedMore(PREFIX_LEN - bytes.len());
    };
    if prefix[..8] != MAGIC {
        return refuse(Unauthenticated::BadMagic);
    }
    let version = u16::from_le_bytes([prefix[8], prefix[9]]);
    if version != FORMAT_VERSION {
        return refuse(Unauthenticated::UnsupportedVersion);
    }
    let mut kid = [0u8; 8];
    kid.copy_from_slice(&prefix[10..18]);
    let key_id = KeyId(kid);
    let header_len = u32::from_le_bytes([prefix[18], prefix[19], prefix[20], prefix[21]]);
    if header_len == 0 || header_len > effective_bound(max_header_bytes) {
        return refuse(Unauthenticated::HeaderLength);
    }

    // Step 2: a key id no trusted key has cannot verify; refuse before waiting for the header.
    if trust.keys_with_id(key_id).next().is_none() {
        return refuse(Unauthenticated::UnknownSigner);
    }

    // Step 3: everything the signature covers, and the signature. `header_len` ≤ 16 MiB, so the
    // sum cannot overflow.
    let header_end = PREFIX_LEN + header_len as usize;
    let envelope_end = header_end + SIGNATURE_LEN;
    if bytes.len() < envelope_end {
        return AuthStep::NeedMore(envelope_end - bytes.len());
    }
    let header_bytes = &bytes[PREFIX_LEN..header_end];
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&bytes[header_end..envelope_end]);

    // Step 4: verify_strict (never verify or verify_batch, which accept weak keys) under every
    // trusted key sharing the id: key ids are 8-byte labels, and two real keys may share one.
    let id = format::digest(prefix, header_bytes);
    let sig = Signature::from_bytes(&signature);
    let mut usable = false;
    let mut signer = None;
    for k in trust.keys_with_id(key_id) {
        let Ok(vk) = k.public.verifying_key() else {
            continue;
        };
        usable = true;
        if vk.verify_strict(&id.0, &sig).is_ok() {
            signer = Some(k);
            break;
        }
    }
    let Some(signer) = signer else {
        return refuse(if usable {
            Unauthenticated::BadSignature
        } else {
            Unauthenticated::WeakKey
        });
    };

    // Step 5: signed by a trusted key; from here on refusals are authenticated. The decode and
    // its checks are verify.rs's own, so the two paths cannot disagree about a header.
    let envelope = Envelope {
        format_version: version,
        key_id,
        header_bytes: header_bytes.to_vec(),
        signature,
        id,
    };
    let authenticated_refusal =
        |reason, detail: String, channel: Option<String>, sequence: Option<u64>| {
            AuthStep::Refused(Refusal::Authenticated(AuthenticatedRefusal {
                id,
                signer_name: signer.name.clone(),
                reason,
                detail,
                channel,
                sequence,
            }))
        };
    let header = match verify::decode_envelope_header(&envelope) {
        Ok(h) => h,
        Err(e) => return authenticated_refusal(e.reason, e.detail, None, None),
    };
    let allowed = match trust.rule(&header.channel) {
        None => Err(format!(
            "channel {:?} is not listed in policy.toml and [defaults] allow_any_trusted_signer = false",
            header.channel
        )),
        Some(rule) => match &rule.signers {
            Some(list) if !list.contains(&signer.key_id) => Err(format!(
                "signer {:?} may not publish on channel {:?}",
                signer.name, header.channel
            )),
            _ => Ok(()),
        },
    };
    if let Err(detail) = allowed {
        return authenticated_refusal(
            RejectReason::SignerNotAllowed,
            detail,
            Some(header.channel.clone()),
            Some(header.sequence),
        );
    }
    AuthStep::Authenticated(AuthenticatedPrefix {
        id,
        signer_name: signer.name.clone(),
        envelope_len: envelope.len(),
        header,
    })
}

/// [`authenticate`] over a reader (the staged object), reading only what each step asks for:
/// 22 bytes, then exactly the rest of the envelope, never more than [`max_input_bytes`], and the
/// buffer grows only as bytes actually arrive (a lying header length on a short object allocates
/// nothing for the claim). End of input before the envelope is complete is
/// [`Unauthenticated::Truncated`]. The reader is left positioned after the bytes read: the first
/// file content byte when the prefix authenticated. An `Err` is the reader's own I/O failure
/// (a storage problem, not a refusal).
pub fn authenticate_from<R: Read>(
    mut reader: R,
    trust: &TrustStore,
    max_header_bytes: u32,
) -> io::Result<AuthStep> {
    let mut buf = Vec::new();
    loop {
        match authenticate(&buf, trust, max_header_bytes) {
            AuthStep::NeedMore(n) => {
                let got = reader.by_ref().take(n as u64).read_to_end(&mut buf)?;
                if got < n {
                    return Ok(authenticate(&buf, trust, max_header_bytes).at_end_of_object());
                }
            }
            decided => return Ok(decided),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
