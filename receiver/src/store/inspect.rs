//! Read-only checks over a store directory: re-verify a quarantine entry against its receipt,
//! recompute the audit chain, and summarise the store for `status`. Nothing here writes, and
//! nothing here takes the store lock, so it works while a listener is running.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::FileType;
use serde::Serialize;

use super::audit::{self, ChainReport};
use super::extract::file_mode;
use super::fsutil;
pub use super::overdue::{
    Expectation, OverdueWatch, SentNotReceived, expectations, rules, sent_not_received,
};
use super::records::{AuditRecord, ChannelMark, Receipt};
use super::staging::MAX_PROGRESS_BYTES;
use sluice_common::bundle::TrustStore;
use sluice_common::transport::params::Limits;
use sluice_common::transport::progress::Progress;
use sluice_host::time;

/// Largest receipt.json we read.
pub const MAX_RECEIPT_BYTES: u64 = 64 << 20;

enum Found {
    File { size: u64, hash: String, mode: u32 },
    Dir { mode: u32 },
}

fn hash_file(dir: impl AsFd, name: &str) -> io::Result<(u64, String)> {
    let mut f = fsutil::open_file_read(dir, name)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

fn walk(
    dir: impl AsFd,
    prefix: &str,
    found: &mut BTreeMap<String, Found>,
    problems: &mut Vec<String>,
) -> io::Result<()> {
    let dir = dir.as_fd();
    for (name, lossy) in fsutil::list_dir(dir)? {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if lossy {
            problems.push(format!("{rel}: name is not UTF-8 (not from a bundle)"));
            continue;
        }
        let st = fsutil::stat_at(dir, &name)?;
        let mode = st.st_mode & 0o7777;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let (size, hash) = hash_file(dir, &name)?;
                found.insert(rel, Found::File { size, hash, mode });
            }
            FileType::Directory => {
                found.insert(rel.clone(), Found::Dir { mode });
                let sub = fsutil::open_dir_at(dir, &name)?;
                walk(&sub, &rel, found, problems)?;
            }
            FileType::Symlink => problems.push(format!("{rel}: is a symlink")),
            other => problems.push(format!("{rel}: unexpected file type {other:?}")),
        }
    }
    Ok(())
}

