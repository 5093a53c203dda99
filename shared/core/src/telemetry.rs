//! The one logging setup: structured `tracing` events, JSON on Lambda, `RUST_LOG` to filter.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, no ANSI colours, no timestamp (CloudWatch adds it).
    Lambda,
    /// One JSON object per line with a timestamp, on stderr (hunter-local).
    Local,
}

/// Installs the global subscriber (a second call is ignored). Default level `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Lambda => builder.without_time().with_current_span(false).try_init(),
        LogFormat::Local => builder.with_writer(std::io::stderr).try_init(),
    };
}
