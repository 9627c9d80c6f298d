//! Golden bundle vectors, age-testkit style: one file per case in `testdata/bundle/vectors/`,
//! a small text header (`expect:`, `trust:`, `now:`, optional `last-seq:`, `comment:`, and for
//! accepted bundles one `deliver:` line per delivered entry with its size and blake3), a blank
//! line, then the raw `.sluice` bytes. `expect` is `ok` or a `RejectReason` code. Every vector
//! file is its own `#[test]` (`vector::NAME`).
//!
//! The vectors are generated deterministically from fixed seeds by [`generate`] and committed,
//! so a format change shows up as a diff. The expected outcomes, delivered hashes included, are
//! written from the generator's inputs, never from the verifier. `vectors_match_generator`
//! fails when they drift; regenerate with
//! `SLUICE_REGEN_VECTORS=1 cargo test -p sluice-common --test bundle_vectors vectors_match_generator`.

use sluice_testkit::{vector_tests, vectors};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use sluice_common::bundle::build::{assemble_unchecked, write_unchecked};
use sluice_common::bundle::format::{self, MAX_HEADER_BYTES, PREFIX_LEN};
use sluice_common::bundle::*;

const CREATED: u64 = 1_800_000_000;
const NOW: u64 = 1_850_000_000;
const ALICE: [u8; 32] = [0xA1; 32];
const CAROL: [u8; 32] = [0xC3; 32];
const MALLORY: [u8; 32] = [0x4D; 32];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bundle")
}

struct Vector {
    name: String,
    expect: &'static str,
    trust: &'static str,
    last_seq: Option<u64>,
    comment: String,
    /// For accepted bundles: what the verifier must hand the sink, as `deliver:` lines.
    deliver: Vec<String>,
    bytes: Vec<u8>,
}

impl Vector {
    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "expect: {}\ntrust: {}\nnow: {NOW}\n",
            self.expect, self.trust
        );
        if let Some(s) = self.last_seq {
            out.push_str(&format!("last-seq: {s}\n"));
        }
        out.push_str(&format!("comment: {}\n", self.comment));
        for d in &self.deliver {
            out.push_str(&format!("deliver: {d}\n"));
        }
        out.push('\n');
        let mut v = out.into_bytes();
        v.extend_from_slice(&self.bytes);
        v
    }
}

fn file(p: &str, body: &[u8], exec: bool) -> Entry {
    Entry {
        kind: EntryKind::File,
        path: p.into(),
        size: body.len() as u64,
        blake3: *blake3::hash(body).as_bytes(),
        executable: exec,
    }
}

fn header(key: &SecretKey, channel: &str, entries: Vec<Entry>) -> Header {
    Header {
        format_version: 1,
        channel: channel.into(),
        sequence: 7,
        created: CREATED,
        expires: Some(1_900_000_000),
        note: Some("test vector".into()),
        signer: key.key_id(),
        entries,
    }
}

const README: &[u8] = b"hello\n";
const RUN: &[u8] = b"#!/bin/sh\necho hi\n";

fn valid_with(key: &SecretKey, channel: &str) -> Vec<u8> {
    let mut src = MemSource::default();
    src.0.insert("docs/readme.txt".into(), README.to_vec());
    src.0.insert("run.sh".into(), RUN.to_vec());
    let mut inputs = src.entries();
    inputs[1].executable = true;
    let spec = BundleSpec {
        channel: channel.into(),
        sequence: 7,
        created: CREATED,
        expires: Some(1_900_000_000),
        note: Some("test vector".into()),
    };
    let mut out = Vec::new();
    build(&spec, inputs, key, &mut src, &mut out, &mut |_, _| {}).expect("valid build");
    out
}

/// Signed validly by alice (a careless signer): the given entries, bodies in order.
fn signed(entries: Vec<Entry>, bodies: &[&[u8]]) -> Vec<u8> {
    let alice = SecretKey::from_seed(&ALICE);
    write_unchecked(&header(&alice, "updates", entries), &alice, bodies)
}

