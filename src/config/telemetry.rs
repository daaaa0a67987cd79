//! The `[telemetry]` config section: HTTP server, log output, OTLP export.
//!
//! Everything is off or quiet by default: no HTTP port is opened and nothing
//! is exported unless configured. Environment variables fill in what the file
//! leaves unset (`REFLEX_LOG_FORMAT` overrides `log_format`;
//! `OTEL_EXPORTER_OTLP_ENDPOINT` applies when `otlp_endpoint` is unset), and
//! `reflex run --http ADDR` overrides `http_listen`.

use crate::model::DurationMs;
use serde::{Deserialize, Serialize};

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours when stderr is a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, with the current span's fields.
    Json,
}

impl LogFormat {
    /// Parses `pretty` or `json` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// `[telemetry]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address (`HOST:PORT`) of the HTTP server (`/metrics`, `/health`,
    /// `/ready`, `/api/incidents`, `/api/stream`). Unset = no server.
    pub http_listen: Option<String>,
    /// `pretty` or `json`; `REFLEX_LOG_FORMAT` overrides it. The filter comes
    /// from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint (`http://collector:4317`). Unset (and no
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) = nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported telemetry.
    pub service_name: String,
    /// Resolved incidents kept for `/api/incidents` (open ones are always kept,
    /// up to `max_open_incidents`).
    pub recent_incidents: usize,
    /// Bound on open incidents tracked by the API and traces; the least
    /// recently updated is forgotten beyond it.
    pub max_open_incidents: usize,
    /// File holding the bearer token of the approval endpoints
    /// (`POST /api/actions/{id}/approve|reject`); `REFLEX_API_TOKEN` wins.
    /// Neither set = approvals over HTTP are refused.
    pub api_token_file: Option<String>,
    /// Limits and access of the ops API (`[telemetry.api]`).
    pub api: ApiConfig,
}

/// `[telemetry.api]`: request limits and access of the ops HTTP API.
///
/// Every route gets the body limit and the timeout; the mutating routes
/// (`POST /api/actions/{id}/approve|reject`) are rate-limited per client
/// (peer IP address) and always need the bearer token; the read-only
/// `/api/*` routes need it too with `protect_read_only`. `/health`,
/// `/ready`, `/metrics` and the board page stay open for probes, scrapers
/// and browsers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes; a larger one is refused
    /// with `413` before it is read.
    pub max_body_bytes: usize,
    /// Whole-request deadline (reading the body included); beyond it the
    /// request is answered `408`. A connection that has not sent its
    /// request headers within it (or idles that long between requests) is
    /// closed.
    pub request_timeout: DurationMs,
    /// Requests a client may make to the mutating routes in a burst (the
    /// size of its bucket); beyond it `429` with `Retry-After`.
    pub mutating_burst: u32,
    /// One more mutating request is allowed per client after each such
    /// interval (`"6s"` with a burst of 10 = 10 a minute sustained).
    pub mutating_refill: DurationMs,
    /// Also require the bearer token on the read-only `/api/*` routes
    /// (`/api/incidents`, `/api/stream`, `/api/board`, `/api/report`).
    pub protect_read_only: bool,
}

/// Largest `telemetry.api.max_body_bytes` accepted (16 MiB).
pub const MAX_BODY_BYTES_LIMIT: usize = 16 << 20;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 16 * 1024,
            request_timeout: DurationMs(15_000),
            mutating_burst: 10,
            mutating_refill: DurationMs(6_000),
            protect_read_only: false,
        }
    }
}

