//! Signing keys and public keys: Sluice's own small text formats and OpenSSH ed25519
//! (docs/bundle.md §Keys). Parsing is pure: callers read the files and pass the bytes.
//!
//! ```text
//! PREFIX.key  # sluice secret key "NAME", key id 0123456789abcdef. Keep it offline; mode 0600.
//!             sluice-ed25519-secret-v1 <base64 of the 32-byte seed>
//! PREFIX.pub  sluice-ed25519 <base64 of the 32-byte public key> NAME
//! ```
//!
//! Also accepted: an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`,
//! openssh-key-v1, cipher `none`, one ed25519 key) for signing, and an `ssh-ed25519 AAAA… comment`
//! line as a public key. Base64 must be canonical (padding and trailing bits), as age requires.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::KeyId;
use crate::codec::{CodecError, Reader};

/// First token of a Sluice secret key line.
pub const SECRET_KEY_TAG: &str = "sluice-ed25519-secret-v1";
/// First token of a Sluice public key line.
pub const PUBLIC_KEY_TAG: &str = "sluice-ed25519";
/// First token of an OpenSSH ed25519 public key line.
pub const SSH_ED25519_TAG: &str = "ssh-ed25519";
/// Largest key file a parser accepts (real ones are under 1 KiB).
pub const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

const OPENSSH_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const OPENSSH_END: &str = "-----END OPENSSH PRIVATE KEY-----";
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// Why a key could not be used. Each message says what to do next.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key file is larger than 64 KiB; this is not a key file")]
    TooLarge,
    #[error(
        "unrecognised key format; expected a sluice key (`{SECRET_KEY_TAG}` / `{PUBLIC_KEY_TAG}`) or an OpenSSH ed25519 key"
    )]
    UnknownFormat,
    #[error("key is not valid base64 (or not canonical base64)")]
    BadBase64,
    #[error("key has the wrong length: {0}")]
    BadLength(&'static str),
    #[error("OpenSSH key is malformed: {0}")]
    BadOpenSsh(&'static str),
    #[error("OpenSSH key type is {0:?}, but only ssh-ed25519 keys can sign or verify bundles")]
    NotEd25519(String),
    #[error(
        "this key is passphrase-protected; export an unencrypted copy with `ssh-keygen -p -N '' -f COPY` on the offline signing host and sign with the copy"
    )]
    Encrypted,
    #[error("public key is not a valid ed25519 point")]
    InvalidPoint,
    #[error("public key is weak (small order): a signature under it proves nothing")]
    Weak,
    #[error("key name {0:?} is not allowed: use 1-64 characters from A-Z a-z 0-9 . _ - @")]
    BadName(String),
}

/// An ed25519 signing key. Zeroised on drop (ed25519-dalek's `zeroize` feature).
pub struct SecretKey {
    inner: SigningKey,
    /// Comment or name carried in the key file (may be empty).
    pub comment: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.key_id())
    }
}

impl SecretKey {
    /// A key from a 32-byte seed the caller got from the OS (or a fixed seed in tests).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey {
            inner: SigningKey::from_bytes(seed),
            comment: String::new(),
        }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key().to_bytes())
    }

    /// The key id that bundles signed with this key carry.
    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// Sign a 32-byte digest (pure ed25519 over the digest bytes).
    pub(crate) fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        self.inner.sign(digest).to_bytes()
    }

    /// The Sluice secret key file text (two lines). Holds the seed: handle as a secret.
    pub fn to_sluice_text(&self, name: &str) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.inner.to_bytes());
        let b64 = Zeroizing::new(STANDARD.encode(&seed[..]));
        Zeroizing::new(format!(
            "# sluice secret key {name:?}, key id {}. Keep it offline; never copy it to the high side.\n{SECRET_KEY_TAG} {}\n",
            self.key_id(),
            b64.as_str()
        ))
    }
}

/// A 32-byte ed25519 public key (not yet checked for weakness; see [`PublicKey::verifying_key`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// First 8 bytes of blake3 over the 32 key bytes.
    pub fn key_id(&self) -> KeyId {
        let h = blake3::hash(&self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.as_bytes()[..8]);
        KeyId(id)
    }

    /// The key as ed25519-dalek needs it, refusing invalid points and weak (small-order) keys.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPoint)?;
        if vk.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(vk)
    }

    /// The Sluice public key line, with a trailing newline.
    pub fn to_sluice_text(&self, name: &str) -> String {
        format!("{PUBLIC_KEY_TAG} {} {name}\n", STANDARD.encode(self.0))
    }
}

