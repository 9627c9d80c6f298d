//! `--config FILE`: the receiver's TOML configuration (docs/configuration.md).
//!
//! Every option of `listen` can live in `[listen]`; a flag on the command line wins over the
//! file, and the file over the built-in default. Each option is resolved exactly once, here, as
//! `flag.or(file).unwrap_or(DEFAULT)`; the defaults below are the ones `--help` states.
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

use crate::commands::{listen, status};

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
    pub metrics: Option<SocketAddr>,
    pub rcvbuf: Option<usize>,
    pub max_datagram: Option<usize>,
    pub memory: Option<u64>,
    pub staging_quota: Option<u64>,
    pub max_object: Option<u64>,
    pub max_sessions: Option<usize>,
    pub idle_timeout: Option<u64>,
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

/// Reads and parses a config file; the error names the file and, for a typo, the unknown key.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let mut config: Config =
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let l = &mut config.listen;
    for p in [&mut l.store, &mut l.trust, &mut l.link_key] {
        if let Some(p) = p.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

/// `listen`'s options, every one resolved.
#[derive(Debug, Clone)]
pub struct Listen {
    pub bind: SocketAddr,
    pub store: PathBuf,
    pub trust: PathBuf,
    pub link_key: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    pub rcvbuf: usize,
    pub max_datagram: usize,
    pub memory: u64,
    pub staging_quota: u64,
    pub max_object: u64,
    pub max_sessions: usize,
    pub idle_timeout: u64,
    pub decode_threads: usize,
    pub max_bundles: Option<u64>,
    pub json: bool,
}

fn required<T>(value: Option<T>, flag: &str, key: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{flag} is required (or `{key}` in the --config file's [listen])"))
}

/// Flags over `[listen]` over defaults.
pub fn resolve_listen(a: listen::Args, f: &ListenSection) -> Result<Listen, String> {
    Ok(Listen {
        bind: required(a.bind.or(f.bind), "--bind ADDR:PORT", "bind")?,
        store: required(a.store.or(f.store.clone()), "--store DIR", "store")?,
        trust: required(a.trust.or(f.trust.clone()), "--trust DIR", "trust")?,
        link_key: a.link_key.or(f.link_key.clone()),
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
        decode_threads: a
            .decode_threads
            .or(f.decode_threads)
            .unwrap_or(DEFAULT_DECODE_THREADS),
        max_bundles: a.max_bundles.or(f.max_bundles),
        json: a.json || f.json.unwrap_or(false),
    })
}

/// `status`'s options, resolved.
#[derive(Debug, Clone)]
pub struct Status {
    pub store: PathBuf,
    pub trust: Option<PathBuf>,
    pub sent_grace_secs: u64,
    pub json: bool,
}

/// Flags over the file (`store`/`trust` from `[listen]`) over defaults.
pub fn resolve_status(a: status::Args, c: &Config) -> Result<Status, String> {
    Ok(Status {
        store: a.store.or(c.listen.store.clone()).ok_or_else(|| {
            "--store DIR is required (or `store` in the --config file's [listen])".to_string()
        })?,
        trust: a.trust.or(c.listen.trust.clone()),
        sent_grace_secs: a
            .sent_grace
            .or(c.status.sent_grace_secs)
            .unwrap_or(DEFAULT_SENT_GRACE_SECS),
        json: a.json,
    })
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
