//! Replays every fuzz corpus and regression input under stable `cargo test`, through the same
//! entry functions the cargo-fuzz targets call (fuzz/entries.rs, included verbatim so the fuzz
//! checks stay out of sluice-common's public API). CI therefore exercises the fuzz properties
//! without nightly; long fuzz runs stay optional.
//!
//! `cargo test -p sluice-common --test fuzz_corpus -- --ignored write_seed_corpora` rewrites the
//! seed files from the encoder (valid frames of each kind plus malformed variants).

mod entries {
    include!("../../fuzz/entries.rs");
}
mod entries_recv {
    include!("../../fuzz/entries_recv.rs");
}

use std::path::{Path, PathBuf};

use sluice_common::transport::fec::BlockEncoder;
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::wire::{
    self, DataFrame, DataHeader, Frame, Heartbeat, LedgerEntry, ObjectEnd,
};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).expect("corpus file readable");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    for (path, bytes) in &inputs {
        let result = std::panic::catch_unwind(|| entry(bytes));
        assert!(result.is_ok(), "{target} panicked on {}", path.display());
    }
    inputs.len()
}

#[test]
fn frame_decode_corpus_replays() {
    let n = replay("frame_decode", entries::frame_decode);
    assert!(n >= 8, "seed corpus present ({n} files)");
}

#[test]
fn block_assemble_corpus_replays() {
    let n = replay("block_assemble", entries::block_assemble);
    assert!(n >= 3, "seed corpus present ({n} files)");
}

#[test]
fn handle_datagram_corpus_replays() {
    let n = replay("handle_datagram", entries_recv::handle_datagram);
    assert!(n >= 3, "seed corpus present ({n} files)");
}

#[test]
fn valid_handle_datagram_seeds_complete_their_object() {
    // Ties the seeds to reality: frames built by the codec and FEC encoder transfer through the
    // Receiver whole (source only, repair only, lossy with time passing), and one flipped byte
    // per frame transfers nothing.
    let dir = fuzz_dir().join("corpus/handle_datagram");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("seed present");
    for name in ["all_source", "repair_only", "lossy_with_time"] {
        assert_eq!(entries_recv::replay_datagrams(&read(name)), 1, "{name}");
    }
    assert_eq!(entries_recv::replay_datagrams(&read("corrupted")), 0);
}

/// One `handle_datagram` record: flags, big-endian length, bytes.
fn datagram_record(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![flags];
    r.extend_from_slice(
        &u16::try_from(bytes.len())
            .expect("small frame")
            .to_be_bytes(),
    );
    r.extend_from_slice(bytes);
    r
}

/// Every frame of a small three-block object: `esis(k)` picks the ESIs sent per block.
fn object_frames(esis: impl Fn(u32) -> Vec<u32>) -> Vec<Vec<u8>> {
    let key = entries::fuzz_key();
    let params = sample_params();
    let data: Vec<u8> = (0..params.object_len).map(|i| (i * 7) as u8).collect();
    let mut frames = Vec::new();
    for block in 0..3u32 {
        let offset = usize::try_from(params.block_offset(u64::from(block)).expect("in range"))
            .expect("small");
        let len = params.block_len(u64::from(block)).expect("in range") as usize;
        let enc = BlockEncoder::new(&params, block, &data[offset..offset + len]).expect("valid");
        let mut payload = vec![0u8; usize::from(params.symbol_size)];
        for esi in esis(enc.source_symbol_count()) {
            enc.write_symbol(esi, &mut payload).expect("valid esi");
            let header = DataHeader { params, block, esi };
            let mut frame = vec![0u8; wire::data_frame_len(params.symbol_size)];
            wire::encode_data(&key, &header, &payload, &mut frame).expect("valid");
            frames.push(frame);
        }
    }
    let mut end = Vec::new();
    let end_frame = Frame::ObjectEnd(ObjectEnd {
        params,
        pass: 1,
        passes: 1,
        frames_sent_this_pass: frames.len() as u64,
    });
    wire::encode_append(&key, &end_frame, &mut end).expect("valid");
    frames.push(end);
    frames
}

fn sample_params() -> ObjectParams {
    ObjectParams {
        object_id: [3; 16],
        object_len: 10_000,
        block_size: 4_000,
        symbol_size: 100,
    }
}

