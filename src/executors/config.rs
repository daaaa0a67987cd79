//! The `[executor]` configuration: allow-lists, the signing key, timeouts,
//! runbooks and webhook targets.
//!
//! It lives in its own TOML file (`reflex executor ... --config FILE`), with
//! the same rules as `reflex.toml`: unknown keys are rejected, every field
//! has a default (one `impl Default` per section), and loading reports every
//! problem at once with its file and key (exit 2 at the CLI). The defaults
//! allow nothing to be targeted: an operator names the namespaces.
//!
//! The value types the file is validated into ([`Selector`], [`HttpUrl`])
//! live here too, so validation never reaches into an executor.

use super::runbook::RunbookConfig;
use crate::config::kafka::TopicName;
use crate::config::{ConfigError, ConfigIssue};
use crate::model::{ActionType, DurationMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole executor file: one `[executor]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorFile {
    /// The executor settings.
    pub executor: ExecutorConfig,
}

/// `[executor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Written into `ActionResult.executor`.
    pub name: String,
    /// Namespaces actions may target (`*` = all). Empty = none.
    pub allowed_namespaces: Vec<String>,
    /// Action types this executor carries out.
    pub allowed_types: Vec<ActionType>,
    /// Equality-based label selector (`k=v,k!=v,k`) a workload (and a pod for
    /// `delete_pod`) must match to be targeted; empty = any workload.
    pub workload_selector: String,
    /// Label selector a node must match to be drained; empty = any node.
    pub node_selector: String,
    /// File of approved idempotency keys (one per line, `#` comments), re-read
    /// whenever an `approval_required` action arrives. Without it such
    /// actions are rejected ("awaiting approval").
    pub approvals_file: Option<PathBuf>,
    /// File holding the HMAC key that signs actions (trailing newline
    /// ignored). `REFLEX_ACTION_KEY` in the environment takes precedence.
    /// With neither, signatures are not checked.
    pub key_file: Option<PathBuf>,
    /// Timeout of one Kubernetes API call.
    pub api_timeout: DurationMs,
    /// How long to wait for a rollout (restart, scale, rollback) to be ready.
    pub rollout_timeout: DurationMs,
    /// How long a drain may retry evictions blocked by PodDisruptionBudgets.
    pub drain_timeout: DurationMs,
    /// Poll interval while waiting for rollouts and evictions.
    pub poll_interval: DurationMs,
    /// Idempotency keys remembered (FIFO beyond this).
    pub ledger_capacity: usize,
    /// How far back `reflex.action-results` is read at start-up to rebuild the ledger.
    pub ledger_lookback: DurationMs,
    /// Kafka topics and group.
    pub kafka: ExecutorKafka,
    /// Allow-listed runbooks for `run_runbook` actions.
    pub runbooks: Vec<RunbookConfig>,
    /// `reflex executor webhook` settings.
    pub webhook: WebhookConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            name: "reflex-executor".into(),
            allowed_namespaces: Vec::new(),
            allowed_types: vec![
                ActionType::Restart,
                ActionType::Scale,
                ActionType::Rollback,
                ActionType::DeletePod,
            ],
            workload_selector: String::new(),
            node_selector: String::new(),
            key_file: None,
            approvals_file: None,
            api_timeout: DurationMs(10_000),
            rollout_timeout: DurationMs(300_000),
            drain_timeout: DurationMs(300_000),
            poll_interval: DurationMs(1_000),
            ledger_capacity: 100_000,
            ledger_lookback: DurationMs(7 * 24 * 3_600_000),
            kafka: ExecutorKafka::default(),
            runbooks: Vec::new(),
            webhook: WebhookConfig::default(),
        }
    }
}

/// `[executor.kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorKafka {
    /// Consumer group id (one group per executor kind).
    pub group_id: String,
    /// Input topic of `reflex executor kube`.
    pub actions_topic: String,
    /// Input topic of `reflex executor webhook`.
    pub escalations_topic: String,
    /// Where results are published (and read back at start-up).
    pub results_topic: String,
    /// Extra librdkafka properties (e.g. `"fetch.wait.max.ms" = "10"`).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for ExecutorKafka {
    fn default() -> Self {
        ExecutorKafka {
            group_id: String::new(),
            actions_topic: TopicName::Actions.logical().into(),
            escalations_topic: TopicName::Escalations.logical().into(),
            results_topic: TopicName::ActionResults.logical().into(),
            properties: Default::default(),
        }
    }
}

