//! Progress display for `import`. As on the sender (sender/src/progress.rs): a bar only when
//! stderr is a terminal and `CI` is not set; otherwise a hidden bar that prints nothing, so logs,
//! pipes and `--json` output never carry terminal escapes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether a progress bar should be drawn at all.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar of `total` units drawn with `template`, or a hidden one when bars are disabled.
fn bar(total: u64, template: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Copying volumes into staging: bytes, with the volume in the message.
pub fn staging(total_bytes: u64) -> ProgressBar {
    bar(
        total_bytes,
        "{msg:>14} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// Rebuilding objects from their volumes: objects, with blocks missing in the message.
pub fn rebuilding(objects: u64) -> ProgressBar {
    bar(objects, "{prefix:>14} [{bar:40}] {pos}/{len} objects {msg}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_bar_without_a_terminal() {
        // Captured test output (or CI) is not a terminal: every bar is hidden. (Run with
        // --nocapture on a terminal and outside CI, bars are drawn; nothing to check then.)
        if !super::enabled() {
            assert!(super::staging(10).is_hidden());
            assert!(super::rebuilding(1).is_hidden());
        }
    }
}
