//! `sluice-send keygen`: make an officer's ed25519 key pair.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sluice_common::bundle::SecretKey;
use sluice_common::bundle::keys::check_key_name;
use sluice_common::exit::{CommandError, Exit};

/// What each exit code means for `keygen` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "both files written"),
    (Exit::Failure, "the OS random number generator failed"),
    (Exit::Usage, "a bad --name, or a file of that prefix exists"),
    (
        Exit::Storage,
        "a file could not be created (nothing is kept)",
    ),
];

/// Make an ed25519 signing key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub
///
/// Run this on the offline signing host. Copy only PREFIX.pub to the high side's trust store
/// (e.g. /etc/sluice/trust/NAME.pub); the trust store names the signer after the file stem.
/// Existing files are never overwritten.
///
/// Examples:
///
///   sluice-send keygen --out /secure/alice            # alice.key + alice.pub, name "alice"
///   sluice-send keygen --out k/officer --name ops-2026 --json
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = sluice_common::exit::help_table(EXIT_CODES)
)]
pub struct Args {
    /// Path prefix for the two files: PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Signer name written into the .pub file (default: the prefix's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Writes the key pair; never overwrites a file.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let key_path = with_ext(&args.out, ".key");
    let pub_path = with_ext(&args.out, ".pub");
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .out
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    check_key_name(&name).map_err(|e| {
        CommandError::usage(e.to_string())
            .help("pass --name with a simple name such as `alice` or `ops-2026`")
    })?;
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            return Err(CommandError::usage(format!(
                "{} already exists; keygen never overwrites a key",
                p.display()
            ))
            .help("choose another --out prefix, or move the old files away first"));
        }
    }
    let seed = crate::key_seed::fresh_key_seed("keygen")?;
    let key = SecretKey::from_seed(&seed);
    let secret_text = key.to_sluice_text(&name);
    write_new(&key_path, secret_text.as_bytes(), 0o600).map_err(|e| {
        CommandError::storage(format!("cannot create {}: {e}", key_path.display())).help(
            "check that the directory exists and is writable, and that no file of that name exists",
        )
    })?;
    if let Err(e) = write_new(
        &pub_path,
        key.public().to_sluice_text(&name).as_bytes(),
        0o644,
    ) {
        let _ = std::fs::remove_file(&key_path);
        return Err(
            CommandError::storage(format!("cannot create {}: {e}", pub_path.display()))
                .help("check that the directory is writable; nothing was kept"),
        );
    }
    let id = key.key_id();
    if args.json {
        let v = serde_json::json!({
            "key_id": id.to_hex(),
            "name": name,
            "secret_key": key_path.display().to_string(),
            "public_key": pub_path.display().to_string(),
        });
        println!("{}", sluice_host::json::stamp("keygen", v));
    } else {
        println!("key id {id} ({name})");
        println!(
            "secret key: {} (mode 0600; keep it on this offline host)",
            key_path.display()
        );
        println!(
            "public key: {} (copy it into the high side's trust directory)",
            pub_path.display()
        );
    }
    Ok(Exit::Ok)
}
