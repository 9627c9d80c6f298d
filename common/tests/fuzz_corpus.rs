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

// ---- Hostile-input targets (fuzz/hostile_entries.rs): bundle header/verifier, path policy,
// spool volume headers, and the receiver state machine over datagram sequences.

mod hostile_entries {
    include!("../../fuzz/hostile_entries.rs");
}

#[test]
fn bundle_header_corpus_replays() {
    let n = replay("bundle_header", hostile_entries::bundle_header);
    assert!(n >= 4, "seed corpus present ({n} files)");
}

#[test]
fn path_policy_corpus_replays() {
    let n = replay("path_policy", hostile_entries::path_policy);
    assert!(n >= 2, "seed corpus present ({n} files)");
}

#[test]
fn spool_volume_corpus_replays() {
    let n = replay("spool_volume", hostile_entries::spool_volume);
    assert!(n >= 2, "seed corpus present ({n} files)");
}

#[test]
fn handle_datagram_sequence_corpus_replays() {
    let n = replay(
        "handle_datagram_sequence",
        hostile_entries::handle_datagram_sequence,
    );
    assert!(n >= 2, "seed corpus present ({n} files)");
}

#[test]
#[ignore = "writes the hostile seed corpora; run by hand after a format change"]
fn write_hostile_seed_corpora() {
    use sluice_common::bundle::build::{BundleSpec, MemSource};
    use sluice_common::bundle::{Entry, EntryKind, FORMAT_VERSION, Header, format};
    use sluice_common::spool::VolumeHeader;
    use sluice_common::transport::send::{Sender, SenderConfig};
    use sluice_common::transport::wire::LinkKey;

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };

    // bundle_header: a valid bundle by the fuzz signer, tampered and truncated copies, and
    // careless manifests signed in mode 1 (header bytes + bodies).
    let key = hostile_entries::fuzz_signer();
    let mut src = MemSource::default();
    src.0.insert("a/b.txt".into(), b"hello\n".to_vec());
    src.0.insert("c.bin".into(), vec![7u8; 300]);
    let spec = BundleSpec {
        channel: "updates".into(),
        sequence: 3,
        created: 1_790_000_000,
        expires: None,
        note: Some("seed".into()),
    };
    let valid = src.bundle(&spec, &key).expect("build seed bundle");
    let with_mode = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };
    write("bundle_header", "valid", &with_mode(0, &valid));
    let mut flipped = valid.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    write("bundle_header", "flipped_body", &with_mode(0, &flipped));
    write(
        "bundle_header",
        "truncated",
        &with_mode(0, &valid[..valid.len() / 2]),
    );
    let entry = |kind, path: &str, body: &[u8]| Entry {
        kind,
        path: path.into(),
        size: if kind == EntryKind::File {
            body.len() as u64
        } else {
            0
        },
        blake3: if kind == EntryKind::File {
            *blake3::hash(body).as_bytes()
        } else {
            [0; 32]
        },
        executable: false,
    };
    let careless = |name: &str, entries: Vec<Entry>, bodies: &[&[u8]]| {
        let h = Header {
            format_version: FORMAT_VERSION,
            channel: "updates".into(),
            sequence: 1,
            created: 1_790_000_000,
            expires: None,
            note: None,
            signer: key.key_id(),
            entries,
        };
        let hb = format::encode_header(&h);
        let mut v = vec![1u8];
        v.extend_from_slice(&(hb.len() as u16).to_be_bytes());
        v.extend_from_slice(&hb);
        for b in bodies {
            v.extend_from_slice(b);
        }
        write("bundle_header", name, &v);
    };
    careless(
        "signed_traversal",
        vec![entry(EntryKind::File, "../x", b"x")],
        &[b"x"],
    );
    careless(
        "signed_case_collision",
        vec![
            entry(EntryKind::File, "A", b"1"),
            entry(EntryKind::File, "a", b"2"),
        ],
        &[b"1", b"2"],
    );
    careless(
        "signed_ok",
        vec![
            entry(EntryKind::Dir, "d", b""),
            entry(EntryKind::File, "d/f", b"body"),
        ],
        &[b"body"],
    );

    // path_policy: hostile names, one per line.
    write(
        "path_policy",
        "hostile_names",
        "../x\na/../../x\n/etc/passwd\nC:\\x\nC:x\n\\\\srv\\s\n//x\n./x\na//b\nA.txt\na.txt\n\
         cafe\u{301}\ncaf\u{e9}\nfi\n\u{fb01}\nstrasse\nstra\u{df}e\nCON\naux.txt\nx.\nx \n\
         \u{202e}gpj.exe\n.g\u{200c}it\na\0b\nok/name.txt\n\u{65e5}\u{672c}\n"
            .as_bytes(),
    );
    write("path_policy", "deep", vec!["d"; 70].join("/").as_bytes());
    write("path_policy", "long", "x".repeat(300).as_bytes());

    // spool_volume: a valid header plus probes, and re-tagged extreme fields.
    let h = VolumeHeader {
        volume_index: 1,
        volume_count: 3,
        object_id: [9; 16],
        object_len: 1 << 30,
        frame_len: 1472,
        frame_count: 4096,
    };
    let mut v = vec![0u8];
    v.extend_from_slice(&h.encode(&[0x33; 32]));
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    v.extend_from_slice(&68u64.to_le_bytes());
    v.extend_from_slice(&(68u64 + 1472 * 5 + 3).to_le_bytes());
    write("spool_volume", "valid", &v);
    let mut x = vec![1u8];
    let mut fields = [0xFFu8; 68];
    fields[..8].copy_from_slice(b"SLUICEVL");
    fields[8] = 1;
    x.extend_from_slice(&fields);
    x.extend_from_slice(&[0xFF; 16]);
    write("spool_volume", "retagged_extremes", &x);
    let mut y = vec![1u8];
    y.extend_from_slice(&h.encode(&[0x33; 32]));
    write("spool_volume", "retagged_valid", &y);

    // handle_datagram_sequence: a real sender's frames for a small object, raw (op 0), then a
    // decode run (op 3) and a long pause (op 2); and the same with a forged first symbol.
    let link = LinkKey::from_bytes([0x5A; 32]);
    let object: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let mut cfg = SenderConfig::new(link.clone(), [1; 16], 128, 1024);
    cfg.heartbeat_interval = std::time::Duration::from_secs(3600);
    let now = std::time::Instant::now();
    let mut s = Sender::new(cfg, now, 0).expect("sender");
    s.queue_object(now, [0xAB; 16], object.len() as u64, 0)
        .expect("queue");
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 2048];
    while !s.is_finished() {
        while let Some(r) = s.poll_read() {
            let d = object[r.offset as usize..r.offset as usize + r.len].to_vec();
            s.handle_read(r, d).expect("read");
        }
        if let Some(n) = s.poll_transmit(now, &mut buf) {
            frames.push(buf[..n].to_vec());
        }
    }
    let mut seq = Vec::new();
    for f in &frames {
        seq.push(0u8);
        seq.push(u8::try_from(f.len()).expect("small frames"));
        seq.extend_from_slice(f);
    }
    seq.extend_from_slice(&[3, 0, 2, 200, 3, 0]);
    write("handle_datagram_sequence", "sender_object", &seq);
    let mut skipped = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i % 5 == 1 {
            continue; // loss: repair symbols have to be decoded
        }
        skipped.push(0u8);
        skipped.push(u8::try_from(f.len()).expect("small frames"));
        skipped.extend_from_slice(f);
        if i % 16 == 0 {
            skipped.extend_from_slice(&[3, 0]);
        }
    }
    skipped.extend_from_slice(&[3, 0, 2, 60, 2, 255]);
    write("handle_datagram_sequence", "sender_object_lossy", &skipped);
    let mut forged = Vec::new();
    // op 1: a data-frame body (tag appended by the entry) for the same object, ESI 0, junk.
    let body = &frames[1][..frames[1].len() - 16];
    let mut junk = body.to_vec();
    for b in &mut junk[42..] {
        *b = 0xEE;
    }
    forged.push(1u8);
    forged.push(u8::try_from(junk.len()).expect("small"));
    forged.extend_from_slice(&junk);
    forged.extend_from_slice(&seq);
    write("handle_datagram_sequence", "poisoned_first_symbol", &forged);
}

