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
        let mut v = sluice_host::json::report("audit-verify");
        v.insert("ok".into(), ok.into());
        v.insert("audit_records".into(), report.audit_records.into());
        v.insert("entries_checked".into(), report.entries_checked.into());
        v.insert(
            "problems".into(),
            report.problems.iter().map(|p| problem_json(p)).collect(),
        );
        println!("{}", serde_json::Value::Object(v));
    } else {
        for p in &report.problems {
            println!("PROBLEM: {p}");
        }
        println!(
            "{}: {}, {} checked, {}",
            if ok { "ok" } else { "FAILED" },
            plural(report.audit_records, "audit record", "audit records"),
            plural(
                report.entries_checked,
                "quarantine entry",
                "quarantine entries"
            ),
            plural(report.problems.len(), "problem", "problems"),
        );
    }
    Ok(if ok { Exit::Ok } else { Exit::Invalid })
}

/// `1 problem`, `2 problems`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One problem as a structured object for a SIEM (docs/schema/audit-verify.schema.json):
/// `kind` is `audit_chain` (audit.jsonl itself), `quarantine_entry` (an entry against its
/// receipt and audit record) or `store` (a part of the store that cannot be read); `path` the
/// store-relative path it is about; `line` the audit.jsonl line, when there is one; `detail`
/// the finding in words; `message` the whole text line that the text output prints.
fn problem_json(text: &str) -> serde_json::Value {
    let (subject, detail) = text.split_once(": ").unwrap_or(("", text));
    let (path, entry_detail) = match subject.strip_prefix("quarantine/") {
        // `quarantine/<id>: <file>: <finding>`: the entry is the path.
        Some(id) if !id.is_empty() => (format!("quarantine/{id}"), detail),
        _ => (subject.to_owned(), detail),
    };
    let kind = if path == "audit.jsonl" {
        "audit_chain"
    } else if path.starts_with("quarantine/") && path != "quarantine/" {
        "quarantine_entry"
    } else {
        "store"
    };
    let line = entry_detail
        .strip_prefix("line ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| kind == "audit_chain");
    serde_json::json!({
        "kind": kind,
        "path": path,
        "line": line,
        "detail": entry_detail,
        "message": text,
    })
}
