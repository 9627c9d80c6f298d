//! Command line of `sluice-promote` and what each command does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;
use sluice_common::exit;
use sluice_host::logging::LogFormat;

use crate::approval::{self, Decision, Statement};
use crate::config::Config;
use crate::engine::{self, Engine, Outcome};
use crate::state::{self, Stage};

/// Exit code of `run` when another `run` already holds `DIR/promote/.lock`.
pub const BUSY: i32 = 10;

/// Promote verified bundles out of the Sluice quarantine store.
///
/// Scan, M-of-N reviewer approval, publish (directory, apt repository, OCI registry), per
/// channel (docs/promotion.md). A separate process from sluice-recv: it
/// reads the store, writes only DIR/promote/ and its targets, appends to the store's audit log,
/// never takes the receiver's lock and never touches the diode.
///
/// Examples:
///
///   sluice-promote run --store /var/lib/sluice --config /etc/sluice/promote.toml
///   sluice-promote run --store /var/lib/sluice --config /etc/sluice/promote.toml --once
///   sluice-promote approve --store /var/lib/sluice --key ~/.ssh/id_ed25519 BUNDLE_ID
///   sluice-promote reject --store /var/lib/sluice --key alice.key BUNDLE_ID --reason "not ordered"
///   sluice-promote status --store /var/lib/sluice
///   sluice-promote status --store /var/lib/sluice --json
///
/// Exit codes: 0 done (or waiting for approvals); 2 usage or invalid config; 3 an input (key,
/// bundle id) not found or unreadable; 4 the audit chain is broken or an entry fails
/// verification; 6 a bundle was stopped by this pass (scan failed, rejected, unpublishable);
/// 7 a bundle waits to retry publishing (target unreachable); 8 the store or promotion state
/// could not be read or written; 10 another `run` is active on this store.
#[derive(Debug, Parser)]
#[command(name = "sluice-promote", version, verbatim_doc_comment)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Run(RunArgs),
    Approve(ReviewArgs),
    Reject(RejectArgs),
    Status(StatusArgs),
}

/// Advance every quarantine entry through its channel's pipeline (daemon, or --once).
///
/// As a daemon it makes a pass every --interval seconds; --once makes one pass (for cron).
/// Never blocks the receiver: it does not take DIR/.lock, and its audit appends hold the
/// log's own lock for one record at a time.
///
/// Examples:
///
///   sluice-promote run --store /var/lib/sluice --config /etc/sluice/promote.toml
///   sluice-promote run --store /var/lib/sluice --config /etc/sluice/promote.toml --once
///
/// Exit codes (--once): 0 nothing stopped; 6 a bundle stopped; 7 a bundle waits to retry
/// publishing; 4 audit chain broken; 8 store error; 10 another run is active; 2 bad config.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// The receiver's store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Pipelines (promote.toml; every key in docs/promotion.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// One pass, then exit with its outcome.
    #[arg(long)]
    pub once: bool,
    /// Seconds between passes in daemon mode.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub interval: u64,
}

/// Sign an approval of a quarantine entry with a reviewer key.
///
/// The statement names the bundle id, its channel and the blake3 of its receipt.json; `run`
/// counts it only if the key is in the reviewer trust directory.
///
/// Example:
///
///   sluice-promote approve --store /var/lib/sluice --key /home/alice/.ssh/id_ed25519 BUNDLE_ID
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ReviewArgs {
    /// The receiver's store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Reviewer secret key: a sluice key or an unencrypted OpenSSH ed25519 key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Bundle id (64 hex), as `status` lists it.
    pub id: String,
}

/// Sign a rejection: the entry stops at the approve stage and is never published.
///
///
/// Example:
///
///   sluice-promote reject --store /var/lib/sluice --key alice.key BUNDLE_ID --reason "unexpected package"
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RejectArgs {
    #[command(flatten)]
    pub review: ReviewArgs,
    /// Why (recorded in the signed statement, the state and the audit log).
    #[arg(long)]
    pub reason: String,
}

/// Each entry's stage, what it waits for and why it stopped (read-only).
///
///
/// Examples:
///
///   sluice-promote status --store /var/lib/sluice
///   sluice-promote status --store /var/lib/sluice --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The receiver's store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn dispatch(cmd: Command) -> i32 {
    match cmd {
        Command::Run(a) => run(&a),
        Command::Approve(a) => review(&a, Decision::Approve, ""),
        Command::Reject(a) => review(&a.review, Decision::Reject, &a.reason),
        Command::Status(a) => status(&a),
    }
}

