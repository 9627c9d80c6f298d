//! The byte layout of a `.sluice` file (docs/bundle.md §Layout) and the one canonical header
//! encoding.
//!
//! ```text
//! offset  size  field
//! 0       8     MAGIC  = 89 53 4C 55 49 43 45 0A  ("\x89SLUICE\n")
//! 8       2     format version, u16 little-endian (= 1)
//! 10      8     signer key id (also inside the header; the two must match)
//! 18      4     header length H, u32 little-endian, 1 ..= MAX_HEADER_BYTES
//! 22      H     header: postcard encoding of WireHeader (canonical: re-encoding must match)
//! 22+H    64    ed25519 signature over DIGEST
//! 86+H    …     file contents, in manifest order, exactly `size` bytes each; then EOF
//!
//! DIGEST = BundleId = blake3(DOMAIN || bytes 0 .. 22+H)      DOMAIN = "sluice bundle v1\0"
//! ```

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use super::{BundleId, Entry, EntryKind, Header, KeyId};
use crate::codec::{Reader, Writer};

/// File magic. The high first byte and the trailing newline catch 7-bit and text-mode transfers.
pub const MAGIC: [u8; 8] = *b"\x89SLUICE\n";
/// The only format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Signature domain: binds the signed bytes to "a Sluice bundle, format 1" (DSSE-style).
pub const DOMAIN: &[u8] = b"sluice bundle v1\0";
/// Size of the fixed prefix before the header.
pub const PREFIX_LEN: usize = 22;
/// Size of the ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest header accepted, checked before anything is allocated for it. Worst case the decoded
/// manifest of a 16 MiB header (≥ 36 bytes per entry on the wire, ≤ ~120 bytes decoded) takes
/// about 60 MiB; the manifest limits then cap entries at [`super::path::MAX_ENTRIES`].
pub const MAX_HEADER_BYTES: u32 = 16 * 1024 * 1024;
/// Longest note in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

#[derive(Serialize, Deserialize)]
enum WireKind {
    File,
    Dir,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    kind: WireKind,
    path: String,
    size: u64,
    blake3: [u8; 32],
    executable: bool,
}

#[derive(Serialize, Deserialize)]
struct WireHeader {
    format_version: u16,
    channel: String,
    sequence: u64,
    created: u64,
    expires: Option<u64>,
    note: Option<String>,
    signer: [u8; 8],
    entries: Vec<WireEntry>,
}

/// Encode a header (no policy checks): the one canonical encoding.
pub fn encode_header(h: &Header) -> Vec<u8> {
    let wire = WireHeader {
        format_version: h.format_version,
        channel: h.channel.clone(),
        sequence: h.sequence,
        created: h.created,
        expires: h.expires,
        note: h.note.clone(),
        signer: h.signer.0,
        entries: h
            .entries
            .iter()
            .map(|e| WireEntry {
                kind: match e.kind {
                    EntryKind::File => WireKind::File,
                    EntryKind::Dir => WireKind::Dir,
                },
                path: e.path.clone(),
                size: e.size,
                blake3: e.blake3,
                executable: e.executable,
            })
            .collect(),
    };
    // Serialising plain structs into a Vec cannot fail.
    postcard::to_stdvec(&wire).unwrap_or_default()
}

/// How a header failed to decode.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid postcard encoding of the header, or bytes left over.
    Malformed(String),
    /// Decodes, but re-encoding gives different bytes (e.g. an overlong varint).
    NonCanonical,
}

/// Decode header bytes and insist they are the canonical encoding of what they decode to.
pub fn decode_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    let (wire, rest): (WireHeader, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} bytes after the header",
            rest.len()
        )));
    }
    let h = Header {
        format_version: wire.format_version,
        channel: wire.channel,
        sequence: wire.sequence,
        created: wire.created,
        expires: wire.expires,
        note: wire.note,
        signer: KeyId(wire.signer),
        entries: wire
            .entries
            .into_iter()
            .map(|e| Entry {
                kind: match e.kind {
                    WireKind::File => EntryKind::File,
                    WireKind::Dir => EntryKind::Dir,
                },
                path: e.path,
                size: e.size,
                blake3: e.blake3,
                executable: e.executable,
            })
            .collect(),
    };
    if encode_header(&h) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(h)
}

/// The fixed 22-byte prefix.
pub fn encode_prefix(version: u16, key_id: KeyId, header_len: u32) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    let mut w = Writer::new(&mut p);
    w.bytes(&MAGIC);
    w.u16_le(version);
    w.bytes(&key_id.0);
    w.u32_le(header_len);
    w.finish(PREFIX_LEN);
    p
}

/// The four fields of a fixed prefix, not yet checked against anything.
pub(crate) struct Prefix {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u16,
    pub(crate) key_id: KeyId,
    pub(crate) header_len: u32,
}

/// Split exactly [`PREFIX_LEN`] bytes into the prefix fields (`None` for any other length).
pub(crate) fn decode_prefix(bytes: &[u8]) -> Option<Prefix> {
    let mut r = Reader::new(bytes);
    let prefix = Prefix {
        magic: r.array().ok()?,
        version: r.u16_le().ok()?,
        key_id: KeyId(r.array().ok()?),
        header_len: r.u32_le().ok()?,
    };
    r.expect_end().ok()?;
    Some(prefix)
}

/// The signed digest, which is also the bundle id: blake3(DOMAIN || prefix || header).
pub fn digest(prefix: &[u8; PREFIX_LEN], header: &[u8]) -> BundleId {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(prefix);
    h.update(header);
    BundleId(*h.finalize().as_bytes())
}

/// How [`stream_body`] stopped before a file's last byte.
pub(crate) enum BodyError<E> {
    /// The reader ended with this many of the file's bytes still to come.
    Short(u64),
    Read(io::Error),
    /// `sink` refused a chunk.
    Sink(E),
}

/// Reads one file's body, exactly `size` bytes (the layout above), from `r` through `buf`,
/// retrying interrupted reads; hands each chunk to `sink` and returns the blake3 of them all.
/// `build` and `verify` both stream every file this way.
pub(crate) fn stream_body<E>(
    r: &mut impl Read,
    size: u64,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<[u8; 32], BodyError<E>> {
    let mut hasher = blake3::Hasher::new();
    let mut remaining = size;
    while remaining > 0 {
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return Err(BodyError::Short(remaining)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        sink(&buf[..n]).map_err(BodyError::Sink)?;
        remaining -= n as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// Whether `r` is at its end: one more byte read, retrying interrupted reads.
pub(crate) fn at_end(r: &mut impl Read) -> io::Result<bool> {
    let mut one = [0u8; 1];
    loop {
        match r.read(&mut one) {
            Ok(n) => return Ok(n == 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
