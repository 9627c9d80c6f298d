//! Shared by the golden-vector tests (`wire_vectors.rs`, `spool_vectors.rs`,
//! `bundle_vectors.rs`): the vector file format, the check that committed vectors still match
//! their generator, the `vector_tests!` macro that gives every vector file its own `#[test]`,
//! and the parser for the hex worked examples in docs/.
//!
//! A vector file is age-testkit style: `key: value` header lines, one blank line, then the
//! input bytes (raw for bundles; hex, whitespace ignored, for frames and volumes so a format
//! change reads as a diff). Header lines are inputs (`key`, `trust`, `now`, …) and expected
//! outcomes (`expect: ok` or the exact rejection reason, then what an accepted input yields,
//! with blake3 hashes of payloads). The expectations are written by hand in each generator,
//! never computed by the decoder under test.
//!
//! Regenerate every vector with `SLUICE_REGEN_VECTORS=1 cargo test -p sluice-common --test
//! NAME committed_vectors_match_the_generator` and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `common/tests/vectors/<kind>`.
pub fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/tests/vectors")
        .join(kind)
}

/// One parsed vector file.
#[derive(Debug)]
pub struct VectorFile {
    /// Header lines in order (a key may repeat).
    pub fields: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: Vec<u8>,
}

impl VectorFile {
    /// Reads `path` and splits header from body.
    pub fn read(path: &Path) -> Self {
        let raw = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate the vectors", path.display()));
        Self::parse(&raw)
    }

    /// Splits `raw` at the first blank line.
    pub fn parse(raw: &[u8]) -> Self {
        let split = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("header/body separator");
        let head = std::str::from_utf8(&raw[..split]).expect("utf-8 header");
        let fields = head
            .lines()
            .map(|line| {
                let (k, v) = line.split_once(": ").expect("key: value");
                (k.to_string(), v.to_string())
            })
            .collect();
        Self {
            fields,
            body: raw[split + 2..].to_vec(),
        }
    }

    /// The only value of `key`.
    pub fn get(&self, key: &str) -> &str {
        match self.all(key)[..] {
            [v] => v,
            [] => panic!("no {key:?} line"),
            _ => panic!("{key:?} appears more than once"),
        }
    }

    /// The value of `key`, if present.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.all(key).first().copied()
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header lines whose key is in `keys`, in file order: what a test compares.
    pub fn outcome(&self, keys: &[&str]) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// The body read as hex (whitespace ignored).
    pub fn hex_body(&self) -> Vec<u8> {
        unhex(std::str::from_utf8(&self.body).expect("hex body is text"))
    }
}

/// Builds a vector file: header lines, a blank line, the body.
pub fn encode(fields: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        assert!(!v.contains('\n') && !k.contains(": "), "{k}: {v}");
        out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// `bytes` as lowercase hex, 32 bytes per line, with a final newline.
pub fn hex_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for chunk in bytes.chunks(32) {
        out.push_str(&hex::encode(chunk));
        out.push('\n');
    }
    out.into_bytes()
}

/// Hex digits with any whitespace between them.
pub fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    hex::decode(digits).expect("valid hex")
}

/// blake3 of `bytes`, in hex.
pub fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Compares the committed files under `dir` with `want` (file name → bytes), after rewriting
/// them when `SLUICE_REGEN_VECTORS` is set. Stray files fail the check.
pub fn check_committed(dir: &Path, want: &BTreeMap<String, Vec<u8>>) {
    if std::env::var_os("SLUICE_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(dir).expect("mkdir vectors");
        for e in std::fs::read_dir(dir).expect("vectors dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !want.contains_key(&name) {
                std::fs::remove_file(e.path()).expect("remove stray vector");
            }
        }
        for (name, bytes) in want {
            std::fs::write(dir.join(name), bytes).expect("write vector");
        }
    }
    for (name, bytes) in want {
        let path = dir.join(name);
        let have = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with SLUICE_REGEN_VECTORS=1",
                path.display()
            )
        });
        assert!(
            &have == bytes,
            "{} differs from the generator; regenerate with SLUICE_REGEN_VECTORS=1 and review the diff",
            path.display()
        );
    }
    assert_eq!(
        committed_names(dir),
        want.keys().cloned().collect::<Vec<_>>(),
        "stray or missing files in {}",
        dir.display()
    );
}