fn v(name: &str, expect: &'static str, comment: &str, bytes: Vec<u8>) -> Vector {
    Vector {
        name: name.into(),
        expect,
        trust: "std",
        last_seq: None,
        comment: comment.into(),
        deliver: Vec::new(),
        bytes,
    }
}

/// A `deliver:` line for a directory.
fn deliver_dir(path: &str) -> String {
    format!("dir {path}")
}

/// A `deliver:` line for a file: its size, mode and the blake3 of its contents.
fn deliver_file(path: &str, body: &[u8], executable: bool) -> String {
    format!(
        "file {path} size={} executable={executable} blake3={}",
        body.len(),
        blake3::hash(body).to_hex()
    )
}

/// What [`valid_with`] delivers.
fn valid_delivers() -> Vec<String> {
    vec![
        deliver_dir("docs"),
        deliver_file("docs/readme.txt", README, false),
        deliver_file("run.sh", RUN, true),
    ]
}

/// An accepted vector delivering `deliver`.
fn accepted(name: &str, comment: &str, bytes: Vec<u8>, deliver: Vec<String>) -> Vector {
    Vector {
        deliver,
        ..v(name, "ok", comment, bytes)
    }
}

/// Every vector, deterministically.
fn generate() -> Vec<Vector> {
    let alice = SecretKey::from_seed(&ALICE);
    let carol = SecretKey::from_seed(&CAROL);
    let mallory = SecretKey::from_seed(&MALLORY);
    let valid = valid_with(&alice, "updates");
    let (env, _) = inspect(valid.as_slice()).expect("valid inspects");
    let h = env.header_bytes.len();
    let sig_at = PREFIX_LEN + h;
    let body_at = sig_at + 64;
    let mut vs = vec![
        accepted(
            "valid",
            "alice signs two files and a directory on channel updates",
            valid.clone(),
            valid_delivers(),
        ),
        accepted(
            "valid_empty",
            "a bundle with no entries is valid",
            signed(vec![], &[]),
            vec![],
        ),
    ];

    // Signature and trust.
    let mut bad = assemble_unchecked(1, alice.key_id(), &env.header_bytes, &mallory);
    bad.extend_from_slice(&valid[body_at..]);
    vs.push(v(
        "bad_signature",
        "bad_signature",
        "alice's key id and header, signed by mallory",
        bad,
    ));
    vs.push(v(
        "unknown_signer",
        "unknown_signer",
        "validly signed by mallory, who is not in the trust store",
        valid_with(&mallory, "updates"),
    ));
    vs.push(v(
        "signer_not_allowed",
        "signer_not_allowed",
        "alice signs for channel restricted, where only carol may publish",
        valid_with(&alice, "restricted"),
    ));
    vs.push(accepted(
        "carol_on_restricted",
        "carol may publish on restricted",
        valid_with(&carol, "restricted"),
        valid_delivers(),
    ));
    {
        let mut hd = header(&alice, "updates", vec![]);
        hd.expires = Some(CREATED + 100);
        vs.push(v(
            "expired",
            "expired",
            "expired long before now",
            write_unchecked(&hd, &alice, &[]),
        ));
        let mut hd = header(&alice, "expiring", vec![]);
        hd.expires = None;
        vs.push(v(
            "expiry_required",
            "expired",
            "channel expiring requires an expiry and there is none",
            write_unchecked(&hd, &alice, &[]),
        ));
    }
    let mut rb = v(
        "rollback",
        "rollback",
        "sequence 7 when 7 was already accepted",
        valid.clone(),
    );
    rb.last_seq = Some(7);
    vs.push(rb);
    let mut fwd = accepted(
        "sequence_increases",
        "sequence 7 after 6",
        valid.clone(),
        valid_delivers(),
    );
    fwd.last_seq = Some(6);
    vs.push(fwd);

    // Truncation at every region boundary and inside each region.
    let first_file_end = body_at + README.len();
    for (name, at) in [
        ("truncated_empty", 0),
        ("truncated_in_magic", 4),
        ("truncated_in_prefix", 15),
        ("truncated_after_prefix", PREFIX_LEN),
        ("truncated_in_header", PREFIX_LEN + h / 2),
        ("truncated_after_header", sig_at),
        ("truncated_in_signature", sig_at + 32),
        ("truncated_after_signature", body_at),
        ("truncated_in_first_file", body_at + 3),
        ("truncated_after_first_file", first_file_end),
        ("truncated_last_byte", valid.len() - 1),
    ] {
        vs.push(v(
            name,
            "truncated",
            &format!("cut at byte {at}"),
            valid[..at].to_vec(),
        ));
    }
    let mut t = valid.clone();
    t.push(0);
    vs.push(v(
        "trailing_byte",
        "trailing_bytes",
        "one zero byte appended",
        t,
    ));
    let mut t = valid.clone();
    t.extend_from_slice(&valid);
    vs.push(v(
        "trailing_bundle",
        "trailing_bytes",
        "the bundle twice in a row",
        t,
    ));

    // Single flipped bytes in each region.
    for (name, at, expect) in [
        ("flip_magic", 1, "malformed"),
        ("flip_version", 8, "malformed"),
        ("flip_key_id", 12, "unknown_signer"),
        ("flip_header_len", 18, "bad_signature"),
        ("flip_header_start", PREFIX_LEN, "bad_signature"),
        ("flip_header_middle", PREFIX_LEN + h / 2, "bad_signature"),
        ("flip_header_end", sig_at - 1, "bad_signature"),
        ("flip_signature_r", sig_at, "bad_signature"),
        ("flip_signature_s", sig_at + 63, "bad_signature"),
        ("flip_first_file", body_at, "hash_mismatch"),
        ("flip_last_byte", valid.len() - 1, "hash_mismatch"),
    ] {
        let mut b = valid.clone();
        b[at] ^= 0x01;
        vs.push(v(name, expect, &format!("byte {at} xor 0x01"), b));
    }
    let other = {
        let mut src = MemSource::default();
        src.0.insert("docs/readme.txt".into(), b"HELLO\n".to_vec());
        src.0.insert("run.sh".into(), RUN.to_vec());
        let spec = BundleSpec {
            channel: "updates".into(),
            sequence: 8,
            created: CREATED,
            expires: None,
            note: None,
        };
        src.bundle(&spec, &alice).expect("build")
    };
    let (oenv, _) = inspect(other.as_slice()).expect("inspect");
    let mut mix = valid[..body_at].to_vec();
    mix.extend_from_slice(&other[oenv.len() as usize..]);
    vs.push(v(
        "mix_and_match",
        "hash_mismatch",
        "header of one validly signed bundle, body of another",
        mix,
    ));

    // Envelope and encoding.
    let mut b = format::encode_prefix(1, alice.key_id(), MAX_HEADER_BYTES + 1).to_vec();
    b.extend_from_slice(&[0; 64]);
    vs.push(v(
        "header_too_large",
        "malformed",
        "header length 16 MiB + 1 is refused before reading it",
        b,
    ));
    let mut b = format::encode_prefix(1, alice.key_id(), 0).to_vec();
    b.extend_from_slice(&[0; 64]);
    vs.push(v("header_empty", "malformed", "header length 0", b));
    let mut hb = format::encode_header(&header(&alice, "updates", vec![]));
    hb[0] = 2;
    vs.push(v(
        "header_version_mismatch",
        "malformed",
        "prefix says 1, signed header says 2",
        assemble_unchecked(1, alice.key_id(), &hb, &alice),
    ));
    vs.push(v(
        "unsupported_version",
        "malformed",
        "format version 2 in the prefix",
        assemble_unchecked(2, alice.key_id(), &hb, &alice),
    ));
    {
        let hb = format::encode_header(&header(&alice, "updates", vec![]));
        // format_version(1 byte) + channel len(1) + "updates"(7) → sequence varint at 9.
        assert_eq!(hb[9], 7);
        let mut nc = hb[..9].to_vec();
        nc.extend_from_slice(&[0x87, 0x00]);
        nc.extend_from_slice(&hb[10..]);
        vs.push(v(
            "non_canonical_varint",
            "non_canonical",
            "sequence 7 as an overlong varint 87 00, validly signed",
            assemble_unchecked(1, alice.key_id(), &nc, &alice),
        ));
        let mut tr = hb.clone();
        tr.push(0);
        vs.push(v(
            "header_trailing_byte",
            "malformed",
            "a zero byte after the header encoding, validly signed",
            assemble_unchecked(1, alice.key_id(), &tr, &alice),
        ));
        let mut bk = hb.clone();
        // The entry kind of an otherwise valid header set to an unknown variant 7.
        let one = format::encode_header(&header(&alice, "updates", vec![Entry::dir("d")]));
        bk.clear();
        bk.extend_from_slice(&one);
        let kind_at = one.len() - (1 + 1 + 1 + 1 + 32 + 1);
        assert_eq!(bk[kind_at], 1);
        bk[kind_at] = 7;
        vs.push(v(
            "unknown_entry_kind",
            "malformed",
            "entry kind 7, validly signed",
            assemble_unchecked(1, alice.key_id(), &bk, &alice),
        ));
        let mut wrong = header(&alice, "updates", vec![]);
        wrong.signer = carol.key_id();
        let wb = format::encode_header(&wrong);
        vs.push(v(
            "key_id_mismatch",
            "malformed",
            "prefix names alice, signed header names carol",
            assemble_unchecked(1, alice.key_id(), &wb, &alice),
        ));
        let mut badch = header(&alice, "Updates!", vec![]);
        badch.expires = Some(1_900_000_000);
        vs.push(v(
            "bad_channel_name",
            "malformed",
            "channel name with upper case and '!'",
            write_unchecked(&badch, &alice, &[]),
        ));
    }

    // Paths, each signed validly by a careless signer.
    let long = "x".repeat(256);
    let deep = vec!["d"; 65].join("/");
    for (name, p, expect) in [
        ("path_dotdot", "../x", "bad_path"),
        ("path_nested_dotdot", "a/../../x", "bad_path"),
        ("path_dot", "./x", "bad_path"),
        ("path_absolute", "/etc/x", "bad_path"),
        ("path_drive_backslash", "C:\\x", "bad_path"),
        ("path_drive_relative", "C:x", "bad_path"),
        ("path_backslash_traversal", "a\\..\\x", "bad_path"),
        ("path_empty_component", "a//b", "bad_path"),
        ("path_empty", "", "bad_path"),
        ("path_newline", "a\nb", "bad_path"),
        ("path_nul", "a\0b", "bad_path"),
        ("path_c1_control", "a\u{9b}b", "bad_path"),
        ("path_bidi_override", "\u{202e}txt.exe", "bad_path"),
        ("path_zero_width", ".g\u{200c}it", "bad_path"),
        ("path_bom", "\u{feff}x", "bad_path"),
        ("path_reserved_aux_txt", "aux.txt", "bad_path"),
        ("path_reserved_con", "CON", "bad_path"),
        ("path_reserved_com1", "com1.log", "bad_path"),
        ("path_trailing_dot", "x.", "bad_path"),
        ("path_trailing_space", "x ", "bad_path"),
        ("path_nfd", "e\u{301}.txt", "bad_path"),
        ("path_component_too_long", &long, "bad_path"),
        ("path_too_deep", &deep, "bad_path"),
    ] {
        vs.push(v(
            name,
            expect,
            &format!("entry {p:?}"),
            signed(vec![file(p, b"x", false)], &[b"x"]),
        ));
    }
    vs.push(v(
        "path_missing_parent",
        "bad_path",
        "a/b without a directory entry for a",
        signed(vec![file("a/b", b"x", false)], &[b"x"]),
    ));
    vs.push(v(
        "duplicate_path",
        "duplicate_path",
        "x twice, different contents",
        signed(
            vec![file("x", b"1", false), file("x", b"2", false)],
            &[b"1", b"2"],
        ),
    ));
    vs.push(v(
        "case_collision",
        "duplicate_path",
        "A.txt and a.txt",
        signed(
            vec![file("A.txt", b"1", false), file("a.txt", b"2", false)],
            &[b"1", b"2"],
        ),
    ));
    vs.push(v(
        "case_collision_dirs",
        "duplicate_path",
        "directories D and d",
        signed(vec![Entry::dir("D"), Entry::dir("d")], &[]),
    ));
    vs.push(v(
        "fold_collision_sharp_s",
        "duplicate_path",
        "strasse and straße",
        signed(
            vec![
                file("strasse", b"1", false),
                file("stra\u{df}e", b"2", false),
            ],
            &[b"1", b"2"],
        ),
    ));
    vs.push(v(
        "nfc_nfd_pair",
        "bad_path",
        "NFD e+U+0301 next to NFC é: the NFD name is refused",
        signed(
            vec![
                file("e\u{301}.txt", b"1", false),
                file("\u{e9}.txt", b"2", false),
            ],
            &[b"1", b"2"],
        ),
    ));
    vs.push(v(
        "file_dir_conflict",
        "duplicate_path",
        "a is a file and a/b is under it",
        signed(
            vec![file("a", b"1", false), file("a/b", b"2", false)],
            &[b"1", b"2"],
        ),
    ));
    vs.push(v(
        "unsorted_entries",
        "non_canonical",
        "b before a",
        signed(
            vec![file("b", b"1", false), file("a", b"2", false)],
            &[b"1", b"2"],
        ),
    ));
    let mut d = Entry::dir("d");
    d.size = 1;
    vs.push(v(
        "dir_with_size",
        "non_canonical",
        "directory entry with size 1",
        signed(vec![d], &[b"x"]),
    ));
    {
        let names: Vec<String> = (0..11).map(|i| format!("f{i:02}")).collect();
        let entries: Vec<Entry> = names.iter().map(|n| file(n, b"", false)).collect();
        let hd = header(&alice, "small", entries);
        vs.push(v(
            "too_many_entries",
            "too_large",
            "11 entries on channel small (max_files = 10)",
            write_unchecked(&hd, &alice, &[]),
        ));
        let hd = header(&alice, "small", vec![file("big", &[0; 2000], false)]);
        vs.push(v(
            "too_many_bytes",
            "too_large",
            "2000 file bytes on channel small (max_bundle_bytes = 1024)",
            write_unchecked(&hd, &alice, &[&[0; 2000]]),
        ));
    }

    // Weak key: the identity point with R = identity, s = 0 "verifies" any message under
    // ed25519-dalek's lax `verify`. The trust store refuses the key outright.
    {
        let weak = PublicKey(identity());
        let hd = Header {
            signer: weak.key_id(),
            ..header(&alice, "updates", vec![])
        };
        let hb = format::encode_header(&hd);
        let mut b = format::encode_prefix(1, weak.key_id(), hb.len() as u32).to_vec();
        b.extend_from_slice(&hb);
        b.extend_from_slice(&forged_signature());
        let mut wv = v(
            "weak_key",
            "weak_key",
            "trust store holds a small-order key; forged R = identity, s = 0",
            b,
        );
        wv.trust = "weak";
        vs.push(wv);
    }
    vs
}

