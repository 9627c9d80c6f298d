//! `sluice-send bundle create|inspect`: sign approved files into one `.sluice` file, or show
//! what a bundle claims without trusting it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sluice_common::bundle::{
    self, BuildError, BundleSpec, EntryKind, FileSource, Phase, SecretKey, SourceEntry, path,
};
use sluice_common::exit::{self, CommandError, Exit};

/// What each exit code means for `bundle create` (rendered into its `--help`).
pub const CREATE_EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "bundle written"),
    (
        Exit::Usage,
        "bad flags or key, a bad input name, or FILE exists",
    ),
    (
        Exit::Input,
        "an input or the key unreadable, or not a regular file or directory",
    ),
    (
        Exit::Storage,
        "the bundle could not be written (nothing is left behind)",
    ),
];

/// What each exit code means for `bundle inspect`.
pub const INSPECT_EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "header shown (the signature is not checked)"),
    (Exit::Input, "the file unreadable"),
    (
        Exit::Invalid,
        "not a readable bundle (malformed or truncated header)",
    ),
];

/// `bundle create` and `bundle inspect` (the group's help text is on `cli::Command::Bundle`).
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    Create(CreateArgs),
    Inspect(InspectArgs),
}

/// Sign files and directories into one bundle file
///
/// Each PATH contributes its own name at the top of the bundle: a file `report.pdf` becomes
/// `report.pdf`, and a directory `approved/` becomes `approved/` with everything below it
/// (like `tar -C PARENT NAME` or `cp -r`). To put a directory's contents at the top, pass them
/// individually (`approved/*`). Only regular files and directories are accepted; a symlink,
/// device, FIFO or socket anywhere is an error naming it. Names must pass the path policy
/// (docs/bundle.md §Paths). Only the executable bit travels.
///
/// The same files, key, channel, sequence and time give byte-identical bundles. The creation time
/// is now, or SOURCE_DATE_EPOCH when set. FILE is never overwritten: the bundle is written to a
/// temporary file beside it, synced, then linked into place.
///
/// Examples:
///
///   sluice-send bundle create --key alice.key --channel updates --out u.sluice approved/
///   sluice-send bundle create --key ~/.ssh/id_ed25519 --channel av-sigs --seq 42 --expires 7d
///       --note "weekly signatures" --out av.sluice sigs/*.cvd        (one command line)
///   SOURCE_DATE_EPOCH=1700000000 sluice-send bundle create --key k.key --channel c --out r.sluice d/
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(CREATE_EXIT_CODES)
)]
pub struct CreateArgs {
    /// Signing key: a sluice .key file or an unencrypted OpenSSH ed25519 private key.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Channel name (a-z 0-9 . _ -); the high side's policy says who may publish on it.
    #[arg(long)]
    pub channel: String,
    /// Sequence number; must increase per channel when the receiver requires it. Default: the
    /// creation time in unix seconds, so a nightly job's bundles always increase.
    #[arg(long)]
    pub seq: Option<u64>,
    /// Refuse the bundle on the high side after this long, e.g. 36h, 7d, 1d12h.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// A short signed note (shown by inspect and recorded by the receiver).
    #[arg(long)]
    pub note: Option<String>,
    /// Bundle file to create (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Files and directories to include.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Show what a bundle claims: header, signer key id, entries and sizes
///
/// The signature is NOT checked against any trust store: inspect tells you what a bundle says,
/// not whether to believe it. Use `sluice-recv verify --trust DIR FILE` for that.
///
/// Example:
///
///   sluice-send bundle inspect u.sluice --json | jq .entries
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(INSPECT_EXIT_CODES)
)]
pub struct InspectArgs {
    /// Bundle file.
    pub file: PathBuf,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BundleCommand) -> Result<Exit, CommandError> {
    match cmd {
        BundleCommand::Create(a) => create(a),
        BundleCommand::Inspect(a) => inspect(a),
    }
}

/// Every failure of `bundle` says what to do about it.
fn fail(code: Exit, msg: impl Into<String>, help: impl Into<String>) -> CommandError {
    CommandError::new(code, msg).help(help)
}

/// `path` could not be opened or read.
fn unreadable(path: &Path, e: impl std::fmt::Display) -> CommandError {
    fail(
        Exit::Input,
        format!("cannot read {}: {e}", path.display()),
        "check the path and permissions",
    )
}

