//! The recovery orchestrator (issue 7): guards, verification and ladders,
//! undo, approvals and learning, at the `RecoveryStage` and `Decider` level.
//!
//! Guard tests drive the stage with incidents directly; the end-to-end
//! tests feed detections, executor results and watermarks through the
//! `Decider` and read what it writes.

use reflex::config::Config;
use reflex::diagnosis::catalog::Catalog;
use reflex::model::{
    About, ActionResult, ActionStatus, ActionType, Category, CategoryHint, Decision, Detection,
    DetectorKind, DurationMs, EventTime, Incident, IncidentStatus, RecoveryAction, Severity,
    Window,
};
use reflex::pipeline::embedded::{DecideOptions, Decider};
use reflex::pipeline::stats::Stats;
use reflex::pipeline::Stage;
use reflex::recovery::config::{GuardsConfig, MaintenanceWindow};
use reflex::recovery::guards::Guard;
use reflex::recovery::learn::Learned;
use reflex::recovery::{ApprovalError, RecoveryConfig, RecoveryOutput, RecoveryStage};
use reflex::sinks::{Output, Sink, SinkError};
use std::sync::{Arc, Mutex};

const MIN: i64 = 60_000;
const T0: i64 = 1_772_431_200_000;

fn t(min: f64) -> EventTime {
    EventTime(T0 + (min * MIN as f64) as i64)
}

// ---------------------------------------------------------------- stage level

fn loose_guards() -> GuardsConfig {
    GuardsConfig {
        max_in_flight: 1000,
        max_services_in_flight: 1000,
        rate_limit: 1000,
        breaker_max_actions: 1000,
        breaker_max_failures: 1000,
        ..GuardsConfig::default()
    }
}

fn stage_with(cfg: RecoveryConfig) -> (RecoveryStage, Arc<Stats>) {
    let base = Config::embedded().expect("embedded config");
    let stats = Arc::new(Stats::default());
    let s = RecoveryStage::new(
        cfg,
        base.actions.clone(),
        Arc::new(Catalog::default()),
        None,
        false,
        stats.clone(),
    );
    (s, stats)
}

fn incident(id: &str, service: &str, at: EventTime) -> Incident {
    Incident {
        incident_id: id.into(),
        status: IncidentStatus::Open,
        opened_at: at,
        updated_at: at,
        resolved_at: None,
        root_cause_service: service.into(),
        category: Category::MemoryExhaustion,
        confidence: 0.9,
        services: vec![service.into()],
        summary: format!("{service} shows memory exhaustion"),
        evidence: vec![],
        namespace: Some("shop".into()),
        severity: Severity::Error,
    }
}

