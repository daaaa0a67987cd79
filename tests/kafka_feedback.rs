//! The loop closed over the real broker (REFLEX_TEST_BROKERS; under CI=true
//! a missing broker fails): reflex in Kafka mode diagnoses an OOM fault and
//! emits a `restart`; the kube executor's Kafka loop carries it out against
//! the fake Kubernetes API and publishes its ActionResult; reflex reads the
//! result back from `reflex.action-results` and its verification uses it —
//! the incident is resolved as verified by the fix. A second test drives a
//! pending `approval_required` action through the token-protected HTTP API.
//!
//! Pacing is by content, not by sleeps: the input is produced in two parts,
//! the second only once reflex has counted the executor's result (its
//! `/metrics`), so the result is known before event time passes the fix.

mod common;
mod exec_support;

use common::*;
use exec_support::fake_kube::{self, FakeKube};
use reflex::executors::kafka_loop::{self, KafkaSettings};
use reflex::executors::ManualClock;
use reflex::model::{ActionStatus, ActionType, EventTime, RecoveryAction};
use reflex::sim::gen::{generate, Fault, GenConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "approve-me-please";

/// Three hours of the small shop with an OOM burst on payments from the
/// first hour, lasting `fault_ms`; events as JSON lines with their times.
fn shop_stream(fault_ms: i64) -> (GenConfig, Vec<(EventTime, Vec<u8>)>) {
    let mut cfg = GenConfig::shop(11, 3 * 3_600_000);
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(3_600_000),
        duration_ms: fault_ms,
        rate: 3.0,
        message: "java.lang.OutOfMemoryError: Java heap space (request {id})".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    let events = generate(&cfg)
        .into_iter()
        .map(|e| (e.time, serde_json::to_vec(&e).unwrap()))
        .collect();
    (cfg, events)
}

fn produce_all(brokers: &str, topic: &str, events: &[(EventTime, Vec<u8>)]) {
    let p = producer(brokers);
    let outs: Vec<Out> = events
        .iter()
        .map(|(_, b)| (None, String::new(), b.clone()))
        .collect();
    produce(&p, topic, &outs);
}

fn start_reflex(
    brokers: &str,
    prefix: &str,
    dir: &std::path::Path,
    extra: &str,
) -> (Reflex, SocketAddr) {
    let config = write_config_with(
        dir,
        prefix,
        "",
        &format!("\n[telemetry]\nhttp_listen = \"127.0.0.1:0\"\n{extra}"),
    );
    let log = dir.join(format!("{prefix}.log"));
    let r = Reflex::start_with_env(brokers, &config, "all", log, &[("REFLEX_API_TOKEN", TOKEN)]);
    let addr: SocketAddr = within(
        Duration::from_secs(60),
        "the http address",
        &|| r.log_text(),
        || {
            r.log_text()
                .lines()
                .find_map(|l| l.strip_prefix("reflex: http listening on "))
                .and_then(|a| a.trim().parse().ok())
        },
    );
    (r, addr)
}

#[test]
fn executor_result_flows_back_and_verification_resolves_the_incident() {
    let Some(brokers) = brokers() else { return };
    let prefix = unique("fb");
    create_topics(&brokers, &prefix, &[]);
    let dir = tempfile::tempdir().unwrap();
    let fault_ms = 180_000;
    let (cfg, events) = shop_stream(fault_ms);
    let fault_end = cfg.start.plus_ms(3_600_000 + fault_ms);
    let (reflex, addr) = start_reflex(&brokers, &prefix, dir.path(), "");

    // Part 1: up to the end of the burst. reflex diagnoses payments and
    // emits its remedy.
    let input = format!("{prefix}.errors");
    let split = events.partition_point(|(t, _)| *t < fault_end);
    produce_all(&brokers, &input, &events[..split]);
    let actions_topic = format!("{prefix}.reflex.actions");
    let mut actions = Reader::new(&brokers, &actions_topic);
    assert!(
        actions.until(Duration::from_secs(120), |r| !r.is_empty()),
        "reflex emitted no action; log:\n{}",
        reflex.log_text()
    );
    let action: RecoveryAction = serde_json::from_slice(&actions.records[0].payload).unwrap();
    assert_eq!(action.target.service, "payments", "{action:?}");
    assert_eq!(action.action_type, ActionType::Restart, "{action:?}");

    // The kube executor (fake API) carries it out; its clock stands just
    // after the burst, so the fix completes when the errors stop.
    let ns = action
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| "shop".into());
    let name = action.target.name.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _in_rt = rt.enter();
    let f = rt.block_on(FakeKube::start());
    f.with(|s| {
        s.deployments.insert(
            (ns.clone(), name.clone()),
            fake_kube::deployment(&ns, &name, 2, 4, json!({"reflex.io/managed": "true"})),
        );
    });
    let clock = Arc::new(ManualClock::at(fault_end.plus_ms(1_000)));
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        group_id: format!("{prefix}-kube"),
        input_topics: vec![actions_topic.clone()],
        results_topic: format!("{prefix}.reflex.action-results"),
        properties: [("fetch.wait.max.ms".to_string(), "10".to_string())].into(),
        health: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut runner = exec_support::kube_runner(&f, clock, None);
    let since = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let exec = rt.spawn(async move {
        kafka_loop::run(&settings, &mut runner, since, async {
            let _ = stopped.await;
        })
        .await
    });
    let results_topic = format!("{prefix}.reflex.action-results");
    let mut results = Reader::new(&brokers, &results_topic);
    results.until(Duration::from_secs(60), |r| !r.is_empty());
    let results = results.records;
    let result: reflex::model::ActionResult =
        serde_json::from_slice(&results.first().expect("a result").payload).unwrap();
    assert_eq!(result.status, ActionStatus::Succeeded, "{result:?}");
    assert_eq!(result.idempotency_key, action.idempotency_key);
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    assert_eq!(
        f.calls(),
        [
            format!("GET {path}"),
            format!("PATCH {path}"),
            format!("GET {path}")
        ]
    );

    // reflex has read the result back.
    within(
        Duration::from_secs(60),
        "reflex to count the result",
        &|| reflex.log_text(),
        || {
            let (_, m) = http(addr, "GET", "/metrics", None)?;
            (counter(&m, "reflex_action_results_total") >= 1.0).then_some(())
        },
    );

    // Part 2: the quiet rest. Verification sees the errors stopped after the
    // fix and resolves the incident as verified.
    produce_all(&brokers, &input, &events[split..]);
    let mut incidents = Reader::new(&brokers, &format!("{prefix}.reflex.incidents"));
    let verified = |recs: &[Rec]| {
        recs.iter().map(Rec::json).any(|i| {
            i["incident_id"] == action.incident_id.as_str()
                && i["status"] == "resolved"
                && i["evidence"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|l| l.as_str().is_some_and(|l| l.contains("verified")))
                })
        })
    };
    assert!(
        incidents.until(Duration::from_secs(120), verified),
        "no verified resolution: {:#?}\nlog:\n{}",
        incidents
            .records
            .iter()
            .map(Rec::json)
            .collect::<Vec<Value>>(),
        reflex.log_text()
    );
    stop.send(()).unwrap();
    rt.block_on(exec).unwrap().unwrap();
    assert!(reflex.terminate().success());
}

