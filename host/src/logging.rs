//! Structured logging on stderr: human text or one JSON object per line for a SIEM.
//!
//! Colour only when stderr is a terminal (never escape codes in a file or the journal); with
//! `--log-format json` the one fatal error of a run is JSON too ([`json_errors`],
//! `crate::exit_with`). Timestamps are RFC 3339 UTC with milliseconds, as in docs/json.md.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Set once by [`init`]: whether stderr carries JSON lines.
static JSON_ERRORS: AtomicBool = AtomicBool::new(false);

/// Whether the fatal error should be printed as a JSON object (`--log-format json`).
pub fn json_errors() -> bool {
    JSON_ERRORS.load(Ordering::Relaxed)
}

/// The log line's time: RFC 3339 with milliseconds, the format of every JSON time.
struct MillisUtc;

impl tracing_subscriber::fmt::time::FormatTime for MillisUtc {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&crate::time::rfc3339_ms(crate::time::now_unix_ms()))
    }
}

/// Default level: WARN, plus the one INFO line per decided bundle (target
/// [`DECISIONS_TARGET`]) so an operator sees every delivery without `-v`; `-v` is INFO, `-vv`
/// DEBUG, `-vvv` TRACE. `SLUICE_LOG` (an env-filter directive) overrides all of it.
pub fn init(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => format!("warn,{DECISIONS_TARGET}=info"),
        1 => "info".to_string(),
        2 => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(MillisUtc)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            JSON_ERRORS.store(true, Ordering::Relaxed);
            builder.json().flatten_event(true).init()
        }
    }
}

/// The tracing target of the per-bundle decision lines (`sluice-recv`'s `report::log_decided`),
/// shown at the default verbosity.
pub const DECISIONS_TARGET: &str = "sluice::decision";
