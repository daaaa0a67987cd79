//! `reflex executor kube|webhook`: consumes actions or escalations from
//! Kafka, carries them out and publishes ActionResults, until SIGTERM.
//!
//! Guarantees: bad executor configuration (every problem with file and
//! key), an unusable `--health-addr`, signing key or Kubernetes
//! configuration are usage errors (exit 2) before anything is consumed; a
//! failing consume loop is a runtime failure (exit 1).

use crate::error::{CliError, Kind};
use crate::executors::kafka_loop::{self, KafkaSettings};
use crate::executors::{ExecutorConfig, Ledger, SetupError, SystemClock};
use crate::shutdown::Shutdown;
use crate::telemetry::config::LogFormat;
use crate::telemetry::logging;
use std::path::PathBuf;
use std::sync::Arc;

/// Which executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Acts through the Kubernetes API; `dry_run` only logs and reports.
    Kube { dry_run: bool },
    /// POSTs escalations (and approval requests) to webhooks.
    Webhook,
}

pub struct ExecutorArgs {
    pub kind: ExecutorKind,
    pub brokers: String,
    pub config: Option<PathBuf>,
    pub group_id: Option<String>,
    pub health_addr: Option<std::net::SocketAddr>,
}

pub fn run(a: ExecutorArgs) -> Result<(), CliError> {
    let format = std::env::var("REFLEX_LOG_FORMAT")
        .ok()
        .as_deref()
        .and_then(LogFormat::parse)
        .unwrap_or(LogFormat::Pretty);
    let _ = logging::init(format, logging::DEFAULT_FILTER);
    let cfg = ExecutorConfig::load(a.config.as_deref())
        .map_err(|e| CliError::usage_report(e.to_string()))?;
    let kind_name = match a.kind {
        ExecutorKind::Kube { .. } => "kube",
        ExecutorKind::Webhook => "webhook",
    };
    let mut settings = settings(&a, &cfg, kind_name);
    // The loop may legitimately block for one action's full wait.
    let stall_ms = cfg.rollout_timeout.0.max(cfg.drain_timeout.0).max(0) as u64
        + (cfg.webhook.timeout.0.max(0) as u64 + cfg.webhook.backoff_max.0.max(0) as u64)
            * u64::from(cfg.webhook.max_attempts)
            * cfg.webhook.urls.len().max(1) as u64
        + 120_000;
    // One action may block the loop that long: the group must not evict the
    // consumer meanwhile (librdkafka's default is 5 minutes).
    settings
        .properties
        .entry("max.poll.interval.ms".into())
        .or_insert_with(|| stall_ms.clamp(300_000, i32::MAX as u64).to_string());
    let since = chrono::Utc::now().timestamp_millis() - cfg.ledger_lookback.0;
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::with_context(Kind::Internal, "starting the tokio runtime", &e))?;
    let handled = rt.block_on(async {
        if let Some(addr) = a.health_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| setup(SetupError::Config(format!("--health-addr {addr}: {e}"))))?;
            let health =
                crate::executors::health::Health::new(std::time::Duration::from_millis(stall_ms));
            health.spawn(listener);
            settings.health = Some(health);
        }
        let shutdown = Shutdown::on_signals()
            .map_err(|e| CliError::from_error(Kind::Internal, &e))?
            .wait();
        let looped = match a.kind {
            ExecutorKind::Kube { dry_run } => {
                let key = cfg.signing_key().map_err(setup)?;
                let kube_settings =
                    crate::executors::kube::KubeSettings::from_config(&cfg).map_err(setup)?;
                let client = crate::executors::kube::infer_client()
                    .await
                    .map_err(setup)?;
                let clock = Arc::new(SystemClock);
                let runbooks = crate::executors::runbook::Runbooks {
                    books: cfg.runbooks.clone(),
                };
                let mut runner = crate::executors::Runner {
                    gate: cfg.gate(key),
                    ledger: Ledger::new(cfg.ledger_capacity),
                    executor: crate::executors::kube::KubeExecutor::new(
                        client,
                        kube_settings,
                        clock.clone(),
                        runbooks,
                    ),
                    clock,
                    dry_run,
                };
                kafka_loop::run(&settings, &mut runner, since, shutdown).await
            }
            ExecutorKind::Webhook => {
                let ws =
                    crate::executors::webhook::WebhookSettings::from_config(&cfg).map_err(setup)?;
                let mut ex = crate::executors::webhook::WebhookExecutor::new(
                    ws,
                    Ledger::new(cfg.ledger_capacity),
                    Arc::new(SystemClock),
                )
                .map_err(setup)?;
                kafka_loop::run(&settings, &mut ex, since, shutdown).await
            }
        };
        looped.map_err(|e| CliError::from_error(Kind::External, &e))
    })?;
    eprintln!("reflex executor {kind_name}: {handled} input(s) handled");
    Ok(())
}

/// Both setup kinds (configuration, Kubernetes configuration) are usage errors.
fn setup(e: SetupError) -> CliError {
    CliError::usage(e.to_string())
}

fn settings(a: &ExecutorArgs, cfg: &ExecutorConfig, kind_name: &str) -> KafkaSettings {
    let kube = matches!(a.kind, ExecutorKind::Kube { .. });
    KafkaSettings {
        brokers: a.brokers.clone(),
        group_id: a
            .group_id
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| {
                if cfg.kafka.group_id.is_empty() {
                    format!("reflex-executor-{kind_name}")
                } else {
                    cfg.kafka.group_id.clone()
                }
            }),
        input_topics: if kube {
            vec![cfg.kafka.actions_topic.clone()]
        } else if cfg.webhook.approval_requests {
            vec![
                cfg.kafka.escalations_topic.clone(),
                cfg.kafka.actions_topic.clone(),
            ]
        } else {
            vec![cfg.kafka.escalations_topic.clone()]
        },
        results_topic: cfg.kafka.results_topic.clone(),
        properties: cfg.kafka.properties.clone(),
        health: None,
    }
}
