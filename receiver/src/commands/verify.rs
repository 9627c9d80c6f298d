//! `sluice-recv verify`: check one bundle file against a trust store, hashing every file into a
//! discarding sink. Also home of [`load_trust_dir`], the trust-store loader the store reuses.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_common::bundle::{self, DiscardSink, TrustStore, VerifyOptions};
use sluice_common::exit;

/// Verify one bundle file against a trust directory; exit 0 only if every byte checks out
///
/// The trust directory holds one `NAME.pub` per trusted signer (sluice or `ssh-ed25519` format;
/// the signer is called NAME) and an optional `policy.toml` with per-channel rules (see
/// docs/bundle.md). Verification order: signature (verify_strict) first, then the header, the
/// channel policy, the path policy and each file's blake3, then end of file. Nothing is written.
///
/// Rollback protection needs the store's high-water mark; pass it with --last-seq to check a
/// bundle against a known last sequence.
///
/// Exit codes: 0 valid, 3 unreadable, 4 invalid (tampered, truncated, malformed, bad path),
/// 5 untrusted signer, 6 policy refused (expired, too large, rollback), 2 bad trust directory.
///
/// Examples:
///
///   sluice-recv verify --trust /etc/sluice/trust u.sluice
///   sluice-recv verify --trust /etc/sluice/trust --json u.sluice | jq .reason
#[derive(Debug, clap::Args)]
#[command(long_about, verbatim_doc_comment)]
pub struct Args {
    /// Trust directory: *.pub files plus optional policy.toml.
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// The channel's last accepted sequence, for the rollback check.
    #[arg(long, value_name = "N")]
    pub last_seq: Option<u64>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Bundle file.
    pub file: PathBuf,
}

/// Largest `.pub` file read.
const MAX_PUB_BYTES: u64 = 64 * 1024;

fn read_bounded(p: &Path, max: u64) -> std::io::Result<String> {
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

pub fn run(args: Args) -> i32 {
    let trust = match load_trust_dir(&args.trust) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let f = match File::open(&args.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: cannot read {}: {e}\nhelp: check the path and permissions",
                args.file.display()
            );
            return exit::INPUT;
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let opts = VerifyOptions {
        now,
        last_sequence: args.last_seq,
    };
    let started = std::time::Instant::now();
    let result = bundle::verify(
        BufReader::with_capacity(1 << 20, f),
        &trust,
        &opts,
        &mut DiscardSink,
    );
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(v) => {
            let h = v.header();
            if args.json {
                let j = serde_json::json!({
                    "valid": true,
                    "bundle_id": v.id().to_hex(),
                    "signer": v.signer_name(),
                    "signer_key_id": h.signer.to_hex(),
                    "channel": h.channel, "sequence": h.sequence,
                    "created": h.created, "expires": h.expires,
                    "entries": h.entries.len(), "file_bytes": h.total_file_bytes(),
                    "bundle_bytes": v.bundle_bytes(),
                });
                println!("{j}");
            } else {
                println!(
                    "valid: bundle {} signed by {:?} (key id {}) on channel {} sequence {}: {} entries, {} bytes, verified in {secs:.2}s",
                    v.id(),
                    v.signer_name(),
                    h.signer,
                    h.channel,
                    h.sequence,
                    h.entries.len(),
                    v.bundle_bytes()
                );
            }
            exit::OK
        }
        Err(e) => {
            if args.json {
                let j = serde_json::json!({
                    "valid": false,
                    "reason": e.reason.code(),
                    "detail": e.detail,
                    "help": e.remediation(),
                });
                println!("{j}");
            } else {
                eprintln!(
                    "error: bundle {} rejected: {e}\nhelp: {}",
                    args.file.display(),
                    e.remediation()
                );
            }
            e.reason.exit_code()
        }
    }
}
