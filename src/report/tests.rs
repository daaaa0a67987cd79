use super::*;
use crate::model::{ActionParams, ActionType, Severity, Target};
use proptest::prelude::*;

fn inc(id: &str, cat: Category, status: IncidentStatus, opened: i64, at: i64) -> Incident {
    Incident {
        incident_id: id.into(),
        status,
        opened_at: EventTime(opened),
        updated_at: EventTime(at),
        resolved_at: (status == IncidentStatus::Resolved).then_some(EventTime(at)),
        root_cause_service: format!("svc-{id}"),
        category: cat,
        confidence: 0.9,
        services: vec![format!("svc-{id}")],
        summary: String::new(),
        evidence: Vec::new(),
        namespace: None,
        severity: Severity::Error,
    }
}

fn verified(mut i: Incident) -> Incident {
    i.evidence.insert(
        0,
        "verified: restart of x succeeded, no errors for 4m".into(),
    );
    i
}

fn act(id: &str, inc: &str, d: Decision, at: i64) -> RecoveryAction {
    RecoveryAction {
        action_id: id.into(),
        incident_id: inc.into(),
        created_at: EventTime(at),
        action_type: ActionType::Restart,
        target: Target {
            service: "x".into(),
            namespace: None,
            kind: "Deployment".into(),
            name: "x".into(),
        },
        params: ActionParams::default(),
        risk: 0.2,
        decision: d,
        idempotency_key: format!("k-{id}"),
        reason: "memory_exhaustion diagnosed".into(),
        expires_at: EventTime(at + 900_000),
        signature: None,
    }
}

fn esc(inc: &str, reason: &str, at: i64) -> Escalation {
    Escalation {
        escalation_id: format!("e-{inc}-{at}"),
        incident_id: inc.into(),
        created_at: EventTime(at),
        severity: Severity::Error,
        reason: reason.into(),
        team: None,
        summary: String::new(),
        suggested_actions: Vec::new(),
    }
}

fn result(action: &str, status: ActionStatus, at: i64) -> ActionResult {
    ActionResult {
        action_id: action.into(),
        idempotency_key: format!("k-{action}"),
        status,
        detail: String::new(),
        finished_at: EventTime(at),
        executor: "test".into(),
    }
}

const M: i64 = 60_000;

/// Four incidents, one of each handling, with an undo and a failed step.
fn scenario() -> Records {
    use Category::*;
    use IncidentStatus::*;
    let mut undo = act("a1-undo", "i1", Decision::Auto, 20 * M);
    undo.reason = "undo: scale of x made things worse; reverting it".into();
    Records {
        incidents: vec![
            inc("i1", MemoryExhaustion, Open, 0, 2 * M),
            inc("i2", MemoryExhaustion, Open, 10 * M, 11 * M),
            inc("i3", CertificateExpired, Open, 20 * M, 24 * M),
            inc("i4", Overload, Open, 30 * M, 31 * M),
            verified(inc("i2", MemoryExhaustion, Resolved, 10 * M, 21 * M)),
            inc("i1", MemoryExhaustion, Resolved, 0, 40 * M),
        ],
        actions: vec![
            act("a1", "i1", Decision::Auto, 2 * M),
            act("a1b", "i1", Decision::Auto, 10 * M),
            undo,
            act("a2", "i2", Decision::ApprovalRequired, 11 * M),
            act("a2", "i2", Decision::Auto, 12 * M),
        ],
        escalations: vec![
            esc(
                "i1",
                "scale of x made things worse; undoing it (a1-undo); a human must act",
                20 * M,
            ),
            esc(
                "i2",
                "approval required: risk 0.45, confidence 0.90 (step 1: restart x)",
                11 * M,
            ),
            esc(
                "i3",
                "certificate_expired is not remediated automatically; a human must act",
                24 * M,
            ),
        ],
        results: vec![
            result("a1", ActionStatus::Failed, 3 * M),
            result("a1b", ActionStatus::Succeeded, 11 * M),
            result("a2", ActionStatus::Succeeded, 13 * M),
        ],
    }
}

