//! The webhook executor: delivers each escalation (`reflex.escalations`) as
//! an HTTP POST with a JSON body to every configured URL, and reports an
//! `ActionResult` for it like the action executors do (`action_id` and
//! `idempotency_key` are the `escalation_id`).
//!
//! Body: by default
//! `{"type":"reflex.escalation","text":"<one line>","escalation":{...}}`
//! (the record as published); with `template`, each `{{field}}` is replaced
//! by that escalation field as a JSON value (`{{escalation}}`, `{{text}}` too),
//! and the result must be valid JSON.
//!
//! Headers: `Content-Type: application/json`, `Idempotency-Key:
//! <escalation_id>`, and, when a secret is set, `X-Reflex-Signature:
//! sha256=<hex HMAC-SHA256 of the exact body>`.
//!
//! Delivery: a small HTTP/1.1 client over a tokio `TcpStream` (plain
//! `http://` only; put a TLS-terminating proxy in front of `https`
//! endpoints for now). Each attempt is bounded by `timeout`; connection
//! errors, timeouts, 429 and 5xx are retried with exponential backoff up to
//! `max_attempts`; other 4xx fail at once. An escalation id already
//! delivered is `skipped_duplicate` (the ledger, as for actions).
//!
//! Approval requests (`webhook.approval_requests = true`): the executor also
//! reads `reflex.actions` and delivers each `approval_required` action as
//! `{"type":"reflex.approval_request","text":..,"action":{..}}`; its result
//! carries `approval-request:<action_id>` / `approval-request:<key>` so it
//! never reads as the action's own result. `auto` actions are left to the
//! action executors (no result). A `dry_run` action is never sent as an
//! approval request (nothing would be done if a human approved it): it is
//! reported `skipped_dry_run` under the approval-request ids.

use super::{Clock, Ledger};
use crate::model::{ActionResult, ActionStatus, Decision, Escalation, RecoveryAction};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Header carrying the body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Reflex-Signature";

// URLs are validated with the rest of `[executor]` (see `Selector`).
pub use super::config::HttpUrl;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("bad response: {0}")]
    BadResponse(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Status(s) => *s == 429 || *s >= 500,
            _ => true,
        }
    }
}

/// One HTTP/1.1 POST; returns the status code of a 2xx answer.
pub async fn post(
    url: &HttpUrl,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, DeliveryError> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| DeliveryError::Connect(e.to_string()))?;
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: reflex-executor\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            url.path,
            url.host,
            url.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let io = |e: std::io::Error| DeliveryError::Connect(e.to_string());
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        // Only the status line matters; read until it is complete.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 || buf.len() > 8192 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.lines().next().unwrap_or("");
        let code = line
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| DeliveryError::BadResponse(format!("status line {line:?}")))?;
        if (200..300).contains(&code) {
            Ok(code)
        } else {
            Err(DeliveryError::Status(code))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::Timeout(timeout)),
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut m) => {
            m.update(body);
            hex::encode(m.finalize().into_bytes())
        }
        // HMAC accepts keys of any length.
        Err(_) => String::new(),
    }
}

/// One line describing the escalation (the default body's `text`).
pub fn text(e: &Escalation) -> String {
    let team = e
        .team
        .as_deref()
        .map(|t| format!(" for team {t}"))
        .unwrap_or_default();
    format!(
        "[{:?}] incident {}{team}: {} ({})",
        e.severity, e.incident_id, e.summary, e.reason
    )
    .replace('\n', " ")
}

/// The request body for `e`: the default shape, or `template` rendered.
pub fn render(e: &Escalation, template: Option<&str>) -> Result<Vec<u8>, String> {
    let record = serde_json::to_value(e).map_err(|x| x.to_string())?;
    let Some(t) = template else {
        let body = serde_json::json!({
            "type": "reflex.escalation",
            "text": text(e),
            "escalation": record,
        });
        return serde_json::to_vec(&body).map_err(|x| x.to_string());
    };
    let mut out = String::with_capacity(t.len() + 256);
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let key = rest[start + 2..start + 2 + len].trim();
        let value = match key {
            "escalation" => record.clone(),
            "text" => serde_json::Value::String(text(e)),
            k => record
                .get(k)
                .cloned()
                .ok_or_else(|| format!("template field {{{{{k}}}}} is not an escalation field"))?,
        };
        out.push_str(&value.to_string());
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    serde_json::from_str::<serde_json::Value>(&out)
        .map_err(|x| format!("template does not render to JSON: {x}"))?;
    Ok(out.into_bytes())
}

