//! Progress display. indicatif lives here and never in `common`; the bar is shown only when
//! stderr is a terminal and `CI` is not set (nextest's `resolve(is_terminal, is_ci)` rule).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether a progress bar should be drawn at all.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A byte-count bar of `total` bytes, or a hidden one when bars are disabled.
pub fn bytes(total: u64, message: &'static str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    bar
}
