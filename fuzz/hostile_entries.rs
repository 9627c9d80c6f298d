// Fuzz entry points for the receiver's hostile-input surfaces beyond single frames: the bundle
// envelope/header/verifier, the path policy, spool volume headers, and the receiver state machine
// driven by arbitrary datagram sequences. Shared verbatim (through `include!`) by the cargo-fuzz
// targets in fuzz/fuzz_targets/ and the stable corpus replay in common/tests/fuzz_corpus.rs.

use std::time::{Duration, Instant};

use sluice_common::bundle::build::assemble_unchecked;
use sluice_common::bundle::keys::SecretKey;
use sluice_common::bundle::path::{self as bpath, fold_key};
use sluice_common::bundle::verify::{MemSink, VerifyOptions};
use sluice_common::bundle::{Entry, EntryKind, FORMAT_VERSION, TrustStore, format};
use sluice_common::spool::{self, VolumeHeader};
use sluice_common::transport::params::Limits as TransportLimits;
use sluice_common::transport::recv::{Effect, Receiver, ReceiverConfig};
use sluice_common::transport::wire::LinkKey;

/// The signing key fuzz inputs may be signed with (mode byte odd in `bundle_header`).
#[allow(dead_code)]
pub fn fuzz_signer() -> SecretKey {
    SecretKey::from_seed(&[0x66; 32])
}

#[allow(dead_code)]
fn fuzz_trust() -> TrustStore {
    let key = fuzz_signer();
    TrustStore::from_parts(
        vec![("fuzz".to_string(), key.public().to_sluice_text("fuzz"))],
        Some("[defaults]\nallow_any_trusted_signer = true\nrequire_increasing_sequence = false\n"),
    )
    .expect("fuzz trust store")
}

/// First byte even: the rest is a whole `.sluice` file as received. First byte odd: the rest is
/// `header_len u16` + header bytes + file bodies; the header is signed with the trusted fuzz key
/// (a careless signer), so the verifier's manifest, path and hash checks are reached.
/// Properties: nothing panics; a decoded header re-encodes to the same bytes; a bundle that
/// verifies obeys the path policy, and the sink received exactly the manifest's files with
/// matching hashes.
#[allow(dead_code)]
pub fn bundle_header(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(h) = format::decode_header(rest) {
        assert_eq!(
            format::encode_header(&h),
            rest,
            "header decode is canonical"
        );
    }
    let bundle = if mode & 1 == 1 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (header, bodies) = tail.split_at(len);
        let key = fuzz_signer();
        let mut b = assemble_unchecked(FORMAT_VERSION, key.key_id(), header, &key);
        b.extend_from_slice(bodies);
        b
    } else {
        rest.to_vec()
    };
    let _ = sluice_common::bundle::inspect(bundle.as_slice());
    let trust = fuzz_trust();
    let opts = VerifyOptions {
        now: 1_800_000_000,
        last_sequence: None,
    };
    let mut sink = MemSink::default();
    if let Ok(v) = sluice_common::bundle::verify(bundle.as_slice(), &trust, &opts, &mut sink) {
        let entries = &v.header().entries;
        bpath::check_manifest(entries, &bpath::Limits::default())
            .expect("a verified manifest obeys the path policy");
        assert_eq!(sink.items.len(), entries.len(), "one sink item per entry");
        for (e, (path, body)) in entries.iter().zip(&sink.items) {
            assert_eq!(&e.path, path);
            match (e.kind, body) {
                (EntryKind::Dir, None) => {}
                (EntryKind::File, Some(b)) => {
                    assert_eq!(b.len() as u64, e.size);
                    assert_eq!(blake3::hash(b).as_bytes(), &e.blake3);
                }
                _ => panic!("sink item kind differs from the manifest"),
            }
        }
    }
}

