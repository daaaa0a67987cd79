//! Log output: a `tracing` subscriber writing to stderr (stdout is the run
//! summary), `pretty` or `json`, filtered by `RUST_LOG` (default `info`).
//! [`init`] is the one set-up every command uses.
//!
//! Guarantee: the HTTP/gRPC stack (`tonic`, `h2`, `hyper`, `tower`) and
//! `opentelemetry` itself are capped at `warn`, so exporting telemetry can
//! never feed back into more telemetry.

use super::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Targets capped at `warn` whatever `RUST_LOG` says.
pub const QUIET_TARGETS: [&str; 6] = ["tonic", "h2", "hyper", "tower", "opentelemetry", "axum"];

/// Why logging could not be set up (one kind: the variant is the kind).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoggingError {
    /// A global subscriber was already installed (tests, embedding programs).
    #[error("a global tracing subscriber is already installed")]
    AlreadySet,
}

/// The filter: `RUST_LOG` (or `default` when unset/invalid) plus the caps.
pub fn filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let mut f = rust_log
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    for t in QUIET_TARGETS {
        if let Ok(d) = format!("{t}=warn").parse() {
            f = f.add_directive(d);
        }
    }
    f
}

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber: `format`, `RUST_LOG` or else `default`.
pub fn init(format: LogFormat, default: &str) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(rust_log.as_deref(), default);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    r.map_err(|_| LoggingError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_falls_back_and_caps_noisy_targets() {
        let f = filter(Some("not a [valid filter"), "info").to_string();
        assert!(f.contains("info"), "{f}");
        let f = filter(Some("debug"), "info").to_string();
        assert!(f.contains("tonic=warn") && f.contains("debug"), "{f}");
    }
}
