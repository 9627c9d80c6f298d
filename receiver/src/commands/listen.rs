//! `sluice-recv listen`: receive frames from the diode, reassemble, verify, commit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::transport::params::Limits;
use sluice_common::transport::recv::ReceiverConfig;

use crate::config::{
    DEFAULT_DECODE_THREADS, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_DATAGRAM,
    DEFAULT_MAX_OBJECT_GIB, DEFAULT_MAX_SESSIONS, DEFAULT_MEMORY_MIB, DEFAULT_RCVBUF,
    DEFAULT_STAGING_QUOTA_GIB, Listen, ListenSection, required,
};
use crate::ingest::{Outcome, OutcomeKind, Pipeline};
use crate::metrics::{Exposition, MetricsPage};
use crate::net::{DiodeSocket, buffer_advice};
use crate::report::{outcome_json, rejected_exit};
use crate::setup;
use crate::store::Source;
use crate::store::inspect;

/// What each exit code means for `listen` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (
        Exit::Ok,
        "stopped by SIGINT/SIGTERM (whatever was decided: outcomes are in the log, --json, \
         metrics and the audit log), or --max-bundles reached with every bundle accepted or a \
         duplicate",
    ),
    (Exit::Failure, "internal error"),
    (
        Exit::Usage,
        "bad flags, config, link key or trust directory, or no secret link key on a non-loopback --bind",
    ),
    (Exit::Input, "the link key unreadable"),
    (Exit::Invalid, "--max-bundles: a bundle failed verification"),
    (
        Exit::Untrusted,
        "--max-bundles: a bundle's signer is not trusted",
    ),
    (
        Exit::Policy,
        "--max-bundles: a bundle was refused by policy",
    ),
    (
        Exit::Incomplete,
        "--max-bundles: a transfer was rejected short of symbols",
    ),
    (Exit::Storage, "the store cannot be opened"),
    (Exit::Network, "cannot bind the address or serve metrics"),
];

