//! Verifying a bundle while streaming its files into a [`FileSink`] (docs/bundle.md §Verifying).
//!
//! Order, each step only after the previous one passed:
//! 1. fixed prefix (magic, version, key id, header length ≤ [`MAX_HEADER_BYTES`]);
//! 2. header bytes and the 64-byte signature;
//! 3. trusted keys with that key id (none → `unknown_signer`), `verify_strict` over the digest
//!    (never `verify` or `verify_batch`, which accept weak keys);
//! 4. only now decode the header, canonically, and check it agrees with the prefix;
//! 5. channel rule: signer allowed, expiry, sequence, size and count limits, path policy;
//! 6. each file streamed in [`CHUNK_BYTES`] chunks through blake3 into the sink, hash compared
//!    before `end_file`;
//! 7. end of input exactly where the manifest says.
//!
//! The whole bundle is never in memory: the verifier holds the header and one chunk.

use std::fmt;
use std::io::{self, Read};

use ed25519_dalek::Signature;

use super::build::{CHUNK_BYTES, check_note};
use super::format::{
    self, BodyError, DecodeError, FORMAT_VERSION, MAGIC, MAX_HEADER_BYTES, PREFIX_LEN,
    SIGNATURE_LEN,
};
use super::path::{self, Limits};
use super::trust::{TrustStore, check_channel, check_sequence};
use super::{BundleId, EntryKind, FileSink, Header, KeyId, RejectReason, Verified};

/// What the caller knows that the bundle does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Current time, unix seconds (for expiry).
    pub now: u64,
    /// The channel's last accepted sequence (the store's high-water mark); `None` if none yet.
    pub last_sequence: Option<u64>,
}

/// A refusal: the rule broken and a human detail naming the field or path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub reason: RejectReason,
    pub detail: String,
}

impl VerifyError {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        VerifyError {
            reason,
            detail: detail.into(),
        }
    }

    /// One line saying what to do next.
    pub fn remediation(&self) -> &'static str {
        remediation(self.reason)
    }
}

/// One line of advice per reason, for CLI output and records.
pub fn remediation(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Malformed => {
            "this is not a Sluice bundle (or a newer format); check the file and the sender's version"
        }
        RejectReason::Truncated => {
            "the file is incomplete; transfer it again (or wait for the remaining media volumes)"
        }
        RejectReason::TrailingBytes => {
            "the file has extra bytes appended; transfer it again from the original"
        }
        RejectReason::NonCanonical => {
            "the bundle was not written by a conforming sluice-send; recreate it with `sluice-send bundle create`"
        }
        RejectReason::BadSignature => {
            "the bundle was altered after signing (or signed by a different key with the same id); do not use it, recreate and resend it"
        }
        RejectReason::UnknownSigner => {
            "add the signer's .pub to the trust store only if you trust that officer, or have a trusted officer sign it"
        }
        RejectReason::WeakKey => {
            "remove the weak key from the trust store and obtain the officer's real public key"
        }
        RejectReason::SignerNotAllowed => {
            "have a signer listed for this channel in policy.toml sign it, or change the policy"
        }
        RejectReason::Expired => {
            "ask the low side for a fresh bundle (with --expires when the channel requires one)"
        }
        RejectReason::BadPath => {
            "the signer bundled an unsafe file name; rename the file on the low side and recreate the bundle"
        }
        RejectReason::DuplicatePath => {
            "two entries would land on the same file; rename one on the low side and recreate the bundle"
        }
        RejectReason::TooLarge => {
            "split the files over several bundles, or raise the channel's limit in policy.toml"
        }
        RejectReason::HashMismatch => {
            "a file's bytes were altered in transit or at rest; transfer the bundle again"
        }
        RejectReason::Rollback => {
            "this is older than the last accepted bundle on the channel; send a newer one with a higher --seq"
        }
        RejectReason::InsufficientSymbols => "send another pass or insert the remaining volumes",
        RejectReason::StorageError => "check the disk (space, permissions) and try again",
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

impl std::error::Error for VerifyError {}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), VerifyError> {
    r.read_exact(buf).map_err(|e| io_error(e, what))
}

