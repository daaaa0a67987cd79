//! The ops HTTP server: one port, five routes.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format 0.0.4 |
//! | `GET /health` | `200 ok` while the process runs (liveness) |
//! | `GET /ready` | `200 ready`, or `503` naming the unmet conditions ([`Readiness`](super::Readiness)) |
//! | `GET /api/incidents?status=&service=&limit=` | open and recently resolved incidents, latest state each, newest first, as `{"incidents": [...]}` |
//! | `GET /api/stream` | Server-Sent Events: `incident`, `action` and `escalation` records as they are written; first a `subscribed` event |
//!
//! Guarantees: handlers never block the pipeline (they read atomics and
//! take short locks); a slow stream subscriber cannot stall anything — after
//! [`STREAM_CAPACITY`](super::STREAM_CAPACITY) messages behind it skips
//! ahead and gets a `lagged` event with the number missed.
//! Action results are not on the stream yet (verification does not exist
//! yet).

use super::store::IncidentFilter;
use super::Telemetry;
use crate::model::IncidentStatus;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

/// The router over a telemetry hub.
pub fn router(t: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/incidents", get(incidents))
        .route("/api/stream", get(stream))
        .with_state(t)
}

/// Serves until the runtime shuts down.
pub async fn serve(listener: tokio::net::TcpListener, t: Arc<Telemetry>) {
    if let Err(e) = axum::serve(listener, router(t)).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        t.render_metrics(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(t): State<Arc<Telemetry>>) -> (StatusCode, String) {
    if t.readiness.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: waiting for {}\n",
                t.readiness.missing().join(", ")
            ),
        )
    }
}

/// Query of `/api/incidents`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// `open`, `updated` or `resolved`.
    pub status: Option<String>,
    /// Root cause or affected service.
    pub service: Option<String>,
    pub limit: Option<usize>,
}

async fn incidents(
    State(t): State<Arc<Telemetry>>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some("open") => Some(IncidentStatus::Open),
        Some("updated") => Some(IncidentStatus::Updated),
        Some("resolved") => Some(IncidentStatus::Resolved),
        Some(other) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("status {other:?}: expected open, updated or resolved\n"),
            ))
        }
    };
    let f = IncidentFilter {
        status,
        service: q.service.filter(|s| !s.is_empty()),
        limit: q.limit,
    };
    Ok(Json(serde_json::json!({ "incidents": t.incidents(&f) })))
}

async fn stream(
    State(t): State<Arc<Telemetry>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before answering: everything written after the response
    // headers is delivered.
    let rx = t.subscribe();
    let first = tokio_stream::once(Ok::<_, Infallible>(
        Event::default().event("subscribed").data("{}"),
    ));
    let live = BroadcastStream::new(rx).map(|m| {
        Ok::<_, Infallible>(match m {
            Ok(ev) => Event::default().event(ev.kind).data(&*ev.data),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
        })
    });
    Sse::new(first.chain(live)).keep_alive(KeepAlive::default())
}