/// Listen on the diode's receiving interface and commit verified bundles to the store.
///
/// Frames are reassembled into staging (memory stays within --memory whatever the bundle size),
/// every complete bundle is verified against the trust directory, and only then moved into
/// DIR/quarantine/<bundle-id>/ with a receipt and an audit record. Anything else goes to
/// DIR/rejected/ with its reason. Partial transfers persist in staging: after a restart, the
/// next pass completes only what is missing. This command never transmits.
///
/// Examples:
///
///   sluice-recv listen --bind 10.0.0.2:7000 --store /var/lib/sluice --trust /etc/sluice/trust \
///       --link-key /etc/sluice/link.key
///   sluice-recv listen --bind 127.0.0.1:7000 --store ./store --trust ./trust --metrics 127.0.0.1:9187
///
/// The link key is required unless --bind is loopback (make it with `sluice-send link-keygen`
/// on the low side and copy the same file here).
///
/// Stops cleanly on SIGINT/SIGTERM (progress saved, nothing half-written) and exits 0: a
/// daemon's stop is not a verdict, so a service restart never leaves the unit "failed" because
/// some bundle was rejected hours ago. Each outcome is reported as it happens (an INFO log line,
/// --json, metrics, the audit log). A one-shot run with --max-bundles N instead exits with the
/// worst verdict of its N decisions, like `import`.
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = sluice_common::exit::help_table_combined(EXIT_CODES)
)]
pub struct Args {
    /// Address and UDP port to receive on (the diode-facing interface). Required (here or as
    /// `bind` in the --config file's [listen] section).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Store directory (quarantine/, rejected/, staging/, audit.jsonl); created if missing.
    /// Required (here or in --config).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Trust directory: *.pub signer keys and an optional policy.toml. Required (here or in
    /// --config).
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Shared link key (`sluice-send link-keygen`; 32 raw bytes or 64 hex digits), the same file
    /// as the sender's. Required unless --bind is loopback or --insecure-public-link-key is given.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Accept frames under the documented public link key on a non-loopback --bind: corruption
    /// is still detected, forgery is not. For test links only.
    #[arg(long)]
    pub insecure_public_link_key: bool,
    /// Serve Prometheus metrics on this management address (never the diode interface).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// UDP receive buffer to request, in bytes (forced when privileged) [default: 67108864].
    #[arg(long, value_name = "BYTES", value_parser = sluice_common::size::parse_size_usize)]
    pub rcvbuf: Option<usize>,
    /// Largest datagram accepted, in bytes (the link MTU minus 28) [default: 8972].
    #[arg(long, value_name = "BYTES", value_parser = sluice_common::size::parse_size_usize)]
    pub max_datagram: Option<usize>,
    /// Memory budget for buffered symbols and in-flight decodes, in MiB [default: 48].
    #[arg(long, value_name = "MIB", value_parser = sluice_common::size::parse_mib)]
    pub memory: Option<u64>,
    /// Staging quota: declared bytes of partial objects kept on disk, in GiB [default: 128].
    #[arg(long, value_name = "GIB", value_parser = sluice_common::size::parse_gib)]
    pub staging_quota: Option<u64>,
    /// Largest object (bundle) accepted, in GiB [default: 64].
    #[arg(long, value_name = "GIB", value_parser = sluice_common::size::parse_gib)]
    pub max_object: Option<u64>,
    /// Concurrent transfers tracked at once [default: 64].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Give up on a transfer after this many seconds without a valid frame (progress is kept)
    /// [default: 120].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Log a WARN while no authenticated heartbeat has arrived for this many seconds (the
    /// sender's watcher is down or the link is dead); repeated every SECS while it lasts. Set it
    /// a few times the sender's --heartbeat-interval [default: never warn].
    #[arg(long, value_name = "SECS")]
    pub heartbeat_timeout: Option<u64>,
    /// RaptorQ decode threads [default: 1].
    #[arg(long, value_name = "N")]
    pub decode_threads: Option<usize>,
    /// Exit after this many bundles were decided (accepted, duplicate or rejected): for one-shot
    /// jobs and tests. Exit code 0 when all were accepted or duplicates.
    #[arg(long, value_name = "N")]
    pub max_bundles: Option<u64>,
    /// Print one JSON line per outcome on stdout, for automation.
    #[arg(long)]
    pub json: bool,
}

/// Flags over `[listen]` over defaults.
pub fn settle(a: Args, f: &ListenSection) -> Result<Listen, CommandError> {
    Ok(Listen {
        bind: required(a.bind.or(f.bind), "--bind ADDR:PORT", "bind")?,
        store: required(a.store.or(f.store.clone()), "--store DIR", "store")?,
        trust: required(a.trust.or(f.trust.clone()), "--trust DIR", "trust")?,
        link_key: a.link_key.or(f.link_key.clone()),
        insecure_public_link_key: a.insecure_public_link_key
            || f.insecure_public_link_key.unwrap_or(false),
        metrics: a.metrics.or(f.metrics),
        rcvbuf: a.rcvbuf.or(f.rcvbuf).unwrap_or(DEFAULT_RCVBUF),
        max_datagram: a
            .max_datagram
            .or(f.max_datagram)
            .unwrap_or(DEFAULT_MAX_DATAGRAM),
        memory: a.memory.or(f.memory).unwrap_or(DEFAULT_MEMORY_MIB),
        staging_quota: a
            .staging_quota
            .or(f.staging_quota)
            .unwrap_or(DEFAULT_STAGING_QUOTA_GIB),
        max_object: a
            .max_object
            .or(f.max_object)
            .unwrap_or(DEFAULT_MAX_OBJECT_GIB),
        max_sessions: a
            .max_sessions
            .or(f.max_sessions)
            .unwrap_or(DEFAULT_MAX_SESSIONS),
        idle_timeout: a
            .idle_timeout
            .or(f.idle_timeout)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
        heartbeat_timeout: a
            .heartbeat_timeout
            .or(f.heartbeat_timeout)
            .filter(|&s| s > 0),
        decode_threads: a
            .decode_threads
            .or(f.decode_threads)
            .unwrap_or(DEFAULT_DECODE_THREADS),
        max_bundles: a.max_bundles.or(f.max_bundles),
        json: a.json || f.json.unwrap_or(false),
    })
}

