//! Reviewer approvals and rejections: ed25519 signatures over a domain-separated statement that
//! names the decision, the bundle id, the channel and the blake3 of the entry's receipt.json (so
//! an approval can never be moved to another bundle, another channel or a changed receipt).
//!
//! ```text
//! digest = blake3::derive_key("sluice-promote reviewer statement v1",
//!            len32(decision) ‖ decision ‖ len32(bundle_id_hex) ‖ bundle_id_hex ‖
//!            len32(channel) ‖ channel ‖ len32(receipt_blake3_hex) ‖ receipt_blake3_hex ‖
//!            len32(reason) ‖ reason)
//! signature = ed25519(reviewer secret key, digest)     (verified with verify_strict)
//! ```
//!
//! Stored as `DIR/promote/<id>/approvals/<key-id>.json` (one per reviewer key; a later decision
//! by the same key replaces the earlier one). Reviewer keys live in their own trust directory,
//! separate from the bundle signers'.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sluice_common::bundle::{PublicKey, SecretKey, TrustStore};
use zeroize::Zeroizing;

pub const CONTEXT: &str = "sluice-promote reviewer statement v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

/// What a reviewer signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// `approve` or `reject`; `verdict` in the JSON (docs/json.md has no `decision` key). The
    /// signature covers the value (see [`Statement::digest`]), not the key's name.
    #[serde(rename = "verdict")]
    pub decision: Decision,
    pub bundle_id: String,
    pub channel: String,
    pub receipt_blake3: String,
    /// Why (rejections; empty for approvals).
    #[serde(default)]
    pub reason: String,
}

impl Statement {
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        for part in [
            self.decision.as_str(),
            &self.bundle_id,
            &self.channel,
            &self.receipt_blake3,
            &self.reason,
        ] {
            h.update(&(part.len() as u32).to_be_bytes());
            h.update(part.as_bytes());
        }
        *h.finalize().as_bytes()
    }
}

/// `approvals/<key-id>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    /// `sluice.approval/1` (docs/json.md).
    pub schema: String,
    pub statement: Statement,
    /// Key id (16 hex) of the signing key.
    pub key_id: String,
    /// The signer's public key (base64), so a key outside the trust directory can be named.
    pub public_key: String,
    /// The key file's comment, informational only (the trust directory's name is what counts).
    pub comment: String,
    /// When it was signed (not covered by the signature), RFC 3339 with milliseconds, and the
    /// same as unix milliseconds.
    pub time: String,
    pub time_unix_ms: u64,
    /// ed25519 signature over `statement.digest()` (base64).
    pub signature: String,
}

/// The 32-byte seed of a parsed secret key. `sluice_common` keeps the signing key private and
/// signs only bundle digests, so the seed is taken back out of its own key-file text (the same
/// bytes the operator's file holds) and zeroised after use.
fn signing_key(key: &SecretKey) -> anyhow::Result<SigningKey> {
    let text = key.to_sluice_text("reviewer");
    let b64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(sluice_common::bundle::keys::SECRET_KEY_TAG)
                .map(str::trim)
        })
        .ok_or_else(|| anyhow::anyhow!("internal: secret key text without a key line"))?;
    let seed = Zeroizing::new(STANDARD.decode(b64)?);
    let seed: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("internal: seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(seed))
}

/// Reads a reviewer's secret key (Sluice or unencrypted OpenSSH ed25519).
pub fn load_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    );
    sluice_common::bundle::parse_secret_key(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn sign(
    key: &SecretKey,
    statement: Statement,
    now_unix_ms: u64,
) -> anyhow::Result<SignedStatement> {
    let sk = signing_key(key)?;
    let sig = sk.sign(&statement.digest());
    Ok(SignedStatement {
        schema: sluice_host::json::schema_id("approval"),
        statement,
        key_id: key.key_id().to_string(),
        public_key: STANDARD.encode(key.public().0),
        comment: short_comment(&key.comment),
        time: sluice_host::time::rfc3339_ms(now_unix_ms),
        time_unix_ms: now_unix_ms,
        signature: STANDARD.encode(sig.to_bytes()),
    })
}

/// A sluice key file's comment line is `sluice secret key "NAME", key id …`: keep NAME. An
/// OpenSSH comment (`carol@site`) is kept as it is.
fn short_comment(c: &str) -> String {
    c.strip_prefix("sluice secret key \"")
        .and_then(|r| r.split_once('"'))
        .map_or_else(|| c.to_string(), |(name, _)| name.to_string())
}

/// How one stored statement judged against the reviewer trust directory and the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    /// A valid statement by the trusted reviewer `name`.
    Valid {
        name: String,
        decision: Decision,
        reason: String,
    },
    /// Not counted, with why (untrusted key, bad signature, other bundle...).
    Ignored(String),
}