/// Check a key/signer name: 1-64 characters from `A-Z a-z 0-9 . _ - @`, not starting with `.`.
pub fn check_key_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadName(name.to_string()))
    }
}

fn b64(s: &str) -> Result<Vec<u8>, KeyError> {
    STANDARD.decode(s).map_err(|_| KeyError::BadBase64)
}

/// Parse a secret key file: Sluice format or unencrypted OpenSSH ed25519.
pub fn parse_secret_key(bytes: &[u8]) -> Result<SecretKey, KeyError> {
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::UnknownFormat)?;
    if text.contains(OPENSSH_BEGIN) {
        return parse_openssh_secret(text);
    }
    let mut comment = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            if comment.is_empty() {
                comment = c.trim().to_string();
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_ascii_whitespace();
        if parts.next() != Some(SECRET_KEY_TAG) {
            return Err(KeyError::UnknownFormat);
        }
        let seed = Zeroizing::new(b64(parts.next().ok_or(KeyError::BadBase64)?)?);
        if parts.next().is_some() {
            return Err(KeyError::UnknownFormat);
        }
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.as_slice()
                .try_into()
                .map_err(|_| KeyError::BadLength("seed must be 32 bytes"))?,
        );
        let mut key = SecretKey::from_seed(&seed);
        key.comment = comment;
        return Ok(key);
    }
    Err(KeyError::UnknownFormat)
}

/// Parse one public key line: `sluice-ed25519 B64 NAME` or `ssh-ed25519 B64 [comment]`.
/// Blank lines and `#` comments are skipped; exactly one key line is allowed.
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyError> {
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge);
    }
    let mut found: Option<PublicKey> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(KeyError::UnknownFormat);
        }
        let mut parts = line.split_ascii_whitespace();
        let tag = parts.next().ok_or(KeyError::UnknownFormat)?;
        let data = b64(parts.next().ok_or(KeyError::BadBase64)?)?;
        let key = match tag {
            PUBLIC_KEY_TAG => data
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadLength("public key must be 32 bytes"))?,
            SSH_ED25519_TAG => {
                let mut r = Reader::new(&data);
                let t = ssh_string(&mut r)?;
                if t != SSH_ED25519_TAG.as_bytes() {
                    return Err(KeyError::NotEd25519(String::from_utf8_lossy(t).into()));
                }
                let pk = ssh_key32(&mut r)?;
                r.expect_end()?;
                pk
            }
            other if other.starts_with("ssh-") || other.starts_with("ecdsa-") => {
                return Err(KeyError::NotEd25519(other.to_string()));
            }
            _ => return Err(KeyError::UnknownFormat),
        };
        found = Some(PublicKey(key));
    }
    found.ok_or(KeyError::UnknownFormat)
}

impl From<CodecError> for KeyError {
    fn from(e: CodecError) -> Self {
        KeyError::BadOpenSsh(match e {
            CodecError::Truncated => "a length runs past the end",
            CodecError::TrailingBytes => "trailing bytes",
        })
    }
}

/// An SSH wire `string` (RFC 4251: u32 big-endian length, then that many bytes).
fn ssh_string<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], KeyError> {
    let n = r.u32_be()? as usize;
    Ok(r.take(n)?)
}

/// An SSH `string` that must hold a 32-byte ed25519 public key.
fn ssh_key32(r: &mut Reader<'_>) -> Result<[u8; 32], KeyError> {
    ssh_string(r)?
        .try_into()
        .map_err(|_| KeyError::BadLength("ed25519 public key must be 32 bytes"))
}

