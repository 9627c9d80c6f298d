//! `sluice-recv audit verify`: recompute the audit chain and re-check every quarantine entry
//! against its receipt and its audit record. Read-only.

use std::path::PathBuf;

use sluice_common::exit::{self, CommandError, Exit};

use crate::store::inspect;

/// What each exit code means for `audit verify` (rendered into `--help`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "the chain and every quarantined bundle check out"),
    (
        Exit::Invalid,
        "a problem was found (each is named): treat as a security event",
    ),
    (Exit::Storage, "the store cannot be read"),
];

/// Audit-log and quarantine integrity checks
///
/// Examples:
///
///   sluice-recv audit verify --store /var/lib/sluice
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    Verify(VerifyArgs),
}

/// Check the audit chain and every quarantined bundle
///
/// The chain: every record's `prev` matches the hash of the one before, and `seq` has no gaps.
/// Every quarantined bundle: every file re-hashed; no missing, extra or symlinked files; receipt
/// unchanged. Read-only, safe while a listener runs.
///
/// Examples:
///
///   sluice-recv audit verify --store /var/lib/sluice
///   sluice-recv audit verify --store /var/lib/sluice --json | jq .problems
#[derive(Debug, clap::Args)]
#[command(
    long_about,
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct VerifyArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<Exit, CommandError> {
    match args.command {
        AuditCommand::Verify(v) => verify(v),
    }
}

fn verify(args: VerifyArgs) -> Result<Exit, CommandError> {
    let report = inspect::verify_store(&args.store).map_err(|e| {
        CommandError::storage(format!("cannot read store {}: {e}", args.store.display()))
    })?;
    let ok = report.problems.is_empty();
    if args.json {
        let v = serde_json::json!({
            "ok": ok,
            "audit_records": report.audit_records,
            "entries_checked": report.entries_checked,
            "problems": report.problems,
        });
        println!("{v}");
    } else {
        for p in &report.problems {
            println!("PROBLEM: {p}");
        }
        println!(
            "{}: {} audit record(s), {} quarantine entr(y/ies) checked, {} problem(s)",
            if ok { "ok" } else { "FAILED" },
            report.audit_records,
            report.entries_checked,
            report.problems.len()
        );
    }
    Ok(if ok { Exit::Ok } else { Exit::Invalid })
}