fn actions(out: &[RecoveryOutput]) -> Vec<&RecoveryAction> {
    out.iter()
        .filter_map(|o| match o {
            RecoveryOutput::Action(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect()
}

fn escalation_reasons(out: &[RecoveryOutput]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            RecoveryOutput::Escalation(e) => Some(e.reason.clone()),
            _ => None,
        })
        .collect()
}

fn holds(stats: &Stats, g: Guard) -> u64 {
    let i = Guard::ALL.iter().position(|&x| x == g).expect("guard");
    Stats::get(&stats.guard_holds[i])
}

fn succeeded(a: &RecoveryAction, at: EventTime) -> ActionResult {
    ActionResult {
        action_id: a.action_id.clone(),
        idempotency_key: a.idempotency_key.clone(),
        status: ActionStatus::Succeeded,
        detail: "done".into(),
        finished_at: at,
        executor: "test".into(),
    }
}

#[test]
fn storm_is_capped_by_the_rate_budget_and_trips_the_breaker() {
    let cfg = RecoveryConfig {
        guards: GuardsConfig {
            rate_limit: 10,
            breaker_max_actions: 20,
            ..loose_guards()
        },
        ..RecoveryConfig::default()
    };
    let (mut s, stats) = stage_with(cfg);
    let mut per_incident = Vec::new();
    for i in 0..50 {
        let mut out = Vec::new();
        s.process(
            incident(&format!("inc-{i}"), &format!("svc-{i}"), t(i as f64 * 0.1)),
            &mut out,
        );
        per_incident.push(out);
    }
    let all: Vec<RecoveryOutput> = per_incident.iter().flatten().cloned().collect();
    assert_eq!(
        actions(&all).len(),
        10,
        "no more actions than the rate budget"
    );
    assert!(s.breaker_open(), "the storm trips the breaker");
    assert_eq!(Stats::get(&stats.breaker_open), 1);
    let tripped = per_incident
        .iter()
        .position(|o| {
            escalation_reasons(o)
                .iter()
                .any(|r| r.contains("circuit_breaker"))
        })
        .expect("some incident is held by the breaker");
    for o in &per_incident[tripped..] {
        assert!(actions(o).is_empty(), "only escalations after the trip");
        assert_eq!(escalation_reasons(o).len(), 1);
    }
    assert_eq!(holds(&stats, Guard::RateBudget), 9);
    assert_eq!(holds(&stats, Guard::CircuitBreaker), 31);
    // An explicit reset closes it; actions flow again once the rate window passed.
    s.reset_breaker();
    assert!(!s.breaker_open());
    assert_eq!(Stats::get(&stats.breaker_open), 0);
    let mut out = Vec::new();
    s.process(incident("inc-late", "svc-late", t(30.0)), &mut out);
    assert_eq!(actions(&out).len(), 1, "{out:?}");
}

#[test]
fn kill_switch_means_zero_actions_but_escalations() {
    for (healing, env_off) in [(false, false), (true, true)] {
        let base = Config::embedded().expect("embedded config");
        let stats = Arc::new(Stats::default());
        let mut s = RecoveryStage::new(
            RecoveryConfig {
                healing,
                ..RecoveryConfig::default()
            },
            base.actions.clone(),
            Arc::new(Catalog::default()),
            None,
            env_off,
            stats.clone(),
        );
        let mut out = Vec::new();
        for i in 0..5 {
            s.process(
                incident(&format!("i{i}"), &format!("s{i}"), t(i as f64)),
                &mut out,
            );
        }
        assert!(actions(&out).is_empty());
        assert_eq!(escalation_reasons(&out).len(), 5);
        assert!(escalation_reasons(&out)[0].contains("switched off"));
        assert_eq!(holds(&stats, Guard::KillSwitch), 5);
    }
}

#[test]
fn cooldown_holds_a_second_incident_on_the_same_target() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: loose_guards(),
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("a", "inventory", t(0.0)), &mut out);
    assert_eq!(actions(&out).len(), 1);
    let mut out = Vec::new();
    s.process(incident("b", "inventory", t(3.0)), &mut out);
    assert!(actions(&out).is_empty());
    assert!(escalation_reasons(&out)[0].contains("held by guard cooldown"));
    assert_eq!(holds(&stats, Guard::Cooldown), 1);
    let mut out = Vec::new();
    s.process(incident("c", "inventory", t(12.0)), &mut out);
    assert_eq!(actions(&out).len(), 1, "cooldown over: {out:?}");
}

#[test]
fn flapping_target_is_escalated_not_acted_on_again() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: loose_guards(),
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("a", "inventory", t(0.0)), &mut out);
    let a = actions(&out)[0].clone();
    let mut out = Vec::new();
    s.on_result(&succeeded(&a, t(1.5)), &mut out);
    s.on_watermark(t(10.0), &mut out);
    let res = s.take_resolutions();
    assert_eq!(res.len(), 1, "verified as recovered");
    assert!(res[0]
        .evidence
        .starts_with("verified: restart of inventory"));
    // Fails again 15 minutes later (past the cooldown, inside the flap window).
    let mut out = Vec::new();
    s.process(incident("b", "inventory", t(25.0)), &mut out);
    assert!(actions(&out).is_empty(), "{out:?}");
    assert!(escalation_reasons(&out)[0].contains("held by guard flap"));
    assert_eq!(holds(&stats, Guard::Flap), 1);
}

