//! The one logging setup: structured `tracing` events, JSON on Lambda, `RUST_LOG` to filter.
//!
//! `RUST_LOG` is read with `tracing_subscriber`'s static [`Targets`] filter rather than its
//! `EnvFilter`, which links a regex engine into every Lambda package: comma-separated
//! directives `level`, `target` or `target=level` (`info,hunter_core=debug`; the longest
//! matching target wins; levels in any case, or `off`). An unset or invalid `RUST_LOG` means
//! [`DEFAULT_DIRECTIVES`]; so does one with span or field selectors (`target[span{field}]=level`),
//! which only `EnvFilter` understood.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Lambda => registry
            .with(layer.without_time().with_current_span(false))
            .try_init(),
        LogFormat::Local => registry.with(layer.with_writer(std::io::stderr)).try_init(),
    };
}

/// The filter when `RUST_LOG` is unset or invalid: `info`, except the DNS server crate that
/// hunter-local's DNS simulator runs on, which logs every query it answers at `info` (thousands
/// of lines a sync that drowned Hunter's own).
pub const DEFAULT_DIRECTIVES: &str = "info,hickory_server=warn";

/// The filter of a `RUST_LOG` value: [`DEFAULT_DIRECTIVES`] when it is unset or invalid.
fn filter_from(rust_log: Option<&str>) -> Targets {
    rust_log.and_then(parse_directives).unwrap_or_else(|| {
        DEFAULT_DIRECTIVES
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
    })
}

/// The directives of `RUST_LOG` as `EnvFilter` read them, or `None` if one is invalid. Empty
/// directives are skipped and blanks around one are ignored; `target=` means every level of
/// `target`; a value with no directive (`RUST_LOG=`) turns logging off.
fn parse_directives(value: &str) -> Option<Targets> {
    let mut directives = Vec::new();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let starts_well =
            directive.starts_with(|c: char| c.is_alphanumeric() || matches!(c, '-' | ':' | '_'));
        if !starts_well || directive.contains(['[', '{']) {
            return None;
        }
        directives.push(directive.strip_suffix('=').unwrap_or(directive));
    }
    if directives.is_empty() {
        return Some(Targets::new());
    }
    directives.join(",").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    /// The most verbose level that `RUST_LOG=rust_log` lets through for `target`.
    fn most_verbose(rust_log: Option<&str>, target: &str) -> LevelFilter {
        let filter = filter_from(rust_log);
        [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]
        .into_iter()
        .find(|level| filter.would_enable(target, level))
        .map_or(LevelFilter::OFF, LevelFilter::from_level)
    }

    #[test]
    fn telemetry_filter_defaults_to_info() {
        // Unset, invalid, or with the span and field selectors that only EnvFilter reads.
        let invalid = [
            "hunter=loud",
            "a=b=c",
            "*",
            "=info",
            "[sync]=debug",
            "x[{id}]=debug",
        ];
        for rust_log in std::iter::once(None).chain(invalid.map(Some)) {
            for target in ["hunter_core::sync", "x", "aws_config"] {
                let level = most_verbose(rust_log, target);
                assert_eq!(level, LevelFilter::INFO, "{rust_log:?} {target}");
            }
            let dns = most_verbose(rust_log, "hickory_server::server");
            assert_eq!(dns, LevelFilter::WARN, "{rust_log:?}");
        }
    }

    #[test]
    fn telemetry_filter_lets_an_explicit_rust_log_show_the_dns_server() {
        let level = most_verbose(Some("info"), "hickory_server::server");
        assert_eq!(level, LevelFilter::INFO);
    }

    #[test]
    fn telemetry_filter_reads_levels_and_targets() {
        let layered = "info,hunter_core=debug,hunter_core::retry=warn";
        let cases = [
            (layered, "hunter_core::sync", LevelFilter::DEBUG),
            (layered, "hunter_core::retry", LevelFilter::WARN),
            (layered, "aws_config", LevelFilter::INFO),
            ("WARN", "x", LevelFilter::WARN),
            (" debug , ,", "x", LevelFilter::DEBUG),
            ("hunter_domain", "hunter_domain::rules", LevelFilter::TRACE),
            ("hunter_domain", "aws_config", LevelFilter::OFF),
            ("hunter_domain=", "hunter_domain", LevelFilter::TRACE),
            ("error,hyper=off", "hyper::proto", LevelFilter::OFF),
            ("error,hyper=off", "aws_config", LevelFilter::ERROR),
            ("", "hunter_core", LevelFilter::OFF),
            (",", "hunter_core", LevelFilter::OFF),
        ];
        for (rust_log, target, expected) in cases {
            let level = most_verbose(Some(rust_log), target);
            assert_eq!(level, expected, "RUST_LOG={rust_log:?} {target}");
        }
    }
}