/// Runs the listener with its options resolved (flags over --config over defaults, in
/// [`settle`]).
pub fn run(args: Listen) -> Result<Exit, CommandError> {
    let link_key = setup::load_link_key(
        args.link_key.as_deref(),
        setup::Endpoint::Udp(args.bind.ip()),
        args.insecure_public_link_key,
    )?;
    if link_key.is_public_default() {
        tracing::warn!(
            "no --link-key: using the public default key, which detects corruption but not forged \
             frames; share a secret key with the sender (`sluice-send link-keygen`)"
        );
    }
    let trust = setup::load_trust(&args.trust)?;
    // Bind before the store is opened (and created): a listener that cannot bind must leave no
    // empty store behind at a path that may have been a typo (issue #17 item 9).
    let socket = DiodeSocket::bind(args.bind, args.rcvbuf).map_err(|e| {
        CommandError::network(format!("cannot bind {}: {e}", args.bind))
            .help("check the address is on this host and the port is free")
    })?;
    let store = setup::open_store(&args.store, args.staging_quota << 30)?;
    // policy.toml `expect_every`: alerts for channels that stopped delivering.
    let last_accepted = inspect::last_accepted_by_channel(&args.store).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read past deliveries; overdue checks start from none");
        Default::default()
    });
    let mut overdue = inspect::OverdueWatch::new(&trust, last_accepted);
    if let Some(advice) = buffer_advice(args.rcvbuf, socket.granted_buffer) {
        tracing::warn!("{advice}");
    }

    let limits = Limits {
        max_object_bytes: args.max_object << 30,
        ..Limits::default()
    };
    // Under the public key anyone on the low network can forge a heartbeat: it is shown, but
    // marked unauthenticated (advisory), never as the sender's word (docs/threat-model.md, 9).
    let heartbeats_authenticated = !link_key.is_public_default();
    let mut config = ReceiverConfig::new(link_key);
    config.limits = limits;
    config.max_sessions = args.max_sessions;
    config.max_buffered_bytes = args.memory << 20;
    config.max_staging_bytes = args.staging_quota << 30;
    config.idle_timeout = Duration::from_secs(args.idle_timeout);

    let started = Instant::now();
    let mut pipeline = Pipeline::start(
        store,
        trust,
        config,
        Source::Udp,
        args.decode_threads,
        started,
    )
    .map_err(|e| CommandError::storage(format!("cannot resume staged transfers: {e}")))?;

    let page = MetricsPage::for_store(&args.store);
    if let Some(addr) = args.metrics {
        let bound = crate::http::serve(addr, page.clone())
            .map_err(|e| CommandError::network(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(%bound, "serving metrics");
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
            CommandError::new(
                Exit::Failure,
                format!("cannot install a signal handler: {e}"),
            )
        })?;
    }
    tracing::info!(bind = %socket.local_addr(), store = %args.store.display(),
        rcvbuf = socket.granted_buffer, "listening");

    let mut totals = Totals::default();
    let mut batch = socket.new_batch(args.max_datagram, 8);
    let mut last_report = Instant::now();
    let mut link_warn = LinkWarnings::new(started, args.heartbeat_timeout);
    let status_path = args.store.join("state").join("status.json");
    // The worst verdict of the run: the exit code of a --max-bundles run only (see `Args`).
    let mut worst_verdict = Exit::Ok;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = pipeline
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match socket.recv(&mut batch, wait) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "receive failed; retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let now = Instant::now();
        for datagram in batch.datagrams() {
            pipeline.handle_datagram(now, datagram);
        }
        pipeline.drive(now);
        for outcome in pipeline.take_outcomes() {
            if let (OutcomeKind::Accepted { .. }, Some(channel)) = (&outcome.kind, &outcome.channel)
            {
                overdue.accepted(channel, sluice_host::time::now_unix());
            }
            worst_verdict = worst_verdict.worst(totals.record(&outcome, args.json));
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let drops = socket.kernel_drops();
            overdue.check(sluice_host::time::now_unix());
            link_warn.check(Instant::now(), &pipeline);
            page.set(render_metrics(&pipeline, &totals, drops) + &overdue.metrics_text());
            write_status(
                &status_path,
                &pipeline,
                &totals,
                drops,
                &args,
                &overdue.overdue_channels(),
                heartbeats_authenticated,
            );
        }
        if args
            .max_bundles
            .is_some_and(|n| totals.decided >= n && pipeline.pending_verifications() == 0)
        {
            break;
        }
    }

    tracing::info!("stopping: saving progress of live transfers");
    pipeline.checkpoint_all(Instant::now());
    let drops = socket.kernel_drops();
    let remaining = pipeline.finish();
    for outcome in &remaining {
        worst_verdict = worst_verdict.worst(totals.record(outcome, args.json));
    }
    write_status_final(&status_path, &totals, drops);
    if stop.load(Ordering::Relaxed) {
        // A clean stop by signal: the outcomes were reported one by one; see `Args`.
        tracing::info!(
            accepted = totals.accepted,
            duplicates = totals.duplicates,
            rejected = totals.rejected.values().sum::<u64>(),
            incomplete = totals.incomplete,
            "stopped"
        );
        return Ok(Exit::Ok);
    }
    Ok(worst_verdict)
}

