//! Spool volumes: the same frames that cross a diode as UDP datagrams, written into files on
//! removable media (docs/media.md is the spec).
//!
//! A volume is a small tagged header followed by fixed-size frame records. Fixed-size records
//! mean a damaged sector or a torn copy costs exactly the frames it touches: every other record
//! is still found at `HEADER_LEN + i × frame_len`, and each frame carries its own integrity tag,
//! so the receiver feeds records into the same pipeline as datagrams and lets the tag decide.
//!
//! ```text
//! offset size field
//!  0      8   magic  "SLUICEVL"
//!  8      1   version (1)
//!  9      1   reserved, must be 0
//! 10      2   volume index (0-based, < volume count)
//! 12      2   volume count (1..=MAX_VOLUMES)
//! 14      2   reserved, must be 0
//! 16     16   object id
//! 32      8   object length in bytes
//! 40      4   frame length in bytes (every record is exactly this long)
//! 44      8   frame count in this volume
//! 52     16   tag: keyed BLAKE3 (link key) of bytes 0..52 under the spool context, truncated
//! 68          records: frame count × frame length bytes
//! ```

use crate::codec::{self, CodecError, Reader, Writer};

/// Bytes before the first record.
pub const HEADER_LEN: usize = 68;
/// Fewer volumes than this keeps the "which losses survive" arithmetic meaningful and bounds the
/// per-bundle bookkeeping of an import (one entry per volume).
pub const MAX_VOLUMES: u16 = 256;
/// Largest record: a UDP datagram never exceeds 65 507 bytes, and records are datagrams.
pub const MAX_FRAME_LEN: u32 = 65_507;

/// Largest repair overhead (percent) the plausibility bound allows for: `sluice-send media`
/// never chooses more on its own (`MAX_AUTO_OVERHEAD` there).
pub const MAX_OVERHEAD_PERCENT: u64 = 1000;
/// Records per source symbol a single volume may declare: with S source symbols in B ≤ S blocks
/// (each block's K rounds up, so ΣK ≤ S + B ≤ 2S), overhead o ≤ 1000 % and V ≥ 1 volumes, one
/// volume holds Σ⌈P_b/V⌉ ≤ ΣK·(1 + o) + B ≤ 2S·11 + S ≤ 23S records; 24 leaves room for the
/// per-block rounding of the repair count.
pub const MAX_RECORDS_PER_SOURCE_SYMBOL: u64 = 24;
/// Added to the plausibility bound so tiny objects (one symbol) with many repair symbols fit.
pub const PLAUSIBLE_RECORDS_SLACK: u64 = 64;

const MAGIC: &[u8; 8] = b"SLUICEVL";
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// Separates volume-header tags from frame tags made with the same link key.
const TAG_CONTEXT: &str = "sluice 2026 spool volume header v1";

impl From<CodecError> for VolumeError {
    fn from(_: CodecError) -> Self {
        VolumeError::TooShort
    }
}

/// A volume's header, as written or as verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeHeader {
    pub volume_index: u16,
    pub volume_count: u16,
    pub object_id: [u8; 16],
    pub object_len: u64,
    pub frame_len: u32,
    pub frame_count: u64,
}

/// Why a volume header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    #[error("file is shorter than a volume header ({HEADER_LEN} bytes)")]
    TooShort,
    #[error("not a Sluice spool volume (bad magic)")]
    BadMagic,
    #[error("spool volume version {0} is not supported by this build")]
    UnknownVersion(u8),
    #[error("volume header failed its integrity check (damaged, or written with another link key)")]
    BadTag,
    #[error("volume header field out of range: {0}")]
    OutOfRange(&'static str),
}

