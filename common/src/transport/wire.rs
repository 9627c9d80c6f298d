//! The frame format of docs/protocol.md: encoding, bounds-checked decoding and the per-frame
//! integrity tag.
//!
//! Owns the byte layout of every frame kind, the [`LinkKey`] and the tag. Decoding follows one
//! fixed order so that nothing from an unauthenticated frame is interpreted beyond the 4-byte
//! prefix: (1) prefix (magic, version, kind), (2) total length for that kind, (3) the tag over
//! every preceding byte, (4) field parsing with the crate's one bounds-checked reader
//! (`crate::codec`) that refuses trailing bytes, (5) structural field checks that need no
//! configuration. Receiver-configured limits ([`Limits`](super::params::Limits)) are checked
//! after this by the caller.
//!
//! Encoding writes into caller buffers and never allocates. Every value that [`decode`] accepts
//! re-encodes to exactly the same bytes (the format has no optional or variable-width fields
//! besides the heartbeat ledger, whose count is bound to the length).

use thiserror::Error;
use zeroize::Zeroize;

use super::params::{ESI_LIMIT, ObjectParams};
use crate::codec::{self, CodecError, Reader, Writer};

/// First two bytes of every frame: "SL".
pub const MAGIC: [u8; 2] = *b"SL";
/// The only frame format version this build speaks.
pub const VERSION: u8 = 1;
/// Kind byte of a data-symbol frame.
pub const KIND_DATA: u8 = 1;
/// Kind byte of a heartbeat frame.
pub const KIND_HEARTBEAT: u8 = 2;
/// Kind byte of an object-end frame.
pub const KIND_OBJECT_END: u8 = 3;

/// Magic, version and kind.
pub const PREFIX_LEN: usize = 4;
/// Truncated keyed-BLAKE3 tag at the end of every frame.
pub const TAG_LEN: usize = 16;
/// Bytes of a data frame before its payload; also the payload's offset.
pub const DATA_HEADER_LEN: usize = 42;
/// Bytes a data frame adds to its payload: header plus tag.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// Bytes of a heartbeat before its ledger entries.
pub const HEARTBEAT_FIXED_LEN: usize = 37;
/// Bytes of one heartbeat ledger entry.
pub const LEDGER_ENTRY_LEN: usize = 36;
/// Most ledger entries one heartbeat carries.
pub const MAX_LEDGER_ENTRIES: usize = 16;
/// Exact length of an object-end frame.
pub const OBJECT_END_LEN: usize = 46 + TAG_LEN;
/// Largest frame of any kind (a data frame with a 65535-byte payload). A buffer this large can
/// hold any frame; a UDP datagram can carry at most [`MAX_UDP_PAYLOAD`] of it.
pub const MAX_FRAME_LEN: usize = DATA_OVERHEAD + u16::MAX as usize;
/// Largest IPv4 UDP payload.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Largest valid ESI (RaptorQ's 24-bit space), as a u64 for sender arithmetic.
pub const MAX_ESI: u64 = ESI_LIMIT as u64 - 1;

/// Context string for the documented public default link key.
pub const DEFAULT_LINK_KEY_CONTEXT: &str = "sluice 2026 default link key v1";

/// The 32-byte key of the per-frame tag, shared by sender and receiver of one link.
///
/// With [`LinkKey::public_default`] the tag only detects corruption (anyone can compute it);
/// with a configured secret key it also stops injection by anyone without the key. The key is
/// wiped from memory on drop, never printed, and compared in constant time.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl PartialEq for LinkKey {
    fn eq(&self, other: &Self) -> bool {
        codec::ct_eq(&self.0, &other.0)
    }
}

impl Eq for LinkKey {}

impl LinkKey {
    /// A configured secret key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The documented public key used when none is configured:
    /// `blake3::derive_key("sluice 2026 default link key v1", b"")`.
    pub fn public_default() -> Self {
        Self(blake3::derive_key(DEFAULT_LINK_KEY_CONTEXT, b""))
    }

