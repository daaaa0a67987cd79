//! Observability: logs, metrics, traces and the ops HTTP API.
//!
//! - [`logging`]: the `tracing` subscriber (pretty/JSON, `RUST_LOG`).
//! - [`metrics`]: every metric name, and their Prometheus exposition through
//!   `prometheus-client`.
//! - [`otel`]: OTLP/gRPC export (one trace per incident, metrics), only
//!   when an endpoint is configured.
//! - [`server`]: `/metrics`, `/health`, `/ready`, `/api/incidents`,
//!   `/api/stream`, the approval routes.
//! - [`api`]: the API's error bodies, token access and per-client rate
//!   limit (`[telemetry.api]`).
//! - [`config`]: the `[telemetry]` section.
//! - [`board`]: the live incident board page, its snapshot and the value
//!   report over the records seen ([`board::Journal`]).
//!
//! The pipeline is observed from the outside: [`TapSink`] wraps the real
//! sink and hands every *output* record (never every input event) to
//! [`Telemetry::observe`], which keeps the incident store, feeds live
//! subscribers and, when exporting, builds incident traces. Every counter
//! is the pipeline's own ([`Stats`], counted once where the pipeline works
//! or writes); telemetry only reads them.

pub mod api;
pub mod approvals;
pub mod board;
// The `[telemetry]` section lives with the other config structs (below
// every runtime); the old path stays.
pub use crate::config::telemetry as config;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod server;
pub mod store;

pub use crate::pipeline::readiness::{Readiness, ReadyCondition};

use crate::model::Incident;
use crate::pipeline::Observer;
use crate::sinks::{Output, Sink, SinkError};
use crate::stage::stats::Stats;
use metrics::Gauges;
use otel::IncidentTracer;
use std::sync::{Arc, Mutex, MutexGuard};
use store::{IncidentFilter, IncidentStore};
use tokio::sync::broadcast;

/// One message of the live stream (`/api/stream`): the SSE event name and
/// the record as JSON.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// `incident`, `action` or `escalation`.
    pub kind: &'static str,
    pub data: Arc<str>,
}

/// Capacity of the live stream: a subscriber further behind than this many
/// messages skips ahead and is told how many it missed.
pub const STREAM_CAPACITY: usize = 1024;

/// Everything the observers of one process share.
pub struct Telemetry {
    pub stats: Arc<Stats>,
    pub readiness: Readiness,
    /// Shared with the metrics collector, which reads the open incidents
    /// by category at each scrape.
    store: Arc<Mutex<IncidentStore>>,
    /// The prometheus-client registry behind `/metrics` (one collector over
    /// the counters; see [`metrics::FamilyCollector`]).
    registry: prometheus_client::registry::Registry,
    stream: broadcast::Sender<StreamEvent>,
    tracer: Mutex<Option<IncidentTracer>>,
    /// Approvals from the HTTP API, drained by the pipeline thread.
    pub approvals: approvals::ApprovalQueue,
    /// The bearer token the approval endpoints require (none: refused).
    api_token: Mutex<Option<Vec<u8>>>,
    /// Records behind the board and `/api/report`.
    journal: Mutex<board::Journal>,
    /// Limits and access of the HTTP API (`[telemetry.api]`).
    pub api: config::ApiConfig,
}

impl Telemetry {
    /// A hub over `stats`, with the store bounds of `cfg`.
    pub fn new(stats: Arc<Stats>, readiness: Readiness, cfg: &config::TelemetryConfig) -> Self {
        let (stream, _) = broadcast::channel(STREAM_CAPACITY);
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let store = Arc::new(Mutex::new(IncidentStore::new(
            cfg.max_open_incidents,
            cfg.recent_incidents,
        )));
        let gauges = {
            let (store, stats, readiness) = (store.clone(), stats.clone(), readiness.clone());
            move || hub_gauges(&store, &stats, &readiness, start_time)
        };
        let registry = metrics::registry(metrics::FamilyCollector::new(stats.clone(), gauges));
        Telemetry {
            stats,
            readiness,
            store,
            registry,
            stream,
            tracer: Mutex::new(None),
            approvals: approvals::ApprovalQueue::default(),
            api_token: Mutex::new(None),
            journal: Mutex::new(board::Journal::default()),
            api: cfg.api.clone(),
        }
    }

    /// Starts building incident traces with `tracer`.
    pub fn set_tracer(&self, tracer: IncidentTracer) {
        *lock(&self.tracer) = Some(tracer);
    }

    /// Sets the bearer token the approval endpoints require.
    pub fn set_api_token(&self, token: Option<Vec<u8>>) {
        *lock(&self.api_token) = token.filter(|t| !t.is_empty());
    }