#[test]
fn handling_verification_undo_and_failures_are_told_apart() {
    let r = compute(&scenario(), &ReportOptions::default());
    let o = &r.overall;
    assert_eq!(o.incidents, 4);
    assert_eq!(
        (o.automatic, o.approved, o.escalated, o.unhandled),
        (1, 1, 1, 1)
    );
    assert_eq!(o.verified_fixes, 1);
    assert_eq!((o.verified_automatic, o.verified_approved), (0, 1));
    // a1 failed at the executor (not wrong); a1b was followed by its undo.
    assert_eq!(o.execution_failures, 1);
    assert_eq!(o.verification_failures, 1);
    assert_eq!(o.undos, 1);
    assert_eq!(o.wrong_action_signals, 2);
    // Only the approved, verified fix saved time: 30 - 5 minutes.
    assert!((o.minutes_saved - 25.0).abs() < 1e-9);
    // TTD: 2, 1, 4, 1 minutes; TTR over the two resolved: 40 and 11 minutes.
    assert_eq!(o.time_to_detect.median_ms, Some(M));
    assert_eq!(o.time_to_detect.p90_ms, Some(4 * M));
    assert_eq!(o.time_to_recover.n, 2);
    assert_eq!(o.time_to_recover.median_ms, Some(11 * M));
    assert_eq!(o.time_to_recover.p90_ms, Some(40 * M));
    let mem = &r.categories[&Category::MemoryExhaustion];
    assert_eq!((mem.incidents, mem.automatic, mem.approved), (2, 1, 1));
    assert!(!r.categories.contains_key(&Category::Unknown));
    // Held back: the approval (i2) and the non-automated category (i3).
    let held: Vec<(String, String)> = r
        .held_back
        .iter()
        .map(|h| (h.service.clone(), h.reason.clone()))
        .collect();
    assert!(held.contains(&("svc-i2".into(), "approval_required".into())));
    assert!(held.contains(&("svc-i3".into(), "not_automated".into())));
    assert_eq!(o.held_back, 2);
    assert_eq!(r.records.actions, 5);
    assert_eq!(r.records.auto_actions, 4);
    assert_eq!(r.records.escalations, 3);
    assert_eq!(r.records.results, 3);
}

#[test]
fn since_keeps_only_incidents_first_reported_from_then_on() {
    let opts = ReportOptions {
        since: Some(EventTime(20 * M)),
        ..ReportOptions::default()
    };
    let r = compute(&scenario(), &opts);
    let ids: Vec<&str> = r.incidents.iter().map(|i| i.incident_id.as_str()).collect();
    assert_eq!(ids, vec!["i3", "i4"]);
    assert_eq!(r.records.actions, 0);
    assert_eq!(r.overall.undos, 0);
}

#[test]
fn low_confidence_is_named_when_an_incident_is_held() {
    let mut rec = scenario();
    for i in &mut rec.incidents {
        if i.incident_id == "i3" {
            i.confidence = 0.5;
        }
    }
    let r = compute(&rec, &ReportOptions::default());
    let line = r.incidents.iter().find(|i| i.incident_id == "i3").unwrap();
    assert_eq!(line.held, vec!["not_automated", "low_confidence"]);
}