/// Re-checks `quarantine/<name>`: its receipt parses and names this bundle, every file listed is
/// there with its size, blake3 and exact mode, and there is nothing else (no extra files, no
/// symlinks, no special files). Returns the receipt and the blake3 hex of receipt.json's bytes,
/// or every problem found.
pub fn check_entry(quarantine: impl AsFd, name: &str) -> Result<(Receipt, String), Vec<String>> {
    let mut problems = Vec::new();
    let q = quarantine.as_fd();
    let entry = match fsutil::open_dir_at(q, name) {
        Ok(fd) => fd,
        Err(e) => return Err(vec![format!("cannot open: {e}")]),
    };
    let raw = match fsutil::read_file_at(&entry, "receipt.json", MAX_RECEIPT_BYTES) {
        Ok(b) => b,
        Err(e) => return Err(vec![format!("receipt.json unreadable: {e}")]),
    };
    let receipt_hash = blake3::hash(&raw).to_hex().to_string();
    let receipt: Receipt = match serde_json::from_slice(&raw) {
        Ok(r) => r,
        Err(e) => return Err(vec![format!("receipt.json is not a valid receipt: {e}")]),
    };
    if receipt.bundle_id != name {
        problems.push(format!(
            "receipt names bundle {} but the directory is {name}",
            receipt.bundle_id
        ));
    }
    match fsutil::list_dir(&entry) {
        Ok(names) => {
            for (n, _) in names {
                if n != "files" && n != "receipt.json" {
                    problems.push(format!(
                        "unexpected entry {n:?} next to files/ and receipt.json"
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("cannot list: {e}")),
    }
    let mut found = BTreeMap::new();
    match fsutil::open_dir_at(&entry, "files") {
        Ok(files) => {
            if let Err(e) = walk(&files, "", &mut found, &mut problems) {
                problems.push(format!("files/: cannot read: {e}"));
            }
        }
        Err(e) => problems.push(format!("files/: {e}")),
    }
    let mut expected_dirs = BTreeMap::new();
    for e in &receipt.entries {
        // Every ancestor of an entry is an implicit directory.
        let mut acc = String::new();
        let comps: Vec<&str> = e.path.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            expected_dirs.insert(acc.clone(), ());
        }
        match (e.kind.as_str(), found.remove(&e.path)) {
            ("dir", Some(Found::Dir { mode })) => {
                if mode != fsutil::DIR_MODE {
                    problems.push(format!("{}: directory mode {mode:o}, expected 755", e.path));
                }
            }
            ("file", Some(Found::File { size, hash, mode })) => {
                if size != e.size_bytes {
                    problems.push(format!(
                        "{}: size {size}, receipt says {}",
                        e.path, e.size_bytes
                    ));
                }
                if e.blake3.as_deref() != Some(hash.as_str()) {
                    problems.push(format!(
                        "{}: blake3 {hash}, receipt says {}",
                        e.path,
                        e.blake3.as_deref().unwrap_or("null")
                    ));
                }
                let want = file_mode(e.executable);
                if mode != want {
                    problems.push(format!("{}: mode {mode:o}, expected {want:o}", e.path));
                }
            }
            (_, None) => problems.push(format!("{}: missing", e.path)),
            (kind, Some(_)) => {
                problems.push(format!("{}: wrong type (receipt says {kind})", e.path))
            }
        }
    }
    for (path, f) in found {
        match f {
            Found::Dir { mode } if expected_dirs.contains_key(&path) => {
                if mode != fsutil::DIR_MODE {
                    problems.push(format!("{path}: directory mode {mode:o}, expected 755"));
                }
            }
            _ => problems.push(format!("{path}: extra file not in the receipt")),
        }
    }
    if problems.is_empty() {
        Ok((receipt, receipt_hash))
    } else {
        Err(problems)
    }
}

/// Whether `name` looks like a bundle id (64 lowercase hex).
pub fn is_bundle_dir_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn open_root(dir: &Path) -> io::Result<OwnedFd> {
    // The operator-configured path itself may be a symlink (e.g. /var/lib/sluice -> /data);
    // everything below it is reached without following links.
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", dir.display())))
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub audit_records: usize,
    pub entries_checked: usize,
    pub problems: Vec<String>,
}

/// `audit verify`: the chain is intact, every quarantine entry matches its receipt, and every
/// entry has an `accepted` audit record whose `receipt_blake3` matches its receipt.json.
pub fn verify_store(dir: &Path) -> io::Result<VerifyReport> {
    let root = open_root(dir)?;
    let chain: ChainReport = read_chain(&root, &mut |_| {})
        .map_err(|e| io::Error::new(e.kind(), format!("audit.jsonl: {e}")))?;
    let mut problems: Vec<String> = chain
        .problems
        .iter()
        .map(|p| format!("audit.jsonl: {p}"))
        .collect();
    let mut entries_checked = 0;
    match fsutil::open_dir_at(&root, "quarantine") {
        Ok(q) => {
            for (name, _) in fsutil::list_dir(&q)? {
                entries_checked += 1;
                if !is_bundle_dir_name(&name) {
                    problems.push(format!("quarantine/{name}: not a bundle id"));
                    continue;
                }
                match fsutil::type_at(&q, &name)? {
                    Some(FileType::Directory) => {}
                    Some(t) => {
                        problems.push(format!("quarantine/{name}: is a {t:?}, not a directory"));
                        continue;
                    }
                    None => continue,
                }
                match check_entry(&q, &name) {
                    Ok((_, rh)) => match chain.accepted.get(&name) {
                        None => problems
                            .push(format!("quarantine/{name}: no accepted record in audit.jsonl")),
                        Some(a) if a.receipt_blake3.as_deref() != Some(rh.as_str()) => {
                            problems.push(format!(
                                "quarantine/{name}: receipt.json does not match the hash in its audit record (receipt changed)"
                            ))
                        }
                        Some(_) => {}
                    },
                    Err(ps) => {
                        for p in ps {
                            problems.push(format!("quarantine/{name}: {p}"));
                        }
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("quarantine/: {e}")),
    }
    Ok(VerifyReport {
        audit_records: chain.records,
        entries_checked,
        problems,
    })
}

#[derive(Debug, Serialize)]
pub struct StagingObject {
    pub object_id: String,
    /// Size of the staged `.part` file.
    pub size_bytes: u64,
    pub progress_bytes: Option<u64>,
    /// Blocks written, as a percentage of the object's blocks (one decimal), from the saved
    /// `.progress`. `None` without a readable progress record that matches the `.part` file.
    pub percent_complete: Option<f64>,
}

/// How much of staged object `id` (its `.part` is `part_bytes` long) its progress record says is
/// written, in percent with one decimal. `None` when the record does not parse or names another
/// object or length. The listener's limits are not known here; the record's own object length,
/// checked against the `.part` file, is the bound.
fn percent_complete(id: &str, part_bytes: u64, progress: &[u8]) -> Option<f64> {
    let limits = Limits {
        max_object_bytes: part_bytes,
        ..Limits::default()
    };
    let p = Progress::from_bytes(progress, &limits).ok()?;
    if hex::encode(p.object_id()) != id || p.params.object_len != part_bytes {
        return None;
    }
    let blocks = p.block_count();
    if blocks == 0 {
        return Some(100.0);
    }
    Some((p.done_count() as f64 * 1000.0 / blocks as f64).round() / 10.0)
}

#[derive(Debug, Serialize)]
pub struct ChannelStatus {
    pub channel: String,
    pub file: String,
    pub sequence: Option<u64>,
    pub bundle_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub store: String,
    pub quarantine_entries: usize,
    pub rejected_records: usize,
    pub staging_objects: Vec<StagingObject>,
    pub staging_bytes: u64,
    pub staging_extractions: usize,
    pub audit_records: usize,
    pub audit_chain_ok: bool,
    pub last_audit_record: Option<serde_json::Value>,
    pub channels: Vec<ChannelStatus>,
    /// EXTENSION POINT: the contents of `state/status.json` if a listener wrote one (heartbeat,
    /// overdue channels, link state). Merged verbatim; `None` when absent.
    pub listener: Option<serde_json::Value>,
    pub listener_error: Option<String>,
    /// Channels with `expect_every` in policy.toml (needs `--trust`), overdue or not.
    pub expectations: Vec<Expectation>,
    /// Names of the overdue channels among `expectations`.
    pub overdue_channels: Vec<String>,
    /// Bundles the sender's heartbeat ledger says were sent more than `sent_grace_secs` ago that
    /// have no accepted, duplicate or rejected audit record.
    pub sent_not_received: Vec<SentNotReceived>,
    pub sent_grace_secs: u64,
    /// Parts of the store that could not be read (permissions), reported instead of failing.
    pub errors: Vec<String>,
}

fn count(root: impl AsFd, sub: &[&str]) -> io::Result<Vec<String>> {
    let mut fd = None::<OwnedFd>;
    for s in sub {
        let next = match &fd {
            Some(f) => fsutil::open_dir_at(f, s),
            None => fsutil::open_dir_at(root.as_fd(), s),
        };
        match next {
            Ok(n) => fd = Some(n),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
    match fd {
        Some(f) => Ok(fsutil::list_dir(&f)?.into_iter().map(|(n, _)| n).collect()),
        None => Ok(Vec::new()),
    }
}

/// What `status` compares the store against, besides the store itself.
pub struct StatusOptions<'a> {
    /// For `expect_every` (overdue channels); `None` skips that check.
    pub trust: Option<&'a TrustStore>,
    pub now_unix_ms: u64,
    /// A ledger entry first sent less than this long ago may still be on its way.
    pub sent_grace_secs: u64,
}

/// `status` without a trust store (no overdue check), now, with the default grace.
pub fn status(dir: &Path) -> io::Result<StatusReport> {
    status_with(
        dir,
        &StatusOptions {
            trust: None,
            now_unix_ms: time::now_unix() * 1000,
            sent_grace_secs: 600,
        },
    )
}

/// `status`: counts, marks, overdue channels and ledger reconciliation, read-only.
pub fn status_with(dir: &Path, opts: &StatusOptions<'_>) -> io::Result<StatusReport> {
    let root = open_root(dir)?;
    let quarantine = count(&root, &["quarantine"])?;
    let rejected = count(&root, &["rejected"])?;
    let rejected_records = rejected
        .iter()
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .count();
    // Parts of the store a monitoring user may not be allowed to read (staging is 0700,
    // audit.jsonl 0640) are reported as errors instead of failing the whole command.
    let mut errors = Vec::new();
    let extractions = count(&root, &["staging", "extract"])
        .map(|v| v.len())
        .unwrap_or_else(|e| {
            errors.push(format!("staging/extract: {e}"));
            0
        });
    let mut staging_objects = Vec::new();
    let mut staging_bytes = 0;
    let obj_names = count(&root, &["staging", "objects"]).unwrap_or_else(|e| {
        errors.push(format!("staging/objects: {e}"));
        Vec::new()
    });
    if !obj_names.is_empty() {
        let st = fsutil::open_dir_at(&root, "staging")?;
        let objs = fsutil::open_dir_at(&st, "objects")?;
        for n in &obj_names {
            if let Some(id) = n.strip_suffix(".part") {
                let bytes = fsutil::stat_at(&objs, n)
                    .map(|s| s.st_size as u64)
                    .unwrap_or(0);
                let progress = format!("{id}.progress");
                let progress_bytes = fsutil::stat_at(&objs, &progress)
                    .ok()
                    .map(|s| s.st_size as u64);
                staging_bytes += bytes;
                let percent_complete = progress_bytes.and_then(|_| {
                    let blob = fsutil::read_file_at(&objs, &progress, MAX_PROGRESS_BYTES).ok()?;
                    percent_complete(id, bytes, &blob)
                });
                staging_objects.push(StagingObject {
                    object_id: id.to_owned(),
                    size_bytes: bytes,
                    progress_bytes,
                    percent_complete,
                });
            }
        }
    }
    let (listener, listener_error) = match fsutil::open_dir_at(&root, "state")
        .and_then(|st| fsutil::read_file_at(&st, "status.json", 16 << 20))
    {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("state/status.json: {e}"))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("state/status.json: {e}"))),
    };
    // Only the objects the sender's ledger names are looked up in the log, so the scan's memory
    // follows the ledger, not the log.
    let ledger = ledger_objects(listener.as_ref());
    let mut scan = AuditScan::default();
    let chain = read_chain(&root, &mut |rec| scan.visit(rec, Some(&ledger))).unwrap_or_else(|e| {
        errors.push(format!("audit.jsonl: {e}"));
        audit::check_chain(b"")
    });
    let last_audit_record = chain
        .last_line
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok());
    let mut last_accepted = scan.last_accepted;
    let mut channels = Vec::new();
    for n in count(&root, &["state", "channels"])? {
        if n.starts_with('.') || !n.ends_with(".json") {
            continue;
        }
        let st = fsutil::open_dir_at(&root, "state")?;
        let ch = fsutil::open_dir_at(&st, "channels")?;
        let parsed = fsutil::read_file_at(&ch, &n, 1 << 16)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ChannelMark>(&b).map_err(|e| e.to_string()));
        if let Ok(m) = &parsed {
            let e = last_accepted
                .entry(m.channel.clone())
                .or_insert(m.updated_unix_ms / 1000);
            *e = (*e).max(m.updated_unix_ms / 1000);
        }
        channels.push(match parsed {
            Ok(m) => ChannelStatus {
                channel: m.channel,
                file: n,
                sequence: Some(m.sequence),
                bundle_id: Some(m.bundle_id),
                error: None,
            },
            Err(e) => ChannelStatus {
                channel: String::from("?"),
                file: n,
                sequence: None,
                bundle_id: None,
                error: Some(format!(
                    "CORRUPT (accepting on this channel is refused): {e}"
                )),
            },
        });
    }
    let now_unix = opts.now_unix_ms / 1000;
    let expectations = opts
        .trust
        .map(|t| expectations(&rules(t), &last_accepted, now_unix))
        .unwrap_or_default();
    let overdue_channels = expectations
        .iter()
        .filter(|e| e.overdue)
        .map(|e| e.channel.clone())
        .collect();
    let staged: HashSet<&str> = staging_objects
        .iter()
        .map(|o| o.object_id.as_str())
        .collect();
    let sent_not_received = listener
        .as_ref()
        .map(|l| {
            sent_not_received(
                l,
                &scan.decided_objects,
                &staged,
                opts.now_unix_ms,
                opts.sent_grace_secs,
            )
        })
        .unwrap_or_default();
    Ok(StatusReport {
        store: dir.display().to_string(),
        quarantine_entries: quarantine.len(),
        rejected_records,
        staging_objects,
        staging_bytes,
        staging_extractions: extractions,
        audit_records: chain.records,
        // A partial last line is what a reader sees while the listener is mid-append.
        audit_chain_ok: chain.problems.len() == usize::from(chain.partial_tail),
        last_audit_record,
        channels,
        listener,
        listener_error,
        expectations,
        overdue_channels,
        sent_not_received,
        sent_grace_secs: opts.sent_grace_secs,
        errors,
    })
}

/// What the audit log says about deliveries.
#[derive(Debug, Default)]
pub struct AuditScan {
    /// Time of the latest `accepted` record per channel.
    pub last_accepted: HashMap<String, u64>,
    /// Object ids (32 hex) with an accepted, duplicate or rejected record: they arrived.
    pub decided_objects: HashSet<String>,
}

impl AuditScan {
    /// Takes one record into account. With `only`, object ids outside it are not kept (the
    /// caller only asks about those), so memory does not follow the log's length.
    pub fn visit(&mut self, rec: &AuditRecord, only: Option<&HashSet<String>>) {
        if !matches!(rec.outcome.as_str(), "accepted" | "duplicate" | "rejected") {
            return;
        }
        // A bundle's transport object id is the first 16 bytes of its bundle id.
        let object = rec.object_id.clone().or_else(|| {
            rec.bundle_id
                .as_ref()
                .and_then(|b| b.get(..32).map(str::to_owned))
        });
        if let Some(o) = object
            && only.is_none_or(|set| set.contains(&o))
        {
            self.decided_objects.insert(o);
        }
        if rec.outcome == "accepted"
            && let Some(c) = &rec.channel
        {
            let secs = rec.time_unix_ms / 1000;
            let e = self.last_accepted.entry(c.clone()).or_insert(secs);
            *e = (*e).max(secs);
        }
    }
}

/// Object ids (lowercase hex) in the listener's last heartbeat ledger.
fn ledger_objects(listener: Option<&serde_json::Value>) -> HashSet<String> {
    listener
        .and_then(|l| l["last_heartbeat"]["ledger"].as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["object_id"].as_str().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

/// Streams `DIR/audit.jsonl` through the chain check (an absent log is an empty one).
fn read_chain(root: &OwnedFd, visit: &mut dyn FnMut(&AuditRecord)) -> io::Result<ChainReport> {
    match fsutil::open_file_read(root, audit::AUDIT_FILE) {
        Ok(f) => audit::check_chain_reader(io::BufReader::with_capacity(1 << 16, f), visit),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(audit::check_chain(b"")),
        Err(e) => Err(e),
    }
}

/// Latest accepted time per channel from a store's audit log and channel marks (for the
/// listener at start; `status` computes the same inline).
pub fn last_accepted_by_channel(dir: &Path) -> io::Result<HashMap<String, u64>> {
    let root = open_root(dir)?;
    let mut scan = AuditScan::default();
    read_chain(&root, &mut |rec| scan.visit(rec, Some(&HashSet::new())))?;
    let mut last = scan.last_accepted;
    if let Ok(st) = fsutil::open_dir_at(&root, "state")
        && let Ok(ch) = fsutil::open_dir_at(&st, "channels")
    {
        for (n, _) in fsutil::list_dir(&ch)? {
            let mark = fsutil::read_file_at(&ch, &n, 1 << 16)
                .ok()
                .and_then(|b| serde_json::from_slice::<ChannelMark>(&b).ok());
            if let Some(m) = mark {
                let e = last.entry(m.channel).or_insert(m.updated_unix_ms / 1000);
                *e = (*e).max(m.updated_unix_ms / 1000);
            }
        }
    }
    Ok(last)
}
