//! The ops HTTP server: one port, seven routes here and the board's four
//! ([`board`](super::board): `/`, `/board`, `/api/board`, `/api/report`).
//!
//! | route | access | answer |
//! |---|---|---|
//! | `GET /metrics` | open | every metric, Prometheus text format 0.0.4 |
//! | `GET /health` | open | `200 ok` while the process runs (liveness) |
//! | `GET /ready` | open | `200 ready`, or `503` naming the unmet conditions ([`Readiness`](super::Readiness)) |
//! | `GET /api/incidents?status=&service=&limit=` | read | open and recently resolved incidents, latest state each, newest first, as `{"incidents": [...]}` |
//! | `GET /api/stream` | read | Server-Sent Events: `incident`, `action` and `escalation` records as they are written (and `result`, the executor results of an in-process loop such as `reflex demo`); first a `subscribed` event |
//! | `POST /api/actions/{id}/approve` | token, rate-limited | approves a pending `approval_required` action (emitted again as `auto`); body optional `{"by": "name"}` |
//! | `POST /api/actions/{id}/reject` | token, rate-limited | rejects it (recorded; feeds learning) |
//!
//! Access ([`api`](super::api), limits from `[telemetry.api]`):
//! - *open*: always answered (probes, scrapers); so are the board pages.
//! - *read*: open, or token-protected with `protect_read_only = true`
//!   (`/api/board` and `/api/report` too).
//! - *token*: `Authorization: Bearer <token>` ([`approvals`](super::approvals)):
//!   `401` (with `WWW-Authenticate: Bearer`) without a valid one, `403` when
//!   no token is configured at all.
//! - *rate-limited*: per client address, `mutating_burst` requests then one
//!   every `mutating_refill`; beyond it `429` with `Retry-After` (checked
//!   before the token, so guessing tokens is slow too).
//!
//! Every route: a body over `max_body_bytes` is `413`; a request not done
//! within `request_timeout` is `408` (and a connection that does not send
//! its request headers within it is closed: [`serve`]). Every error answer, whatever refused
//! it, is JSON `{"error": "<kind>", "message": "..."}` ([`ApiError`]).
//! The decision routes then answer `200` done, `400` bad body, `404` no such
//! pending action, `409` already decided, `410` expired, `503` no pipeline
//! thread takes approvals (or it did not answer within 10 s), `500` writing
//! failed.
//!
//! Guarantees: handlers never block the pipeline (they read atomics and
//! take short locks); a slow stream subscriber cannot stall anything — after
//! [`STREAM_CAPACITY`](super::STREAM_CAPACITY) messages behind it skips
//! ahead and gets a `lagged` event with the number missed.

use super::api::{self, ApiError, ClientLimiter};
use super::store::IncidentFilter;
use super::Telemetry;
use crate::model::IncidentStatus;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

/// The router over a telemetry hub, with the limits and access of its
/// `[telemetry.api]` ([`Telemetry::api`]).
pub fn router(t: Arc<Telemetry>) -> Router {
    let cfg = t.api.clone();
    let limiter = Arc::new(ClientLimiter::new(&cfg));
    // `route_layer`s run outside in: the rate limit first, then the token.
    let mutating = Router::new()
        .route("/api/actions/{id}/approve", post(approve))
        .route("/api/actions/{id}/reject", post(reject))
        .route_layer(from_fn_with_state(t.clone(), api::require_token))
        .route_layer(from_fn_with_state(limiter, api::rate_limit));
    let mut read = Router::new()
        .route("/api/incidents", get(incidents))
        .route("/api/stream", get(stream))
        .route("/api/board", get(super::board::snapshot))
        .route("/api/report", get(super::board::report_route));
    if cfg.protect_read_only {
        read = read.route_layer(from_fn_with_state(t.clone(), api::require_token));
    }
    let timeout = Duration::from_millis(u64::try_from(cfg.request_timeout.0).unwrap_or(0));
    let stats = t.stats.clone();
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/", get(super::board::page))
        .route("/board", get(super::board::page))
        .merge(read)
        .merge(mutating)
        .with_state(t)
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            cfg.max_body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(from_fn_with_state(stats, api::respond))
}

