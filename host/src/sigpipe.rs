//! A closed stdout ends the process the way it ends `cat` or `ls`: killed by SIGPIPE, quietly.
//!
//! Rust ignores SIGPIPE, so `println!` into a pipe whose reader has gone (`sluice-send bundle
//! inspect X | head`) panics with "failed printing to stdout: Broken pipe" and a backtrace, and
//! exits 101 as if the tool had a bug. Restoring the default SIGPIPE action for the whole
//! process would be wrong for the listener (a metrics client hanging up must not kill it), so
//! only that one panic is turned into the default SIGPIPE death; every other panic keeps the
//! normal hook.
//!
//! Used by both binaries.

/// Installs the panic hook. Call once, first thing in `main`.
pub fn quiet_on_closed_stdout() {
    let normal = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_stdout(message) {
            // Dies by SIGPIPE, exactly like coreutils (shell status 141); if that were
            // impossible, exit with the same number.
            let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
            std::process::exit(128 + signal_hook::consts::SIGPIPE);
        }
        normal(info);
    }));
}

/// std's message for a failed `print!`/`println!` on a closed pipe (EPIPE is 32 on Linux).
fn is_closed_stdout(message: &str) -> bool {
    message.starts_with("failed printing to stdout")
        && (message.contains("Broken pipe") || message.contains("os error 32"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_closed_stdout_is_recognised() {
        assert!(super::is_closed_stdout(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!super::is_closed_stdout(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!super::is_closed_stdout("index out of bounds"));
    }
}
