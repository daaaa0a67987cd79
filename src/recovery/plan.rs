//! What one ladder step of an incident should do, as a pure function:
//! [`plan_step`] turns the facts gathered by the stage ([`StepFacts`]) into
//! a [`StepPlan`] — escalate (nothing remediable, ladder exhausted, risk
//! above the approval limit), held by a guard, or emit an action with a
//! [`Verdict`] (`auto`, `approval_required`, or a dry run). The stage then
//! applies the plan's effects (outputs, guard admission, episode state).
//!
//! Guarantees (unit- and property-tested below):
//! - No I/O, no clock, no state: the same facts and guard answer give the
//!   same plan, byte for byte.
//! - The guards are consulted only for an action the policy allows (risk at
//!   most the approval limit), exactly once; a guard hold never emits an
//!   action.
//! - `auto` only when the risk is at most the auto threshold, the diagnosis
//!   is confident enough and no change freeze covers the target.
//! - A dry run is a verdict, decided here only: it always comes with an
//!   escalation saying nothing will change, and only a dry run's action
//!   carries the decision `dry_run` (which every executor refuses).
//! - Ids and idempotency keys derive from the incident, the ladder step and
//!   the target.

use super::config::{ActionStep, CategoryRemedy, Policy};
use super::guards::{Guard, Request};
use super::learn::Learned;
use super::risk;
use crate::diagnosis::catalog::Criticality;
use crate::model::{
    ActionParams, ActionType, Category, Decision, EventTime, Incident, RecoveryAction, Target,
};
use crate::util::stable_id;

/// Everything one step's plan depends on, read from the stage's state and
/// configuration before planning.
#[derive(Debug, Clone, Copy)]
pub struct StepFacts<'a> {
    pub inc: &'a Incident,
    /// The category's remedy (empty when the catalog has none).
    pub remedy: &'a CategoryRemedy,
    /// The ladder step to start from (later ones are tried when its
    /// preconditions do not hold).
    pub from: usize,
    /// Labels of what was tried before ("restart payments").
    pub tried: &'a [String],
    /// Why the previous step did not do, for the reason texts.
    pub why: Option<&'a str>,
    pub at: EventTime,
    /// The root's instance count now.
    pub replicas: i64,
    pub target: &'a Target,
    pub criticality: Criticality,
    pub env: risk::Env,
    pub learned: &'a Learned,
    /// Actions on the root within the last hour of event time.
    pub recent_attempts: u32,
    /// A change freeze covers the root at `at`.
    pub frozen: bool,
    /// A maintenance window covers the root at `at`.
    pub maintenance: bool,
    pub policy: Policy,
    pub action_ttl_ms: i64,
}

/// An escalation to publish: its reason and suggested actions (the stage
/// adds ids, team and summary).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationPlan {
    pub reason: String,
    pub suggested: Vec<String>,
}

/// Why a step ends in an escalation without an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalateCause {
    /// No remedy steps for the category, or an external root.
    NotRemediable,
    /// No ladder step left whose preconditions hold.
    Exhausted,
    /// The chosen step's risk is above the approval limit.
    AboveApprovalLimit,
}

/// How an emitted action is to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Executors carry it out now.
    Auto,
    /// A human must approve it first.
    ApprovalRequired,
    /// Shown and recorded only; `policy` is what the policy decided (named
    /// in the escalation, so an operator sees what would have happened).
    DryRun { policy: Decision },
}

impl Verdict {
    /// The record's `decision` field. A dry run is the decision `dry_run`,
    /// never the policy's: an executor that acts on `auto` must not be
    /// able to act on a dry run by ignoring a parameter.
    pub fn record_decision(self) -> Decision {
        match self {
            Verdict::Auto => Decision::Auto,
            Verdict::ApprovalRequired => Decision::ApprovalRequired,
            Verdict::DryRun { .. } => Decision::DryRun,
        }
    }
}

/// The step chosen on the ladder, with what the guards were asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// Index of the step on the ladder.
    pub index: usize,
    pub step: ActionStep,
    /// `"restart payments"`.
    pub label: String,
    /// Instances the action disrupts at once.
    pub touched: f64,
    pub risk: f64,
}