fn parse_openssh_secret(text: &str) -> Result<SecretKey, KeyError> {
    let start = text.find(OPENSSH_BEGIN).ok_or(KeyError::UnknownFormat)? + OPENSSH_BEGIN.len();
    let end = text[start..]
        .find(OPENSSH_END)
        .ok_or(KeyError::BadOpenSsh("no END line"))?
        + start;
    let body: String = text[start..end].split_ascii_whitespace().collect();
    let data = Zeroizing::new(b64(&body)?);
    let mut r = Reader::new(&data);
    if r.take(OPENSSH_MAGIC.len())? != OPENSSH_MAGIC {
        return Err(KeyError::BadOpenSsh("not openssh-key-v1"));
    }
    let cipher = ssh_string(&mut r)?;
    let kdf = ssh_string(&mut r)?;
    let _kdf_options = ssh_string(&mut r)?;
    if cipher != b"none" || kdf != b"none" {
        return Err(KeyError::Encrypted);
    }
    if r.u32_be()? != 1 {
        return Err(KeyError::BadOpenSsh("file must hold exactly one key"));
    }
    let mut pubr = Reader::new(ssh_string(&mut r)?);
    let t = ssh_string(&mut pubr)?;
    if t != SSH_ED25519_TAG.as_bytes() {
        return Err(KeyError::NotEd25519(String::from_utf8_lossy(t).into()));
    }
    let pk = ssh_key32(&mut pubr)?;
    pubr.expect_end()?;
    let mut p = Reader::new(ssh_string(&mut r)?);
    r.expect_end()?;
    if p.u32_be()? != p.u32_be()? {
        return Err(KeyError::BadOpenSsh(
            "check integers differ (corrupt or encrypted)",
        ));
    }
    if ssh_string(&mut p)? != SSH_ED25519_TAG.as_bytes() {
        return Err(KeyError::BadOpenSsh("private section key type differs"));
    }
    if ssh_key32(&mut p)? != pk {
        return Err(KeyError::BadOpenSsh("private section public key differs"));
    }
    let sk = ssh_string(&mut p)?;
    if sk.len() != 64 || sk[32..] != pk {
        return Err(KeyError::BadOpenSsh(
            "private key must be 64 bytes: seed || public key",
        ));
    }
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        sk[..32]
            .try_into()
            .map_err(|_| KeyError::BadLength("seed must be 32 bytes"))?,
    );
    let comment = String::from_utf8_lossy(ssh_string(&mut p)?).into_owned();
    // Padding is 1, 2, 3, … up to the cipher block size (8 for "none").
    for (i, b) in p.rest().iter().enumerate() {
        if *b as usize != i + 1 || i >= 8 {
            return Err(KeyError::BadOpenSsh("bad padding"));
        }
    }
    let mut key = SecretKey::from_seed(&seed);
    if key.public().0 != pk {
        return Err(KeyError::BadOpenSsh("seed does not match the public key"));
    }
    key.comment = comment;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sluice_round_trip() {
        let k = SecretKey::from_seed(&[7; 32]);
        let text = k.to_sluice_text("alice");
        let k2 = parse_secret_key(text.as_bytes()).unwrap();
        assert_eq!(k.public(), k2.public());
        let p = parse_public_key(&k.public().to_sluice_text("alice")).unwrap();
        assert_eq!(p, k.public());
        assert!(p.verifying_key().is_ok());
    }

    #[test]
    fn weak_and_noncanonical() {
        let mut id = [0u8; 32];
        id[0] = 1; // the identity point: order 1
        assert_eq!(PublicKey(id).verifying_key().unwrap_err(), KeyError::Weak);
        let k = SecretKey::from_seed(&[7; 32]).public().to_sluice_text("a");
        // Flip the last base64 char so its unused trailing bits become non-zero.
        let b64 = k.split(' ').nth(1).unwrap();
        const ALPHA: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = b64.trim_end_matches('=').to_string();
        let last = s.pop().unwrap();
        let v = ALPHA.find(last).unwrap();
        s.push(ALPHA.as_bytes()[v ^ 1] as char);
        s.push('=');
        assert!(parse_public_key(&format!("sluice-ed25519 {s} a")).is_err());
    }

    #[test]
    fn ssh_public() {
        let pk = SecretKey::from_seed(&[9; 32]).public();
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&pk.0);
        let line = format!("ssh-ed25519 {} me@host\n", STANDARD.encode(&blob));
        assert_eq!(parse_public_key(&line).unwrap(), pk);
        assert!(parse_public_key("ssh-rsa AAAA x").is_err());
    }
}
