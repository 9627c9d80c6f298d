//! Loading a trust directory (`*.pub` signer keys + optional `policy.toml`) from disk.
//!
//! Shared by both binaries: `sluice-recv` verifies against it, `sluice-send` checks bundles
//! against it before sending. `common` parses the contents but may not read files, so the reading
//! lives here, in the host crate both binaries share.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sluice_common::bundle::{self, TrustStore};

const MAX_PUB_BYTES: u64 = 64 * 1024;

pub fn read_bounded(p: &Path, max: u64) -> std::io::Result<String> {
    let mut s = String::new();
    File::open(p)?.take(max + 1).read_to_string(&mut s)?;
    if s.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file too large",
        ));
    }
    Ok(s)
}

/// Load a trust directory: every `*.pub` (name = file stem) and an optional `policy.toml`.
/// Errors name the file and carry one line of remediation.
pub fn load_trust_dir(dir: &Path) -> anyhow::Result<TrustStore> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read trust directory {}: {e}\nhelp: pass --trust with the directory holding the signers' .pub files",
            dir.display()
        )
    })?;
    let mut pubs = Vec::new();
    for ent in rd {
        let ent = ent?;
        let p = ent.path();
        if p.extension().and_then(|e| e.to_str()) != Some("pub") {
            continue;
        }
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        let text = read_bounded(&p, MAX_PUB_BYTES).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e}\nhelp: check permissions, or remove the file",
                p.display()
            )
        })?;
        pubs.push((stem, text));
    }
    let policy_path = dir.join("policy.toml");
    let policy = match read_bounded(&policy_path, bundle::trust::MAX_POLICY_BYTES as u64) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!(
            "cannot read {}: {e}\nhelp: check permissions",
            policy_path.display()
        ),
    };
    if pubs.is_empty() {
        anyhow::bail!(
            "trust directory {} has no .pub files, so no bundle could ever verify\nhelp: copy the signing officers' NAME.pub files into it",
            dir.display()
        );
    }
    TrustStore::from_parts(pubs, policy.as_deref()).map_err(|e| {
        anyhow::anyhow!(
            "trust directory {}: {e}\nhelp: fix or remove the file named above; the receiver refuses to run with a broken trust store",
            dir.display()
        )
    })
}