/// Connections served at once; further ones wait to be accepted.
pub const MAX_CONNECTIONS: usize = 512;

/// Serves until the runtime shuts down: HTTP/1.1, each request knowing its
/// client's address (for the rate limit), at most [`MAX_CONNECTIONS`] at
/// once, and a connection that does not finish sending its request headers
/// (or idles between requests) for `request_timeout` is closed, so slow or
/// idle clients cannot pile up.
pub async fn serve(listener: tokio::net::TcpListener, t: Arc<Telemetry>) {
    let header_timeout = Duration::from_millis(u64::try_from(t.api.request_timeout.0).unwrap_or(0));
    let app = router(t);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                },
            );
            let mut conn = hyper::server::conn::http1::Builder::new();
            conn.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = conn.serve_connection(io, svc).await {
                tracing::debug!(%error, client = %peer.ip(), "HTTP connection ended.");
            }
        });
    }
}

/// Like axum's own loop: a failed handshake is the client's problem; any
/// other error (e.g. out of file descriptors) pauses accepting for a second.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "Accepting an HTTP connection failed; retrying in 1 s.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> axum::response::Response {
    match t.render_metrics() {
        Ok(text) => ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics");
            ApiError::Internal("encoding metrics failed".to_string()).into_response()
        }
    }
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(t): State<Arc<Telemetry>>) -> Result<&'static str, ApiError> {
    if t.readiness.is_ready() {
        Ok("ready\n")
    } else {
        Err(ApiError::Unavailable(format!(
            "not ready: waiting for {}",
            t.readiness.missing().join(", ")
        )))
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
    q: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some("open") => Some(IncidentStatus::Open),
        Some("updated") => Some(IncidentStatus::Updated),
        Some("resolved") => Some(IncidentStatus::Resolved),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status {other:?}: expected open, updated or resolved"
            )))
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

/// How long a request waits for the pipeline thread to answer (at most;
/// never beyond the request timeout).
const APPROVAL_WAIT: Duration = Duration::from_secs(10);

async fn approve(
    State(t): State<Arc<Telemetry>>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide(t, id, body, true).await
}

async fn reject(
    State(t): State<Arc<Telemetry>>,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide(t, id, body, false).await
}

/// Approves or rejects; the token and the rate limit were checked by the
/// route's layers.
async fn decide(
    t: Arc<Telemetry>,
    action_id: String,
    body: Result<axum::body::Bytes, BytesRejection>,
    approve: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    use super::approvals::{ApprovalCommand, ApprovalOutcome};
    // Over the body limit: 413 (the status axum gives the rejection).
    let body = body.map_err(|e| ApiError::from_status(e.status(), e.body_text()))?;
    let body: ApprovalBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApprovalBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
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
        return Err(ApiError::Unavailable(
            "no pipeline in this process takes approvals".to_string(),
        ));
    }
    let wait = APPROVAL_WAIT.min(Duration::from_millis(
        u64::try_from(t.api.request_timeout.0).unwrap_or(0) * 9 / 10,
    ));
    let outcome = match tokio::time::timeout(wait, rx).await {
        Ok(Ok(o)) => o,
        _ => {
            return Err(ApiError::Unavailable(
                "the pipeline did not answer in time".to_string(),
            ))
        }
    };
    let decision = if approve { "approved" } else { "rejected" };
    match outcome {
        ApprovalOutcome::Done => {
            tracing::info!(action_id, by, decision, "Action decision recorded.");
            Ok(Json(
                serde_json::json!({ "action_id": action_id, "decision": decision, "by": by }),
            ))
        }
        ApprovalOutcome::NotFound => Err(ApiError::NotFound(format!(
            "no pending approval with action id {action_id:?}"
        ))),
        ApprovalOutcome::AlreadyDecided => Err(ApiError::Conflict(format!(
            "action {action_id:?} was already approved or rejected"
        ))),
        ApprovalOutcome::Expired => {
            Err(ApiError::Gone(format!("action {action_id:?} has expired")))
        }
        ApprovalOutcome::Failed(e) => Err(ApiError::Internal(e)),
    }
}
