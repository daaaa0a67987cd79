//! Effects of recovery decisions: the thin layer between the pure plans
//! ([`super::plan`]) and the world — it gathers the facts a plan needs from
//! the stage's state, applies the plan (episode phase, guard admission,
//! pending approvals, attempts, metrics) and emits the records.
//!
//! Guarantees: the records are built by [`super::plan`] (steps) or here
//! (escalations, undo actions) from event time and stage state only; every
//! action is signed once, when a key is set, right before it is emitted.

use super::config::{CategoryRemedy, Environment};
use super::guards::{self, Guard};
use super::plan::{self, EscalationPlan, StepFacts, StepKind, StepPlan, Verdict};
use super::state::{Episode, Event};
use super::{sign, RecoveryOutput, RecoveryStage, MAX_RESULTS, RECENT_ATTEMPTS_MS};
use crate::model::{Category, Escalation, EventTime, Incident, RecoveryAction, Target};
use crate::recovery::risk;
use crate::util::stable_id;
use std::sync::atomic::Ordering;

/// Replica count assumed when the catalog does not say.
const DEFAULT_REPLICAS: i64 = 2;

impl RecoveryStage {
    pub(super) fn breaker_gauge(&self) {
        self.stats
            .breaker_open
            .store(u64::from(self.guards.breaker_open()), Ordering::Relaxed);
    }

    pub(super) fn push_action(&self, a: RecoveryAction, out: &mut Vec<RecoveryOutput>) {
        out.push(RecoveryOutput::Action(Box::new(a)));
    }

    pub(super) fn push_escalation(&self, e: Escalation, out: &mut Vec<RecoveryOutput>) {
        out.push(RecoveryOutput::Escalation(e));
    }