/// `[executor.webhook]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// `http://` or `https://` URLs, each receiving every escalation.
    /// `https` server certificates are always verified (against `ca_file`
    /// when set, else the platform's roots).
    pub urls: Vec<String>,
    /// PEM file of the CA certificates trusted for `https` URLs instead of
    /// the platform's roots (e.g. an internal CA). Unset = platform roots.
    pub ca_file: Option<PathBuf>,
    /// Body template; `{{field}}` is replaced by the escalation's field as a
    /// JSON value (`{{escalation}}` = the whole record). Absent = the
    /// documented default shape.
    pub template: Option<String>,
    /// Also read `actions_topic` and deliver `approval_required` actions as
    /// approval requests.
    pub approval_requests: bool,
    /// Environment variable holding the HMAC-SHA256 secret for the
    /// `X-Reflex-Signature: sha256=<hex>` header.
    pub secret_env: String,
    /// Timeout of one attempt (connect + TLS handshake + send + response).
    pub timeout: DurationMs,
    /// Attempts per URL before the escalation is reported `failed`; only
    /// connection errors, timeouts, refused certificates, 429 and 5xx are
    /// retried.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `backoff_max`.
    pub backoff_initial: DurationMs,
    /// Largest retry delay.
    pub backoff_max: DurationMs,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: Vec::new(),
            ca_file: None,
            template: None,
            approval_requests: false,
            secret_env: "REFLEX_WEBHOOK_SECRET".into(),
            timeout: DurationMs(5_000),
            max_attempts: 5,
            backoff_initial: DurationMs(200),
            backoff_max: DurationMs(10_000),
        }
    }
}

impl ExecutorConfig {
    /// Loads `path` (or the defaults when `None`), reporting every problem.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(ExecutorConfig::default());
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                file: file.clone(),
                key: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates the text of an executor file named `file`.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let issue = |key: String, message: String| ConfigIssue {
            file: file.to_string(),
            key,
            message,
        };
        let de = toml::Deserializer::new(text);
        let parsed: ExecutorFile = match serde_path_to_error::deserialize(de) {
            Ok(f) => f,
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." { String::new() } else { path };
                return Err(ConfigError {
                    issues: vec![issue(key, e.into_inner().message().to_string())],
                });
            }
        };
        let cfg = parsed.executor;
        let mut issues: Vec<ConfigIssue> = cfg
            .check()
            .into_iter()
            .map(|(k, m)| issue(format!("executor.{k}"), m))
            .collect();
        issues.sort_by(|a, b| a.key.cmp(&b.key));
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Semantic checks: `(key, message)` for every problem.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, sel) in [
            ("workload_selector", &self.workload_selector),
            ("node_selector", &self.node_selector),
        ] {
            if let Err(e) = Selector::parse(sel) {
                out.push((key.to_string(), e));
            }
        }
        for (key, d) in [
            ("api_timeout", self.api_timeout),
            ("rollout_timeout", self.rollout_timeout),
            ("drain_timeout", self.drain_timeout),
            ("poll_interval", self.poll_interval),
            ("webhook.timeout", self.webhook.timeout),
        ] {
            if d.0 <= 0 {
                out.push((key.to_string(), "must be positive".into()));
            }
        }
        if self.ledger_capacity == 0 {
            out.push(("ledger_capacity".into(), "must be at least 1".into()));
        }
        if self.webhook.max_attempts == 0 {
            out.push(("webhook.max_attempts".into(), "must be at least 1".into()));
        }
        if self.webhook.backoff_max.0 < self.webhook.backoff_initial.0 {
            out.push((
                "webhook.backoff_max".into(),
                "must not be below backoff_initial".into(),
            ));
        }
        if let Some(p) = &self.webhook.ca_file {
            if let Err(e) = std::fs::metadata(p) {
                out.push(("webhook.ca_file".into(), format!("{}: {e}", p.display())));
            }
        }
        for (i, u) in self.webhook.urls.iter().enumerate() {
            if let Err(e) = HttpUrl::parse(u) {
                out.push((format!("webhook.urls[{i}]"), e));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, rb) in self.runbooks.iter().enumerate() {
            if !names.insert(rb.name.as_str()) {
                out.push((
                    format!("runbooks[{i}].name"),
                    format!("duplicate runbook {:?}", rb.name),
                ));
            }
            for (k, m) in rb.check() {
                out.push((format!("runbooks[{i}].{k}"), m));
            }
        }
        out
    }

    /// The action signing key: `REFLEX_ACTION_KEY`, else `key_file`, else none.
    pub fn signing_key(&self) -> Result<Option<Vec<u8>>, super::SetupError> {
        use super::SetupError::Config;
        if let Ok(k) = std::env::var("REFLEX_ACTION_KEY") {
            if !k.is_empty() {
                return Ok(Some(k.into_bytes()));
            }
        }
        match &self.key_file {
            None => Ok(None),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Config(format!("executor.key_file {}: {e}", p.display())))?;
                let key = text.trim_end_matches(['\n', '\r']);
                if key.is_empty() {
                    return Err(Config(format!(
                        "executor.key_file {} is empty",
                        p.display()
                    )));
                }
                Ok(Some(key.as_bytes().to_vec()))
            }
        }
    }

    /// The gate this configuration describes.
    pub fn gate(&self, key: Option<Vec<u8>>) -> super::Gate {
        super::Gate {
            key,
            namespaces: self.allowed_namespaces.clone(),
            types: self.allowed_types.clone(),
            approved: Default::default(),
            approvals_file: self.approvals_file.clone(),
        }
    }
}

