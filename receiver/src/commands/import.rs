//! `sluice-recv import`: spool volumes from removable media → staging → the same pipeline as
//! `listen` (docs/media.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::spool::HEADER_LEN;
use sluice_common::transport::params::Limits;
use sluice_common::transport::recv::ReceiverConfig;

use crate::ingest::{Outcome, OutcomeKind, Pipeline, Room};
use crate::media::{self, OpenVolume, RecordFilter, RecordVerdict};
use crate::rebuild;
use crate::report::{outcome_json, rejected_exit};
use crate::setup;
use crate::store::media::{MediaPolicy, StageError, Staged, VolumeCopy, geometry_id};
use crate::store::{Source, StoreError, TransportFigures};

/// What each exit code means for `import` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "every bundle complete (or already accepted)"),
    (
        Exit::Usage,
        "bad flags, link key or trust directory, or no secret link key",
    ),
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
/// reported by name and skipped; nothing is followed or read beyond the declared records; a
/// volume declaring more records than its object can have is refused; only records that
/// authenticate as frames of the volume's object are staged, within the media quota; staged
/// volumes no volume of their object joined for --media-expiry-days are removed. The first
/// refusals are printed with their reason, the rest counted.
///
/// Examples:
///
///   sluice-recv import --store /var/lib/sluice --trust /etc/sluice/trust \
///       --link-key /etc/sluice/link.key /media/usb
///   sluice-recv import --store /var/lib/sluice --trust /etc/sluice/trust \
///       --link-key /etc/sluice/link.key --json /media/disc2
///   sluice-recv staging list --store /var/lib/sluice          # what is waiting, and since when
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
    /// Shared link key (`sluice-send link-keygen`; 32 raw bytes or 64 hex digits), the same file
    /// as the sender's. Required unless --insecure-public-link-key is given.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    /// Read volumes written under the documented public link key (test media only): media have
    /// no loopback to tell a test from a site, so only this flag allows it.
    #[arg(long)]
    pub insecure_public_link_key: bool,
    /// Memory budget for buffered symbols, in MiB (the same default as `listen`).
    #[arg(long, default_value_t = crate::config::DEFAULT_MEMORY_MIB, value_name = "MIB", value_parser = sluice_common::size::parse_mib)]
    pub memory: u64,
    /// Staging quota in GiB for partial objects (staging/objects/).
    #[arg(long, default_value_t = crate::config::DEFAULT_STAGING_QUOTA_GIB, value_name = "GIB", value_parser = sluice_common::size::parse_gib)]
    pub staging_quota: u64,
    /// Media staging quota: staged volumes (staging/media/) together, apart from
    /// --staging-quota. A size in bytes with an optional suffix: 512MiB, 96GiB, 1T.
    #[arg(long, default_value = "96GiB", value_parser = sluice_common::size::parse_size, value_name = "SIZE")]
    pub media_quota: u64,
    /// Staged volumes of an object are removed when none of its volumes arrived for this long.
    #[arg(long, default_value_t = MediaPolicy::DEFAULT_EXPIRY.as_secs() / 86_400, value_name = "DAYS")]
    pub media_expiry_days: u64,
    /// Largest bundle accepted, in GiB.
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_OBJECT_GIB, value_name = "GIB", value_parser = sluice_common::size::parse_gib)]
    pub max_object: u64,
    /// Threads decoding RaptorQ blocks. Default 2, where `listen` has 1: an import has no
    /// receive thread that must keep a core to itself, so both cores decode.
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

/// Refusals printed in full per import; later ones are counted and summed up at the end, so a
/// medium with thousands of junk entries cannot flood the operator's terminal or the journal.
pub const MAX_REFUSAL_LINES: u64 = 32;

/// Per-item problems of one import: each is reported on stderr as it is found (the first
/// [`MAX_REFUSAL_LINES`] refusals; the rest are counted) and raises the run's exit code; the run
/// goes on with the other volumes and bundles.
#[derive(Default)]
struct Problems {
    worst: Exit,
    refusals: u64,
}

impl Problems {
    /// An input that is not used (unreadable, not a volume, implausible, no valid record):
    /// `skipped PATH: WHY`, logged too.
    fn skipped(&mut self, path: &std::path::Path, why: impl std::fmt::Display) {
        self.refusals += 1;
        if self.refusals <= MAX_REFUSAL_LINES {
            eprintln!("skipped {}: {why}", path.display());
            tracing::warn!(path = %path.display(), reason = %why, "volume refused");
        }
        self.worst = self.worst.worst(Exit::Input);
    }

    /// The count of refusals not printed, once at the end.
    fn summary(&self) {
        if self.refusals > MAX_REFUSAL_LINES {
            let more = self.refusals - MAX_REFUSAL_LINES;
            eprintln!(
                "skipped {more} more input(s); only the first {MAX_REFUSAL_LINES} refusals are shown"
            );
            tracing::warn!(
                refused = self.refusals,
                shown = MAX_REFUSAL_LINES,
                "volume refusals"
            );
        }
    }

