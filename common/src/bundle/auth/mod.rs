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
mod tests;
