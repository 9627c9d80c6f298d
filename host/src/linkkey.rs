//! Reading the link-key file both ends share, and the rule for the public default key. One loader
//! for `listen`, `import`, `udp`, `watch`, `media`, `status` and both `doctor`s, so what one
//! command accepts every other accepts too (`sluice_common::linkkey::parse_link_key` decides the
//! format), and one rule for when the public default key may be used:
//!
//! - over UDP (`listen`, `udp`, `watch`), only when the address is loopback (a test or a demo on
//!   one host) or `--insecure-public-link-key` is given;
//! - on media (`media`, `import`), only with `--insecure-public-link-key`: a volume has no
//!   address to tell a test from a site, and whoever hands over a stick is on the low side.
//!
//! Anything else is refused with [`Exit::Usage`]: it is a configuration error (no key
//! configured), found before any store, socket or file is opened.

use std::net::IpAddr;
use std::path::Path;

use sluice_common::exit::{CommandError, Exit};
use sluice_common::linkkey::{MAX_LINK_KEY_FILE_BYTES, parse_link_key};
use sluice_common::transport::wire::LinkKey;

use crate::hostcheck::{Finding, Status, finding};

/// The flag that allows the public default key where it is otherwise refused.
pub const INSECURE_FLAG: &str = "--insecure-public-link-key";

/// Where the operator is told to make a key: the command, then the copy.
pub const KEYGEN_HINT: &str = "make one on the low side with `sluice-send link-keygen --out \
     /etc/sluice/link.key`, copy the same file to the high side's /etc/sluice/link.key, and pass \
     `--link-key /etc/sluice/link.key` (or `link_key` in the config) on both sides";

/// Why a link key could not be loaded: the file could not be read, or its bytes are no key.
#[derive(Debug)]
pub enum LinkKeyError {
    Read(String),
    Format(String),
}

impl std::fmt::Display for LinkKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkKeyError::Read(m) | LinkKeyError::Format(m) => f.write_str(m),
        }
    }
}

impl LinkKeyError {
    /// The exit-code contract: an unreadable file is [`Exit::Input`] (3), bytes that are no key
    /// [`Exit::Usage`] (2); both with a `help:` line saying how to make a good one.
    pub fn into_command_error(self) -> CommandError {
        match self {
            LinkKeyError::Read(m) => CommandError::input(m).help(format!(
                "check the path and that this user may read it; if there is no key yet, {KEYGEN_HINT}"
            )),
            LinkKeyError::Format(m) => CommandError::usage(m).help(KEYGEN_HINT),
        }
    }
}

/// Reads a link-key file, or the public default when no path is given. Reads at most
/// `MAX_LINK_KEY_FILE_BYTES + 1` bytes, so a path to a huge file is refused without reading it.
pub fn load_link_key(path: Option<&Path>) -> Result<LinkKey, LinkKeyError> {
    use std::io::Read;
    let Some(path) = path else {
        return Ok(LinkKey::public_default());
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_LINK_KEY_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| LinkKeyError::Read(format!("cannot read link key {}: {e}", path.display())))?;
    parse_link_key(&bytes)
        .map_err(|e| LinkKeyError::Format(format!("link key {}: {e}", path.display())))
}

/// Where the link runs, for the public-key rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A UDP address: the receiver's bind address, or the sender's destination.
    Udp(IpAddr),
    /// Spool volumes on removable media: no address, so only the flag allows the public key.
    Media,
}

impl Endpoint {
    /// Whether the public default key may be used here without the flag.
    pub fn allows_public_key(self) -> bool {
        matches!(self, Endpoint::Udp(ip) if ip.is_loopback())
    }
}

/// Loads `--link-key` (or the public default) and applies the public-key rule of the module
/// docs: the one call `listen`, `import`, `udp`, `watch` and `media` make.
pub fn load_for(
    path: Option<&Path>,
    endpoint: Endpoint,
    insecure_public: bool,
) -> Result<LinkKey, CommandError> {
    let key = load_link_key(path).map_err(LinkKeyError::into_command_error)?;
    if key.is_public_default() && !insecure_public && !endpoint.allows_public_key() {
        return Err(refusal(path, endpoint));
    }
    Ok(key)
}