impl ApiConfig {
    /// Semantic checks: (key, message) pairs, keys relative to the file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| out.push((format!("telemetry.api.{key}"), msg));
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_BYTES_LIMIT {
            bad(
                "max_body_bytes",
                format!(
                    "{} is out of range: expected 1 to {MAX_BODY_BYTES_LIMIT}",
                    self.max_body_bytes
                ),
            );
        }
        if !(100..=600_000).contains(&self.request_timeout.0) {
            bad(
                "request_timeout",
                format!(
                    "{} ms is out of range: expected 100ms to 10m",
                    self.request_timeout.0
                ),
            );
        }
        if self.mutating_burst == 0 {
            bad("mutating_burst", "must be at least 1".to_string());
        }
        if self.mutating_refill.0 <= 0 {
            bad(
                "mutating_refill",
                "must be longer than 0 (e.g. \"6s\")".to_string(),
            );
        }
        out
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            http_listen: None,
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
            service_name: "reflex".to_string(),
            recent_incidents: 1000,
            max_open_incidents: 10_000,
            api_token_file: None,
            api: ApiConfig::default(),
        }
    }
}

impl TelemetryConfig {
    /// Semantic checks: (key, message) pairs, keys relative to the file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(a) = &self.http_listen {
            if a.parse::<std::net::SocketAddr>().is_err() {
                out.push((
                    "telemetry.http_listen".to_string(),
                    format!("{a:?} is not an address like 127.0.0.1:9464"),
                ));
            }
        }
        if let Some(e) = &self.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                out.push((
                    "telemetry.otlp_endpoint".to_string(),
                    format!("{e:?} must start with http:// or https://"),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            out.push((
                "telemetry.service_name".to_string(),
                "must not be empty".to_string(),
            ));
        }
        if self.recent_incidents == 0 {
            out.push((
                "telemetry.recent_incidents".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        if self.max_open_incidents == 0 {
            out.push((
                "telemetry.max_open_incidents".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        out.extend(self.api.validate());
        out
    }

    /// The effective log format: `REFLEX_LOG_FORMAT` (when valid) wins.
    pub fn effective_log_format(&self, env: Option<&str>) -> LogFormat {
        env.and_then(LogFormat::parse).unwrap_or(self.log_format)
    }

    /// The effective OTLP endpoint: the config's, else a non-empty
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn effective_otlp_endpoint(&self, env: Option<&str>) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            env.map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_follow_the_documented_precedence() {
        let mut c = TelemetryConfig::default();
        assert_eq!(c.effective_log_format(Some("JSON")), LogFormat::Json);
        assert_eq!(c.effective_log_format(Some("bogus")), LogFormat::Pretty);
        assert_eq!(c.effective_otlp_endpoint(None), None);
        assert_eq!(
            c.effective_otlp_endpoint(Some("http://x:4317")).as_deref(),
            Some("http://x:4317")
        );
        c.otlp_endpoint = Some("http://cfg:4317".into());
        assert_eq!(
            c.effective_otlp_endpoint(Some("http://x:4317")).as_deref(),
            Some("http://cfg:4317")
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_keys() {
        let c = TelemetryConfig {
            http_listen: Some("nope".into()),
            otlp_endpoint: Some("collector:4317".into()),
            service_name: " ".into(),
            recent_incidents: 0,
            max_open_incidents: 0,
            ..TelemetryConfig::default()
        };
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert!(keys.contains(&"telemetry.http_listen".to_string()));
    }

    #[test]
    fn api_limits_are_checked_with_their_keys() {
        assert!(ApiConfig::default().validate().is_empty());
        let c = TelemetryConfig {
            api: ApiConfig {
                max_body_bytes: 0,
                request_timeout: DurationMs(0),
                mutating_burst: 0,
                mutating_refill: DurationMs(0),
                protect_read_only: true,
            },
            ..TelemetryConfig::default()
        };
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "telemetry.api.max_body_bytes",
                "telemetry.api.request_timeout",
                "telemetry.api.mutating_burst",
                "telemetry.api.mutating_refill"
            ],
        );
        let parsed: TelemetryConfig = toml::from_str(
            "[api]\nmax_body_bytes = 512\nmutating_refill = \"1h\"\nprotect_read_only = true\n",
        )
        .expect("parses");
        assert_eq!(parsed.api.max_body_bytes, 512);
        assert_eq!(parsed.api.mutating_refill, DurationMs(3_600_000));
        assert!(parsed.api.protect_read_only);
        assert!(toml::from_str::<TelemetryConfig>("[api]\nmax_body = 1\n").is_err());
    }
}
