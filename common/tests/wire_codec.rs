//! The frame codec: exact layouts, canonical round trips both ways, and refusal of every
//! truncation, bit flip, forgery and malformed field, without panicking.

use proptest::prelude::*;
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::wire::{
    self, DATA_HEADER_LEN, DataFrame, DataHeader, Frame, FrameError, Heartbeat, LedgerEntry,
    LinkKey, MAX_FRAME_LEN, OBJECT_END_LEN, ObjectEnd, TAG_LEN,
};

fn key() -> LinkKey {
    LinkKey::from_bytes([0x42; 32])
}

fn encode_vec(key: &LinkKey, frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_append(key, frame, &mut out).expect("valid frame encodes");
    out
}

fn sample_params() -> ObjectParams {
    ObjectParams {
        object_id: [1; 16],
        object_len: 3_000_000,
        block_size: 1_049_188,
        symbol_size: 1414,
    }
}

fn sample_data(payload: &[u8]) -> Frame<'_> {
    let mut params = sample_params();
    params.symbol_size = u16::try_from(payload.len()).expect("small");
    Frame::Data(DataFrame {
        header: DataHeader {
            params,
            block: 2,
            esi: 800,
        },
        payload,
    })
}

fn sample_heartbeat(entries: usize) -> Frame<'static> {
    Frame::Heartbeat(Heartbeat {
        sender_id: [9; 16],
        sequence: 77,
        sent_at_unix_ms: 1_795_000_000_000,
        ledger: (0..entries)
            .map(|i| LedgerEntry {
                object_id: [i as u8; 16],
                object_len: 1 << 30,
                first_sent_unix_ms: 1_794_999_000_000,
                pass: 1,
                passes: 3,
            })
            .collect(),
    })
}

fn sample_end() -> Frame<'static> {
    Frame::ObjectEnd(ObjectEnd {
        params: sample_params(),
        pass: 2,
        passes: 3,
        frames_sent_this_pass: 2_300,
    })
}

#[test]
fn data_frame_layout_matches_protocol_md() {
    let payload = [0xAB; 100];
    let bytes = encode_vec(&key(), &sample_data(&payload));
    assert_eq!(bytes.len(), 42 + 100 + 16);
    assert_eq!(bytes.len(), wire::data_frame_len(100));
    assert_eq!(&bytes[0..4], &[0x53, 0x4C, 1, 1]);
    assert_eq!(&bytes[4..20], &[1; 16]);
    assert_eq!(&bytes[20..28], &3_000_000u64.to_be_bytes());
    assert_eq!(&bytes[28..32], &1_049_188u32.to_be_bytes());
    assert_eq!(&bytes[32..34], &100u16.to_be_bytes());
    assert_eq!(&bytes[34..38], &2u32.to_be_bytes());
    assert_eq!(&bytes[38..42], &800u32.to_be_bytes());
    assert_eq!(&bytes[42..142], &payload);
    let tag = blake3::keyed_hash(&[0x42; 32], &bytes[..142]);
    assert_eq!(&bytes[142..], &tag.as_bytes()[..16]);
}

#[test]
fn heartbeat_and_object_end_layouts_match_protocol_md() {
    let hb = encode_vec(&key(), &sample_heartbeat(2));
    assert_eq!(hb.len(), 37 + 2 * 36 + 16);
    assert_eq!(&hb[0..4], &[0x53, 0x4C, 1, 2]);
    assert_eq!(&hb[20..28], &77u64.to_be_bytes());
    assert_eq!(hb[36], 2);
    assert_eq!(&hb[37..53], &[0; 16]);
    assert_eq!(&hb[73..89], &[1; 16]);
    assert_eq!(&hb[105..107], &1u16.to_be_bytes());
    assert_eq!(&hb[107..109], &3u16.to_be_bytes());

    let end = encode_vec(&key(), &sample_end());
    assert_eq!(end.len(), OBJECT_END_LEN);
    assert_eq!(end.len(), 62);
    assert_eq!(&end[0..4], &[0x53, 0x4C, 1, 3]);
    assert_eq!(&end[34..36], &2u16.to_be_bytes());
    assert_eq!(&end[36..38], &3u16.to_be_bytes());
    assert_eq!(&end[38..46], &2_300u64.to_be_bytes());
}

