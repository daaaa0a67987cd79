//! Diagnosis on hand-built streams (the small generator in `reflex::sim::gen`),
//! through the embedded runtime: the cases the simulator's slotted faults do
//! not produce on their own — two unrelated faults at the same minute, a bad
//! deploy next to a harmless deploy of another service, a relapse after a
//! fix versus a new fault behind the old root — and one incident per fault.
//! Every category of SPEC §3 is covered by the simulator runs in
//! `tests/demo.rs`, which also check the category of every fault.

use reflex::config::Config;
use reflex::model::{
    Category, ErrorEvent, EventKind, EventTime, Incident, IncidentStatus, Severity,
};
use reflex::pipeline::embedded::{self, DecideOptions};
use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
use reflex::sinks::{MemorySink, Output};
use reflex::sources::file::LineReader;
use std::collections::BTreeMap;

/// Runs `events` through the embedded default; the outputs in order.
fn run(events: &[ErrorEvent]) -> Vec<Output> {
    let cfg = Config::embedded().expect("embedded config");
    let bytes = to_jsonl(events);
    let mut sink = MemorySink::default();
    embedded::run(
        &cfg,
        &DecideOptions::default(),
        LineReader::from_reader(Box::new(std::io::Cursor::new(bytes))),
        "test",
        &mut sink,
    )
    .expect("run");
    sink.records
}

/// The latest record of every incident, by id.
fn incidents(outs: &[Output]) -> BTreeMap<String, Incident> {
    let mut m = BTreeMap::new();
    for o in outs {
        if let Output::Incident(i) = o {
            m.insert(i.incident_id.clone(), i.clone());
        }
    }
    m
}

fn fault(svc: &str, at: EventTime, minutes: i64, message: &str, error_type: Option<&str>) -> Fault {
    Fault {
        service: svc.into(),
        start: at,
        duration_ms: minutes * 60_000,
        rate: 3.0,
        message: message.into(),
        error_type: error_type.map(Into::into),
        with_deploy: false,
    }
}

/// Two chains that share nothing: web → orders → payments and
/// admin → reports → warehouse.
fn two_chains(seed: u64, hours: i64) -> GenConfig {
    let mut cfg = GenConfig::shop(seed, hours * 3_600_000);
    let s = |n: &str, d: &[&str]| (n.to_string(), d.iter().map(|x| x.to_string()).collect());
    cfg.services = vec![
        s("web", &["orders"]),
        s("orders", &["payments"]),
        s("payments", &[]),
        s("admin", &["reports"]),
        s("reports", &["warehouse"]),
        s("warehouse", &[]),
    ];
    cfg
}

#[test]
fn two_simultaneous_unrelated_faults_are_two_incidents() {
    let mut cfg = two_chains(21, 3);
    let at = cfg.start.plus_ms(3_600_000);
    cfg.faults.push(fault(
        "payments",
        at,
        8,
        "java.lang.OutOfMemoryError: Java heap space (request {id})",
        Some("java.lang.OutOfMemoryError"),
    ));
    cfg.faults.push(fault(
        "warehouse",
        at,
        8,
        "accept failed: Too many open files (os error 24) serving {id}",
        None,
    ));
    let incs = incidents(&run(&generate(&cfg)));
    let mut roots: Vec<(String, Category)> = incs
        .values()
        .map(|i| (i.root_cause_service.clone(), i.category))
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        [
            ("payments".to_string(), Category::MemoryExhaustion),
            ("warehouse".to_string(), Category::ResourceExhaustion),
        ],
        "two faults, two incidents, each with its own root: {incs:#?}"
    );
    for i in incs.values() {
        let other = if i.root_cause_service == "payments" {
            "warehouse"
        } else {
            "payments"
        };
        assert!(
            !i.services
                .iter()
                .any(|s| s == other || s == "reports" && other == "reports"),
            "the other fault's services do not join: {i:#?}"
        );
    }
}

#[test]
fn a_bad_deploy_next_to_a_harmless_deploy_blames_the_bad_one() {
    let mut cfg = GenConfig::shop(22, 3 * 3_600_000);
    let at = cfg.start.plus_ms(3_600_000);
    let mut bad = fault(
        "checkout",
        at,
        8,
        "TypeError: Cannot read properties of undefined (reading 'total') at {id}",
        Some("TypeError"),
    );
    bad.with_deploy = true;
    cfg.faults.push(bad);
    let mut events = generate(&cfg);
    // catalog ships a new version a minute earlier and stays healthy.
    let mut harmless = ErrorEvent::new(
        "deploy-catalog",
        at.plus_ms(-60_000),
        "catalog",
        Severity::Info,
        "deployment rolled out",
    );
    harmless.kind = EventKind::Change;
    harmless.version = Some("v7".into());
    harmless.namespace = Some("shop".into());
    events.push(harmless);
    events.sort_by_key(|e| e.time);
    let outs = run(&events);
    let incs = incidents(&outs);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = incs.values().next().unwrap();
    assert_eq!(i.root_cause_service, "checkout", "{i:#?}");
    assert_eq!(i.category, Category::BadDeploy, "{i:#?}");
    assert!(
        i.evidence
            .iter()
            .any(|e| e.contains("checkout: deploy") || e.contains("change")),
        "the deploy is named as evidence: {:?}",
        i.evidence
    );
    for o in &outs {
        if let Output::Action(a) = o {
            assert_eq!(a.target.service, "checkout", "never act on catalog: {a:?}");
        }
    }
}

fn statuses(v: &[&Incident]) -> Vec<&'static str> {
    v.iter()
        .filter_map(|i| match i.status {
            reflex::model::IncidentStatus::Open => Some("open"),
            reflex::model::IncidentStatus::Updated => None,
            reflex::model::IncidentStatus::Resolved => Some("resolved"),
        })
        .collect()
}

#[test]
fn a_relapse_reopens_but_a_new_fault_behind_the_old_root_is_new() {
    let mut cfg = GenConfig::shop(23, 5 * 3_600_000);
    cfg.services
        .push(("cart-ui".to_string(), vec!["checkout".to_string()]));
    let oom = "java.lang.OutOfMemoryError: Java heap space (request {id})";
    // Part 1: payments fails, is quiet long enough to resolve (10 min hold),
    // and fails again 2 minutes later: a relapse, the same incident.
    let t0 = cfg.start.plus_ms(3_600_000);
    cfg.faults.push(fault(
        "payments",
        t0,
        4,
        oom,
        Some("java.lang.OutOfMemoryError"),
    ));
    cfg.faults.push(fault(
        "payments",
        t0.plus_ms(17 * 60_000),
        4,
        oom,
        Some("java.lang.OutOfMemoryError"),
    ));
    // Part 2: checkout runs out of memory and recovers; 3 minutes after its
    // incident resolved, inventory's connection pool runs dry. checkout
    // fails again — calling inventory — and the calls of cart-ui (a caller
    // whose detections sort first) to checkout fail: a caller names the old
    // root before anything else is known, but this is a new fault.
    let t1 = cfg.start.plus_ms(3 * 3_600_000);
    cfg.faults.push(fault(
        "checkout",
        t1,
        4,
        oom,
        Some("java.lang.OutOfMemoryError"),
    ));
    let t2 = t1.plus_ms(17 * 60_000);
    cfg.faults.push(fault(
        "inventory",
        t2,
        6,
        "HikariPool-1 - Connection is not available, request timed out after 30000ms ({id})",
        None,
    ));
    let mut events = generate(&cfg);
    for k in 0..(6 * 60 * 2) {
        let mut e = ErrorEvent::new(
            format!("fe-{k}"),
            t2.plus_ms(300 + k * 500),
            "cart-ui",
            Severity::Error,
            "POST /api/checkout -> 504 upstream request timeout",
        );
        e.upstream = Some("checkout".into());
        e.http_status = Some(504);
        e.namespace = Some("shop".into());
        events.push(e);
    }
    events.sort_by_key(|e| e.time);
    let outs = run(&events);
    let mut by_id: BTreeMap<String, Vec<&Incident>> = BTreeMap::new();
    for o in &outs {
        if let Output::Incident(i) = o {
            by_id.entry(i.incident_id.clone()).or_default().push(i);
        }
    }
    let rooted = |svc: &str| -> Vec<&Vec<&Incident>> {
        by_id
            .values()
            .filter(|v| v.iter().any(|i| i.root_cause_service == svc))
            .collect()
    };
    let payments = rooted("payments");
    assert_eq!(payments.len(), 1, "one incident for payments: {by_id:#?}");
    assert_eq!(
        statuses(payments[0]),
        ["open", "resolved", "open", "resolved"],
        "resolved, then reopened by the relapse: {by_id:#?}"
    );
    let checkout = rooted("checkout");
    assert_eq!(checkout.len(), 1, "{by_id:#?}");
    assert_eq!(
        statuses(checkout[0]),
        ["open", "resolved"],
        "the inventory fault does not reopen checkout's incident: {by_id:#?}"
    );
    assert!(checkout[0]
        .iter()
        .all(|i| i.root_cause_service == "checkout"));
    let inventory = rooted("inventory");
    assert_eq!(inventory.len(), 1, "{by_id:#?}");
    assert_eq!(
        inventory[0].last().unwrap().category,
        Category::ResourceExhaustion
    );
    assert_eq!(by_id.len(), 3, "{by_id:#?}");
}