fn identity() -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 1;
    p
}

fn forged_signature() -> [u8; 64] {
    let mut s = [0u8; 64];
    s[0] = 1;
    s
}

fn trust_files() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let std = PathBuf::from("trust/std");
    let alice = SecretKey::from_seed(&ALICE).public();
    let carol = SecretKey::from_seed(&CAROL).public();
    m.insert(
        std.join("alice.pub"),
        alice.to_sluice_text("alice").into_bytes(),
    );
    m.insert(
        std.join("carol.pub"),
        carol.to_sluice_text("carol").into_bytes(),
    );
    m.insert(
        std.join("policy.toml"),
        b"# Trust store for the golden vectors.\n[defaults]\nallow_any_trusted_signer = true\nrequire_increasing_sequence = true\n\n[channels.restricted]\nsigners = [\"carol\"]\n\n[channels.expiring]\nrequire_expiry = true\n\n[channels.small]\nmax_files = 10\nmax_bundle_bytes = 1024\n".to_vec(),
    );
    let weak = base64::engine::general_purpose::STANDARD.encode(identity());
    m.insert(
        PathBuf::from("trust/weak/weak.pub"),
        format!("sluice-ed25519 {weak} weak\n").into_bytes(),
    );
    m
}

#[test]
fn vectors_match_generator() {
    let root = dir();
    let mut want: BTreeMap<PathBuf, Vec<u8>> = trust_files();
    for vec in generate() {
        want.insert(PathBuf::from("vectors").join(&vec.name), vec.encode());
    }
    if std::env::var_os("SLUICE_REGEN_VECTORS").is_some() {
        // (Run alone: the other tests in this file read what this one writes.)
        for e in std::fs::read_dir(root.join("vectors"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !want.contains_key(&PathBuf::from("vectors").join(e.file_name())) {
                std::fs::remove_file(e.path()).expect("remove stray vector");
            }
        }
        for (p, b) in &want {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, b).expect("write vector");
        }
    }
    for (p, b) in &want {
        let have = std::fs::read(root.join(p)).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with SLUICE_REGEN_VECTORS=1",
                p.display()
            )
        });
        assert!(
            &have == b,
            "{} differs from the generator; regenerate with SLUICE_REGEN_VECTORS=1 and review the diff",
            p.display()
        );
    }
    let committed = std::fs::read_dir(root.join("vectors"))
        .expect("vectors dir")
        .count();
    let generated = want.keys().filter(|p| p.starts_with("vectors")).count();
    assert_eq!(
        committed, generated,
        "stray files in testdata/bundle/vectors"
    );
}

