use super::*;
use crate::model::{
    ActionParams, ActionStatus, ActionType, Category, Escalation, Severity, Target,
};

fn inc(id: &str, status: IncidentStatus, at: i64) -> Incident {
    Incident {
        incident_id: id.into(),
        status,
        opened_at: EventTime(0),
        updated_at: EventTime(at),
        resolved_at: (status == IncidentStatus::Resolved).then_some(EventTime(at)),
        root_cause_service: "payments".into(),
        category: Category::MemoryExhaustion,
        confidence: 0.9,
        services: vec!["payments".into(), "checkout".into()],
        summary: String::new(),
        evidence: Vec::new(),
        namespace: None,
        severity: Severity::Error,
    }
}

fn act(id: &str, inc: &str, d: Decision, at: i64) -> RecoveryAction {
    RecoveryAction {
        action_id: id.into(),
        incident_id: inc.into(),
        created_at: EventTime(at),
        action_type: ActionType::Restart,
        target: Target {
            service: "payments".into(),
            namespace: None,
            kind: "Deployment".into(),
            name: "payments".into(),
        },
        params: ActionParams::default(),
        risk: 0.4,
        decision: d,
        idempotency_key: format!("k-{id}"),
        reason: String::new(),
        expires_at: EventTime(at + 1_000),
        signature: None,
    }
}

fn esc(inc: &str, reason: &str) -> Escalation {
    Escalation {
        escalation_id: "e".into(),
        incident_id: inc.into(),
        created_at: EventTime(0),
        severity: Severity::Error,
        reason: reason.into(),
        team: None,
        summary: String::new(),
        suggested_actions: Vec::new(),
    }
}

#[test]
fn pending_until_approved_rejected_or_expired() {
    let mut j = Journal::default();
    j.push(&Output::Incident(inc("i1", IncidentStatus::Open, 100)));
    j.push(&Output::Incident(inc("i2", IncidentStatus::Open, 50)));
    j.push(&Output::Action(act(
        "a1",
        "i1",
        Decision::ApprovalRequired,
        100,
    )));
    j.push(&Output::Action(act(
        "a2",
        "i2",
        Decision::ApprovalRequired,
        100,
    )));
    let (incs, pending) = view(j.records(), 10);
    assert_eq!(incs.len(), 2);
    assert_eq!(incs[0].latest.incident_id, "i1", "newest update first");
    let ids = |p: &[RecoveryAction]| p.iter().map(|a| a.action_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&pending).len(), 2);
    // a1 approved (emitted again as auto), a2 rejected.
    j.push(&Output::Action(act("a1", "i1", Decision::Auto, 150)));
    j.push(&Output::Escalation(esc(
        "i2",
        "restart of payments (a2) was rejected by bob; a human must act",
    )));
    let (incs, pending) = view(j.records(), 10);
    assert!(pending.is_empty(), "{:?}", ids(&pending));
    assert_eq!(incs[0].actions.len(), 2);
    // A later record past expiry also ends a pending approval.
    j.push(&Output::Incident(inc("i3", IncidentStatus::Open, 200)));
    j.push(&Output::Action(act(
        "a3",
        "i3",
        Decision::ApprovalRequired,
        200,
    )));
    assert_eq!(ids(&view(j.records(), 10).1), vec!["a3"]);
    j.push(&Output::Incident(inc("i3", IncidentStatus::Updated, 5_000)));
    assert!(view(j.records(), 10).1.is_empty());
}

#[test]
fn results_attach_to_their_incident_and_resolved_go_last() {
    let mut j = Journal::default();
    j.push(&Output::Incident(inc("i1", IncidentStatus::Open, 10)));
    j.push(&Output::Action(act("a1", "i1", Decision::Auto, 10)));
    j.result(&ActionResult {
        action_id: "a1".into(),
        idempotency_key: "k-a1".into(),
        status: ActionStatus::Succeeded,
        detail: "ok".into(),
        finished_at: EventTime(20),
        executor: "sim".into(),
    });
    j.push(&Output::Incident(inc("i1", IncidentStatus::Resolved, 300)));
    j.push(&Output::Incident(inc("i2", IncidentStatus::Open, 30)));
    let (incs, _) = view(j.records(), 10);
    assert_eq!(incs[0].latest.incident_id, "i2", "open before resolved");
    assert_eq!(incs[1].results.len(), 1);
    assert_eq!(incs[1].first.status, IncidentStatus::Open);
    assert_eq!(incs[1].latest.status, IncidentStatus::Resolved);
    assert_eq!(view(j.records(), 1).0.len(), 1);
}

#[test]
fn the_journal_forgets_the_oldest_incident_entirely() {
    let mut j = Journal::default();
    for k in 0..=MAX_INCIDENTS {
        let id = format!("i{k}");
        j.push(&Output::Incident(inc(&id, IncidentStatus::Open, k as i64)));
        if k == 0 {
            j.push(&Output::Action(act("a0", &id, Decision::Auto, 0)));
        }
    }
    let r = j.records();
    assert_eq!(r.incidents.len(), MAX_INCIDENTS);
    assert!(r.incidents.iter().all(|i| i.incident_id != "i0"));
    assert!(r.actions.is_empty());
}

#[test]
fn the_page_is_self_contained() {
    let p = page_html();
    assert!(p.contains("EventSource"), "the page follows /api/stream");
    assert!(!p.contains("/*BOARD_JS*/") && !p.contains("/*BOARD_CSS*/"));
    for external in ["http://", "https://", "//cdn", "<link", "src=\"", "@import"] {
        assert!(
            !p.contains(external),
            "{external}: the page must load nothing from outside"
        );
    }
}