pub fn judge(s: &SignedStatement, expect: &Statement, reviewers: &TrustStore) -> Judged {
    let st = &s.statement;
    if st.bundle_id != expect.bundle_id
        || st.channel != expect.channel
        || st.receipt_blake3 != expect.receipt_blake3
    {
        return Judged::Ignored(format!(
            "{} by key {}: signed for another bundle, channel or receipt",
            st.decision.as_str(),
            s.key_id
        ));
    }
    let Ok(raw) = STANDARD.decode(&s.public_key) else {
        return Judged::Ignored(format!("key {}: public key is not base64", s.key_id));
    };
    let Ok(raw): Result<[u8; 32], _> = raw.try_into() else {
        return Judged::Ignored(format!("key {}: public key is not 32 bytes", s.key_id));
    };
    let pk = PublicKey(raw);
    let Some(trusted) = reviewers.keys().iter().find(|k| k.public == pk) else {
        return Judged::Ignored(format!(
            "{} by key {} ({}) ignored: that key is not in the reviewer trust directory",
            st.decision.as_str(),
            pk.key_id(),
            if s.comment.is_empty() {
                "no comment"
            } else {
                &s.comment
            }
        ));
    };
    let ok = (|| {
        let vk = pk.verifying_key().ok()?;
        let sig: [u8; 64] = STANDARD.decode(&s.signature).ok()?.try_into().ok()?;
        vk.verify_strict(&st.digest(), &Signature::from_bytes(&sig))
            .ok()
    })();
    if ok.is_none() {
        return Judged::Ignored(format!(
            "{} by reviewer {}: signature does not verify",
            st.decision.as_str(),
            trusted.name
        ));
    }
    Judged::Valid {
        name: trusted.name.clone(),
        decision: st.decision,
        reason: st.reason.clone(),
    }
}

/// Loads the reviewer trust directory (`*.pub`, OpenSSH accepted). A `policy.toml` there is
/// parsed like a signer trust directory's but has no meaning for reviewers.
pub fn load_reviewers(dir: &Path) -> anyhow::Result<TrustStore> {
    sluice_host::trust_dir::load_trust_dir(dir).map_err(|e| anyhow::anyhow!("reviewer keys: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt() -> Statement {
        Statement {
            decision: Decision::Approve,
            bundle_id: "a".repeat(64),
            channel: "updates".into(),
            receipt_blake3: "b".repeat(64),
            reason: String::new(),
        }
    }

    #[test]
    fn sign_judge_and_every_binding() {
        let alice = SecretKey::from_seed(&[1; 32]);
        let mallory = SecretKey::from_seed(&[2; 32]);
        let trust = TrustStore::from_parts(
            vec![("alice".into(), alice.public().to_sluice_text("alice"))],
            None,
        )
        .unwrap();
        let s = sign(&alice, stmt(), 5).unwrap();
        assert!(
            matches!(judge(&s, &stmt(), &trust), Judged::Valid { ref name, .. } if name == "alice")
        );
        // Other bundle / channel / receipt.
        for f in [
            |s: &mut Statement| s.bundle_id = "c".repeat(64),
            |s: &mut Statement| s.channel = "other".into(),
            |s: &mut Statement| s.receipt_blake3 = "d".repeat(64),
        ] {
            let mut e = stmt();
            f(&mut e);
            assert!(matches!(judge(&s, &e, &trust), Judged::Ignored(_)));
        }
        // Untrusted key.
        let m = sign(&mallory, stmt(), 5).unwrap();
        match judge(&m, &stmt(), &trust) {
            Judged::Ignored(why) => assert!(why.contains("not in the reviewer trust directory")),
            v => panic!("{v:?}"),
        }
        // A trusted key's name on a forged signature; an approval edited into a rejection.
        let mut forged = m.clone();
        forged.public_key = s.public_key.clone();
        assert!(matches!(
            judge(&forged, &stmt(), &trust),
            Judged::Ignored(_)
        ));
        let mut edited = s.clone();
        edited.statement.decision = Decision::Reject;
        let mut e = stmt();
        e.decision = Decision::Reject;
        assert!(matches!(judge(&edited, &e, &trust), Judged::Ignored(_)));
    }

    #[test]
    fn comments_are_shortened_to_the_key_name() {
        assert_eq!(
            short_comment("sluice secret key \"alice\", key id 0011. Keep it offline."),
            "alice"
        );
        assert_eq!(short_comment("carol@site"), "carol@site");
    }

    #[test]
    fn digest_is_domain_separated_and_unambiguous() {
        let a = stmt();
        let mut b = stmt();
        b.channel = "update".into();
        b.reason = "s".into();
        assert_ne!(a.digest(), b.digest());
    }
}