fn load_trust(set: &str) -> Result<TrustStore, TrustError> {
    let d = dir().join("trust").join(set);
    let mut pubs = Vec::new();
    let mut policy = None;
    for e in std::fs::read_dir(&d).expect("trust dir") {
        let p = e.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("read");
        if p.extension().is_some_and(|x| x == "pub") {
            pubs.push((
                p.file_stem().expect("stem").to_string_lossy().into_owned(),
                text,
            ));
        } else if p.file_name().is_some_and(|n| n == "policy.toml") {
            policy = Some(text);
        }
    }
    TrustStore::from_parts(pubs, policy.as_deref())
}

/// Run one committed vector file and return its (expected, actual) outcome: the `expect`
/// line and, for an accepted bundle, the `deliver` lines.
fn run_vector(path: &Path) -> (Vec<String>, Vec<String>) {
    let file = vectors::VectorFile::read(path);
    let now: u64 = file.get("now").parse().expect("now");
    let last_sequence = file.opt("last-seq").map(|s| s.parse().expect("last-seq"));
    let mut expected = vec![format!("expect: {}", file.get("expect"))];
    expected.extend(file.all("deliver").iter().map(|d| format!("deliver: {d}")));
    let actual = match load_trust(file.get("trust")) {
        Err(e) => vec![format!(
            "expect: {}",
            e.reject_reason()
                .map(|r| r.code().to_string())
                .unwrap_or_else(|| format!("trust error: {e}"))
        )],
        Ok(trust) => {
            let mut sink = MemSink::default();
            match verify(
                file.body.as_slice(),
                &trust,
                &VerifyOptions { now, last_sequence },
                &mut sink,
            ) {
                Ok(verified) => {
                    let mut out = vec!["expect: ok".to_string()];
                    for (p, body) in &sink.items {
                        out.push(format!(
                            "deliver: {}",
                            match body {
                                None => deliver_dir(p),
                                Some(b) => {
                                    let exec = verified
                                        .header()
                                        .entries
                                        .iter()
                                        .any(|e| &e.path == p && e.executable);
                                    deliver_file(p, b, exec)
                                }
                            }
                        ));
                    }
                    out
                }
                Err(e) => vec![format!("expect: {}", e.reason.code())],
            }
        }
    };
    (expected, actual)
}

