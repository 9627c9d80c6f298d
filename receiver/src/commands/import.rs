//! `sluice-recv import`: spool volumes from removable media → staging → the same pipeline as
//! `listen` (docs/media.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::spool::{HEADER_LEN, VolumeHeader};
use sluice_common::transport::params::Limits;
use sluice_common::transport::recv::ReceiverConfig;

use crate::ingest::{Outcome, OutcomeKind, Pipeline};
use crate::media::{self, OpenVolume, RecordReader};
use crate::report::{outcome_json, rejected_exit};
use crate::setup;
use crate::store::media::StageError;
use crate::store::{Source, StoreError, TransportFigures};

/// What each exit code means for `import` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "every bundle complete (or already accepted)"),
    (Exit::Usage, "bad flags, link key or trust directory"),
    (
        Exit::Input,
        "an input path unreadable or skipped, or no volume found",
    ),
    (Exit::Invalid, "a bundle failed verification"),
    (Exit::Untrusted, "a bundle's signer is not trusted"),
    (Exit::Policy, "a bundle was refused by policy"),
    (
        Exit::Incomplete,
        "waiting for more volumes (they stay staged)",
    ),
    (Exit::Storage, "the store failed"),
];

/// Import spool volumes written by `sluice-send media` into the quarantine store.
///
/// Each PATH is a volume file or a directory searched (a few levels deep, never through
/// symlinks) for *.sluicevol files. Every volume whose authenticated header fits this receiver's
/// limits is copied into the store's staging area; then each bundle is rebuilt from all of its
/// staged volumes — those copied now and those from earlier imports — and, once complete,
/// verified and committed exactly like a bundle received over the diode. Volumes of one bundle
/// may come on separate media at different times: until enough have arrived the bundle is
/// "waiting" and its volumes stay staged.
///
/// Media are treated as hostile: symlinks, FIFOs, devices and directories named like volumes are
/// reported by name and skipped; nothing is followed or read beyond the declared records.
///
/// Examples:
///
///   sluice-recv import --store /var/lib/sluice --trust /etc/sluice/trust /media/usb
///   sluice-recv import --store /var/lib/sluice --trust /etc/sluice/trust --json /media/disc2
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = sluice_common::exit::help_table_combined(EXIT_CODES)
)]
pub struct Args {
    /// Store directory (the same one `listen` uses; one receiver at a time).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Trust directory: *.pub signer keys and an optional policy.toml.
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Shared link key (32 raw bytes or 64 hex digits); must match the sender's.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Memory budget for buffered symbols, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub memory: u64,
    /// Staging quota in GiB (partial objects and staged volumes together).
    #[arg(long, default_value_t = 128, value_name = "GIB")]
    pub staging_quota: u64,
    /// Largest bundle accepted, in GiB.
    #[arg(long, default_value_t = 64, value_name = "GIB")]
    pub max_object: u64,
    /// Threads decoding RaptorQ blocks.
    #[arg(long, default_value_t = 2)]
    pub decode_threads: usize,
    /// One JSON object per bundle on stdout instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Volume files or directories to scan.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// What the import knows about one object.
#[derive(Debug, Default)]
struct ObjectState {
    count: u16,
    object_len: u64,
    frame_len: u32,
    /// Volume indices seen on the media this run.
    supplied: BTreeSet<u16>,
    /// Volume indices staged (now or earlier) when the rebuild ran.
    staged: BTreeSet<u16>,
    outcome: Option<Outcome>,
    waiting: Option<Waiting>,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    missing_blocks: Option<u64>,
    blocks: Option<u64>,
}

/// Per-item problems of one import: each is reported on stderr as it is found and raises the
/// run's exit code; the run goes on with the other volumes and bundles.
#[derive(Default)]
struct Problems {
    worst: Exit,
}

impl Problems {
    /// An input that is not used (unreadable, not a volume, contradicting): `skipped PATH: WHY`.
    fn skipped(&mut self, path: &std::path::Path, why: impl std::fmt::Display) {
        eprintln!("skipped {}: {why}", path.display());
        self.worst = self.worst.worst(Exit::Input);
    }

    /// A failure of the run that did not stop it: `error: MESSAGE`.
    fn error(&mut self, code: Exit, message: impl std::fmt::Display) {
        eprintln!("error: {message}");
        self.worst = self.worst.worst(code);
    }
}

/// Imports every volume found, then reports one line per bundle.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let link_key = setup::load_link_key(args.link_key.as_deref())?;
    let trust = setup::load_trust(&args.trust)?;
    let limits = Limits {
        max_object_bytes: args.max_object << 30,
        ..Limits::default()
    };

