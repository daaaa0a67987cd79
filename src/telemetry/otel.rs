//! OpenTelemetry export over OTLP/gRPC: one trace per incident, plus every
//! metric family of `/metrics` as OTLP metrics (same names, help, labels and
//! values: both read [`metrics::families`]).
//!
//! Built only when an OTLP endpoint is configured; otherwise no provider,
//! exporter or background task exists and the pipeline pays nothing.
//!
//! **One trace per incident.** The trace id is the first 16 bytes of
//! SHA-256(`incident_id`), so every span of an incident — across restarts,
//! replays and (later) processes — lands in the same trace. The root span
//! `incident` starts at `opened_at` and ends at `resolved_at`; its children
//! are `detection` (each contributing detection, over its window),
//! `diagnosis` (each open/update record: category, root cause, confidence),
//! `decision` (risk and auto/approval) with a child `action`, and
//! `escalation`. Span timestamps are **event time**, so a trace shows the
//! fault's own timeline even in a replay.
//!
//! Why the OpenTelemetry API and not `tracing-opentelemetry`: incident spans
//! outlive any lexical scope (opened in one batch, resolved minutes of event
//! time later), need explicit event-time timestamps and a trace id chosen by
//! us; `tracing` spans give none of the three. The SDK does not let a span
//! builder pick a root trace id, so an [`IdGenerator`] hands out the derived
//! id for the root span being started (a thread-local, set and consumed in
//! the same call) and random ids otherwise.
//!
//! Which detections belong to an incident is inferred here, not told by the
//! diagnosis stage: detections are held (bounded) until an incident record
//! names their service among its affected services.
//!
//! Runtime rules (CRATES.md pitfall 4): [`init`] must run inside a tokio
//! runtime (the tonic channel binds to it); [`OtelGuard::shutdown`] flushes
//! on a blocking thread.

use super::metrics;
use crate::model::{Detection, Escalation, EventTime, Incident, IncidentStatus, RecoveryAction};
use crate::stage::stats::Stats;
use opentelemetry::trace::{
    Span as _, SpanId, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Instrumentation scope name of reflex's spans and metrics.
pub const SCOPE: &str = "reflex";
/// Span names (the trace of one incident).
pub const SPAN_INCIDENT: &str = "incident";
pub const SPAN_DETECTION: &str = "detection";
pub const SPAN_DIAGNOSIS: &str = "diagnosis";
pub const SPAN_DECISION: &str = "decision";
pub const SPAN_ACTION: &str = "action";
pub const SPAN_ESCALATION: &str = "escalation";

/// Detections held while waiting for their incident.
const MAX_PENDING_DETECTIONS: usize = 512;

/// What kind of problem an [`OtelError`] is, to choose an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelErrorKind {
    /// The endpoint or another setting is invalid (exit code 2).
    Config,
    /// The exporter could not be built for another reason (exit code 1).
    Internal,
}