#[test]
fn max_in_flight_holds_the_third_concurrent_action() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: GuardsConfig {
            max_in_flight: 2,
            ..loose_guards()
        },
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    for (i, svc) in ["a", "b", "c"].iter().enumerate() {
        s.process(incident(&format!("i{i}"), svc, t(i as f64)), &mut out);
    }
    assert_eq!(actions(&out).len(), 2);
    assert_eq!(s.in_flight(), 2);
    assert!(escalation_reasons(&out)[0].contains("max_in_flight"));
    assert_eq!(holds(&stats, Guard::MaxInFlight), 1);
    // A verified action leaves flight; the next incident may act.
    let first = actions(&out)[0].clone();
    let mut more = Vec::new();
    s.on_result(&succeeded(&first, t(3.0)), &mut more);
    s.on_watermark(t(8.0), &mut more);
    assert_eq!(s.in_flight(), 1);
    s.process(incident("i9", "d", t(8.5)), &mut more);
    assert_eq!(actions(&more).len(), 1);
}

#[test]
fn disruption_budget_limits_services_and_instance_share() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: GuardsConfig {
            max_services_in_flight: 1,
            ..loose_guards()
        },
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("i1", "a", t(0.0)), &mut out);
    s.process(incident("i2", "b", t(0.5)), &mut out);
    assert_eq!(actions(&out).len(), 1);
    assert!(escalation_reasons(&out)[0].contains("disruption_budget"));
    assert_eq!(holds(&stats, Guard::DisruptionBudget), 1);

    // A rolling restart of a 2-instance service disrupts half of it.
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: GuardsConfig {
            max_instance_share: 0.4,
            ..loose_guards()
        },
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("i1", "a", t(0.0)), &mut out);
    assert!(actions(&out).is_empty());
    assert_eq!(holds(&stats, Guard::DisruptionBudget), 1);
}

#[test]
fn maintenance_window_holds_actions_on_covered_services() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: loose_guards(),
        maintenance: vec![MaintenanceWindow {
            start: t(0.0),
            end: t(60.0),
            services: vec!["payments".into()],
        }],
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("i1", "payments", t(10.0)), &mut out);
    assert!(actions(&out).is_empty());
    assert!(escalation_reasons(&out)[0].contains("held by guard maintenance"));
    s.process(incident("i2", "inventory", t(10.0)), &mut out);
    assert_eq!(actions(&out).len(), 1, "other services are not covered");
    s.process(incident("i3", "payments", t(61.0)), &mut out);
    assert_eq!(actions(&out).len(), 2, "after the window");
    assert_eq!(holds(&stats, Guard::Maintenance), 1);
}

#[test]
fn dry_run_emits_dry_run_decisions_and_escalates() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        dry_run: true,
        guards: loose_guards(),
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("i1", "inventory", t(0.0)), &mut out);
    let a = actions(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].decision, Decision::DryRun);
    assert!(!a[0].params.args.contains_key("dry_run"));
    assert!(escalation_reasons(&out)[0].contains("dry_run"));
    assert_eq!(holds(&stats, Guard::DryRun), 1);
    assert_eq!(s.in_flight(), 0, "a dry run is not in flight");
    // The executors' answer, `skipped_dry_run`, is neither a failure (no
    // next ladder step, no undo, no breaker count) nor an outcome learned.
    let before = s
        .learned()
        .counts(Category::MemoryExhaustion, ActionType::Restart);
    let skipped = ActionResult {
        status: ActionStatus::SkippedDryRun,
        detail: "dry run: decision is dry_run; nothing was done".into(),
        ..succeeded(a[0], t(0.5))
    };
    let mut after = Vec::new();
    s.on_result(&skipped, &mut after);
    s.on_watermark(t(30.0), &mut after);
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(
        s.learned()
            .counts(Category::MemoryExhaustion, ActionType::Restart),
        before
    );
    assert!(!s.breaker_open());
}

#[test]
fn missing_result_times_out_into_an_escalation() {
    let (mut s, stats) = stage_with(RecoveryConfig {
        guards: loose_guards(),
        result_timeout: DurationMs(5 * MIN),
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("i1", "inventory", t(0.0)), &mut out);
    s.on_watermark(t(4.0), &mut out);
    assert!(escalation_reasons(&out).is_empty());
    s.on_watermark(t(6.0), &mut out);
    assert!(escalation_reasons(&out)[0].contains("no result from the executor"));
    assert_eq!(Stats::get(&stats.verifications[3]), 1, "timeout counted");
}

#[test]
fn per_service_override_tightens_the_policy() {
    let mut cfg = RecoveryConfig {
        guards: loose_guards(),
        ..RecoveryConfig::default()
    };
    cfg.overrides.services.insert(
        "payments".into(),
        reflex::recovery::config::PolicyOverride {
            auto_max_risk: Some(0.05),
            ..Default::default()
        },
    );
    let (mut s, _) = stage_with(cfg);
    let mut out = Vec::new();
    s.process(incident("i1", "payments", t(0.0)), &mut out);
    s.process(incident("i2", "inventory", t(0.0)), &mut out);
    let a = actions(&out);
    assert_eq!(a[0].decision, Decision::ApprovalRequired);
    assert_eq!(a[1].decision, Decision::Auto);
}

// ---------------------------------------------------------------- Decider level

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<Output>>>);