#[test]
fn escalation_phrases_map_to_hold_reasons() {
    let cases = [
        (
            "held by guard cooldown: an action on this service finished recently; not done: restart x (step 1)",
            Some(HoldReason::Guard("cooldown".into())),
        ),
        (
            "automatic healing is switched off (held by guard kill_switch)",
            Some(HoldReason::Guard("kill_switch".into())),
        ),
        (
            "held by guard dry_run: dry run; restart x (step 1) was emitted as a dry run only",
            Some(HoldReason::DryRun),
        ),
        (
            "risk 0.91 of rollback on x (step 1) is above the approval limit",
            Some(HoldReason::AboveApprovalLimit),
        ),
        (
            "restart of x (act-1) was rejected by alice; a human must act",
            Some(HoldReason::Rejected),
        ),
        (
            "remedy ladder exhausted for overload on x (tried scale x); a human must act",
            Some(HoldReason::LadderExhausted),
        ),
        (
            "no result from the executor for restart of x within 1200s; a human must check it",
            None,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(HoldReason::of_escalation(text), want, "{text}");
    }
}

#[test]
fn quantiles_use_the_nearest_rank() {
    let q = Quantiles::of(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
    assert_eq!((q.n, q.median_ms, q.p90_ms), (10, Some(5), Some(9)));
    assert_eq!(Quantiles::of(&[]).median_ms, None);
    assert_eq!(Quantiles::of(&[7]).p90_ms, Some(7));
}

#[test]
fn since_parses_absolute_and_relative_times() {
    let latest = Some(EventTime(10 * 3_600_000));
    assert_eq!(
        parse_since("1970-01-01T01:00:00Z", latest),
        Some(EventTime(3_600_000))
    );
    assert_eq!(parse_since("1234", latest), Some(EventTime(1234)));
    assert_eq!(parse_since("2h", latest), Some(EventTime(8 * 3_600_000)));
    assert_eq!(parse_since("yesterday", latest), None);
}

fn arb_records() -> impl Strategy<Value = Records> {
    let incident = (
        0usize..6,
        0usize..11,
        0i64..100,
        0i64..50,
        any::<bool>(),
        any::<bool>(),
    );
    let action = (0usize..6, 0usize..4, any::<bool>(), 0i64..100);
    let escalation = (0usize..6, 0usize..4);
    (
        proptest::collection::vec(incident, 0..12),
        proptest::collection::vec(action, 0..12),
        proptest::collection::vec(escalation, 0..8),
    )
        .prop_map(|(is, acts, escs)| {
            let mut r = Records::default();
            for (id, c, opened, delay, resolved, ver) in is {
                let status = if resolved {
                    IncidentStatus::Resolved
                } else {
                    IncidentStatus::Open
                };
                let mut i = inc(
                    &format!("i{id}"),
                    Category::ALL[c],
                    status,
                    opened * M,
                    (opened + delay) * M,
                );
                if ver && resolved {
                    i = verified(i);
                }
                r.incidents.push(i);
            }
            for (k, (id, a, approval, at)) in acts.into_iter().enumerate() {
                let d = if approval {
                    Decision::ApprovalRequired
                } else {
                    Decision::Auto
                };
                let mut x = act(&format!("a{a}-{id}"), &format!("i{id}"), d, at * M);
                if k % 5 == 4 {
                    x.reason = "undo: x".into();
                }
                r.actions.push(x);
            }
            let reasons = [
                "approval required: risk 0.5",
                "held by guard flap: x",
                "overload is not remediated automatically",
                "no result from the executor",
            ];
            for (id, k) in escs {
                r.escalations.push(esc(&format!("i{id}"), reasons[k], 0));
            }
            r
        })
}

proptest! {
    #[test]
    fn every_incident_is_counted_once_and_rows_add_up(rec in arb_records()) {
        let r = compute(&rec, &ReportOptions::default());
        let ids: BTreeSet<&str> = rec.incidents.iter().map(|i| i.incident_id.as_str()).collect();
        prop_assert_eq!(r.overall.incidents, ids.len());
        prop_assert_eq!(r.incidents.len(), ids.len());
        let o = &r.overall;
        prop_assert_eq!(o.automatic + o.approved + o.escalated + o.unhandled, o.incidents);
        let sum = |f: fn(&Row) -> usize| r.categories.values().map(f).sum::<usize>();
        prop_assert_eq!(sum(|x| x.incidents), o.incidents);
        prop_assert_eq!(sum(|x| x.automatic), o.automatic);
        prop_assert_eq!(sum(|x| x.approved), o.approved);
        prop_assert_eq!(sum(|x| x.verified_fixes), o.verified_fixes);
        prop_assert_eq!(sum(|x| x.undos), o.undos);
        prop_assert_eq!(sum(|x| x.held_back), o.held_back);
        prop_assert!(o.verified_automatic + o.verified_approved <= o.verified_fixes);
        prop_assert_eq!(o.wrong_action_signals, o.undos + o.verification_failures);
        for q in [o.time_to_detect, o.time_to_recover] {
            if let (Some(m), Some(p)) = (q.median_ms, q.p90_ms) {
                prop_assert!(m <= p);
            }
        }
        prop_assert_eq!(o.time_to_detect.n, o.incidents);
        // The same records in, the same report out; the JSON form round-trips as JSON.
        prop_assert_eq!(&compute(&rec, &ReportOptions::default()), &r);
        let json = render::json(&r);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    }
}
