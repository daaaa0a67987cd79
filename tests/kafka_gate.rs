//! The executor gate under attack, end to end over the real broker
//! (REFLEX_TEST_BROKERS; under CI=true a missing broker fails): one table of
//! adversarial actions is produced to `reflex.actions`; the kube executor's
//! Kafka loop, against the fake Kubernetes API, must refuse every row with
//! its reason on `reflex.action-results` and make **zero** mutating calls.
//!
//! Rows: unsigned; a bad signature; a signature over a modified field (every
//! typed parameter, the target, type, decision and expiry); expired; an
//! idempotency key already executed (the ledger is rebuilt from the results
//! topic); approval required without approval; dry run; type, namespace and
//! workload not allowed; target names with path, selector and query
//! injection; unknown, misplaced and malformed typed parameters; the old
//! `args.dry_run` marker; an undecodable record. Only the workload row may
//! read the API (the selector is checked on the GET).

mod common;
mod exec_support;

use common::*;
use exec_support::fake_kube::{self, FakeKube};
use reflex::executors::kafka_loop::{self, KafkaSettings};
use reflex::executors::ManualClock;
use reflex::model::{
    ActionParams, ActionResult, ActionStatus, ActionType, Decision, DrainOptions, EventTime,
    RecoveryAction, RollbackDirection, Target,
};
use reflex::recovery::sign;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const KEY: &[u8] = b"gate-suite-key";
const NOW: i64 = 1_795_000_000_000;

/// A valid, signed, `auto` action on the managed Deployment `shop/inventory`.
fn base(id: &str, t: ActionType, params: ActionParams) -> RecoveryAction {
    let mut a = RecoveryAction {
        action_id: id.into(),
        incident_id: "inc-gate".into(),
        created_at: EventTime(NOW - 1_000),
        action_type: t,
        target: Target {
            service: "inventory".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "inventory".into(),
        },
        params,
        risk: 0.1,
        decision: Decision::Auto,
        idempotency_key: format!("key-{id}"),
        reason: "gate suite".into(),
        expires_at: EventTime(NOW + 600_000),
        signature: None,
    };
    signed(&mut a);
    a
}

fn signed(a: &mut RecoveryAction) {
    a.signature = Some(sign::sign(a, KEY));
}

fn restart(id: &str) -> RecoveryAction {
    base(id, ActionType::Restart, ActionParams::default())
}

fn scale(id: &str, replicas: i64) -> RecoveryAction {
    base(
        id,
        ActionType::Scale,
        ActionParams {
            replicas: Some(replicas),
            ..Default::default()
        },
    )
}

fn rollback(id: &str) -> RecoveryAction {
    base(
        id,
        ActionType::Rollback,
        ActionParams {
            to_revision: Some("3".into()),
            ..Default::default()
        },
    )
}

/// An action changed after it was signed (the signature is the original's).
fn tampered(a: RecoveryAction, change: impl FnOnce(&mut RecoveryAction)) -> Value {
    let mut b = a;
    change(&mut b);
    serde_json::to_value(&b).unwrap()
}

/// An action changed and then signed with the right key: what a confused
/// or compromised reflex could send; only the gate's own checks stand.
fn resigned(a: RecoveryAction, change: impl FnOnce(&mut RecoveryAction)) -> Value {
    let mut b = a;
    change(&mut b);
    signed(&mut b);
    serde_json::to_value(&b).unwrap()
}

fn value(a: &RecoveryAction) -> Value {
    serde_json::to_value(a).unwrap()
}

/// The JSON of a signed action with a raw edit of its wire form (fields
/// this version does not know cannot be written through the struct).
fn raw_edit(a: RecoveryAction, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = value(&a);
    edit(&mut v);
    v
}

/// One row: what is sent, the status expected back and words of the reason.
struct Row {
    name: &'static str,
    action_id: &'static str,
    payload: Vec<u8>,
    status: &'static str,
    reason: &'static str,
}

