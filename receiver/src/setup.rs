//! What `listen` and `import` open before ingesting anything, with the same checks and the same
//! errors: the link key, the trust directory and the store.

use std::path::Path;

use sluice_common::bundle::trust::TrustStore;
use sluice_common::exit::CommandError;
use sluice_common::transport::wire::LinkKey;
pub use sluice_host::linkkey::Endpoint;

use crate::store::Store;

/// The link key of `--link-key` (or the public default), through the loader both binaries
/// share: an unreadable file is an input error (3), bytes that are no key a usage error (2), and
/// the public default key a usage error (2) unless `endpoint` is loopback or `insecure_public`
/// (the rule in `sluice_host::linkkey`). Checked before the store is opened or created.
pub fn load_link_key(
    path: Option<&Path>,
    endpoint: Endpoint,
    insecure_public: bool,
) -> Result<LinkKey, CommandError> {
    sluice_host::linkkey::load_for(path, endpoint, insecure_public)
}

/// The trust directory (every key parsed, weak keys and unknown policy keys refused).
pub fn load_trust(dir: &Path) -> Result<TrustStore, CommandError> {
    sluice_host::trust_dir::load_trust_dir(dir).map_err(|e| CommandError::usage(format!("{e:#}")))
}

/// Opens (creating if needed) the store with its staging quota.
pub fn open_store(dir: &Path, staging_quota_bytes: u64) -> Result<Store, CommandError> {
    crate::ingest::open_store(dir, staging_quota_bytes).map_err(|e| {
        CommandError::new(
            sluice_common::exit::from_code_or_failure(e.exit_code()),
            format!("cannot open the store {}: {e}", dir.display()),
        )
    })
}
