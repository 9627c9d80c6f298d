//! Reading the link-key file both ends share. One loader for `listen`, `import`, `udp`, `watch`,
//! `media` and both `doctor`s, so what one command accepts every other accepts too
//! (`sluice_common::linkkey::parse_link_key` decides the format).

use std::path::Path;

use sluice_common::linkkey::{MAX_LINK_KEY_FILE_BYTES, parse_link_key};
use sluice_common::transport::wire::LinkKey;

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
