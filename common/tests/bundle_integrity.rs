//! Whole-bundle properties: every byte is covered by the signature, builds are deterministic,
//! verification streams (bounded chunks, sink sees exactly the manifest), and the path policy
//! never lets a path escape its root or two accepted paths collide.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sluice_common::bundle::*;

const NOW: u64 = 1_850_000_000;

fn alice() -> SecretKey {
    SecretKey::from_seed(&[0xA1; 32])
}

fn trust() -> TrustStore {
    let p = alice().public().to_sluice_text("alice");
    TrustStore::from_parts(vec![("alice".into(), p)], None).expect("trust")
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        now: NOW,
        last_sequence: None,
    }
}

fn spec() -> BundleSpec {
    BundleSpec {
        channel: "updates".into(),
        sequence: 42,
        created: 1_800_000_000,
        expires: None,
        note: Some("multi-block".into()),
    }
}

/// Several files over several MiB, so bodies span many 1 MiB verifier chunks.
fn source() -> MemSource {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut src = MemSource::default();
    for (name, len) in [
        ("big/a.bin", 1_500_000usize),
        ("big/b.bin", 1_048_576),
        ("c.txt", 13),
        ("empty", 0),
        ("z/deep/d.bin", 700_001),
    ] {
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        src.0.insert(name.into(), v);
    }
    src
}

/// The error `build` refuses `inputs` (read from a copy of `src`) with.
fn build_refused(src: &MemSource, inputs: Vec<SourceEntry>) -> BuildError {
    let mut s = src.clone();
    build(
        &spec(),
        inputs,
        &alice(),
        &mut s,
        Vec::new(),
        &mut |_, _| {},
    )
    .expect_err("refused")
}

fn build_bytes(src: &MemSource, inputs: Vec<SourceEntry>) -> (Built, Vec<u8>) {
    let mut out = Vec::new();
    let mut s = src.clone();
    let built = build(&spec(), inputs, &alice(), &mut s, &mut out, &mut |_, _| {}).expect("build");
    (built, out)
}

#[test]
fn every_flipped_byte_is_rejected() {
    let src = source();
    let (built, mut bytes) = build_bytes(&src, src.entries());
    assert!(bytes.len() > 3 * 1024 * 1024);
    verify(bytes.as_slice(), &trust(), &opts(), &mut DiscardSink).expect("pristine verifies");
    let (env, _) = inspect(bytes.as_slice()).expect("inspect");
    let body_at = env.len() as usize;
    // Every byte of the prefix, header and signature, then a spread over the body that hits
    // each file's first and last byte and 400 positions in between.
    let mut positions: Vec<usize> = (0..body_at).collect();
    let mut off = body_at;
    for e in built.header.entries.iter().filter(|e| e.size > 0) {
        positions.push(off);
        positions.push(off + e.size as usize - 1);
        off += e.size as usize;
    }
    assert_eq!(off, bytes.len());
    let body_len = bytes.len() - body_at;
    positions.extend((0..400).map(|i| body_at + i * body_len / 400 + (i % 7)));
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    for &p in &positions {
        for mask in [0x01u8, 0x80] {
            bytes[p] ^= mask;
            let r = verify(bytes.as_slice(), &trust(), &opts(), &mut DiscardSink);
            bytes[p] ^= mask;
            let e = r.expect_err(&format!("flip at {p} mask {mask:#x} verified"));
            if p >= body_at {
                assert_eq!(e.reason, RejectReason::HashMismatch, "at {p}");
            }
            *reasons.entry(e.reason.code()).or_default() += 1;
        }
    }
    eprintln!(
        "{} flips over {} bytes rejected: {reasons:?}",
        positions.len() * 2,
        bytes.len()
    );
}

#[test]
fn builds_are_deterministic_and_order_independent() {
    let src = source();
    let (b1, x1) = build_bytes(&src, src.entries());
    let mut rev = src.entries();
    rev.reverse();
    let (b2, x2) = build_bytes(&src, rev);
    assert_eq!(x1, x2);
    assert_eq!(b1.id, b2.id);
    assert_eq!(b1.bytes, x1.len() as u64);
    let v = verify(x1.as_slice(), &trust(), &opts(), &mut DiscardSink).expect("verifies");
    assert_eq!(v.id(), b1.id);
    assert_eq!(v.bundle_bytes(), x1.len() as u64);
}

/// A sink that checks the FileSink calling contract and chunk bounds.
#[derive(Default)]
struct Checker {
    open: Option<(String, u64, u64)>,
    files: BTreeMap<String, Vec<u8>>,
    dirs: Vec<String>,
    max_chunk: usize,
}

