//! Tests of the recovery planner: the policy decision of a step (auto,
//! approval, skipped), the ladder moving on and escalating with what was
//! tried, external roots never acted on, dry runs, what undo reverts, and
//! properties over random plans.

use super::*;
use crate::model::{DurationMs, Severity};
use crate::recovery::config::Preconditions;
use proptest::prelude::*;
use std::cell::Cell;

fn incident(category: Category, confidence: f64) -> Incident {
    Incident {
        incident_id: "inc-1".into(),
        status: crate::model::IncidentStatus::Open,
        opened_at: EventTime(0),
        updated_at: EventTime(0),
        resolved_at: None,
        root_cause_service: "payments".into(),
        category,
        confidence,
        services: vec!["payments".into(), "checkout".into()],
        summary: "payments is out of memory".into(),
        evidence: vec!["OOMKilled".into()],
        namespace: Some("shop".into()),
        severity: Severity::Error,
    }
}

fn step(action: ActionType, base_risk: f64) -> ActionStep {
    ActionStep {
        action,
        base_risk,
        scale_by: None,
        runbook: None,
        expected_effect: None,
        preconditions: Preconditions::default(),
        grace: DurationMs(60_000),
        verify_for: DurationMs(240_000),
    }
}

fn target() -> Target {
    Target {
        service: "payments".into(),
        namespace: Some("shop".into()),
        kind: "Deployment".into(),
        name: "payments".into(),
    }
}

const POLICY: Policy = Policy {
    auto_max_risk: 0.5,
    approval_max_risk: 0.8,
    min_confidence: 0.6,
};

#[derive(Debug)]
struct World {
    inc: Incident,
    remedy: CategoryRemedy,
    target: Target,
    learned: Learned,
    tried: Vec<String>,
}

impl World {
    fn new(inc: Incident, steps: Vec<ActionStep>) -> Self {
        World {
            inc,
            remedy: CategoryRemedy {
                steps,
                suggestions: vec!["check the heap".into()],
            },
            target: target(),
            learned: Learned::in_memory(),
            tried: Vec::new(),
        }
    }

    fn facts(&self) -> StepFacts<'_> {
        StepFacts {
            inc: &self.inc,
            remedy: &self.remedy,
            from: 0,
            tried: &self.tried,
            why: None,
            at: EventTime(1_000_000),
            replicas: 4,
            target: &self.target,
            criticality: Criticality::Low,
            env: risk::Env::Development,
            learned: &self.learned,
            recent_attempts: 0,
            frozen: false,
            maintenance: false,
            policy: POLICY,
            action_ttl_ms: 900_000,
        }
    }
}

#[test]
fn a_low_risk_confident_step_goes_out_auto() {
    let w = World::new(
        incident(Category::MemoryExhaustion, 0.9),
        vec![step(ActionType::Restart, 0.1)],
    );
    let p = plan_step(&w.facts(), |_| None);
    let StepKind::Emit {
        action,
        verdict,
        escalation,
    } = &p.kind
    else {
        panic!("{p:?}");
    };
    assert_eq!(*verdict, Verdict::Auto);
    assert!(escalation.is_none());
    assert_eq!(action.decision, Decision::Auto);
    assert_eq!(
        action.idempotency_key,
        idem_key("inc-1", 0, false, ActionType::Restart, "payments")
    );
    assert_eq!(action.expires_at, EventTime(1_900_000));
    assert_eq!(
        action.reason,
        "memory_exhaustion diagnosed on payments (confidence 0.90); remedy step 1: restart"
    );
    assert!(!action.params.args.contains_key("dry_run"));
}

#[test]
fn skipped_steps_are_reported_and_the_ladder_moves_on() {
    let mut scale = step(ActionType::Scale, 0.1);
    scale.scale_by = Some(2);
    let mut gated = step(ActionType::Rollback, 0.1);
    gated.preconditions.recent_change = true;
    let w = World::new(
        incident(Category::MemoryExhaustion, 0.9),
        vec![gated, scale],
    );
    let p = plan_step(&w.facts(), |_| None);
    assert_eq!(p.skipped, vec![(0, ActionType::Rollback)]);
    assert_eq!(p.step, 1);
    let a = p.action().expect("the scale step goes out");
    assert_eq!(a.params.replicas, Some(6));
    assert!(a.reason.contains("remedy step 2: scale"), "{}", a.reason);
}