/// The outcome of planning one step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Escalate {
        cause: EscalateCause,
        escalation: EscalationPlan,
    },
    Held {
        guard: Guard,
        escalation: EscalationPlan,
    },
    Emit {
        /// Unsigned (the stage signs it).
        action: Box<RecoveryAction>,
        verdict: Verdict,
        /// Approval requests and dry runs also escalate.
        escalation: Option<EscalationPlan>,
    },
}

/// The plan for one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// Where the ladder stands afterwards (past skipped steps).
    pub step: usize,
    /// Steps skipped because their preconditions do not hold (index, action).
    pub skipped: Vec<(usize, ActionType)>,
    /// The step chosen, if any step's preconditions held.
    pub chosen: Option<Chosen>,
    pub kind: StepKind,
}

impl StepPlan {
    /// The action this plan emits, if any.
    pub fn action(&self) -> Option<&RecoveryAction> {
        match &self.kind {
            StepKind::Emit { action, .. } => Some(action),
            _ => None,
        }
    }
}

/// Instances an action disrupts at once: rolling restarts and rollbacks
/// replace a quarter of the instances at a time (Kubernetes' default
/// `maxUnavailable`), at least one; a pod deletion or node drain one;
/// scaling up none, scaling down the instances removed.
pub fn touched(t: ActionType, replicas: i64, new_replicas: Option<i64>) -> f64 {
    match t {
        ActionType::Restart | ActionType::Rollback => ((replicas as f64) / 4.0).ceil().max(1.0),
        ActionType::DeletePod | ActionType::DrainNode | ActionType::RunRunbook => 1.0,
        ActionType::Scale => (replicas - new_replicas.unwrap_or(replicas)).max(0) as f64,
    }
}

/// The idempotency key of ladder step `step` (or of its undo) on `service`.
pub fn idem_key(inc: &str, step: u32, undo: bool, t: ActionType, service: &str) -> String {
    let step = step.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![inc.as_bytes(), &step];
    if undo {
        parts.push(b"undo");
    }
    parts.push(t.as_str().as_bytes());
    parts.push(service.as_bytes());
    stable_id("idem-", &parts)
}

/// Whether a step may be tried for this diagnosis.
pub fn preconditions_hold(step: &ActionStep, inc: &Incident, new_replicas: Option<i64>) -> bool {
    let p = &step.preconditions;
    if p.min_confidence.is_some_and(|m| inc.confidence < m) {
        return false;
    }
    if let (Some(max), Some(n)) = (p.max_replicas, new_replicas) {
        if n > max {
            return false;
        }
    }
    if p.recent_change {
        let tied = inc.evidence.iter().any(|e| {
            let e = e.to_ascii_lowercase();
            e.contains("change") || e.contains("version") || e.contains("deploy")
        });
        if !tied {
            return false;
        }
    }
    true
}

/// `scale`'s new replica count (other actions: none).
fn new_replicas(step: &ActionStep, replicas: i64) -> Option<i64> {
    (step.action == ActionType::Scale).then(|| replicas + step.scale_by.unwrap_or(1))
}

/// The policy's decision for a risk: `None` means above the approval limit.
pub fn decide(risk: f64, confidence: f64, policy: &Policy, frozen: bool) -> Option<Decision> {
    if risk <= policy.auto_max_risk && confidence >= policy.min_confidence && !frozen {
        Some(Decision::Auto)
    } else if risk <= policy.approval_max_risk {
        Some(Decision::ApprovalRequired)
    } else {
        None
    }
}