    pub(super) fn escalation(
        &self,
        inc: &Incident,
        at: EventTime,
        reason: String,
        suggested: Vec<String>,
    ) -> Escalation {
        Escalation {
            escalation_id: stable_id("esc-", &[inc.incident_id.as_bytes(), reason.as_bytes()]),
            incident_id: inc.incident_id.clone(),
            created_at: at,
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

    pub(super) fn suggestions(&self, c: Category) -> Vec<String> {
        self.actions
            .categories
            .get(&c)
            .map(|r| r.suggestions.clone())
            .unwrap_or_default()
    }

    pub(super) fn escalate_ep(
        &self,
        ep: &Episode,
        at: EventTime,
        reason: String,
        out: &mut Vec<RecoveryOutput>,
    ) {
        let e = self.escalation(&ep.inc, at, reason, self.suggestions(ep.inc.category));
        self.push_escalation(e, out);
    }

    pub(super) fn target_of(&self, inc: &Incident) -> Target {
        let root = inc.root_cause_service.as_str();
        let entry = self.catalog.get(root);
        Target {
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
        }
    }

    pub(super) fn replicas(&self, service: &str) -> i64 {
        self.catalog
            .get(service)
            .and_then(|e| e.replicas)
            .unwrap_or(DEFAULT_REPLICAS)
            .max(0)
    }

    pub(super) fn env(&self, namespace: Option<&str>) -> risk::Env {
        match self.cfg.environment {
            Some(Environment::Production) => risk::Env::Production,
            Some(Environment::Staging) => risk::Env::Staging,
            Some(Environment::Development) => risk::Env::Development,
            None => match namespace {
                Some(n) if n.contains("prod") => risk::Env::Production,
                Some(n) if n.contains("stag") => risk::Env::Staging,
                Some(n) if n.contains("dev") => risk::Env::Development,
                _ => risk::Env::Unknown,
            },
        }
    }

    pub(super) fn sign(&self, a: &mut RecoveryAction) {
        a.signature = None;
        if let Some(k) = &self.signing_key {
            a.signature = Some(sign::sign(a, k));
        }
    }

    /// Idempotency key → incident, bounded (the oldest keys go first).
    pub(super) fn remember_key(&mut self, key: &str, incident_id: &str) {
        if self.by_key.len() >= MAX_RESULTS && !self.by_key.contains_key(key) {
            self.by_key.pop_first();
        }
        self.by_key.insert(key.to_string(), incident_id.to_string());
    }

    /// Reverts the episode's current action when reversible, and escalates.
    pub(super) fn undo(&mut self, ep: &mut Episode, at: EventTime, out: &mut Vec<RecoveryOutput>) {
        let Some(done) = ep.action.clone() else {
            return;
        };
        let what = self.describe(ep);
        let undo = plan::undo_params(done.action_type, ep.previous_replicas);
        let root = done.target.service.clone();
        let undone;
        if let Some(params) = undo {
            let req = guards::Request {
                service: &root,
                incident_id: &ep.inc.incident_id,
                touched: plan::touched(done.action_type, self.replicas(&root), params.replicas),
                replicas: self.replicas(&root),
                at,
                undo: true,
            };
            let held = self.guards.check(
                &req,
                guards::Context {
                    healing: self.cfg.healing,
                    dry_run: self.cfg.dry_run,
                    in_maintenance: self.cfg.in_maintenance(&root, at),
                },
            );
            match held {
                Some(g) => {
                    guards::record_hold(&self.stats, g, &root, &ep.inc.incident_id);
                    undone = format!("; undo held by guard {}", g.as_str());
                }
                None => {
                    let mut a =
                        plan::undo_action(&done, params, ep.step, &what, at, self.cfg.action_ttl.0);
                    let key = a.idempotency_key.clone();
                    self.sign(&mut a);
                    self.guards.admit(&key, &req);
                    self.remember_key(&key, &ep.inc.incident_id);
                    ep.undo = true;
                    ep.action = Some(a.clone());
                    ep.on(Event::Planned {
                        verdict: Some(Verdict::Auto),
                        deadline: at.plus_ms(self.cfg.result_timeout.0),
                    });
                    undone = format!("; undoing it ({})", a.action_id);
                    self.push_action(a, out);
                }
            }
        } else {
            undone = "; it cannot be undone automatically".into();
        }
        self.escalate_ep(
            ep,
            at,
            format!("{what} made things worse{undone}; a human must act"),
            out,
        );
    }

    /// Plans ladder step `ep.step` (or the first later one whose
    /// preconditions hold) at event time `at` and applies the plan;
    /// escalates when none is left. `why` says why the previous step did
    /// not do (for the escalation).
    pub(super) fn try_step(
        &mut self,
        ep: &mut Episode,
        at: EventTime,
        why: Option<String>,
        out: &mut Vec<RecoveryOutput>,
    ) {
        let inc = ep.inc.clone();
        let root = inc.root_cause_service.as_str();
        let target = self.target_of(&inc);
        let replicas = self.replicas(root);
        let recent_attempts = self.attempts.get(root).map_or(0, |v| {
            v.iter()
                .filter(|t| at.millis() - t.millis() < RECENT_ATTEMPTS_MS)
                .count() as u32
        });
        let maintenance = self.cfg.in_maintenance(root, at);
        let no_remedy = CategoryRemedy::default();
        let facts = StepFacts {
            inc: &inc,
            remedy: self
                .actions
                .categories
                .get(&inc.category)
                .unwrap_or(&no_remedy),
            from: ep.step,
            tried: &ep.tried,
            why: why.as_deref(),
            at,
            replicas,
            target: &target,
            criticality: self
                .catalog
                .get(root)
                .map(|e| e.criticality)
                .unwrap_or_default(),
            env: self.env(target.namespace.as_deref()),
            learned: &self.learned,
            recent_attempts,
            frozen: self.catalog.frozen(root, at),
            maintenance,
            policy: self.cfg.policy(inc.category, root),
            action_ttl_ms: self.cfg.action_ttl.0,
        };
        let ctx = guards::Context {
            healing: self.cfg.healing,
            dry_run: self.cfg.dry_run,
            in_maintenance: maintenance,
        };
        let guards = &mut self.guards;
        let plan = plan::plan_step(&facts, |req| guards.check(req, ctx));
        self.apply_step(ep, plan, at, replicas, out);
    }

    /// The effects of a step's plan: episode state, guard admission,
    /// bookkeeping, metrics and outputs.
    fn apply_step(
        &mut self,
        ep: &mut Episode,
        plan: StepPlan,
        at: EventTime,
        replicas: i64,
        out: &mut Vec<RecoveryOutput>,
    ) {
        let inc = ep.inc.clone();
        let root = inc.root_cause_service.as_str();
        for (i, action) in &plan.skipped {
            tracing::info!(
                incident_id = %inc.incident_id,
                step = i + 1,
                action = action.as_str(),
                "Ladder step skipped: its preconditions do not hold."
            );
        }
        ep.step = plan.step;
        if plan.chosen.is_some() {
            if let Some(v) = self.attempts.get_mut(root) {
                v.retain(|t| at.millis() - t.millis() < RECENT_ATTEMPTS_MS);
            }
        }
        let deadline = at.plus_ms(self.cfg.result_timeout.0);
        let (action, verdict, escalation) = match plan.kind {
            StepKind::Escalate { escalation, .. } => {
                ep.on(Event::Planned {
                    verdict: None,
                    deadline,
                });
                self.push_planned(&inc, at, escalation, out);
                return;
            }
            StepKind::Held { guard, escalation } => {
                self.breaker_gauge();
                guards::record_hold(&self.stats, guard, root, &inc.incident_id);
                ep.on(Event::Planned {
                    verdict: None,
                    deadline,
                });
                self.push_planned(&inc, at, escalation, out);
                return;
            }
            StepKind::Emit {
                action,
                verdict,
                escalation,
            } => (action, verdict, escalation),
        };
        self.breaker_gauge();
        let Some(chosen) = plan.chosen else {
            return;
        };
        let mut action = *action;
        self.sign(&mut action);
        self.attempts.entry(root.to_string()).or_default().push(at);
        self.remember_key(&action.idempotency_key, &inc.incident_id);
        ep.tried.push(chosen.label);
        ep.previous_replicas = Some(replicas);
        ep.undo = false;
        ep.pre = self.pre_activity(&inc, at, &chosen.step);
        ep.action = Some(action.clone());
        ep.on(Event::Planned {
            verdict: Some(verdict),
            deadline,
        });
        match verdict {
            Verdict::DryRun { .. } => {
                guards::record_hold(&self.stats, Guard::DryRun, root, &inc.incident_id);
            }
            Verdict::Auto => {
                self.guards.admit(
                    &action.idempotency_key,
                    &guards::Request {
                        service: root,
                        incident_id: &inc.incident_id,
                        touched: chosen.touched,
                        replicas,
                        at,
                        undo: false,
                    },
                );
            }
            Verdict::ApprovalRequired => {
                self.pending
                    .insert(action.action_id.clone(), inc.incident_id.clone());
            }
        }
        self.push_action(action, out);
        if let Some(e) = escalation {
            self.push_planned(&inc, at, e, out);
        }
    }

    fn push_planned(
        &self,
        inc: &Incident,
        at: EventTime,
        e: EscalationPlan,
        out: &mut Vec<RecoveryOutput>,
    ) {
        let e = self.escalation(inc, at, e.reason, e.suggested);
        self.push_escalation(e, out);
    }
}
