//! `sluice-recv staging list|purge`: what waits in the store's staging area (partial transfers
//! from `listen`, staged volumes from `import`) and removing it. Both open the store, so they
//! run while no `listen` or `import` holds it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sluice_common::exit::{self, CommandError, Exit};

use crate::setup;
use crate::store::Store;
use crate::store::media::MediaPolicy;

/// What each exit code means for `staging list` and `staging purge` (rendered into `--help`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "listed, or everything selected was removed"),
    (
        Exit::Usage,
        "bad flags (an object id is 32 hex digits; purge needs a selection)",
    ),
    (Exit::Input, "a given object id has nothing staged"),
    (
        Exit::Storage,
        "the store cannot be opened (a listener or import holds it) or a removal failed",
    ),
];

/// Partial objects in the store's staging area
///
/// `listen` keeps the transfers it has not finished in staging/objects/ (resumed after a
/// restart); `import` keeps the volumes of bundles still waiting for more media in
/// staging/media/ (removed once their bundle is decided, or after --media-expiry-days).
///
/// Examples:
///
///   sluice-recv staging list --store /var/lib/sluice
///   sluice-recv staging purge --store /var/lib/sluice --expired
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    pub command: StagingCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StagingCommand {
    List(ListArgs),
    Purge(PurgeArgs),
}

/// Show partial transfers and staged volumes, with sizes, ages and quotas
///
/// Opens the store (stop `listen` first: one receiver per store).
///
/// Examples:
///
///   sluice-recv staging list --store /var/lib/sluice
///   sluice-recv staging list --store /var/lib/sluice --json | jq '.objects[].object_id'
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct ListArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Expiry assumed for staged volumes when showing when each expires.
    #[arg(long, default_value_t = MediaPolicy::DEFAULT_EXPIRY.as_secs() / 86_400, value_name = "DAYS")]
    pub media_expiry_days: u64,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Remove partial transfers and staged volumes
///
/// Select by object id (as `staging list` shows it), every object whose staged volumes are
/// older than --media-expiry-days (--expired), or everything (--all). A removed partial
/// transfer starts over when its sender sends it again; removed volumes must be imported again.
///
/// Examples:
///
///   sluice-recv staging purge --store /var/lib/sluice --object 0f1e2d3c4b5a69788796a5b4c3d2e1f0
///   sluice-recv staging purge --store /var/lib/sluice --expired --media-expiry-days 3
///   sluice-recv staging purge --store /var/lib/sluice --all --json
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct PurgeArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Object id (32 hex digits) to remove, transfer and volumes; repeatable.
    #[arg(long = "object", value_name = "ID")]
    pub objects: Vec<String>,
    /// Remove staged volumes none of whose object's volumes arrived for --media-expiry-days.
    #[arg(long)]
    pub expired: bool,
    /// Remove everything staged.
    #[arg(long, conflicts_with_all = ["objects", "expired"])]
    pub all: bool,
    /// Age after which --expired removes staged volumes.
    #[arg(long, default_value_t = MediaPolicy::DEFAULT_EXPIRY.as_secs() / 86_400, value_name = "DAYS")]
    pub media_expiry_days: u64,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<Exit, CommandError> {
    match args.command {
        StagingCommand::List(a) => list(a),
        StagingCommand::Purge(a) => purge(a),
    }
}

fn open(dir: &std::path::Path, expiry_days: u64) -> Result<Store, CommandError> {
    // The objects' quota only matters for new reservations, which these commands never make.
    let mut store = setup::open_store(dir, u64::MAX)?;
    store.set_media_policy(MediaPolicy {
        expiry: Duration::from_secs(expiry_days.saturating_mul(86_400)),
        ..MediaPolicy::default()
    });
    Ok(store)
}

fn storage(e: impl std::fmt::Display) -> CommandError {
    CommandError::storage(format!("{e}"))
}

fn age_secs(now: SystemTime, then: SystemTime) -> u64 {
    now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0)
}

/// One row of the listing, as JSON.
fn rows(store: &Store, expiry: Duration) -> Result<Vec<serde_json::Value>, CommandError> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for o in store.staged_objects().map_err(storage)? {
        out.push(serde_json::json!({
            "object_id": hex::encode(o.object_id),
            "kind": "transfer",
            "object_bytes": o.len,
            "resumable": o.resumable,
            "age_secs": age_secs(now, o.modified),
        }));
    }
    for m in store.staged_media().map_err(storage)? {
        let age = age_secs(now, m.newest);
        let volumes: Vec<serde_json::Value> = m
            .volumes
            .iter()
            .map(|(index, geometry, bytes)| {
                serde_json::json!({
                    "volume": index + 1,
                    "geometry": geometry.map(|g| format!("{g:016x}")),
                    "volume_bytes": bytes,
                })
            })
            .collect();
        out.push(serde_json::json!({
            "object_id": hex::encode(m.object_id),
            "kind": "media",
            "object_bytes": m.bytes,
            "volumes": volumes,
            "age_secs": age,
            "expires_in_secs": expiry.as_secs().saturating_sub(age),
        }));
    }
    Ok(out)
}