impl VolumeHeader {
    /// Encodes the header with its tag.
    pub fn encode(&self, link_key: &[u8; 32]) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (body, tag) = out.split_at_mut(HEADER_LEN - TAG_LEN);
        let mut w = Writer::new(body);
        w.bytes(MAGIC);
        w.u8(VERSION);
        w.u8(0);
        w.u16_be(self.volume_index);
        w.u16_be(self.volume_count);
        w.u16_be(0);
        w.bytes(&self.object_id);
        w.u64_be(self.object_len);
        w.u32_be(self.frame_len);
        w.u64_be(self.frame_count);
        w.finish(HEADER_LEN - TAG_LEN);
        tag.copy_from_slice(&header_tag(link_key, body));
        out
    }

    /// Decodes and authenticates the first [`HEADER_LEN`] bytes of a volume. Trailing bytes (the
    /// records) are the caller's to read, at offsets given by [`record_offset`](Self::record_offset).
    ///
    /// Checks in order: length, magic, version, tag, then the authenticated fields.
    pub fn decode(bytes: &[u8], link_key: &[u8; 32]) -> Result<Self, VolumeError> {
        let header = bytes.get(..HEADER_LEN).ok_or(VolumeError::TooShort)?;
        let (body, tag) = header.split_at(HEADER_LEN - TAG_LEN);
        let mut r = Reader::new(body);
        if r.array::<8>()? != *MAGIC {
            return Err(VolumeError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(VolumeError::UnknownVersion(version));
        }
        if !codec::ct_eq(&header_tag(link_key, body), tag) {
            return Err(VolumeError::BadTag);
        }
        let reserved_9 = r.u8()?;
        let volume_index = r.u16_be()?;
        let volume_count = r.u16_be()?;
        let reserved_14 = r.u16_be()?;
        if reserved_9 != 0 || reserved_14 != 0 {
            return Err(VolumeError::OutOfRange("reserved bytes are not zero"));
        }
        let parsed = VolumeHeader {
            volume_index,
            volume_count,
            object_id: r.array()?,
            object_len: r.u64_be()?,
            frame_len: r.u32_be()?,
            frame_count: r.u64_be()?,
        };
        r.expect_end()?;
        if parsed.volume_count == 0 || parsed.volume_count > MAX_VOLUMES {
            return Err(VolumeError::OutOfRange("volume count"));
        }
        if parsed.volume_index >= parsed.volume_count {
            return Err(VolumeError::OutOfRange("volume index"));
        }
        if parsed.frame_len == 0 || parsed.frame_len > MAX_FRAME_LEN {
            return Err(VolumeError::OutOfRange("frame length"));
        }
        if parsed.expected_file_len().is_none() {
            return Err(VolumeError::OutOfRange("frame count"));
        }
        Ok(parsed)
    }

    /// The length a complete volume file has; `None` if it would overflow.
    pub fn expected_file_len(&self) -> Option<u64> {
        self.frame_count
            .checked_mul(u64::from(self.frame_len))?
            .checked_add(HEADER_LEN as u64)
    }

    /// Where record `index` starts in the file.
    pub fn record_offset(&self, index: u64) -> Option<u64> {
        index
            .checked_mul(u64::from(self.frame_len))?
            .checked_add(HEADER_LEN as u64)
    }

    /// The most records one volume of this object can plausibly hold, whatever the sender's
    /// geometry: [`MAX_RECORDS_PER_SOURCE_SYMBOL`] per source symbol of the declared object (at
    /// least one). `None` when the frame length leaves no payload. A header declaring more is
    /// refused before anything is read or staged (a small sparse file claiming 1 GiB of records
    /// for a 4 KiB object costs nothing).
    pub fn max_plausible_records(&self) -> Option<u64> {
        let symbol =
            u64::from(self.frame_len).checked_sub(crate::transport::wire::DATA_OVERHEAD as u64)?;
        if symbol == 0 {
            return None;
        }
        let source = self.object_len.div_ceil(symbol).max(1);
        Some(
            source
                .saturating_mul(MAX_RECORDS_PER_SOURCE_SYMBOL)
                .saturating_add(PLAUSIBLE_RECORDS_SLACK),
        )
    }

    /// True when [`frame_count`](Self::frame_count) is within [`max_plausible_records`](Self::max_plausible_records).
    pub fn is_plausible(&self) -> bool {
        self.max_plausible_records()
            .is_some_and(|max| self.frame_count <= max)
    }

    /// How many whole records a file of `file_len` bytes holds (fewer than `frame_count` when the
    /// copy was truncated).
    pub fn whole_records_in(&self, file_len: u64) -> u64 {
        let body = file_len.saturating_sub(HEADER_LEN as u64);
        (body / u64::from(self.frame_len.max(1))).min(self.frame_count)
    }
}

/// Which volume a frame goes to, keyed by `block + esi` of its symbol (callers pass that sum).
///
/// Not by send order: the sender interleaves one symbol per block of a window in turn, so with a
/// window that shares a factor with the volume count (16 blocks, 4 volumes) round-robin over send
/// order would put every symbol of a block on the same volume, and losing that volume would lose
/// whole blocks. Keyed by `block + esi`, each block's consecutive symbols cycle through all
/// volumes whatever the interleaving, so losing one volume costs each block about 1/N of its
/// symbols.
pub fn volume_for_frame(frame_index: u64, volume_count: u16) -> u16 {
    (frame_index % u64::from(volume_count.max(1))) as u16
}