#[test]
fn an_exhausted_ladder_escalates_with_what_was_tried() {
    let w = World {
        tried: vec!["restart payments".into(), "scale payments".into()],
        ..World::new(
            incident(Category::MemoryExhaustion, 0.9),
            vec![step(ActionType::Restart, 0.1)],
        )
    };
    let facts = StepFacts {
        from: 1,
        why: Some("scale of payments failed (quota)"),
        ..w.facts()
    };
    let p = plan_step(&facts, |_| panic!("no guard is asked without a step"));
    let StepKind::Escalate { cause, escalation } = &p.kind else {
        panic!("{p:?}");
    };
    assert_eq!(*cause, EscalateCause::Exhausted);
    assert_eq!(
        escalation.reason,
        "remedy ladder exhausted for memory_exhaustion on payments (tried restart payments, then scale payments); last: scale of payments failed (quota); a human must act"
    );
    assert_eq!(escalation.suggested, vec!["check the heap".to_string()]);
}

#[test]
fn external_roots_are_never_acted_on() {
    let w = World::new(
        incident(Category::DependencyFailure, 1.0),
        vec![step(ActionType::Restart, 0.0)],
    );
    let p = plan_step(&w.facts(), |_| panic!("no guard is asked"));
    assert!(matches!(
        p.kind,
        StepKind::Escalate {
            cause: EscalateCause::NotRemediable,
            ..
        }
    ));
}

#[test]
fn a_dry_run_is_the_decision_dry_run_with_an_escalation_naming_the_policy() {
    let w = World::new(
        incident(Category::MemoryExhaustion, 0.9),
        vec![step(ActionType::Restart, 0.1)],
    );
    let p = plan_step(&w.facts(), |_| Some(Guard::DryRun));
    let StepKind::Emit {
        action,
        verdict,
        escalation,
    } = &p.kind
    else {
        panic!("{p:?}");
    };
    assert_eq!(
        *verdict,
        Verdict::DryRun {
            policy: Decision::Auto
        }
    );
    // The decision itself says dry run (no free-form marker that an
    // executor could ignore).
    assert_eq!(action.decision, Decision::DryRun);
    assert!(action.params.args.is_empty(), "{:?}", action.params.args);
    let e = escalation.as_ref().expect("a dry run escalates");
    assert!(
        e.reason.starts_with("held by guard dry_run: "),
        "{}",
        e.reason
    );
    assert!(e.reason.ends_with("(policy: auto)"), "{}", e.reason);
    assert_eq!(e.suggested[0], "restart payments");
}

#[test]
fn undo_reverts_scale_and_rollback_only() {
    assert_eq!(
        undo_params(ActionType::Scale, Some(3)).and_then(|p| p.replicas),
        Some(3)
    );
    assert!(undo_params(ActionType::Scale, None).is_none());
    let fwd = undo_params(ActionType::Rollback, None).expect("rollback is reversible");
    assert_eq!(
        fwd.direction,
        Some(crate::model::RollbackDirection::Forward)
    );
    assert!(fwd.args.is_empty());
    for t in [
        ActionType::Restart,
        ActionType::DeletePod,
        ActionType::DrainNode,
        ActionType::RunRunbook,
    ] {
        assert!(undo_params(t, Some(2)).is_none());
    }
    let w = World::new(
        incident(Category::Overload, 0.9),
        vec![step(ActionType::Scale, 0.1)],
    );
    let done = plan_step(&w.facts(), |_| None)
        .action()
        .cloned()
        .expect("scale goes out");
    let u = undo_action(
        &done,
        ActionParams::default(),
        0,
        "scale of payments",
        EventTime(5),
        10,
    );
    assert_ne!(u.idempotency_key, done.idempotency_key);
    assert_eq!(
        u.idempotency_key,
        idem_key("inc-1", 0, true, ActionType::Scale, "payments")
    );
    assert_eq!((u.decision, u.expires_at), (Decision::Auto, EventTime(15)));
}

fn guard(i: u8) -> Option<Guard> {
    (i > 0).then(|| Guard::ALL[(i as usize - 1) % Guard::ALL.len()])
}

fn category(i: u8) -> Category {
    Category::ALL[i as usize % Category::ALL.len()]
}

fn action_type(i: u8) -> ActionType {
    [
        ActionType::Restart,
        ActionType::DeletePod,
        ActionType::Scale,
        ActionType::Rollback,
        ActionType::DrainNode,
        ActionType::RunRunbook,
    ][i as usize % 6]
}