impl Sink for Shared {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.0.lock().expect("lock").push(out.clone());
        Ok(())
    }
}

impl Shared {
    fn all(&self) -> Vec<Output> {
        self.0.lock().expect("lock").clone()
    }
    fn actions(&self) -> Vec<RecoveryAction> {
        self.all()
            .into_iter()
            .filter_map(|o| match o {
                Output::Action(a) => Some(a),
                _ => None,
            })
            .collect()
    }
    fn escalations(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|o| match o {
                Output::Escalation(e) => Some(e.reason),
                _ => None,
            })
            .collect()
    }
    fn incidents(&self) -> Vec<Incident> {
        self.all()
            .into_iter()
            .filter_map(|o| match o {
                Output::Incident(i) => Some(i),
                _ => None,
            })
            .collect()
    }
}

/// One detection on `service` for the minute ending at `end`.
fn det(service: &str, end: EventTime, rule: &str, hints: &[(Category, f64)]) -> Detection {
    Detection {
        detection_id: format!("det-{service}-{rule}-{}", end.millis()),
        detector: DetectorKind::Threshold,
        rule: rule.into(),
        key: format!("service={service}"),
        service: service.into(),
        namespace: Some("shop".into()),
        score: 0.9,
        window: Window {
            start: end.plus_ms(-MIN),
            end,
        },
        evidence: format!("{service}: 50 errors in a minute"),
        count: 50,
        first_seen: end.plus_ms(-MIN + 1000),
        hints: hints
            .iter()
            .map(|&(category, weight)| CategoryHint {
                category,
                weight,
                source: "test".into(),
                about: About::Itself,
            })
            .collect(),
        upstreams: vec![],
        error_types: vec![],
        http_statuses: vec![],
        nodes: vec![],
        instances: vec![],
        trace_ids: vec![],
        samples: vec![],
        version: None,
    }
}

struct World {
    sink: Shared,
    cfg: Config,
    opts: DecideOptions,
}

impl World {
    fn new(f: impl FnOnce(&mut Config)) -> World {
        let mut cfg = Config::embedded().expect("embedded config");
        cfg.catalog = Catalog::default();
        // Something depends on the failing service (a service nobody is
        // known to call gets a confidence a human confirms).
        cfg.catalog.services.insert(
            "web".into(),
            reflex::diagnosis::catalog::ServiceEntry {
                depends_on: ["search", "inventory", "stock"].map(String::from).to_vec(),
                ..Default::default()
            },
        );
        f(&mut cfg);
        World {
            sink: Shared::default(),
            cfg,
            opts: DecideOptions::default(),
        }
    }
}

/// Drives `minutes` of event time one minute at a time: `failing(m)` says
/// which detections occur in minute m; `executor(action)` decides results.
fn drive(
    d: &mut Decider<'_>,
    sink: &Shared,
    from: i64,
    to: i64,
    failing: &dyn Fn(i64) -> Vec<Detection>,
    executor: &mut dyn FnMut(&RecoveryAction) -> Option<ActionResult>,
    seen: &mut usize,
) {
    for m in from..to {
        d.detections(failing(m)).expect("sink");
        d.watermark(t(m as f64)).expect("sink");
        let acts = sink.actions();
        for a in &acts[*seen..] {
            if a.decision == Decision::Auto {
                if let Some(r) = executor(a) {
                    d.action_result(&r);
                }
            }
        }
        *seen = acts.len();
    }
}

fn ok_after(ms: i64) -> impl FnMut(&RecoveryAction) -> Option<ActionResult> {
    move |a| Some(succeeded(a, a.created_at.plus_ms(ms)))
}

