//! Building a bundle: validate, hash, sign, write (docs/bundle.md §Building).
//!
//! [`build`] reads every file twice through the caller's [`FileSource`]: once to hash it into
//! the manifest, once to copy it after the signed header. The second pass is hashed again and
//! must match, so a file that changes while bundling is an error, never a bundle whose bytes
//! disagree with its signature.

use std::io::{self, Read, Write};

use super::format::{self, BodyError, FORMAT_VERSION, MAX_HEADER_BYTES, MAX_NOTE_BYTES};
use super::keys::SecretKey;
use super::path::{self, Limits, PathError};
use super::trust::check_channel;
use super::{BundleId, Entry, EntryKind, Header, KeyId};

/// Read buffer size for hashing and copying.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// What the signer says about the bundle, apart from its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    pub channel: String,
    pub sequence: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; must be after `created`.
    pub expires: Option<u64>,
    pub note: Option<String>,
}

/// One input: a manifest path and what the filesystem said about it. Missing parent directories
/// are added automatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceEntry {
    pub kind: EntryKind,
    pub path: String,
    /// Bytes the file must have (the builder refuses a file that turns out longer or shorter).
    pub size: u64,
    pub executable: bool,
}

impl SourceEntry {
    /// A directory input: no bytes, never executable.
    pub fn dir(path: String) -> SourceEntry {
        SourceEntry {
            kind: EntryKind::Dir,
            path,
            size: 0,
            executable: false,
        }
    }
}

/// Opens file contents by manifest path. The binary maps paths to files (no-follow); tests map
/// them to byte slices.
pub trait FileSource {
    fn open(&mut self, path: &str) -> io::Result<Box<dyn Read + '_>>;
}

/// Which pass a progress callback reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Hashing,
    Writing,
}

/// A finished bundle.
#[derive(Clone, Debug)]
pub struct Built {
    pub id: BundleId,
    pub header: Header,
    /// Size of the `.sluice` file written.
    pub bytes: u64,
}

/// Why a bundle could not be built. Each message names the path or field and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}; rename or leave out that file")]
    Path(#[from] PathError),
    #[error("{0}")]
    Spec(String),
    #[error("reading {path:?}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{path:?} changed while it was being bundled ({detail}); wait until it is complete and run again"
    )]
    Changed { path: String, detail: &'static str },
    #[error("writing the bundle: {0}")]
    Write(io::Error),
    #[error(
        "the manifest encodes to more than {MAX_HEADER_BYTES} bytes; split the files over several bundles"
    )]
    HeaderTooLarge,
}

fn check_spec(spec: &BundleSpec) -> Result<(), BuildError> {
    check_channel(&spec.channel).map_err(BuildError::Spec)?;
    if let Some(e) = spec.expires {
        if e <= spec.created {
            return Err(BuildError::Spec(format!(
                "expiry {e} is not after the creation time {}; pass a positive --expires",
                spec.created
            )));
        }
    }
    if let Some(n) = &spec.note {
        check_note(n).map_err(BuildError::Spec)?;
    }
    Ok(())
}

/// A note: at most [`MAX_NOTE_BYTES`], no control characters except newline and tab, no bidi or
/// invisible characters (it is shown on terminals and in logs).
pub fn check_note(note: &str) -> Result<(), String> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(format!(
            "note is longer than {MAX_NOTE_BYTES} bytes; shorten it"
        ));
    }
    let bad = note
        .chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || path::is_invisible(c));
    if bad {
        return Err("note contains a control, bidi or invisible character; use plain text".into());
    }
    Ok(())
}

/// Sort entries, add missing parent directories and apply the path policy.
pub fn plan(mut inputs: Vec<SourceEntry>) -> Result<Vec<Entry>, BuildError> {
    let mut dirs: Vec<String> = Vec::new();
    for e in &inputs {
        path::check_path(&e.path)?;
        let mut p = e.path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            dirs.push(p.to_string());
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if !inputs.iter().any(|e| e.path == d) {
            inputs.push(SourceEntry::dir(d));
        }
    }
    inputs.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let entries: Vec<Entry> = inputs
        .into_iter()
        .map(|s| Entry {
            kind: s.kind,
            path: s.path,
            size: if s.kind == EntryKind::Dir { 0 } else { s.size },
            blake3: [0; 32],
            executable: s.kind == EntryKind::File && s.executable,
        })
        .collect();
    path::check_manifest(&entries, &Limits::default())?;
    Ok(entries)
}

/// Copy exactly `size` bytes of `path` from `source`, hashing them; optionally forward them.
fn stream_file<S: FileSource>(
    source: &mut S,
    path: &str,
    size: u64,
    buf: &mut [u8],
    mut out: Option<&mut dyn Write>,
    progress: &mut dyn FnMut(Phase, u64),
    phase: Phase,
) -> Result<[u8; 32], BuildError> {
    let io_err = |source| BuildError::Io {
        path: path.to_string(),
        source,
    };
    let mut r = source.open(path).map_err(io_err)?;
    let hash = format::stream_body(&mut r, size, buf, |chunk| {
        if let Some(w) = out.as_deref_mut() {
            w.write_all(chunk).map_err(BuildError::Write)?;
        }
        progress(phase, chunk.len() as u64);
        Ok(())
    })
    .map_err(|e| match e {
        BodyError::Short(_) => BuildError::Changed {
            path: path.into(),
            detail: "it got shorter",
        },
        BodyError::Read(e) => io_err(e),
        BodyError::Sink(e) => e,
    })?;
    if !format::at_end(&mut r).map_err(io_err)? {
        return Err(BuildError::Changed {
            path: path.into(),
            detail: "it got longer",
        });
    }
    Ok(hash)
}