    // 1. Find and authenticate volumes; nothing is staged yet.
    let scan = media::scan(&args.paths);
    let mut problems = Problems::default();
    for (path, why) in &scan.unreadable {
        problems.error(
            Exit::Input,
            format!("cannot read {}: {why}", path.display()),
        );
    }
    for (path, why) in &scan.problems {
        problems.skipped(path, why);
    }
    let mut volumes: Vec<OpenVolume> = Vec::new();
    for path in &scan.candidates {
        match media::open_volume(path, &link_key, &limits) {
            Ok(v) => volumes.push(v),
            Err(why) => problems.skipped(path, why),
        }
    }
    if scan.unknown > 0 {
        eprintln!(
            "ignored {} other file(s) that are not spool volumes",
            scan.unknown
        );
    }
    let mut objects: BTreeMap<[u8; 16], ObjectState> = BTreeMap::new();
    let mut order: Vec<[u8; 16]> = Vec::new();
    let mut usable = Vec::new();
    for v in volumes {
        let h = v.header;
        let state = objects.entry(h.object_id).or_insert_with(|| {
            order.push(h.object_id);
            ObjectState {
                count: h.volume_count,
                object_len: h.object_len,
                frame_len: h.frame_len,
                ..ObjectState::default()
            }
        });
        if (state.count, state.object_len, state.frame_len)
            != (h.volume_count, h.object_len, h.frame_len)
        {
            problems.skipped(
                &v.path,
                format!(
                    "its header contradicts other volumes of object {}",
                    hex::encode(h.object_id)
                ),
            );
            continue;
        }
        if v.truncated() {
            eprintln!(
                "note {}: truncated copy, {} of {} records present; using those",
                v.path.display(),
                v.records,
                h.frame_count
            );
        }
        if v.trailing > 0 {
            eprintln!(
                "note {}: {} bytes after the last record ignored",
                v.path.display(),
                v.trailing
            );
        }
        state.supplied.insert(h.volume_index);
        usable.push(v);
    }
    if objects.is_empty() {
        return Err(CommandError::input(
            "no usable spool volume found in the given path(s)",
        ));
    }

    let mut store = setup::open_store(&args.store, args.staging_quota << 30)?;

    // 2. Already accepted: a duplicate record, nothing staged.
    for (id, state) in objects.iter_mut() {
        if let Some(bundle) = store.accepted_bundle_for_object(*id) {
            let figures = media_figures();
            state.outcome = Some(Outcome {
                object_id: *id,
                bundle_id: Some(bundle),
                channel: None,
                sequence: None,
                kind: match store.record_duplicate(&bundle, None, figures.clone()) {
                    Ok(_) => OutcomeKind::Duplicate,
                    Err(e) => OutcomeKind::StorageError {
                        detail: e.to_string(),
                    },
                },
                figures,
            });
            if let Err(e) = store.remove_staged_volumes(*id) {
                problems.error(Exit::Storage, e);
            }
        }
    }

    // 3. Copy each new volume into staging (fsynced) before anything is decoded.
    let bar = crate::progress::staging(
        usable
            .iter()
            .map(|v| v.records * u64::from(v.header.frame_len))
            .sum(),
    );
    for (i, v) in usable.iter().enumerate() {
        bar.set_message(format!("volume {}/{}", i + 1, usable.len()));
        let id = v.header.object_id;
        let body = v.records * u64::from(v.header.frame_len);
        bar.inc(body);
        if objects.get(&id).is_some_and(|s| s.outcome.is_some()) {
            continue;
        }
        match store.stage_media_volume(
            id,
            v.header.volume_index,
            &v.header_bytes,
            &v.file,
            HEADER_LEN as u64,
            body,
        ) {
            Ok(true) => tracing::info!(path = %v.path.display(), "volume staged"),
            Ok(false) => eprintln!(
                "note {}: volume {} of {} is already staged; ignored",
                v.path.display(),
                v.header.volume_index + 1,
                v.header.volume_count
            ),
            Err(StageError::Source(e)) => problems.skipped(
                &v.path,
                format!(
                    "read failed while copying ({e}); the medium may be failing or was removed"
                ),
            ),
            Err(StageError::Store(e)) => {
                problems.error(Exit::Storage, format!("staging {}: {e}", v.path.display()));
            }
        }
    }
    bar.finish_and_clear();
    drop(usable);