fn run(a: &RunArgs) -> i32 {
    let config = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    let _lock = match state::lock_run(&a.store) {
        Ok(Some(l)) => l,
        Ok(None) => {
            eprintln!(
                "error: another `sluice-promote run` is active on {} (DIR/promote/.lock)",
                a.store.display()
            );
            return BUSY;
        }
        Err(e) => {
            eprintln!("error: {}: {e}", a.store.display());
            return exit::STORAGE;
        }
    };
    let engine = Engine::new(&a.store, &config);
    if a.once {
        let r = engine.pass();
        print_pass(&r);
        return r.exit_code();
    }
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&term));
    }
    tracing::info!(store = %a.store.display(), interval = a.interval, "sluice-promote running");
    while !term.load(Ordering::Relaxed) {
        let r = engine.pass();
        print_pass(&r);
        for _ in 0..a.interval.max(1) {
            if term.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    exit::OK
}

fn print_pass(r: &engine::PassReport) {
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    for (id, o) in &r.outcomes {
        match o {
            Outcome::Published => eprintln!("{id}: published"),
            Outcome::Stopped(w) => eprintln!("{id}: STOPPED at {w}"),
            Outcome::Retrying(w) => eprintln!("{id}: publish deferred: {w}"),
            Outcome::Waiting(w) => eprintln!("{id}: waiting: {w}"),
            Outcome::Ignored(w) => tracing::info!(bundle = %id, "ignored: {w}"),
            Outcome::Done => {}
        }
    }
}

fn review(a: &ReviewArgs, decision: Decision, reason: &str) -> i32 {
    match review_inner(a, decision, reason) {
        Ok(msg) => {
            println!("{msg}");
            exit::OK
        }
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            code
        }
    }
}

fn review_inner(
    a: &ReviewArgs,
    decision: Decision,
    reason: &str,
) -> Result<String, (i32, anyhow::Error)> {
    if !state::is_bundle_id(&a.id) {
        return Err((
            exit::USAGE,
            anyhow::anyhow!(
                "{:?} is not a bundle id (64 lowercase hex, see `status`)",
                a.id
            ),
        ));
    }
    if decision == Decision::Reject && reason.trim().is_empty() {
        return Err((exit::USAGE, anyhow::anyhow!("--reason must not be empty")));
    }
    let key = approval::load_secret_key(&a.key).map_err(|e| (exit::INPUT, e))?;
    let chain = engine::read_chain(&a.store).map_err(|e| (exit::INVALID, anyhow::anyhow!(e)))?;
    let q = rustix::fs::open(
        a.store.join("quarantine"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        (
            exit::STORAGE,
            anyhow::anyhow!("{}/quarantine: {e}", a.store.display()),
        )
    })?;
    if !a.store.join("quarantine").join(&a.id).is_dir() {
        return Err((
            exit::INPUT,
            anyhow::anyhow!("no quarantine entry {} in {}", a.id, a.store.display()),
        ));
    }
    let (receipt, rh) = match engine::verified_entry(&q, &chain, &a.id) {
        Ok(v) => v,
        Err(engine::EntryProblem::Invalid(w)) => return Err((exit::INVALID, anyhow::anyhow!(w))),
        Err(engine::EntryProblem::NotYetAccepted) => {
            return Err((
                exit::INVALID,
                anyhow::anyhow!("entry {} has no accepted audit record", a.id),
            ));
        }
    };
    let now = sluice_host::time::now_unix_ms();
    let signed = approval::sign(
        &key,
        Statement {
            decision,
            bundle_id: a.id.clone(),
            channel: receipt.channel.clone(),
            receipt_blake3: rh.clone(),
            reason: reason.to_string(),
        },
        now,
    )
    .map_err(|e| (exit::FAILURE, e))?;
    let storage = |e: std::io::Error| (exit::STORAGE, anyhow::Error::from(e));
    state::promote_root(&a.store).map_err(storage)?;
    let dir = state::entry_dir(&a.store, &a.id);
    state::ensure_dir(&dir, 0o750).map_err(storage)?;
    let adir = dir.join(state::APPROVALS_DIR);
    state::ensure_dir(&adir, 0o750).map_err(storage)?;
    let bytes = serde_json::to_vec_pretty(&signed).map_err(|e| (exit::FAILURE, e.into()))?;
    state::write_atomic(&adir, &format!("{}.json", signed.key_id), &bytes, 0o644)
        .map_err(storage)?;
    let rec = sluice_recv::store::audit::AuditRecord {
        outcome: "promote_review".into(),
        bundle_id: Some(a.id.clone()),
        channel: Some(receipt.channel.clone()),
        sequence: Some(receipt.sequence),
        signer: Some(signed.key_id.clone()),
        reason: Some(decision.as_str().into()),
        detail: Some(if reason.is_empty() {
            format!("{} signed by key {}", decision.as_str(), signed.key_id)
        } else {
            format!(
                "{} signed by key {}: {reason}",
                decision.as_str(),
                signed.key_id
            )
        }),
        path: Some(format!("promote/{}/approvals/{}.json", a.id, signed.key_id)),
        receipt_blake3: Some(rh),
        ..Default::default()
    };
    sluice_recv::store::audit::append_shared(&a.store, rec).map_err(storage)?;
    Ok(format!(
        "{} of {} (channel {}, sequence {}) signed by key {}; `sluice-promote run` counts it if that key is in the reviewer trust directory",
        if decision == Decision::Approve {
            "approval"
        } else {
            "rejection"
        },
        a.id,
        receipt.channel,
        receipt.sequence,
        signed.key_id
    ))
}