#[test]
fn approvals_over_http_need_the_token_and_reemit_the_action_as_auto() {
    let Some(brokers) = brokers() else { return };
    let prefix = unique("appr");
    create_topics(&brokers, &prefix, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, events) = shop_stream(8 * 60_000);
    // Only up to a few minutes into the fault: approvals expire in event
    // time (action_ttl), and the rest of the stream would outrun it.
    let cut = events.partition_point(|(t, _)| *t < cfg.start.plus_ms(3_600_000 + 5 * 60_000));
    let events = &events[..cut];
    // Every remedy needs a human here.
    let (reflex, addr) = start_reflex(
        &brokers,
        &prefix,
        dir.path(),
        "\n[recovery]\nauto_max_risk = 0.0\napproval_max_risk = 1.0\n",
    );
    produce_all(&brokers, &format!("{prefix}.errors"), events);
    let mut actions = Reader::new(&brokers, &format!("{prefix}.reflex.actions"));
    assert!(
        actions.until(Duration::from_secs(120), |r| !r.is_empty()),
        "no action; log:\n{}",
        reflex.log_text()
    );
    let pending: RecoveryAction = serde_json::from_slice(&actions.records[0].payload).unwrap();
    assert_eq!(pending.decision, reflex::model::Decision::ApprovalRequired);
    let path = format!("/api/actions/{}/approve", pending.action_id);

    assert_eq!(http(addr, "POST", &path, None).unwrap().0, 401, "no token");
    assert_eq!(http(addr, "POST", &path, Some("wrong")).unwrap().0, 401);
    let (code, body) = http(addr, "POST", "/api/actions/act-nope/approve", Some(TOKEN)).unwrap();
    assert_eq!(code, 404, "{body}");
    let (code, body) = http(addr, "POST", &path, Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, _) = http(addr, "POST", &path, Some(TOKEN)).unwrap();
    assert_eq!(code, 409, "a second decision on the same action");

    assert!(
        actions.until(Duration::from_secs(60), |r| r.len() >= 2),
        "the approved action was not emitted again"
    );
    let approved: RecoveryAction = serde_json::from_slice(&actions.records[1].payload).unwrap();
    assert_eq!(approved.decision, reflex::model::Decision::Auto);
    assert_eq!(approved.idempotency_key, pending.idempotency_key);
    assert_eq!(approved.action_type, pending.action_type);
    assert!(reflex.terminate().success());
}