/// Settings of the webhook executor.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub name: String,
    pub urls: Vec<HttpUrl>,
    pub template: Option<String>,
    pub secret: Option<Vec<u8>>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl WebhookSettings {
    /// From `[executor]` and the environment (`webhook.secret_env`).
    pub fn from_config(cfg: &super::ExecutorConfig) -> Result<Self, super::SetupError> {
        use super::SetupError::Config;
        let w = &cfg.webhook;
        let ms = |d: crate::model::DurationMs| Duration::from_millis(d.0.max(0) as u64);
        let urls = w
            .urls
            .iter()
            .map(|u| HttpUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Config)?;
        if let Some(t) = &w.template {
            render(&sample(), Some(t))
                .map_err(|e| Config(format!("executor.webhook.template: {e}")))?;
        }
        Ok(WebhookSettings {
            name: cfg.name.clone(),
            urls,
            template: w.template.clone(),
            secret: std::env::var(&w.secret_env)
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
            timeout: ms(w.timeout),
            max_attempts: w.max_attempts.max(1),
            backoff_initial: ms(w.backoff_initial),
            backoff_max: ms(w.backoff_max),
        })
    }
}

fn sample() -> Escalation {
    Escalation {
        escalation_id: "esc-sample".into(),
        incident_id: "inc-sample".into(),
        created_at: crate::model::EventTime(0),
        severity: crate::model::Severity::Error,
        reason: "sample".into(),
        team: Some("team".into()),
        summary: "sample".into(),
        suggested_actions: vec![],
    }
}

/// Delivers escalations (and, optionally, approval requests), each id at most once.
pub struct WebhookExecutor {
    pub settings: WebhookSettings,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
}

/// Prefix of the ids of approval-request deliveries (`action_id` and
/// `idempotency_key` of their results), so they are never mistaken for the
/// result of the action itself.
pub const APPROVAL_PREFIX: &str = "approval-request:";

impl WebhookExecutor {
    /// Delivers `e` to every URL and reports the outcome.
    pub async fn process(&mut self, e: &Escalation) -> ActionResult {
        let body = render(e, self.settings.template.as_deref());
        self.deliver(&e.escalation_id, &e.escalation_id, body).await
    }

