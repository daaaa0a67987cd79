//! Recovery: turns incidents into risk-scored actions and escalations.
//!
//! For each incident, once per (root cause, category) diagnosis, the stage
//! picks the first step of that category's remedy ladder from the action
//! catalog, scores its risk ([`risk`]) and decides: `auto` when the risk is
//! low and the diagnosis confident, `approval_required` (plus an escalation
//! asking for approval) when moderate, escalation only otherwise. Categories
//! without remedy steps, external roots and a disabled healing switch always
//! escalate, addressed to the owning team from the catalog.
//!
//! Guarantees: ids and idempotency keys derive from the incident, the ladder
//! step and the target, so a replay of the same input yields the same keys
//! and executors apply each at most once. Keying: per incident.

pub mod approval;
pub mod config;
pub mod risk;
pub mod sign;

pub use config::{ActionCatalog, RecoveryConfig};

use crate::diagnosis::catalog::Catalog;
use crate::model::{
    ActionParams, ActionResult, ActionType, Category, Decision, Escalation, EventTime, Incident,
    IncidentStatus, RecoveryAction, Target,
};
use crate::pipeline::stats::Stats;
use crate::pipeline::Stage;
use crate::util::stable_id;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the recovery stage emits. (Both variants are handed on at once,
/// never stored in bulk, so the size difference does not matter.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum RecoveryOutput {
    Action(Box<RecoveryAction>),
    Escalation(Escalation),
}

/// Actions on a target older than this no longer raise the risk of the next
/// one: "recent attempts" means the last hour of event time.
const RECENT_ATTEMPTS_MS: i64 = 3_600_000;

/// Executor results remembered (bounded state; the oldest keys go first).
const MAX_RESULTS: usize = 4096;

/// Replica count assumed when the catalog does not say.
const DEFAULT_REPLICAS: i64 = 2;

/// The recovery stage.
pub struct RecoveryStage {
    cfg: RecoveryConfig,
    actions: ActionCatalog,
    catalog: Arc<Catalog>,
    signing_key: Option<Vec<u8>>,
    /// (incident, root, category) already handled.
    handled: BTreeSet<(String, String, Category)>,
    /// When actions were taken, per target service (for the attempts factor;
    /// only those within [`RECENT_ATTEMPTS_MS`] count, older ones are dropped).
    attempts: BTreeMap<String, Vec<EventTime>>,
    /// Latest executor result per idempotency key (see [`RecoveryStage::on_result`]).
    results: BTreeMap<String, ActionResult>,
    stats: Arc<Stats>,
}

impl RecoveryStage {
    /// Builds the stage. `healing_env_off` is `REFLEX_HEALING=off` as read by the caller.
    pub fn new(
        mut cfg: RecoveryConfig,
        actions: ActionCatalog,
        catalog: Arc<Catalog>,
        signing_key: Option<Vec<u8>>,
        healing_env_off: bool,
        stats: Arc<Stats>,
    ) -> Self {
        if healing_env_off {
            cfg.healing = false;
        }
        RecoveryStage {
            cfg,
            actions,
            catalog,
            signing_key,
            handled: BTreeSet::new(),
            attempts: BTreeMap::new(),
            results: BTreeMap::new(),
            stats,
        }
    }

    /// Records an executor's result for one of this stage's actions (the
    /// latest per idempotency key wins). Minimal seam for verification:
    /// nothing is emitted here yet, so outputs do not depend on executors.
    pub fn on_result(&mut self, r: &ActionResult) {
        if self.results.len() >= MAX_RESULTS && !self.results.contains_key(&r.idempotency_key) {
            self.results.pop_first();
        }
        self.results.insert(r.idempotency_key.clone(), r.clone());
    }

    /// The latest result recorded for an idempotency key.
    pub fn result(&self, idempotency_key: &str) -> Option<&ActionResult> {
        self.results.get(idempotency_key)
    }

    fn escalate(&self, inc: &Incident, reason: String, suggested: Vec<String>) -> Escalation {
        Escalation {
            escalation_id: stable_id("esc-", &[inc.incident_id.as_bytes(), reason.as_bytes()]),
            incident_id: inc.incident_id.clone(),
            created_at: inc.updated_at,
            severity: inc.severity,
            reason,
            team: self
                .catalog
                .get(&inc.root_cause_service)
                .and_then(|s| s.team.clone()),
            summary: inc.summary.clone(),
            suggested_actions: suggested,
        }
    }