/// An equality-based label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated (all must hold). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl Selector {
    /// Parses a selector; `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let valid = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            };
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = raw.strip_prefix('!') {
                Term::Absent(k.trim().into())
            } else {
                Term::Exists(raw.into())
            };
            let ok = match &term {
                Term::Eq(k, v) | Term::Ne(k, v) => valid(k) && (v.is_empty() || valid(v)),
                Term::Exists(k) | Term::Absent(k) => valid(k),
            };
            if !ok {
                return Err(format!("invalid label selector term {raw:?}"));
            }
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.terms.iter().all(|t| match t {
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::Ne(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }
}

/// A validated `http://` or `https://` URL (no credentials in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(reqwest::Url);

impl HttpUrl {
    /// Parses an HTTP(S) URL; `Err` says why it is not usable.
    pub fn parse(url: &str) -> Result<Self, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "{url:?}: only http:// and https:// URLs are supported"
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("{url:?}: bad host"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "{url:?}: credentials do not belong in the URL (use secret_env)"
            ));
        }
        Ok(HttpUrl(u))
    }

    /// The URL requests go to.
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file_parse() {
        let cfg = ExecutorConfig::parse("", "x.toml").unwrap();
        assert_eq!(cfg, ExecutorConfig::default());
        let text = r#"
[executor]
name = "kube-prod"
allowed_namespaces = ["shop"]
allowed_types = ["restart", "scale", "run_runbook"]
workload_selector = "reflex.io/managed=true"
rollout_timeout = "2m"

[executor.webhook]
urls = ["http://127.0.0.1:9000/hook"]
max_attempts = 3

[[executor.runbooks]]
name = "flush-cache"
command = "/usr/local/bin/flush-cache"
args = ["--service", "{service}", "--cache", "{cache}", "--ttl", "{ttl}"]
timeout = "30s"
[executor.runbooks.params.cache]
type = "enum"
values = ["sessions", "catalog"]
[executor.runbooks.params.ttl]
type = "int"
min = 1
max = 3600
"#;
        let cfg = ExecutorConfig::parse(text, "x.toml").unwrap();
        assert_eq!(cfg.rollout_timeout, DurationMs(120_000));
        assert_eq!(cfg.runbooks.len(), 1);
        assert_eq!(cfg.webhook.max_attempts, 3);
    }

    #[test]
    fn the_example_file_is_valid() {
        let cfg =
            ExecutorConfig::parse(include_str!("../../deploy/executor.toml"), "executor.toml")
                .unwrap();
        assert_eq!(cfg.runbooks[0].name, "flush-cache");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[executor]
workload_selector = "a=b=c"
poll_interval = 0
[executor.webhook]
urls = ["ftp://example.com/x"]
max_attempts = 0
"#;
        let e = ExecutorConfig::parse(text, "x.toml").unwrap_err();
        let keys: Vec<&str> = e.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "executor.poll_interval",
                "executor.webhook.max_attempts",
                "executor.webhook.urls[0]",
                "executor.workload_selector"
            ]
        );
        let e = ExecutorConfig::parse(
            "[executor.webhook]\nurls = [\"https://pager.example.com/x\"]\nca_file = \"/nonexistent/ca.pem\"\n",
            "x.toml",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["executor.webhook.ca_file"],
            "https URLs are accepted"
        );
        let e = ExecutorConfig::parse("[executor]\nbogus = 1\n", "x.toml").unwrap_err();
        assert_eq!(e.issues[0].key, "executor.bogus");
        assert!(e.issues[0].message.contains("bogus"));
    }
}