    /// Delivers an `approval_required` action to every URL as an approval
    /// request (`{"type":"reflex.approval_request","text":..,"action":{..}}`);
    /// a `dry_run` action is refused (`skipped_dry_run`, nothing is sent);
    /// other actions are not for humans and give `None`.
    pub async fn process_approval(&mut self, a: &RecoveryAction) -> Option<ActionResult> {
        let id = format!("{APPROVAL_PREFIX}{}", a.action_id);
        let key = format!("{APPROVAL_PREFIX}{}", a.idempotency_key);
        match a.decision {
            Decision::ApprovalRequired => {}
            Decision::DryRun => {
                tracing::info!(action_id = %a.action_id, "Dry-run action: no approval request sent.");
                return Some(ActionResult {
                    action_id: id,
                    idempotency_key: key,
                    status: ActionStatus::SkippedDryRun,
                    detail: "dry run: decision is dry_run; no approval request was sent".into(),
                    finished_at: self.clock.now(),
                    executor: self.settings.name.clone(),
                });
            }
            Decision::Auto => return None,
        }
        let text = format!(
            "approval requested: {} {}/{} for incident {} (risk {:.2}): {}; approve key {}",
            a.action_type.as_str(),
            a.target.namespace.as_deref().unwrap_or("-"),
            a.target.name,
            a.incident_id,
            a.risk,
            a.reason,
            a.idempotency_key
        );
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "reflex.approval_request",
            "text": text,
            "action": a,
        }))
        .map_err(|x| x.to_string());
        Some(self.deliver(&id, &key, body).await)
    }

    async fn deliver(
        &mut self,
        id: &str,
        key: &str,
        body: Result<Vec<u8>, String>,
    ) -> ActionResult {
        let res = |status, detail: String, now| ActionResult {
            action_id: id.to_string(),
            idempotency_key: key.to_string(),
            status,
            detail,
            finished_at: now,
            executor: self.settings.name.clone(),
        };
        if self.ledger.contains(key) {
            tracing::info!(id, "duplicate delivery skipped");
            return res(
                ActionStatus::SkippedDuplicate,
                format!("{key} was already delivered"),
                self.clock.now(),
            );
        }
        let body = match body {
            Ok(b) => b,
            Err(x) => return res(ActionStatus::Failed, x, self.clock.now()),
        };
        let mut headers = vec![("Idempotency-Key", key.to_string())];
        if let Some(s) = &self.settings.secret {
            headers.push((SIGNATURE_HEADER, format!("sha256={}", hmac_hex(s, &body))));
        }
        let mut notes = Vec::new();
        let mut ok = true;
        for url in &self.settings.urls {
            let mut delay = self.settings.backoff_initial;
            let mut attempt = 1;
            loop {
                match post(url, &headers, &body, self.settings.timeout).await {
                    Ok(code) => {
                        notes.push(format!(
                            "http://{}:{}{} answered {code} after {attempt} attempt(s)",
                            url.host, url.port, url.path
                        ));
                        break;
                    }
                    Err(err) if err.retryable() && attempt < self.settings.max_attempts => {
                        tracing::warn!(id, url = %url.path, attempt, error = %err, "webhook attempt failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.settings.backoff_max);
                        attempt += 1;
                    }
                    Err(err) => {
                        ok = false;
                        notes.push(format!(
                            "http://{}:{}{} failed after {attempt} attempt(s): {err}",
                            url.host, url.port, url.path
                        ));
                        break;
                    }
                }
            }
        }
        if self.settings.urls.is_empty() {
            ok = false;
            notes.push("no webhook URLs configured".into());
        }
        let status = if ok {
            self.ledger.insert(key);
            ActionStatus::Succeeded
        } else {
            ActionStatus::Failed
        };
        tracing::info!(id, ?status, "webhook delivery processed");
        res(status, notes.join("; "), self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/hooks/a?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/hooks/a?x=1")
        );
        assert_eq!(HttpUrl::parse("http://pager").unwrap().path, "/");
        assert!(HttpUrl::parse("https://pager/x").is_err());
        assert!(HttpUrl::parse("http://a:b/").is_err());
        assert!(HttpUrl::parse("http://h/a b").is_err());
    }

    #[test]
    fn default_and_templated_bodies() {
        let e = sample();
        let v: serde_json::Value = serde_json::from_slice(&render(&e, None).unwrap()).unwrap();
        assert_eq!(v["type"], "reflex.escalation");
        assert_eq!(v["escalation"]["escalation_id"], "esc-sample");
        let t = r#"{"summary": {{summary}}, "team": {{ team }}, "all": {{escalation}}}"#;
        let v: serde_json::Value = serde_json::from_slice(&render(&e, Some(t)).unwrap()).unwrap();
        assert_eq!(v["summary"], "sample");
        assert_eq!(v["all"]["incident_id"], "inc-sample");
        // Values are JSON-encoded: quotes in data cannot break the document.
        let mut q = e.clone();
        q.summary = "a\"}, \"evil\": {\"x\": 1".into();
        let v: serde_json::Value = serde_json::from_slice(&render(&q, Some(t)).unwrap()).unwrap();
        assert_eq!(v["summary"], q.summary.as_str());
        assert!(render(&e, Some("{{nope}}")).is_err());
        assert!(render(&e, Some("{\"a\": {{summary}")).is_err());
    }
}
