//! One bundle ready to send: opened, verified in full against the trust directory, identified.
//! `udp`, `watch` and `media` all send only what passed here, so nothing unverifiable ever
//! crosses the diode (or reaches a medium).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sluice_common::bundle::BundleId;
use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::{self, DiscardSink, VerifyError, VerifyOptions};
use sluice_common::exit::{self, CommandError};

/// An opened, verified bundle. The same open file was verified and is then sent, so a file
/// replaced after verification is not what goes out.
pub struct Prepared {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    pub id: BundleId,
    pub channel: String,
    pub sequence: u64,
}

impl Prepared {
    /// Fills `buf` from `offset` of the verified file: what the sender asks for, over the diode
    /// (`link`) or onto media (`media_out`), with the same error either way.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), CommandError> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            CommandError::input(format!("reading {} at {offset}: {e}", self.path.display()))
        })
    }
}

/// Why a bundle could not be prepared.
#[derive(Debug)]
pub enum PrepareError {
    /// The file could not be opened.
    Open(std::io::Error),
    /// The file was opened but its size could not be read, or reading it failed mid-way.
    Stat(std::io::Error),
    /// The bundle failed its own verification.
    Invalid(VerifyError),
}

impl PrepareError {
    /// The error a command that stops at the first bad bundle (`udp`, `media`) reports;
    /// `nothing_done` says what did not happen ("nothing was sent").
    pub fn into_command_error(self, path: &Path, nothing_done: &str) -> CommandError {
        match self {
            PrepareError::Open(e) => {
                CommandError::input(format!("cannot open bundle {}: {e}", path.display()))
            }
            PrepareError::Stat(e) => {
                CommandError::input(format!("cannot stat {}: {e}", path.display()))
            }
            PrepareError::Invalid(e) => CommandError::new(
                exit::from_code_or_failure(e.reason.exit_code()),
                format!(
                    "{} failed its own verification ({}: {}); {nothing_done}. {}",
                    path.display(),
                    e.reason.code(),
                    e.detail,
                    e.remediation()
                ),
            ),
        }
    }
}

/// Opens a bundle and verifies it fully (signature, policy, every file hash) against `trust`.
pub fn prepare(path: &Path, trust: &TrustStore) -> Result<Prepared, PrepareError> {
    let file = File::open(path).map_err(PrepareError::Open)?;
    let len = file.metadata().map_err(PrepareError::Stat)?.len();
    let options = VerifyOptions {
        now: sluice_host::time::now_unix(),
        last_sequence: None,
    };
    let verified = verify::verify(
        std::io::BufReader::with_capacity(1 << 20, &file),
        trust,
        &options,
        &mut DiscardSink,
    )
    .map_err(PrepareError::Invalid)?;
    Ok(Prepared {
        path: path.to_path_buf(),
        file,
        len,
        id: verified.id(),
        channel: verified.header().channel.clone(),
        sequence: verified.header().sequence,
    })
}

/// Loads the trust directory each bundle is checked against. `missing` is the error when none
/// was given (it names where the option may come from).
pub fn load_trust(dir: Option<&Path>, missing: &str) -> Result<TrustStore, CommandError> {
    let dir = dir.ok_or_else(|| CommandError::usage(missing))?;
    sluice_host::trust_dir::load_trust_dir(dir).map_err(|e| CommandError::usage(format!("{e:#}")))
}
