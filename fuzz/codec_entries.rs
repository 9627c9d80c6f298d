// Fuzz entry points for the two binary parsers that read disk bytes through the crate's codec
// and had no target of their own: stored progress records and key files (whose OpenSSH forms
// are a length-prefixed binary encoding inside base64). Shared verbatim (through `include!`) by
// the cargo-fuzz targets in fuzz/fuzz_targets/ and the stable replay in
// common/tests/fuzz_corpus.rs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sluice_common::bundle::{parse_public_key, parse_secret_key};
use sluice_common::transport::params::Limits as ProgressLimits;
use sluice_common::transport::progress::Progress;

/// First byte even: the rest is a progress record as read back from disk. Odd: the rest is a
/// record body that gets a valid blake3 checksum appended, so the version, limit and bitmap
/// checks behind the checksum are reached. Properties: nothing panics; an accepted record
/// re-encodes to exactly its bytes, its parameters pass the limits, and it never counts more
/// blocks done than the object has.
#[allow(dead_code)]
pub fn progress_record(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        let sum = blake3::hash(&bytes);
        bytes.extend_from_slice(sum.as_bytes());
    }
    let limits = ProgressLimits::default();
    let Ok(p) = Progress::from_bytes(&bytes, &limits) else {
        return;
    };
    assert_eq!(p.to_bytes(), bytes, "an accepted record re-encodes exactly");
    assert!(limits.check(&p.params).is_ok());
    assert!(p.done_count() <= p.block_count());
    assert_eq!(p.is_complete(), p.done_count() == p.block_count());
}

/// First byte mod 4: 0 the rest is a secret-key file, 1 a public-key file (if UTF-8), 2 the
/// rest is a raw openssh-key-v1 blob that gets the PEM armour and base64 (so the fuzzer works
/// on the binary structure the codec reads), 3 a raw SSH public-key blob that becomes an
/// `ssh-ed25519 BASE64 comment` line. Properties: nothing panics; an accepted secret key
/// survives a round trip through the Sluice text format with the same public key; an accepted
/// public key round-trips through its Sluice line.
#[allow(dead_code)]
pub fn key_file(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let secret = |bytes: &[u8]| {
        if let Ok(k) = parse_secret_key(bytes) {
            let again = parse_secret_key(k.to_sluice_text("fuzz").as_bytes())
                .expect("own secret key text parses");
            assert_eq!(again.public(), k.public());
        }
    };
    let public = |text: &str| {
        if let Ok(p) = parse_public_key(text) {
            assert_eq!(parse_public_key(&p.to_sluice_text("fuzz")), Ok(p));
        }
    };
    match mode % 4 {
        0 => secret(rest),
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                public(text);
            }
        }
        2 => {
            let pem = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
                STANDARD.encode(rest)
            );
            secret(pem.as_bytes());
        }
        _ => public(&format!("ssh-ed25519 {} fuzz\n", STANDARD.encode(rest))),
    }
}
