//! SIGINT/SIGTERM as a flag the sending loops poll, so a stop finishes the current frame batch
//! instead of killing the process mid-write.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sluice_common::exit::CommandError;

/// A flag set by SIGINT or SIGTERM.
pub fn on_signals() -> Result<Arc<AtomicBool>, CommandError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
            CommandError::new(
                sluice_common::exit::Exit::Failure,
                format!("cannot install a signal handler: {e}"),
            )
        })?;
    }
    Ok(stop)
}
