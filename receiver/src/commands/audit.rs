//! `sluice-recv audit verify`: recompute the audit chain and re-check every quarantine entry
//! against its receipt and its audit record. Read-only.

use std::path::PathBuf;

use sluice_common::exit;

use crate::store::inspect;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain (every `prev` matches, `seq` has no gaps) and every quarantined
    /// bundle (every file re-hashed; no missing, extra or symlinked files; receipt unchanged).
    /// Exit 0 if everything checks out, 4 naming each problem otherwise.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> i32 {
    match args.command {
        AuditCommand::Verify(v) => verify(v),
    }
}

fn verify(args: VerifyArgs) -> i32 {
    let report = match inspect::verify_store(&args.store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read store {}: {e}", args.store.display());
            return exit::STORAGE;
        }
    };
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
    if ok { exit::OK } else { exit::INVALID }
}