#[test]
fn fault_fixed_by_step_one_is_resolved_with_verified_evidence_and_learned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let learned = dir.path().join("learned.json");
    let w = World::new(|c| c.recovery.learning_file = Some(learned.clone()));
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let fixed_at = std::cell::Cell::new(i64::MAX);
    let failing = |m: i64| {
        if (10..20).contains(&m) && m < fixed_at.get() {
            vec![det(
                "inventory",
                t(m as f64),
                "error_burst",
                &[(Category::MemoryExhaustion, 0.9)],
            )]
        } else {
            vec![]
        }
    };
    let mut seen = 0;
    let mut exec = |a: &RecoveryAction| {
        let r = succeeded(a, a.created_at.plus_ms(75_000));
        fixed_at.set((r.finished_at.millis() - T0) / MIN + 1);
        Some(r)
    };
    drive(&mut d, &w.sink, 0, 40, &failing, &mut exec, &mut seen);
    d.finish().expect("finish");
    let acts = w.sink.actions();
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0].action_type, ActionType::Restart);
    assert_eq!(acts[0].decision, Decision::Auto);
    let resolved: Vec<Incident> = w
        .sink
        .incidents()
        .into_iter()
        .filter(|i| i.status == IncidentStatus::Resolved)
        .collect();
    assert_eq!(resolved.len(), 1);
    assert!(
        resolved[0].evidence[0]
            .starts_with("verified: restart of inventory succeeded, no errors for"),
        "{:?}",
        resolved[0].evidence
    );
    assert!(
        w.sink.escalations().is_empty(),
        "{:?}",
        w.sink.escalations()
    );
    // Learned, persisted, and reloaded by a new stage.
    let c = d
        .recover
        .learned()
        .counts(Category::MemoryExhaustion, ActionType::Restart);
    assert_eq!((c.successes, c.failures), (1, 0));
    drop(d);
    let back = Learned::open(&learned).expect("reloads");
    assert_eq!(
        back.counts(Category::MemoryExhaustion, ActionType::Restart)
            .successes,
        1
    );
    let mut sink2 = Shared::default();
    let d2 = Decider::new(&w.cfg, &w.opts, &mut sink2, Arc::new(Stats::default()));
    assert_eq!(
        d2.recover
            .learned()
            .counts(Category::MemoryExhaustion, ActionType::Restart)
            .successes,
        1,
        "a new run starts from the persisted posterior"
    );
    assert!(
        d2.recover
            .learned()
            .success_rate(Category::MemoryExhaustion, ActionType::Restart)
            > Learned::in_memory().success_rate(Category::MemoryExhaustion, ActionType::Restart)
    );
}

#[test]
fn step_that_does_not_help_climbs_the_ladder_then_escalates() {
    let w = World::new(|_| {});
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let failing = |m: i64| {
        if m >= 10 {
            vec![det(
                "inventory",
                t(m as f64),
                "error_burst",
                &[(Category::MemoryExhaustion, 0.9)],
            )]
        } else {
            vec![]
        }
    };
    let mut seen = 0;
    drive(
        &mut d,
        &w.sink,
        0,
        40,
        &failing,
        &mut ok_after(60_000),
        &mut seen,
    );
    let acts = w.sink.actions();
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0].action_type, ActionType::Restart);
    assert_eq!(acts[1].action_type, ActionType::Scale);
    assert_ne!(acts[0].idempotency_key, acts[1].idempotency_key);
    assert!(
        acts[1].reason.contains("remedy step 2"),
        "{}",
        acts[1].reason
    );
    assert!(acts[1].created_at > acts[0].created_at.plus_ms(3 * MIN));
    let esc = w.sink.escalations();
    assert_eq!(esc.len(), 1, "{esc:?}");
    assert!(esc[0].contains("remedy ladder exhausted"), "{esc:?}");
    assert!(
        esc[0].contains("restart inventory, then scale inventory"),
        "{esc:?}"
    );
    assert!(!w
        .sink
        .incidents()
        .iter()
        .any(|i| i.status == IncidentStatus::Resolved));
    let c = d
        .recover
        .learned()
        .counts(Category::MemoryExhaustion, ActionType::Restart);
    assert_eq!(c.failures, 1);
}

