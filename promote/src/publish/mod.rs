//! Publish targets. Each is fed only from a quarantine entry that re-verified against its
//! receipt in this pass, and each is idempotent: publishing the same entry again changes nothing
//! (so a crash between "target done" and recording it is repaired by simply publishing again).

pub mod apt;
pub mod dir;
pub mod oci;
pub mod registry;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sluice_recv::store::audit::Receipt;

use crate::config::Target;

/// A verified quarantine entry as publishers see it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: String,
    /// `DIR/quarantine/<id>/files`.
    pub files: PathBuf,
    pub receipt: Receipt,
}

impl Entry {
    /// Receipt paths of regular files whose name ends with `suffix`.
    pub fn files_ending(&self, suffix: &str) -> Vec<&str> {
        self.receipt
            .entries
            .iter()
            .filter(|e| e.kind == "file" && e.path.ends_with(suffix))
            .map(|e| e.path.as_str())
            .collect()
    }
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.files.join(rel)
    }
}

/// Why publishing to a target did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubError {
    /// Try again next pass (target unreachable, tool failed, disk full...).
    Retry(String),
    /// The entry can never be published this way (malformed package, name conflict...).
    Fatal(String),
}

impl std::fmt::Display for PubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PubError::Retry(s) => write!(f, "{s} (will retry)"),
            PubError::Fatal(s) => f.write_str(s),
        }
    }
}

/// Checks everything a target needs before any target is touched, so a missing tool, an
/// unreachable registry or a malformed package stops the bundle with nothing published.
pub fn preflight(t: &Target, e: &Entry, work: &Path) -> Result<(), PubError> {
    match t {
        Target::Dir { path } => dir::preflight(path),
        Target::Apt { .. } => apt::preflight(t, e, work),
        Target::Oci { .. } => oci::preflight(t, e, work),
    }
}

/// Publishes `e` to `t`; returns a one-line detail for the audit record.
pub fn publish(t: &Target, e: &Entry, work: &Path) -> Result<String, PubError> {
    match t {
        Target::Dir { path } => dir::publish(path, e),
        Target::Apt { .. } => apt::publish(t, e, work),
        Target::Oci { .. } => oci::publish(t, e, work),
    }
}

/// Runs a tool with a clean environment; Err(text) carries its output when it fails.
pub fn tool(argv: &[&str], env: &[(&str, &Path)], cwd: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", crate::scan::CLEAN_PATH)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(o.stdout),
        Ok(o) => Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("`{}` could not start: {e}", argv[0])),
    }
}

/// True if `prog` is an executable on the clean PATH.
pub fn have_tool(prog: &str) -> bool {
    crate::scan::CLEAN_PATH
        .split(':')
        .any(|d| Path::new(d).join(prog).is_file())
}

/// blake3 (hex) of a file's bytes, copying them to `to` when given: how every publisher checks
/// a file against its receipt, in 1 MiB reads.
fn hash_copy(from: &Path, mut to: Option<&mut File>) -> io::Result<String> {
    let mut f = File::open(from)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(t) = to.as_deref_mut() {
            t.write_all(&buf[..n])?;
        }
    }
    Ok(h.finalize().to_hex().to_string())
}
