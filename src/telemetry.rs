//! Log setup: text or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! A log line that cannot be written (stderr closed, its reader gone) is dropped.
//! The subscriber would otherwise report the failure on that same stderr, and
//! the standard library panics when that report cannot be written either: a
//! daemon must not stop because nobody reads its logs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber; later calls (as in tests) are ignored.
pub fn init(format: LogFormat) {
    install("info", format);
}

/// Installs a subscriber that shows warnings and errors only, unless `RUST_LOG`
/// asks for more: for one-shot commands whose output is a report.
pub fn init_quiet() {
    install("warn", LogFormat::Text);
}

/// Logs at `default_level` and above unless `RUST_LOG` says otherwise.
fn install(default_level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