    // 4. Rebuild every object still open from all of its staged volumes.
    let rebuild: Vec<[u8; 16]> = order
        .iter()
        .copied()
        .filter(|id| objects.get(id).is_some_and(|s| s.outcome.is_none()))
        .collect();
    let mut extra_outcomes = Vec::new();
    if !rebuild.is_empty() {
        let mut config = ReceiverConfig::new(link_key.clone());
        config.limits = limits;
        config.max_buffered_bytes = args.memory << 20;
        config.max_staging_bytes = args.staging_quota << 30;
        config.idle_timeout = Duration::from_secs(3600);
        let now = Instant::now();
        let mut pipeline = Pipeline::start(
            store,
            trust,
            config,
            Source::Media,
            args.decode_threads,
            now,
        )
        .map_err(|e| CommandError::storage(format!("cannot resume staged transfers: {e}")))?;
        let shared = pipeline.store();
        let bar = crate::progress::rebuilding(rebuild.len() as u64);
        bar.set_prefix("rebuilding");
        for id in &rebuild {
            bar.inc(1);
            let Some(state) = objects.get_mut(id) else {
                continue;
            };
            if let Err(e) = feed_object(&mut pipeline, &shared, *id, &link_key, state) {
                problems.error(
                    Exit::Storage,
                    format!("rebuilding {}: {e}", hex::encode(id)),
                );
            }
            pipeline.checkpoint_all(Instant::now());
            let live = pipeline.live_objects();
            if let Some((_, missing, blocks)) = live.iter().find(|(o, _, _)| o == id) {
                bar.set_message(format!("{missing} of {blocks} blocks missing"));
                state.waiting = Some(Waiting {
                    missing_blocks: Some(*missing),
                    blocks: Some(*blocks),
                });
            }
            extra_outcomes.extend(pipeline.take_outcomes());
        }
        bar.finish_and_clear();
        extra_outcomes.extend(pipeline.finish());
        let mut store = shared.lock().unwrap_or_else(|p| p.into_inner());
        for outcome in extra_outcomes {
            let id = outcome.object_id;
            if outcome.kind.is_decision() {
                if let Err(e) = store.remove_staged_volumes(id) {
                    problems.error(Exit::Storage, format!("removing staged volumes: {e}"));
                }
            }
            match objects.get_mut(&id) {
                Some(s) => {
                    s.waiting = None;
                    s.outcome = Some(outcome);
                }
                // A transfer resumed from staging (e.g. left by `listen`) finished too.
                None => {
                    order.push(id);
                    objects.insert(
                        id,
                        ObjectState {
                            outcome: Some(outcome),
                            ..ObjectState::default()
                        },
                    );
                }
            }
        }
        for id in &rebuild {
            if let Some(s) = objects.get_mut(id)
                && s.outcome.is_none()
                && s.waiting.is_none()
            {
                s.waiting = Some(Waiting {
                    missing_blocks: None,
                    blocks: None,
                });
            }
        }
    } else {
        drop(trust);
    }

    // 5. Report, one line per bundle; the exit code is the worst of the run (`Exit::worst`).
    let mut code = problems.worst;
    for id in &order {
        let Some(state) = objects.get(id) else {
            continue;
        };
        if let Some(o) = &state.outcome {
            crate::report::log_decided(o);
        }
        report(args.json, *id, state);
        code = code.worst(match state.outcome.as_ref().map(|o| &o.kind) {
            Some(OutcomeKind::Rejected { reason, .. }) => rejected_exit(*reason),
            Some(OutcomeKind::StorageError { .. }) => Exit::Storage,
            Some(OutcomeKind::Incomplete { .. }) | None => Exit::Incomplete,
            Some(OutcomeKind::Accepted { .. } | OutcomeKind::Duplicate) => Exit::Ok,
        });
    }
    Ok(code)
}

fn media_figures() -> TransportFigures {
    TransportFigures {
        frames: 0,
        lost_frames: 0,
        bad_frames: 0,
        repaired_blocks: 0,
        passes: 1,
        source: Source::Media,
        object_bytes: 0,
    }
}

/// Why the staged volumes of one object could not be fed (the store's own copy failed us).
enum FeedError {
    Store(StoreError),
    Read(String),
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Store(e) => write!(f, "{e}"),
            FeedError::Read(what) => write!(f, "reading {what}"),
        }
    }
}

