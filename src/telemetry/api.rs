//! Hardening of the ops HTTP API: one error type with JSON bodies, bearer
//! token access and a per-client rate limit on the mutating routes.
//!
//! - [`ApiError`]: every refusal of the API, each kind with its status;
//!   the body is always `{"error": "<kind>", "message": "..."}` (`401`
//!   adds `WWW-Authenticate: Bearer`, `429` adds `Retry-After`).
//! - [`respond`]: the outermost layer. It counts every refusal
//!   (`reflex_api_requests_refused_total{reason}`: 401, 403, 413, 429, 408)
//!   and logs it (429 only at debug); then [`json_errors`] rewrites an
//!   error answer that is not JSON yet (the body limit's `413`, the
//!   timeout's `408`, axum's own rejections, an unknown route's `404`) into
//!   that shape, by its status.
//! - [`require_token`]: the bearer token check (constant-time,
//!   [`approvals::token_matches`](super::approvals::token_matches)): `403`
//!   when no token is configured at all, `401` when it is missing or wrong.
//! - [`ClientLimiter`] and [`rate_limit`]: a keyed GCRA limiter (`governor`)
//!   per peer IP address, burst `mutating_burst`, one more request every
//!   `mutating_refill`. At most [`MAX_CLIENTS`] addresses are tracked: when
//!   full, addresses whose bucket has refilled are forgotten, and new
//!   addresses beyond the bound share one bucket (so the table stays
//!   bounded and a flood of addresses cannot reset anyone's limit).
//!
//! The client is the TCP peer: behind a reverse proxy every request shares
//! the proxy's bucket (forwarded headers are not trusted).

use super::Telemetry;
use crate::config::telemetry::ApiConfig;
use crate::stage::stats::{ApiRefusal, Stats};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, StateStore};
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Client addresses the rate limiter tracks at most.
pub const MAX_CLIENTS: usize = 4096;

/// The key of clients beyond [`MAX_CLIENTS`] (and of requests without a
/// known peer): they share one bucket.
const SHARED_KEY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Longest error text copied from a foreign error answer into the JSON body.
const MAX_FOREIGN_MESSAGE: usize = 1024;

/// Every way the ops API refuses or fails a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed query or body.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The route is closed in this process (no token is configured).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The action was already decided.
    #[error("{0}")]
    Conflict(String),
    /// The action expired.
    #[error("{0}")]
    Gone(String),
    /// The body exceeds `telemetry.api.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client is over its rate limit; it may retry after this long.
    #[error("too many requests from this client: retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    /// The request did not complete within `telemetry.api.request_timeout`.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
    /// Nothing in this process can serve it now (not ready, no pipeline).
    #[error("{0}")]
    Unavailable(String),
    /// Any other error status (from a layer or extractor), kept as it was.
    #[error("{message}")]
    Other { status: StatusCode, message: String },
}

/// Whole seconds to wait, rounded up, at least 1.
fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl ApiError {
    /// The `error` field of the body.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Other { status, .. } if status.is_server_error() => "server_error",
            ApiError::Other { .. } => "client_error",
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Other { status, .. } => *status,
        }
    }

    /// The error an answer of `status` stands for, with `message`.
    pub fn from_status(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(message),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            StatusCode::NOT_FOUND => ApiError::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
            StatusCode::CONFLICT => ApiError::Conflict(message),
            StatusCode::GONE => ApiError::Gone(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout(message),
            StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal(message),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
            status => ApiError::Other { status, message },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.kind(), "message": self.to_string() });
        let mut resp = (self.status(), axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        match &self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"reflex\""),
                );
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ => {}
        }
        resp
    }
}

/// The outermost layer: counts and logs every refusal
/// (`reflex_api_requests_refused_total{reason}`), and turns an error
/// answer (4xx/5xx) that is not JSON yet into an [`ApiError`] body by its
/// status, its text as the message.
pub async fn respond(State(stats): State<Arc<Stats>>, req: Request, next: Next) -> Response {
    let client = client_of(&req);
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if let Some(reason) = refusal(status) {
        stats.api_refused.add(reason, 1);
        let client = client.map(|c| c.to_string()).unwrap_or_default();
        // One line per refusal; a client hammering past its limit is
        // counted, and logged only at debug.
        if reason == ApiRefusal::RateLimited {
            tracing::debug!(
                reason = reason.as_str(),
                status = status.as_u16(),
                client,
                path,
                "Request refused."
            );
        } else {
            tracing::warn!(
                reason = reason.as_str(),
                status = status.as_u16(),
                client,
                path,
                "Request refused."
            );
        }
    }
    json_errors(resp).await
}

/// The refusal an answer of `status` is, if any.
pub fn refusal(status: StatusCode) -> Option<ApiRefusal> {
    match status {
        StatusCode::UNAUTHORIZED => Some(ApiRefusal::Unauthorized),
        StatusCode::FORBIDDEN => Some(ApiRefusal::Forbidden),
        StatusCode::PAYLOAD_TOO_LARGE => Some(ApiRefusal::TooLarge),
        StatusCode::TOO_MANY_REQUESTS => Some(ApiRefusal::RateLimited),
        StatusCode::REQUEST_TIMEOUT => Some(ApiRefusal::Timeout),
        _ => None,
    }
}

/// An error answer (4xx/5xx) that is not JSON yet becomes an [`ApiError`]
/// body by its status, its text as the message.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_FOREIGN_MESSAGE * 4).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let mut message: String = text.chars().take(MAX_FOREIGN_MESSAGE).collect();
    if message.is_empty() {
        message = default_message(status);
    }
    let mut out = ApiError::from_status(status, message).into_response();
    // Keep what the layer said beyond the body (e.g. `Allow` on a 405).
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().entry(k).or_insert_with(|| v.clone());
        }
    }
    out
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::REQUEST_TIMEOUT => "the request did not complete in time".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        StatusCode::NOT_FOUND => "no such route".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_ascii_lowercase(),
    }
}