#[test]
fn symbol_size_for_datagram_leaves_room_for_header_and_tag() {
    assert_eq!(wire::symbol_size_for_datagram(1472), 1414);
    assert_eq!(wire::symbol_size_for_datagram(8972), 8914);
    assert_eq!(wire::symbol_size_for_datagram(58), 0);
    assert_eq!(wire::symbol_size_for_datagram(0), 0);
    assert_eq!(wire::symbol_size_for_datagram(usize::MAX), u16::MAX);
    assert_eq!(wire::data_frame_len(1414), 1472);
}

#[test]
fn default_link_key_is_the_documented_derivation() {
    let expected = blake3::derive_key("sluice 2026 default link key v1", b"");
    assert_eq!(LinkKey::public_default().as_bytes(), &expected);
    assert!(LinkKey::default().is_public_default());
    assert!(!key().is_public_default());
    assert_eq!(format!("{:?}", key()), "LinkKey(configured, redacted)");
}

#[test]
fn seal_in_place_equals_encode_data() {
    let payload: Vec<u8> = (0..=255).cycle().take(1414).collect();
    let Frame::Data(d) = sample_data(&payload) else {
        unreachable!()
    };
    let mut direct = vec![0u8; wire::data_frame_len(1414)];
    wire::encode_data(&key(), &d.header, &payload, &mut direct).expect("valid");
    let mut in_place = vec![0u8; wire::data_frame_len(1414)];
    in_place[DATA_HEADER_LEN..DATA_HEADER_LEN + 1414].copy_from_slice(&payload);
    wire::seal_data_in_place(&key(), &d.header, &mut in_place).expect("valid");
    assert_eq!(direct, in_place);
    assert_eq!(
        wire::seal_data_in_place(&key(), &d.header, &mut in_place[1..]),
        Err(FrameError::BufferTooSmall)
    );
}

#[test]
fn encoders_refuse_what_decode_would_refuse() {
    let mut out = vec![0u8; MAX_FRAME_LEN];
    let payload = [0u8; 10];
    let Frame::Data(mut d) = sample_data(&payload) else {
        unreachable!()
    };
    d.header.esi = 1 << 24;
    assert_eq!(
        wire::encode(&key(), &Frame::Data(d), &mut out),
        Err(FrameError::EsiOutOfRange(1 << 24))
    );
    d.header.esi = 0;
    d.header.block = 3;
    assert_eq!(
        wire::encode(&key(), &Frame::Data(d), &mut out),
        Err(FrameError::BadGeometry)
    );
    assert_eq!(
        wire::encode_data(&key(), &d.header, &payload[..9], &mut out),
        Err(FrameError::BadLength)
    );
    d.header.block = 0;
    assert_eq!(
        wire::encode(&key(), &Frame::Data(d), &mut out[..20]),
        Err(FrameError::BufferTooSmall)
    );
    assert_eq!(
        wire::encode(&key(), &sample_heartbeat(17), &mut out),
        Err(FrameError::TooManyLedgerEntries)
    );
    let Frame::ObjectEnd(mut e) = sample_end() else {
        unreachable!()
    };
    e.pass = 4;
    assert_eq!(
        wire::encode(&key(), &Frame::ObjectEnd(e), &mut out),
        Err(FrameError::BadPass)
    );
    e.pass = 0;
    assert_eq!(
        wire::encode(&key(), &Frame::ObjectEnd(e), &mut out),
        Err(FrameError::BadPass)
    );
    let mut v = vec![1, 2, 3];
    assert!(wire::encode_append(&key(), &Frame::ObjectEnd(e), &mut v).is_err());
    assert_eq!(v, [1, 2, 3], "a refused append leaves the buffer as it was");
}

#[test]
fn prefix_errors_are_precise() {
    let good = encode_vec(&key(), &sample_end());
    assert_eq!(wire::decode(&key(), &[]), Err(FrameError::TooShort));
    assert_eq!(wire::decode(&key(), b"SL\x01"), Err(FrameError::TooShort));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(wire::decode(&key(), &bad), Err(FrameError::BadMagic));
    let mut bad = good.clone();
    bad[2] = 2;
    assert_eq!(
        wire::decode(&key(), &bad),
        Err(FrameError::UnknownVersion(2))
    );
    let mut bad = good.clone();
    bad[3] = 9;
    assert_eq!(wire::decode(&key(), &bad), Err(FrameError::UnknownKind(9)));
    let mut long = good.clone();
    long.push(0);
    assert_eq!(wire::decode(&key(), &long), Err(FrameError::BadLength));
}