#[test]
fn action_that_makes_things_worse_is_undone_and_escalated() {
    let w = World::new(|_| {});
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let acted = std::cell::Cell::new(i64::MAX);
    let failing = |m: i64| {
        let h = [(Category::Overload, 0.9)];
        let mut v = Vec::new();
        if m >= 10 {
            v.push(det("search", t(m as f64), "error_burst", &h));
        }
        if m > acted.get().saturating_add(1) {
            for r in ["critical_burst", "template_burst", "latency", "pattern"] {
                v.push(det("search", t(m as f64), r, &h));
            }
        }
        v
    };
    let mut seen = 0;
    let mut exec = |a: &RecoveryAction| {
        let r = succeeded(a, a.created_at.plus_ms(40_000));
        if acted.get() == i64::MAX {
            acted.set((r.finished_at.millis() - T0) / MIN);
        }
        Some(r)
    };
    drive(&mut d, &w.sink, 0, 30, &failing, &mut exec, &mut seen);
    let acts = w.sink.actions();
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0].action_type, ActionType::Scale);
    assert_eq!(acts[0].params.replicas, Some(4));
    let undo = &acts[1];
    assert_eq!(undo.action_type, ActionType::Scale);
    assert_eq!(
        undo.params.replicas,
        Some(2),
        "back to the previous replicas"
    );
    assert!(undo.reason.starts_with("undo:"), "{}", undo.reason);
    assert_eq!(undo.decision, Decision::Auto);
    let esc = w.sink.escalations();
    assert!(
        esc.iter()
            .any(|e| e.contains("made things worse; undoing it")),
        "{esc:?}"
    );
}

fn shaky() -> Vec<(Category, f64)> {
    vec![
        (Category::MemoryExhaustion, 0.35),
        (Category::Overload, 0.3),
    ]
}

fn pending_approval(w: &World, d: &mut Decider<'_>) -> RecoveryAction {
    // A service nothing is known to call, with split category votes: the
    // diagnosis is not confident enough to act without a human.
    let failing = |m: i64| {
        if m >= 10 {
            ["inventory"]
                .iter()
                .map(|s| {
                    let mut x = det(s, t(m as f64), "error_burst", &shaky());
                    x.trace_ids = vec!["trace-1".into()];
                    x
                })
                .collect()
        } else {
            vec![]
        }
    };
    let mut seen = 0;
    drive(d, &w.sink, 0, 14, &failing, &mut |_| None, &mut seen);
    let inc = w.sink.incidents();
    assert!(!inc.is_empty());
    assert!(
        inc[0].confidence < 0.6,
        "low confidence: {}",
        inc[0].confidence
    );
    let acts = w.sink.actions();
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0].decision, Decision::ApprovalRequired, "not auto");
    assert!(w.sink.escalations()[0].starts_with("approval required"));
    acts[0].clone()
}

#[test]
fn low_confidence_diagnosis_needs_approval_and_approval_reemits_it_auto() {
    let mut w = World::new(|c| c.catalog = Catalog::default());
    w.opts.signing_key = Some(b"secret".to_vec());
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let pending = pending_approval(&w, &mut d);
    assert_eq!(
        d.approval("act-nope", true, "alice").expect("sink"),
        Err(ApprovalError::NotFound)
    );
    assert_eq!(
        d.approval(&pending.action_id, true, "alice").expect("sink"),
        Ok(())
    );
    let acts = w.sink.actions();
    assert_eq!(acts.len(), 2);
    let a = &acts[1];
    assert_eq!(a.decision, Decision::Auto);
    assert_eq!(a.idempotency_key, pending.idempotency_key);
    assert_eq!(a.action_id, pending.action_id);
    assert!(a.reason.contains("approved by alice"), "{}", a.reason);
    assert!(reflex::recovery::sign::verify(a, b"secret"), "re-signed");
    assert_ne!(a.signature, pending.signature);
    assert_eq!(
        d.approval(&pending.action_id, false, "bob").expect("sink"),
        Err(ApprovalError::AlreadyDecided)
    );
}

