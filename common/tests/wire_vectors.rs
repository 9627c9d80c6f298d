//! Golden frame vectors: one file per case in `tests/vectors/frame/`, one `#[test]` per file.
//!
//! Each file names the link key, the expected outcome of `wire::decode` (`expect: ok` with the
//! decoded fields and the blake3 of a data frame's payload, or the exact `FrameError`), and the
//! frame bytes in hex. The expectations are written by [`generate`] from the values it encoded
//! (or by hand for refusals), never from the decoder, so a codec change that alters bytes or
//! outcomes shows up as a failing test and a reviewable diff. Also pins the worked example in
//! docs/protocol.md to what the encoder writes.

use sluice_testkit::{vector_tests, vectors};

use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::wire::{
    self, DataFrame, DataHeader, Frame, FrameError, Heartbeat, LedgerEntry, LinkKey, ObjectEnd,
    TAG_LEN,
};
use vectors::{VectorFile, b3};

const KIND: &str = "frame";

/// The link key of every vector except `data_public_default_key`: bytes 00 01 … 1f.
fn key() -> LinkKey {
    LinkKey::from_bytes(std::array::from_fn(|i| i as u8))
}

/// Header lines that state an outcome (everything else is input or comment).
const OUTCOME: &[&str] = &[
    "expect",
    "frame",
    "object",
    "symbol",
    "payload-blake3",
    "sender",
    "ledger-entries",
    "ledger",
    "pass",
];

fn params_line(p: &ObjectParams) -> String {
    format!(
        "id={} len={} block_size={} symbol_size={}",
        hex::encode(p.object_id),
        p.object_len,
        p.block_size,
        p.symbol_size
    )
}

/// What an accepted frame says, as header lines.
fn describe(frame: &Frame<'_>) -> Vec<(String, String)> {
    let mut out = vec![("expect".to_string(), "ok".to_string())];
    let mut line = |k: &str, v: String| out.push((k.to_string(), v));
    match frame {
        Frame::Data(d) => {
            line("frame", "data".into());
            line("object", params_line(&d.header.params));
            line(
                "symbol",
                format!("block={} esi={}", d.header.block, d.header.esi),
            );
            line("payload-blake3", b3(d.payload));
        }
        Frame::Heartbeat(h) => {
            line("frame", "heartbeat".into());
            line(
                "sender",
                format!(
                    "id={} sequence={} sent_at_unix_ms={}",
                    hex::encode(h.sender_id),
                    h.sequence,
                    h.sent_at_unix_ms
                ),
            );
            line("ledger-entries", h.ledger.len().to_string());
            for e in &h.ledger {
                line(
                    "ledger",
                    format!(
                        "id={} len={} first_sent_unix_ms={} pass={}/{}",
                        hex::encode(e.object_id),
                        e.object_len,
                        e.first_sent_unix_ms,
                        e.pass,
                        e.passes
                    ),
                );
            }
        }
        Frame::ObjectEnd(e) => {
            line("frame", "object_end".into());
            line("object", params_line(&e.params));
            line(
                "pass",
                format!(
                    "{}/{} frames_sent_this_pass={}",
                    e.pass, e.passes, e.frames_sent_this_pass
                ),
            );
        }
    }
    out
}

fn encode(key: &LinkKey, frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_append(key, frame, &mut out).expect("valid frame encodes");
    out
}

/// Edit an encoded frame and give it a valid tag again: what a sender holding the key could
/// send, so the refusal is the field check's, not the tag's.
fn reseal(mut bytes: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut bytes);
    let split = bytes.len() - TAG_LEN;
    let tag = key().tag(&bytes[..split]);
    bytes[split..].copy_from_slice(&tag);
    bytes
}

fn edit(mut bytes: Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    f(&mut bytes);
    bytes
}

fn params() -> ObjectParams {
    ObjectParams {
        object_id: [0x11; 16],
        object_len: 100,
        block_size: 48,
        symbol_size: 16,
    }
}

/// The object of docs/protocol.md's worked example.
const WORKED_OBJECT: &[u8; 20] = b"0123456789abcdefghij";

/// docs/protocol.md's worked example: source symbol 1 (object bytes 8..16) of the one-block,
/// 20-byte object above, symbol size 8.
fn worked_example() -> Vec<u8> {
    let header = DataHeader {
        params: ObjectParams {
            object_id: std::array::from_fn(|i| 0xa0 + i as u8),
            object_len: 20,
            block_size: 20,
            symbol_size: 8,
        },
        block: 0,
        esi: 1,
    };
    let mut out = vec![0u8; wire::data_frame_len(8)];
    wire::encode_data(&key(), &header, &WORKED_OBJECT[8..16], &mut out).expect("valid");
    out
}