    /// Whether this is the public default key (so the tag gives no protection against injection).
    pub fn is_public_default(&self) -> bool {
        *self == Self::public_default()
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 16-byte tag of `body` (every frame byte before the tag).
    pub fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let full = blake3::keyed_hash(&self.0, body);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of `body`, compared in constant time.
    pub fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        codec::ct_eq(&self.tag(body), tag)
    }
}

impl Default for LinkKey {
    fn default() -> Self {
        Self::public_default()
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_public_default() {
            f.write_str("LinkKey(public default)")
        } else {
            f.write_str("LinkKey(configured, redacted)")
        }
    }
}

impl Drop for LinkKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Which symbol a data frame carries, and of which object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// The object and its geometry.
    pub params: ObjectParams,
    /// Block number (our SBN).
    pub block: u32,
    /// Encoding symbol id: `< K` is a source symbol, `≥ K` a repair symbol.
    pub esi: u32,
}

/// A data-symbol frame (kind 1). The payload borrows from the decoded datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// Header fields.
    pub header: DataHeader,
    /// Exactly `header.params.symbol_size` bytes.
    pub payload: &'a [u8],
}

/// One entry of a heartbeat's ledger: an object the sender sent recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedgerEntry {
    /// The object.
    pub object_id: [u8; 16],
    /// Its length.
    pub object_len: u64,
    /// When its first pass started (sender wall clock, Unix ms).
    pub first_sent_unix_ms: u64,
    /// The pass in progress or last finished.
    pub pass: u16,
    /// Passes planned in total.
    pub passes: u16,
}

/// A heartbeat frame (kind 2): sender identity, liveness and its recent-sends ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    /// Stable id of the sending instance.
    pub sender_id: [u8; 16],
    /// Increases by one per heartbeat.
    pub sequence: u64,
    /// Sender wall clock when sent (Unix ms).
    pub sent_at_unix_ms: u64,
    /// At most [`MAX_LEDGER_ENTRIES`] recent objects.
    pub ledger: Vec<LedgerEntry>,
}

/// An object-end frame (kind 3): the end of one pass over an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectEnd {
    /// The object and its geometry.
    pub params: ObjectParams,
    /// The pass that ended, 1-based.
    pub pass: u16,
    /// Passes planned in total (`pass ≤ passes`).
    pub passes: u16,
    /// Data frames sent in this pass, so the receiver can estimate loss.
    pub frames_sent_this_pass: u64,
}

/// Any decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Kind 1.
    Data(DataFrame<'a>),
    /// Kind 2.
    Heartbeat(Heartbeat),
    /// Kind 3.
    ObjectEnd(ObjectEnd),
}

impl Frame<'_> {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Data(_) => KIND_DATA,
            Frame::Heartbeat(_) => KIND_HEARTBEAT,
            Frame::ObjectEnd(_) => KIND_OBJECT_END,
        }
    }

    /// The encoded length of this frame.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Data(d) => DATA_OVERHEAD + d.payload.len(),
            Frame::Heartbeat(h) => heartbeat_len(h.ledger.len()),
            Frame::ObjectEnd(_) => OBJECT_END_LEN,
        }
    }
}

/// Why bytes are not a frame, or a frame cannot be encoded. `UnknownVersion` and `UnknownKind`
/// are expected from newer senders: count and drop them, never end anything over them.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Shorter than the smallest frame of its kind (or than the 4-byte prefix).
    #[error("frame too short")]
    TooShort,
    /// Does not start with "SL".
    #[error("bad magic")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// A kind this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Length impossible for the kind, or disagreeing with a length field inside the frame.
    #[error("frame length does not match its kind or fields")]
    BadLength,
    /// The integrity tag does not match: corrupted, truncated, or made with another link key.
    #[error("integrity tag mismatch")]
    BadTag,
    /// A data frame's ESI is outside RaptorQ's 24-bit space.
    #[error("encoding symbol id {0} out of range")]
    EsiOutOfRange(u32),
    /// Zero block or symbol size, an empty object in a data frame, or a block number beyond
    /// the object's last block.
    #[error("inconsistent object geometry")]
    BadGeometry,
    /// An object-end frame whose pass is 0 or above its pass count.
    #[error("bad pass number")]
    BadPass,
    /// More ledger entries than [`MAX_LEDGER_ENTRIES`] (encoding only; on decode that is
    /// `BadLength`).
    #[error("too many ledger entries")]
    TooManyLedgerEntries,
    /// The output buffer is shorter than the frame (encoding only).
    #[error("output buffer too small")]
    BufferTooSmall,
}

