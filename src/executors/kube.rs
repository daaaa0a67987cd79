//! The Kubernetes executor: carries out `restart`, `scale`, `rollback`,
//! `delete_pod`, `drain_node` (and `run_runbook` through [`Runbooks`])
//! through kube-rs, and reports what it saw.
//!
//! What each action does, exactly (the fake-API tests assert these calls):
//! - `restart`: GET the Deployment, PATCH (strategic merge) its pod
//!   template's `kubectl.kubernetes.io/restartedAt` annotation, as
//!   `kubectl rollout restart` does, then wait for the rollout.
//! - `scale`: GET the Deployment, PATCH its `scale` subresource with
//!   `params.replicas`, then wait for the rollout.
//! - `rollback`: GET the Deployment, LIST its ReplicaSets by the
//!   Deployment's selector, pick `params.to_revision` or the highest revision
//!   below the current one (for `params.direction = forward` too: a
//!   rollback makes the restored revision the newest, so the one below it
//!   is the revision reflex rolled back from), PATCH the Deployment's pod template with that
//!   ReplicaSet's (minus `pod-template-hash`), as `kubectl rollout undo` does,
//!   then wait for the rollout.
//! - `delete_pod`: GET the pod (`params.pod`, else `target.name`), DELETE it.
//! - `drain_node`: GET the node (`params.node`, else `target.name`), LIST
//!   its pods (a pod with an `emptyDir` volume refuses the drain unless
//!   `params.drain.delete_emptydir_data`, as `kubectl drain` does), PATCH
//!   `spec.unschedulable=true` (cordon), and POST an Eviction (with
//!   `params.drain.grace_period_seconds` when set) for each pod not owned by
//!   a DaemonSet and not a mirror pod; evictions refused by a
//!   PodDisruptionBudget (HTTP 429) are retried every `poll_interval` until
//!   `drain_timeout`.
//!
//! Guarantees: a workload (or pod) that does not match the configured
//! `workload_selector`, or a node that does not match `node_selector`, is
//! `rejected` after the GET and before any write; every API error becomes
//! `failed` with the verb, the object and the API's message; every call is
//! bounded by `api_timeout` and every wait by its own timeout.

use super::runbook::Runbooks;
use super::{result, Clock, Executor, SetupError};
use crate::model::{ActionResult, ActionStatus, ActionType, RecoveryAction};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Annotation carrying a Deployment's / ReplicaSet's revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// Adjusts a client configuration for the executor: kube-rs's built-in
/// retry layer (429/503/504, up to 15 times) is turned off, because the
/// executor owns its retries — a 429 on an eviction is a PodDisruptionBudget
/// refusing, which the drain loop retries within `drain_timeout`, and writes
/// must not be replayed behind its back.
pub fn client_config(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config
}

/// Builds a client from the in-cluster configuration or kubeconfig
/// (`KUBECONFIG`, `~/.kube/config`), via [`client_config`].
pub async fn infer_client() -> Result<kube::Client, SetupError> {
    let config = kube::Config::infer().await.map_err(|e| {
        SetupError::Kubernetes(format!(
            "no Kubernetes configuration (in-cluster or kubeconfig): {e}"
        ))
    })?;
    kube::Client::try_from(client_config(config))
        .map_err(|e| SetupError::Kubernetes(format!("Kubernetes client: {e}")))
}

// Selectors are validated with the rest of `[executor]`, so they are parsed
// where the configuration is.
pub use super::config::Selector;

/// Settings of the Kubernetes executor (from `[executor]`).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub name: String,
    pub workload_selector: Selector,
    pub node_selector: Selector,
    pub api_timeout: Duration,
    pub rollout_timeout: Duration,
    pub drain_timeout: Duration,
    pub poll_interval: Duration,
}

impl KubeSettings {
    /// From the executor configuration (selectors were validated at load).
    pub fn from_config(cfg: &super::ExecutorConfig) -> Result<Self, SetupError> {
        let ms = |d: crate::model::DurationMs| Duration::from_millis(d.0.max(1) as u64);
        Ok(KubeSettings {
            name: cfg.name.clone(),
            workload_selector: Selector::parse(&cfg.workload_selector)
                .map_err(SetupError::Config)?,
            node_selector: Selector::parse(&cfg.node_selector).map_err(SetupError::Config)?,
            api_timeout: ms(cfg.api_timeout),
            rollout_timeout: ms(cfg.rollout_timeout),
            drain_timeout: ms(cfg.drain_timeout),
            poll_interval: ms(cfg.poll_interval),
        })
    }
}

/// How an action ended, before it becomes an `ActionResult`.
#[derive(Debug)]
enum Outcome {
    Rejected(String),
    Failed(String),
}