/// Directory `path` could not be listed.
fn unlistable(path: &Path, e: impl std::fmt::Display) -> CommandError {
    fail(
        Exit::Input,
        format!("cannot list {}: {e}", path.display()),
        "check permissions",
    )
}

/// Read a small file (a key), refusing anything over `max` bytes.
fn read_small(p: &Path, max: u64) -> Result<Vec<u8>, CommandError> {
    let f = File::open(p).map_err(|e| unreadable(p, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| unreadable(p, e))?;
    if buf.len() as u64 > max {
        return Err(fail(
            Exit::Input,
            format!("{} is too large to be a key", p.display()),
            "pass the key file itself",
        ));
    }
    Ok(buf)
}

fn load_key(p: &Path) -> Result<SecretKey, CommandError> {
    let bytes = zeroize::Zeroizing::new(read_small(p, bundle::keys::MAX_KEY_FILE_BYTES as u64)?);
    // Said before any mode warning: a public key's mode is fine and its format is not "unknown".
    if is_public_key(&bytes) {
        return Err(fail(
            Exit::Usage,
            format!(
                "{}: this is a public key; --key needs the private key",
                p.display()
            ),
            "pass the private key file (`PREFIX.key` from `sluice-send keygen`, not `PREFIX.pub`)",
        ));
    }
    if let Ok(m) = std::fs::metadata(p) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %p.display(), "secret key is readable by group or others; chmod 600 it");
        }
    }
    bundle::parse_secret_key(&bytes).map_err(|e| {
        fail(
            Exit::Usage,
            format!("{}: {e}", p.display()),
            "pass a key made by `sluice-send keygen` or an unencrypted OpenSSH ed25519 key",
        )
    })
}

/// Whether the file's first line that is not a comment is a public key line (Sluice's or
/// OpenSSH's), by its first word.
fn is_public_key(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next());
    matches!(
        first,
        Some(bundle::keys::PUBLIC_KEY_TAG | bundle::keys::SSH_ED25519_TAG)
    )
}

/// Walk the inputs: bundle path → filesystem path, refusing anything but files and directories.
fn collect(
    paths: &[PathBuf],
) -> Result<(Vec<SourceEntry>, HashMap<String, PathBuf>), CommandError> {
    let mut entries = Vec::new();
    let mut map = HashMap::new();
    let mut stack: Vec<(PathBuf, String)> = Vec::new();
    for p in paths {
        let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            fail(
                Exit::Usage,
                format!("{} has no usable name to put in the bundle", p.display()),
                "name the directory itself (e.g. `../approved` rather than `.`), or pass its contents",
            )
        })?;
        stack.push((p.clone(), name.to_string()));
    }
    while let Some((fs_path, bpath)) = stack.pop() {
        if let Err(e) = path::check_path(&bpath) {
            return Err(fail(
                Exit::Input,
                format!("{}: {e}", fs_path.display()),
                "rename the file to a portable name, or leave it out",
            ));
        }
        let meta = std::fs::symlink_metadata(&fs_path).map_err(|e| unreadable(&fs_path, e))?;
        let ft = meta.file_type();
        if ft.is_file() {
            entries.push(SourceEntry {
                kind: EntryKind::File,
                path: bpath.clone(),
                size: meta.len(),
                executable: meta.permissions().mode() & 0o111 != 0,
            });
        } else if ft.is_dir() {
            entries.push(SourceEntry::dir(bpath.clone()));
            let rd = std::fs::read_dir(&fs_path).map_err(|e| unlistable(&fs_path, e))?;
            for child in rd {
                let child = child.map_err(|e| unlistable(&fs_path, e))?;
                let cpath = child.path();
                let cname = child.file_name().into_string().map_err(|_| {
                    fail(
                        Exit::Input,
                        format!("{} is not valid UTF-8", cpath.display()),
                        "rename it to a UTF-8 name, or leave it out",
                    )
                })?;
                stack.push((cpath, format!("{bpath}/{cname}")));
            }
        } else {
            let kind = if ft.is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file or directory (device, FIFO or socket)"
            };
            return Err(fail(
                Exit::Input,
                format!(
                    "{} is {kind}; bundles hold only regular files and directories",
                    fs_path.display()
                ),
                "copy the real file into place (e.g. `cp -L`), or leave it out",
            ));
        }
        map.insert(bpath, fs_path);
    }
    Ok((entries, map))
}