/// The largest number of whole volumes that may be lost while every block stays decodable, given
/// the repair overhead in percent: with V volumes, losing L leaves (V−L)/V of each block's
/// K·(1+overhead) symbols, which must be at least K (plus a small safety margin of 1 %).
pub fn survivable_volume_losses(volume_count: u16, overhead_percent: u32) -> u16 {
    let v = u64::from(volume_count.max(1));
    let sent = 100 + u64::from(overhead_percent); // per 100 source symbols
    (0..v)
        .rev()
        .find(|&lost| (v - lost) * sent >= v * 101)
        .unwrap_or(0) as u16
}

fn header_tag(link_key: &[u8; 32], bytes: &[u8]) -> [u8; TAG_LEN] {
    let key = blake3::derive_key(TAG_CONTEXT, link_key);
    let hash = blake3::keyed_hash(&key, bytes);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn sample() -> VolumeHeader {
        VolumeHeader {
            volume_index: 2,
            volume_count: 4,
            object_id: [9; 16],
            object_len: 1 << 30,
            frame_len: 1472,
            frame_count: 12345,
        }
    }

    #[test]
    fn round_trips_and_rejects_every_flipped_bit() {
        let bytes = sample().encode(&KEY);
        assert_eq!(VolumeHeader::decode(&bytes, &KEY), Ok(sample()));
        for bit in 0..HEADER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(VolumeHeader::decode(&damaged, &KEY).is_err(), "bit {bit}");
        }
        assert_eq!(
            VolumeHeader::decode(&bytes, &[8; 32]),
            Err(VolumeError::BadTag)
        );
    }

    #[test]
    fn truncated_headers_are_refused() {
        let bytes = sample().encode(&KEY);
        for len in 0..HEADER_LEN {
            assert_eq!(
                VolumeHeader::decode(&bytes[..len], &KEY),
                Err(VolumeError::TooShort)
            );
        }
    }

    #[test]
    fn hostile_but_authentic_fields_are_bounded() {
        for bad in [
            VolumeHeader {
                volume_count: 0,
                volume_index: 0,
                ..sample()
            },
            VolumeHeader {
                volume_index: 4,
                ..sample()
            },
            VolumeHeader {
                frame_len: 0,
                ..sample()
            },
            VolumeHeader {
                frame_len: 70_000,
                ..sample()
            },
            VolumeHeader {
                frame_count: u64::MAX,
                ..sample()
            },
        ] {
            assert!(matches!(
                VolumeHeader::decode(&bad.encode(&KEY), &KEY),
                Err(VolumeError::OutOfRange(_))
            ));
        }
    }

    #[test]
    fn counts_whole_records_of_a_truncated_copy() {
        let h = sample();
        let full = h.expected_file_len().unwrap();
        assert_eq!(h.whole_records_in(full), h.frame_count);
        assert_eq!(h.whole_records_in(full + 100), h.frame_count);
        assert_eq!(h.whole_records_in(full - 1), h.frame_count - 1);
        assert_eq!(h.whole_records_in(10), 0);
        assert_eq!(h.record_offset(1), Some(HEADER_LEN as u64 + 1472));
    }

    #[test]
    fn plausibility_bounds_records_by_the_declared_object() {
        // The attack of issue 12 (3): a tiny object whose header claims 1 GiB of records.
        let tiny = VolumeHeader {
            object_len: 4096,
            frame_len: 4154,
            frame_count: (1 << 30) / 4154,
            ..sample()
        };
        assert!(!tiny.is_plausible());
        assert_eq!(tiny.max_plausible_records(), Some(24 + 64));
        // What the sender writes at its largest overhead on one volume is plausible.
        let object_len = 10 << 20;
        let source = object_len / 4096;
        let one_volume = VolumeHeader {
            volume_count: 1,
            volume_index: 0,
            object_len,
            frame_len: 4154,
            frame_count: source * 11 + 8,
            ..sample()
        };
        assert!(one_volume.is_plausible());
        // No payload in a frame: never plausible.
        let no_payload = VolumeHeader {
            frame_len: 10,
            ..sample()
        };
        assert_eq!(no_payload.max_plausible_records(), None);
        assert!(!no_payload.is_plausible());
    }

    #[test]
    fn survivable_losses_follow_the_overhead() {
        assert_eq!(survivable_volume_losses(1, 100), 0);
        assert_eq!(survivable_volume_losses(4, 10), 0);
        assert_eq!(survivable_volume_losses(4, 34), 0); // 3/4 × 134 = 100.5 < 101
        assert_eq!(survivable_volume_losses(4, 35), 1);
        assert_eq!(survivable_volume_losses(4, 103), 2);
        assert_eq!(survivable_volume_losses(3, 52), 1);
        assert_eq!(volume_for_frame(9, 4), 1);
    }
}
