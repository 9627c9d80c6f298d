//! Link-key files: the 32-byte secret both ends of a diode share for per-frame integrity tags.
//!
//! Accepted forms: exactly 32 raw bytes, or 64 hex digits with optional surrounding whitespace
//! (what `sluice-send link-keygen` writes, and what an operator can type). Anything else is an
//! error naming the expected forms: a silently misread key would turn every frame into a
//! "bad tag" drop on the high side with no hint why.

use crate::transport::wire::LinkKey;

/// Largest file worth reading as a link key.
pub const MAX_LINK_KEY_FILE_BYTES: usize = 1024;

/// Parses a link-key file's bytes.
pub fn parse_link_key(bytes: &[u8]) -> Result<LinkKey, String> {
    if bytes.len() > MAX_LINK_KEY_FILE_BYTES {
        return Err(format!(
            "a link-key file is 32 raw bytes or 64 hex digits; this one is {} bytes",
            bytes.len()
        ));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let trimmed = text.trim();
        if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; 32];
            hex::decode_to_slice(trimmed, &mut key).map_err(|e| e.to_string())?;
            return Ok(LinkKey::from_bytes(key));
        }
    }
    let raw: [u8; 32] = bytes.try_into().map_err(|_| {
        format!(
            "a link-key file is 32 raw bytes or 64 hex digits; this one is {} bytes and not hex \
             (make one with `sluice-send link-keygen --out FILE`)",
            bytes.len()
        )
    })?;
    Ok(LinkKey::from_bytes(raw))
}

/// The text form written by `link-keygen`.
pub fn format_link_key(key: &[u8; 32]) -> String {
    format!("{}\n", hex::encode(key))
}

/// A short public name for a key, so the operators of both sides can compare keys without reading
/// them out: the first 8 bytes of a BLAKE3 key derivation, in hex. It reveals nothing usable
/// about the key (a one-way function of 256 secret bits).
pub fn fingerprint(key: &LinkKey) -> String {
    let d = blake3::derive_key("sluice 2026 link key fingerprint v1", key.as_bytes());
    hex::encode(&d[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_raw_and_hex_and_refuses_the_rest() {
        let key = [0xab; 32];
        let hex_form = format_link_key(&key);
        assert_eq!(
            parse_link_key(hex_form.as_bytes()).unwrap().as_bytes(),
            &key
        );
        assert_eq!(parse_link_key(&key).unwrap().as_bytes(), &key);
        assert!(parse_link_key(b"short").is_err());
        assert!(parse_link_key(&[0u8; 33]).is_err());
        assert!(parse_link_key(&[b'z'; 64]).is_err());
        assert!(parse_link_key(&vec![b'a'; 4096]).is_err());
    }

    #[test]
    fn fingerprints_differ_per_key_and_are_stable() {
        let a = fingerprint(&LinkKey::from_bytes([1; 32]));
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint(&LinkKey::from_bytes([1; 32])));
        assert_ne!(a, fingerprint(&LinkKey::from_bytes([2; 32])));
    }
}