// ---- Codec-read disk formats (fuzz/codec_entries.rs): progress records and key files.

mod codec_entries {
    include!("../../fuzz/codec_entries.rs");
}

#[test]
fn progress_record_corpus_replays() {
    let n = replay("progress_record", codec_entries::progress_record);
    assert!(n >= 3, "seed corpus present ({n} files)");
}

#[test]
fn key_file_corpus_replays() {
    let n = replay("key_file", codec_entries::key_file);
    assert!(n >= 4, "seed corpus present ({n} files)");
}

#[test]
fn valid_codec_seeds_are_accepted() {
    // Ties the seeds to reality: the valid ones get past every check, so the fuzzer starts
    // from inputs that reach the accepting paths.
    use sluice_common::bundle::{parse_public_key, parse_secret_key};
    use sluice_common::transport::params::Limits;
    use sluice_common::transport::progress::Progress;
    let read = |target: &str, name: &str| {
        std::fs::read(fuzz_dir().join("corpus").join(target).join(name)).expect("seed present")
    };
    let record = read("progress_record", "valid");
    let p = Progress::from_bytes(&record[1..], &Limits::default()).expect("valid record");
    assert_eq!(p.done_count(), 2);
    let key = seed_signer();
    let pem = read("key_file", "openssh_secret_pem");
    let parsed = parse_secret_key(&pem[1..]).expect("valid OpenSSH key");
    assert_eq!(parsed.public(), key.public());
    let line = read("key_file", "sluice_public");
    let text = std::str::from_utf8(&line[1..]).expect("utf-8");
    assert_eq!(parse_public_key(text).expect("valid"), key.public());
}

