//! `sluice-send link-keygen`: make the secret link key both ends of a diode share.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sluice_common::exit::{CommandError, Exit};
use sluice_common::linkkey::{fingerprint, format_link_key};
use sluice_common::transport::wire::LinkKey;
use zeroize::Zeroizing;

/// What each exit code means for `link-keygen` (rendered into `--help` by `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "the key file written"),
    (Exit::Failure, "the OS random number generator failed"),
    (Exit::Usage, "FILE exists and --force was not given"),
    (
        Exit::Storage,
        "the file could not be written (nothing is left behind)",
    ),
];

/// Make a secret link key: 32 random bytes written as 64 hex digits, mode 0600
///
/// Both ends of one diode (and the media carried across it) must use the same key: every frame
/// and volume header carries a tag under it, so without it frames are forged by anyone on the
/// low-side network. Run this once on the low side, then copy the same file to the high side
/// (on media you carry across) and pass it as --link-key (or `link_key` in the config) to
/// `udp`, `watch` and `media` here and to `listen` and `import` there. The file is written
/// atomically (temporary file, fsync, rename, fsync of the directory) and never overwritten
/// unless --force is given. Compare the printed fingerprint on both sides.
///
/// Examples:
///
///   sluice-send link-keygen --out /etc/sluice/link.key
///   sluice-send link-keygen --out link.key --json
///   sluice-send link-keygen --out /etc/sluice/link.key --force    # rotate (both sides at once)
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = sluice_common::exit::help_table(EXIT_CODES)
)]
pub struct Args {
    /// The key file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing file (a key rotation: the other side needs the new file too).
    #[arg(long)]
    pub force: bool,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Writes a fresh key to `args.out`.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let out = &args.out;
    if !args.force && out.symlink_metadata().is_ok() {
        return Err(exists(out));
    }
    let raw = crate::key_seed::fresh_key_seed("link-keygen")?;
    let text = Zeroizing::new(format_link_key(&raw));
    let key = LinkKey::from_bytes(*raw);
    write_atomically(out, text.as_bytes(), args.force).map_err(|e| match e {
        WriteError::Exists => exists(out),
        WriteError::Io(what, e) => {
            CommandError::storage(format!("cannot {what} {}: {e}", out.display()))
                .help("check that the directory exists and is writable; nothing was left behind")
        }
    })?;
    let print = fingerprint(&key);
    if args.json {
        let v = sluice_host::json::stamp(
            "link-keygen",
            serde_json::json!({
                "link_key": out.display().to_string(),
                "mode": "0600",
                "fingerprint": print,
            }),
        );
        println!("{v}");
    } else {
        println!(
            "link key: {} (mode 0600, fingerprint {print})",
            out.display()
        );
        println!(
            "copy the same file to the high side (e.g. /etc/sluice/link.key, readable by the \
             sluice-recv user) and pass --link-key FILE on both sides"
        );
    }
    Ok(Exit::Ok)
}

fn exists(out: &Path) -> CommandError {
    CommandError::usage(format!(
        "{} already exists; link-keygen never overwrites a key unless told to",
        out.display()
    ))
    .help("choose another --out, or pass --force to rotate the key (then copy it to the high side too)")
}

enum WriteError {
    Exists,
    Io(&'static str, std::io::Error),
}

/// Temporary file (0600, created new) → write → fsync → link or rename into place → fsync the
/// directory, so a crash leaves either no key or the whole key, never a partial one. Without
/// `replace`, `hard_link` is the no-overwrite rename: it fails if the name was taken meanwhile.
fn write_atomically(out: &Path, bytes: &[u8], replace: bool) -> Result<(), WriteError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out.file_name().ok_or_else(|| {
        WriteError::Io(
            "write",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| WriteError::Io("create a temporary file beside", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| WriteError::Io("write", e))?;
        if replace {
            std::fs::rename(&tmp, out).map_err(|e| WriteError::Io("rename into", e))?;
        } else {
            std::fs::hard_link(&tmp, out).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    WriteError::Exists
                } else {
                    WriteError::Io("link into", e)
                }
            })?;
            let _ = std::fs::remove_file(&tmp);
        }
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| WriteError::Io("fsync the directory of", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