/// File names under `dir`, sorted.
pub fn committed_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// One `#[test]` per named vector file (`vector::NAME`, calling `$run("NAME")`), `ALL_VECTORS`,
/// and `every_vector_file_has_its_own_test`: every committed file under `$dir` has its own test
/// and every test its file.
#[macro_export]
macro_rules! vector_tests {
    ($run:ident, $dir:expr; $($name:ident),+ $(,)?) => {
        const ALL_VECTORS: &[&str] = &[$(stringify!($name)),+];
        mod vector {
            $(
                #[test]
                fn $name() {
                    super::$run(stringify!($name));
                }
            )+
        }

        #[test]
        fn every_vector_file_has_its_own_test() {
            let mut listed: Vec<String> = ALL_VECTORS.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(listed, $crate::vectors::committed_names(&$dir));
        }
    };
}

/// A hex-bodied vector file (frames, volumes): its comment, the link key, the outcome lines,
/// then the input bytes as hex lines.
pub fn hex_vector(
    comment: &str,
    key: &[u8],
    outcome: &[(String, String)],
    bytes: &[u8],
) -> Vec<u8> {
    let mut fields = vec![
        ("comment".to_string(), comment.to_string()),
        ("key".to_string(), hex::encode(key)),
    ];
    fields.extend(outcome.iter().cloned());
    encode(&fields, &hex_lines(bytes))
}

/// `committed_vectors_match_the_generator` of a hex-vector kind: the generator's files (name →
/// bytes) against the committed ones under `dir(kind)` (`check_committed`).
pub fn check_generated<'a>(kind: &str, generated: impl IntoIterator<Item = (&'a str, Vec<u8>)>) {
    let want: BTreeMap<String, Vec<u8>> = generated
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect();
    check_committed(&dir(kind), &want);
}

/// One line of a hex worked example: `OFFSET  HEX BYTES… | description`.
#[derive(Debug)]
pub struct DocLine {
    pub offset: usize,
    pub bytes: Vec<u8>,
    pub what: String,
}

/// The worked example fenced right after `<!-- worked-example: NAME -->` in `doc`
/// (a path relative to the repository root): its `link key: HEX` line and its byte lines.
/// Checks that each line's offset is the running byte count.
pub fn doc_example(doc: &str, name: &str) -> (Vec<u8>, Vec<DocLine>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(doc);
    let text = std::fs::read_to_string(&path).expect("read doc");
    let marker = format!("<!-- worked-example: {name} -->");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{doc} has no {marker}"));
    let after = &text[start + marker.len()..];
    let open = after.find("```").expect("opening fence");
    let body_start = open + after[open..].find('\n').expect("fence line") + 1;
    let body_len = after[body_start..].find("```").expect("closing fence");
    let body = &after[body_start..body_start + body_len];
    let mut key = Vec::new();
    let mut lines = Vec::new();
    let mut at = 0;
    for line in body.lines() {
        if let Some(k) = line.trim().strip_prefix("link key:") {
            key = unhex(k);
            continue;
        }
        let Some((left, what)) = line.split_once('|') else {
            continue;
        };
        let mut tokens = left.split_whitespace();
        let Some(Ok(offset)) = tokens.next().map(str::parse::<usize>) else {
            continue; // a column heading
        };
        assert_eq!(offset, at, "{doc} {name}: offset column of {line:?}");
        let bytes = unhex(&tokens.collect::<String>());
        at += bytes.len();
        lines.push(DocLine {
            offset,
            bytes,
            what: what.trim().to_string(),
        });
    }
    assert_eq!(
        key.len(),
        32,
        "{doc} {name}: a `link key:` line with 32 bytes"
    );
    (key, lines)
}