/// Lexical resolution of `path` below `/root`: None if any step would climb above it.
#[allow(dead_code)]
fn resolve_below_root(path: &str) -> Option<Vec<&str>> {
    if path.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for c in path.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Input: paths separated by `\n` (lossy UTF-8). Properties: `check_path` never panics and is
/// deterministic; an accepted path has only normal components, resolves below the root and is
/// NFC; a manifest of accepted paths that `check_manifest` accepts has no two paths equal under
/// `fold_key` (case and compatibility folding).
#[allow(dead_code)]
pub fn path_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut accepted: Vec<String> = Vec::new();
    for p in text.split('\n').take(256) {
        let first = bpath::check_path(p);
        assert_eq!(first, bpath::check_path(p), "check_path is deterministic");
        let _ = fold_key(p);
        if first.is_ok() {
            let resolved = resolve_below_root(p).expect("an accepted path stays below the root");
            assert_eq!(
                resolved.len(),
                p.split('/').count(),
                "an accepted path has only normal components: {p:?}"
            );
            assert!(!p.contains('\\') && !p.contains(':') && !p.contains('\0'));
            accepted.push(p.to_string());
        }
    }
    accepted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    accepted.dedup();
    // Parents as directories, as the builder would add them.
    let mut entries: Vec<Entry> = Vec::new();
    let mut names: Vec<(String, EntryKind)> = Vec::new();
    for p in &accepted {
        let mut prefix = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                prefix.push('/');
            }
            prefix.push_str(part);
            let kind = if i + 1 == parts.len() {
                EntryKind::File
            } else {
                EntryKind::Dir
            };
            names.push((prefix.clone(), kind));
        }
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    names.dedup_by(|a, b| a.0 == b.0);
    for (path, kind) in names {
        entries.push(Entry {
            kind,
            path,
            size: 0,
            blake3: [0; 32],
            executable: false,
        });
    }
    if bpath::check_manifest(&entries, &bpath::Limits::default()).is_ok() {
        let mut folded: Vec<String> = entries.iter().map(|e| fold_key(&e.path)).collect();
        folded.sort();
        let n = folded.len();
        folded.dedup();
        assert_eq!(
            folded.len(),
            n,
            "an accepted manifest has no folding collisions"
        );
    }
}

/// Input: a spool volume header (first 68 bytes) under a fixed key, or (first byte odd) header
/// fields re-tagged with the key so the field checks are reached; then u64 probes. Properties:
/// no panic or overflow; a decoded header re-encodes to the same 68 bytes; its record offsets
/// and expected length are consistent for any probe.
#[allow(dead_code)]
pub fn spool_volume(data: &[u8]) {
    const KEY: [u8; 32] = [0x33; 32];
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= spool::HEADER_LEN {
        // Re-tag: decode the fields as given into a header and encode it, keeping any tail.
        let fields = |at: usize, n: usize| {
            let mut v = [0u8; 8];
            v[8 - n..].copy_from_slice(&bytes[at..at + n]);
            u64::from_be_bytes(v)
        };
        let mut object_id = [0u8; 16];
        object_id.copy_from_slice(&bytes[16..32]);
        let h = VolumeHeader {
            volume_index: fields(10, 2) as u16,
            volume_count: fields(12, 2) as u16,
            object_id,
            object_len: fields(32, 8),
            frame_len: fields(40, 4) as u32,
            frame_count: fields(44, 8),
        };
        let enc = h.encode(&KEY);
        bytes[..spool::HEADER_LEN].copy_from_slice(&enc);
    }
    let Ok(h) = VolumeHeader::decode(&bytes, &KEY) else {
        return;
    };
    assert_eq!(
        &h.encode(&KEY)[..],
        &bytes[..spool::HEADER_LEN],
        "decode → encode gives the header back"
    );
    assert!(h.volume_index < h.volume_count && h.volume_count <= spool::MAX_VOLUMES);
    assert!(h.frame_len > 0 && h.frame_len <= spool::MAX_FRAME_LEN);
    let expected = h
        .expected_file_len()
        .expect("decode checked the length fits");
    for probe in bytes[spool::HEADER_LEN..].chunks(8).take(16) {
        let mut v = [0u8; 8];
        v[..probe.len()].copy_from_slice(probe);
        let x = u64::from_le_bytes(v);
        let whole = h.whole_records_in(x);
        assert!(whole <= h.frame_count);
        if let Some(off) = h.record_offset(whole) {
            assert!(off <= x.max(spool::HEADER_LEN as u64) || whole == 0);
        }
        assert!(h.record_offset(h.frame_count) == Some(expected));
        let _ = spool::volume_for_frame(x, h.volume_count);
        assert!(spool::volume_for_frame(x, h.volume_count) < h.volume_count);
    }
}

