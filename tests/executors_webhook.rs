//! The webhook executor against a local HTTP server that fails the first
//! attempts: the escalation arrives once, with a valid HMAC header, and the
//! result says how many attempts it took.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use reflex::executors::webhook::{hmac_hex, HttpUrl, WebhookExecutor, WebhookSettings};
use reflex::executors::{Ledger, ManualClock};
use reflex::http::RetryPolicy;
use reflex::model::{ActionStatus, Escalation, EventTime, Severity};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Hook {
    attempts: usize,
    fail_first: usize,
    fail_status: u16,
    accepted: Vec<(HeaderMap, Bytes)>,
}

async fn server(fail_first: usize, fail_status: u16) -> (String, Arc<Mutex<Hook>>) {
    let state = Arc::new(Mutex::new(Hook {
        fail_first,
        fail_status,
        ..Default::default()
    }));
    let s = state.clone();
    let app = Router::new().route(
        "/hooks/{team}",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let mut h = s.lock().unwrap();
                h.attempts += 1;
                if h.attempts <= h.fail_first {
                    return StatusCode::from_u16(h.fail_status).unwrap();
                }
                h.accepted.push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks/payments"), state)
}

fn executor(url: &str, attempts: u32) -> WebhookExecutor {
    WebhookExecutor::new(
        WebhookSettings {
            name: "webhook-test".into(),
            urls: vec![HttpUrl::parse(url).unwrap()],
            template: None,
            secret: Some(b"hook-secret".to_vec()),
            timeout: Duration::from_secs(2),
            ca_file: None,
            retry: RetryPolicy {
                max_attempts: attempts,
                min_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
        },
        Ledger::new(100),
        Arc::new(ManualClock::at(EventTime(1_795_000_000_000))),
    )
    .unwrap()
}

fn escalation() -> Escalation {
    Escalation {
        escalation_id: "esc-1".into(),
        incident_id: "inc-1".into(),
        created_at: EventTime(1_795_000_000_000),
        severity: Severity::Critical,
        reason: "certificate_expired: rotation is manual".into(),
        team: Some("payments".into()),
        summary: "payments TLS certificate expired".into(),
        suggested_actions: vec!["rotate the certificate".into()],
    }
}

#[tokio::test]
async fn retries_until_delivered_once_with_a_valid_hmac() {
    let (url, hook) = server(2, 503).await;
    let mut ex = executor(&url, 5);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert!(
        res.detail.contains("answered 204 after 3 attempt(s)"),
        "{}",
        res.detail
    );
    assert_eq!(res.action_id, "esc-1");
    assert_eq!(res.idempotency_key, "esc-1");

    // Delivered again (a redelivered Kafka record): skipped, not re-sent.
    let again = ex.process(&escalation()).await;
    assert_eq!(again.status, ActionStatus::SkippedDuplicate);

    let h = hook.lock().unwrap();
    assert_eq!(h.attempts, 3);
    assert_eq!(h.accepted.len(), 1, "the escalation arrives once");
    let (headers, body) = &h.accepted[0];
    let sig = headers["x-reflex-signature"].to_str().unwrap();
    assert_eq!(sig, format!("sha256={}", hmac_hex(b"hook-secret", body)));
    assert_ne!(sig, format!("sha256={}", hmac_hex(b"wrong", body)));
    assert_eq!(headers["idempotency-key"], "esc-1");
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["type"], "reflex.escalation");
    assert_eq!(v["escalation"]["escalation_id"], "esc-1");
    assert_eq!(v["escalation"]["team"], "payments");
}

#[tokio::test]
async fn a_template_shapes_the_body() {
    let (url, hook) = server(0, 500).await;
    let mut ex = executor(&url, 1);
    ex.settings.template = Some(r#"{"text": {{text}}, "severity": {{severity}}}"#.into());
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    let h = hook.lock().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&h.accepted[0].1).unwrap();
    assert_eq!(v["severity"], "critical");
    assert!(v["text"]
        .as_str()
        .unwrap()
        .contains("payments TLS certificate expired"));
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_does_not_retry_client_errors() {
    let (url, hook) = server(usize::MAX, 503).await;
    let mut ex = executor(&url, 3);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail.contains("failed after 3 attempt(s): HTTP 503"),
        "{}",
        res.detail
    );
    assert_eq!(hook.lock().unwrap().attempts, 3);
    // Not recorded: a later redelivery tries again.
    assert!(!ex.ledger.contains("esc-1"));

    let (url, hook) = server(usize::MAX, 400).await;
    let mut ex = executor(&url, 5);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail.contains("failed after 1 attempt(s): HTTP 400"),
        "{}",
        res.detail
    );
    assert_eq!(hook.lock().unwrap().attempts, 1);

    // Nobody listening: connection errors are retried, then fail.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut ex = executor(&format!("http://127.0.0.1:{port}/x"), 2);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail
            .contains("failed after 2 attempt(s): connection failed"),
        "{}",
        res.detail
    );

    // A server that accepts connections and never answers: each attempt
    // times out, and timeouts are retried.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let mut ex = executor(&format!("http://{addr}/x"), 2);
    ex.settings.timeout = Duration::from_millis(100);
    let mut ex = WebhookExecutor::new(ex.settings, Ledger::new(10), ex.clock).unwrap();
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail
            .contains("failed after 2 attempt(s): no response within 100ms"),
        "{}",
        res.detail
    );
    drop(silent);
}

#[tokio::test]
async fn approval_requests_are_delivered_and_auto_actions_ignored() {
    use reflex::model::{ActionParams, ActionType, Decision, RecoveryAction, Target};
    let (url, hook) = server(0, 500).await;
    let mut ex = executor(&url, 1);
    let mut a = RecoveryAction {
        action_id: "act-7".into(),
        incident_id: "inc-7".into(),
        created_at: EventTime(1_795_000_000_000),
        action_type: ActionType::Rollback,
        target: Target {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "checkout".into(),
        },
        params: ActionParams::default(),
        risk: 0.8,
        decision: Decision::Auto,
        idempotency_key: "idem-7".into(),
        reason: "bad_deploy".into(),
        expires_at: EventTime(1_795_000_600_000),
        signature: None,
    };
    assert!(ex.process_approval(&a).await.is_none());
    a.decision = Decision::ApprovalRequired;
    let res = ex.process_approval(&a).await.unwrap();
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert_eq!(res.action_id, "approval-request:act-7");
    assert_eq!(res.idempotency_key, "approval-request:idem-7");
    let dup = ex.process_approval(&a).await.unwrap();
    assert_eq!(dup.status, ActionStatus::SkippedDuplicate);
    {
        let h = hook.lock().unwrap();
        assert_eq!(h.accepted.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&h.accepted[0].1).unwrap();
        assert_eq!(v["type"], "reflex.approval_request");
        assert_eq!(v["action"]["idempotency_key"], "idem-7");
        assert!(v["text"].as_str().unwrap().contains("approve key idem-7"));
    }
    // A dry run is never offered for approval: refused, reported, not sent.
    a.decision = Decision::DryRun;
    a.idempotency_key = "idem-8".into();
    let dry = ex.process_approval(&a).await.unwrap();
    assert_eq!(dry.status, ActionStatus::SkippedDryRun, "{}", dry.detail);
    assert_eq!(dry.idempotency_key, "approval-request:idem-8");
    assert_eq!(hook.lock().unwrap().accepted.len(), 1, "nothing was sent");
}
