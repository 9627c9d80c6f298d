//! Golden spool-volume vectors: one file per case in `tests/vectors/volume/`, one `#[test]` per
//! file.
//!
//! Each file names the link key, the expected outcome (`expect: ok` with the decoded header, the
//! outcome of every whole record, how many records are missing and how many bytes trail, and
//! the blake3 of the accepted data payloads in record order; or the exact `VolumeError`), and
//! the volume bytes in hex. Records are decoded exactly as the importer does: at
//! `record_offset(i)` for each of `whole_records_in(file length)` records, through
//! `wire::decode`. Also pins the worked example in docs/media.md to what the encoders write.

use sluice_testkit::{vector_tests, vectors};

use sluice_common::spool::{HEADER_LEN, MAX_FRAME_LEN, MAX_VOLUMES, VolumeError, VolumeHeader};
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::wire::{self, DataHeader, Frame, LinkKey};
use vectors::{VectorFile, b3};

const KIND: &str = "volume";

/// Bytes 00 01 … 1f, the key of docs/protocol.md's and docs/media.md's worked examples.
const KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

/// The object every vector's records carry: 20 bytes, one block, T = 8, so K = 3.
const OBJECT: &[u8; 20] = b"0123456789abcdefghij";
const T: u16 = 8;
const FRAME_LEN: u32 = 42 + T as u32 + 16;

const OUTCOME: &[&str] = &[
    "expect",
    "header",
    "records",
    "missing-records",
    "trailing-bytes",
    "payload-blake3",
];

fn params() -> ObjectParams {
    ObjectParams {
        object_id: std::array::from_fn(|i| 0xa0 + i as u8),
        object_len: OBJECT.len() as u64,
        block_size: OBJECT.len() as u32,
        symbol_size: T,
    }
}

/// Source symbol `esi` (zero-padded) of [`OBJECT`].
fn symbol(esi: u32) -> Vec<u8> {
    let mut s = vec![0u8; usize::from(T)];
    let start = (esi as usize * usize::from(T)).min(OBJECT.len());
    let end = (start + usize::from(T)).min(OBJECT.len());
    s[..end - start].copy_from_slice(&OBJECT[start..end]);
    s
}

/// The data frame of source symbol `esi`.
fn record(esi: u32) -> Vec<u8> {
    let header = DataHeader {
        params: params(),
        block: 0,
        esi,
    };
    let mut out = vec![0u8; wire::data_frame_len(T)];
    wire::encode_data(&LinkKey::from_bytes(KEY), &header, &symbol(esi), &mut out).expect("valid");
    out
}

fn header(volume_index: u16, volume_count: u16, frame_count: u64) -> VolumeHeader {
    VolumeHeader {
        volume_index,
        volume_count,
        object_id: params().object_id,
        object_len: OBJECT.len() as u64,
        frame_len: FRAME_LEN,
        frame_count,
    }
}

/// A volume file: `h` under [`KEY`], then the records of `esis`.
fn volume(h: &VolumeHeader, esis: &[u32]) -> Vec<u8> {
    let mut v = h.encode(&KEY).to_vec();
    for &esi in esis {
        v.extend_from_slice(&record(esi));
    }
    v
}

/// Give an edited header a valid tag again, by the derivation docs/media.md documents:
/// BLAKE3-keyed(derive_key("sluice 2026 spool volume header v1", link key), bytes 0..52)[..16].
fn retag(mut v: Vec<u8>) -> Vec<u8> {
    let key = blake3::derive_key("sluice 2026 spool volume header v1", &KEY);
    let tag = blake3::keyed_hash(&key, &v[..HEADER_LEN - 16]);
    v[HEADER_LEN - 16..HEADER_LEN].copy_from_slice(&tag.as_bytes()[..16]);
    v
}

fn header_line(h: &VolumeHeader) -> String {
    format!(
        "index={} count={} object_id={} object_len={} frame_len={} frame_count={}",
        h.volume_index,
        h.volume_count,
        hex::encode(h.object_id),
        h.object_len,
        h.frame_len,
        h.frame_count
    )
}

struct Vector {
    name: &'static str,
    comment: &'static str,
    key: [u8; 32],
    bytes: Vec<u8>,
    outcome: Vec<(String, String)>,
}

