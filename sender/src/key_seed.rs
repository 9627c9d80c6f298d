//! The 32 secret random bytes `keygen` (an ed25519 seed) and `link-keygen` (a link key) start
//! from, drawn one way: from the OS generator, zeroized on drop, and with the same error when
//! the generator fails.

use sluice_common::exit::{CommandError, Exit};
use zeroize::Zeroizing;

/// 32 bytes from the OS random number generator; `command` names the subcommand in the fix.
pub fn fresh_key_seed(command: &str) -> Result<Zeroizing<[u8; 32]>, CommandError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|e| {
        CommandError::new(
            Exit::Failure,
            format!("the OS random number generator failed: {e}"),
        )
        .help(format!(
            "run {command} on a host with a working /dev/urandom"
        ))
    })?;
    Ok(seed)
}