fn list(args: ListArgs) -> Result<Exit, CommandError> {
    let store = open(&args.store, args.media_expiry_days)?;
    let expiry = Duration::from_secs(args.media_expiry_days.saturating_mul(86_400));
    let objects = rows(&store, expiry)?;
    let (media_bytes, media_quota) = store.media_usage();
    let (staging_bytes, _) = store.staging_usage();
    if args.json {
        println!(
            "{}",
            sluice_host::json::stamp(
                "staging-list",
                serde_json::json!({
                    "objects": objects,
                    "media_bytes": media_bytes,
                    "staging_bytes": staging_bytes,
                    "media_quota_bytes": media_quota,
                })
            )
        );
        return Ok(Exit::Ok);
    }
    if objects.is_empty() {
        println!("nothing staged");
    }
    for o in &objects {
        let id = o["object_id"].as_str().unwrap_or_default();
        let bytes = o["object_bytes"].as_u64().unwrap_or(0);
        let age_h = o["age_secs"].as_u64().unwrap_or(0) / 3600;
        if o["kind"] == "media" {
            let vols: Vec<String> = o["volumes"]
                .as_array()
                .map(|v| v.iter().map(|x| x["volume"].to_string()).collect())
                .unwrap_or_default();
            println!(
                "media    {id}  {bytes} bytes  volumes {{{}}}  newest {age_h} h ago, expires in {} h",
                vols.join(","),
                o["expires_in_secs"].as_u64().unwrap_or(0) / 3600
            );
        } else {
            println!(
                "transfer {id}  {bytes} bytes  {}  last written {age_h} h ago",
                if o["resumable"] == true {
                    "resumes on restart"
                } else {
                    "not resumable"
                }
            );
        }
    }
    println!(
        "staged volumes: {media_bytes} bytes; partial transfers: {staging_bytes} bytes reserved \
         (remove with `sluice-recv staging purge`)"
    );
    Ok(Exit::Ok)
}

fn parse_id(s: &str) -> Result<[u8; 16], CommandError> {
    let bytes = hex::decode(s.trim()).ok().filter(|b| b.len() == 16).ok_or_else(|| {
        CommandError::usage(format!(
            "--object {s:?} is not an object id (32 hex digits, as `sluice-recv staging list` shows)"
        ))
    })?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes);
    Ok(id)
}

fn purge(args: PurgeArgs) -> Result<Exit, CommandError> {
    if args.objects.is_empty() && !args.expired && !args.all {
        return Err(CommandError::usage(
            "staging purge needs a selection: --object ID, --expired or --all",
        ));
    }
    let ids = args
        .objects
        .iter()
        .map(|s| parse_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = open(&args.store, args.media_expiry_days)?;
    let mut removed: Vec<serde_json::Value> = Vec::new();
    let mut code = Exit::Ok;
    if args.expired {
        for m in store.expire_media(SystemTime::now()).map_err(storage)? {
            removed.push(serde_json::json!({
                "object_id": hex::encode(m.object_id), "kind": "media", "object_bytes": m.bytes,
            }));
        }
    }
    let selected: Vec<[u8; 16]> = if args.all {
        let mut all: Vec<[u8; 16]> = store
            .staged_objects()
            .map_err(storage)?
            .iter()
            .map(|o| o.object_id)
            .collect();
        all.extend(
            store
                .staged_media()
                .map_err(storage)?
                .iter()
                .map(|m| m.object_id),
        );
        all.sort();
        all.dedup();
        all
    } else {
        ids
    };
    for id in selected {
        let part = store
            .staged_objects()
            .map_err(storage)?
            .into_iter()
            .find(|o| o.object_id == id);
        let media = store
            .staged_media()
            .map_err(storage)?
            .into_iter()
            .find(|m| m.object_id == id);
        if part.is_none() && media.is_none() {
            eprintln!(
                "nothing staged for object {}; see `sluice-recv staging list`",
                hex::encode(id)
            );
            code = code.worst(Exit::Input);
            continue;
        }
        if let Some(p) = part {
            store.remove_object(id).map_err(storage)?;
            removed.push(serde_json::json!({
                "object_id": hex::encode(id), "kind": "transfer", "object_bytes": p.len,
            }));
        }
        if let Some(m) = media {
            store.remove_staged_volumes(id).map_err(storage)?;
            removed.push(serde_json::json!({
                "object_id": hex::encode(id), "kind": "media", "object_bytes": m.bytes,
            }));
        }
    }
    for r in &removed {
        tracing::warn!(object = %r["object_id"], kind = %r["kind"], "staging purged");
    }
    if args.json {
        println!(
            "{}",
            sluice_host::json::stamp("staging-purge", serde_json::json!({ "removed": removed }))
        );
    } else {
        for r in &removed {
            println!(
                "removed {} {} ({} bytes)",
                r["kind"].as_str().unwrap_or_default(),
                r["object_id"].as_str().unwrap_or_default(),
                r["object_bytes"]
            );
        }
        println!("{} removed", removed.len());
    }
    Ok(code)
}