fn vector_dir() -> PathBuf {
    dir().join("vectors")
}

#[test]
fn vectors_give_their_expected_outcome() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(vector_dir())
        .expect("vectors dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 60, "only {} vectors", paths.len());
    let mut failures = Vec::new();
    for p in &paths {
        let (expect, actual) = run_vector(p);
        if expect != actual {
            failures.push(format!(
                "{}: expected {expect:?}, got {actual:?}",
                p.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One vector, as its own test: the expected code and, when accepted, exactly the delivered
/// entries with their sizes, modes and blake3 hashes.
fn run(name: &str) {
    let (expect, actual) = run_vector(&vector_dir().join(name));
    assert_eq!(actual, expect, "{name}");
}

vector_tests! { run, vector_dir();
    bad_channel_name,
    bad_signature,
    carol_on_restricted,
    case_collision,
    case_collision_dirs,
    dir_with_size,
    duplicate_path,
    expired,
    expiry_required,
    file_dir_conflict,
    flip_first_file,
    flip_header_end,
    flip_header_len,
    flip_header_middle,
    flip_header_start,
    flip_key_id,
    flip_last_byte,
    flip_magic,
    flip_signature_r,
    flip_signature_s,
    flip_version,
    fold_collision_sharp_s,
    header_empty,
    header_too_large,
    header_trailing_byte,
    header_version_mismatch,
    key_id_mismatch,
    mix_and_match,
    nfc_nfd_pair,
    non_canonical_varint,
    path_absolute,
    path_backslash_traversal,
    path_bidi_override,
    path_bom,
    path_c1_control,
    path_component_too_long,
    path_dot,
    path_dotdot,
    path_drive_backslash,
    path_drive_relative,
    path_empty,
    path_empty_component,
    path_missing_parent,
    path_nested_dotdot,
    path_newline,
    path_nfd,
    path_nul,
    path_reserved_aux_txt,
    path_reserved_com1,
    path_reserved_con,
    path_too_deep,
    path_trailing_dot,
    path_trailing_space,
    path_zero_width,
    rollback,
    sequence_increases,
    signer_not_allowed,
    too_many_bytes,
    too_many_entries,
    trailing_bundle,
    trailing_byte,
    truncated_after_first_file,
    truncated_after_header,
    truncated_after_prefix,
    truncated_after_signature,
    truncated_empty,
    truncated_in_first_file,
    truncated_in_header,
    truncated_in_magic,
    truncated_in_prefix,
    truncated_in_signature,
    truncated_last_byte,
    unknown_entry_kind,
    unknown_signer,
    unsorted_entries,
    unsupported_version,
    valid,
    valid_empty,
    weak_key,
}

#[test]
fn valid_vector_delivers_the_files() {
    let raw = std::fs::read(dir().join("vectors/valid")).expect("read");
    let split = raw.windows(2).position(|w| w == b"\n\n").expect("sep");
    let trust = load_trust("std").expect("trust");
    let mut sink = MemSink::default();
    let v = verify(
        &raw[split + 2..],
        &trust,
        &VerifyOptions {
            now: NOW,
            last_sequence: None,
        },
        &mut sink,
    )
    .expect("valid");
    assert_eq!(v.signer_name(), "alice");
    assert_eq!(
        sink.items,
        vec![
            ("docs".to_string(), None),
            ("docs/readme.txt".to_string(), Some(README.to_vec())),
            ("run.sh".to_string(), Some(RUN.to_vec())),
        ]
    );
    assert!(v.header().entries[2].executable);
}

/// The forged weak-key signature is exactly what `verify_strict` exists to stop: lax `verify`
/// accepts it for an arbitrary message.
#[test]
fn weak_key_forgery_needs_verify_strict() {
    use ed25519_dalek::{Signature, VerifyingKey};
    let vk = VerifyingKey::from_bytes(&identity()).expect("decodes");
    let sig = Signature::from_bytes(&forged_signature());
    let msg = b"any message at all";
    assert!(vk.verify_strict(msg, &sig).is_err());
    #[allow(deprecated)]
    let lax = ed25519_dalek::Verifier::verify(&vk, msg, &sig);
    assert!(
        lax.is_ok(),
        "lax verify accepts the forgery, which is why it is never used"
    );
}