/// A frame with a valid tag whose fields are inconsistent: built by editing an encoded frame
/// and resealing, as a sender holding the key could.
fn reseal(mut bytes: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    edit(&mut bytes);
    let split = bytes.len() - TAG_LEN;
    let tag = key().tag(&bytes[..split]);
    bytes[split..].copy_from_slice(&tag);
    bytes
}

#[test]
fn tag_valid_frames_with_bad_fields_are_refused() {
    let payload = [5u8; 64];
    let data = encode_vec(&key(), &sample_data(&payload));
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        // symbol_size disagrees with the payload length
        (
            reseal(data.clone(), |b| {
                b[32..34].copy_from_slice(&63u16.to_be_bytes())
            }),
            FrameError::BadLength,
        ),
        // ESI beyond 24 bits
        (
            reseal(data.clone(), |b| {
                b[38..42].copy_from_slice(&(1u32 << 24).to_be_bytes())
            }),
            FrameError::EsiOutOfRange(1 << 24),
        ),
        // block beyond the last block (3 MB / 1 MiB blocks = 3 blocks)
        (
            reseal(data.clone(), |b| {
                b[34..38].copy_from_slice(&3u32.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        // zero block size
        (
            reseal(data.clone(), |b| {
                b[28..32].copy_from_slice(&0u32.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        // empty object cannot have data frames
        (
            reseal(data.clone(), |b| {
                b[20..28].copy_from_slice(&0u64.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
        // heartbeat count disagrees with its length
        (
            reseal(encode_vec(&key(), &sample_heartbeat(2)), |b| b[36] = 3),
            FrameError::BadLength,
        ),
        // object end with pass > passes, pass 0, zero symbol size
        (
            reseal(encode_vec(&key(), &sample_end()), |b| {
                b[34..36].copy_from_slice(&4u16.to_be_bytes())
            }),
            FrameError::BadPass,
        ),
        (
            reseal(encode_vec(&key(), &sample_end()), |b| {
                b[34..36].copy_from_slice(&0u16.to_be_bytes())
            }),
            FrameError::BadPass,
        ),
        (
            reseal(encode_vec(&key(), &sample_end()), |b| {
                b[32..34].copy_from_slice(&0u16.to_be_bytes())
            }),
            FrameError::BadGeometry,
        ),
    ];
    for (i, (bytes, expected)) in cases.into_iter().enumerate() {
        assert_eq!(wire::decode(&key(), &bytes), Err(expected), "case {i}");
    }
    // Heartbeats of impossible lengths are refused before the tag is even computed.
    let hb = encode_vec(&key(), &sample_heartbeat(16));
    assert!(wire::decode(&key(), &hb).is_ok());
    let mut seventeen = hb.clone();
    seventeen.splice(37..37, [0u8; 36]);
    assert_eq!(wire::decode(&key(), &seventeen), Err(FrameError::BadLength));
}

#[test]
fn empty_object_end_frame_is_valid() {
    let frame = Frame::ObjectEnd(ObjectEnd {
        params: ObjectParams {
            object_len: 0,
            ..sample_params()
        },
        pass: 1,
        passes: 1,
        frames_sent_this_pass: 0,
    });
    let bytes = encode_vec(&key(), &frame);
    assert_eq!(wire::decode(&key(), &bytes), Ok(frame));
}

fn arb_params() -> impl Strategy<Value = ObjectParams> {
    (any::<[u8; 16]>(), 1u64.., 1u32.., 1u16..=2048).prop_map(
        |(object_id, object_len, block_size, symbol_size)| ObjectParams {
            object_id,
            object_len,
            block_size,
            symbol_size,
        },
    )
}

/// A data frame's header plus a payload of the right length.
fn arb_data() -> impl Strategy<Value = (DataHeader, Vec<u8>)> {
    arb_params().prop_flat_map(|params| {
        let blocks = u32::try_from(params.block_count()).unwrap_or(u32::MAX);
        (
            0..blocks.max(1),
            0u32..1 << 24,
            proptest::collection::vec(any::<u8>(), usize::from(params.symbol_size)),
        )
            .prop_map(move |(block, esi, payload)| (DataHeader { params, block, esi }, payload))
    })
}

fn arb_heartbeat() -> impl Strategy<Value = Heartbeat> {
    let entry = (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(object_id, object_len, first_sent_unix_ms, pass, passes)| LedgerEntry {
                object_id,
                object_len,
                first_sent_unix_ms,
                pass,
                passes,
            },
        );
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(entry, 0..=16),
    )
        .prop_map(|(sender_id, sequence, sent_at_unix_ms, ledger)| Heartbeat {
            sender_id,
            sequence,
            sent_at_unix_ms,
            ledger,
        })
}

fn arb_end() -> impl Strategy<Value = ObjectEnd> {
    (arb_params(), 0u64.., 1u16.., any::<u64>()).prop_flat_map(|(p, len, passes, frames)| {
        (1..=passes).prop_map(move |pass| ObjectEnd {
            params: ObjectParams {
                object_len: len,
                ..p
            },
            pass,
            passes,
            frames_sent_this_pass: frames,
        })
    })
}

/// `frame`'s encoding is `encoded_len` bytes, decodes back to `frame` and encodes again to the
/// same bytes.
fn round_trip(frame: &Frame<'_>) -> Result<(), TestCaseError> {
    let bytes = encode_vec(&key(), frame);
    prop_assert_eq!(bytes.len(), frame.encoded_len());
    let decoded = wire::decode(&key(), &bytes).expect("own encoding decodes");
    prop_assert_eq!(&decoded, frame);
    prop_assert_eq!(encode_vec(&key(), &decoded), bytes);
    Ok(())
}

fn arb_frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_data().prop_map(|(header, payload)| encode_vec(
            &key(),
            &Frame::Data(DataFrame {
                header,
                payload: &payload
            })
        )),
        arb_heartbeat().prop_map(|h| encode_vec(&key(), &Frame::Heartbeat(h))),
        arb_end().prop_map(|e| encode_vec(&key(), &Frame::ObjectEnd(e))),
    ]
}

proptest! {
    #[test]
    fn data_frames_round_trip((header, payload) in arb_data()) {
        round_trip(&Frame::Data(DataFrame { header, payload: &payload }))?;
    }

    #[test]
    fn heartbeats_round_trip(h in arb_heartbeat()) {
        round_trip(&Frame::Heartbeat(h))?;
    }

    #[test]
    fn object_ends_round_trip(e in arb_end()) {
        round_trip(&Frame::ObjectEnd(e))?;
    }

    #[test]
    fn every_truncation_is_refused(bytes in arb_frame_bytes()) {
        for len in 0..bytes.len() {
            prop_assert!(wire::decode(&key(), &bytes[..len]).is_err(), "prefix of {} bytes", len);
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused(bytes in arb_frame_bytes(), bit in any::<prop::sample::Index>()) {
        let mut flipped = bytes.clone();
        let i = bit.index(bytes.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        prop_assert!(wire::decode(&key(), &flipped).is_err());
    }

    #[test]
    fn frames_under_another_key_are_bad_tag(bytes in arb_frame_bytes(), other in any::<[u8; 32]>()) {
        prop_assume!(other != *key().as_bytes());
        prop_assert_eq!(wire::decode(&LinkKey::from_bytes(other), &bytes), Err(FrameError::BadTag));
        prop_assert_eq!(wire::decode(&LinkKey::public_default(), &bytes), Err(FrameError::BadTag));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_reencode(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(frame) = wire::decode(&key(), &bytes) {
            prop_assert_eq!(encode_vec(&key(), &frame), bytes);
        }
    }

    #[test]
    fn arbitrary_bodies_with_valid_prefix_and_tag_never_panic(kind in 1u8..=3, body in proptest::collection::vec(any::<u8>(), 0..700)) {
        // Past the tag check: the structural checks must hold up against any field values.
        let mut bytes = vec![b'S', b'L', 1, kind];
        bytes.extend_from_slice(&body);
        let tag = key().tag(&bytes);
        bytes.extend_from_slice(&tag);
        if let Ok(frame) = wire::decode(&key(), &bytes) {
            prop_assert_eq!(encode_vec(&key(), &frame), bytes);
        }
    }
}