/// Feeds every staged volume of `id` into the pipeline, interleaved by each volume's progress
/// through its own share so records arrive in (nearly) the sender's order and the receiver's
/// bounded window of blocks suffices.
fn feed_object(
    pipeline: &mut Pipeline,
    shared: &std::sync::Arc<std::sync::Mutex<crate::store::Store>>,
    id: [u8; 16],
    key: &sluice_common::transport::wire::LinkKey,
    state: &mut ObjectState,
) -> Result<(), FeedError> {
    let staged = {
        let store = shared.lock().unwrap_or_else(|p| p.into_inner());
        store.staged_volumes(id).map_err(FeedError::Store)?
    };
    let mut readers = Vec::new();
    let mut frame_len = 0usize;
    for v in staged {
        let mut hb = [0u8; HEADER_LEN];
        use std::os::unix::fs::FileExt;
        v.file
            .read_exact_at(&mut hb, 0)
            .map_err(|e| FeedError::Read(format!("staged volume {}: {e}", v.index)))?;
        let Ok(h) = VolumeHeader::decode(&hb, key.as_bytes()) else {
            continue;
        };
        if h.object_id != id || h.volume_index != v.index {
            continue;
        }
        state.staged.insert(h.volume_index);
        state.count = h.volume_count;
        frame_len = h.frame_len as usize;
        readers.push(
            RecordReader::new(v.file, &h, v.len)
                .map_err(|e| FeedError::Read(format!("staged volume {}: {e}", v.index)))?,
        );
    }
    let mut buf = vec![0u8; frame_len];
    let mut now = Instant::now();
    let mut n = 0u64;
    while let Some(i) = media::pick_next(&readers) {
        readers[i]
            .read_next(&mut buf)
            .map_err(|e| FeedError::Read(format!("a staged volume: {e}")))?;
        pipeline.handle_datagram(now, &buf);
        n += 1;
        // Collect finished decodes often: a decoded block waiting in the result queue still
        // counts against the budget, and a full budget evicts blocks of the current window
        // whose symbols would not come again in this run.
        if n % 32 == 0 {
            if n % 4096 == 0 {
                now = Instant::now();
            }
            pipeline.drive(now);
        }
    }
    pipeline.drive(Instant::now());
    tracing::info!(object = %hex::encode(id), records = n, stats = ?pipeline.stats(),
        "volumes fed");
    Ok(())
}

fn volumes_text(set: &BTreeSet<u16>) -> String {
    let list: Vec<String> = set.iter().map(|i| (i + 1).to_string()).collect();
    format!("{{{}}}", list.join(","))
}

fn report(json: bool, id: [u8; 16], s: &ObjectState) {
    let have = if s.staged.is_empty() {
        &s.supplied
    } else {
        &s.staged
    };
    if json {
        // One outcome key (docs/json.md): `waiting` is import's word for "not all volumes yet".
        let mut v = match &s.outcome {
            Some(o) => outcome_json(o),
            None => {
                let mut m = sluice_host::json::report("outcome");
                m.insert("outcome".into(), "waiting".into());
                m.insert("object_id".into(), hex::encode(id).into());
                serde_json::Value::Object(m)
            }
        };
        v["source"] = "media".into();
        v["volume_count"] = s.count.into();
        v["volumes_have"] = have.iter().map(|i| i + 1).collect::<Vec<_>>().into();
        if let Some(w) = s.waiting {
            v["missing_blocks"] = w.missing_blocks.into();
            v["blocks"] = w.blocks.into();
        }
        println!("{v}");
        return;
    }
    let obj = hex::encode(id);
    match s.outcome.as_ref().map(|o| &o.kind) {
        Some(OutcomeKind::Accepted { path, .. }) => {
            let o = s.outcome.as_ref().expect("matched");
            println!(
                "complete: bundle {} (channel {}, seq {}) accepted into {path} from volumes {} of {}",
                o.bundle_id.map(|b| b.to_hex()).unwrap_or_default(),
                o.channel.clone().unwrap_or_default(),
                o.sequence.unwrap_or_default(),
                volumes_text(have),
                s.count
            );
        }
        Some(OutcomeKind::Duplicate) => {
            let o = s.outcome.as_ref().expect("matched");
            println!(
                "duplicate: bundle {} was already accepted; recorded, nothing else done",
                o.bundle_id.map(|b| b.to_hex()).unwrap_or(obj)
            );
        }
        Some(OutcomeKind::Rejected { reason, detail }) => {
            println!("rejected: object {obj}: {} — {detail}", reason.code());
        }
        Some(OutcomeKind::StorageError { detail }) => {
            println!("storage error: object {obj}: {detail}; its volumes stay staged");
        }
        Some(OutcomeKind::Incomplete { missing_blocks }) => println!(
            "waiting for more volumes: object {obj} have volumes {} of {}, {missing_blocks} blocks missing; staged volumes kept",
            volumes_text(have),
            s.count
        ),
        None => {
            let missing = match s.waiting {
                Some(Waiting {
                    missing_blocks: Some(m),
                    blocks: Some(b),
                }) => format!("{m} of {b} blocks missing"),
                _ => "no usable frames yet".to_string(),
            };
            println!(
                "waiting for more volumes: object {obj} have volumes {} of {}, {missing}; staged volumes kept",
                volumes_text(have),
                s.count
            );
        }
    }
}