struct FsSource {
    map: HashMap<String, PathBuf>,
}

impl FileSource for FsSource {
    fn open(&mut self, p: &str) -> std::io::Result<Box<dyn Read + '_>> {
        let fs_path = self
            .map
            .get(p)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not an input"))?;
        // No-follow and non-blocking: a file swapped for a symlink or FIFO since the walk fails.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(fs_path)?;
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no longer a regular file",
            ));
        }
        Ok(Box::new(f))
    }
}

fn now_or_epoch() -> Result<u64, CommandError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse::<u64>().map_err(|_| {
            fail(
                Exit::Usage,
                format!("SOURCE_DATE_EPOCH={s:?} is not unix seconds"),
                "set it to an integer like 1700000000 or unset it",
            )
        }),
        Err(_) => Ok(sluice_host::time::now_unix()),
    }
}

fn create(a: CreateArgs) -> Result<Exit, CommandError> {
    if a.out.symlink_metadata().is_ok() {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} already exists; bundle create never overwrites",
                a.out.display()
            ),
            "choose another --out name, or move the old bundle away first",
        ));
    }
    let created = now_or_epoch()?;
    let expires = match &a.expires {
        None => None,
        Some(d) => {
            let secs = bundle::parse_duration(d)
                .map_err(|e| fail(Exit::Usage, format!("--expires: {e}"), "e.g. --expires 7d"))?;
            Some(created.checked_add(secs).ok_or_else(|| {
                fail(
                    Exit::Usage,
                    "--expires is too far in the future",
                    "use a shorter duration",
                )
            })?)
        }
    };
    let spec = BundleSpec {
        channel: a.channel.clone(),
        sequence: a.seq.unwrap_or(created),
        created,
        expires,
        note: a.note.clone(),
    };
    let key = load_key(&a.key)?;
    let (entries, map) = collect(&a.paths)?;
    let total: u64 = entries.iter().map(|e| e.size).sum();

    let dir = match a.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fname = a
        .out
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let mut rnd = [0u8; 8];
    let _ = getrandom::fill(&mut rnd);
    let tmp = dir.join(format!(
        ".{fname}.tmp-{}-{}",
        std::process::id(),
        hex::encode(rnd)
    ));
    let result = write_bundle(&spec, entries, &key, map, &tmp, &a.out, &dir, total);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let built = result?;
    if a.json {
        let mut v = sluice_host::json::report("bundle-create");
        sluice_host::json::set_time_secs(&mut v, "created", Some(built.header.created));
        sluice_host::json::set_time_secs(&mut v, "expires", built.header.expires);
        let fields = serde_json::json!({
            "bundle_id": built.id.to_hex(),
            "out": a.out.display().to_string(),
            "bundle_bytes": built.bytes,
            "channel": built.header.channel,
            "sequence": built.header.sequence,
            "signer_key_id": built.header.signer.to_hex(),
            "entries": built.header.entries.len(),
            "file_bytes": built.header.total_file_bytes(),
        });
        if let serde_json::Value::Object(f) = fields {
            v.extend(f);
        }
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!("{}", built.id);
        eprintln!(
            "wrote {} ({} bytes, {} entries, channel {}, sequence {}, signer {})",
            a.out.display(),
            built.bytes,
            built.header.entries.len(),
            built.header.channel,
            built.header.sequence,
            built.header.signer
        );
    }
    Ok(Exit::Ok)
}