/// Errors setting up export.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("building the OTLP {signal} exporter for {endpoint}: {source}")]
    Exporter {
        signal: &'static str,
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

impl OtelError {
    /// The kind, to choose an exit code.
    pub fn kind(&self) -> OtelErrorKind {
        match self {
            OtelError::Exporter {
                source: opentelemetry_otlp::ExporterBuildError::InvalidConfiguration(_),
                ..
            } => OtelErrorKind::Config,
            OtelError::Exporter { .. } => OtelErrorKind::Internal,
        }
    }
}

/// The trace id of an incident: the first 16 bytes of SHA-256(`incident_id`).
pub fn incident_trace_id(incident_id: &str) -> TraceId {
    let h = Sha256::digest(incident_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    TraceId::from_bytes(b)
}

/// The span id used as parent for an incident whose root span is no longer
/// held (evicted, or opened before this process started).
fn incident_root_span_id(incident_id: &str) -> SpanId {
    let h = Sha256::digest(incident_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[16..24]);
    SpanId::from_bytes(b)
}

thread_local! {
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Random ids, except the trace id of a root span started by
/// [`IncidentTracer`] (see the module docs).
#[derive(Debug, Default)]
pub struct IncidentIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for IncidentIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

fn at(t: EventTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(t.millis()).unwrap_or(0))
}

struct OpenTrace {
    cx: Context,
    last: EventTime,
}

/// Turns incident records into spans (see the module docs).
pub struct IncidentTracer {
    tracer: SdkTracer,
    open: HashMap<String, OpenTrace>,
    pending: VecDeque<Detection>,
    max_open: usize,
}

impl IncidentTracer {
    /// A tracer bounded to `max_open` incidents in flight.
    pub fn new(tracer: SdkTracer, max_open: usize) -> Self {
        IncidentTracer {
            tracer,
            open: HashMap::new(),
            pending: VecDeque::new(),
            max_open: max_open.max(1),
        }
    }

    /// A detection was written.
    pub fn detection(&mut self, d: &Detection) {
        if self.pending.len() >= MAX_PENDING_DETECTIONS {
            self.pending.pop_front();
        }
        self.pending.push_back(d.clone());
    }

    fn parent(&self, incident_id: &str) -> Context {
        match self.open.get(incident_id) {
            Some(t) => t.cx.clone(),
            None => {
                let sc = opentelemetry::trace::SpanContext::new(
                    incident_trace_id(incident_id),
                    incident_root_span_id(incident_id),
                    opentelemetry::trace::TraceFlags::SAMPLED,
                    true,
                    Default::default(),
                );
                Context::new().with_remote_span_context(sc)
            }
        }
    }

    fn child(
        &self,
        incident_id: &str,
        name: &'static str,
        start: EventTime,
        end: EventTime,
        attrs: Vec<KeyValue>,
    ) -> Context {
        let parent = self.parent(incident_id);
        let mut span = self
            .tracer
            .span_builder(name)
            .with_start_time(at(start))
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(at(end.max(start)));
        parent.with_span(span)
    }

    /// An incident record was written.
    pub fn incident(&mut self, inc: &Incident) {
        let id = inc.incident_id.as_str();
        if inc.status == IncidentStatus::Open && !self.open.contains_key(id) {
            if self.open.len() >= self.max_open {
                self.evict_oldest();
            }
            NEXT_TRACE_ID.with(|c| c.set(Some(incident_trace_id(id))));
            let span = self
                .tracer
                .span_builder(SPAN_INCIDENT)
                .with_start_time(at(inc.opened_at))
                .with_attributes(vec![
                    KeyValue::new("incident.id", inc.incident_id.clone()),
                    KeyValue::new("incident.category", inc.category.as_str()),
                    KeyValue::new(
                        "incident.root_cause_service",
                        inc.root_cause_service.clone(),
                    ),
                    KeyValue::new("incident.summary", inc.summary.clone()),
                ])
                .start(&self.tracer);
            NEXT_TRACE_ID.with(|c| c.set(None));
            self.open.insert(
                inc.incident_id.clone(),
                OpenTrace {
                    cx: Context::new().with_span(span),
                    last: inc.updated_at,
                },
            );
        }
        // Detections of the affected services join this incident.
        let mut joined = Vec::new();
        self.pending.retain(|d| {
            if inc.services.contains(&d.service) || d.service == inc.root_cause_service {
                joined.push(d.clone());
                false
            } else {
                true
            }
        });
        for d in &joined {
            self.child(
                id,
                SPAN_DETECTION,
                d.window.start.min(d.first_seen),
                d.window.end,
                vec![
                    KeyValue::new("incident.id", inc.incident_id.clone()),
                    KeyValue::new("detection.id", d.detection_id.clone()),
                    KeyValue::new("detection.detector", d.detector.as_str()),
                    KeyValue::new("detection.rule", d.rule.clone()),
                    KeyValue::new("detection.key", d.key.clone()),
                    KeyValue::new("detection.service", d.service.clone()),
                    KeyValue::new("detection.score", d.score),
                    KeyValue::new("detection.count", d.count),
                    KeyValue::new("detection.evidence", d.evidence.clone()),
                ],
            );
        }
        let status = super::metrics::status_str(inc.status);
        self.child(
            id,
            SPAN_DIAGNOSIS,
            inc.updated_at,
            inc.updated_at,
            vec![
                KeyValue::new("incident.id", inc.incident_id.clone()),
                KeyValue::new("incident.status", status),
                KeyValue::new("incident.category", inc.category.as_str()),
                KeyValue::new(
                    "incident.root_cause_service",
                    inc.root_cause_service.clone(),
                ),
                KeyValue::new("incident.confidence", inc.confidence),
                KeyValue::new("incident.services", inc.services.join(",")),
                KeyValue::new("incident.evidence", inc.evidence.join("; ")),
            ],
        );
        if let Some(t) = self.open.get_mut(id) {
            t.last = t.last.max(inc.updated_at);
        }
        if inc.status == IncidentStatus::Resolved {
            if let Some(t) = self.open.remove(id) {
                let span = t.cx.span();
                span.set_attribute(KeyValue::new("incident.status", "resolved"));
                span.end_with_timestamp(at(inc.resolved_at.unwrap_or(inc.updated_at)));
            }
        }
    }

    /// An action was written.
    pub fn action(&mut self, a: &RecoveryAction) {
        let decision = super::metrics::decision_str(a.decision);
        let cx = self.child(
            &a.incident_id,
            SPAN_DECISION,
            a.created_at,
            a.created_at,
            vec![
                KeyValue::new("incident.id", a.incident_id.clone()),
                KeyValue::new("action.type", a.action_type.as_str()),
                KeyValue::new("action.risk", a.risk),
                KeyValue::new("action.decision", decision),
                KeyValue::new("action.reason", a.reason.clone()),
            ],
        );
        let mut span = self
            .tracer
            .span_builder(SPAN_ACTION)
            .with_start_time(at(a.created_at))
            .with_attributes(vec![
                KeyValue::new("incident.id", a.incident_id.clone()),
                KeyValue::new("action.id", a.action_id.clone()),
                KeyValue::new("action.type", a.action_type.as_str()),
                KeyValue::new("action.decision", decision),
                KeyValue::new("action.target.service", a.target.service.clone()),
                KeyValue::new("action.target.kind", a.target.kind.clone()),
                KeyValue::new("action.target.name", a.target.name.clone()),
                KeyValue::new("action.idempotency_key", a.idempotency_key.clone()),
            ])
            .start_with_context(&self.tracer, &cx);
        span.end_with_timestamp(at(a.created_at));
    }

    /// An escalation was written.
    pub fn escalation(&mut self, e: &Escalation) {
        self.child(
            &e.incident_id,
            SPAN_ESCALATION,
            e.created_at,
            e.created_at,
            vec![
                KeyValue::new("incident.id", e.incident_id.clone()),
                KeyValue::new("escalation.id", e.escalation_id.clone()),
                KeyValue::new("escalation.reason", e.reason.clone()),
                KeyValue::new("escalation.team", e.team.clone().unwrap_or_default()),
            ],
        );
    }

    fn evict_oldest(&mut self) {
        if let Some(id) = self
            .open
            .iter()
            .min_by_key(|(id, t)| (t.last, (*id).clone()))
            .map(|(id, _)| id.clone())
        {
            if let Some(t) = self.open.remove(&id) {
                t.cx.span().end_with_timestamp(at(t.last));
            }
        }
    }

    /// Ends every open incident span (at its last update): end of input or
    /// shutdown. The incident itself stays open; later records of it join
    /// the same trace.
    pub fn finish(&mut self) {
        for (_, t) in self.open.drain() {
            t.cx.span()
                .set_attribute(KeyValue::new("incident.status", "open"));
            t.cx.span().end_with_timestamp(at(t.last));
        }
    }
}

/// The providers; flush and stop them with [`OtelGuard::shutdown`].
pub struct OtelGuard {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl OtelGuard {
    /// Flushes and stops both providers on a blocking thread (the batch
    /// processor blocks; on a runtime worker it could deadlock).
    pub async fn shutdown(self) {
        let r = tokio::task::spawn_blocking(move || {
            let t = self.tracer_provider.shutdown();
            let m = self.meter_provider.shutdown();
            (t, m)
        })
        .await;
        match r {
            Ok((t, m)) => {
                if let Err(e) = t {
                    tracing::warn!(error = %e, "flushing OTLP traces");
                }
                if let Err(e) = m {
                    tracing::warn!(error = %e, "flushing OTLP metrics");
                }
            }
            Err(e) => tracing::warn!(error = %e, "OTLP shutdown task failed"),
        }
    }
}

/// Builds the OTLP trace and metric pipelines. Call inside a tokio runtime.
/// Metrics are observable instruments read from `stats` at
/// each export (default every 60 s; `OTEL_METRIC_EXPORT_INTERVAL` in ms).
pub fn init(
    endpoint: &str,
    service_name: &str,
    stats: Arc<Stats>,
) -> Result<(OtelGuard, SdkTracer), OtelError> {
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| OtelError::Exporter {
            signal: "trace",
            endpoint: endpoint.to_string(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_id_generator(IncidentIdGenerator::default())
        .with_resource(resource.clone())
        .build();
    let tracer = tracer_provider.tracer(SCOPE);

    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| OtelError::Exporter {
            signal: "metrics",
            endpoint: endpoint.to_string(),
            source,
        })?;
    let meter_provider = SdkMeterProvider::builder()
        .with_periodic_exporter(metric_exporter)
        .with_resource(resource)
        .build();
    register_metrics(&meter_provider, stats);
    Ok((
        OtelGuard {
            tracer_provider,
            meter_provider,
        },
        tracer,
    ))
}

/// One OTLP instrument per metric family of [`metrics::families`], with the
/// same name, help, labels (as attributes) and values as `/metrics`: both are
/// encodings of one set of families, read from the same counters at
/// collection time. The stage-latency histogram is Prometheus-only (OTLP has
/// no asynchronous histogram; its buckets are already cumulative atomics).
fn register_metrics(mp: &SdkMeterProvider, stats: Arc<Stats>) {
    use metrics::{Kind, Value};
    use opentelemetry::metrics::MeterProvider as _;
    let meter = mp.meter(SCOPE);
    let observe = move |name: &'static str| {
        let s = stats.clone();
        move |emit: &mut dyn FnMut(f64, &[KeyValue])| {
            for f in metrics::families(&s, None) {
                if f.name != name {
                    continue;
                }
                for sample in &f.samples {
                    let attrs: Vec<KeyValue> = sample
                        .labels
                        .iter()
                        .map(|(k, v)| KeyValue::new(*k, *v))
                        .collect();
                    match &sample.value {
                        Value::Int(v) => emit(*v as f64, &attrs),
                        Value::Float(v) => emit(*v, &attrs),
                        Value::Histogram(_) => {}
                    }
                }
            }
        }
    };
    for f in metrics::families(&Stats::default(), None) {
        let read = observe(f.name);
        match f.kind {
            Kind::Counter => {
                let _ = meter
                    .u64_observable_counter(f.name)
                    .with_description(f.help)
                    .with_callback(move |obs| read(&mut |v, a| obs.observe(v as u64, a)))
                    .build();
            }
            Kind::Gauge => {
                let _ = meter
                    .f64_observable_gauge(f.name)
                    .with_description(f.help)
                    .with_callback(move |obs| read(&mut |v, a| obs.observe(v, a)))
                    .build();
            }
            Kind::Histogram => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_is_stable_and_distinct_per_incident() {
        assert_eq!(incident_trace_id("inc-1"), incident_trace_id("inc-1"));
        assert_ne!(incident_trace_id("inc-1"), incident_trace_id("inc-2"));
        assert_ne!(incident_trace_id("inc-1"), TraceId::INVALID);
    }
}
