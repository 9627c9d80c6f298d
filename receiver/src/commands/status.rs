//! `sluice-recv status`: what the store holds, read-only (safe while a listener runs).

use std::path::PathBuf;

use sluice_common::exit::{self, CommandError, Exit};

use crate::config::{Config, DEFAULT_SENT_GRACE_SECS, ListenLinkKey, Status, required};
use crate::store::inspect;

/// What each exit code means for `status` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "nothing overdue or missing"),
    (Exit::Failure, "internal error"),
    (
        Exit::Usage,
        "bad flags, config or trust directory, or the config's link key is malformed or missing",
    ),
    (Exit::Input, "the config's link key is unreadable"),
    (
        Exit::Invalid,
        "the audit chain is BROKEN (run `sluice-recv audit verify`)",
    ),
    (
        Exit::Incomplete,
        "a channel is overdue, or a bundle was sent but not received",
    ),
    (Exit::Storage, "the store cannot be read"),
];

/// Show what the store holds, overdue channels (with --trust) and bundles sent but never received
///
/// What the store holds: quarantine, rejected, staging, audit, channel marks; with --trust,
/// channels overdue against policy.toml's `expect_every`; and bundles the sender's heartbeat
/// ledger says were sent but that never arrived. Read-only, safe while a listener runs.
///
/// Examples:
///
///   sluice-recv status --store /var/lib/sluice --trust /etc/sluice/trust
///   sluice-recv --config /etc/sluice/recv.toml status --json | jq .sent_not_received
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct Args {
    /// The store directory. Required (here or as `store` in the --config file's [listen]).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Trust directory whose policy.toml `expect_every` rules are checked (overdue channels).
    /// Default: `trust` in the --config file's [listen], else no overdue check.
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Seconds after a bundle was first sent (per the heartbeat ledger) before its absence is
    /// listed under sent-not-received [default: 600].
    #[arg(long, value_name = "SECS")]
    pub sent_grace: Option<u64>,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Flags over the file (`store`/`trust` from `[listen]`) over defaults.
pub fn settle(a: Args, c: &Config) -> Result<Status, CommandError> {
    Ok(Status {
        store: required(a.store.or(c.listen.store.clone()), "--store DIR", "store")?,
        trust: a.trust.or(c.listen.trust.clone()),
        listen_link_key: (c.listen.link_key.is_some() || c.listen.bind.is_some()).then(|| {
            ListenLinkKey {
                path: c.listen.link_key.clone(),
                bind: c.listen.bind,
                insecure_public: c.listen.insecure_public_link_key.unwrap_or(false),
            }
        }),
        sent_grace_secs: a
            .sent_grace
            .or(c.status.sent_grace_secs)
            .unwrap_or(DEFAULT_SENT_GRACE_SECS),
        json: a.json,
    })
}

/// Prints the report; something overdue or missing is the exit code, not an error.
pub fn run(args: Status) -> Result<Exit, CommandError> {
    // `sluice-recv --config recv.toml status` is how docs and units say to check the file: a
    // link key `listen` would refuse fails here too, with the same code and help line.
    if let Some(k) = &args.listen_link_key {
        let endpoint = k.bind.map_or(crate::setup::Endpoint::Media, |b| {
            crate::setup::Endpoint::Udp(b.ip())
        });
        crate::setup::load_link_key(k.path.as_deref(), endpoint, k.insecure_public)?;
    }
    let trust = args
        .trust
        .as_deref()
        .map(crate::setup::load_trust)
        .transpose()?;
    let options = inspect::StatusOptions {
        trust: trust.as_ref(),
        now_unix_ms: sluice_host::time::now_unix_ms(),
        sent_grace_secs: args.sent_grace_secs,
    };
    let report = inspect::status_with(&args.store, &options).map_err(|e| {
        CommandError::storage(format!("cannot read store {}: {e}", args.store.display()))
    })?;
    // A monitoring timer alerts on non-zero: something the policy or the sender's ledger says
    // should be here is not.
    let late = if report.overdue_channels.is_empty() && report.sent_not_received.is_empty() {
        Exit::Ok
    } else {
        Exit::Incomplete
    };
    // A broken chain is the same finding as `audit verify`'s (4): evidence that the record was
    // altered outranks anything late (issue #17 item 6: printing BROKEN and exiting 0 hid it).
    let chain = if report.audit_chain_ok {
        Exit::Ok
    } else {
        Exit::Invalid
    };
    let code = chain.worst(late);
    if args.json {
        let mut v = sluice_host::json::report("status");
        if let serde_json::Value::Object(fields) =
            serde_json::to_value(&report).map_err(CommandError::internal)?
        {
            v.extend(fields);
        }
        let text = serde_json::to_string_pretty(&v).map_err(CommandError::internal)?;
        println!("{text}");
        return Ok(code);
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
        println!("  {}  {} bytes  {progress}", o.object_id, o.size_bytes);
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
            field("time"),
            field("outcome"),
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
    if args.trust.is_none() {
        println!("expected:    no --trust, so no overdue check");
    } else if report.expectations.is_empty() {
        println!("expected:    no channel has expect_every in policy.toml");
    } else {
        println!("expected:");
        for e in &report.expectations {
            let last = e.last_accepted.as_deref().unwrap_or("never");
            println!(
                "  {:?}  every {} s, last accepted {last}{}",
                e.channel,
                e.expected_every_secs,
                match (e.overdue, e.overdue_by_secs) {
                    (false, _) => String::new(),
                    (true, Some(late)) => format!("  OVERDUE by {late} s"),
                    (true, None) => "  OVERDUE (never delivered)".to_string(),
                }
            );
        }
    }
    if report.listener.is_none() {
        println!("ledger:      no heartbeat recorded yet, nothing to reconcile");
    } else if report.sent_not_received.is_empty() {
        println!(
            "ledger:      every bundle the sender reported more than {} s ago has arrived",
            report.sent_grace_secs
        );
    } else {
        println!("SENT BUT NOT RECEIVED (per the sender's heartbeat ledger):");
        let authenticated = report
            .listener
            .as_ref()
            .is_some_and(|l| l["last_heartbeat"]["authenticated"].as_bool() == Some(true));
        if !authenticated {
            println!(
                "  (unauthenticated heartbeat: under the public link key anyone can forge it; \
                 advisory only — use a secret link key)"
            );
        }
        for m in &report.sent_not_received {
            println!(
                "  object {}  {} bytes  first sent {} ({} s ago){}",
                m.object_id,
                m.object_bytes.unwrap_or(0),
                m.first_sent,
                m.age_secs,
                if m.in_staging {
                    "  partial in staging"
                } else {
                    ""
                }
            );
        }
    }
    match (&report.listener, &report.listener_error) {
        (Some(v), _) => println!("listener:    {v}"),
        (None, Some(e)) => println!("listener:    unreadable: {e}"),
        (None, None) => println!("listener:    no state/status.json (no listener has reported)"),
    }
    if chain != Exit::Ok {
        println!(
            "attention:   the audit chain is BROKEN (exit {}); run `sluice-recv audit verify` \
             to see where, and treat it as a security event (docs/operations.md)",
            code.code()
        );
    }
    if late != Exit::Ok {
        println!(
            "attention:   {} channel(s) overdue, {} bundle(s) sent but not received (exit {}); \
             check the link and the low side's outbox, or run `sluice-recv status --json`",
            report.overdue_channels.len(),
            report.sent_not_received.len(),
            late.code()
        );
    }
    Ok(code)
}
