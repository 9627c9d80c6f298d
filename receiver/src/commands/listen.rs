//! `sluice-recv listen`: receive frames from the diode, reassemble, verify, commit.

use std::net::SocketAddr;
use std::path::PathBuf;
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
use crate::ingest::{OutcomeKind, Pipeline};
use crate::listen_state::{Totals, render_metrics, write_status, write_status_final};
use crate::metrics::MetricsPage;
use crate::net::{DiodeSocket, buffer_advice};
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
    // Every transport counter, for a transfer that did not complete (`SLUICE_LOG=debug`).
    tracing::debug!(stats = ?pipeline.stats(), "transport counters at stop");
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