    /// A failure of the run that did not stop it: `error: MESSAGE`.
    fn error(&mut self, code: Exit, message: impl std::fmt::Display) {
        eprintln!("error: {message}");
        self.worst = self.worst.worst(code);
    }
}

/// Imports every volume found, then reports one line per bundle.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let link_key = setup::load_link_key(
        args.link_key.as_deref(),
        setup::Endpoint::Media,
        args.insecure_public_link_key,
    )?;
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
            // Kept apart by geometry when staged; the rebuild uses the geometry with the most
            // valid records, so a hostile volume cannot shadow the real ones.
            eprintln!(
                "note {}: its header disagrees with other volumes of object {} (frame length {}, \
                 {} volumes); staged apart",
                v.path.display(),
                hex::encode(h.object_id),
                h.frame_len,
                h.volume_count
            );
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
    store.set_media_policy(MediaPolicy {
        quota_bytes: args.media_quota,
        expiry: Duration::from_secs(args.media_expiry_days.saturating_mul(86_400)),
    });
    match store.expire_media(SystemTime::now()) {
        Ok(gone) => {
            for m in gone {
                eprintln!(
                    "note: staged volumes of object {} expired ({} bytes, none added for over \
                     {} days); removed",
                    hex::encode(m.object_id),
                    m.bytes,
                    args.media_expiry_days
                );
                tracing::warn!(object = %hex::encode(m.object_id), bytes = m.bytes,
                    "staged volumes expired");
            }
        }
        Err(e) => problems.error(Exit::Storage, format!("expiring staged volumes: {e}")),
    }

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
        let h = v.header;
        let mut filter = RecordFilter::new(&link_key, &limits, h);
        let copy = VolumeCopy {
            object_id: id,
            index: h.volume_index,
            geometry: geometry_id(h.volume_count, h.object_len, h.frame_len),
            header: &v.header_bytes,
            source: &v.file,
            body_offset: HEADER_LEN as u64,
            records: v.records,
            frame_len: h.frame_len as usize,
        };
        let staged =
            store.stage_media_volume(&copy, &mut |r| filter.check(r) == RecordVerdict::Keep);
        if filter.junk > 0 {
            eprintln!(
                "note {}: {} of {} records are not authenticated frames of object {}; not staged",
                v.path.display(),
                filter.junk,
                v.records,
                hex::encode(id)
            );
        }
        if filter.surplus > 0 {
            tracing::info!(path = %v.path.display(), surplus = filter.surplus,
                "records beyond K + repair surplus of their block not staged");
        }
        match staged {
            Ok(Staged::New { records }) => {
                tracing::info!(path = %v.path.display(), records, "volume staged");
            }
            Ok(Staged::AlreadyStaged { records }) => eprintln!(
                "note {}: volume {} of {} is already staged with {records} records; ignored",
                v.path.display(),
                h.volume_index + 1,
                h.volume_count
            ),
            Ok(Staged::NoValidRecords) => problems.skipped(
                &v.path,
                format!(
                    "refused: none of its {} records is an authenticated frame of object {}; \
                     nothing was staged",
                    v.records,
                    hex::encode(id)
                ),
            ),
            Err(StageError::Source(e)) => problems.skipped(
                &v.path,
                format!(
                    "read failed while copying ({e}); the medium may be failing or was removed"
                ),
            ),
            // The media quota is a refusal of this volume, not a failure of the store.
            Err(StageError::Store(e @ StoreError::MediaQuota { .. })) => {
                problems.skipped(&v.path, format!("refused, nothing staged: {e}"));
            }
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
    // What to feed per object, chosen before the pipeline resumes anything from staging, so a
    // partial object built from outvoted frames is started over instead of refusing the rest.
    let mut plans: BTreeMap<[u8; 16], rebuild::Plan> = BTreeMap::new();
    for id in &rebuild {
        match rebuild::plan_object(&store, *id, &link_key) {
            Ok(Some(plan)) => {
                rebuild::drop_conflicting_partial(&mut store, *id, &plan);
                plans.insert(*id, plan);
            }
            // Nothing staged for it, now or before: every volume of it was refused (and said
            // why); it is not "waiting".
            Ok(None) => {
                objects.remove(id);
            }
            Err(e) => problems.error(
                Exit::Storage,
                format!("rebuilding {}: {e}", hex::encode(id)),
            ),
        }
    }
    if !rebuild.is_empty() {
        let mut config = ReceiverConfig::new(link_key.clone());
        config.limits = limits;
        config.max_buffered_bytes = args.memory << 20;
        config.max_staging_bytes = args.staging_quota << 30;
        config.idle_timeout = Duration::from_secs(3600);
        let room = Room::half_of(&config);
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
            let Some(plan) = plans.remove(id) else {
                continue;
            };
            state.staged.extend(plan.volumes.keys().copied());
            state.count = plan.geometry.0;
            if let Err(e) = rebuild::feed_object(&mut pipeline, *id, plan, room) {
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
    problems.summary();
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
