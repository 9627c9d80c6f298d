//! `--config FILE`: the sender's TOML configuration (docs/configuration.md).
//!
//! Every option of `udp` and `watch` can live in the file; a flag given on the command line wins
//! over the file, and the file wins over a `--profile`'s values and the built-in defaults. The
//! merge is one `flag.or(file)` per option here; the defaults are applied where each command
//! settles its options (`settings::settle`, `watch::run`), which is also what `--help` shows.
//!
//! ```toml
//! [send]
//! to = "10.0.0.2:7000"
//! trust = "/etc/sluice/trust"
//! profile = "gbe-fibre-1500"
//! rate = "800M"            # or a number of bits per second
//! link_key = "/etc/sluice/link.key"
//!
//! [watch]
//! outbox = "/var/spool/sluice/outbox"
//! poll = 2
//! stable_secs = 2
//! ```
//!
//! Unknown keys are errors naming the key, so a typo never silently falls back to a default.
//! Relative paths are taken relative to the directory holding the config file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_common::exit::CommandError;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Options shared by `udp` and `watch`.
    #[serde(default)]
    pub send: SendSection,
    /// Options of `watch` only.
    #[serde(default)]
    pub watch: WatchSection,
}

/// `[send]`: the options of `sluice-send udp` (and the sending half of `watch`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSection {
    pub to: Option<String>,
    pub trust: Option<PathBuf>,
    pub profile: Option<String>,
    pub rate: Option<Rate>,
    pub overhead: Option<u32>,
    pub mtu: Option<u32>,
    pub passes: Option<u16>,
    pub window: Option<u32>,
    pub link_key: Option<PathBuf>,
    pub insecure_public_link_key: Option<bool>,
    pub heartbeat_interval: Option<f64>,
    pub sndbuf: Option<usize>,
    pub json: Option<bool>,
}

/// `[watch]`: the outbox watcher's own options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    pub outbox: Option<PathBuf>,
    pub poll: Option<f64>,
    pub stable_secs: Option<u64>,
}

/// A rate as the flag takes it (`"800M"`) or a plain number of bits per second.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Rate {
    Text(String),
    Bits(u64),
}

impl Rate {
    /// The flag's spelling, for `settings::parse_rate`.
    pub fn to_flag(&self) -> String {
        match self {
            Rate::Text(t) => t.clone(),
            Rate::Bits(b) => b.to_string(),
        }
    }
}

/// Reads and parses a config file (`sluice_host::config::load`: size limit, the error names the
/// file and, for a typo, the unknown key); without `--config`, the defaults.
pub fn load(path: Option<&Path>) -> Result<Config, CommandError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let mut config: Config = sluice_host::config::load(path)?;
    let (s, w) = (&mut config.send, &mut config.watch);
    sluice_host::config::rebase(path, [&mut s.trust, &mut s.link_key, &mut w.outbox]);
    Ok(config)
}

/// Fills every option of `udp` (or `watch`'s sending half) not given as a flag from `[send]`.
pub fn merge_send(args: &mut crate::settings::LinkArgs, json: &mut bool, file: &SendSection) {
    macro_rules! or {
        ($($field:ident),*) => { $( if args.$field.is_none() { args.$field = file.$field.clone(); } )* };
    }
    or!(
        to,
        trust,
        profile,
        overhead,
        mtu,
        passes,
        window,
        link_key,
        heartbeat_interval,
        sndbuf
    );
    if args.rate.is_none() {
        args.rate = file.rate.as_ref().map(Rate::to_flag);
    }
    args.insecure_public_link_key =
        args.insecure_public_link_key || file.insecure_public_link_key.unwrap_or(false);
    *json = *json || file.json.unwrap_or(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = toml::from_str::<Config>("[send]\nrat = \"1M\"\n").unwrap_err();
        assert!(e.to_string().contains("rat"), "{e}");
        let e = toml::from_str::<Config>("[sned]\n").unwrap_err();
        assert!(e.to_string().contains("sned"), "{e}");
    }

    #[test]
    fn rates_as_text_or_number() {
        let c: Config = toml::from_str("[send]\nrate = 800000000\n").unwrap();
        assert_eq!(c.send.rate.unwrap().to_flag(), "800000000");
        let c: Config = toml::from_str("[send]\nrate = \"800M\"\n").unwrap();
        assert_eq!(c.send.rate.unwrap().to_flag(), "800M");
    }
}