fn seed_signer() -> sluice_common::bundle::SecretKey {
    sluice_common::bundle::SecretKey::from_seed(&[5; 32])
}

/// An RFC 4251 `string`.
fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s);
}

/// The unencrypted openssh-key-v1 blob of the seed signer.
fn openssh_blob() -> Vec<u8> {
    let key = seed_signer();
    let pk = key.public().0;
    let mut public = Vec::new();
    ssh_string(&mut public, b"ssh-ed25519");
    ssh_string(&mut public, &pk);
    let mut private = Vec::new();
    private.extend_from_slice(&0x5EED_5EEDu32.to_be_bytes());
    private.extend_from_slice(&0x5EED_5EEDu32.to_be_bytes());
    ssh_string(&mut private, b"ssh-ed25519");
    ssh_string(&mut private, &pk);
    ssh_string(&mut private, &[[5u8; 32], pk].concat());
    ssh_string(&mut private, b"seed@fuzz");
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut blob = b"openssh-key-v1\0".to_vec();
    ssh_string(&mut blob, b"none");
    ssh_string(&mut blob, b"none");
    ssh_string(&mut blob, b"");
    blob.extend_from_slice(&1u32.to_be_bytes());
    ssh_string(&mut blob, &public);
    ssh_string(&mut blob, &private);
    blob
}

#[test]
#[ignore = "writes the codec seed corpora; run by hand after a format change"]
fn write_codec_seed_corpora() {
    use base64::Engine;
    let write = |target: &str, name: &str, mode: u8, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        let mut v = vec![mode];
        v.extend_from_slice(bytes);
        std::fs::write(dir.join(name), v).expect("write seed");
    };

    // progress_record: 3 blocks of 1 MiB, blocks 0 and 2 done (the layout in progress.rs).
    let body = |symbol_size: u16, bitmap: u8| {
        let mut rec = b"SLPG\x01".to_vec();
        rec.extend_from_slice(&[9; 16]);
        rec.extend_from_slice(&(3u64 * (1 << 20) - 5).to_le_bytes());
        rec.extend_from_slice(&(1u32 << 20).to_le_bytes());
        rec.extend_from_slice(&symbol_size.to_le_bytes());
        rec.extend_from_slice(&1u32.to_le_bytes());
        rec.push(bitmap);
        rec
    };
    let mut valid = body(1024, 0b101);
    valid.extend_from_slice(blake3::hash(&valid).as_bytes());
    write("progress_record", "valid", 0, &valid);
    write("progress_record", "truncated", 0, &valid[..20]);
    write(
        "progress_record",
        "resealed_bits_past_end",
        1,
        &body(1024, 0b1101),
    );
    write("progress_record", "resealed_tiny_symbols", 1, &body(1, 0b1));

    // key_file: each accepted form of the seed signer.
    let key = seed_signer();
    let b64 = base64::engine::general_purpose::STANDARD;
    write(
        "key_file",
        "sluice_secret",
        0,
        key.to_sluice_text("seed").as_bytes(),
    );
    write(
        "key_file",
        "sluice_public",
        1,
        key.public().to_sluice_text("seed").as_bytes(),
    );
    let blob = openssh_blob();
    write("key_file", "openssh_secret_blob", 2, &blob);
    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        b64.encode(&blob)
    );
    write("key_file", "openssh_secret_pem", 0, pem.as_bytes());
    let mut public = Vec::new();
    ssh_string(&mut public, b"ssh-ed25519");
    ssh_string(&mut public, &key.public().0);
    write("key_file", "ssh_public_blob", 3, &public);
}