impl From<CodecError> for FrameError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated => FrameError::TooShort,
            CodecError::TrailingBytes => FrameError::BadLength,
        }
    }
}

/// Length of a data frame with a `symbol_size`-byte payload: `42 + T + 16`.
pub const fn data_frame_len(symbol_size: u16) -> usize {
    DATA_OVERHEAD + symbol_size as usize
}

/// Length of a heartbeat with `entries` ledger entries.
pub const fn heartbeat_len(entries: usize) -> usize {
    HEARTBEAT_FIXED_LEN + entries * LEDGER_ENTRY_LEN + TAG_LEN
}

/// The largest symbol size whose data frame fits in a datagram of `max_datagram_bytes` UDP
/// payload (1472 → 1414; 8972 → 8914), or 0 if not even a 1-byte payload fits.
pub fn symbol_size_for_datagram(max_datagram_bytes: usize) -> u16 {
    let payload = max_datagram_bytes.saturating_sub(DATA_OVERHEAD);
    u16::try_from(payload).unwrap_or(u16::MAX)
}

/// Decode and authenticate one frame. See the module docs for the order of checks.
pub fn decode<'a>(key: &LinkKey, bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let kind = check_prefix(bytes)?;
    match kind {
        KIND_DATA => {
            if bytes.len() < DATA_OVERHEAD + 1 {
                return Err(FrameError::TooShort);
            }
            if bytes.len() > MAX_FRAME_LEN {
                return Err(FrameError::BadLength);
            }
        }
        KIND_HEARTBEAT => {
            if bytes.len() < heartbeat_len(0) {
                return Err(FrameError::TooShort);
            }
            let ledger_bytes = bytes.len() - heartbeat_len(0);
            if ledger_bytes % LEDGER_ENTRY_LEN != 0
                || ledger_bytes / LEDGER_ENTRY_LEN > MAX_LEDGER_ENTRIES
            {
                return Err(FrameError::BadLength);
            }
        }
        KIND_OBJECT_END => {
            if bytes.len() < OBJECT_END_LEN {
                return Err(FrameError::TooShort);
            }
            if bytes.len() != OBJECT_END_LEN {
                return Err(FrameError::BadLength);
            }
        }
        other => return Err(FrameError::UnknownKind(other)),
    }
    // Length was checked against the kind's minimum, which includes the tag.
    let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    if !key.verify(body, tag) {
        return Err(FrameError::BadTag);
    }
    let mut r = Reader::new(body);
    r.take(PREFIX_LEN)?;
    let frame = match kind {
        KIND_DATA => {
            let params = read_params(&mut r)?;
            let block = r.u32_be()?;
            let esi = r.u32_be()?;
            let payload = r.rest();
            if payload.len() != usize::from(params.symbol_size) {
                return Err(FrameError::BadLength);
            }
            Frame::Data(DataFrame {
                header: DataHeader { params, block, esi },
                payload,
            })
        }
        KIND_HEARTBEAT => {
            let sender_id = r.array::<16>()?;
            let sequence = r.u64_be()?;
            let sent_at_unix_ms = r.u64_be()?;
            let count = usize::from(r.u8()?);
            if count != r.remaining() / LEDGER_ENTRY_LEN {
                return Err(FrameError::BadLength);
            }
            let mut ledger = Vec::with_capacity(count.min(MAX_LEDGER_ENTRIES));
            for _ in 0..count {
                ledger.push(LedgerEntry {
                    object_id: r.array::<16>()?,
                    object_len: r.u64_be()?,
                    first_sent_unix_ms: r.u64_be()?,
                    pass: r.u16_be()?,
                    passes: r.u16_be()?,
                });
            }
            Frame::Heartbeat(Heartbeat {
                sender_id,
                sequence,
                sent_at_unix_ms,
                ledger,
            })
        }
        _ => {
            let params = read_params(&mut r)?;
            Frame::ObjectEnd(ObjectEnd {
                params,
                pass: r.u16_be()?,
                passes: r.u16_be()?,
                frames_sent_this_pass: r.u64_be()?,
            })
        }
    };
    r.expect_end()?;
    validate(&frame)?;
    Ok(frame)
}