fn seed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let key = entries::fuzz_key();
    let encode = |frame: &Frame<'_>| {
        let mut out = Vec::new();
        wire::encode_append(&key, frame, &mut out).expect("valid seed frame");
        out
    };
    let payload = [0xC3; 100];
    let data = encode(&Frame::Data(DataFrame {
        header: DataHeader {
            params: sample_params(),
            block: 2,
            esi: 41,
        },
        payload: &payload,
    }));
    let heartbeat = encode(&Frame::Heartbeat(Heartbeat {
        sender_id: [8; 16],
        sequence: 12,
        sent_at_unix_ms: 1_795_000_000_000,
        ledger: vec![
            LedgerEntry {
                object_id: [3; 16],
                object_len: 10_000,
                first_sent_unix_ms: 1_794_000_000_000,
                pass: 1,
                passes: 2,
            };
            3
        ],
    }));
    let end = encode(&Frame::ObjectEnd(ObjectEnd {
        params: sample_params(),
        pass: 1,
        passes: 2,
        frames_sent_this_pass: 123,
    }));
    let mut flipped = data.clone();
    flipped[50] ^= 4;
    let mut unknown_kind = end.clone();
    unknown_kind[3] = 7;
    let body_only = |frame: &[u8]| frame[..frame.len() - wire::TAG_LEN].to_vec();
    vec![
        ("data", data.clone()),
        ("heartbeat", heartbeat.clone()),
        ("object_end", end.clone()),
        ("data_bit_flip", flipped),
        ("data_truncated", data[..60].to_vec()),
        ("unknown_kind", unknown_kind),
        ("prefix_only", b"SL\x01\x01".to_vec()),
        ("empty", Vec::new()),
        // Odd mode byte: the entry appends a valid tag, so these reach the field checks.
        ("resealed_data", body_only(&data)),
        ("resealed_heartbeat", body_only(&heartbeat)),
        ("resealed_end", body_only(&end)),
    ]
}

#[test]
#[ignore = "writes the seed corpora; run by hand after a format change"]
fn write_seed_corpora() {
    let dir = fuzz_dir().join("corpus/frame_decode");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    for (name, frame) in seed_frames() {
        let mode = if name.starts_with("resealed") { 1u8 } else { 0 };
        let mut bytes = vec![mode];
        bytes.extend_from_slice(&frame);
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
    let dir = fuzz_dir().join("corpus/block_assemble");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    // symbol_size, block_len, then (esi u24, payload) records.
    let record = |esi: u32, t: usize, fill: u8| {
        let mut r = esi.to_be_bytes()[1..].to_vec();
        r.extend(std::iter::repeat_n(fill, t));
        r
    };
    let mut source = vec![16u8, 0, 50];
    for esi in 0..4 {
        source.extend(record(esi, 16, esi as u8));
    }
    let mut repair = vec![16u8, 0, 50];
    for esi in 4..12 {
        repair.extend(record(esi, 16, esi as u8));
    }
    let mut extreme = vec![1u8, 0, 40];
    for esi in (0xFF_FF00..0xFF_FFFF).step_by(3) {
        extreme.extend(record(esi, 1, 0xEE));
    }
    for (name, bytes) in [
        ("all_source", source),
        ("repair_only", repair),
        ("extreme_esi", extreme),
    ] {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }

    let dir = fuzz_dir().join("corpus/handle_datagram");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let join = |frames: Vec<Vec<u8>>, flags: u8| -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| datagram_record(flags, f))
            .collect()
    };
    let all_source = join(object_frames(|k| (0..k).collect()), 0);
    let repair_only = join(object_frames(|k| (k..2 * k + 4).collect()), 0);
    // Every other source symbol plus repair, with time passing between frames.
    let lossy = join(
        object_frames(|k| (0..k).step_by(2).chain(k..k + k / 2 + 4).collect()),
        0x22,
    );
    let mut corrupted = object_frames(|k| (0..k).collect());
    for (i, f) in corrupted.iter_mut().enumerate() {
        let n = f.len();
        f[i % n] ^= 0x10;
    }
    let corrupted = join(corrupted, 0);
    let mixed: Vec<u8> = seed_frames()
        .iter()
        .flat_map(|(name, f)| datagram_record(u8::from(name.starts_with("resealed")), f))
        .collect();
    for (name, bytes) in [
        ("all_source", all_source),
        ("repair_only", repair_only),
        ("lossy_with_time", lossy),
        ("corrupted", corrupted),
        ("mixed_kinds", mixed),
    ] {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