/// The receiver state machine under an arbitrary sequence of operations, with small limits.
/// Input: records `op u8, len u8, bytes[len]`. op % 4: 0 raw datagram; 1 the bytes are a frame
/// body that gets a valid tag (reaching every check behind the tag); 2 advance the clock by
/// `len × 50 ms` and run timeouts; 3 run queued decode tasks. Properties: never panics; buffered
/// bytes, live sessions and staged bytes never exceed their caps; every `Write` lies inside an
/// object that was opened (or restored) with that length; every datagram is counted.
#[allow(dead_code)]
pub fn handle_datagram_sequence(data: &[u8]) {
    let key = LinkKey::from_bytes([0x5A; 32]);
    let mut config = ReceiverConfig::new(key.clone());
    config.limits = TransportLimits {
        min_symbol_size: 1,
        max_source_symbols: 64,
        max_block_bytes: 64 * 1024,
        max_object_bytes: 1 << 20,
        max_blocks: 64,
        ..TransportLimits::default()
    };
    config.max_sessions = 4;
    config.max_buffered_bytes = 256 * 1024;
    config.max_staging_bytes = 2 << 20;
    config.idle_timeout = Duration::from_secs(2);
    config.object_deadline = Duration::from_secs(30);
    let mut rx = Receiver::new(config.clone());
    let start = Instant::now();
    let mut now = start;
    let mut opened: std::collections::HashMap<[u8; 16], u64> = Default::default();
    let mut pending = Vec::new();
    let mut fed = 0u64;
    let mut rest = data;
    let mut steps = 0;
    while let [op, len, tail @ ..] = rest {
        steps += 1;
        if steps > 4096 {
            break;
        }
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        match op % 4 {
            0 => {
                rx.handle_datagram(now, bytes);
                fed += 1;
            }
            1 => {
                let mut frame = bytes.to_vec();
                // Long enough for the 42-byte data header: pad the body with its own bytes.
                while frame.len() < 43 && !bytes.is_empty() {
                    frame.extend_from_slice(bytes);
                }
                let tag = key.tag(&frame);
                frame.extend_from_slice(&tag);
                rx.handle_datagram(now, &frame);
                fed += 1;
            }
            2 => {
                now += Duration::from_millis(u64::from(*len) * 50);
                rx.handle_timeout(now);
            }
            _ => {
                for task in pending.drain(..) {
                    rx.handle_decoded(now, sluice_common::transport::recv::DecodeTask::run(task));
                }
            }
        }
        while let Some(effect) = rx.poll_effect() {
            match effect {
                Effect::Open { params } => {
                    assert!(config.limits.check(&params).is_ok(), "opened within limits");
                    opened.insert(params.object_id, params.object_len);
                }
                Effect::Write {
                    object_id,
                    offset,
                    data,
                    ..
                } => {
                    let len = *opened.get(&object_id).expect("write to an opened object");
                    assert!(offset + data.len() as u64 <= len, "write inside the object");
                }
                Effect::Decode(task) => pending.push(task),
                Effect::Complete { object_id, len } => {
                    assert_eq!(opened.get(&object_id), Some(&len));
                }
                Effect::Authenticate { object_id, .. } => {
                    rx.authenticate(now, object_id);
                }
                Effect::Checkpoint { .. }
                | Effect::Forgotten { .. }
                | Effect::Incomplete { .. }
                | Effect::Abandoned { .. }
                | Effect::Replayed { .. } => {}
            }
        }
        while rx.poll_event().is_some() {}
        assert!(
            rx.buffered_bytes() <= config.max_buffered_bytes,
            "memory budget"
        );
        assert!(rx.session_count() <= config.max_sessions, "session cap");
        assert!(
            rx.staging_bytes() <= config.max_staging_bytes,
            "staging cap"
        );
    }
    assert_eq!(rx.stats().datagrams, fed, "every datagram counted");
}