#[test]
fn an_intermittent_fault_with_a_long_pause_stays_one_incident() {
    // payments fails, pauses longer than the correlation gap (5 min) — 9
    // minutes, so the resolve hold (10 min) would end just as the second
    // burst is detected — and fails again: the same open fault, not a
    // second incident and not a resolution in between.
    let mut cfg = GenConfig::shop(24, 3 * 3_600_000);
    let t0 = cfg.start.plus_ms(3_600_000);
    let oom = "java.lang.OutOfMemoryError: Java heap space (request {id})";
    for start in [t0, t0.plus_ms(12 * 60_000)] {
        cfg.faults.push(fault(
            "payments",
            start,
            3,
            oom,
            Some("java.lang.OutOfMemoryError"),
        ));
    }
    let outs = run(&generate(&cfg));
    let records: Vec<&Incident> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Incident(i) => Some(i),
            _ => None,
        })
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        records.iter().map(|i| i.incident_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one fault, one incident: {records:#?}");
    assert_eq!(
        statuses(&records),
        ["open", "resolved"],
        "never resolved in the pause: {records:#?}"
    );
    assert!(records.iter().all(|i| i.root_cause_service == "payments"));
}

#[test]
fn dependencies_are_learned_from_shared_traces_without_upstream_fields() {
    // The callers' errors do not say whom they called (no `upstream`, no
    // catalog edge for these names): only the shared trace ids, where the
    // callee erred first, tell that checkout depends on payments.
    let mut cfg = GenConfig::shop(25, 3 * 3_600_000);
    let s = |n: &str, d: &[&str]| (n.to_string(), d.iter().map(|x| x.to_string()).collect());
    cfg.services = vec![
        s("web-a", &["svc-b"]),
        s("svc-b", &["svc-c"]),
        s("svc-c", &[]),
    ];
    cfg.faults.push(fault(
        "svc-c",
        cfg.start.plus_ms(3_600_000),
        8,
        "worker {id} failed: panic in handler",
        None,
    ));
    let mut events = generate(&cfg);
    for e in &mut events {
        e.upstream = None;
        if e.message.starts_with("call to svc-c failed") {
            e.message = "request failed: internal error".into();
            e.http_status = Some(500);
        }
    }
    let outs = run(&events);
    assert!(
        outs.iter().any(|o| matches!(o, Output::Detection(d)
            if d.rule == "trace_cascade"
                && d.service == "svc-b"
                && d.upstreams.first().is_some_and(|u| u.value == "svc-c"))),
        "the trace order makes svc-c an upstream of svc-b"
    );
    let incs = incidents(&outs);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = incs.values().next().unwrap();
    assert_eq!(i.root_cause_service, "svc-c", "{i:#?}");
    assert!(i.services.iter().any(|s| s == "svc-b"), "{i:#?}");
}

/// A threshold-style detection of `count` failing events on `svc` in the
/// minute starting at `minute`, naming `upstream` in all of them if given.
fn burst(svc: &str, minute: i64, count: i64, upstream: Option<&str>) -> reflex::model::Detection {
    let start = 1_767_225_600_000 + minute * 60_000;
    serde_json::from_value(serde_json::json!({
        "detection_id": format!("det-{svc}-{minute}"),
        "detector": "threshold", "rule": "error_burst",
        "key": format!("service={svc}"), "service": svc, "namespace": "shop",
        "score": 0.9,
        "window": {"start": start, "end": start + 60_000},
        "evidence": format!("{svc}: {count} errors"), "count": count,
        "first_seen": start + 100,
        "upstreams": upstream.map(|u| vec![serde_json::json!({"value": u, "count": count})]).unwrap_or_default(),
    }))
    .expect("detection")
}

#[test]
fn a_late_caller_blaming_an_open_incidents_root_joins_it() {
    use reflex::pipeline::Stage;
    // api fails; its incident opens. Seven minutes after api's last
    // detection (beyond the 5 minute correlation gap, within the 10 minute
    // resolve hold) a caller starts failing on api: its pending incident
    // names api as root, so it is the open incident's fault, not a new one.
    let cfg = Config::embedded().expect("embedded config");
    let mut stage = reflex::diagnosis::DiagnosisStage::new(
        cfg.diagnosis.clone(),
        std::sync::Arc::new(Default::default()),
        std::sync::Arc::default(),
    );
    let mut out = Vec::new();
    let wm = |m: i64| EventTime(1_767_225_600_000 + m * 60_000);
    for m in 0..3 {
        stage.process(burst("api", m, 40, None), &mut out);
        stage.on_watermark(wm(m + 1), &mut out);
    }
    for m in 3..10 {
        stage.on_watermark(wm(m + 1), &mut out);
    }
    for m in 10..12 {
        stage.process(burst("web", m, 60, Some("api")), &mut out);
        stage.on_watermark(wm(m + 1), &mut out);
    }
    for m in 12..40 {
        stage.on_watermark(wm(m + 1), &mut out);
    }
    let ids: std::collections::BTreeSet<&str> =
        out.iter().map(|i| i.incident_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "{out:#?}");
    assert!(
        out.iter().all(|i| i.root_cause_service == "api"),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|i| i.services.iter().any(|s| s == "web")),
        "web joined the incident: {out:#?}"
    );
}

/// A detection on `svc` for the minute starting at `minute`: `count`
/// failing events naming `upstreams` (with counts), one category hint
/// (`(category, weight, about)`), scored `score` (strong ≥ 0.5).
fn det(
    svc: &str,
    minute: i64,
    rule: &str,
    score: f64,
    count: i64,
    upstreams: &[(&str, i64)],
    hint: Option<(&str, f64, &str)>,
) -> reflex::model::Detection {
    let start = 1_767_225_600_000 + minute * 60_000;
    let (detector, rule) = rule.split_once('/').unwrap_or(("threshold", rule));
    serde_json::from_value(serde_json::json!({
        "detection_id": format!("det-{svc}-{rule}-{minute}"),
        "detector": detector, "rule": rule,
        "key": format!("{rule},service={svc}"), "service": svc, "namespace": "shop",
        "score": score,
        "window": {"start": start, "end": start + 60_000},
        "evidence": format!("{svc}: {count} errors ({rule})"), "count": count,
        "first_seen": start + 100,
        "upstreams": upstreams.iter().map(|(u, c)| serde_json::json!({"value": u, "count": c})).collect::<Vec<_>>(),
        "hints": hint.map(|(c, w, a)| vec![serde_json::json!({"category": c, "weight": w, "source": "test", "about": a})]).unwrap_or_default(),
    }))
    .expect("detection")
}

fn wm(minute: i64) -> EventTime {
    EventTime(1_767_225_600_000 + minute * 60_000)
}

fn stage() -> reflex::diagnosis::DiagnosisStage {
    let cfg = Config::embedded().expect("embedded config");
    reflex::diagnosis::DiagnosisStage::new(
        cfg.diagnosis.clone(),
        std::sync::Arc::new(Default::default()),
        std::sync::Arc::default(),
    )
}