/// One line of `status`.
#[derive(Debug, Serialize)]
pub struct EntryStatus {
    pub bundle_id: String,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    /// `new` (not yet seen by `run`), `scan`, `approve`, `publish`, `published`, `stopped`.
    pub stage: String,
    pub waiting_for: Option<String>,
    pub reason: Option<String>,
    pub published: Vec<String>,
    /// Key ids with a signed approval or rejection on file (judged by `run`).
    pub reviews: Vec<String>,
    pub history: Vec<state::Transition>,
}

pub fn collect_status(store: &Path) -> anyhow::Result<Vec<EntryStatus>> {
    let mut ids: Vec<String> = match std::fs::read_dir(store.join("quarantine")) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| state::is_bundle_id(n))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("{}/quarantine: {e}", store.display()),
    };
    for id in state::list(store)? {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let reviews = engine::load_statements(store, &id)
            .unwrap_or_default()
            .into_iter()
            .map(|s| format!("{} {}", s.key_id, s.statement.decision.as_str()))
            .collect();
        let st = state::load(store, &id)?;
        out.push(match st {
            Some(s) => EntryStatus {
                bundle_id: id,
                channel: Some(s.channel),
                sequence: Some(s.sequence),
                stage: s.stage.as_str().into(),
                waiting_for: s.waiting_for,
                reason: s.reason,
                published: s.published,
                reviews,
                history: s.history,
            },
            None => {
                let r = std::fs::read(store.join("quarantine").join(&id).join("receipt.json"))
                    .ok()
                    .and_then(|b| {
                        serde_json::from_slice::<sluice_recv::store::audit::Receipt>(&b).ok()
                    });
                EntryStatus {
                    bundle_id: id,
                    channel: r.as_ref().map(|r| r.channel.clone()),
                    sequence: r.as_ref().map(|r| r.sequence),
                    stage: "new".into(),
                    waiting_for: Some(
                        "a `sluice-promote run` pass (or no pipeline for its channel)".into(),
                    ),
                    reason: None,
                    published: vec![],
                    reviews,
                    history: vec![],
                }
            }
        });
    }
    Ok(out)
}

fn status(a: &StatusArgs) -> i32 {
    let entries = match collect_status(&a.store) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::STORAGE;
        }
    };
    if a.json {
        let doc =
            sluice_host::json::stamp("promote-status", serde_json::json!({ "entries": entries }));
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILURE;
            }
        }
        return exit::OK;
    }
    if entries.is_empty() {
        println!("no quarantine entries");
    }
    for e in &entries {
        println!(
            "{}  {}#{}  {}",
            e.bundle_id,
            e.channel.as_deref().unwrap_or("?"),
            e.sequence.map_or_else(|| "?".into(), |s| s.to_string()),
            e.stage.to_uppercase()
        );
        if let Some(w) = &e.waiting_for {
            println!("    waiting for: {w}");
        }
        if let Some(r) = &e.reason {
            let label = if e.stage == Stage::Stopped.as_str() {
                "stopped"
            } else {
                "last failure"
            };
            println!("    {label}: {r}");
        }
        if !e.published.is_empty() {
            println!("    published to: {}", e.published.join(", "));
        }
        for t in &e.history {
            println!(
                "    {} {} {}{}{}",
                t.time,
                t.stage,
                t.result,
                t.target
                    .as_ref()
                    .map_or(String::new(), |x| format!(" [{x}]")),
                if t.reviewers.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", t.reviewers.join(", "))
                }
            );
        }
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_help_has_examples() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("sluice-promote run --store /var/lib/sluice --config"));
        assert!(help.contains("Exit codes:"));
        let c = Cli::try_parse_from([
            "sluice-promote",
            "reject",
            "--store",
            "/s",
            "--key",
            "k",
            &"a".repeat(64),
            "--reason",
            "no",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Reject(ref r) if r.reason == "no"));
    }
}
