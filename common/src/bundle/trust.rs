//! The trust store: which public keys are trusted, and the per-channel policy
//! (docs/bundle.md §Trust store). Pure: the binaries read the directory and pass the contents to
//! [`TrustStore::from_parts`].
//!
//! ```toml
//! # policy.toml (every key optional; unknown keys are errors)
//! [defaults]                       # for channels not listed below
//! allow_any_trusted_signer = true  # false: unlisted channels are refused
//! max_bundle_bytes = 1099511627776
//! max_files = 100000
//! require_increasing_sequence = true
//! require_expiry = false
//!
//! [channels.updates]
//! signers = ["alice", "0123456789abcdef"]   # key file stems or key ids
//! max_bundle_bytes = 10737418240
//! max_files = 5000
//! require_increasing_sequence = true
//! require_expiry = true
//! expect_every = "24h"                     # kept for overdue-channel alerts
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::keys::{self, KeyError, PublicKey};
use super::path::{DEFAULT_MAX_TOTAL_BYTES, MAX_ENTRIES};
use super::{KeyId, RejectReason};

/// Largest `policy.toml` accepted.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Most `.pub` files in one trust store.
pub const MAX_TRUSTED_KEYS: usize = 10_000;

/// Why a trust store could not be built. Configuration errors: the operator fixes the files.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trusted key {name:?}: {source}")]
    Key { name: String, source: KeyError },
    #[error("trusted keys {first:?} and {second:?} are the same key (key id {key_id})")]
    DuplicateKey {
        first: String,
        second: String,
        key_id: KeyId,
    },
    #[error("policy.toml: {0}")]
    Policy(String),
    #[error(
        "policy.toml: channel {channel:?} lists signer {signer:?}, which is neither a .pub file stem nor the key id of one"
    )]
    UnknownSignerInPolicy { channel: String, signer: String },
    #[error("trust store has more than {MAX_TRUSTED_KEYS} keys")]
    TooManyKeys,
}

impl TrustError {
    /// The reject reason a bundle would get because of this configuration error
    /// ([`RejectReason::WeakKey`] for a weak or invalid trusted key).
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            TrustError::Key {
                source: KeyError::Weak | KeyError::InvalidPoint,
                ..
            } => Some(RejectReason::WeakKey),
            _ => None,
        }
    }
}

/// One trusted signer.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// The `.pub` file stem.
    pub name: String,
    pub key_id: KeyId,
    pub public: PublicKey,
}

/// The effective rule for one channel (after `[defaults]` filled the gaps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRule {
    /// Key ids allowed to publish; `None` means any trusted signer.
    pub signers: Option<Vec<KeyId>>,
    /// Largest whole `.sluice` file.
    pub max_bundle_bytes: u64,
    /// Most manifest entries (files and directories).
    pub max_files: usize,
    /// Refuse a sequence not above the channel's last accepted one (rollback protection).
    pub require_increasing_sequence: bool,
    /// Refuse bundles without an expiry.
    pub require_expiry: bool,
    /// Expected publishing cadence in seconds (for overdue alerts; not enforced here).
    pub expect_every: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    defaults: DefaultsFile,
    #[serde(default)]
    channels: BTreeMap<String, ChannelFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    allow_any_trusted_signer: Option<bool>,
    max_bundle_bytes: Option<u64>,
    max_files: Option<usize>,
    require_increasing_sequence: Option<bool>,
    require_expiry: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelFile {
    signers: Option<Vec<String>>,
    max_bundle_bytes: Option<u64>,
    max_files: Option<usize>,
    require_increasing_sequence: Option<bool>,
    require_expiry: Option<bool>,
    expect_every: Option<String>,
}

/// Trusted keys plus policy. Build with [`TrustStore::from_parts`].
#[derive(Clone, Debug)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    defaults: ChannelRule,
    allow_unlisted: bool,
    channels: BTreeMap<String, ChannelRule>,
}

impl TrustStore {
    /// Build from `(name, contents)` of each `*.pub` file (name = file stem) and the optional
    /// `policy.toml` text. Weak or invalid keys, duplicate keys, unknown policy keys and policy
    /// signers that name no loaded key are errors: a trust store is all valid or not used.
    ///
    /// Without `policy.toml`: any trusted signer may publish on any channel, sequences must
    /// increase, expiry is optional, limits are the format maxima.
    pub fn from_parts(
        pubs: Vec<(String, String)>,
        policy_toml: Option<&str>,
    ) -> Result<TrustStore, TrustError> {
        if pubs.len() > MAX_TRUSTED_KEYS {
            return Err(TrustError::TooManyKeys);
        }
        let mut keys: Vec<TrustedKey> = Vec::with_capacity(pubs.len());
        for (name, text) in pubs {
            let public = keys::parse_public_key(&text)
                .and_then(|p| p.verifying_key().map(|_| p))
                .map_err(|source| TrustError::Key {
                    name: name.clone(),
                    source,
                })?;
            let key_id = public.key_id();
            if let Some(k) = keys.iter().find(|k| k.public == public) {
                return Err(TrustError::DuplicateKey {
                    first: k.name.clone(),
                    second: name,
                    key_id,
                });
            }
            keys.push(TrustedKey {
                name,
                key_id,
                public,
            });
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name));