    /// Whether `presented` is the configured API token (never, without one).
    pub fn api_token_ok(&self, presented: &[u8]) -> bool {
        lock(&self.api_token)
            .as_deref()
            .is_some_and(|t| approvals::token_matches(presented, t))
    }

    /// Whether an API token is configured.
    pub fn api_token_set(&self) -> bool {
        lock(&self.api_token).is_some()
    }

    /// Subscribes to the live stream.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.stream.subscribe()
    }

    /// Incidents matching `f` (latest state each).
    pub fn incidents(&self, f: &IncidentFilter) -> Vec<Incident> {
        lock(&self.store).list(f)
    }

    /// The Prometheus text of every metric (format 0.0.4, served as
    /// [`metrics::CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        metrics::render(&self.registry)
    }

    /// The records behind the board and the report (a short lock).
    pub fn journal(&self) -> MutexGuard<'_, board::Journal> {
        lock(&self.journal)
    }

    /// An executor result the process was given: kept for the board and
    /// the report, and streamed as a `result` event.
    pub fn observe_result(&self, r: &crate::model::ActionResult) {
        lock(&self.journal).result(r);
        self.publish("result", r);
    }

    /// Handles one output record that was written.
    pub fn observe(&self, out: &Output) {
        // Not counted here: the decide node counts what it writes
        // (`pipeline::topology::count_output`), once, into `Stats`.
        if !matches!(out, Output::Detection(_) | Output::DeadLetter(_)) {
            lock(&self.journal).push(out);
        }
        match out {
            Output::Detection(d) => {
                if let Some(t) = lock(&self.tracer).as_mut() {
                    t.detection(d);
                }
            }
            Output::Incident(i) => {
                tracing::info!(
                    incident_id = %i.incident_id,
                    status = metrics::status_str(i.status),
                    category = i.category.as_str(),
                    root_cause = %i.root_cause_service,
                    confidence = i.confidence,
                    "incident"
                );
                lock(&self.store).apply(i);
                if let Some(t) = lock(&self.tracer).as_mut() {
                    t.incident(i);
                }
                self.publish("incident", i);
            }
            Output::Action(a) => {
                tracing::info!(
                    incident_id = %a.incident_id,
                    action_id = %a.action_id,
                    action = a.action_type.as_str(),
                    target = %a.target.name,
                    risk = a.risk,
                    decision = metrics::decision_str(a.decision),
                    "action"
                );
                if let Some(t) = lock(&self.tracer).as_mut() {
                    t.action(a);
                }
                self.publish("action", a);
            }
            Output::Escalation(e) => {
                tracing::info!(
                    incident_id = %e.incident_id,
                    escalation_id = %e.escalation_id,
                    team = e.team.as_deref().unwrap_or(""),
                    "escalation"
                );
                if let Some(t) = lock(&self.tracer).as_mut() {
                    t.escalation(e);
                }
                self.publish("escalation", e);
            }
            Output::DeadLetter(_) => {}
        }
    }

    fn publish<T: serde::Serialize>(&self, kind: &'static str, record: &T) {
        if self.stream.receiver_count() == 0 {
            return;
        }
        match serde_json::to_string(record) {
            Ok(s) => {
                // No subscriber left is fine: nothing to deliver.
                let _ = self.stream.send(StreamEvent {
                    kind,
                    data: s.into(),
                });
            }
            Err(e) => tracing::warn!(error = %e, kind, "encoding a stream event"),
        }
    }

    /// End of input: ends the spans of incidents still open.
    pub fn finish(&self) {
        if let Some(t) = lock(&self.tracer).as_mut() {
            t.finish();
        }
    }
}

impl Observer for Telemetry {
    fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn observe(&self, out: &Output) {
        Telemetry::observe(self, out);
    }

    fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    fn approvals(&self) -> &approvals::ApprovalQueue {
        &self.approvals
    }
}

/// The values only the hub knows, read at a scrape (a short store lock).
fn hub_gauges(
    store: &Mutex<IncidentStore>,
    stats: &Stats,
    readiness: &Readiness,
    start_time: f64,
) -> Gauges {
    let (open_by_category, (open, recent)) = {
        let s = lock(store);
        (s.open_by_category(), s.sizes())
    };
    Gauges {
        open_by_category,
        state: vec![
            ("detector_keys", Stats::get(&stats.detector_state_keys)),
            ("incidents_open", open as u64),
            ("incidents_recent", recent as u64),
        ],
        ready: readiness.is_ready(),
        start_time,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A sink that writes through to `inner` and then tells [`Telemetry`].
pub struct TapSink<'a> {
    inner: &'a mut dyn Sink,
    telemetry: Arc<Telemetry>,
}

impl<'a> TapSink<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn Sink, telemetry: Arc<Telemetry>) -> Self {
        TapSink { inner, telemetry }
    }
}

impl Sink for TapSink<'_> {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.inner.write(out)?;
        self.telemetry.observe(out);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}