/// Build a signed bundle from `inputs` and write it to `out`. Deterministic: the same inputs,
/// spec and key give the same bytes. `progress` receives byte increments per phase (the total
/// work is twice the file bytes).
pub fn build<S: FileSource, W: Write>(
    spec: &BundleSpec,
    inputs: Vec<SourceEntry>,
    key: &SecretKey,
    source: &mut S,
    mut out: W,
    progress: &mut dyn FnMut(Phase, u64),
) -> Result<Built, BuildError> {
    check_spec(spec)?;
    let mut entries = plan(inputs)?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    for e in entries.iter_mut().filter(|e| e.kind == EntryKind::File) {
        e.blake3 = stream_file(
            source,
            &e.path,
            e.size,
            &mut buf,
            None,
            progress,
            Phase::Hashing,
        )?;
    }
    let header = Header {
        format_version: FORMAT_VERSION,
        channel: spec.channel.clone(),
        sequence: spec.sequence,
        created: spec.created,
        expires: spec.expires,
        note: spec.note.clone(),
        signer: key.key_id(),
        entries,
    };
    let header_bytes = format::encode_header(&header);
    let header_len = u32::try_from(header_bytes.len())
        .ok()
        .filter(|l| *l <= MAX_HEADER_BYTES)
        .ok_or(BuildError::HeaderTooLarge)?;
    let prefix = format::encode_prefix(FORMAT_VERSION, header.signer, header_len);
    let id = format::digest(&prefix, &header_bytes);
    let sig = key.sign_digest(&id.0);
    out.write_all(&prefix).map_err(BuildError::Write)?;
    out.write_all(&header_bytes).map_err(BuildError::Write)?;
    out.write_all(&sig).map_err(BuildError::Write)?;
    let mut bytes = (prefix.len() + header_bytes.len() + sig.len()) as u64;
    for e in header.entries.iter().filter(|e| e.kind == EntryKind::File) {
        let h = stream_file(
            source,
            &e.path,
            e.size,
            &mut buf,
            Some(&mut out),
            progress,
            Phase::Writing,
        )?;
        if h != e.blake3 {
            return Err(BuildError::Changed {
                path: e.path.clone(),
                detail: "its contents differ",
            });
        }
        bytes += e.size;
    }
    out.flush().map_err(BuildError::Write)?;
    Ok(Built { id, header, bytes })
}

/// Test-vector writer: sign and assemble `header` as given, bypassing every policy check (a
/// careless signer). Never use it outside tests.
#[doc(hidden)]
pub fn write_unchecked(header: &Header, key: &SecretKey, bodies: &[&[u8]]) -> Vec<u8> {
    let header_bytes = format::encode_header(header);
    let mut out = assemble_unchecked(FORMAT_VERSION, header.signer, &header_bytes, key);
    for b in bodies {
        out.extend_from_slice(b);
    }
    out
}

/// Test-vector writer: prefix, raw header bytes and a signature over them, no checks at all.
#[doc(hidden)]
pub fn assemble_unchecked(
    version: u16,
    key_id: KeyId,
    header_bytes: &[u8],
    key: &SecretKey,
) -> Vec<u8> {
    let prefix = format::encode_prefix(version, key_id, header_bytes.len() as u32);
    let id = format::digest(&prefix, header_bytes);
    let mut out = Vec::with_capacity(prefix.len() + header_bytes.len() + 64);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(header_bytes);
    out.extend_from_slice(&key.sign_digest(&id.0));
    out
}

/// A [`FileSource`] over in-memory contents, for tests and tools.
#[derive(Default, Clone, Debug)]
pub struct MemSource(pub std::collections::BTreeMap<String, Vec<u8>>);

impl FileSource for MemSource {
    fn open(&mut self, path: &str) -> io::Result<Box<dyn Read + '_>> {
        match self.0.get(path) {
            Some(v) => Ok(Box::new(v.as_slice())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "not in MemSource")),
        }
    }
}

impl MemSource {
    /// The `SourceEntry` list for every file held (all non-executable).
    pub fn entries(&self) -> Vec<SourceEntry> {
        self.0
            .iter()
            .map(|(p, v)| SourceEntry {
                kind: EntryKind::File,
                path: p.clone(),
                size: v.len() as u64,
                executable: false,
            })
            .collect()
    }

    /// Signs every file held into a bundle in memory: [`build`] of [`entries`](Self::entries),
    /// without progress.
    pub fn bundle(&mut self, spec: &BundleSpec, key: &SecretKey) -> Result<Vec<u8>, BuildError> {
        let mut out = Vec::new();
        build(spec, self.entries(), key, self, &mut out, &mut |_, _| {})?;
        Ok(out)
    }
}