/// Encode `frame` into the start of `out`, returning its length. Refuses (without writing a
/// partial frame's tag) anything [`decode`] would refuse.
pub fn encode(key: &LinkKey, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, FrameError> {
    match frame {
        Frame::Data(d) => encode_data(key, &d.header, d.payload, out),
        Frame::Heartbeat(h) => encode_heartbeat(key, h, out),
        Frame::ObjectEnd(e) => encode_object_end(key, e, out),
    }
}

/// Append `frame` to `out` (for batching several frames into one buffer), returning its length.
pub fn encode_append(
    key: &LinkKey,
    frame: &Frame<'_>,
    out: &mut Vec<u8>,
) -> Result<usize, FrameError> {
    let start = out.len();
    out.resize(start + frame.encoded_len(), 0);
    let result = out
        .get_mut(start..)
        .ok_or(FrameError::BufferTooSmall)
        .and_then(|tail| encode(key, frame, tail));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encode a data frame: header, `payload` (exactly T bytes) and tag into the start of `out`.
pub fn encode_data(
    key: &LinkKey,
    header: &DataHeader,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    if payload.len() != usize::from(header.params.symbol_size) {
        return Err(FrameError::BadLength);
    }
    let len = data_frame_len(header.params.symbol_size);
    let frame = out.get_mut(..len).ok_or(FrameError::BufferTooSmall)?;
    // `frame` is exactly 42 + T + 16 bytes and `payload` exactly T, checked just above.
    frame[DATA_HEADER_LEN..len - TAG_LEN].copy_from_slice(payload);
    seal_data_in_place(key, header, frame)?;
    Ok(len)
}

/// Finish a data frame whose payload the caller already wrote at
/// `frame[DATA_HEADER_LEN..DATA_HEADER_LEN + T]` (e.g. straight from the FEC encoder): write the
/// header and the tag. `frame` must be exactly [`data_frame_len`]`(T)` bytes.
pub fn seal_data_in_place(
    key: &LinkKey,
    header: &DataHeader,
    frame: &mut [u8],
) -> Result<(), FrameError> {
    validate_data_header(header)?;
    if frame.len() != data_frame_len(header.params.symbol_size) {
        return Err(FrameError::BufferTooSmall);
    }
    let mut w = Writer::new(frame);
    write_prefix(&mut w, KIND_DATA);
    write_params(&mut w, &header.params);
    w.u32_be(header.block);
    w.u32_be(header.esi);
    w.finish(DATA_HEADER_LEN);
    seal(key, frame);
    Ok(())
}

/// Encode a heartbeat into the start of `out`.
pub fn encode_heartbeat(
    key: &LinkKey,
    heartbeat: &Heartbeat,
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let count = heartbeat.ledger.len();
    let Ok(count_byte) = u8::try_from(count) else {
        return Err(FrameError::TooManyLedgerEntries);
    };
    if count > MAX_LEDGER_ENTRIES {
        return Err(FrameError::TooManyLedgerEntries);
    }
    let len = heartbeat_len(count);
    let frame = out.get_mut(..len).ok_or(FrameError::BufferTooSmall)?;
    let mut w = Writer::new(frame);
    write_prefix(&mut w, KIND_HEARTBEAT);
    w.bytes(&heartbeat.sender_id);
    w.u64_be(heartbeat.sequence);
    w.u64_be(heartbeat.sent_at_unix_ms);
    w.u8(count_byte);
    for e in &heartbeat.ledger {
        w.bytes(&e.object_id);
        w.u64_be(e.object_len);
        w.u64_be(e.first_sent_unix_ms);
        w.u16_be(e.pass);
        w.u16_be(e.passes);
    }
    w.finish(len - TAG_LEN);
    seal(key, frame);
    Ok(len)
}

/// Encode an object-end frame into the start of `out`.
pub fn encode_object_end(
    key: &LinkKey,
    end: &ObjectEnd,
    out: &mut [u8],
) -> Result<usize, FrameError> {
    validate_object_end(end)?;
    let frame = out
        .get_mut(..OBJECT_END_LEN)
        .ok_or(FrameError::BufferTooSmall)?;
    let mut w = Writer::new(frame);
    write_prefix(&mut w, KIND_OBJECT_END);
    write_params(&mut w, &end.params);
    w.u16_be(end.pass);
    w.u16_be(end.passes);
    w.u64_be(end.frames_sent_this_pass);
    w.finish(OBJECT_END_LEN - TAG_LEN);
    seal(key, frame);
    Ok(OBJECT_END_LEN)
}

fn check_prefix(bytes: &[u8]) -> Result<u8, FrameError> {
    let Some(&[m0, m1, version, kind]) = bytes.first_chunk::<PREFIX_LEN>() else {
        return Err(FrameError::TooShort);
    };
    if [m0, m1] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if version != VERSION {
        return Err(FrameError::UnknownVersion(version));
    }
    Ok(kind)
}

fn validate(frame: &Frame<'_>) -> Result<(), FrameError> {
    match frame {
        Frame::Data(d) => validate_data_header(&d.header),
        Frame::Heartbeat(_) => Ok(()),
        Frame::ObjectEnd(e) => validate_object_end(e),
    }
}

fn validate_geometry(params: &ObjectParams) -> Result<(), FrameError> {
    if params.block_size == 0 || params.symbol_size == 0 {
        return Err(FrameError::BadGeometry);
    }
    Ok(())
}

fn validate_data_header(header: &DataHeader) -> Result<(), FrameError> {
    validate_geometry(&header.params)?;
    if u64::from(header.block) >= header.params.block_count() {
        return Err(FrameError::BadGeometry);
    }
    if header.esi >= ESI_LIMIT {
        return Err(FrameError::EsiOutOfRange(header.esi));
    }
    Ok(())
}

fn validate_object_end(end: &ObjectEnd) -> Result<(), FrameError> {
    validate_geometry(&end.params)?;
    if end.pass == 0 || end.pass > end.passes {
        return Err(FrameError::BadPass);
    }
    Ok(())
}

fn read_params(r: &mut Reader<'_>) -> Result<ObjectParams, FrameError> {
    Ok(ObjectParams {
        object_id: r.array::<16>()?,
        object_len: r.u64_be()?,
        block_size: r.u32_be()?,
        symbol_size: r.u16_be()?,
    })
}

fn write_prefix(w: &mut Writer<'_>, kind: u8) {
    w.bytes(&MAGIC);
    w.u8(VERSION);
    w.u8(kind);
}

fn write_params(w: &mut Writer<'_>, params: &ObjectParams) {
    w.bytes(&params.object_id);
    w.u64_be(params.object_len);
    w.u32_be(params.block_size);
    w.u16_be(params.symbol_size);
}

/// Write the tag over everything before the last [`TAG_LEN`] bytes of `frame`.
fn seal(key: &LinkKey, frame: &mut [u8]) {
    let split = frame.len().saturating_sub(TAG_LEN);
    let (body, tag) = frame.split_at_mut(split);
    tag.copy_from_slice(&key.tag(body));
}