fn refusal(path: Option<&Path>, endpoint: Endpoint) -> CommandError {
    let whose = match path {
        Some(p) => format!("the link key {} is the public default key", p.display()),
        None => "no --link-key given (nor `link_key` in the config), so the public default key \
                 would be used"
            .to_owned(),
    };
    let where_ = match endpoint {
        Endpoint::Udp(ip) => format!("{ip} is not a loopback address"),
        Endpoint::Media => "spool volumes on media are never exempt".to_owned(),
    };
    CommandError::new(
        Exit::Usage,
        format!(
            "refusing to run on the public link key: {whose}, and {where_}; anyone who can reach \
             the link could forge frames under it"
        ),
    )
    .help(format!(
        "{KEYGEN_HINT}; for a test link only, pass {INSECURE_FLAG}"
    ))
}

/// The `link-key` finding of both `doctor`s: `fail` for an unreadable or malformed file and for
/// the public default key (no `--link-key`, or a file holding the public key), except that the
/// public key is only a `warn` where the commands allow it (a loopback address).
pub fn doctor_finding(path: Option<&Path>, endpoint: Endpoint) -> Finding {
    const CHECK: &str = "link-key";
    let key = match load_link_key(path) {
        Ok(key) => key,
        Err(e) => {
            let fix = match &e {
                LinkKeyError::Read(_) => format!(
                    "if the file exists: chgrp sluice-recv FILE (sluice-send on the low side); \
                     chmod 0640 FILE. If not: {KEYGEN_HINT}"
                ),
                LinkKeyError::Format(_) => KEYGEN_HINT.to_owned(),
            };
            return finding(CHECK, Status::Fail, e.to_string(), Some(fix));
        }
    };
    if !key.is_public_default() {
        let p = path.map(|p| p.display().to_string()).unwrap_or_default();
        return finding(
            CHECK,
            Status::Ok,
            format!("{p} is readable and a secret link key"),
            None,
        );
    }
    let detail = match path {
        Some(p) => format!(
            "{} holds the public default link key: anyone on the low side can forge frames",
            p.display()
        ),
        None => "no --link-key given: the public default link key would be used, under which \
                 anyone on the low side can forge frames"
            .to_owned(),
    };
    let status = if endpoint.allows_public_key() {
        Status::Warn
    } else {
        Status::Fail
    };
    finding(CHECK, status, detail, Some(KEYGEN_HINT.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Endpoint {
        Endpoint::Udp("127.0.0.1".parse().unwrap())
    }
    fn any() -> Endpoint {
        Endpoint::Udp("0.0.0.0".parse().unwrap())
    }

    #[test]
    fn the_public_key_needs_loopback_or_the_flag() {
        assert!(load_for(None, lo(), false).is_ok());
        assert!(load_for(None, Endpoint::Udp("::1".parse().unwrap()), false).is_ok());
        assert!(load_for(None, any(), true).is_ok());
        assert!(load_for(None, Endpoint::Media, true).is_ok());
        for endpoint in [any(), Endpoint::Media] {
            let e = load_for(None, endpoint, false).unwrap_err();
            assert_eq!(e.code, Exit::Usage, "{e}");
            let help = e.remediation.unwrap();
            assert!(help.contains("sluice-send link-keygen --out"), "{help}");
            assert!(help.contains(INSECURE_FLAG), "{help}");
        }
    }

    #[test]
    fn a_file_holding_the_public_key_is_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link.key");
        std::fs::write(&path, LinkKey::public_default().as_bytes()).unwrap();
        assert!(load_for(Some(&path), any(), false).is_err());
        assert_eq!(doctor_finding(Some(&path), any()).status, Status::Fail);
        std::fs::write(&path, [7u8; 32]).unwrap();
        assert!(load_for(Some(&path), any(), false).is_ok());
        assert_eq!(doctor_finding(Some(&path), any()).status, Status::Ok);
    }

    #[test]
    fn a_missing_file_is_an_input_error_with_a_help_line() {
        let e = load_for(Some(Path::new("/nonexistent/link.key")), lo(), false).unwrap_err();
        assert_eq!(e.code, Exit::Input);
        assert!(e.remediation.unwrap().contains("link-keygen"));
    }

    #[test]
    fn doctor_warns_on_loopback_and_fails_elsewhere() {
        assert_eq!(doctor_finding(None, lo()).status, Status::Warn);
        assert_eq!(doctor_finding(None, any()).status, Status::Fail);
        assert_eq!(doctor_finding(None, Endpoint::Media).status, Status::Fail);
    }
}