struct Vector {
    name: &'static str,
    comment: String,
    key: LinkKey,
    bytes: Vec<u8>,
    /// The expectation, as header lines.
    outcome: Vec<(String, String)>,
}

fn ok(name: &'static str, comment: &str, frame: Frame<'_>) -> Vector {
    Vector {
        name,
        comment: comment.into(),
        key: key(),
        bytes: encode(&key(), &frame),
        outcome: describe(&frame),
    }
}

fn refused(name: &'static str, comment: &str, bytes: Vec<u8>, why: FrameError) -> Vector {
    Vector {
        name,
        comment: comment.into(),
        key: key(),
        bytes,
        outcome: vec![("expect".into(), format!("{why:?}"))],
    }
}

/// Every vector, deterministically.
fn generate() -> Vec<Vector> {
    let source: Vec<u8> = (0..16).collect();
    let repair = [0xEE; 16];
    fn data(block: u32, esi: u32, payload: &[u8]) -> Frame<'_> {
        Frame::Data(DataFrame {
            header: DataHeader {
                params: params(),
                block,
                esi,
            },
            payload,
        })
    }
    let entry = |i: u8| LedgerEntry {
        object_id: [i; 16],
        object_len: 1 << 30,
        first_sent_unix_ms: 1_794_999_000_000 + u64::from(i),
        pass: 1,
        passes: 3,
    };
    let heartbeat = |n: u8| {
        Frame::Heartbeat(Heartbeat {
            sender_id: [0x5E; 16],
            sequence: 77,
            sent_at_unix_ms: 1_795_000_000_000,
            ledger: (0..n).map(entry).collect(),
        })
    };
    let end = |pass, passes, object_len| {
        Frame::ObjectEnd(ObjectEnd {
            params: ObjectParams {
                object_len,
                ..params()
            },
            pass,
            passes,
            frames_sent_this_pass: 2_300,
        })
    };
    let d = encode(&key(), &data(1, 2, &source));
    let hb2 = encode(&key(), &heartbeat(2));
    let e = encode(&key(), &end(1, 2, 100));

    let mut vs = vec![
        // Accepted, one of each kind and the edges of each.
        ok(
            "data_source_symbol",
            "block 1 of 3, source symbol 2, 16-byte payload",
            data(1, 2, &source),
        ),
        ok(
            "data_repair_symbol",
            "last block (4 bytes, K = 1), repair symbol 5",
            data(2, 5, &repair),
        ),
        ok(
            "data_max_esi",
            "the largest ESI, 2^24 - 1",
            data(0, (1 << 24) - 1, &repair),
        ),
        ok(
            "heartbeat_empty_ledger",
            "a heartbeat before anything was sent",
            heartbeat(0),
        ),
        ok(
            "heartbeat_two_entries",
            "two objects in the ledger",
            heartbeat(2),
        ),
        ok(
            "heartbeat_full_ledger",
            "sixteen ledger entries, the most a heartbeat carries",
            heartbeat(16),
        ),
        ok("object_end", "end of pass 1 of 2", end(1, 2, 100)),
        ok(
            "object_end_empty_object",
            "an empty object has only end frames",
            end(1, 1, 0),
        ),
        {
            let frame = data(1, 2, &source);
            Vector {
                name: "data_public_default_key",
                comment: "the data_source_symbol frame under the public default link key".into(),
                key: LinkKey::public_default(),
                bytes: encode(&LinkKey::public_default(), &frame),
                outcome: describe(&frame),
            }
        },
        {
            let v = worked_example();
            let frame = wire::decode(&key(), &v).expect("worked example decodes");
            Vector {
                name: "worked_example",
                comment: "the worked example of docs/protocol.md".into(),
                key: key(),
                outcome: describe(&frame),
                bytes: v,
            }
        },
        // Prefix.
        refused("empty", "no bytes at all", vec![], FrameError::TooShort),
        refused(
            "prefix_only",
            "magic, version and kind, nothing else",
            d[..4].to_vec(),
            FrameError::TooShort,
        ),
        refused(
            "bad_magic",
            "\"SX\" instead of \"SL\"",
            edit(d.clone(), |b| b[1] = b'X'),
            FrameError::BadMagic,
        ),
        refused(
            "wrong_version",
            "version 2, from a newer sender: counted and dropped",
            edit(d.clone(), |b| b[2] = 2),
            FrameError::UnknownVersion(2),
        ),
        refused(
            "version_zero",
            "version 0",
            edit(d.clone(), |b| b[2] = 0),
            FrameError::UnknownVersion(0),
        ),
        refused(
            "unknown_kind",
            "kind 4, from a newer sender: counted and dropped",
            edit(e.clone(), |b| b[3] = 4),
            FrameError::UnknownKind(4),
        ),
        refused(
            "kind_zero",
            "kind 0",
            edit(e.clone(), |b| b[3] = 0),
            FrameError::UnknownKind(0),
        ),
        // Length for the kind, before the tag.
        refused(
            "data_truncated_in_header",
            "a data frame cut at byte 30, shorter than any data frame",
            d[..30].to_vec(),
            FrameError::TooShort,
        ),
        refused(
            "data_truncated_in_tag",
            "a data frame missing its last byte: still long enough, so the tag decides",
            d[..d.len() - 1].to_vec(),
            FrameError::BadTag,
        ),
        refused(
            "heartbeat_truncated",
            "a heartbeat missing its last byte: not 53 + 36n bytes",
            hb2[..hb2.len() - 1].to_vec(),
            FrameError::BadLength,
        ),
        refused(
            "object_end_truncated",
            "61 of the 62 bytes of an object end",
            e[..e.len() - 1].to_vec(),
            FrameError::TooShort,
        ),
        refused(
            "object_end_trailing_byte",
            "an object end with one byte appended",
            edit(e.clone(), |b| b.push(0)),
            FrameError::BadLength,
        ),
        {
            let mut v = encode(&key(), &heartbeat(16));
            v.splice(37..37, [0u8; 36]);
            let v = reseal(v, |b| b[36] = 17);
            refused(
                "heartbeat_overlong_ledger",
                "seventeen ledger entries (count 17), validly tagged: refused on length alone",
                v,
                FrameError::BadLength,
            )
        },
        // Tag.
        refused(
            "bad_tag_payload_flip",
            "one payload bit flipped",
            edit(d.clone(), |b| b[50] ^= 0x01),
            FrameError::BadTag,
        ),
        refused(
            "bad_tag_header_flip",
            "one object_len bit flipped",
            edit(d.clone(), |b| b[27] ^= 0x80),
            FrameError::BadTag,
        ),
        refused(
            "bad_tag_tag_flip",
            "one tag bit flipped",
            edit(d.clone(), |b| *b.last_mut().expect("tag") ^= 0x01),
            FrameError::BadTag,
        ),
        Vector {
            key: LinkKey::public_default(),
            ..refused(
                "bad_tag_wrong_key",
                "data_source_symbol, made with key 00..1f, checked under the public default key",
                d.clone(),
                FrameError::BadTag,
            )
        },
        // Fields, validly tagged (a sender holding the key).
        refused(
            "data_symbol_size_overlong",
            "symbol_size 17 with a 16-byte payload",
            reseal(d.clone(), |b| {
                b[32..34].copy_from_slice(&17u16.to_be_bytes())
            }),
            FrameError::BadLength,
        ),
        refused(
            "data_symbol_size_short",
            "symbol_size 15 with a 16-byte payload",
            reseal(d.clone(), |b| {
                b[32..34].copy_from_slice(&15u16.to_be_bytes())
            }),
            FrameError::BadLength,
        ),
        refused(
            "heartbeat_count_overstates",
            "ledger_count 3 with two entries",
            reseal(hb2.clone(), |b| b[36] = 3),
            FrameError::BadLength,
        ),
        refused(
            "heartbeat_count_understates",
            "ledger_count 1 with two entries",
            reseal(hb2.clone(), |b| b[36] = 1),
            FrameError::BadLength,
        ),
        refused(
            "data_esi_out_of_range",
            "ESI 2^24, outside RaptorQ's 24-bit space",
            reseal(d.clone(), |b| {
                b[38..42].copy_from_slice(&(1u32 << 24).to_be_bytes())
            }),
            FrameError::EsiOutOfRange(1 << 24),
        ),
        refused(
            "data_block_past_last",
            "block 3 of a 3-block object",
            reseal(d.clone(), |b| {
                b[34..38].copy_from_slice(&3u32.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        refused(
            "data_zero_block_size",
            "block_size 0",
            reseal(d.clone(), |b| {
                b[28..32].copy_from_slice(&0u32.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        refused(
            "data_empty_object",
            "object_len 0: an empty object has no data frames",
            reseal(d.clone(), |b| {
                b[20..28].copy_from_slice(&0u64.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        refused(
            "object_end_pass_zero",
            "pass 0 (passes are 1-based)",
            reseal(e.clone(), |b| {
                b[34..36].copy_from_slice(&0u16.to_be_bytes())
            }),
            FrameError::BadPass,
        ),
        refused(
            "object_end_pass_over",
            "pass 3 of 2",
            reseal(e.clone(), |b| {
                b[34..36].copy_from_slice(&3u16.to_be_bytes())
            }),
            FrameError::BadPass,
        ),
        refused(
            "object_end_zero_symbol_size",
            "symbol_size 0",
            reseal(e.clone(), |b| {
                b[32..34].copy_from_slice(&0u16.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
    ];
    vs.sort_by_key(|v| v.name);
    vs
}

fn file_bytes(v: &Vector) -> Vec<u8> {
    vectors::hex_vector(&v.comment, v.key.as_bytes(), &v.outcome, &v.bytes)
}

#[test]
fn committed_vectors_match_the_generator() {
    vectors::check_generated(KIND, generate().iter().map(|v| (v.name, file_bytes(v))));
}

/// Decode one committed vector and compare with its stated outcome; an accepted frame must
/// also re-encode to exactly its bytes.
fn run(name: &str) {
    let file = VectorFile::read(&vectors::dir(KIND).join(name));
    let key = LinkKey::from_bytes(
        vectors::unhex(file.get("key"))
            .try_into()
            .expect("32-byte key"),
    );
    let bytes = file.hex_body();
    let actual = match wire::decode(&key, &bytes) {
        Ok(frame) => {
            assert_eq!(encode(&key, &frame), bytes, "re-encodes byte for byte");
            describe(&frame)
        }
        Err(e) => vec![("expect".to_string(), format!("{e:?}"))],
    };
    assert_eq!(actual, file.outcome(OUTCOME), "{name}");
}

vector_tests! { run, vectors::dir(KIND);
    bad_magic,
    bad_tag_header_flip,
    bad_tag_payload_flip,
    bad_tag_tag_flip,
    bad_tag_wrong_key,
    data_block_past_last,
    data_empty_object,
    data_esi_out_of_range,
    data_max_esi,
    data_public_default_key,
    data_repair_symbol,
    data_source_symbol,
    data_symbol_size_overlong,
    data_symbol_size_short,
    data_truncated_in_header,
    data_truncated_in_tag,
    data_zero_block_size,
    empty,
    heartbeat_count_overstates,
    heartbeat_count_understates,
    heartbeat_empty_ledger,
    heartbeat_full_ledger,
    heartbeat_overlong_ledger,
    heartbeat_truncated,
    heartbeat_two_entries,
    kind_zero,
    object_end,
    object_end_empty_object,
    object_end_pass_over,
    object_end_pass_zero,
    object_end_trailing_byte,
    object_end_truncated,
    object_end_zero_symbol_size,
    prefix_only,
    unknown_kind,
    version_zero,
    worked_example,
    wrong_version,
}

/// The hex dump in docs/protocol.md is exactly what the encoder writes, under the key it names.
#[test]
fn protocol_md_worked_example_is_what_the_encoder_writes() {
    let (doc_key, lines) = vectors::doc_example("docs/protocol.md", "data-frame");
    assert_eq!(&doc_key[..], key().as_bytes(), "the documented link key");
    let doc_bytes: Vec<u8> = lines.iter().flat_map(|l| l.bytes.clone()).collect();
    let frame = worked_example();
    assert_eq!(
        hex::encode(&doc_bytes),
        hex::encode(&frame),
        "docs/protocol.md worked example has drifted from the encoder; paste:\n{}",
        annotate(&frame)
    );
    // The payload line is the object slice the text says it is.
    assert!(lines.iter().any(|l| l.bytes == WORKED_OBJECT[8..16]));
}

/// A starting point for the doc when the format changes: offsets and hex, descriptions to fill.
fn annotate(frame: &[u8]) -> String {
    let fields = [2, 1, 1, 16, 8, 4, 2, 4, 4, 8, 16];
    let mut at = 0;
    let mut out = String::new();
    for n in fields {
        let hex: Vec<String> = frame[at..at + n]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push_str(&format!("{at:<4}{:<49}| \n", hex.join(" ")));
        at += n;
    }
    out
}