fn io_error(e: io::Error, what: &str) -> VerifyError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        VerifyError::new(
            RejectReason::Truncated,
            format!("the file ends inside {what}"),
        )
    } else {
        VerifyError::new(RejectReason::StorageError, format!("reading {what}: {e}"))
    }
}

/// The parts of a bundle before its file contents, read but not trusted.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub format_version: u16,
    pub key_id: KeyId,
    pub header_bytes: Vec<u8>,
    pub signature: [u8; 64],
    pub id: BundleId,
}

impl Envelope {
    /// Bytes from the start of the file to the first file content byte.
    pub fn len(&self) -> u64 {
        (PREFIX_LEN + self.header_bytes.len() + SIGNATURE_LEN) as u64
    }

    /// Never empty (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Steps 1-2: read the prefix, the bounded header bytes and the signature.
pub fn read_envelope<R: Read>(r: &mut R) -> Result<Envelope, VerifyError> {
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(r, &mut prefix, "the fixed prefix")?;
    // `prefix` is exactly PREFIX_LEN bytes, which is all `decode_prefix` asks.
    let Some(fields) = format::decode_prefix(&prefix) else {
        return Err(VerifyError::new(
            RejectReason::Truncated,
            "the file ends inside the fixed prefix",
        ));
    };
    if fields.magic != MAGIC {
        return Err(VerifyError::new(
            RejectReason::Malformed,
            "bad magic: not a .sluice bundle",
        ));
    }
    let version = fields.version;
    if version != FORMAT_VERSION {
        return Err(VerifyError::new(
            RejectReason::Malformed,
            format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ),
        ));
    }
    let header_len = fields.header_len;
    if header_len == 0 || header_len > MAX_HEADER_BYTES {
        return Err(VerifyError::new(
            RejectReason::Malformed,
            format!("header length {header_len} is outside 1..={MAX_HEADER_BYTES}"),
        ));
    }
    // Grows as bytes arrive: a lying length on a short file never allocates the full claim.
    let mut header_bytes = Vec::new();
    r.by_ref()
        .take(u64::from(header_len))
        .read_to_end(&mut header_bytes)
        .map_err(|e| io_error(e, "the header"))?;
    if header_bytes.len() != header_len as usize {
        return Err(VerifyError::new(
            RejectReason::Truncated,
            "the file ends inside the header",
        ));
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    read_exact(r, &mut signature, "the signature")?;
    let id = format::digest(&prefix, &header_bytes);
    Ok(Envelope {
        format_version: version,
        key_id: fields.key_id,
        header_bytes,
        signature,
        id,
    })
}

/// Step 4: decode the header canonically and check it agrees with the prefix.
pub fn decode_envelope_header(env: &Envelope) -> Result<Header, VerifyError> {
    let h = format::decode_header(&env.header_bytes).map_err(|e| match e {
        DecodeError::Malformed(m) => {
            VerifyError::new(RejectReason::Malformed, format!("header: {m}"))
        }
        DecodeError::NonCanonical => VerifyError::new(
            RejectReason::NonCanonical,
            "header: the bytes are not the one canonical encoding of their content",
        ),
    })?;
    if h.format_version != env.format_version {
        return Err(VerifyError::new(
            RejectReason::Malformed,
            "header: format_version differs from the prefix",
        ));
    }
    if h.signer != env.key_id {
        return Err(VerifyError::new(
            RejectReason::Malformed,
            "header: signer key id differs from the prefix",
        ));
    }
    check_channel(&h.channel).map_err(|e| {
        VerifyError::new(
            RejectReason::Malformed,
            format!("header field channel: {e}"),
        )
    })?;
    if let Some(n) = &h.note {
        check_note(n).map_err(|e| {
            VerifyError::new(RejectReason::Malformed, format!("header field note: {e}"))
        })?;
    }
    Ok(h)
}

/// Read a bundle's envelope and header without any trust decision (for `bundle inspect`). The
/// signature is NOT checked against any key.
pub fn inspect<R: Read>(mut r: R) -> Result<(Envelope, Header), VerifyError> {
    let env = read_envelope(&mut r)?;
    let h = decode_envelope_header(&env)?;
    Ok((env, h))
}

/// Verify a whole bundle from `reader`, streaming file contents into `sink`. See the module docs
/// for the order of checks. On error the sink's contents must be discarded.
pub fn verify<R: Read, S: FileSink>(
    mut reader: R,
    trust: &TrustStore,
    opts: &VerifyOptions,
    sink: &mut S,
) -> Result<Verified, VerifyError> {
    let env = read_envelope(&mut reader)?;

    // Step 3: signature under a trusted key, before any parsing of signed content.
    let mut signer = None;
    let mut candidates = 0usize;
    let sig = Signature::from_bytes(&env.signature);
    for k in trust.keys_with_id(env.key_id) {
        candidates += 1;
        let vk = k.public.verifying_key().map_err(|e| {
            VerifyError::new(
                RejectReason::WeakKey,
                format!("trusted key {:?}: {e}", k.name),
            )
        })?;
        if vk.verify_strict(&env.id.0, &sig).is_ok() {
            signer = Some(k);
            break;
        }
    }
    if candidates == 0 {
        return Err(VerifyError::new(
            RejectReason::UnknownSigner,
            format!("signer key id {} is not in the trust store", env.key_id),
        ));
    }
    let signer = signer.ok_or_else(|| {
        VerifyError::new(
            RejectReason::BadSignature,
            format!(
                "signature does not verify under trusted key id {}",
                env.key_id
            ),
        )
    })?;

    // Steps 4-5.
    let header = decode_envelope_header(&env)?;
    let rule = trust.rule(&header.channel).ok_or_else(|| {
        VerifyError::new(
            RejectReason::SignerNotAllowed,
            format!(
                "channel {:?} is not listed in policy.toml and [defaults] allow_any_trusted_signer = false",
                header.channel
            ),
        )
    })?;
    if let Some(allowed) = &rule.signers {
        if !allowed.contains(&signer.key_id) {
            return Err(VerifyError::new(
                RejectReason::SignerNotAllowed,
                format!(
                    "signer {:?} may not publish on channel {:?}",
                    signer.name, header.channel
                ),
            ));
        }
    }
    check_freshness(&header, rule, opts)?;
    let limits = Limits {
        max_entries: rule.max_files,
        max_total_bytes: rule.max_bundle_bytes,
    };
    path::check_manifest(&header.entries, &limits)
        .map_err(|e| VerifyError::new(e.rule.reason(), format!("manifest: {e}")))?;
    let bundle_bytes = env
        .len()
        .checked_add(header.total_file_bytes())
        .filter(|b| *b <= rule.max_bundle_bytes)
        .ok_or_else(|| {
            VerifyError::new(
                RejectReason::TooLarge,
                format!(
                    "bundle is larger than max_bundle_bytes = {}",
                    rule.max_bundle_bytes
                ),
            )
        })?;

    // Step 6: stream files.
    let largest = header.entries.iter().map(|e| e.size).max().unwrap_or(0);
    let mut buf = vec![
        0u8;
        usize::try_from(largest)
            .unwrap_or(CHUNK_BYTES)
            .clamp(1, CHUNK_BYTES)
    ];
    let storage = |e: io::Error, p: &str| {
        VerifyError::new(
            RejectReason::StorageError,
            format!("sink failed at {}: {e}", path::escape(p)),
        )
    };
    for e in &header.entries {
        if e.kind == EntryKind::Dir {
            sink.create_dir(e).map_err(|x| storage(x, &e.path))?;
            continue;
        }
        sink.begin_file(e).map_err(|x| storage(x, &e.path))?;
        let hash = format::stream_body(&mut reader, e.size, &mut buf, |chunk| sink.write(chunk))
            .map_err(|x| match x {
                BodyError::Short(remaining) => VerifyError::new(
                    RejectReason::Truncated,
                    format!(
                        "the file ends {remaining} bytes short inside {}",
                        path::escape(&e.path)
                    ),
                ),
                BodyError::Read(x) => io_error(x, &path::escape(&e.path)),
                BodyError::Sink(x) => storage(x, &e.path),
            })?;
        if hash != e.blake3 {
            return Err(VerifyError::new(
                RejectReason::HashMismatch,
                format!("{} does not match its manifest hash", path::escape(&e.path)),
            ));
        }
        sink.end_file(e).map_err(|x| storage(x, &e.path))?;
    }

    // Step 7: exactly EOF.
    if !format::at_end(&mut reader).map_err(|x| io_error(x, "the end of the bundle"))? {
        return Err(VerifyError::new(
            RejectReason::TrailingBytes,
            format!("bytes follow the last file (expected the file to end at {bundle_bytes})"),
        ));
    }
    Ok(Verified::new(
        header,
        env.id,
        signer.name.clone(),
        bundle_bytes,
    ))
}

/// The rules whose answer depends on when and after what a bundle is checked: expiry against
/// `opts.now`, sequence against `opts.last_sequence`. Everything else `verify` decides is a
/// function of the bytes and the trust store alone.
fn check_freshness(
    header: &Header,
    rule: &super::trust::ChannelRule,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    match header.expires {
        None if rule.require_expiry => {
            return Err(VerifyError::new(
                RejectReason::Expired,
                format!(
                    "channel {:?} requires an expiry and the bundle has none",
                    header.channel
                ),
            ));
        }
        Some(e) if opts.now >= e => {
            return Err(VerifyError::new(
                RejectReason::Expired,
                format!("bundle expired at {e} (unix seconds); now is {}", opts.now),
            ));
        }
        _ => {}
    }
    if rule.require_increasing_sequence {
        check_sequence(opts.last_sequence, header.sequence).map_err(|r| {
            VerifyError::new(
                r,
                format!(
                    "sequence {} is not above the last accepted {} on channel {:?}",
                    header.sequence,
                    opts.last_sequence.unwrap_or(0),
                    header.channel
                ),
            )
        })?;
    }
    Ok(())
}

/// Re-applies the time- and sequence-dependent rules to a bundle verified earlier, as they
/// stand at `opts` — for a verification that ran while the bundle was still arriving, so that
/// accepting it later gives exactly the verdict a verification at that moment would give.
pub fn recheck_freshness(
    verified: &Verified,
    trust: &TrustStore,
    opts: &VerifyOptions,
) -> Result<(), VerifyError> {
    let header = verified.header();
    let rule = trust.rule(&header.channel).ok_or_else(|| {
        VerifyError::new(
            RejectReason::SignerNotAllowed,
            format!(
                "channel {:?} is no longer listed in policy.toml",
                header.channel
            ),
        )
    })?;
    check_freshness(header, rule, opts)
}

/// A sink that keeps nothing (for `sluice-recv verify`).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSink;

impl FileSink for DiscardSink {
    fn create_dir(&mut self, _: &super::Entry) -> io::Result<()> {
        Ok(())
    }
    fn begin_file(&mut self, _: &super::Entry) -> io::Result<()> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn end_file(&mut self, _: &super::Entry) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that keeps everything in memory, for tests: `(path, Some(bytes))` per file,
/// `(path, None)` per directory.
#[derive(Clone, Debug, Default)]
pub struct MemSink {
    pub items: Vec<(String, Option<Vec<u8>>)>,
}

impl FileSink for MemSink {
    fn create_dir(&mut self, e: &super::Entry) -> io::Result<()> {
        self.items.push((e.path.clone(), None));
        Ok(())
    }
    fn begin_file(&mut self, e: &super::Entry) -> io::Result<()> {
        self.items.push((e.path.clone(), Some(Vec::new())));
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some((_, Some(v))) = self.items.last_mut() {
            v.extend_from_slice(bytes);
        }
        Ok(())
    }
    fn end_file(&mut self, _: &super::Entry) -> io::Result<()> {
        Ok(())
    }
}