#[test]
fn rejection_is_escalated_and_learned_and_expiry_is_event_time() {
    let w = World::new(|c| c.catalog = Catalog::default());
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let pending = pending_approval(&w, &mut d);
    assert_eq!(
        d.approval(&pending.action_id, false, "bob").expect("sink"),
        Ok(())
    );
    assert_eq!(w.sink.actions().len(), 1, "nothing re-emitted");
    let esc = w.sink.escalations();
    assert!(esc.iter().any(|e| e.contains("rejected by bob")), "{esc:?}");
    let c = d
        .recover
        .learned()
        .counts(Category::MemoryExhaustion, pending.action_type);
    let o = d
        .recover
        .learned()
        .counts(Category::Overload, pending.action_type);
    assert_eq!(c.failures + o.failures, 1);

    // Expiry: judged against the watermark.
    let w = World::new(|c| c.catalog = Catalog::default());
    let mut sink = w.sink.clone();
    let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
    let pending = pending_approval(&w, &mut d);
    d.watermark(pending.expires_at.plus_ms(1)).expect("sink");
    assert_eq!(
        d.approval(&pending.action_id, true, "alice").expect("sink"),
        Err(ApprovalError::Expired)
    );
}

#[test]
fn results_apply_in_event_time_whenever_they_arrive() {
    // The same results handed in early (pre-loaded) or as they happen give
    // the same records.
    let run = |preload: Option<Vec<ActionResult>>| -> (Vec<Output>, Vec<ActionResult>) {
        let mut w = World::new(|_| {});
        if let Some(p) = &preload {
            w.opts.action_results = p.clone();
        }
        let mut sink = w.sink.clone();
        let mut d = Decider::new(&w.cfg, &w.opts, &mut sink, Arc::new(Stats::default()));
        let fixed_at = std::cell::Cell::new(i64::MAX);
        let failing = |m: i64| {
            if m >= 10 && m < fixed_at.get() {
                vec![det(
                    "inventory",
                    t(m as f64),
                    "error_burst",
                    &[(Category::MemoryExhaustion, 0.9)],
                )]
            } else {
                vec![]
            }
        };
        let mut given = Vec::new();
        let mut seen = 0;
        let live = preload.is_none();
        let mut exec = |a: &RecoveryAction| {
            let r = succeeded(a, a.created_at.plus_ms(75_000));
            fixed_at.set((r.finished_at.millis() - T0) / MIN + 1);
            given.push(r.clone());
            live.then_some(r)
        };
        drive(&mut d, &w.sink, 0, 40, &failing, &mut exec, &mut seen);
        d.finish().expect("finish");
        (w.sink.all(), given)
    };
    let (live, results) = run(None);
    assert!(!results.is_empty());
    let (replay, _) = run(Some(results));
    assert_eq!(live, replay);
    assert!(live.iter().any(
        |o| matches!(o, Output::Incident(i) if i.status == IncidentStatus::Resolved
            && i.evidence[0].starts_with("verified:"))
    ));
}

#[test]
fn rediagnosis_during_verification_waits_for_the_verdict() {
    let (mut s, _) = stage_with(RecoveryConfig {
        guards: loose_guards(),
        ..RecoveryConfig::default()
    });
    let mut out = Vec::new();
    s.process(incident("a", "cart", t(0.0)), &mut out);
    let a = actions(&out)[0].clone();
    s.on_result(&succeeded(&a, t(1.5)), &mut out);
    // The restart's own blip makes diagnosis call it `unavailable` for a while.
    let mut re = incident("a", "cart", t(2.0));
    re.status = IncidentStatus::Updated;
    re.category = Category::Unavailable;
    s.process(re, &mut out);
    assert_eq!(actions(&out).len(), 1, "no second action while verifying");
    s.on_watermark(t(10.0), &mut out);
    assert_eq!(s.take_resolutions().len(), 1);
    assert_eq!(actions(&out).len(), 1);
    assert!(escalation_reasons(&out).is_empty(), "{out:?}");
}

#[test]
fn recovery_config_errors_name_every_key_at_once() {
    let text = r#"
[recovery]
min_confidence = 2.0
[recovery.guards]
rate_limit = 0
breaker_window = "0s"
[recovery.overrides.services.payments]
auto_max_risk = 1.5
"#;
    let err = Config::from_str_with(text, "reflex.toml", None).expect_err("invalid");
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    for k in [
        "recovery.min_confidence",
        "recovery.guards.rate_limit",
        "recovery.guards.breaker_window",
        "recovery.overrides.services.payments.auto_max_risk",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(err.issues.iter().all(|i| i.file == "reflex.toml"));
}