prop_compose! {
    fn world()(cat in 0u8..11, conf in 0.0f64..1.0,
               steps in prop::collection::vec((0u8..6, 0.0f64..1.0, prop::option::of(0.0f64..1.0), any::<bool>()), 0..4))
               -> World {
        let steps = steps.into_iter().map(|(t, r, min_conf, change)| {
            let mut s = step(action_type(t), r);
            s.preconditions.min_confidence = min_conf;
            s.preconditions.recent_change = change;
            s
        }).collect();
        World::new(incident(category(cat), conf), steps)
    }
}

proptest! {
    #[test]
    fn plans_keep_the_policy_and_guard_invariants(
        w in world(),
        from in 0usize..3,
        replicas in 0i64..10,
        attempts in 0u32..5,
        frozen: bool,
        maintenance: bool,
        auto in 0.0f64..1.0,
        band in 0.0f64..0.5,
        min_conf in 0.0f64..1.0,
        held in 0u8..10,
    ) {
        let policy = Policy { auto_max_risk: auto, approval_max_risk: (auto + band).min(1.0), min_confidence: min_conf };
        let facts = StepFacts { from, replicas, recent_attempts: attempts, frozen, maintenance, policy, ..w.facts() };
        let asked = Cell::new(0u32);
        let p = plan_step(&facts, |r| {
            asked.set(asked.get() + 1);
            assert_eq!((r.undo, r.service, r.at), (false, "payments", facts.at));
            guard(held)
        });
        // Deterministic: the same facts and guard answer, the same plan.
        prop_assert_eq!(&p, &plan_step(&facts, |_| guard(held)));
        prop_assert!(asked.get() <= 1);
        prop_assert!(p.step >= from);
        for (i, t) in &p.skipped {
            let s = &facts.remedy.steps[*i];
            prop_assert_eq!(s.action, *t);
            prop_assert!(!preconditions_hold(s, facts.inc, new_replicas(s, replicas)));
        }
        match &p.kind {
            StepKind::Escalate { cause, .. } => {
                prop_assert!(p.action().is_none());
                match cause {
                    EscalateCause::NotRemediable => prop_assert!(
                        facts.remedy.steps.is_empty() || facts.inc.category == Category::DependencyFailure),
                    EscalateCause::Exhausted => prop_assert_eq!(p.step, from.max(facts.remedy.steps.len())),
                    EscalateCause::AboveApprovalLimit => {
                        let c = p.chosen.as_ref().expect("a step was chosen");
                        prop_assert!(c.risk > policy.approval_max_risk);
                    }
                }
                // The guards are asked only about an action the policy allows.
                prop_assert_eq!(asked.get(), 0);
            }
            StepKind::Held { guard: g, escalation } => {
                // A guard hold never emits an action and names the guard.
                prop_assert_eq!(Some(*g), guard(held));
                prop_assert!(*g != Guard::DryRun);
                prop_assert!(p.action().is_none());
                prop_assert!(escalation.reason.contains(g.as_str()));
                prop_assert_eq!(asked.get(), 1);
            }
            StepKind::Emit { action, verdict, escalation } => {
                let c = p.chosen.as_ref().expect("a step was chosen");
                prop_assert_eq!(c.index, p.step);
                prop_assert!(preconditions_hold(&c.step, facts.inc, new_replicas(&c.step, replicas)));
                prop_assert!(matches!(guard(held), None | Some(Guard::DryRun)));
                prop_assert!(c.risk <= policy.approval_max_risk);
                prop_assert_eq!(action.risk, c.risk);
                prop_assert!((0.0..=1.0).contains(&action.risk));
                prop_assert_eq!(action.created_at, facts.at);
                prop_assert_eq!(action.decision, verdict.record_decision());
                // Never automatic above the auto threshold, unsure, or in a freeze.
                if action.decision == Decision::Auto {
                    prop_assert!(c.risk <= policy.auto_max_risk);
                    prop_assert!(facts.inc.confidence >= policy.min_confidence);
                    prop_assert!(!frozen);
                }
                let dry = matches!(verdict, Verdict::DryRun { .. });
                prop_assert_eq!(dry, guard(held) == Some(Guard::DryRun));
                prop_assert_eq!(dry, action.decision == Decision::DryRun);
                prop_assert!(!action.params.args.contains_key("dry_run"));
                prop_assert_eq!(escalation.is_some(), *verdict != Verdict::Auto);
                prop_assert_eq!(asked.get(), 1);
            }
        }
    }
}