fn lines(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// An accepted volume: `records` is the hand-written outcome per whole record, `payload` the
/// symbols the accepted records carry, in order.
#[allow(clippy::too_many_arguments)] // one per outcome line, named at every call
fn ok(
    name: &'static str,
    comment: &'static str,
    h: VolumeHeader,
    bytes: Vec<u8>,
    records: &str,
    missing: u64,
    trailing: u64,
    payload: &[u32],
) -> Vector {
    let payload: Vec<u8> = payload.iter().flat_map(|&e| symbol(e)).collect();
    Vector {
        name,
        comment,
        key: KEY,
        bytes,
        outcome: lines(&[
            ("expect", "ok".into()),
            ("header", header_line(&h)),
            ("records", records.into()),
            ("missing-records", missing.to_string()),
            ("trailing-bytes", trailing.to_string()),
            ("payload-blake3", b3(&payload)),
        ]),
    }
}

fn refused(name: &'static str, comment: &'static str, bytes: Vec<u8>, why: VolumeError) -> Vector {
    Vector {
        name,
        comment,
        key: KEY,
        bytes,
        outcome: lines(&[("expect", format!("{why:?}"))]),
    }
}

/// An authentic header with one out-of-range field.
fn out_of_range(
    name: &'static str,
    comment: &'static str,
    h: VolumeHeader,
    field: &'static str,
) -> Vector {
    refused(
        name,
        comment,
        h.encode(&KEY).to_vec(),
        VolumeError::OutOfRange(field),
    )
}

fn generate() -> Vec<Vector> {
    let full = header(0, 1, 3);
    let valid = volume(&full, &[0, 1, 2]);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = valid.clone();
        f(&mut v);
        v
    };
    let record_at = |i: usize| HEADER_LEN + i * FRAME_LEN as usize;
    let mut vs = vec![
        ok(
            "valid",
            "one volume of one, the three source symbols of the object",
            full,
            valid.clone(),
            "ok ok ok",
            0,
            0,
            &[0, 1, 2],
        ),
        ok(
            "valid_second_of_three",
            "volume 2 of 3 (index 1) holding one record",
            header(1, 3, 1),
            volume(&header(1, 3, 1), &[1]),
            "ok",
            0,
            0,
            &[1],
        ),
        ok(
            "valid_no_records",
            "a volume that holds no frames",
            header(0, 2, 0),
            volume(&header(0, 2, 0), &[]),
            "none",
            0,
            0,
            &[],
        ),
        ok(
            "worked_example",
            "the worked example of docs/media.md",
            header(0, 1, 1),
            volume(&header(0, 1, 1), &[1]),
            "ok",
            0,
            0,
            &[1],
        ),
        // Damaged copies: the header holds, the damage costs only the records it touches.
        ok(
            "truncated_in_record",
            "the copy stops 10 bytes into the third record",
            full,
            valid[..record_at(2) + 10].to_vec(),
            "ok ok",
            1,
            0,
            &[0, 1],
        ),
        ok(
            "bad_record_tag",
            "one payload byte of the second record flipped: that record is an erasure",
            full,
            edit(&|v| v[record_at(1) + 45] ^= 0x20),
            "ok BadTag ok",
            0,
            0,
            &[0, 2],
        ),
        ok(
            "record_not_a_frame",
            "the third record overwritten with zeros",
            full,
            edit(&|v| v[record_at(2)..].fill(0)),
            "ok ok BadMagic",
            0,
            0,
            &[0, 1],
        ),
        ok(
            "record_other_link_key",
            "the first record tagged under the public default key",
            full,
            edit(&|v| {
                let mut other = vec![0u8; FRAME_LEN as usize];
                let header = DataHeader {
                    params: params(),
                    block: 0,
                    esi: 0,
                };
                wire::encode_data(&LinkKey::public_default(), &header, &symbol(0), &mut other)
                    .expect("valid");
                v[record_at(0)..record_at(1)].copy_from_slice(&other);
            }),
            "BadTag ok ok",
            0,
            0,
            &[1, 2],
        ),
        ok(
            "trailing_bytes",
            "five bytes after the last record, counted and ignored",
            full,
            edit(&|v| v.extend_from_slice(&[0xFF; 5])),
            "ok ok ok",
            0,
            5,
            &[0, 1, 2],
        ),
        // Header refusals.
        refused(
            "truncated_header_empty",
            "an empty file",
            vec![],
            VolumeError::TooShort,
        ),
        refused(
            "truncated_header",
            "67 of the 68 header bytes",
            valid[..HEADER_LEN - 1].to_vec(),
            VolumeError::TooShort,
        ),
        refused(
            "bad_magic",
            "SLUICEVX",
            edit(&|v| v[7] = b'X'),
            VolumeError::BadMagic,
        ),
        refused(
            "unknown_version",
            "version 2, checked before the tag",
            edit(&|v| v[8] = 2),
            VolumeError::UnknownVersion(2),
        ),
        refused(
            "bad_tag_field_flip",
            "one bit of the frame count flipped",
            edit(&|v| v[51] ^= 0x01),
            VolumeError::BadTag,
        ),
        refused(
            "bad_tag_tag_flip",
            "one bit of the tag flipped",
            edit(&|v| v[HEADER_LEN - 1] ^= 0x01),
            VolumeError::BadTag,
        ),
        Vector {
            key: [0x42; 32],
            ..refused(
                "bad_tag_wrong_key",
                "written under key 00..1f, read under key 42..42",
                valid.clone(),
                VolumeError::BadTag,
            )
        },
        refused(
            "reserved_byte_9",
            "reserved byte 9 set, validly tagged",
            retag(edit(&|v| v[9] = 1)),
            VolumeError::OutOfRange("reserved bytes are not zero"),
        ),
        refused(
            "reserved_bytes_14",
            "reserved bytes 14..16 set, validly tagged",
            retag(edit(&|v| v[15] = 1)),
            VolumeError::OutOfRange("reserved bytes are not zero"),
        ),
        out_of_range(
            "volume_count_zero",
            "volume count 0",
            header(0, 0, 3),
            "volume count",
        ),
        out_of_range(
            "volume_count_over_max",
            "volume count 257",
            header(0, MAX_VOLUMES + 1, 3),
            "volume count",
        ),
        out_of_range(
            "volume_index_past_count",
            "volume index 3 of count 3",
            header(3, 3, 3),
            "volume index",
        ),
        out_of_range(
            "frame_len_zero",
            "frame length 0",
            VolumeHeader {
                frame_len: 0,
                ..full
            },
            "frame length",
        ),
        out_of_range(
            "frame_len_over_max",
            "frame length 65508, one more than a UDP datagram",
            VolumeHeader {
                frame_len: MAX_FRAME_LEN + 1,
                ..full
            },
            "frame length",
        ),
        out_of_range(
            "frame_count_overflow",
            "frame count 2^64 - 1: the file length would overflow",
            header(0, 1, u64::MAX),
            "frame count",
        ),
    ];
    vs.sort_by_key(|v| v.name);
    vs
}

