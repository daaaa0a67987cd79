//! Recovery: turns incidents into risk-scored actions and escalations,
//! verifies that actions worked, climbs remedy ladders, undoes harm, and
//! learns from the outcomes.
//!
//! Per incident (one *episode* per (root cause, category) diagnosis) the
//! stage walks that category's ladder from the action catalog: each step's
//! preconditions are checked (a failing step is skipped), its risk is scored
//! ([`risk`]) and the policy decides (`auto` when the risk is at most the
//! auto threshold and the diagnosis confident enough, `approval_required`
//! plus an escalation when at most the approval threshold, escalation only
//! otherwise; thresholds per category/service via `[recovery.overrides]`).
//! The safety [`guards`] may still hold an action back; a held action
//! becomes an escalation naming the guard. Categories without remedy steps
//! and external roots always escalate, addressed to the owning team.
//!
//! After an executor reports success, [`verify`] watches the incident's
//! services: recovered ⇒ the incident is resolved with a `verified:` evidence
//! line (see [`RecoveryStage::take_resolutions`]) and a success is learned;
//! not recovered or failed/rejected ⇒ the next ladder step, or an
//! escalation once the ladder is exhausted; worse ⇒ the action is undone
//! when reversible (`scale` back to the previous replica count; after a
//! `rollback`, a `rollback` with `params.direction = "forward"`, i.e.
//! back to the revision that was live before reflex's rollback) and the
//! incident escalated; no result within `result_timeout` ⇒ escalation.
//!
//! Structure: [`plan`] decides what a ladder step does (pure, property-
//! tested), `state` holds an episode's phases and their one transition
//! function, `effects` gathers a plan's facts and applies its effects
//! (outputs, guard admission, bookkeeping); this module routes incidents,
//! results and watermarks to them.
//!
//! Guarantees: everything runs in event time (watermarks, detections,
//! results applied at the watermark that passes their `finished_at`), so a
//! replay of the same input and results yields the same records. Ids and
//! idempotency keys derive from the incident, the ladder step and the
//! target; every action (steps, approvals, undos) is signed when a key is
//! set. Keying: per incident.

pub mod approval;
pub mod config;
mod effects;
pub mod guards;
pub mod learn;
pub mod plan;
pub mod risk;
// Signing is part of the contract (executors verify it): the old path stays.
pub use crate::model::sign;
mod state;
pub mod verify;

pub use approval::ApprovalError;
pub use config::{ActionCatalog, RecoveryConfig};

use crate::diagnosis::catalog::Catalog;
use crate::model::{
    ActionResult, ActionStatus, Category, Escalation, EventTime, Incident, IncidentStatus,
    RecoveryAction,
};
use crate::stage::stats::Stats;
use crate::stage::Stage;
use config::ActionStep;
use guards::Guards;
use learn::Learned;
use state::{Episode, Event, Phase};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use verify::{Activity, Outcome, Signals};

/// What the recovery stage emits. (Both variants are handed on at once,
/// never stored in bulk, so the size difference does not matter.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum RecoveryOutput {
    Action(Box<RecoveryAction>),
    Escalation(Escalation),
}

/// An incident verified as recovered: the diagnosis stage publishes it
/// `resolved` with this evidence line.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub incident_id: String,
    pub at: EventTime,
    pub evidence: String,
}

/// Actions on a target older than this no longer raise the risk of the next
/// one: "recent attempts" means the last hour of event time.
const RECENT_ATTEMPTS_MS: i64 = 3_600_000;

/// Executor results remembered (bounded state; the oldest keys go first).
const MAX_RESULTS: usize = 4096;

/// Finished episodes remembered (for relapse/flap and late results).
const MAX_EPISODES: usize = 4096;

/// Default `min_open_score` of the diagnosis stage (what counts as a strong detection).
const DEFAULT_MIN_SCORE: f64 = 0.5;