#[allow(clippy::too_many_arguments)]
fn write_bundle(
    spec: &BundleSpec,
    entries: Vec<SourceEntry>,
    key: &SecretKey,
    map: HashMap<String, PathBuf>,
    tmp: &Path,
    out: &Path,
    dir: &Path,
    total: u64,
) -> Result<bundle::Built, CommandError> {
    let storage = |what: &str, e: std::io::Error| {
        fail(
            Exit::Storage,
            format!("{what}: {e}"),
            "check free space and permissions in the output directory",
        )
    };
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)
        .map_err(|e| storage(&format!("cannot create {}", tmp.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let bar = crate::progress::bytes(total.saturating_mul(2), "bundle");
    let mut src = FsSource { map };
    let built = bundle::build(
        spec,
        entries,
        key,
        &mut src,
        &mut w,
        &mut |_phase: Phase, n| bar.inc(n),
    )
    .map_err(|e| match e {
        BuildError::Write(e) => storage(&format!("writing {}", tmp.display()), e),
        BuildError::Io { .. } | BuildError::Changed { .. } => fail(
            Exit::Input,
            e.to_string(),
            "make sure the inputs are readable and not being modified",
        ),
        other => fail(
            Exit::Usage,
            other.to_string(),
            "fix the input named above and run again",
        ),
    })?;
    bar.finish_and_clear();
    let f = w
        .into_inner()
        .map_err(|e| storage("flushing the bundle", e.into_error()))?;
    f.sync_all().map_err(|e| storage("syncing the bundle", e))?;
    drop(f);
    std::fs::hard_link(tmp, out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            fail(
                Exit::Usage,
                format!("{} appeared while bundling; not overwritten", out.display()),
                "choose another --out name",
            )
        } else {
            storage(&format!("cannot create {}", out.display()), e)
        }
    })?;
    let _ = std::fs::remove_file(tmp);
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(built)
}

fn inspect(a: InspectArgs) -> Result<Exit, CommandError> {
    let f = File::open(&a.file).map_err(|e| unreadable(&a.file, e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (env, h) = bundle::inspect(std::io::BufReader::new(f)).map_err(|e| {
        fail(
            exit::from_code_or_failure(e.reason.exit_code()),
            format!("{} is not a readable bundle: {e}", a.file.display()),
            e.remediation(),
        )
    })?;
    let expected = env.len().saturating_add(h.total_file_bytes());
    let policy = path::check_manifest(&h.entries, &path::Limits::default()).err();
    if a.json {
        let entries: Vec<_> = h
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "kind": if e.kind == EntryKind::Dir { "dir" } else { "file" },
                    "path": e.path, "size_bytes": e.size,
                    "blake3": (e.kind == EntryKind::File).then(|| hex::encode(e.blake3)),
                    "executable": e.executable,
                })
            })
            .collect();
        let mut v = sluice_host::json::report("bundle-inspect");
        sluice_host::json::set_time_secs(&mut v, "created", Some(h.created));
        sluice_host::json::set_time_secs(&mut v, "expires", h.expires);
        let fields = serde_json::json!({
            "bundle_id": env.id.to_hex(),
            "format_version": h.format_version,
            "channel": h.channel, "sequence": h.sequence, "note": h.note,
            "signer_key_id": h.signer.to_hex(),
            "signature_checked": false,
            "file_bytes": h.total_file_bytes(),
            "expected_bundle_bytes": expected, "bundle_bytes": len,
            "path_policy_violation": policy.as_ref().map(|e| e.to_string()),
            "entries": entries,
        });
        if let serde_json::Value::Object(f) = fields {
            v.extend(f);
        }
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!("bundle id      {}", env.id);
        println!("format         {}", h.format_version);
        println!("channel        {}", h.channel);
        println!("sequence       {}", h.sequence);
        println!(
            "created        {} ({})",
            sluice_host::time::rfc3339(h.created),
            h.created
        );
        match h.expires {
            Some(e) => println!("expires        {} ({e})", sluice_host::time::rfc3339(e)),
            None => println!("expires        never"),
        }
        if let Some(n) = &h.note {
            println!("note           {}", n.escape_debug());
        }
        println!("signer key id  {}", h.signer);
        let files = h
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count();
        println!(
            "entries        {} ({files} files, {} dirs), {} file bytes",
            h.entries.len(),
            h.entries.len() - files,
            h.total_file_bytes()
        );
        for e in &h.entries {
            match e.kind {
                EntryKind::Dir => println!("  dir  {:>14}    {}/", "", path::escape(&e.path)),
                EntryKind::File => println!(
                    "  file {:>14} {} {}  {}",
                    e.size,
                    if e.executable { "x" } else { "-" },
                    &hex::encode(e.blake3)[..16],
                    path::escape(&e.path)
                ),
            }
        }
        if let Some(p) = &policy {
            println!("WARNING: path policy violated, every receiver will refuse this bundle: {p}");
        }
        if len != expected {
            println!(
                "WARNING: the file is {len} bytes but the header describes {expected} (truncated or extra bytes)"
            );
        }
        println!(
            "signature NOT checked against any trust store; run `sluice-recv verify --trust DIR {}` on the high side",
            a.file.display()
        );
    }
    Ok(Exit::Ok)
}
