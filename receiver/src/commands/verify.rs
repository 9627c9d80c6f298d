//! `sluice-recv verify`: check one bundle file against a trust store, hashing every file into a
//! discarding sink.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_common::bundle::{self, DiscardSink, VerifyOptions};
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
pub fn run(args: Args) -> i32 {
    let trust = match sluice_host::trust_dir::load_trust_dir(&args.trust) {
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