fn file_bytes(v: &Vector) -> Vec<u8> {
    vectors::hex_vector(v.comment, &v.key, &v.outcome, &v.bytes)
}

#[test]
fn committed_vectors_match_the_generator() {
    vectors::check_generated(KIND, generate().iter().map(|v| (v.name, file_bytes(v))));
}

/// Read one committed volume as the importer does and compare with its stated outcome.
fn run(name: &str) {
    let file = VectorFile::read(&vectors::dir(KIND).join(name));
    let key: [u8; 32] = vectors::unhex(file.get("key"))
        .try_into()
        .expect("32-byte key");
    let bytes = file.hex_body();
    let actual = match VolumeHeader::decode(&bytes, &key) {
        Err(e) => lines(&[("expect", format!("{e:?}"))]),
        Ok(h) => {
            let len = bytes.len() as u64;
            let whole = h.whole_records_in(len);
            let link = LinkKey::from_bytes(key);
            let mut records = Vec::new();
            let mut payload = Vec::new();
            for i in 0..whole {
                let at = h.record_offset(i).expect("in range") as usize;
                let rec = &bytes[at..at + h.frame_len as usize];
                match wire::decode(&link, rec) {
                    Ok(Frame::Data(d)) => {
                        payload.extend_from_slice(d.payload);
                        records.push("ok".to_string());
                    }
                    Ok(other) => records.push(format!("not data: kind {}", other.kind())),
                    Err(e) => records.push(format!("{e:?}")),
                }
            }
            let expected_len = h.expected_file_len().expect("checked by decode");
            lines(&[
                ("expect", "ok".into()),
                ("header", header_line(&h)),
                (
                    "records",
                    if records.is_empty() {
                        "none".into()
                    } else {
                        records.join(" ")
                    },
                ),
                ("missing-records", (h.frame_count - whole).to_string()),
                (
                    "trailing-bytes",
                    len.saturating_sub(expected_len).to_string(),
                ),
                ("payload-blake3", b3(&payload)),
            ])
        }
    };
    assert_eq!(actual, file.outcome(OUTCOME), "{name}");
}

vector_tests! { run, vectors::dir(KIND);
    bad_magic,
    bad_record_tag,
    bad_tag_field_flip,
    bad_tag_tag_flip,
    bad_tag_wrong_key,
    frame_count_overflow,
    frame_len_over_max,
    frame_len_zero,
    record_not_a_frame,
    record_other_link_key,
    reserved_byte_9,
    reserved_bytes_14,
    trailing_bytes,
    truncated_header,
    truncated_header_empty,
    truncated_in_record,
    unknown_version,
    valid,
    valid_no_records,
    valid_second_of_three,
    volume_count_over_max,
    volume_count_zero,
    volume_index_past_count,
    worked_example,
}

/// The hex dump in docs/media.md is exactly what the encoders write, under the key it names:
/// a volume header and its one record (the data frame of docs/protocol.md's worked example).
#[test]
fn media_md_worked_example_is_what_the_encoders_write() {
    let (doc_key, doc_lines) = vectors::doc_example("docs/media.md", "volume");
    assert_eq!(doc_key, KEY, "the documented link key");
    let doc_bytes: Vec<u8> = doc_lines.iter().flat_map(|l| l.bytes.clone()).collect();
    let want = volume(&header(0, 1, 1), &[1]);
    assert_eq!(
        hex::encode(&doc_bytes),
        hex::encode(&want),
        "docs/media.md worked example has drifted from the encoders"
    );
    // The record is byte for byte the frame of docs/protocol.md's worked example.
    let (_, frame_lines) = vectors::doc_example("docs/protocol.md", "data-frame");
    let frame: Vec<u8> = frame_lines.iter().flat_map(|l| l.bytes.clone()).collect();
    assert_eq!(&doc_bytes[HEADER_LEN..], &frame[..]);
}