/// Plans ladder step `facts.from` (or the first later one whose
/// preconditions hold). `check` is asked, at most once, which guard holds
/// the chosen action back (`Guard::DryRun`: emit it as a dry run).
pub fn plan_step(
    facts: &StepFacts<'_>,
    check: impl FnOnce(&Request<'_>) -> Option<Guard>,
) -> StepPlan {
    let inc = facts.inc;
    let root = inc.root_cause_service.as_str();
    let suggestions = &facts.remedy.suggestions;
    let escalate = |step, skipped, chosen, cause, reason, suggested| StepPlan {
        step,
        skipped,
        chosen,
        kind: StepKind::Escalate {
            cause,
            escalation: EscalationPlan { reason, suggested },
        },
    };
    if facts.remedy.steps.is_empty() || inc.category == Category::DependencyFailure {
        return escalate(
            facts.from,
            Vec::new(),
            None,
            EscalateCause::NotRemediable,
            format!(
                "{} is not remediated automatically; a human must act",
                inc.category
            ),
            suggestions.clone(),
        );
    }
    let mut index = facts.from;
    let mut skipped = Vec::new();
    let mut found = None;
    while let Some(step) = facts.remedy.steps.get(index) {
        let n = new_replicas(step, facts.replicas);
        if preconditions_hold(step, inc, n) {
            found = Some((step, n));
            break;
        }
        skipped.push((index, step.action));
        index += 1;
    }
    let Some((step, new_replicas)) = found else {
        let tried = if facts.tried.is_empty() {
            "no step's preconditions held".to_string()
        } else {
            format!("tried {}", facts.tried.join(", then "))
        };
        return escalate(
            index,
            skipped,
            None,
            EscalateCause::Exhausted,
            format!(
                "remedy ladder exhausted for {} on {root} ({tried}){}; a human must act",
                inc.category,
                facts.why.map_or(String::new(), |w| format!("; last: {w}"))
            ),
            suggestions.clone(),
        );
    };
    let current = facts.replicas;
    let touched = touched(step.action, current, new_replicas);
    let risk = risk::risk(&risk::RiskInputs {
        base_risk: step.base_risk,
        confidence: inc.confidence,
        criticality: facts.criticality,
        blast_radius: if current > 0 {
            (touched / current as f64).min(1.0)
        } else {
            0.0
        },
        success_rate: facts.learned.success_rate(inc.category, step.action),
        env: facts.env,
        recent_attempts: facts.recent_attempts,
        in_window: facts.frozen || facts.maintenance,
    });
    let step_no = index as u32 + 1;
    let label = format!("{} {root}", step.action.as_str());
    let chosen = Chosen {
        index,
        step: step.clone(),
        label: label.clone(),
        touched,
        risk,
    };
    let mut with_label = vec![label.clone()];
    with_label.extend(suggestions.iter().cloned());
    let Some(decision) = decide(risk, inc.confidence, &facts.policy, facts.frozen) else {
        return escalate(
            index,
            skipped,
            Some(chosen),
            EscalateCause::AboveApprovalLimit,
            format!(
                "risk {risk:.2} of {} on {root} (step {step_no}) is above the approval limit{}",
                step.action.as_str(),
                facts
                    .why
                    .map_or(String::new(), |w| format!("; earlier: {w}"))
            ),
            with_label,
        );
    };
    let held = check(&Request {
        service: root,
        incident_id: &inc.incident_id,
        touched,
        replicas: current,
        at: facts.at,
        undo: false,
    });
    let verdict = match held {
        None => match decision {
            Decision::Auto => Verdict::Auto,
            Decision::ApprovalRequired => Verdict::ApprovalRequired,
            // `decide` never answers a dry run: only the guard does.
            Decision::DryRun => Verdict::DryRun { policy: decision },
        },
        Some(Guard::DryRun) => Verdict::DryRun { policy: decision },
        Some(guard) => {
            let reason = if guard == Guard::KillSwitch {
                "automatic healing is switched off (held by guard kill_switch)".to_string()
            } else {
                format!(
                    "held by guard {}: {}; not done: {label} (step {step_no})",
                    guard.as_str(),
                    guard.explain(),
                )
            };
            return StepPlan {
                step: index,
                skipped,
                chosen: Some(chosen),
                kind: StepKind::Held {
                    guard,
                    escalation: EscalationPlan {
                        reason,
                        suggested: with_label,
                    },
                },
            };
        }
    };
    let action = step_action(facts, step, index, new_replicas, risk, verdict);
    let escalation = match verdict {
        Verdict::Auto => None,
        Verdict::ApprovalRequired => {
            let mut suggested = vec![format!("approve {} ({label})", action.action_id)];
            suggested.extend(suggestions.iter().cloned());
            Some(EscalationPlan {
                reason: format!(
                    "approval required: risk {risk:.2}, confidence {:.2} (step {step_no}: {label})",
                    inc.confidence,
                ),
                suggested,
            })
        }
        Verdict::DryRun { policy } => Some(EscalationPlan {
            reason: format!(
                "held by guard dry_run: {}; {label} (step {step_no}) was emitted as a dry run only (policy: {})",
                Guard::DryRun.explain(),
                policy.as_str(),
            ),
            suggested: with_label,
        }),
    };
    StepPlan {
        step: index,
        skipped,
        chosen: Some(chosen),
        kind: StepKind::Emit {
            action: Box::new(action),
            verdict,
            escalation,
        },
    }
}

/// How to revert an action reflex took: `scale` back to the previous
/// replica count, roll forward after a `rollback`; `None` when it cannot be
/// undone automatically.
pub fn undo_params(t: ActionType, previous_replicas: Option<i64>) -> Option<ActionParams> {
    let mut params = ActionParams::default();
    match t {
        ActionType::Scale => params.replicas = Some(previous_replicas?),
        ActionType::Rollback => {
            params.direction = Some(crate::model::RollbackDirection::Forward);
        }
        _ => return None,
    }
    Some(params)
}

/// The (unsigned, `auto`) action reverting `done`, ladder step `step`;
/// `what` names it ("scale of payments").
pub fn undo_action(
    done: &RecoveryAction,
    params: ActionParams,
    step: usize,
    what: &str,
    at: EventTime,
    action_ttl_ms: i64,
) -> RecoveryAction {
    let key = idem_key(
        &done.incident_id,
        step as u32,
        true,
        done.action_type,
        &done.target.service,
    );
    RecoveryAction {
        action_id: stable_id("act-", &[key.as_bytes()]),
        incident_id: done.incident_id.clone(),
        created_at: at,
        action_type: done.action_type,
        target: done.target.clone(),
        params,
        risk: done.risk,
        decision: Decision::Auto,
        idempotency_key: key,
        reason: format!(
            "undo: {what} made things worse; reverting it ({})",
            if done.action_type == ActionType::Scale {
                "scale back to the previous replica count"
            } else {
                "roll forward to the revision live before the rollback"
            }
        ),
        expires_at: at.plus_ms(action_ttl_ms),
        signature: None,
    }
}

/// The (unsigned) action record of a chosen step.
fn step_action(
    facts: &StepFacts<'_>,
    step: &ActionStep,
    index: usize,
    new_replicas: Option<i64>,
    risk: f64,
    verdict: Verdict,
) -> RecoveryAction {
    let inc = facts.inc;
    let root = inc.root_cause_service.as_str();
    let mut params = ActionParams::default();
    match step.action {
        ActionType::Scale => params.replicas = new_replicas,
        ActionType::RunRunbook => params.runbook.clone_from(&step.runbook),
        _ => {}
    }
    let idempotency_key = idem_key(
        &inc.incident_id,
        index as u32,
        false,
        step.action,
        &facts.target.service,
    );
    let effect = step
        .expected_effect
        .as_deref()
        .map_or(String::new(), |e| format!(" (expected: {e})"));
    let reason = format!(
        "{} diagnosed on {root} (confidence {:.2}); remedy step {}: {}{effect}{}{}",
        inc.category,
        inc.confidence,
        index + 1,
        step.action.as_str(),
        if facts.frozen {
            " (change freeze in effect)"
        } else {
            ""
        },
        facts
            .why
            .map_or(String::new(), |w| format!("; previous step: {w}"))
    );
    RecoveryAction {
        action_id: stable_id("act-", &[idempotency_key.as_bytes()]),
        incident_id: inc.incident_id.clone(),
        created_at: facts.at,
        action_type: step.action,
        target: facts.target.clone(),
        params,
        risk,
        decision: verdict.record_decision(),
        idempotency_key,
        reason,
        expires_at: facts.at.plus_ms(facts.action_ttl_ms),
        signature: None,
    }
}

#[cfg(test)]
mod tests;