/// The recovery stage.
pub struct RecoveryStage {
    cfg: RecoveryConfig,
    actions: ActionCatalog,
    catalog: Arc<Catalog>,
    signing_key: Option<Vec<u8>>,
    min_score: f64,
    /// (incident, root, category) already handled.
    handled: BTreeSet<(String, String, Category)>,
    /// When actions were taken, per target service (for the attempts factor;
    /// only those within [`RECENT_ATTEMPTS_MS`] count, older ones are dropped).
    attempts: BTreeMap<String, Vec<EventTime>>,
    /// Latest executor result per idempotency key (see [`RecoveryStage::on_result`]).
    results: BTreeMap<String, ActionResult>,
    episodes: BTreeMap<String, Episode>,
    /// Idempotency key → incident.
    by_key: BTreeMap<String, String>,
    /// Pending approvals: action id → incident.
    pending: BTreeMap<String, String>,
    /// Approvals already decided or expired: action id → expired?
    decided: BTreeMap<String, bool>,
    guards: Guards,
    learned: Learned,
    signals: Signals,
    watermark: EventTime,
    resolutions: Vec<Resolution>,
    stats: Arc<Stats>,
}

impl RecoveryStage {
    /// Builds the stage. `healing_env_off` is `REFLEX_HEALING=off` as read by
    /// the caller. With `learning_file` set, the learned success rates are
    /// loaded from it (an unreadable file is logged and learning starts
    /// empty, still writing to it).
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
        let learned = match &cfg.learning_file {
            None => Learned::in_memory(),
            Some(p) => Learned::open(p).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "Learned success rates not loaded; starting empty.");
                Learned::in_memory()
            }),
        };
        RecoveryStage {
            guards: Guards::new(cfg.guards.clone()),
            cfg,
            actions,
            catalog,
            signing_key,
            min_score: DEFAULT_MIN_SCORE,
            handled: BTreeSet::new(),
            attempts: BTreeMap::new(),
            results: BTreeMap::new(),
            episodes: BTreeMap::new(),
            by_key: BTreeMap::new(),
            pending: BTreeMap::new(),
            decided: BTreeMap::new(),
            learned,
            signals: Signals::default(),
            watermark: EventTime(i64::MIN),
            resolutions: Vec::new(),
            stats,
        }
    }

    /// Sets the score a detection needs to count as trouble in verification
    /// (the diagnosis stage's `min_open_score`).
    pub fn set_min_score(&mut self, s: f64) {
        self.min_score = s;
    }

    /// The learned success rates.
    pub fn learned(&self) -> &Learned {
        &self.learned
    }

    /// Whether the circuit breaker is open (observe-only).
    pub fn breaker_open(&self) -> bool {
        self.guards.breaker_open()
    }

    /// Closes the circuit breaker (an operator's reset).
    pub fn reset_breaker(&mut self) {
        self.guards.reset_breaker();
        self.stats.breaker_open.store(0, Ordering::Relaxed);
        tracing::info!(
            guard = "circuit_breaker",
            "Circuit breaker reset by request."
        );
    }

    /// Actions in flight (emitted `auto`, not yet verified).
    pub fn in_flight(&self) -> usize {
        self.guards.in_flight()
    }

    /// The stage's watermark.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// Incidents verified as recovered since the last call; the caller has
    /// the diagnosis stage publish each `resolved`.
    pub fn take_resolutions(&mut self) -> Vec<Resolution> {
        std::mem::take(&mut self.resolutions)
    }

    /// A detection, for verification.
    pub fn observe(&mut self, d: &crate::model::Detection) {
        self.signals.observe(d);
    }

    /// The latest result recorded for an idempotency key.
    pub fn result(&self, idempotency_key: &str) -> Option<&ActionResult> {
        self.results.get(idempotency_key)
    }

    /// An executor's result for one of this stage's actions, applied in
    /// event time (the caller hands it in at the first watermark ≥ its
    /// `finished_at`). Success starts verification; failure or rejection
    /// is learned and moves the ladder on.
    pub fn on_result(&mut self, r: &ActionResult, out: &mut Vec<RecoveryOutput>) {
        if self.results.len() >= MAX_RESULTS && !self.results.contains_key(&r.idempotency_key) {
            self.results.pop_first();
        }
        self.results.insert(r.idempotency_key.clone(), r.clone());
        let Some(id) = self.by_key.get(&r.idempotency_key).cloned() else {
            return;
        };
        let Some(mut ep) = self.episodes.remove(&id) else {
            return;
        };
        let current = ep
            .action
            .as_ref()
            .is_some_and(|a| a.idempotency_key == r.idempotency_key);
        if !current || !matches!(ep.phase, Phase::AwaitingResult { .. }) {
            self.episodes.insert(id, ep);
            return;
        }
        let at = r.finished_at.max(self.watermark);
        match r.status {
            // Neither says anything about the action's effect: a duplicate
            // is the first attempt's business, a dry run did nothing (no
            // next step, no undo, nothing learned).
            ActionStatus::SkippedDuplicate | ActionStatus::SkippedDryRun => {}
            ActionStatus::Succeeded => {
                let step = self.step_of(&ep);
                let (grace, verify_for) = step
                    .map(|s| (s.grace.0, s.verify_for.0))
                    .unwrap_or((60_000, 240_000));
                ep.on(Event::Succeeded {
                    finished: r.finished_at,
                    grace_end: r.finished_at.plus_ms(grace),
                    end: r.finished_at.plus_ms(verify_for),
                    pre: ep.pre.clone(),
                });
            }
            ActionStatus::Failed | ActionStatus::Rejected => {
                self.guards.release(&r.idempotency_key);
                self.guards.failed(at);
                self.breaker_gauge();
                let what = self.describe(&ep);
                if ep.undo {
                    ep.on(Event::Ended { verified: false });
                    self.escalate_ep(
                        &ep,
                        at,
                        format!(
                            "undo {what} did not complete ({}); a human must act",
                            r.detail
                        ),
                        out,
                    );
                } else {
                    self.learn(&ep, false);
                    let why = format!(
                        "{what} {} ({})",
                        if r.status == ActionStatus::Failed {
                            "failed"
                        } else {
                            "was rejected by the executor"
                        },
                        r.detail
                    );
                    ep.step += 1;
                    self.try_step(&mut ep, at, Some(why), out);
                }
            }
        }
        self.episodes.insert(id, ep);
    }

    fn step_of(&self, ep: &Episode) -> Option<&ActionStep> {
        self.actions
            .categories
            .get(&ep.inc.category)
            .and_then(|r| r.steps.get(ep.step))
    }

    fn describe(&self, ep: &Episode) -> String {
        ep.action.as_ref().map_or_else(String::new, |a| {
            format!("{} of {}", a.action_type.as_str(), a.target.service)
        })
    }

    fn learn(&mut self, ep: &Episode, success: bool) {
        let Some(a) = &ep.action else { return };
        if let Err(e) = self.learned.record(ep.inc.category, a.action_type, success) {
            tracing::warn!(error = %e, "Learned success rates not saved.");
        }
    }

    fn count_verification(&self, o: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|&x| x == o) {
            Stats::add(&self.stats.verifications[i], 1);
        }
    }

    /// Activity on the incident's services in the span before `at` as long
    /// as the step's verification window.
    fn pre_activity(&self, inc: &Incident, at: EventTime, step: &ActionStep) -> Activity {
        let len = (step.verify_for.0 - step.grace.0).max(1);
        self.signals
            .activity(&Self::services(inc), at.plus_ms(-len), at, self.min_score)
    }

    fn services(inc: &Incident) -> Vec<String> {
        let mut s = inc.services.clone();
        if !s.contains(&inc.root_cause_service) {
            s.push(inc.root_cause_service.clone());
        }
        s
    }

    /// Judges a finished verification window.
    fn conclude(&mut self, ep: &mut Episode, wm: EventTime, out: &mut Vec<RecoveryOutput>) {
        let Phase::Verifying {
            finished,
            grace_end,
            end,
            pre,
        } = ep.phase.clone()
        else {
            return;
        };
        let post = self
            .signals
            .activity(&Self::services(&ep.inc), grace_end, end, self.min_score);
        let outcome = verify::judge(&pre, &post);
        self.finish_verification(ep, outcome, finished, end, wm, out);
    }

    fn finish_verification(
        &mut self,
        ep: &mut Episode,
        outcome: Outcome,
        finished: EventTime,
        end: EventTime,
        wm: EventTime,
        out: &mut Vec<RecoveryOutput>,
    ) {
        self.count_verification(outcome);
        let key = ep
            .action
            .as_ref()
            .map(|a| a.idempotency_key.clone())
            .unwrap_or_default();
        self.guards.release(&key);
        let what = self.describe(ep);
        let root = ep.inc.root_cause_service.clone();
        tracing::info!(
            incident_id = %ep.inc.incident_id,
            outcome = outcome.as_str(),
            action = %what,
            "Verification finished."
        );
        if ep.undo {
            ep.on(Event::Ended { verified: false });
            return;
        }
        match outcome {
            Outcome::Recovered => {
                if let Some(r) = ep.rediagnosed.take() {
                    self.handled
                        .insert((r.incident_id, r.root_cause_service, r.category));
                }
                self.learn(ep, true);
                self.guards.verified(&root, end);
                ep.on(Event::Ended { verified: true });
                let quiet = (end.millis() - finished.millis()) / 1000;
                let evidence = format!(
                    "verified: {what} succeeded, no errors for {}",
                    if quiet % 60 == 0 {
                        format!("{}m", quiet / 60)
                    } else {
                        format!("{quiet}s")
                    }
                );
                self.resolutions.push(Resolution {
                    incident_id: ep.inc.incident_id.clone(),
                    at: end,
                    evidence,
                });
            }
            Outcome::NotRecovered => {
                self.learn(ep, false);
                self.guards.failed(wm);
                if let Some(mut next) = ep.rediagnosed.take() {
                    // Continue with the new diagnosis' ladder.
                    self.handled.insert((
                        next.incident_id.clone(),
                        next.root_cause_service.clone(),
                        next.category,
                    ));
                    next.updated_at = wm;
                    let tried = std::mem::take(&mut ep.tried);
                    *ep = Episode::new(next, tried);
                    self.try_step(
                        ep,
                        wm,
                        Some(format!("{what} succeeded but the errors went on")),
                        out,
                    );
                    self.breaker_gauge();
                    return;
                }
                ep.step += 1;
                self.try_step(
                    ep,
                    wm,
                    Some(format!("{what} succeeded but the errors went on")),
                    out,
                );
            }
            Outcome::Worse => {
                self.learn(ep, false);
                self.guards.failed(wm);
                ep.on(Event::Ended { verified: false });
                self.undo(ep, wm, out);
            }
            Outcome::Timeout => {
                ep.on(Event::Ended { verified: false });
                self.escalate_ep(
                    ep,
                    wm,
                    format!(
                        "no result from the executor for {what} within {}s; a human must check it",
                        self.cfg.result_timeout.0 / 1000
                    ),
                    out,
                );
            }
        }
        self.breaker_gauge();
    }

    fn start(&mut self, inc: Incident, out: &mut Vec<RecoveryOutput>) {
        if let Some(old) = self.episodes.remove(&inc.incident_id) {
            if let Some(a) = &old.action {
                self.guards.release(&a.idempotency_key);
                self.pending.remove(&a.action_id);
            }
        }
        let mut ep = Episode::new(inc.clone(), Vec::new());
        self.try_step(&mut ep, inc.updated_at, None, out);
        self.insert_episode(ep);
    }

    fn insert_episode(&mut self, ep: Episode) {
        if self.episodes.len() >= MAX_EPISODES && !self.episodes.contains_key(&ep.inc.incident_id) {
            let done = self
                .episodes
                .iter()
                .find(|(_, e)| matches!(e.phase, Phase::Done { .. }))
                .map(|(k, _)| k.clone());
            if let Some(k) = done.or_else(|| self.episodes.keys().next().cloned()) {
                self.episodes.remove(&k);
            }
        }
        self.episodes.insert(ep.inc.incident_id.clone(), ep);
    }
}

