//! `--config FILE`: the receiver's TOML configuration (docs/configuration.md).
//!
//! Every option of `listen` can live in `[listen]`; a flag on the command line wins over the
//! file, and the file over the built-in default. Each option is resolved exactly once, as
//! `flag.or(file).unwrap_or(DEFAULT)`, where each command settles its flags (`listen::settle`,
//! `status::settle`) into the resolved [`Listen`] and [`Status`] below; the defaults below are
//! the ones `--help` states.
//!
//! ```toml
//! [listen]
//! bind = "10.0.0.2:7000"
//! store = "/var/lib/sluice"
//! trust = "/etc/sluice/trust"
//! link_key = "/etc/sluice/link.key"
//! metrics = "127.0.0.1:9187"
//!
//! [status]
//! sent_grace_secs = 600
//! ```
//!
//! Unknown keys are errors naming the key. Relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_common::exit::CommandError;

pub const DEFAULT_RCVBUF: usize = 64 << 20;
pub const DEFAULT_MAX_DATAGRAM: usize = 8972;
pub const DEFAULT_MEMORY_MIB: u64 = 48;
pub const DEFAULT_STAGING_QUOTA_GIB: u64 = 128;
pub const DEFAULT_MAX_OBJECT_GIB: u64 = 64;
pub const DEFAULT_MAX_SESSIONS: usize = 64;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_DECODE_THREADS: usize = 1;
/// How long after a bundle was first sent (per the heartbeat ledger) its absence is reported.
pub const DEFAULT_SENT_GRACE_SECS: u64 = 600;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub status: StatusSection,
}

/// `[listen]`: every option of `sluice-recv listen`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub bind: Option<SocketAddr>,
    pub store: Option<PathBuf>,
    pub trust: Option<PathBuf>,
    pub link_key: Option<PathBuf>,
    pub insecure_public_link_key: Option<bool>,
    pub metrics: Option<SocketAddr>,
    pub rcvbuf: Option<usize>,
    pub max_datagram: Option<usize>,
    pub memory: Option<u64>,
    pub staging_quota: Option<u64>,
    pub max_object: Option<u64>,
    pub max_sessions: Option<usize>,
    pub idle_timeout: Option<u64>,
    pub heartbeat_timeout: Option<u64>,
    pub decode_threads: Option<usize>,
    pub max_bundles: Option<u64>,
    pub json: Option<bool>,
}

/// `[status]`: `status` reads `store` and `trust` from `[listen]` when not given as flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    pub sent_grace_secs: Option<u64>,
}

/// Reads and parses a config file (`sluice_host::config::load`: size limit, the error names the
/// file and, for a typo, the unknown key); without `--config`, the defaults.
pub fn load(path: Option<&Path>) -> Result<Config, CommandError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let mut config: Config = sluice_host::config::load(path)?;
    let l = &mut config.listen;
    sluice_host::config::rebase(path, [&mut l.store, &mut l.trust, &mut l.link_key]);
    Ok(config)
}

/// `listen`'s options, every one resolved.
#[derive(Debug, Clone)]
pub struct Listen {
    pub bind: SocketAddr,
    pub store: PathBuf,
    pub trust: PathBuf,
    pub link_key: Option<PathBuf>,
    pub insecure_public_link_key: bool,
    pub metrics: Option<SocketAddr>,
    pub rcvbuf: usize,
    pub max_datagram: usize,
    pub memory: u64,
    pub staging_quota: u64,
    pub max_object: u64,
    pub max_sessions: usize,
    pub idle_timeout: u64,
    /// WARN when no heartbeat was seen for this many seconds; `None` (or 0) never warns.
    pub heartbeat_timeout: Option<u64>,
    pub decode_threads: usize,
    pub max_bundles: Option<u64>,
    pub json: bool,
}

/// A required option: the flag, else the `[listen]` key, else a usage error naming both.
pub fn required<T>(value: Option<T>, flag: &str, key: &str) -> Result<T, CommandError> {
    value.ok_or_else(|| {
        CommandError::usage(format!(
            "{flag} is required (or `{key}` in the --config file's [listen])"
        ))
    })
}

/// The link-key settings of `[listen]`.
#[derive(Debug, Clone)]
pub struct ListenLinkKey {
    pub path: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
    pub insecure_public: bool,
}

/// `status`'s options, resolved.
#[derive(Debug, Clone)]
pub struct Status {
    pub store: PathBuf,
    pub trust: Option<PathBuf>,
    /// The `[listen]` link key as `listen` would load it, when the --config file names a
    /// `link_key` or a `bind` (so `status` checks what the unit will start with).
    pub listen_link_key: Option<ListenLinkKey>,
    pub sent_grace_secs: u64,
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = toml::from_str::<Config>("[listen]\nbnid = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.to_string().contains("bnid"), "{e}");
    }
}
