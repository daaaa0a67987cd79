//! Liveness and readiness of an executor process, served over HTTP for
//! Kubernetes probes (`--health-addr`).
//!
//! - `GET /readyz`: 200 once the ledger is rebuilt and the consumer
//!   subscribed, 503 before.
//! - `GET /healthz`: 200 while the consume loop has made progress (handled
//!   an input or waited on the broker) within `stall_after`, 503 when it is
//!   stuck longer than that — longer than any single action may take.
//!
//! The state is two atomics; the loop updates them, the server only reads.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared health state.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    ready: AtomicBool,
    /// Milliseconds after `started` of the loop's last progress.
    last_beat_ms: AtomicU64,
    stall_after: Duration,
}

impl Health {
    /// A not-yet-ready state; the loop counts as stuck after `stall_after`
    /// without progress.
    pub fn new(stall_after: Duration) -> Arc<Self> {
        Arc::new(Health {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            last_beat_ms: AtomicU64::new(0),
            stall_after,
        })
    }

    /// Marks the executor ready (ledger rebuilt, subscribed).
    pub fn set_ready(&self) {
        self.beat();
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Records progress of the loop.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether the loop is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Whether the loop made progress recently (always true before ready:
    /// start-up is bounded by the startup probe, not liveness).
    pub fn is_live(&self) -> bool {
        if !self.is_ready() {
            return true;
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_beat_ms.load(Ordering::SeqCst);
        Duration::from_millis(now.saturating_sub(last)) <= self.stall_after
    }

    /// The probe routes.
    pub fn router(self: &Arc<Self>) -> Router {
        let live = self.clone();
        let ready = self.clone();
        Router::new()
            .route(
                "/healthz",
                get(move || async move {
                    if live.is_live() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "consume loop stalled")
                    }
                }),
            )
            .route(
                "/readyz",
                get(move || async move {
                    if ready.is_ready() {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }),
            )
    }

    /// Serves the probe routes on `listener` until the runtime stops.
    pub fn spawn(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health server stopped");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_stall_detection() {
        let h = Health::new(Duration::from_millis(0));
        assert!(!h.is_ready() && h.is_live());
        h.set_ready();
        assert!(h.is_ready());
        // With a zero stall budget, liveness holds only within the same millisecond.
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.is_live() && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        assert!(!h.is_live());
        let h = Health::new(Duration::from_secs(3600));
        h.set_ready();
        assert!(h.is_live());
    }
}