impl FileSink for Checker {
    fn create_dir(&mut self, e: &Entry) -> std::io::Result<()> {
        assert!(self.open.is_none());
        self.dirs.push(e.path.clone());
        Ok(())
    }
    fn begin_file(&mut self, e: &Entry) -> std::io::Result<()> {
        assert!(self.open.is_none());
        self.open = Some((e.path.clone(), e.size, 0));
        self.files.insert(e.path.clone(), Vec::new());
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let (p, _, n) = self.open.as_mut().expect("write inside a file");
        *n += bytes.len() as u64;
        self.max_chunk = self.max_chunk.max(bytes.len());
        self.files
            .get_mut(p)
            .expect("file")
            .extend_from_slice(bytes);
        Ok(())
    }
    fn end_file(&mut self, e: &Entry) -> std::io::Result<()> {
        let (p, size, n) = self.open.take().expect("open file");
        assert_eq!((p.as_str(), size), (e.path.as_str(), n));
        Ok(())
    }
}

#[test]
fn sink_sees_exactly_the_manifest_in_bounded_chunks() {
    let src = source();
    let (_, bytes) = build_bytes(&src, src.entries());
    let mut sink = Checker::default();
    verify(bytes.as_slice(), &trust(), &opts(), &mut sink).expect("verifies");
    assert_eq!(sink.files, src.0);
    assert_eq!(sink.dirs, vec!["big", "z", "z/deep"]);
    assert!(sink.max_chunk <= build::CHUNK_BYTES);
}

#[test]
fn sink_failure_is_storage_error() {
    struct Full;
    impl FileSink for Full {
        fn create_dir(&mut self, _: &Entry) -> std::io::Result<()> {
            Ok(())
        }
        fn begin_file(&mut self, _: &Entry) -> std::io::Result<()> {
            Ok(())
        }
        fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
        fn end_file(&mut self, _: &Entry) -> std::io::Result<()> {
            Ok(())
        }
    }
    let src = source();
    let (_, bytes) = build_bytes(&src, src.entries());
    let e = verify(bytes.as_slice(), &trust(), &opts(), &mut Full).expect_err("fails");
    assert_eq!(e.reason, RejectReason::StorageError);
    assert!(e.detail.contains("big/a.bin"), "{}", e.detail);
}

#[test]
fn builder_refuses_what_the_verifier_refuses() {
    let mut src = MemSource::default();
    src.0.insert("../x".into(), b"1".to_vec());
    let e = build_refused(&src, src.entries());
    assert!(
        matches!(e, BuildError::Path(ref p) if p.rule == PathRule::DotDotComponent),
        "{e}"
    );
    let mut src = MemSource::default();
    src.0.insert("A.txt".into(), b"1".to_vec());
    src.0.insert("a.txt".into(), b"2".to_vec());
    let e = build_refused(&src, src.entries());
    assert!(e.to_string().contains("collides"), "{e}");
    // A file that is shorter than declared is a "changed while bundling" error.
    let mut src = MemSource::default();
    src.0.insert("f".into(), b"12".to_vec());
    let mut inputs = src.entries();
    inputs[0].size = 3;
    let e = build_refused(&src, inputs);
    assert!(matches!(e, BuildError::Changed { .. }), "{e}");
}

#[test]
fn a_lying_header_length_does_not_allocate_it() {
    // 16 MiB claimed, 30 bytes present: Truncated, promptly.
    let mut b = format::encode_prefix(1, alice().key_id(), MAX_HEADER_BYTES).to_vec();
    b.extend_from_slice(&[0; 30]);
    let e = verify(b.as_slice(), &trust(), &opts(), &mut DiscardSink).expect_err("short");
    assert_eq!(e.reason, RejectReason::Truncated);
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just(String::new()),
        Just("CON".to_string()),
        Just("a.".to_string()),
        proptest::string::string_regex("[aAbB.é\u{301}ßs:\\\\ \u{202e}\u{200b}\n-]{1,4}")
            .expect("regex"),
    ]
}

fn path_strategy() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(component(), 1..5),
    )
        .prop_map(|(abs, cs)| format!("{}{}", if abs { "/" } else { "" }, cs.join("/")))
}

