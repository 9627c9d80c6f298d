//! `sluice-recv status`: what the store holds, read-only (safe while a listener runs).

use std::path::PathBuf;

use sluice_common::exit;

use crate::store::inspect;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> i32 {
    let report = match inspect::status(&args.store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read store {}: {e}", args.store.display());
            return exit::STORAGE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILURE;
            }
        }
        return exit::OK;
    }
    println!("store:       {}", report.store);
    println!("quarantine:  {} bundle(s)", report.quarantine_entries);
    println!("rejected:    {} record(s)", report.rejected_records);
    println!(
        "staging:     {} object(s), {} byte(s); {} extraction(s) in progress",
        report.staging_objects.len(),
        report.staging_bytes,
        report.staging_extractions
    );
    for o in &report.staging_objects {
        let progress = match o.progress_bytes {
            Some(b) => format!("progress saved ({b} bytes)"),
            None => "no progress saved".to_owned(),
        };
        println!("  {}  {} bytes  {progress}", o.object_id, o.bytes);
    }
    println!(
        "audit:       {} record(s), chain {}",
        report.audit_records,
        if report.audit_chain_ok {
            "ok"
        } else {
            "BROKEN (run `sluice-recv audit verify`)"
        }
    );
    if let Some(last) = &report.last_audit_record {
        let field = |k: &str| {
            last.get(k)
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "  last: seq {} {} {} bundle {} channel {} sequence {}",
            field("seq"),
            field("time_rfc3339"),
            field("decision"),
            field("bundle_id"),
            field("channel"),
            field("sequence")
        );
    }
    if report.channels.is_empty() {
        println!("channels:    none yet");
    } else {
        println!("channels:");
        for c in &report.channels {
            match (&c.error, c.sequence) {
                (Some(e), _) => println!("  {}  {e}", c.file),
                (None, Some(s)) => println!(
                    "  {:?}  high-water sequence {s} (bundle {})",
                    c.channel,
                    c.bundle_id.as_deref().unwrap_or("-")
                ),
                (None, None) => println!("  {:?}  no mark", c.channel),
            }
        }
    }
    for e in &report.errors {
        println!("unreadable:  {e}");
    }
    match (&report.listener, &report.listener_error) {
        (Some(v), _) => println!("listener:    {v}"),
        (None, Some(e)) => println!("listener:    unreadable: {e}"),
        (None, None) => println!("listener:    no state/status.json (no listener has reported)"),
    }
    exit::OK
}
