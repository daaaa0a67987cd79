//! The telemetry of one command's process: logging, the shared counters,
//! the HTTP server and OTLP export (a small runtime exists only when one of
//! those two is on).
//!
//! Guarantees: a bad `--http` address, an unreadable API token file, a bad
//! OTLP endpoint or an address that cannot be bound are usage errors
//! (exit 2) reported before any input is read; [`TelemetryRun::stop`]
//! flushes the exporters before the process ends.

use crate::config::Config;
use crate::error::{CliError, Kind};
use crate::shutdown::Shutdown;
use crate::telemetry::{logging, otel, server, Readiness, Telemetry};
use std::sync::Arc;

/// Telemetry of one process.
pub struct TelemetryRun {
    pub telemetry: Arc<Telemetry>,
    rt: Option<tokio::runtime::Runtime>,
    guard: Option<otel::OtelGuard>,
    serving: bool,
}

/// Sets up logging, OTLP export and the HTTP server from `[telemetry]`,
/// `--http` and the environment.
pub fn start(
    cfg: &Config,
    http: Option<String>,
    readiness: Readiness,
) -> Result<TelemetryRun, CliError> {
    let tcfg = &cfg.telemetry;
    let format = tcfg.effective_log_format(std::env::var("REFLEX_LOG_FORMAT").ok().as_deref());
    // An embedding program may have installed its own subscriber: keep it.
    let _ = logging::init(format, logging::DEFAULT_FILTER);
    let http = http.or_else(|| tcfg.http_listen.clone());
    let http_addr: Option<std::net::SocketAddr> = match http.as_deref().map(str::parse) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            return Err(CliError::usage(format!(
                "--http {:?} is not an address like 127.0.0.1:9464",
                http.unwrap_or_default()
            )));
        }
    };
    let otlp =
        tcfg.effective_otlp_endpoint(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().as_deref());
    let telemetry = Arc::new(Telemetry::new(Arc::default(), readiness, tcfg));
    let token = match std::env::var("REFLEX_API_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().as_bytes().to_vec()),
        _ => match &tcfg.api_token_file {
            Some(f) => match std::fs::read_to_string(f) {
                Ok(t) => Some(t.trim().as_bytes().to_vec()),
                Err(e) => {
                    return Err(CliError::usage(format!(
                        "telemetry.api_token_file: cannot read {f}: {e}"
                    )));
                }
            },
            None => None,
        },
    };
    telemetry.set_api_token(token);
    let rt = if http_addr.is_some() || otlp.is_some() {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("reflex-telemetry")
                .enable_all()
                .build()
                .map_err(|e| {
                    CliError::with_context(Kind::Internal, "starting the telemetry runtime", &e)
                })?,
        )
    } else {
        None
    };
    let mut guard = None;
    if let (Some(rt), Some(endpoint)) = (&rt, &otlp) {
        let built = rt
            .block_on(async { otel::init(endpoint, &tcfg.service_name, telemetry.stats.clone()) });
        let (g, tracer) = match built {
            Ok(b) => b,
            Err(e) if e.kind() == otel::OtelErrorKind::Config => {
                return Err(CliError::usage(e.to_string()));
            }
            Err(e) => {
                return Err(CliError::with_context(
                    Kind::External,
                    "setting up OTLP export",
                    &e,
                ))
            }
        };
        telemetry.set_tracer(otel::IncidentTracer::new(tracer, tcfg.max_open_incidents));
        tracing::info!(endpoint = %endpoint, "exporting traces and metrics over OTLP/gRPC");
        guard = Some(g);
    }
    if let (Some(rt), Some(addr)) = (&rt, http_addr) {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::with_context(Kind::Internal, "reading the bound address", &e))?;
        // A fixed line (not a log record) so scripts can find the port.
        eprintln!("reflex: http listening on {local}");
        rt.spawn(server::serve(listener, telemetry.clone()));
    }
    Ok(TelemetryRun {
        telemetry,
        rt,
        guard,
        serving: http_addr.is_some(),
    })
}

impl TelemetryRun {
    /// Flushes exporters; with `hold`, keeps serving HTTP until a signal.
    pub fn stop(self, hold: bool) {
        self.telemetry.finish();
        if let Some(rt) = self.rt {
            let (guard, serving) = (self.guard, self.serving);
            rt.block_on(async {
                if hold && serving {
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    eprintln!("reflex: end of input; serving until SIGTERM or ctrl-c");
                    match Shutdown::on_signals() {
                        Ok(s) => s.wait().await,
                        Err(e) => tracing::warn!(error = %e, "Not holding: no signal handlers."),
                    }
                }
                if let Some(g) = guard {
                    g.shutdown().await;
                }
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}