/// Lexically resolve `rel` under `/root`, as a naive extractor would.
fn resolve(rel: &str) -> Vec<String> {
    let mut stack = vec!["root".to_string()];
    if rel.starts_with('/') || rel.starts_with('\\') {
        stack.clear();
    }
    for c in rel.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            c => stack.push(c.to_string()),
        }
    }
    stack
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_paths_stay_under_the_root(p in path_strategy()) {
        if check_path(&p).is_ok() {
            let r = resolve(&p);
            prop_assert!(r.len() > p.split('/').count(), "{p:?} resolved to {r:?}");
            prop_assert_eq!(&r[0], "root");
            let clean = !p.contains(':') && !p.contains('\\') && !p.contains('\u{202e}');
            prop_assert!(clean, "bad character accepted in {:?}", p);
            prop_assert!(p.split('/').all(|c| c != "." && c != ".." && !c.is_empty()));
        }
    }

    #[test]
    fn accepted_manifests_have_no_collisions(ps in prop::collection::vec(path_strategy(), 1..12)) {
        let mut src = MemSource::default();
        for p in &ps {
            src.0.insert(p.clone(), vec![]);
        }
        if let Ok(entries) = build::plan(src.entries()) {
            let mut folded = HashSet::new();
            for e in &entries {
                prop_assert!(folded.insert(path::fold_key(&e.path)), "collision at {:?}", e.path);
                prop_assert!(check_path(&e.path).is_ok());
                if let Some((parent, _)) = e.path.rsplit_once('/') {
                    let pe = entries.iter().find(|x| x.path == parent);
                    prop_assert!(matches!(pe, Some(x) if x.kind == EntryKind::Dir));
                }
            }
            prop_assert!(check_manifest(&entries, &Limits::default()).is_ok());
        }
    }
}

fn header_strategy() -> impl Strategy<Value = Header> {
    let entry = (
        any::<bool>(),
        "[a-z]{1,8}",
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<bool>(),
    )
        .prop_map(|(dir, path, size, blake3, executable)| Entry {
            kind: if dir { EntryKind::Dir } else { EntryKind::File },
            path,
            size,
            blake3,
            executable,
        });
    (
        any::<u16>(),
        "[a-z0-9]{0,10}",
        any::<u64>(),
        any::<u64>(),
        any::<Option<u64>>(),
        proptest::option::of(".{0,20}"),
        any::<[u8; 8]>(),
        prop::collection::vec(entry, 0..6),
    )
        .prop_map(
            |(format_version, channel, sequence, created, expires, note, signer, entries)| Header {
                format_version,
                channel,
                sequence,
                created,
                expires,
                note,
                signer: KeyId(signer),
                entries,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The header codec is a bijection on what it accepts: decode(encode(h)) == h, and any bytes
    /// that decode are the encoding of what they decode to (no second encoding per meaning).
    #[test]
    fn header_codec_is_canonical(h in header_strategy(), noise in prop::collection::vec(any::<u8>(), 0..64), at in any::<usize>()) {
        let bytes = format::encode_header(&h);
        let decoded = format::decode_header(&bytes);
        prop_assert_eq!(decoded, Ok(h));
        let mut m = bytes.clone();
        let i = at % (m.len() + 1);
        m.splice(i..i, noise);
        if let Ok(d) = format::decode_header(&m) {
            prop_assert_eq!(format::encode_header(&d), m);
        }
    }

    /// Arbitrary bytes after a valid prefix never panic the verifier and never verify.
    #[test]
    fn garbage_never_verifies(len in 0u32..200, tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut b = format::encode_prefix(1, alice().key_id(), len).to_vec();
        b.extend_from_slice(&tail);
        prop_assert!(verify(b.as_slice(), &trust(), &opts(), &mut DiscardSink).is_err());
    }
}

/// A bundle verified while it arrived is re-checked at acceptance time against that moment's
/// clock and high-water mark: exactly the two inputs of `verify` that can change meanwhile.
#[test]
fn recheck_freshness_applies_the_clock_and_sequence_of_the_later_moment() {
    let spec = BundleSpec {
        expires: Some(1_800_000_100),
        ..spec()
    };
    let out = source().bundle(&spec, &alice()).expect("build");
    let at = |now, last_sequence| VerifyOptions { now, last_sequence };
    let verified = verify(
        out.as_slice(),
        &trust(),
        &at(1_800_000_001, Some(41)),
        &mut DiscardSink,
    )
    .expect("verifies before its expiry");
    let recheck = |o: VerifyOptions| verify::recheck_freshness(&verified, &trust(), &o);
    assert!(recheck(at(1_800_000_099, Some(41))).is_ok());
    assert_eq!(
        recheck(at(1_800_000_100, Some(41))).unwrap_err().reason,
        RejectReason::Expired
    );
    assert_eq!(
        recheck(at(1_800_000_050, Some(42))).unwrap_err().reason,
        RejectReason::Rollback
    );
    assert!(recheck(at(1_800_000_050, None)).is_ok());
}