/// How often at most the "datagrams fail their tag" WARN repeats while it lasts.
const BAD_TAG_WARN_EVERY: Duration = Duration::from_secs(60);

/// The two WARNs about the link itself, rate-limited: datagrams arrive but fail their integrity
/// tag (a link key that differs from the sender's looks exactly like this: every frame fails),
/// and no heartbeat for `--heartbeat-timeout`. Checked once a second from the receive loop.
struct LinkWarnings {
    /// `bad_tag` and the authenticated-frame count at the last check.
    seen_bad_tag: u64,
    seen_good: u64,
    last_bad_tag_warn: Option<Instant>,
    started: Instant,
    heartbeat_timeout: Option<Duration>,
    last_heartbeat_warn: Option<Instant>,
}

impl LinkWarnings {
    fn new(started: Instant, heartbeat_timeout_secs: Option<u64>) -> Self {
        LinkWarnings {
            seen_bad_tag: 0,
            seen_good: 0,
            last_bad_tag_warn: None,
            started,
            heartbeat_timeout: heartbeat_timeout_secs.map(Duration::from_secs),
            last_heartbeat_warn: None,
        }
    }

    fn check(&mut self, now: Instant, pipeline: &Pipeline) {
        let s = pipeline.stats();
        let good = s.symbols_accepted + s.heartbeats + s.end_frames + s.duplicate_symbols;
        let bad = s.bad_tag.saturating_sub(self.seen_bad_tag);
        let new_good = good.saturating_sub(self.seen_good);
        let due = self
            .last_bad_tag_warn
            .is_none_or(|t| now.duration_since(t) >= BAD_TAG_WARN_EVERY);
        if bad > 0 && due {
            self.last_bad_tag_warn = Some(now);
            self.seen_bad_tag = s.bad_tag;
            self.seen_good = good;
            if new_good == 0 {
                tracing::warn!(
                    bad_tag = s.bad_tag,
                    new = bad,
                    "datagrams arrive but every one fails its integrity tag: link key mismatch? \
                     --link-key must hold the same key as the sender's --link-key"
                );
            } else {
                tracing::warn!(
                    bad_tag = s.bad_tag,
                    new = bad,
                    "some datagrams fail their integrity tag: corruption on the link, or a \
                     second sender with another link key?"
                );
            }
        } else if bad == 0 {
            // While failures wait out the rate limit, the window keeps growing instead, so the
            // next warning judges everything since the last one.
            self.seen_bad_tag = s.bad_tag;
            self.seen_good = good;
        }
        let Some(limit) = self.heartbeat_timeout else {
            return;
        };
        let since = pipeline
            .last_heartbeat()
            .map_or(self.started, |hb| hb.received_at);
        let silent = now.saturating_duration_since(since);
        let due = self
            .last_heartbeat_warn
            .is_none_or(|t| now.duration_since(t) >= limit);
        if silent >= limit && due {
            self.last_heartbeat_warn = Some(now);
            tracing::warn!(
                silent_secs = silent.as_secs(),
                heartbeat_timeout_secs = limit.as_secs(),
                "no heartbeat for {} s: is the sender's `sluice-send watch` running, and the link \
                 up? (`sluice-recv status` shows the last heartbeat)",
                silent.as_secs()
            );
        }
    }
}