/// Carries out actions against one cluster.
pub struct KubeExecutor {
    client: kube::Client,
    settings: KubeSettings,
    clock: Arc<dyn Clock>,
    runbooks: Runbooks,
}

impl KubeExecutor {
    /// An executor using `client` (in-cluster, kubeconfig, or a test server).
    pub fn new(
        client: kube::Client,
        settings: KubeSettings,
        clock: Arc<dyn Clock>,
        runbooks: Runbooks,
    ) -> Self {
        KubeExecutor {
            client,
            settings,
            clock,
            runbooks,
        }
    }

    async fn call<T>(
        &self,
        what: String,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Outcome> {
        match tokio::time::timeout(self.settings.api_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Outcome::Failed(format!("{what}: {}", describe_error(&e)))),
            Err(_) => Err(Outcome::Failed(format!(
                "{what}: no answer within {:?}",
                self.settings.api_timeout
            ))),
        }
    }

    fn namespace(action: &RecoveryAction) -> Result<&str, Outcome> {
        action
            .target
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Outcome::Rejected("target.namespace is missing".into()))
    }

    /// GETs the target Deployment and checks kind and selector.
    async fn deployment(
        &self,
        action: &RecoveryAction,
    ) -> Result<(Api<Deployment>, Deployment), Outcome> {
        if action.target.kind != "Deployment" {
            return Err(Outcome::Rejected(format!(
                "{} supports kind Deployment, not {:?}",
                action.action_type.as_str(),
                action.target.kind
            )));
        }
        let ns = Self::namespace(action)?;
        let name = &action.target.name;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = self
            .call(format!("get deployment {ns}/{name}"), api.get(name))
            .await?;
        if !self
            .settings
            .workload_selector
            .matches(d.metadata.labels.as_ref())
        {
            return Err(Outcome::Rejected(format!(
                "deployment {ns}/{name} does not match the workload selector"
            )));
        }
        Ok((api, d))
    }

    async fn restart(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        let (api, _) = self.deployment(action).await?;
        let name = &action.target.name;
        let at = self.clock.now().to_rfc3339();
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}});
        self.call(
            format!("patch deployment {name}"),
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await?;
        let ready = self.wait_rollout(&api, name).await?;
        Ok(format!(
            "restarted deployment {name} (restartedAt {at}); {ready}"
        ))
    }

    async fn scale(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        let replicas = match action.params.replicas {
            Some(r) if (0..=crate::model::params::MAX_REPLICAS).contains(&r) => r,
            Some(r) => {
                return Err(Outcome::Rejected(format!(
                    "params.replicas {r} is out of range"
                )))
            }
            None => return Err(Outcome::Rejected("scale needs params.replicas".into())),
        };
        let (api, d) = self.deployment(action).await?;
        let name = &action.target.name;
        let before = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let patch = json!({"spec": {"replicas": replicas}});
        self.call(
            format!("patch deployment {name}/scale"),
            api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        let ready = self.wait_rollout(&api, name).await?;
        Ok(format!(
            "scaled deployment {name} from {before} to {replicas} replicas; {ready}"
        ))
    }

    async fn rollback(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        let (api, d) = self.deployment(action).await?;
        let ns = Self::namespace(action)?;
        let name = &action.target.name;
        let current = revision(d.metadata.annotations.as_ref());
        let selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        if selector.is_empty() {
            return Err(Outcome::Failed(format!(
                "deployment {ns}/{name} has no matchLabels selector to find its ReplicaSets"
            )));
        }
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let list = self
            .call(
                format!("list replicasets {ns} -l {selector}"),
                rs_api.list(&ListParams::default().labels(&selector)),
            )
            .await?;
        let uid = d.metadata.uid.clone();
        let owned: Vec<&ReplicaSet> = list
            .items
            .iter()
            .filter(|rs| {
                uid.is_none()
                    || rs
                        .metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|r| Some(&r.uid) == uid.as_ref()))
            })
            .collect();
        let wanted: Option<&ReplicaSet> = match action.params.to_revision.as_deref() {
            Some(t) => {
                let t: i64 = t
                    .parse()
                    .map_err(|_| Outcome::Rejected(format!("to_revision {t:?} is not a number")))?;
                owned
                    .iter()
                    .copied()
                    .find(|rs| revision(rs.metadata.annotations.as_ref()) == Some(t))
            }
            None => owned
                .iter()
                .copied()
                .filter(|rs| {
                    let r = revision(rs.metadata.annotations.as_ref());
                    // Without a known current revision there is no "previous" one.
                    r.is_some() && current.is_some() && r < current
                })
                .max_by_key(|rs| revision(rs.metadata.annotations.as_ref())),
        };
        let Some(rs) = wanted else {
            return Err(Outcome::Failed(format!(
                "no previous revision of deployment {ns}/{name} (current {current:?}, {} ReplicaSets)",
                owned.len()
            )));
        };
        let rev = revision(rs.metadata.annotations.as_ref()).unwrap_or_default();
        let mut template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .ok_or_else(|| {
                Outcome::Failed(format!("ReplicaSet of revision {rev} has no template"))
            })?;
        if let Some(meta) = template.metadata.as_mut() {
            if let Some(l) = meta.labels.as_mut() {
                l.remove("pod-template-hash");
            }
        }
        let patch = json!({"spec": {"template": template}});
        self.call(
            format!("patch deployment {name}"),
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await?;
        let ready = self.wait_rollout(&api, name).await?;
        Ok(format!(
            "rolled deployment {name} back from revision {} to revision {rev}; {ready}",
            current.map_or("?".to_string(), |c| c.to_string())
        ))
    }

    async fn delete_pod(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        let ns = Self::namespace(action)?;
        let pod = action.params.pod.as_deref().unwrap_or(&action.target.name);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let p = self
            .call(format!("get pod {ns}/{pod}"), api.get(pod))
            .await?;
        if !self
            .settings
            .workload_selector
            .matches(p.metadata.labels.as_ref())
        {
            return Err(Outcome::Rejected(format!(
                "pod {ns}/{pod} does not match the workload selector"
            )));
        }
        self.call(
            format!("delete pod {ns}/{pod}"),
            api.delete(pod, &DeleteParams::default()),
        )
        .await?;
        Ok(format!("deleted pod {ns}/{pod}"))
    }

    async fn drain_node(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        let node = action.params.node.as_deref().unwrap_or(&action.target.name);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let n = self
            .call(format!("get node {node}"), nodes.get(node))
            .await?;
        if !self
            .settings
            .node_selector
            .matches(n.metadata.labels.as_ref())
        {
            return Err(Outcome::Rejected(format!(
                "node {node} does not match the node selector"
            )));
        }
        let options = action.params.drain.unwrap_or_default();
        let all: Api<Pod> = Api::all(self.client.clone());
        let pods = self
            .call(
                format!("list pods on node {node}"),
                all.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))),
            )
            .await?;
        // As `kubectl drain` without --delete-emptydir-data, but refused
        // before the cordon so that a refused drain changes nothing.
        if !options.delete_emptydir_data {
            let local: Vec<String> = pods
                .items
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| s.volumes.iter().flatten().any(|v| v.empty_dir.is_some()))
                })
                .filter_map(|p| {
                    Some(format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref()?,
                        p.metadata.name.as_deref()?
                    ))
                })
                .collect();
            if !local.is_empty() {
                return Err(Outcome::Rejected(format!(
                    "node {node} runs pods with emptyDir volumes ({}); their data would be lost: set params.drain.delete_emptydir_data to drain anyway",
                    local.join(", ")
                )));
            }
        }
        let cordon = json!({"spec": {"unschedulable": true}});
        self.call(
            format!("cordon node {node}"),
            nodes.patch(node, &PatchParams::default(), &Patch::Merge(&cordon)),
        )
        .await?;
        // The Eviction body is written here rather than by `Api::evict`:
        // kube 5 sends its delete options as `delete_options`, a field the
        // API server does not know, so a grace period would be dropped.
        let delete_options = options.grace_period_seconds.map(|g| DeleteOptions {
            grace_period_seconds: Some(g),
            ..DeleteOptions::default()
        });
        let mut pending: Vec<(String, String)> = Vec::new();
        let mut skipped = 0usize;
        for p in &pods.items {
            let daemon = p
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
            let mirror = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            if daemon || mirror {
                skipped += 1;
                continue;
            }
            if let (Some(ns), Some(name)) = (&p.metadata.namespace, &p.metadata.name) {
                pending.push((ns.clone(), name.clone()));
            }
        }
        let total = pending.len();
        let deadline = tokio::time::Instant::now() + self.settings.drain_timeout;
        let mut blocked_rounds = 0usize;
        loop {
            let mut still = Vec::new();
            for (ns, name) in pending {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let what = format!("evict pod {ns}/{name}");
                match tokio::time::timeout(
                    self.settings.api_timeout,
                    api.create_subresource::<_, serde_json::Value>(
                        "eviction",
                        &name,
                        &PostParams::default(),
                        &Eviction {
                            metadata: ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(ns.clone()),
                                ..ObjectMeta::default()
                            },
                            delete_options: delete_options.clone(),
                        },
                    ),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    // Already gone: nothing to evict.
                    Ok(Err(kube::Error::Api(s))) if s.code == 404 => {}
                    // A PodDisruptionBudget refuses for now: retry later.
                    Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                        tracing::info!(pod = %name, namespace = %ns, "eviction blocked by a disruption budget; retrying");
                        still.push((ns, name));
                    }
                    Ok(Err(e)) => {
                        return Err(Outcome::Failed(format!("{what}: {}", describe_error(&e))))
                    }
                    Err(_) => return Err(Outcome::Failed(format!("{what}: no answer"))),
                }
            }
            if still.is_empty() {
                break;
            }
            blocked_rounds += 1;
            if tokio::time::Instant::now() + self.settings.poll_interval > deadline {
                return Err(Outcome::Failed(format!(
                    "node {node} cordoned, {} of {total} pods evicted; {} still blocked by PodDisruptionBudgets after {:?}: {}",
                    total - still.len(),
                    still.len(),
                    self.settings.drain_timeout,
                    still
                        .iter()
                        .map(|(n, p)| format!("{n}/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
            pending = still;
        }
        Ok(format!(
            "drained node {node}: cordoned, {total} pods evicted ({skipped} DaemonSet/mirror pods left), {blocked_rounds} retries for disruption budgets"
        ))
    }

    /// Polls the Deployment until its rollout is complete or the timeout.
    async fn wait_rollout(&self, api: &Api<Deployment>, name: &str) -> Result<String, Outcome> {
        let deadline = tokio::time::Instant::now() + self.settings.rollout_timeout;
        loop {
            let d = self
                .call(format!("get deployment {name}"), api.get(name))
                .await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = d.metadata.generation.unwrap_or(0);
            let st = d.status.unwrap_or_default();
            let observed = st.observed_generation.unwrap_or(0);
            let updated = st.updated_replicas.unwrap_or(0);
            let ready = st.ready_replicas.unwrap_or(0);
            let available = st.available_replicas.unwrap_or(0);
            let total = st.replicas.unwrap_or(0);
            let seen = format!(
                "observed generation {observed}/{generation}, {updated} updated, {ready} ready, {available} available, {total} total of {want} wanted"
            );
            if observed >= generation
                && updated == want
                && ready == want
                && available == want
                && total == want
            {
                return Ok(format!("rollout ready: {seen}"));
            }
            if tokio::time::Instant::now() + self.settings.poll_interval > deadline {
                return Err(Outcome::Failed(format!(
                    "rollout of {name} not ready within {:?}: {seen}",
                    self.settings.rollout_timeout
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    async fn run_runbook(&self, action: &RecoveryAction) -> Result<String, Outcome> {
        match self.runbooks.run(action).await {
            Ok((name, out)) if out.success() => Ok(out.detail(&name)),
            Ok((name, out)) => Err(Outcome::Failed(out.detail(&name))),
            Err(e) if e.is_rejection() => Err(Outcome::Rejected(e.to_string())),
            Err(e) => Err(Outcome::Failed(e.to_string())),
        }
    }
}

fn revision(annotations: Option<&BTreeMap<String, String>>) -> Option<i64> {
    annotations?.get(REVISION)?.parse().ok()
}

fn describe_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("API error {} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

impl Executor for KubeExecutor {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn execute(&self, action: &RecoveryAction) -> ActionResult {
        let outcome = match action.action_type {
            ActionType::Restart => self.restart(action).await,
            ActionType::Scale => self.scale(action).await,
            ActionType::Rollback => self.rollback(action).await,
            ActionType::DeletePod => self.delete_pod(action).await,
            ActionType::DrainNode => self.drain_node(action).await,
            ActionType::RunRunbook => self.run_runbook(action).await,
        };
        let (status, detail) = match outcome {
            Ok(d) => (ActionStatus::Succeeded, d),
            Err(Outcome::Rejected(d)) => (ActionStatus::Rejected, d),
            Err(Outcome::Failed(d)) => (ActionStatus::Failed, d),
        };
        result(
            action,
            status,
            detail,
            self.clock.now(),
            &self.settings.name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let s = Selector::parse("reflex.io/managed=true, tier!=db,app,!legacy").unwrap();
        let mut l = BTreeMap::new();
        l.insert("reflex.io/managed".to_string(), "true".to_string());
        l.insert("app".to_string(), "x".to_string());
        assert!(s.matches(Some(&l)));
        l.insert("tier".to_string(), "db".to_string());
        assert!(!s.matches(Some(&l)));
        assert!(Selector::parse("").unwrap().matches(None));
        assert!(!s.matches(None));
        assert!(Selector::parse("a=b=c").is_err());
        assert!(Selector::parse("a b=c").is_err());
    }
}