impl Stage for RecoveryStage {
    type In = Incident;
    type Out = RecoveryOutput;

    fn process(&mut self, inc: Incident, out: &mut Vec<RecoveryOutput>) {
        if inc.status == IncidentStatus::Resolved {
            // Diagnosis saw the incident go quiet: during verification that
            // is a recovery; otherwise the episode simply ends.
            if let Some(mut ep) = self.episodes.remove(&inc.incident_id) {
                ep.inc.status = IncidentStatus::Resolved;
                if let Phase::Verifying { finished, end, .. } = ep.phase.clone() {
                    let at = inc
                        .resolved_at
                        .unwrap_or(inc.updated_at)
                        .max(self.watermark);
                    self.finish_verification(&mut ep, Outcome::Recovered, finished, end, at, out);
                    // Already resolved: nothing more to publish.
                    self.resolutions
                        .retain(|r| r.incident_id != inc.incident_id);
                } else if let Phase::AwaitingResult { .. } = ep.phase {
                    // The fault ended before any executor reported: nothing
                    // left to verify or escalate (a late result is recorded).
                    if let Some(a) = &ep.action {
                        self.guards.release(&a.idempotency_key);
                        tracing::info!(
                            incident_id = %inc.incident_id,
                            action_id = %a.action_id,
                            "Incident resolved before the action's result arrived."
                        );
                    }
                    ep.on(Event::Ended { verified: false });
                }
                self.insert_episode(ep);
            }
            return;
        }
        let key = (
            inc.incident_id.clone(),
            inc.root_cause_service.clone(),
            inc.category,
        );
        let busy_same_root = self.episodes.get(&inc.incident_id).is_some_and(|e| {
            e.inc.root_cause_service == inc.root_cause_service
                && matches!(
                    e.phase,
                    Phase::AwaitingResult { .. } | Phase::Verifying { .. }
                )
                && !e.undo
        });
        if busy_same_root && !self.handled.contains(&key) {
            if let Some(ep) = self.episodes.get_mut(&inc.incident_id) {
                tracing::info!(
                    incident_id = %inc.incident_id,
                    category = %inc.category,
                    "Re-diagnosed while an action is verified; the verification decides first."
                );
                ep.rediagnosed = Some(inc);
            }
            return;
        }
        if !self.handled.insert(key) {
            // Same diagnosis: keep the latest record; a reopen after a
            // verified fix is a relapse (the flap guard decides).
            let relapse = inc.status == IncidentStatus::Open
                && self
                    .episodes
                    .get(&inc.incident_id)
                    .is_some_and(|e| e.phase == Phase::Done { verified: true });
            if relapse {
                self.start(inc, out);
            } else if let Some(ep) = self.episodes.get_mut(&inc.incident_id) {
                let services = ep.inc.services.clone();
                ep.inc = inc;
                for s in services {
                    if !ep.inc.services.contains(&s) {
                        ep.inc.services.push(s);
                    }
                }
            }
            return;
        }
        self.start(inc, out);
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<RecoveryOutput>) {
        if wm <= self.watermark {
            return;
        }
        self.watermark = wm;
        self.guards.on_watermark(wm);
        // Bounded bookkeeping: forget the oldest handled diagnoses and
        // decided approvals beyond the episode bound.
        while self.handled.len() > 4 * MAX_EPISODES {
            self.handled.pop_first();
        }
        while self.decided.len() > MAX_EPISODES {
            self.decided.pop_first();
        }
        self.breaker_gauge();
        self.signals.prune(wm);
        let due: Vec<String> = self
            .episodes
            .iter()
            .filter(|(_, e)| match &e.phase {
                Phase::AwaitingResult { deadline } => *deadline <= wm,
                Phase::Verifying { end, .. } => *end <= wm,
                Phase::AwaitingApproval => e.action.as_ref().is_some_and(|a| a.expires_at <= wm),
                Phase::Done { .. } => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let Some(mut ep) = self.episodes.remove(&id) else {
                continue;
            };
            match ep.phase.clone() {
                Phase::AwaitingResult { deadline } => {
                    self.finish_verification(
                        &mut ep,
                        Outcome::Timeout,
                        deadline,
                        deadline,
                        wm,
                        out,
                    );
                }
                Phase::Verifying { .. } => self.conclude(&mut ep, wm, out),
                Phase::AwaitingApproval => {
                    if let Some(a) = &ep.action {
                        self.pending.remove(&a.action_id);
                        self.decided.insert(a.action_id.clone(), true);
                        tracing::info!(
                            incident_id = %ep.inc.incident_id,
                            action_id = %a.action_id,
                            "Approval request expired."
                        );
                    }
                    ep.on(Event::Ended { verified: false });
                }
                Phase::Done { .. } => {}
            }
            self.insert_episode(ep);
        }
    }
}