        let file: PolicyFile = match policy_toml {
            None => PolicyFile::default(),
            Some(t) if t.len() > MAX_POLICY_BYTES => {
                return Err(TrustError::Policy("file is larger than 1 MiB".into()));
            }
            Some(t) => toml::from_str(t).map_err(|e| TrustError::Policy(e.to_string()))?,
        };
        let d = &file.defaults;
        let defaults = ChannelRule {
            signers: None,
            max_bundle_bytes: d.max_bundle_bytes.unwrap_or(DEFAULT_MAX_TOTAL_BYTES),
            max_files: d.max_files.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES),
            require_increasing_sequence: d.require_increasing_sequence.unwrap_or(true),
            require_expiry: d.require_expiry.unwrap_or(false),
            expect_every: None,
        };
        let mut channels = BTreeMap::new();
        for (channel, c) in file.channels {
            check_channel(&channel)
                .map_err(|e| TrustError::Policy(format!("[channels.{channel}]: {e}")))?;
            let signers = match c.signers {
                None => None,
                Some(list) => {
                    let mut ids = Vec::with_capacity(list.len());
                    for s in list {
                        let found = keys
                            .iter()
                            .find(|k| k.name == s || k.key_id.to_hex() == s.to_ascii_lowercase());
                        match found {
                            Some(k) => ids.push(k.key_id),
                            None => {
                                return Err(TrustError::UnknownSignerInPolicy {
                                    channel,
                                    signer: s,
                                });
                            }
                        }
                    }
                    Some(ids)
                }
            };
            let expect_every = match c.expect_every {
                None => None,
                Some(s) => Some(parse_duration(&s).map_err(|e| {
                    TrustError::Policy(format!("[channels.{channel}] expect_every: {e}"))
                })?),
            };
            let rule = ChannelRule {
                signers,
                max_bundle_bytes: c.max_bundle_bytes.unwrap_or(defaults.max_bundle_bytes),
                max_files: c.max_files.unwrap_or(defaults.max_files).min(MAX_ENTRIES),
                require_increasing_sequence: c
                    .require_increasing_sequence
                    .unwrap_or(defaults.require_increasing_sequence),
                require_expiry: c.require_expiry.unwrap_or(defaults.require_expiry),
                expect_every,
            };
            channels.insert(channel, rule);
        }
        Ok(TrustStore {
            keys,
            defaults,
            allow_unlisted: d.allow_any_trusted_signer.unwrap_or(true),
            channels,
        })
    }

    /// All trusted keys, sorted by name.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Trusted keys with this key id (normally zero or one).
    pub fn keys_with_id(&self, id: KeyId) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter().filter(move |k| k.key_id == id)
    }

    /// The rule for a channel: its own section, else `[defaults]`; `None` if the channel is not
    /// listed and `allow_any_trusted_signer = false`.
    pub fn rule(&self, channel: &str) -> Option<&ChannelRule> {
        match self.channels.get(channel) {
            Some(r) => Some(r),
            None if self.allow_unlisted => Some(&self.defaults),
            None => None,
        }
    }

    /// Channels listed in policy.toml with their rules (for overdue-channel alerts).
    pub fn channels(&self) -> impl Iterator<Item = (&str, &ChannelRule)> {
        self.channels.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Rollback protection: with `require_increasing_sequence`, a bundle's sequence must be strictly
/// above the channel's last accepted one. The high-water mark is the receiver store's durable
/// state; `None` means no bundle was ever accepted on this channel.
pub fn check_sequence(last_accepted: Option<u64>, seq: u64) -> Result<(), RejectReason> {
    match last_accepted {
        Some(last) if seq <= last => Err(RejectReason::Rollback),
        _ => Ok(()),
    }
}

/// Longest channel name in bytes.
pub const MAX_CHANNEL_BYTES: usize = 64;

/// A channel name: 1-64 bytes of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_channel(channel: &str) -> Result<(), String> {
    let ok = !channel.is_empty()
        && channel.len() <= MAX_CHANNEL_BYTES
        && channel.as_bytes()[0].is_ascii_alphanumeric()
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "channel name {channel:?} is not allowed: use 1-64 characters from a-z 0-9 . _ -, starting with a letter or digit"
        ))
    }
}

/// Parse a duration like `30s`, `90m`, `36h`, `7d`, `2w` or a sum like `1d12h` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a duration; write e.g. 30m, 36h, 7d or 1d12h");
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(d.into()))
                    .ok_or_else(err)?,
            );
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(err()),
        };
        let n = num.take().ok_or_else(err)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    if num.is_some() || total == 0 {
        return Err(err());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::keys::SecretKey;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("36h"), Ok(129_600));
        assert_eq!(parse_duration("1d12h"), Ok(129_600));
        for bad in ["", "7", "d", "0s", "7x", "-1d", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let pubs = vec![("alice".to_string(), a.to_sluice_text("alice"))];
        let t = TrustStore::from_parts(
            pubs.clone(),
            Some("[defaults]\nallow_any_trusted_signer=false\n[channels.up]\nsigners=[\"alice\"]\nexpect_every=\"24h\"\n"),
        )
        .unwrap();
        assert!(t.rule("other").is_none());
        let r = t.rule("up").unwrap();
        assert_eq!(r.signers, Some(vec![a.key_id()]));
        assert_eq!(r.expect_every, Some(86_400));
        let e = TrustStore::from_parts(pubs.clone(), Some("[defaults]\nbogus=1\n")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e =
            TrustStore::from_parts(pubs, Some("[channels.up]\nsigners=[\"bob\"]\n")).unwrap_err();
        assert!(matches!(e, TrustError::UnknownSignerInPolicy { .. }));
        assert_eq!(check_sequence(Some(5), 5), Err(RejectReason::Rollback));
        assert_eq!(check_sequence(Some(5), 6), Ok(()));
        assert_eq!(check_sequence(None, 0), Ok(()));
    }
}
