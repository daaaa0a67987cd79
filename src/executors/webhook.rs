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
//! Delivery: the shared HTTP(S) client of [`crate::http`] (reqwest over
//! rustls; `https` certificates always verified, against `ca_file` when
//! configured). Each attempt is bounded by `timeout`; connection errors,
//! timeouts, refused certificates, 429 and 5xx are retried with
//! exponential backoff (`backoff_initial` doubling up to `backoff_max`) up
//! to `max_attempts`; other 4xx fail at once. A refused certificate is
//! reported as such in the result's `detail`. An escalation id already
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
use crate::http::{ClientOptions, HttpError, RetryPolicy};
use crate::model::{ActionResult, ActionStatus, Decision, Escalation, RecoveryAction};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying the body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Reflex-Signature";

// URLs are validated with the rest of `[executor]` (see `Selector`).
pub use super::config::HttpUrl;

/// One POST of a JSON `body`; returns the status code of a 2xx answer.
pub async fn post(
    client: &reqwest::Client,
    url: &HttpUrl,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, HttpError> {
    let mut req = client
        .post(url.url().clone())
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| HttpError::from_reqwest(&e, timeout))?;
    let code = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(code)
    } else {
        Err(HttpError::Status(code))
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
    /// Written into `ActionResult.executor`.
    pub name: String,
    /// Every escalation goes to each of these.
    pub urls: Vec<HttpUrl>,
    /// Body template (see the module header); `None` = the default shape.
    pub template: Option<String>,
    /// HMAC key of the `X-Reflex-Signature` header; `None` = no header.
    pub secret: Option<Vec<u8>>,
    /// Bound of one attempt.
    pub timeout: Duration,
    /// PEM CA bundle trusted for `https` URLs instead of the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// Attempts per URL and the backoff between them.
    pub retry: RetryPolicy,
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
            ca_file: w.ca_file.clone(),
            retry: RetryPolicy {
                max_attempts: w.max_attempts.max(1),
                min_delay: ms(w.backoff_initial),
                max_delay: ms(w.backoff_max),
            },
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
    client: reqwest::Client,
}

/// Prefix of the ids of approval-request deliveries (`action_id` and
/// `idempotency_key` of their results), so they are never mistaken for the
/// result of the action itself.
pub const APPROVAL_PREFIX: &str = "approval-request:";

impl WebhookExecutor {
    /// An executor for `settings`; fails when the HTTP client cannot be
    /// built (e.g. an unreadable or empty `ca_file`).
    pub fn new(
        settings: WebhookSettings,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, super::SetupError> {
        let client = crate::http::client(&ClientOptions {
            timeout: settings.timeout,
            ca_file: settings.ca_file.clone(),
            user_agent: "reflex-executor",
        })
        .map_err(|e| super::SetupError::Config(format!("executor.webhook: {e}")))?;
        Ok(WebhookExecutor {
            settings,
            ledger,
            clock,
            client,
        })
    }

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
            let (client, timeout) = (&self.client, self.settings.timeout);
            let done = self
                .settings
                .retry
                .run(
                    || post(client, url, &headers, &body, timeout),
                    HttpError::retryable,
                    |error, attempt, delay| {
                        tracing::warn!(id, %url, attempt, ?delay, %error, "Webhook attempt failed; retrying.");
                    },
                )
                .await;
            let attempts = done.attempts;
            match done.result {
                Ok(code) => {
                    notes.push(format!("{url} answered {code} after {attempts} attempt(s)"))
                }
                Err(error) => {
                    ok = false;
                    tracing::warn!(id, %url, attempts, %error, "Webhook delivery failed.");
                    notes.push(format!("{url} failed after {attempts} attempt(s): {error}"));
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
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/hooks/a?x=1");
        assert_eq!(HttpUrl::parse("http://pager").unwrap().url().path(), "/");
        assert_eq!(
            HttpUrl::parse("https://pager:8443/x").unwrap().url().port(),
            Some(8443)
        );
        assert!(HttpUrl::parse("ftp://pager/x").is_err());
        assert!(HttpUrl::parse("http://a:b/").is_err());
        assert!(HttpUrl::parse("https://user:pw@h/").is_err());
        assert!(HttpUrl::parse("not a url").is_err());
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
