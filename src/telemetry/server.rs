//! The ops HTTP server: one port, seven routes here and the board's four
//! ([`board`](super::board): `/`, `/board`, `/api/board`, `/api/report`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format 0.0.4 |
//! | `GET /health` | `200 ok` while the process runs (liveness) |
//! | `GET /ready` | `200 ready`, or `503` naming the unmet conditions ([`Readiness`](super::Readiness)) |
//! | `GET /api/incidents?status=&service=&limit=` | open and recently resolved incidents, latest state each, newest first, as `{"incidents": [...]}` |
//! | `GET /api/stream` | Server-Sent Events: `incident`, `action` and `escalation` records as they are written (and `result`, the executor results of an in-process loop such as `reflex demo`); first a `subscribed` event |
//! | `POST /api/actions/{id}/approve` | approves a pending `approval_required` action (emitted again as `auto`); body optional `{"by": "name"}` |
//! | `POST /api/actions/{id}/reject` | rejects it (recorded; feeds learning) |
//!
//! The two `POST` routes need `Authorization: Bearer <token>`
//! ([`approvals`](super::approvals)): `401` without a valid one, `403` when no
//! token is configured at all; then `200` done, `404` no such pending
//! action, `409` already decided, `410` expired, `503` no pipeline thread
//! takes approvals (or it did not answer within 10 s), `500` writing failed.
//!
//! Guarantees: handlers never block the pipeline (they read atomics and
//! take short locks); a slow stream subscriber cannot stall anything — after
//! [`STREAM_CAPACITY`](super::STREAM_CAPACITY) messages behind it skips
//! ahead and gets a `lagged` event with the number missed.

use super::store::IncidentFilter;
use super::Telemetry;
use crate::model::IncidentStatus;
use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
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
        .route("/api/actions/{id}/approve", post(approve))
        .route("/api/actions/{id}/reject", post(reject))
        .route("/", get(super::board::page))
        .route("/board", get(super::board::page))
        .route("/api/board", get(super::board::snapshot))
        .route("/api/report", get(super::board::report_route))
        .with_state(t)
}

/// Serves until the runtime shuts down.
pub async fn serve(listener: tokio::net::TcpListener, t: Arc<Telemetry>) {
    if let Err(e) = axum::serve(listener, router(t)).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> axum::response::Response {
    match t.render_metrics() {
        Ok(text) => ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
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

/// Body of an approval request (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// Who decided, for the record.
    pub by: Option<String>,
}

/// How long a request waits for the pipeline thread to answer.
const APPROVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn approve(
    State(t): State<Arc<Telemetry>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    decide(t, id, headers, body, true).await
}

async fn reject(
    State(t): State<Arc<Telemetry>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    decide(t, id, headers, body, false).await
}

async fn decide(
    t: Arc<Telemetry>,
    action_id: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
    approve: bool,
) -> (StatusCode, Json<serde_json::Value>) {
    use super::approvals::{ApprovalCommand, ApprovalOutcome};
    let answer = |code: StatusCode, msg: &str| {
        (
            code,
            Json(serde_json::json!({ "action_id": action_id, "error": msg })),
        )
    };
    if !t.api_token_set() {
        return answer(
            StatusCode::FORBIDDEN,
            "approvals are disabled: no API token is configured (REFLEX_API_TOKEN)",
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !t.api_token_ok(presented.trim().as_bytes()) {
        tracing::warn!(action_id, "Approval refused: bad or missing token.");
        return answer(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    let body: ApprovalBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApprovalBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("body: {e}")),
        }
    };
    let by: String = body
        .by
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let cmd = ApprovalCommand {
        action_id: action_id.clone(),
        approve,
        by: by.clone(),
        reply: tx,
    };
    if t.approvals.submit(cmd).is_err() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "no pipeline in this process takes approvals",
        );
    }
    let outcome = match tokio::time::timeout(APPROVAL_WAIT, rx).await {
        Ok(Ok(o)) => o,
        _ => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline did not answer in time",
            )
        }
    };
    let decision = if approve { "approved" } else { "rejected" };
    match outcome {
        ApprovalOutcome::Done => {
            tracing::info!(action_id, by, decision, "Action decision recorded.");
            (
                StatusCode::OK,
                Json(serde_json::json!({ "action_id": action_id, "decision": decision, "by": by })),
            )
        }
        ApprovalOutcome::NotFound => answer(
            StatusCode::NOT_FOUND,
            "no pending approval with that action id",
        ),
        ApprovalOutcome::AlreadyDecided => answer(
            StatusCode::CONFLICT,
            "the action was already approved or rejected",
        ),
        ApprovalOutcome::Expired => answer(StatusCode::GONE, "the action has expired"),
        ApprovalOutcome::Failed(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