/// The bearer token of `headers` (`Authorization: Bearer <token>`, the
/// scheme case-insensitive), or empty.
pub fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .unwrap_or("")
}

/// Whether `headers` carry the configured token: `403` when none is
/// configured, `401` when it is missing or wrong.
pub fn authorize(t: &Telemetry, headers: &HeaderMap) -> Result<(), ApiError> {
    if !t.api_token_set() {
        return Err(ApiError::Forbidden(
            "this route is disabled: no API token is configured (REFLEX_API_TOKEN or telemetry.api_token_file)"
                .to_string(),
        ));
    }
    if t.api_token_ok(bearer(headers).as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The peer address of a request (`into_make_service_with_connect_info`).
fn client_of(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Middleware: the bearer token is required.
pub async fn require_token(State(t): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    // Logged and counted by [`respond`], like every refusal.
    match authorize(&t, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(error) => error.into_response(),
    }
}

/// Middleware: the per-client rate limit of the mutating routes.
pub async fn rate_limit(
    State(limiter): State<Arc<ClientLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    match limiter.check(client_of(&req)) {
        Ok(()) => next.run(req).await,
        Err(error) => error.into_response(),
    }
}

/// The client table, shared between the limiter and its bound check.
#[derive(Debug, Clone, Default)]
struct Clients(Arc<DashMap<IpAddr, InMemoryState>>);

impl StateStore for Clients {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for Clients {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Per-client (peer IP) rate limit, bounded to [`MAX_CLIENTS`] addresses.
#[derive(Debug)]
pub struct ClientLimiter {
    limiter: RateLimiter<IpAddr, Clients, DefaultClock>,
    clients: Clients,
    clock: DefaultClock,
    max_clients: usize,
}

impl ClientLimiter {
    /// A limiter with the burst and refill of `cfg`.
    pub fn new(cfg: &ApiConfig) -> Self {
        Self::with_max_clients(cfg, MAX_CLIENTS)
    }

    /// A limiter that tracks at most `max_clients` addresses.
    pub fn with_max_clients(cfg: &ApiConfig, max_clients: usize) -> Self {
        let refill =
            Duration::from_millis(u64::try_from(cfg.mutating_refill.0.max(1)).unwrap_or(1));
        let burst = NonZeroU32::new(cfg.mutating_burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, excluded above.
        let quota = Quota::with_period(refill)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clients = Clients::default();
        let clock = DefaultClock::default();
        ClientLimiter {
            limiter: RateLimiter::new(quota, clients.clone(), clock.clone()),
            clients,
            clock,
            max_clients: max_clients.max(1),
        }
    }

    /// Takes one request from `client`'s bucket (or the shared one).
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let key = self.key(client);
        self.limiter
            .check_key(&key)
            .map_err(|not_until| ApiError::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.0.len()
    }

    fn key(&self, client: Option<IpAddr>) -> IpAddr {
        let Some(ip) = client else {
            return SHARED_KEY;
        };
        if self.clients.0.contains_key(&ip) {
            return ip;
        }
        if self.clients.0.len() >= self.max_clients {
            self.limiter.retain_recent();
            if self.clients.0.len() >= self.max_clients {
                return SHARED_KEY;
            }
        }
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DurationMs;

    fn cfg(burst: u32) -> ApiConfig {
        ApiConfig {
            mutating_burst: burst,
            mutating_refill: DurationMs(3_600_000),
            ..ApiConfig::default()
        }
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    #[test]
    fn each_client_has_its_own_burst_and_is_told_when_to_retry() {
        let l = ClientLimiter::new(&cfg(2));
        assert!(l.check(ip(1)).is_ok());
        assert!(l.check(ip(1)).is_ok());
        let err = l.check(ip(1)).expect_err("over the burst");
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        let ApiError::RateLimited { retry_after } = err else {
            panic!("{err:?}")
        };
        assert!(retry_after > Duration::from_secs(3000), "{retry_after:?}");
        assert!(l.check(ip(2)).is_ok(), "another client is not affected");
    }

    #[test]
    fn the_client_table_is_bounded_and_overflow_shares_one_bucket() {
        let l = ClientLimiter::with_max_clients(&cfg(1), 3);
        for n in 1..=3 {
            assert!(l.check(ip(n)).is_ok());
        }
        assert_eq!(l.tracked(), 3);
        // Full with buckets still empty: newcomers share one bucket.
        assert!(l.check(ip(4)).is_ok(), "the shared bucket's first request");
        assert!(l.check(ip(5)).is_err(), "the shared bucket is empty now");
        assert_eq!(l.tracked(), 4, "three clients and the shared bucket");
        assert!(
            l.check(ip(1)).is_err(),
            "a known client keeps its own state"
        );
    }

    #[test]
    fn error_kinds_map_to_their_statuses_and_back() {
        let all = [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized,
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed("x".into()),
            ApiError::Conflict("x".into()),
            ApiError::Gone("x".into()),
            ApiError::PayloadTooLarge("x".into()),
            ApiError::Timeout("x".into()),
            ApiError::Internal("x".into()),
            ApiError::Unavailable("x".into()),
        ];
        for e in all {
            let back = ApiError::from_status(e.status(), "x".into());
            assert_eq!(back.kind(), e.kind());
        }
        let other = ApiError::from_status(StatusCode::IM_A_TEAPOT, "tea".into());
        assert_eq!(
            (other.kind(), other.status()),
            ("client_error", StatusCode::IM_A_TEAPOT)
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_no_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), "");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert_eq!(bearer(&h), "s3cret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert_eq!(bearer(&h), "");
    }
}