/// Counters across the listener's life, for metrics, status and the exit code.
#[derive(Default)]
pub struct Totals {
    pub accepted: u64,
    pub duplicates: u64,
    pub incomplete: u64,
    pub storage_errors: u64,
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    pub decided: u64,
}

impl Totals {
    /// Counts an outcome, prints it as JSON when asked, and returns its exit code.
    pub fn record(&mut self, outcome: &Outcome, json: bool) -> Exit {
        let code = match &outcome.kind {
            OutcomeKind::Accepted { .. } => {
                self.accepted += 1;
                Exit::Ok
            }
            OutcomeKind::Duplicate => {
                self.duplicates += 1;
                Exit::Ok
            }
            OutcomeKind::Rejected { reason, .. } => {
                *self.rejected.entry(reason.code()).or_default() += 1;
                rejected_exit(*reason)
            }
            OutcomeKind::Incomplete { .. } => {
                self.incomplete += 1;
                Exit::Ok
            }
            OutcomeKind::StorageError { .. } => {
                self.storage_errors += 1;
                Exit::Ok
            }
        };
        if outcome.kind.is_decision() {
            self.decided += 1;
        }
        crate::report::log_decided(outcome);
        if json {
            println!("{}", outcome_json(outcome));
        }
        code
    }
}

