//! `sluice-recv verify`: check one bundle file against a trust store, hashing every file into a
//! discarding sink.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use sluice_common::bundle::{self, DiscardSink, VerifyOptions};
use sluice_common::exit::{self, CommandError, Exit};

use crate::report::rejected_exit;

/// What each exit code means for `verify` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "valid: every byte checks out"),
    (Exit::Usage, "bad trust directory"),
    (Exit::Input, "the bundle file unreadable"),
    (
        Exit::Invalid,
        "tampered, truncated, malformed, or a path the policy refuses",
    ),
    (Exit::Untrusted, "the signer is not trusted for the channel"),
    (
        Exit::Policy,
        "refused by policy: expired, too large, rollback",
    ),
];

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
/// Examples:
///
///   sluice-recv verify --trust /etc/sluice/trust u.sluice
///   sluice-recv verify --trust /etc/sluice/trust --json u.sluice | jq .reason
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
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

/// Verifies the file; a rejected bundle is an error (with `--json`, a JSON verdict on stdout
/// and the same exit code). With `--json`, a failure before any verdict (a broken trust
/// directory, an unreadable file) is a `sluice.error/1` object on stdout too, so a pipeline that
/// parses stdout never reads nothing (issue #17 item 7); stderr still has the text.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let json = args.json;
    let result = verify(args);
    if json && let Err(e) = &result {
        println!("{}", sluice_host::json::error_object(e));
    }
    result
}

fn verify(args: Args) -> Result<Exit, CommandError> {
    let trust = sluice_host::trust_dir::load_trust_dir(&args.trust)
        .map_err(|e| CommandError::usage(e.to_string()))?;
    let f = File::open(&args.file).map_err(|e| {
        CommandError::input(format!("cannot read {}: {e}", args.file.display()))
            .help("check the path and permissions")
    })?;
    let opts = VerifyOptions {
        now: sluice_host::time::now_unix(),
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
                let mut j = sluice_host::json::report("verify");
                sluice_host::json::set_time_secs(&mut j, "created", Some(h.created));
                sluice_host::json::set_time_secs(&mut j, "expires", h.expires);
                let fields = serde_json::json!({
                    "valid": true,
                    "outcome": "valid",
                    "bundle_id": v.id().to_hex(),
                    "signer": v.signer_name(),
                    "signer_key_id": h.signer.to_hex(),
                    "channel": h.channel, "sequence": h.sequence,
                    "entries": h.entries.len(), "file_bytes": h.total_file_bytes(),
                    "bundle_bytes": v.bundle_bytes(),
                });
                if let serde_json::Value::Object(f) = fields {
                    j.extend(f);
                }
                println!("{}", serde_json::Value::Object(j));
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
            Ok(Exit::Ok)
        }
        Err(e) if args.json => {
            let j = serde_json::json!({
                "valid": false,
                "outcome": "rejected",
                "reason": e.reason.code(),
                "detail": e.detail,
                "help": e.remediation(),
            });
            println!("{}", sluice_host::json::stamp("verify", j));
            Ok(rejected_exit(e.reason))
        }
        Err(e) => Err(CommandError::new(
            rejected_exit(e.reason),
            format!("bundle {} rejected: {e}", args.file.display()),
        )
        .help(e.remediation())),
    }
}