    fn plan(&mut self, inc: &Incident, out: &mut Vec<RecoveryOutput>) {
        let remedy = self
            .actions
            .categories
            .get(&inc.category)
            .cloned()
            .unwrap_or_default();
        let suggestions = remedy.suggestions.clone();
        let root = inc.root_cause_service.as_str();
        let entry = self.catalog.get(root);
        let external = inc.category == Category::DependencyFailure;
        let Some(step) = remedy.steps.first().filter(|_| !external) else {
            out.push(RecoveryOutput::Escalation(self.escalate(
                inc,
                format!(
                    "{} is not remediated automatically; a human must act",
                    inc.category
                ),
                suggestions,
            )));
            return;
        };
        if !self.cfg.healing {
            let mut s = vec![format!("{} {root}", step.action.as_str())];
            s.extend(suggestions);
            out.push(RecoveryOutput::Escalation(self.escalate(
                inc,
                "automatic healing is switched off".into(),
                s,
            )));
            return;
        }
        let target = Target {
            service: root.to_string(),
            namespace: entry
                .and_then(|e| e.namespace.clone())
                .or_else(|| inc.namespace.clone()),
            kind: entry
                .and_then(|e| e.kind.clone())
                .unwrap_or_else(|| "Deployment".into()),
            name: entry
                .and_then(|e| e.name.clone())
                .unwrap_or_else(|| root.to_string()),
        };
        let mut params = ActionParams::default();
        match step.action {
            ActionType::Scale => {
                let current = entry.and_then(|e| e.replicas).unwrap_or(DEFAULT_REPLICAS);
                params.replicas = Some(current.max(0) + step.scale_by.unwrap_or(1));
            }
            ActionType::RunRunbook => params.runbook.clone_from(&step.runbook),
            _ => {}
        }
        let now = inc.updated_at;
        let attempts = self.attempts.get_mut(root).map_or(0, |v| {
            v.retain(|t| now.millis() - t.millis() < RECENT_ATTEMPTS_MS);
            v.len() as u32
        });
        let frozen = self.catalog.frozen(root, inc.updated_at);
        let risk = risk::risk(&risk::RiskInputs {
            base_risk: step.base_risk,
            confidence: inc.confidence,
            criticality: entry.map(|e| e.criticality).unwrap_or_default(),
            production: inc.namespace.as_deref().is_some_and(|n| n.contains("prod")),
            recent_attempts: attempts,
        });
        let decision = if risk <= self.cfg.auto_max_risk
            && inc.confidence >= self.cfg.min_confidence
            && !frozen
        {
            Some(Decision::Auto)
        } else if risk <= self.cfg.approval_max_risk {
            Some(Decision::ApprovalRequired)
        } else {
            None
        };
        let step_no = 0u32;
        let idempotency_key = stable_id(
            "idem-",
            &[
                inc.incident_id.as_bytes(),
                &step_no.to_be_bytes(),
                step.action.as_str().as_bytes(),
                target.service.as_bytes(),
            ],
        );
        let reason = format!(
            "{} diagnosed on {root} (confidence {:.2}); remedy step 1: {}{}",
            inc.category,
            inc.confidence,
            step.action.as_str(),
            if frozen {
                " (change freeze in effect)"
            } else {
                ""
            }
        );
        let Some(decision) = decision else {
            out.push(RecoveryOutput::Escalation(self.escalate(
                inc,
                format!(
                    "risk {risk:.2} of {} on {root} is above the approval limit",
                    step.action.as_str()
                ),
                suggestions,
            )));
            return;
        };
        let mut action = RecoveryAction {
            action_id: stable_id("act-", &[idempotency_key.as_bytes()]),
            incident_id: inc.incident_id.clone(),
            created_at: inc.updated_at,
            action_type: step.action,
            target,
            params,
            risk,
            decision,
            idempotency_key,
            reason,
            expires_at: inc.updated_at.plus_ms(self.cfg.action_ttl.0),
            signature: None,
        };
        if self.cfg.dry_run {
            action.params.args.insert("dry_run".into(), "true".into());
        }
        if let Some(k) = &self.signing_key {
            action.signature = Some(sign::sign(&action, k));
        }
        self.attempts
            .entry(root.to_string())
            .or_default()
            .push(inc.updated_at);
        if decision == Decision::ApprovalRequired {
            let mut s = vec![format!(
                "approve {} ({})",
                action.action_id,
                step.action.as_str()
            )];
            s.extend(suggestions);
            let esc = self.escalate(
                inc,
                format!(
                    "approval required: risk {risk:.2}, confidence {:.2}",
                    inc.confidence
                ),
                s,
            );
            out.push(RecoveryOutput::Action(Box::new(action)));
            out.push(RecoveryOutput::Escalation(esc));
        } else {
            out.push(RecoveryOutput::Action(Box::new(action)));
        }
    }
}

impl Stage for RecoveryStage {
    type In = Incident;
    type Out = RecoveryOutput;

    fn process(&mut self, inc: Incident, out: &mut Vec<RecoveryOutput>) {
        if inc.status == IncidentStatus::Resolved {
            return;
        }
        let key = (
            inc.incident_id.clone(),
            inc.root_cause_service.clone(),
            inc.category,
        );
        if !self.handled.insert(key) {
            return;
        }
        let before = out.len();
        self.plan(&inc, out);
        for o in &out[before..] {
            match o {
                RecoveryOutput::Action(_) => Stats::add(&self.stats.actions, 1),
                RecoveryOutput::Escalation(_) => Stats::add(&self.stats.escalations, 1),
            }
        }
    }
}