/// Latest record per incident id from a list of records.
fn latest(out: &[Incident]) -> BTreeMap<String, Incident> {
    let mut m = BTreeMap::new();
    for i in out {
        m.insert(i.incident_id.clone(), i.clone());
    }
    m
}

const OOM: Option<(&str, f64, &str)> = Some(("memory_exhaustion", 0.8, "self"));
const FILES: Option<(&str, f64, &str)> = Some(("resource_exhaustion", 0.8, "self"));
const REFUSED: Option<(&str, f64, &str)> = Some(("unavailable", 0.6, "dependency"));

#[test]
fn chronic_cascade_noise_does_not_keep_an_incident_open() {
    use reflex::pipeline::Stage;
    // api fails for 3 minutes. Afterwards its caller keeps failing a few
    // calls to it all day (a weak cascade every minute) and api keeps
    // logging never-seen templates: background, not the fault.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..3 {
        s.process(det("api", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 3..180 {
        s.process(
            det("web", m, "pattern/cascade", 0.3, 6, &[("api", 6)], REFUSED),
            &mut out,
        );
        s.process(
            det("api", m, "pattern/new_template", 0.3, 2, &[], None),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = incs.values().next().expect("one incident");
    assert_eq!(i.root_cause_service, "api");
    assert_eq!(i.status, reflex::model::IncidentStatus::Resolved, "{i:#?}");
    // Resolved `resolve_after` (10 minutes) after the last burst.
    assert_eq!(i.resolved_at, Some(wm(3).plus_ms(10 * 60_000)), "{i:#?}");
    assert_eq!(
        i.services,
        ["api"],
        "weak evidence adds no services: {i:#?}"
    );
}

#[test]
fn a_second_independent_fault_during_an_open_incident_gets_its_own_incident() {
    use reflex::pipeline::Stage;
    // api runs out of memory for 20 minutes; web fails calling it. api
    // also calls payments (a few background failures name it). At minute
    // 8 payments runs out of file descriptors: another fault, its own
    // incident, although the graph connects it to the open one.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..20 {
        s.process(
            det("api", m, "error_burst", 0.9, 40, &[("payments", 3)], OOM),
            &mut out,
        );
        if m >= 1 {
            s.process(
                det("web", m, "error_burst", 0.9, 60, &[("api", 60)], REFUSED),
                &mut out,
            );
        }
        if m >= 8 {
            s.process(
                det("payments", m, "error_burst", 0.9, 50, &[], FILES),
                &mut out,
            );
        }
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let mut roots: Vec<(String, Category)> = incs
        .values()
        .map(|i| (i.root_cause_service.clone(), i.category))
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        [
            ("api".to_string(), Category::MemoryExhaustion),
            ("payments".to_string(), Category::ResourceExhaustion),
        ],
        "{incs:#?}"
    );
    // No record of the first incident ever named payments.
    let first = &incs
        .values()
        .find(|i| i.root_cause_service == "api")
        .expect("api incident")
        .incident_id;
    assert!(
        out.iter()
            .filter(|i| &i.incident_id == first)
            .all(|i| i.root_cause_service == "api" && !i.services.iter().any(|s| s == "payments")),
        "{out:#?}"
    );
}

#[test]
fn two_overlapping_faults_sharing_a_caller_are_two_incidents() {
    use reflex::pipeline::Stage;
    // web calls api and search; both fail at once for their own reasons,
    // and web fails calling both (louder than either).
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..8 {
        s.process(det("api", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.process(
            det(
                "web",
                m,
                "error_burst",
                0.9,
                100,
                &[("api", 50), ("search", 50)],
                REFUSED,
            ),
            &mut out,
        );
        s.process(
            det("search", m, "error_burst", 0.9, 40, &[], FILES),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let mut roots: Vec<(String, Category)> = incs
        .values()
        .map(|i| (i.root_cause_service.clone(), i.category))
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        [
            ("api".to_string(), Category::MemoryExhaustion),
            ("search".to_string(), Category::ResourceExhaustion),
        ],
        "{incs:#?}"
    );
    for i in incs.values() {
        let other = if i.root_cause_service == "api" {
            "search"
        } else {
            "api"
        };
        assert!(!i.services.iter().any(|s| s == other), "{i:#?}");
    }
    // The shared caller counts toward the roots it calls.
    assert!(
        incs.values().all(|i| i.services.iter().any(|s| s == "web")),
        "{incs:#?}"
    );
}

#[test]
fn an_acted_on_incident_is_not_re_rooted() {
    use reflex::model::ActionType;
    // api runs out of memory; its incident opens and recovery restarts
    // api. Afterwards traces show api's errors following db's: evidence
    // that would move the root to db, but the incident was acted on as
    // api's fault and stays so.
    let cfg = Config::embedded().expect("embedded config");
    let mut sink = MemorySink::default();
    let mut d = embedded::Decider::new(
        &cfg,
        &DecideOptions::default(),
        &mut sink,
        std::sync::Arc::default(),
    );
    for m in 0..4 {
        d.run_batch(
            vec![],
            vec![
                det("api", m, "error_burst", 0.9, 40, &[], OOM),
                det("web", m, "error_burst", 0.9, 60, &[("api", 60)], REFUSED),
            ],
            Some(wm(m + 1)),
        )
        .expect("batch");
    }
    for m in 4..8 {
        d.run_batch(
            vec![],
            vec![
                det("api", m, "error_burst", 0.9, 40, &[], OOM),
                det(
                    "api",
                    m,
                    "pattern/trace_cascade",
                    0.3,
                    400,
                    &[("db", 400)],
                    None,
                ),
            ],
            Some(wm(m + 1)),
        )
        .expect("batch");
    }
    d.finish().expect("finish");
    drop(d);
    let acted: Vec<&reflex::model::RecoveryAction> = sink
        .records
        .iter()
        .filter_map(|o| match o {
            Output::Action(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(
        acted
            .iter()
            .any(|a| a.action_type == ActionType::Restart && a.target.service == "api"),
        "recovery acted on api: {:#?}",
        sink.records
    );
    let incs = incidents(&sink.records);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    for o in &sink.records {
        if let Output::Incident(i) = o {
            assert_eq!(i.root_cause_service, "api", "{i:#?}");
        }
    }
}

/// Weak cascades from each of `callers` to `upstream` at minute `minute`:
/// background that teaches the dependency graph who calls whom.
fn teach(s: &mut reflex::diagnosis::DiagnosisStage, callers: &[&str], upstream: &str, minute: i64) {
    use reflex::pipeline::Stage;
    let mut out = Vec::new();
    for c in callers {
        s.process(
            det(
                c,
                minute,
                "pattern/cascade",
                0.3,
                6,
                &[(upstream, 6)],
                REFUSED,
            ),
            &mut out,
        );
    }
    assert!(out.is_empty(), "weak evidence opens nothing: {out:#?}");
}

#[test]
fn a_lone_caller_failing_on_a_dependency_others_use_fine_is_not_an_incident() {
    use reflex::pipeline::Stage;
    // store has three callers. Long after they were seen calling it, one
    // of them (auth) fails loudly calling store for five minutes while the
    // others are fine and store logs nothing: auth's edge is in trouble
    // (a retry storm, a heavy batch), store is not down.
    // With a second caller failing on store too, store is down. A deploy
    // of store shortly before changes neither: a broken store would fail
    // its other callers too.
    for (failing, store_deployed) in [
        (&["auth"][..], false),
        (&["auth"][..], true),
        (&["auth", "cart"][..], false),
    ] {
        let mut s = stage();
        teach(&mut s, &["auth", "cart", "orders"], "store", 0);
        let mut out = Vec::new();
        if store_deployed {
            s.process(
                det("store", 26, "change/deploy", 1.0, 1, &[], None),
                &mut out,
            );
        }
        for m in 30..35 {
            for c in failing {
                s.process(
                    det(c, m, "error_burst", 0.9, 50, &[("store", 50)], REFUSED),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 35..60 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        if failing.len() == 1 {
            assert!(incs.is_empty(), "deployed {store_deployed}: {incs:#?}");
        } else {
            assert_eq!(incs.len(), 1, "{incs:#?}");
            let i = incs.values().next().expect("one incident");
            assert_eq!(i.root_cause_service, "store", "{i:#?}");
        }
    }
}

#[test]
fn a_short_retry_storm_on_one_edge_is_not_an_incident() {
    use reflex::pipeline::Stage;
    // One caller hammers an external API for two minutes (a retry storm):
    // one witness, gone before it could be confirmed. The same for four
    // minutes is the dependency failing.
    for (minutes, expected) in [(2, 0usize), (4, 1)] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 0..minutes {
            s.process(
                det(
                    "shop",
                    m,
                    "error_burst",
                    0.9,
                    40,
                    &[("api.psp.example", 40)],
                    REFUSED,
                ),
                &mut out,
            );
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in minutes..30 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        assert_eq!(incs.len(), expected, "{minutes} minutes: {incs:#?}");
        if let Some(i) = incs.values().next() {
            assert_eq!(i.root_cause_service, "api.psp.example", "{i:#?}");
        }
    }
}

/// `det` with sampled messages (what recurrence compares).
fn det_saying(
    svc: &str,
    minute: i64,
    hint: Option<(&str, f64, &str)>,
    samples: &[&str],
) -> reflex::model::Detection {
    let mut d = det(svc, minute, "error_burst", 0.9, 60, &[], hint);
    d.samples = samples.iter().map(|x| x.to_string()).collect();
    d
}

#[test]
fn a_batch_job_failing_on_its_schedule_is_one_incident_but_a_new_failure_is_new() {
    use reflex::pipeline::Stage;
    // reconcile exhausts its pool for four minutes at 00:05, 01:06, 02:04
    // (an hourly job): the first run is an incident, the repeats are its
    // schedule. At 03:05 it fails differently (out of memory): new.
    const POOL: &str =
        "HikariPool-1 - Connection is not available, request timed out after 30000ms.";
    const HEAP: &str = "java.lang.OutOfMemoryError: Java heap space";
    let mut s = stage();
    let mut out = Vec::new();
    let mut opened = Vec::new();
    for (start, hint, msg) in [
        (5, FILES, POOL),
        (66, FILES, POOL),
        (124, FILES, POOL),
        (185, OOM, HEAP),
    ] {
        for m in start..start + 4 {
            s.process(det_saying("reconcile", m, hint, &[msg]), &mut out);
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in start + 4..start + 40 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        opened.push(latest(&out).len());
    }
    assert_eq!(opened, [1, 1, 1, 2], "{:#?}", latest(&out));
    let cats: Vec<Category> = latest(&out).values().map(|i| i.category).collect();
    assert!(cats.contains(&Category::MemoryExhaustion), "{cats:?}");
}

#[test]
fn a_service_nothing_depends_on_failing_alone_waits_for_a_human() {
    use reflex::pipeline::Stage;
    // worker (no known callers) runs out of memory alone: the incident's
    // confidence stays below the automatic-action threshold. api, which
    // web is known to call, failing the same way is trusted as usual.
    for (svc, capped) in [("worker", true), ("api", false)] {
        let mut s = stage();
        teach(&mut s, &["web"], "api", 0);
        let mut out = Vec::new();
        for m in 30..34 {
            s.process(det(svc, m, "error_burst", 0.9, 40, &[], OOM), &mut out);
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        let i = incs.values().next().expect("an incident");
        assert_eq!(i.category, Category::MemoryExhaustion, "{i:#?}");
        assert_eq!(i.confidence <= 0.55, capped, "{svc}: {i:#?}");
        assert_eq!(
            i.evidence
                .iter()
                .any(|e| e.contains("no other service is known to depend")),
            capped,
            "{i:#?}"
        );
    }
}

#[test]
fn a_cronjob_run_failing_alone_is_not_an_incident_but_a_deployment_is() {
    use reflex::pipeline::Stage;
    // The same four minutes of pool exhaustion, once from the pod of a
    // CronJob run (named `<cronjob>-<scheduled minute>-<suffix>`, as the
    // Job controller names it) and once from a Deployment's pods: the job's
    // run failing is the job's outcome, the Deployment's is an incident.
    const POOL: &str =
        "HikariPool-1 - Connection is not available, request timed out after 30000ms.";
    let scheduled = wm(30).millis() / 60_000;
    for (pod, expected) in [
        (format!("reconcile-{scheduled}-x7kq2"), 0),
        ("reconcile-7d9f8c6b5-x7kq2".to_string(), 1),
    ] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 30..34 {
            let mut d = det_saying("reconcile", m, FILES, &[POOL]);
            d.instances = vec![reflex::model::Counted {
                value: pod.clone(),
                count: 60,
            }];
            s.process(d, &mut out);
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 34..50 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        assert_eq!(latest(&out).len(), expected, "{pod}: {:#?}", latest(&out));
    }
}

#[test]
fn a_quiet_roots_own_words_name_the_category_its_callers_cannot() {
    use reflex::pipeline::Stage;
    // web and mobile time out calling api (callers see overload); api logs
    // only a few errors of its own, too few to fire a strong detection,
    // saying its connection pool is exhausted. Without those words the
    // incident would say overload.
    const TIMEOUT: Option<(&str, f64, &str)> = Some(("overload", 0.5, "dependency"));
    for (api_speaks, expected) in [
        (true, Category::ResourceExhaustion),
        (false, Category::Overload),
    ] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 30..34 {
            for c in ["web", "mobile"] {
                s.process(
                    det(c, m, "error_burst", 0.9, 80, &[("api", 80)], TIMEOUT),
                    &mut out,
                );
            }
            // api reports events either way (it is a service, not an
            // external host); only its words differ.
            let words = if api_speaks { FILES } else { None };
            s.process(
                det("api", m, "pattern/new_template", 0.4, 3, &[], words),
                &mut out,
            );
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        let i = incs.values().next().expect("an incident");
        assert_eq!(i.root_cause_service, "api", "{i:#?}");
        assert_eq!(i.category, expected, "{i:#?}");
        assert_eq!(i.confidence >= 0.6, api_speaks, "{i:#?}");
    }
}

#[test]
fn without_a_deploy_of_the_root_there_is_no_bad_deploy() {
    use reflex::pipeline::Stage;
    // catalog throws a new exception while search times out calling it;
    // nothing of catalog was deployed. Whatever the messages resemble, it
    // is no deploy regression (there is nothing to roll back).
    const NPE: &str = "Servlet.service() for servlet [dispatcherServlet] threw exception: java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"token\" is null";
    const TIMEOUT: &str =
        "java.net.SocketTimeoutException: Read timed out (GET http://catalog:8080/api/v2/products)";
    let mut s = stage();
    let mut out = Vec::new();
    for m in 30..34 {
        let mut caller = det(
            "search",
            m,
            "error_burst",
            0.9,
            45,
            &[("catalog", 45)],
            None,
        );
        caller.samples = vec![TIMEOUT.to_string()];
        s.process(caller, &mut out);
        let mut own = det_saying("catalog", m, None, &[NPE]);
        own.error_types = vec![reflex::model::Counted {
            value: "java.lang.NullPointerException".into(),
            count: 60,
        }];
        own.http_statuses = vec![reflex::model::Counted {
            value: "500".into(),
            count: 60,
        }];
        s.process(own, &mut out);
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let i = incs.values().next().expect("an incident");
    assert_eq!(i.root_cause_service, "catalog", "{i:#?}");
    assert_ne!(i.category, Category::BadDeploy, "{i:#?}");
}

#[test]
fn an_incident_split_off_a_storm_it_joined_dates_from_its_own_first_failure() {
    use reflex::pipeline::Stage;
    // pay's storm on an external PSP opens a pending incident at minute 0.
    // A minute later api runs out of memory and web fails calling it; web
    // also fails a couple of calls to pay, so the fault joins the pending
    // incident. When it settles, api's fault is split from pay's storm: its
    // incident began at minute 1 (when api first failed), not when the
    // storm that it happened to join began.
    let mut s = stage();
    let mut out = Vec::new();
    s.process(psp_storm(0), &mut out);
    s.on_watermark(wm(1), &mut out);
    for m in 1..6 {
        s.process(psp_storm(m), &mut out);
        s.process(
            det(
                "web",
                m,
                "error_burst",
                0.9,
                60,
                &[("api", 50), ("pay", 2)],
                REFUSED,
            ),
            &mut out,
        );
        s.process(det("api", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let api = incs
        .values()
        .find(|i| i.root_cause_service == "api")
        .unwrap_or_else(|| panic!("an incident rooted at api: {incs:#?}"));
    assert!(api.opened_at >= wm(1), "{api:#?}");
    assert!(!api.services.iter().any(|s| s == "pay"), "{api:#?}");
    assert!(
        incs.values()
            .filter(|i| i.root_cause_service == "api")
            .count()
            == 1,
        "{incs:#?}"
    );
}

#[test]
fn a_caller_joins_the_pending_incident_of_the_dependency_it_blames() {
    use reflex::pipeline::Stage;
    // pay's storm on an external PSP is pending when api runs out of
    // memory (its own pending incident); web, which calls both, fails
    // mostly on api. web belongs with api's failure: the first record of
    // api's incident already has api's own evidence (memory exhaustion),
    // not only web's refusals (a silent root, category unavailable).
    let mut s = stage();
    let mut out = Vec::new();
    s.process(
        det("web", 0, "pattern/cascade", 0.3, 2, &[("pay", 2)], None),
        &mut out,
    );
    s.process(psp_storm(0), &mut out);
    s.on_watermark(wm(1), &mut out);
    for m in 1..6 {
        s.process(psp_storm(m), &mut out);
        s.process(det("api", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.process(
            det(
                "web",
                m,
                "error_burst",
                0.9,
                60,
                &[("api", 50), ("pay", 2)],
                REFUSED,
            ),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let first = out
        .iter()
        .find(|i| i.root_cause_service == "api")
        .unwrap_or_else(|| panic!("an incident rooted at api: {out:#?}"));
    assert_eq!(first.category, Category::MemoryExhaustion, "{first:#?}");
    assert!(first.services.iter().any(|s| s == "web"), "{first:#?}");
}

/// `d` with `n` of its events placed on `node`.
fn placed(mut d: reflex::model::Detection, node: &str, n: i64) -> reflex::model::Detection {
    d.nodes = vec![
        serde_json::from_value(serde_json::json!({"value": node, "count": n})).expect("node count"),
    ];
    d
}

/// pay's storm on an external PSP, the minute starting at `minute`.
fn psp_storm(minute: i64) -> reflex::model::Detection {
    det(
        "pay",
        minute,
        "error_burst",
        0.9,
        40,
        &[("psp.example.com", 40)],
        None,
    )
}

#[test]
fn services_failing_their_network_together_on_one_node_open_a_node_incident() {
    use reflex::pipeline::Stage;
    // Three services each log a few connection resets of their own, too
    // few for a strong detection: alone each is background. All of them
    // on one node within minutes is that node's network; the same errors
    // spread over three nodes are not an incident.
    const RESET: Option<(&str, f64, &str)> = Some(("network", 0.7, "self"));
    let run = |nodes: [&str; 3]| {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 0..4 {
            for (svc, node) in ["cart", "search", "reviews"].iter().zip(nodes) {
                let mut d = det(svc, m, "error_burst", 0.3, 3, &[], RESET);
                d.nodes =
                    vec![
                        serde_json::from_value(serde_json::json!({"value": node, "count": 3}))
                            .expect("node count"),
                    ];
                s.process(d, &mut out);
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 4..30 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        latest(&out)
    };
    let one = run(["node-7", "node-7", "node-7"]);
    assert_eq!(one.len(), 1, "{one:#?}");
    let inc = one.values().next().expect("one incident");
    assert_eq!(inc.root_cause_service, "node-7", "{inc:#?}");
    assert_eq!(inc.category, Category::Network, "{inc:#?}");
    let spread = run(["node-1", "node-2", "node-3"]);
    assert!(spread.is_empty(), "{spread:#?}");
}

#[test]
fn a_caller_on_a_broken_node_failing_on_its_upstream_is_the_nodes_incident() {
    use reflex::pipeline::Stage;
    // checkout runs on node-7 only and fails calling payments (connection
    // refused) while three other services log network errors of their own
    // there: checkout's trouble is the node's, not payments', so it joins
    // the node's incident instead of opening one rooted at payments.
    const RESET: Option<(&str, f64, &str)> = Some(("network", 0.7, "self"));
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..4 {
        let d = det(
            "checkout",
            m,
            "error_burst",
            0.9,
            40,
            &[("payments", 40)],
            REFUSED,
        );
        // Few of its events say where they ran (one per window here).
        s.process(placed(d, "node-7", 1), &mut out);
        for svc in ["cart", "search", "reviews"] {
            let d = det(svc, m, "error_burst", 0.3, 3, &[], RESET);
            s.process(placed(d, "node-7", 3), &mut out);
        }
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 4..30 {
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let opened: Vec<&Incident> = incs
        .values()
        .filter(|i| !i.summary.starts_with("Merged into"))
        .collect();
    assert_eq!(opened.len(), 1, "{incs:#?}");
    assert_eq!(opened[0].root_cause_service, "node-7", "{incs:#?}");
    assert!(
        opened[0].services.iter().any(|s| s == "checkout"),
        "{incs:#?}"
    );
}

#[test]
fn a_one_window_blip_that_lands_in_another_pending_incident_does_not_open_by_itself() {
    use reflex::pipeline::Stage;
    // pay fails calling an external PSP for five minutes: a fault. In its
    // second minute recs has one loud minute of timeouts on features (a
    // retry storm) that also names the PSP once, so it joins pay's pending
    // incident. When that settles, recs is split off: alone and in one
    // window it is a blip, and stays unopened. The control: recs failing
    // for three minutes (what a lone caller of a silent dependency needs)
    // opens its own incident.
    for (storm_minutes, expected) in [(1, 1usize), (3, 2)] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 0..5 {
            s.process(psp_storm(m), &mut out);
            if (1..1 + storm_minutes).contains(&m) {
                s.process(
                    det(
                        "recs",
                        m,
                        "error_burst",
                        0.9,
                        21,
                        &[("features", 16), ("psp.example.com", 2)],
                        None,
                    ),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 5..30 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        assert_eq!(incs.len(), expected, "storm {storm_minutes}: {incs:#?}");
        assert!(
            incs.values()
                .any(|i| i.root_cause_service == "psp.example.com"),
            "{incs:#?}"
        );
    }
}

#[test]
fn a_batch_job_failing_on_upstreams_that_log_its_requests_errors_is_not_an_incident() {
    use reflex::pipeline::Stage;
    // indexer (a batch job) hammers catalog and an external search
    // cluster for six minutes; catalog logs errors of no particular kind on
    // exactly those requests, enough for one strong minute. catalog's other
    // callers are fine: the trouble is indexer's edge, not catalog.
    // Controls: another caller failing on catalog too, or catalog saying it
    // is saturated, is a fault of catalog.
    const SATURATED: Option<(&str, f64, &str)> = Some(("overload", 0.6, "self"));
    for (web_fails, catalog_says, expected) in [
        (false, None, 0usize),
        (true, None, 1),
        (false, SATURATED, 1),
    ] {
        let mut s = stage();
        teach(&mut s, &["indexer", "web", "mobile"], "catalog", 0);
        let mut out = Vec::new();
        for m in 30..36 {
            s.process(
                det(
                    "indexer",
                    m,
                    "error_burst",
                    0.9,
                    60,
                    &[("catalog", 30), ("search.example.net", 30)],
                    None,
                ),
                &mut out,
            );
            if m == 31 {
                s.process(
                    det("catalog", m, "error_burst", 0.6, 16, &[], catalog_says),
                    &mut out,
                );
            }
            if web_fails {
                s.process(
                    det(
                        "web",
                        m,
                        "error_burst",
                        0.9,
                        50,
                        &[("catalog", 50)],
                        REFUSED,
                    ),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 36..60 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        assert_eq!(
            incs.len(),
            expected,
            "web {web_fails}, catalog {catalog_says:?}: {incs:#?}"
        );
    }
}

#[test]
fn a_silent_roots_own_words_corroborate_a_lone_witness() {
    use reflex::pipeline::Stage;
    // The ingress fails on portal for two minutes; portal itself logs only
    // a never-seen "MemoryError" (a weak detection). One witness would wait
    // for a third window; portal's own words say it is out of memory, so it
    // opens, with that category. Without them it is a blip and does not.
    for portal_speaks in [true, false] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 0..2 {
            s.process(
                det(
                    "ingress",
                    m,
                    "error_burst",
                    0.9,
                    60,
                    &[("portal", 60)],
                    REFUSED,
                ),
                &mut out,
            );
            if portal_speaks {
                s.process(
                    det("portal", m, "pattern/new_template", 0.3, 1, &[], OOM),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 2..30 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        if portal_speaks {
            let i = incs.values().next().expect("an incident");
            assert_eq!(incs.len(), 1, "{incs:#?}");
            assert_eq!(i.root_cause_service, "portal", "{i:#?}");
            assert_eq!(i.category, Category::MemoryExhaustion, "{i:#?}");
        } else {
            assert!(incs.is_empty(), "{incs:#?}");
        }
    }
}

#[test]
fn the_end_of_input_opens_what_is_confirmed_and_nothing_else() {
    use reflex::pipeline::Stage;
    // The input ends while incidents are pending: a one-minute blip is not
    // opened, a failure seen in two minutes is (the input ended, not the
    // fault).
    for (minutes, expected) in [(1, 0usize), (2, 1)] {
        let mut s = stage();
        let mut out = Vec::new();
        for m in 0..minutes {
            s.process(det("api", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        }
        s.on_watermark(wm(minutes), &mut out);
        s.flush(&mut out);
        let incs = latest(&out);
        assert_eq!(incs.len(), expected, "{minutes} minutes: {incs:#?}");
    }
}

#[test]
fn a_victim_failing_for_a_new_reason_does_not_pull_its_callers_into_the_old_incident() {
    use reflex::pipeline::Stage;
    // promo runs out of memory for five minutes and catalog fails calling
    // it: one incident. Right after, config breaks: catalog now fails
    // calling config, and search fails calling catalog. catalog's new
    // failure is not promo's, so search's complaints about catalog are
    // the new fault's: promo's incident gains nobody and resolves, and the
    // new fault is an incident of its own.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..5 {
        s.process(det("promo", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.process(
            det(
                "catalog",
                m,
                "error_burst",
                0.9,
                50,
                &[("promo", 50)],
                REFUSED,
            ),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 6..30 {
        s.process(
            det(
                "catalog",
                m,
                "error_burst",
                0.9,
                50,
                &[("config", 50)],
                REFUSED,
            ),
            &mut out,
        );
        s.process(
            det(
                "search",
                m,
                "error_burst",
                0.9,
                40,
                &[("catalog", 40)],
                REFUSED,
            ),
            &mut out,
        );
        s.process(
            det("config", m, "error_burst", 0.9, 30, &[], FILES),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let promo = incs
        .values()
        .find(|i| i.root_cause_service == "promo")
        .unwrap_or_else(|| panic!("promo's incident: {incs:#?}"));
    assert_eq!(promo.status, IncidentStatus::Resolved, "{promo:#?}");
    assert!(!promo.services.iter().any(|s| s == "search"), "{promo:#?}");
    assert!(
        incs.values()
            .any(|i| i.root_cause_service == "config" && i.services.iter().any(|s| s == "search")),
        "{incs:#?}"
    );
}

/// Two callers fail to reach `bff` for four minutes from minute 30 while
/// `bff` logs nothing; `change` is `bff`'s change (type, minute) if any.
fn silent_bff(change: Option<(&str, i64)>) -> BTreeMap<String, Incident> {
    silent_bff_seen_as(change, REFUSED, &["web", "mobile"])
}

/// [`silent_bff`] with `callers` failing, their errors saying `hint`.
fn silent_bff_seen_as(
    change: Option<(&str, i64)>,
    hint: Option<(&str, f64, &str)>,
    callers: &[&str],
) -> BTreeMap<String, Incident> {
    use reflex::pipeline::Stage;
    let mut s = stage();
    // Both are known to call it (each failed a few calls long before).
    teach(&mut s, &["web", "mobile"], "bff", 0);
    let mut out = Vec::new();
    if let Some((kind, at)) = change {
        s.process(
            det("bff", at, &format!("change/{kind}"), 1.0, 1, &[], None),
            &mut out,
        );
    }
    for m in 30..34 {
        for caller in callers {
            s.process(
                det(caller, m, "error_burst", 0.9, 50, &[("bff", 50)], hint),
                &mut out,
            );
        }
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 34..40 {
        s.on_watermark(wm(m + 1), &mut out);
    }
    latest(&out)
}

#[test]
fn a_service_silent_right_after_its_config_changed_is_a_config_error() {
    // Its callers only see refused connections; the ConfigMap change two
    // minutes before is why (it crashes on start). A scale-out, or a config
    // change long before that it served through, says nothing of the kind.
    let one = |incs: BTreeMap<String, Incident>| {
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = incs.into_values().next().expect("an incident");
        assert_eq!(i.root_cause_service, "bff", "{i:#?}");
        i.category
    };
    assert_eq!(one(silent_bff(Some(("config", 28)))), Category::ConfigError);
    assert_eq!(one(silent_bff(Some(("deploy", 28)))), Category::BadDeploy);
    for other in [Some(("scale", 28)), Some(("config", 18)), None] {
        let c = one(silent_bff(other));
        assert!(
            !matches!(c, Category::ConfigError | Category::BadDeploy),
            "{other:?}: {c:?}"
        );
    }
    // Callers that cannot resolve or route to it see the network, which no
    // rollout breaks: the deploy just before is a coincidence.
    let dns = Some(("network", 0.6, "self"));
    assert_eq!(
        one(silent_bff_seen_as(
            Some(("scale", 28)),
            dns,
            &["web", "mobile"]
        )),
        Category::Network
    );
    let c = one(silent_bff_seen_as(
        Some(("deploy", 28)),
        dns,
        &["web", "mobile"],
    ));
    assert!(
        !matches!(c, Category::ConfigError | Category::BadDeploy),
        "{c:?}"
    );
    // A service that stopped serving fails every caller; one caller's
    // trouble after a config change nearby, while the other is fine, is no
    // such break.
    let incs = silent_bff_seen_as(Some(("config", 28)), REFUSED, &["web"]);
    assert!(
        incs.values().all(|i| i.category != Category::ConfigError),
        "{incs:#?}"
    );
}

#[test]
fn callers_of_a_service_failing_in_another_incident_join_that_incident() {
    use reflex::pipeline::Stage;
    // ledger fails; orders fails calling it and checkout fails calling
    // orders. checkout's complaints came first and sit in their own pending
    // incident, where orders looks silent; but orders is failing loudly in
    // ledger's incident, so checkout's trouble is ledger's, one hop out
    // (however well a harmless deploy of orders just before would explain
    // a silent orders).
    let mut s = stage();
    let mut out = Vec::new();
    s.process(
        det("orders", 29, "change/deploy", 1.0, 1, &[], None),
        &mut out,
    );
    for m in 30..34 {
        s.process(
            det(
                "checkout",
                m,
                "error_burst",
                0.9,
                30,
                &[("orders", 30)],
                None,
            ),
            &mut out,
        );
        s.process(
            det("ledger", m, "error_burst", 0.9, 40, &[], None),
            &mut out,
        );
        s.process(
            det("orders", m, "error_burst", 0.9, 60, &[("ledger", 60)], None),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 34..60 {
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = incs.values().next().expect("an incident");
    assert_eq!(i.root_cause_service, "ledger", "{i:#?}");
    assert!(i.services.iter().any(|s| s == "checkout"), "{i:#?}");
}

#[test]
fn a_noisy_callers_stray_call_does_not_tie_it_to_another_callers_trouble() {
    use reflex::pipeline::Stage;
    // reports fails calling orders (one caller's trouble with a dependency
    // its other callers use fine: not an incident). partner then exhausts its own
    // connection pool; of its 200 failing events one names orders. That
    // stray call does not make partner a second witness against orders:
    // partner is its own incident. (A guard of the outcome: here the split
    // at settling also keeps them apart, so this passes without the rule
    // that a shared upstream must be a fifth of a detection's failure;
    // production seed 102 is where that rule shows.)
    let mut s = stage();
    let mut out = Vec::new();
    // orders serves reports, partner and web; it is silent now.
    teach(&mut s, &["reports", "partner", "web"], "orders", 0);
    for m in 30..36 {
        s.process(
            det(
                "reports",
                m,
                "error_burst",
                0.9,
                40,
                &[("orders", 30)],
                REFUSED,
            ),
            &mut out,
        );
        if m >= 32 {
            s.process(
                det(
                    "partner",
                    m,
                    "error_burst",
                    0.9,
                    200,
                    &[("orders", 1), ("catalog", 1)],
                    FILES,
                ),
                &mut out,
            );
        }
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 36..60 {
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let has = |i: &Incident, s: &str| i.services.iter().any(|x| x == s);
    assert!(
        incs.values()
            .all(|i| !(has(i, "partner") && has(i, "reports"))),
        "{incs:#?}"
    );
    assert!(
        incs.values().any(|i| i.root_cause_service == "partner"),
        "{incs:#?}"
    );
}

#[test]
fn a_caller_whose_calls_to_the_root_are_at_their_normal_is_not_its_victim() {
    use reflex::pipeline::Stage;
    // api fails; web, which calls api, also bursts, but its failing calls
    // to api are no more than usual (listed at 0 beyond the edge's normal):
    // web fails for its own reasons and stays out of api's incident.
    // Control: the same burst with the calls to api risen joins.
    for risen in [false, true] {
        let mut s = stage();
        teach(&mut s, &["web"], "api", 0);
        let mut out = Vec::new();
        for m in 30..34 {
            s.process(det("api", m, "error_burst", 0.9, 60, &[], None), &mut out);
            if m >= 32 {
                let to_api = if risen { 80 } else { 0 };
                s.process(
                    det("web", m, "error_burst", 0.9, 80, &[("api", to_api)], None),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in 34..60 {
            s.on_watermark(wm(m + 1), &mut out);
        }
        let incs = latest(&out);
        let api = incs
            .values()
            .find(|i| i.root_cause_service == "api")
            .expect("api's incident");
        assert_eq!(
            api.services.iter().any(|x| x == "web"),
            risen,
            "risen {risen}: {incs:#?}"
        );
    }
}

#[test]
fn a_victim_that_goes_down_while_its_root_still_fails_gets_its_own_incident() {
    use reflex::pipeline::Stage;
    // The managed database db.example.net is down for 20 minutes; api
    // fails calling it and web fails calling api. At minute 8 api itself
    // goes down (scaled to zero): it logs nothing more, while web keeps
    // failing its calls to it. A victim of the database would still say
    // so; one that went quiet while its callers fail is a second fault.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..20 {
        if m < 8 {
            s.process(
                det(
                    "api",
                    m,
                    "error_burst",
                    0.9,
                    40,
                    &[("db.example.net", 40)],
                    REFUSED,
                ),
                &mut out,
            );
        }
        s.process(
            det("web", m, "error_burst", 0.9, 60, &[("api", 60)], REFUSED),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let mut roots: Vec<String> = incs
        .values()
        .map(|i| i.root_cause_service.clone())
        .collect();
    roots.sort();
    assert_eq!(roots, ["api", "db.example.net"], "{incs:#?}");
    let down = incs
        .values()
        .find(|i| i.root_cause_service == "api")
        .expect("api incident");
    assert_eq!(down.category, Category::Unavailable, "{down:#?}");
}

#[test]
fn a_victim_deployed_during_an_incident_and_failing_on_its_own_gets_its_own_incident() {
    use reflex::pipeline::Stage;
    // inventory runs out of file descriptors for 20 minutes; partner fails
    // calling it until minute 6. At minute 9 partner is deployed and from
    // minute 10 fails with errors that name no upstream: its own new
    // failure (a bad deploy), not more of inventory's, although partner
    // calls inventory.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..20 {
        s.process(
            det("inventory", m, "error_burst", 0.9, 40, &[], FILES),
            &mut out,
        );
        if m < 6 {
            s.process(
                det(
                    "partner",
                    m,
                    "error_burst",
                    0.9,
                    50,
                    &[("inventory", 50)],
                    REFUSED,
                ),
                &mut out,
            );
        }
        if m == 9 {
            s.process(
                det("partner", m, "change/deploy", 1.0, 1, &[], None),
                &mut out,
            );
        }
        if m >= 10 {
            s.process(
                det("partner", m, "error_burst", 0.9, 80, &[], None),
                &mut out,
            );
        }
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let mut roots: Vec<(String, Category)> = incs
        .values()
        .map(|i| (i.root_cause_service.clone(), i.category))
        .collect();
    roots.sort();
    assert_eq!(
        roots,
        [
            ("inventory".to_string(), Category::ResourceExhaustion),
            ("partner".to_string(), Category::BadDeploy),
        ],
        "{incs:#?}"
    );
}

#[test]
fn a_batch_jobs_runs_next_to_harmless_deploys_are_still_one_edges_trouble() {
    use reflex::pipeline::Stage;
    // indexer's hourly run hammers catalog and an external search cluster
    // (catalog echoes one strong minute of errors on those requests, as in
    // the test above). A harmless deploy of catalog lands just before the
    // first run, one of indexer just before the second: neither makes the
    // run a fault (catalog's other callers are fine; indexer fails as on
    // its earlier run).
    let mut s = stage();
    teach(&mut s, &["indexer", "web", "mobile"], "catalog", 0);
    let mut out = Vec::new();
    for (run, deployed) in [(30, "catalog"), (90, "indexer")] {
        s.process(
            det(deployed, run - 2, "change/deploy", 1.0, 1, &[], None),
            &mut out,
        );
        for m in run..run + 6 {
            let mut d = det(
                "indexer",
                m,
                "error_burst",
                0.9,
                60,
                &[("catalog", 30), ("search.example.net", 30)],
                None,
            );
            d.samples = vec!["bulk request failed: read timed out".into()];
            s.process(d, &mut out);
            if m == run + 1 {
                s.process(
                    det("catalog", m, "error_burst", 0.6, 16, &[], None),
                    &mut out,
                );
            }
            s.on_watermark(wm(m + 1), &mut out);
        }
        for m in run + 6..run + 30 {
            s.on_watermark(wm(m + 1), &mut out);
        }
    }
    assert!(latest(&out).is_empty(), "{:#?}", latest(&out));
}

#[test]
fn a_victim_still_failing_on_its_root_though_quieter_is_no_second_fault() {
    use reflex::pipeline::Stage;
    // The same as above, except that from minute 8 api keeps failing its
    // calls to the database at a rate its detectors no longer call strong
    // (only weak cascades say so): it is still the database's victim, and
    // web's failing calls to it are still the database's fault.
    let mut s = stage();
    let mut out = Vec::new();
    for m in 0..20 {
        let (rule, score) = if m < 8 {
            ("error_burst", 0.9)
        } else {
            ("pattern/cascade", 0.3)
        };
        s.process(
            det(
                "api",
                m,
                rule,
                score,
                40,
                &[("db.example.net", 40)],
                REFUSED,
            ),
            &mut out,
        );
        s.process(
            det("web", m, "error_burst", 0.9, 60, &[("api", 60)], REFUSED),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    let incs = latest(&out);
    let roots: Vec<&str> = incs
        .values()
        .map(|i| i.root_cause_service.as_str())
        .collect();
    assert_eq!(roots, ["db.example.net"], "{incs:#?}");
}

/// A gateway behind an ingress, calling two BFFs. Traces now and then put
/// a BFF's error after the gateway's (the BFF is "seen" calling the
/// gateway) and the ingress's after a BFF's (a hop further down).
fn teach_gateway(s: &mut reflex::diagnosis::DiagnosisStage) {
    use reflex::pipeline::Stage;
    let mut out = Vec::new();
    for m in 0..5 {
        teach(s, &["ingress"], "gateway", m);
        teach(s, &["gateway"], "web-bff", m);
        teach(s, &["gateway"], "mobile-bff", m);
    }
    for (later, first) in [
        ("web-bff", "gateway"),
        ("mobile-bff", "gateway"),
        ("ingress", "web-bff"),
    ] {
        s.process(
            det(
                later,
                6,
                "pattern/trace_cascade",
                0.3,
                1,
                &[(first, 1)],
                None,
            ),
            &mut out,
        );
    }
    assert!(out.is_empty(), "{out:#?}");
}

/// The gateway is deployed at `minute` and stops serving: from two minutes
/// later the ingress fails every call to it, for five minutes.
fn gateway_deployed_and_down(
    s: &mut reflex::diagnosis::DiagnosisStage,
    minute: i64,
    out: &mut Vec<Incident>,
) {
    use reflex::pipeline::Stage;
    s.process(
        det("gateway", minute, "change/deploy", 1.0, 1, &[], None),
        out,
    );
    for m in minute + 2..minute + 7 {
        s.process(
            det(
                "ingress",
                m,
                "error_burst",
                0.9,
                80,
                &[("gateway", 80)],
                REFUSED,
            ),
            out,
        );
        s.on_watermark(wm(m + 1), out);
    }
}

#[test]
fn a_gateway_silent_after_its_deploy_fails_its_one_caller_a_bad_deploy() {
    // The gateway is deployed and stops serving; its only caller, the
    // ingress, fails every call to it. The BFFs that traces sometimes show
    // "calling" it are its callees: the one caller failing is every caller
    // failing, so the deploy broke it.
    let mut s = stage();
    teach_gateway(&mut s);
    let mut out = Vec::new();
    gateway_deployed_and_down(&mut s, 28, &mut out);
    let incs = latest(&out);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = incs.values().next().expect("one incident");
    assert_eq!(i.root_cause_service, "gateway", "{i:#?}");
    assert_eq!(i.category, Category::BadDeploy, "{i:#?}");
}

#[test]
fn a_gateway_failing_hours_after_it_was_another_faults_victim_is_no_schedule() {
    use reflex::pipeline::Stage;
    // The ingress fails for five minutes as a victim of orders running out
    // of memory (calls through the gateway to orders). Exactly four hours
    // later it fails again, on the gateway, which was just deployed: a new
    // fault, not a job's run repeating on an hourly schedule.
    let mut s = stage();
    teach_gateway(&mut s);
    let mut out = Vec::new();
    for m in 10..15 {
        s.process(det("orders", m, "error_burst", 0.9, 40, &[], OOM), &mut out);
        s.process(
            det(
                "ingress",
                m,
                "error_burst",
                0.9,
                60,
                &[("orders", 60)],
                REFUSED,
            ),
            &mut out,
        );
        s.on_watermark(wm(m + 1), &mut out);
    }
    for m in 15..60 {
        s.on_watermark(wm(m + 1), &mut out);
    }
    gateway_deployed_and_down(&mut s, 248, &mut out);
    let incs = latest(&out);
    let mut roots: Vec<&str> = incs
        .values()
        .map(|i| i.root_cause_service.as_str())
        .collect();
    roots.sort();
    assert_eq!(roots, ["gateway", "orders"], "{incs:#?}");
}

/// A fleet of six services on three nodes, two hours: each service fails a
/// steady 10-25 calls a minute to what it calls (timeouts, harmless) and
/// now and then loses a connection of its own. With `broken`, from minute
/// 90 for ten minutes every pod on that node loses 3-4 connections a
/// minute: per service far inside its background, per node far above its
/// normal. Deterministic (no RNG: counts from the indices).
fn fleet_with_node_trouble(broken: Option<&str>) -> Vec<ErrorEvent> {
    let svcs = [
        ("web", "orders", "node-1"),
        ("orders", "payments", "node-2"),
        ("payments", "ledger", "node-3"),
        ("cart", "orders", "node-2"),
        ("search", "catalog", "node-2"),
        ("catalog", "ledger", "node-1"),
    ];
    let mut evs = Vec::new();
    let mut id = 0u64;
    let mut push = |svc: &str, node: &str, t: i64, msg: &str, up: &str| {
        id += 1;
        let mut e = ErrorEvent::new(format!("e{id}"), EventTime(t), svc, Severity::Error, msg);
        e.node = Some(node.to_string());
        e.instance = Some(format!("{svc}-7d9f-{node}"));
        e.upstream = Some(up.to_string());
        evs.push(e);
    };
    for m in 0..120i64 {
        for (k, (svc, up, node)) in svcs.iter().enumerate() {
            let n = 10 + (m * 7 + k as i64 * 5) % 16;
            for i in 0..n {
                let t = m * 60_000 + i * (60_000 / n) + k as i64;
                push(
                    svc,
                    node,
                    t,
                    &format!("call to {up} timed out after 2000ms"),
                    up,
                );
            }
            if (m + k as i64) % 7 == 0 {
                push(
                    svc,
                    node,
                    m * 60_000 + 30_000,
                    "read: connection reset by peer",
                    up,
                );
            }
            if broken == Some(*node) && (90..100).contains(&m) {
                for i in 0..3 + (m + k as i64) % 2 {
                    let t = m * 60_000 + 1_000 + i * 13_000 + k as i64;
                    push(
                        svc,
                        node,
                        t,
                        "dial tcp: lookup ledger on 10.96.0.10:53: i/o timeout",
                        up,
                    );
                }
            }
        }
    }
    evs.sort_by_key(|e| e.time);
    evs
}

#[test]
fn a_nodes_network_fault_spread_thin_over_its_pods_is_the_nodes_incident() {
    // Each service on node-2 logs only 3-4 network errors a minute beside
    // 10-25 harmless failing calls: no service's own detectors can see it.
    // Counted per node against the node's normal it is a clear rise.
    let quiet = incidents(&run(&fleet_with_node_trouble(None)));
    assert!(quiet.is_empty(), "chronic background only: {quiet:#?}");
    let got = incidents(&run(&fleet_with_node_trouble(Some("node-2"))));
    assert_eq!(got.len(), 1, "{got:#?}");
    let inc = got.values().next().expect("one incident");
    assert_eq!(inc.root_cause_service, "node-2", "{inc:#?}");
    assert_eq!(inc.category, Category::Network, "{inc:#?}");
    let opened = inc.opened_at.millis();
    assert!(
        (90 * 60_000..=93 * 60_000).contains(&opened),
        "opened within minutes of the onset: {opened}"
    );
}

#[test]
fn a_root_deployed_after_its_incident_resolved_failing_again_is_a_new_incident() {
    // payments runs out of memory and recovers. Minutes after its incident
    // resolved a new version rolls out and payments fails again, now with
    // the new version's exception: the same root, but a new cause (the
    // deploy), so a new incident (its own id, its own action), not the old
    // one reopened. Without the deploy it would be a relapse (see above).
    let mut cfg = GenConfig::shop(23, 3 * 3_600_000);
    let t0 = cfg.start.plus_ms(3_600_000);
    cfg.faults.push(fault(
        "payments",
        t0,
        4,
        "java.lang.OutOfMemoryError: Java heap space (request {id})",
        Some("java.lang.OutOfMemoryError"),
    ));
    let mut bad = fault(
        "payments",
        t0.plus_ms(17 * 60_000),
        6,
        "java.lang.NullPointerException: Cannot invoke \"PriceRule.apply()\" (request {id})",
        Some("java.lang.NullPointerException"),
    );
    bad.with_deploy = true;
    cfg.faults.push(bad);
    let outs = run(&generate(&cfg));
    let mut by_id: BTreeMap<String, Vec<&Incident>> = BTreeMap::new();
    for o in &outs {
        if let Output::Incident(i) = o {
            by_id.entry(i.incident_id.clone()).or_default().push(i);
        }
    }
    let payments: Vec<&Vec<&Incident>> = by_id
        .values()
        .filter(|v| v.iter().any(|i| i.root_cause_service == "payments"))
        .collect();
    assert_eq!(payments.len(), 2, "two incidents for payments: {by_id:#?}");
    for v in &payments {
        assert_eq!(statuses(v), ["open", "resolved"], "{by_id:#?}");
    }
    let last = |v: &Vec<&Incident>| v.last().map(|i| i.category);
    let cats: Vec<Option<Category>> = payments.iter().map(|v| last(v)).collect();
    assert!(cats.contains(&Some(Category::MemoryExhaustion)), "{cats:?}");
    assert!(cats.contains(&Some(Category::BadDeploy)), "{cats:?}");
}