fn render_metrics(pipeline: &Pipeline, totals: &Totals, kernel_drops: Option<u64>) -> String {
    let s = pipeline.stats();
    let a = pipeline.admission_counters();
    let mut e = Exposition::default();
    e.counter(
        "sluice_datagrams_total",
        "Datagrams read from the socket.",
        s.datagrams,
    )
    .counter(
        "sluice_frames_malformed_total",
        "Datagrams dropped as malformed.",
        s.malformed,
    )
    .counter(
        "sluice_frames_bad_tag_total",
        "Frames whose integrity tag failed (corruption or forgery).",
        s.bad_tag,
    )
    .counter(
        "sluice_frames_unknown_kind_total",
        "Frames of an unknown version or kind.",
        s.unknown_kind,
    )
    .counter(
        "sluice_frames_over_limit_total",
        "Frames with parameters beyond this receiver's limits.",
        s.over_limit,
    )
    .counter(
        "sluice_frames_param_mismatch_total",
        "Frames whose parameters contradict their object's.",
        s.param_mismatch,
    )
    .counter(
        "sluice_frames_duplicate_total",
        "Symbols received twice.",
        s.duplicate_symbols,
    )
    .counter(
        "sluice_frames_late_total",
        "Symbols for blocks or objects already complete.",
        s.late_symbols,
    )
    .counter(
        "sluice_frames_budget_dropped_total",
        "Symbols dropped because the memory budget was full.",
        s.budget_drops,
    )
    .counter(
        "sluice_frames_staging_refused_total",
        "Frames dropped while their object's staging failure waits out its retry pause.",
        s.staging_refused,
    )
    .counter(
        "sluice_frames_over_cap_total",
        "Symbols beyond K + repair surplus for their block.",
        s.over_cap_symbols,
    )
    .counter(
        "sluice_frames_end_total",
        "Object-end frames received (authenticated, within limits).",
        s.end_frames,
    )
    .counter(
        "sluice_sessions_opened_total",
        "Transfers opened (including restored).",
        s.sessions_opened,
    )
    .counter(
        "sluice_sessions_abandoned_total",
        "Transfers abandoned at the idle timeout or deadline.",
        s.objects_abandoned,
    )
    .counter(
        "sluice_symbols_accepted_total",
        "Symbols buffered for decoding.",
        s.symbols_accepted,
    )
    .counter(
        "sluice_sessions_refused_total",
        "New transfers refused (session table or staging quota full).",
        s.sessions_refused,
    )
    .counter(
        "sluice_blocks_copied_total",
        "Blocks complete without FEC decoding.",
        s.blocks_copied,
    )
    .counter(
        "sluice_blocks_repaired_total",
        "Blocks recovered by RaptorQ decoding.",
        s.blocks_decoded,
    )
    .counter(
        "sluice_blocks_evicted_total",
        "Incomplete blocks evicted to stay within memory.",
        s.blocks_evicted,
    )
    .counter(
        "sluice_heartbeats_total",
        "Authenticated heartbeats received.",
        s.heartbeats,
    )
    .counter(
        "sluice_objects_unauthenticated_refused_total",
        "Objects whose first bytes did not verify under a trusted key (counted, never recorded).",
        a.rejected_unauthenticated,
    )
    .counter(
        "sluice_sessions_unauthenticated_expired_total",
        "Unauthenticated transfers forgotten (idle, replaced, or ended before authenticating).",
        s.sessions_unauthenticated_expired,
    )
    .counter(
        "sluice_records_suppressed_total",
        "Duplicate or rejection records not written (per-bundle hourly window or record budget).",
        a.records_suppressed_window + a.records_suppressed_budget,
    )
    .counter(
        "sluice_replays_unverified_total",
        "Resends of completed objects, counted without a record.",
        a.replays_unverified,
    )
    .counter(
        "sluice_decodes_deferred_total",
        "Decodes that waited for a worker (never run on the receive thread).",
        pipeline.decodes_deferred(),
    )
    .counter(
        "sluice_bundles_accepted_total",
        "Bundles committed to quarantine.",
        totals.accepted,
    )
    .counter(
        "sluice_bundles_duplicate_total",
        "Bundles received again after acceptance.",
        totals.duplicates,
    )
    .counter(
        "sluice_transfers_incomplete_total",
        "Transfers that ended short of symbols.",
        totals.incomplete,
    )
    .counter(
        "sluice_storage_errors_total",
        "Store failures.",
        totals.storage_errors + pipeline.storage_errors,
    )
    .labelled_counter(
        "sluice_bundles_rejected_total",
        "Bundles rejected, by reason.",
        "reason",
        &totals
            .rejected
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>(),
    )
    .gauge(
        "sluice_buffered_bytes",
        "Bytes of symbols buffered now.",
        pipeline.buffered_bytes() as f64,
    )
    .gauge(
        "sluice_sessions",
        "Transfers in progress.",
        pipeline.session_count() as f64,
    );
    if let Some(drops) = kernel_drops {
        e.counter("sluice_kernel_drops_total", "Receive-queue overflows of the UDP socket (overrun, not wire loss). With UDP GRO one overflow drops a whole coalesced train, up to 64 datagrams, so multiply when estimating symbols lost.", drops);
    }
    if let Some(hb) = pipeline.last_heartbeat() {
        e.gauge(
            "sluice_last_heartbeat_age_seconds",
            "Seconds since the last heartbeat whose tag checked (forgeable under the public link key).",
            hb.received_at.elapsed().as_secs_f64(),
        );
    }
    e.finish()
}