fn row(
    name: &'static str,
    id: &'static str,
    v: Value,
    status: &'static str,
    reason: &'static str,
) -> Row {
    Row {
        name,
        action_id: id,
        payload: serde_json::to_vec(&v).unwrap(),
        status,
        reason,
    }
}

/// A change made to an action after it was signed.
type Change = Box<dyn FnOnce(&mut RecoveryAction)>;

fn table() -> Vec<Row> {
    const BAD_SIG: &str = "bad signature";
    let mut rows = vec![
        row(
            "unsigned",
            "g-unsigned",
            tampered(restart("g-unsigned"), |a| a.signature = None),
            "rejected",
            "unsigned",
        ),
        row(
            "garbage signature",
            "g-sig-hex",
            tampered(restart("g-sig-hex"), |a| a.signature = Some("zz".into())),
            "rejected",
            BAD_SIG,
        ),
        row(
            "signature under another key",
            "g-sig-key",
            tampered(restart("g-sig-key"), |a| {
                a.signature = Some(sign::sign(a, b"someone-else"));
            }),
            "rejected",
            BAD_SIG,
        ),
    ];
    // A signature over a modified field: every field that changes what is done.
    let modified: Vec<(&str, &str, RecoveryAction, Change)> = vec![
        (
            "modified replicas",
            "g-mod-replicas",
            scale("g-mod-replicas", 2),
            Box::new(|a| a.params.replicas = Some(0)),
        ),
        (
            "modified to_revision",
            "g-mod-rev",
            rollback("g-mod-rev"),
            Box::new(|a| a.params.to_revision = Some("1".into())),
        ),
        (
            "modified direction",
            "g-mod-dir",
            rollback("g-mod-dir"),
            Box::new(|a| {
                a.params.to_revision = None;
                a.params.direction = Some(RollbackDirection::Forward);
            }),
        ),
        (
            "modified pod",
            "g-mod-pod",
            restart("g-mod-pod"),
            Box::new(|a| a.params.pod = Some("inventory-x".into())),
        ),
        (
            "modified node",
            "g-mod-node",
            restart("g-mod-node"),
            Box::new(|a| a.params.node = Some("node-9".into())),
        ),
        (
            "modified drain options",
            "g-mod-drain",
            restart("g-mod-drain"),
            Box::new(|a| {
                a.params.drain = Some(DrainOptions {
                    grace_period_seconds: Some(0),
                    delete_emptydir_data: true,
                });
            }),
        ),
        (
            "modified runbook",
            "g-mod-runbook",
            restart("g-mod-runbook"),
            Box::new(|a| a.params.runbook = Some("wipe".into())),
        ),
        (
            "modified args",
            "g-mod-args",
            restart("g-mod-args"),
            Box::new(|a| {
                a.params.args.insert("x".into(), "y".into());
            }),
        ),
        (
            "modified target name",
            "g-mod-name",
            restart("g-mod-name"),
            Box::new(|a| a.target.name = "payments".into()),
        ),
        (
            "modified target namespace",
            "g-mod-ns",
            restart("g-mod-ns"),
            Box::new(|a| a.target.namespace = Some("prod".into())),
        ),
        (
            "modified target kind",
            "g-mod-kind",
            restart("g-mod-kind"),
            Box::new(|a| a.target.kind = "StatefulSet".into()),
        ),
        (
            "modified type",
            "g-mod-type",
            restart("g-mod-type"),
            Box::new(|a| {
                a.action_type = ActionType::Scale;
                a.params.replicas = Some(0);
            }),
        ),
        (
            "modified decision",
            "g-mod-decision",
            restart("g-mod-decision"),
            Box::new(|a| a.decision = Decision::ApprovalRequired),
        ),
        (
            "modified expiry",
            "g-mod-expiry",
            restart("g-mod-expiry"),
            Box::new(|a| a.expires_at = EventTime(NOW + 86_400_000)),
        ),
        (
            "modified idempotency key",
            "g-mod-key",
            restart("g-mod-key"),
            Box::new(|a| a.idempotency_key = "fresh".into()),
        ),
    ];
    for (name, id, a, change) in modified {
        rows.push(row(name, id, tampered(a, change), "rejected", BAD_SIG));
    }
    // An approval-required action whose decision was flipped to auto.
    let mut approval = restart("g-mod-auto");
    approval.decision = Decision::ApprovalRequired;
    signed(&mut approval);
    rows.push(row(
        "approval flipped to auto",
        "g-mod-auto",
        tampered(approval, |a| a.decision = Decision::Auto),
        "rejected",
        BAD_SIG,
    ));
    rows.extend([
        row(
            "expired",
            "g-expired",
            resigned(restart("g-expired"), |a| a.expires_at = EventTime(NOW - 1)),
            "rejected",
            "expired",
        ),
        row(
            "replayed idempotency key",
            "g-replay",
            resigned(restart("g-replay"), |a| {
                a.idempotency_key = "already-done".into()
            }),
            "skipped_duplicate",
            "already executed",
        ),
        row(
            "approval required, not approved",
            "g-approval",
            resigned(restart("g-approval"), |a| {
                a.decision = Decision::ApprovalRequired
            }),
            "rejected",
            "awaiting approval",
        ),
        row(
            "dry run",
            "g-dry",
            resigned(restart("g-dry"), |a| a.decision = Decision::DryRun),
            "skipped_dry_run",
            "dry run",
        ),
        row(
            "type not allowed",
            "g-type",
            resigned(restart("g-type"), |a| {
                a.action_type = ActionType::DeletePod;
            }),
            "rejected",
            "not in the executor's allowed types",
        ),
        row(
            "namespace not allowed",
            "g-ns",
            resigned(restart("g-ns"), |a| {
                a.target.namespace = Some("kube-system".into())
            }),
            "rejected",
            "allowed namespaces",
        ),
        row(
            "workload not allowed",
            "g-workload",
            resigned(restart("g-workload"), |a| {
                a.target.name = "legacy".into();
                a.target.service = "legacy".into();
            }),
            "rejected",
            "workload selector",
        ),
        row(
            "target name with a path",
            "g-path",
            resigned(restart("g-path"), |a| {
                a.target.name = "../../../api/v1/namespaces/kube-system/secrets".into()
            }),
            "rejected",
            "target.name",
        ),
        row(
            "target name with an encoded path",
            "g-path-enc",
            resigned(restart("g-path-enc"), |a| {
                a.target.name = "inventory%2F..%2Fpayments".into()
            }),
            "rejected",
            "target.name",
        ),
        row(
            "target name with a selector",
            "g-selector",
            resigned(restart("g-selector"), |a| {
                a.target.name = "app=inventory,tier!=db".into()
            }),
            "rejected",
            "target.name",
        ),
        row(
            "target name with a query",
            "g-query",
            resigned(restart("g-query"), |a| {
                a.target.name = "inventory?dryRun=All&fieldManager=x".into()
            }),
            "rejected",
            "target.name",
        ),
        row(
            "target name with whitespace",
            "g-space",
            resigned(restart("g-space"), |a| {
                a.target.name = "inventory payments".into()
            }),
            "rejected",
            "target.name",
        ),
        row(
            "namespace with a path",
            "g-ns-path",
            {
                let mut a = restart("g-ns-path");
                a.target.namespace = Some("shop/../kube-system".into());
                signed(&mut a);
                value(&a)
            },
            "rejected",
            "allowed namespaces",
        ),
        row(
            "pod parameter on a restart",
            "g-pod-path",
            resigned(restart("g-pod-path"), |a| {
                a.params.pod = Some("../secrets".into());
            }),
            "rejected",
            "params.pod is not a parameter of restart",
        ),
        row(
            "replicas out of range",
            "g-replicas",
            resigned(scale("g-replicas", 2), |a| {
                a.params.replicas = Some(1_000_000)
            }),
            "rejected",
            "params.replicas",
        ),
        row(
            "negative replicas",
            "g-replicas-neg",
            resigned(scale("g-replicas-neg", 2), |a| a.params.replicas = Some(-3)),
            "rejected",
            "params.replicas",
        ),
        row(
            "scale without replicas",
            "g-replicas-none",
            resigned(scale("g-replicas-none", 2), |a| a.params.replicas = None),
            "rejected",
            "params.replicas is required",
        ),
        row(
            "revision that is not a number",
            "g-rev",
            resigned(rollback("g-rev"), |a| {
                a.params.to_revision = Some("3; kubectl delete ns shop".into())
            }),
            "rejected",
            "params.to_revision",
        ),
        row(
            "revision and forward together",
            "g-rev-fwd",
            resigned(rollback("g-rev-fwd"), |a| {
                a.params.direction = Some(RollbackDirection::Forward)
            }),
            "rejected",
            "contradict",
        ),
        row(
            "parameter of another type",
            "g-misplaced",
            resigned(restart("g-misplaced"), |a| a.params.replicas = Some(0)),
            "rejected",
            "params.replicas is not a parameter of restart",
        ),
        row(
            "old dry-run marker on an auto action",
            "g-old-dry",
            resigned(restart("g-old-dry"), |a| {
                a.params.args.insert("dry_run".into(), "true".into());
            }),
            "rejected",
            "decision dry_run",
        ),
        row(
            "unknown parameter",
            "g-unknown",
            raw_edit(scale("g-unknown", 2), |v| {
                v["params"]["force"] = json!(true);
            }),
            "rejected",
            "params.force is not a known parameter",
        ),
        row(
            "malformed typed parameter",
            "g-malformed",
            raw_edit(rollback("g-malformed"), |v| {
                v["params"]["direction"] = json!("sideways");
            }),
            "rejected",
            "undecodable",
        ),
        row(
            "unknown drain option",
            "g-drain-unknown",
            raw_edit(rollback("g-drain-unknown"), |v| {
                v["params"]["drain"] = json!({"force": true});
            }),
            "rejected",
            "undecodable",
        ),
    ]);
    rows.push(Row {
        name: "not an action at all",
        action_id: "",
        payload: b"{\"action_id\": \"g-broken\", \"type\": \"restart\"".to_vec(),
        status: "rejected",
        reason: "undecodable",
    });
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adversarial_action_is_refused_with_its_reason_and_no_mutating_call() {
    let Some(b) = brokers() else { return };
    let prefix = unique("gate");
    let (b2, p2) = (b.clone(), prefix.clone());
    tokio::task::spawn_blocking(move || create_topics(&b2, &p2, &[]))
        .await
        .unwrap();
    let actions_topic = format!("{prefix}.reflex.actions");
    let results_topic = format!("{prefix}.reflex.action-results");
    let rows = table();
    {
        let mut names: Vec<&str> = rows.iter().map(|r| r.action_id).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rows.len(), "action ids are unique per row");
    }
    // An earlier run executed `already-done`: the ledger learns it from the
    // results topic at start-up.
    let earlier = ActionResult {
        action_id: "g-earlier".into(),
        idempotency_key: "already-done".into(),
        status: ActionStatus::Succeeded,
        detail: "restarted deployment inventory".into(),
        finished_at: EventTime(NOW - 60_000),
        executor: "kube-e2e".into(),
    };
    let records: Vec<Out> = rows
        .iter()
        .map(|r| (Some(0), r.action_id.to_string(), r.payload.clone()))
        .collect();
    let (b3, a3, r3) = (b.clone(), actions_topic.clone(), results_topic.clone());
    tokio::task::spawn_blocking(move || {
        let p = producer(&b3);
        produce(
            &p,
            &r3,
            &[(
                Some(0),
                String::new(),
                serde_json::to_vec(&earlier).unwrap(),
            )],
        );
        produce(&p, &a3, &records);
    })
    .await
    .unwrap();

    let f = FakeKube::start().await;
    f.with(|s| {
        s.deployments.insert(
            ("shop".into(), "inventory".into()),
            fake_kube::deployment(
                "shop",
                "inventory",
                2,
                2,
                json!({"reflex.io/managed": "true"}),
            ),
        );
        s.deployments.insert(
            ("shop".into(), "legacy".into()),
            fake_kube::deployment("shop", "legacy", 1, 1, json!({})),
        );
    });
    let clock = Arc::new(ManualClock::at(EventTime(NOW)));
    let settings = KafkaSettings {
        brokers: b.clone(),
        group_id: unique("gate-executor"),
        input_topics: vec![actions_topic.clone()],
        results_topic: results_topic.clone(),
        properties: [("fetch.wait.max.ms".to_string(), "10".to_string())].into(),
        health: None,
    };
    let since = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut runner = exec_support::kube_runner(&f, clock, Some(KEY));
    let exec = tokio::spawn(async move {
        kafka_loop::run(&settings, &mut runner, since, async {
            let _ = stopped.await;
        })
        .await
    });
    let want = rows.len();
    let (b4, t4) = (b.clone(), results_topic.clone());
    let results: Vec<Value> = tokio::task::spawn_blocking(move || {
        let mut r = Reader::new(&b4, &t4);
        // The seeded result plus one per row.
        let all = r.until(Duration::from_secs(60), |x| x.len() > want);
        assert!(all, "only {} results for {want} rows", r.records.len());
        r.records.iter().skip(1).map(Rec::json).collect()
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    exec.await.unwrap().unwrap();

    // First what matters most: nothing was done to the cluster.
    let calls = f.calls();
    let writes: Vec<&String> = calls.iter().filter(|c| !c.starts_with("GET ")).collect();
    assert_eq!(writes, Vec::<&String>::new(), "mutating calls");
    assert_eq!(
        calls,
        ["GET /apis/apps/v1/namespaces/shop/deployments/legacy"],
        "only the workload row may read (its selector is on the object)"
    );
    assert_eq!(results.len(), rows.len());
    let mut failures = Vec::new();
    for (row, res) in rows.iter().zip(&results) {
        let detail = res["detail"].as_str().unwrap_or("");
        // An undecodable record that names its action is reported under it.
        let id_ok = row.action_id.is_empty() || res["action_id"] == row.action_id;
        if !id_ok || res["status"] != row.status || !detail.contains(row.reason) {
            failures.push(format!(
                "{}: want {} with {:?}, got {res}",
                row.name, row.status, row.reason
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same table without a broker: the gate alone refuses every row that
/// decodes (a fast check of the reasons, run everywhere).
#[test]
fn the_gate_alone_refuses_every_decodable_row() {
    use reflex::executors::Gate;
    let gate = Gate {
        key: Some(KEY.to_vec()),
        namespaces: vec!["shop".into()],
        types: vec![ActionType::Restart, ActionType::Scale, ActionType::Rollback],
        ..Default::default()
    };
    let mut passed = Vec::new();
    for row in table() {
        let Ok(a) = serde_json::from_slice::<RecoveryAction>(&row.payload) else {
            assert_eq!(row.reason, "undecodable", "{}", row.name);
            continue;
        };
        // These two are refused later: by the ledger and by the API's labels.
        if matches!(
            row.name,
            "replayed idempotency key" | "workload not allowed"
        ) {
            assert!(gate.check(&a, EventTime(NOW)).is_ok(), "{}", row.name);
            continue;
        }
        match gate.check(&a, EventTime(NOW)) {
            Ok(()) => passed.push(row.name),
            Err(r) => assert!(r.to_string().contains(row.reason), "{}: {r}", row.name),
        }
    }
    assert!(passed.is_empty(), "passed the gate: {passed:?}");
    for ok in [restart("ok-1"), scale("ok-2", 3), rollback("ok-3")] {
        assert!(gate.check(&ok, EventTime(NOW)).is_ok(), "{ok:?}");
    }
}