fn write_status(
    path: &Path,
    pipeline: &Pipeline,
    totals: &Totals,
    drops: Option<u64>,
    args: &Listen,
    overdue_channels: &[String],
    heartbeats_authenticated: bool,
) {
    let s = pipeline.stats();
    let a = pipeline.admission_counters();
    let heartbeat = pipeline.last_heartbeat().map(|hb| {
        serde_json::json!({
            "sender_id": hex::encode(hb.sender_id),
            "sequence": hb.sequence,
            "sent_at": sluice_host::time::rfc3339_ms(hb.sent_at_unix_ms),
            "sent_at_unix_ms": hb.sent_at_unix_ms,
            "received_at": sluice_host::time::rfc3339_ms(hb.received_at_unix_ms),
            "received_at_unix_ms": hb.received_at_unix_ms,
            "authenticated": heartbeats_authenticated,
            "ledger": hb.ledger.iter().map(|l| serde_json::json!({
                "object_id": hex::encode(l.object_id),
                "object_bytes": l.object_len,
                "first_sent": sluice_host::time::rfc3339_ms(l.first_sent_unix_ms),
                "first_sent_unix_ms": l.first_sent_unix_ms,
                "pass": l.pass,
                "passes": l.passes,
            })).collect::<Vec<_>>(),
        })
    });
    let live: Vec<_> = pipeline
        .live_objects()
        .into_iter()
        .map(|(id, missing, total)| serde_json::json!({"object_id": hex::encode(id), "missing_blocks": missing, "blocks": total}))
        .collect();
    let now_ms = sluice_host::time::now_unix_ms();
    let status = serde_json::json!({
        "schema": sluice_host::json::schema_id("listener-status"),
        "running": true,
        "pid": std::process::id(),
        "bind": args.bind.to_string(),
        "updated_at": sluice_host::time::rfc3339_ms(now_ms),
        "updated_at_unix_ms": now_ms,
        "last_heartbeat": heartbeat,
        "live_transfers": live,
        "overdue_channels": overdue_channels,
        "kernel_drops": drops,
        "counters": {
            "datagrams": s.datagrams, "bad_tag": s.bad_tag, "malformed": s.malformed,
            "symbols_accepted": s.symbols_accepted, "blocks_copied": s.blocks_copied,
            "blocks_repaired": s.blocks_decoded, "accepted": totals.accepted,
            "duplicates": totals.duplicates, "incomplete": totals.incomplete,
            "rejected": &totals.rejected,
            "unknown_kind": s.unknown_kind, "over_limit": s.over_limit,
            "param_mismatch": s.param_mismatch, "duplicate_symbols": s.duplicate_symbols,
            "late_symbols": s.late_symbols, "over_cap_symbols": s.over_cap_symbols,
            "budget_drops": s.budget_drops, "sessions_refused": s.sessions_refused,
            "sessions_opened": s.sessions_opened, "sessions_abandoned": s.objects_abandoned,
            "staging_refused": s.staging_refused,
            "unauthenticated_refused": a.rejected_unauthenticated,
            "unauthenticated_by_code": &a.unauthenticated_by_code,
            "records_suppressed": a.records_suppressed_window + a.records_suppressed_budget,
            "replays_unverified": a.replays_unverified,
            "decodes_deferred": pipeline.decodes_deferred(),
        },
    });
    write_json_atomically(path, &status);
}

fn write_status_final(path: &Path, totals: &Totals, drops: Option<u64>) {
    let mut status = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    status["running"] = false.into();
    let now_ms = sluice_host::time::now_unix_ms();
    status["updated_at"] = sluice_host::time::rfc3339_ms(now_ms).into();
    status["updated_at_unix_ms"] = now_ms.into();
    status["kernel_drops"] = drops.into();
    status["counters"]["accepted"] = totals.accepted.into();
    write_json_atomically(path, &status);
}

/// Status is advisory (the audit log is the record), so a failed write is logged, not fatal.
fn write_json_atomically(path: &Path, value: &serde_json::Value) {
    let tmp = path.with_extension("json.tmp");
    let result = std::fs::write(&tmp, value.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::debug!(error = %e, path = %path.display(), "could not write the status file");
    }
}
