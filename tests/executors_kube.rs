//! The kube executor against an in-process fake Kubernetes API: each action
//! type makes exactly the expected API calls; duplicates, rejections and API
//! errors make the calls (or none) they should.

mod exec_support;

use exec_support::fake_kube::{self, FakeKube};
use reflex::executors::kube::{KubeExecutor, KubeSettings, Selector};
use reflex::executors::runbook::Runbooks;
use reflex::executors::{Gate, Ledger, ManualClock, Runner};
use reflex::model::{
    ActionParams, ActionStatus, ActionType, Decision, DrainOptions, EventTime, RecoveryAction,
    Target,
};
use reflex::recovery::sign;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const KEY: &[u8] = b"action-key";
const NOW: i64 = 1_795_000_000_000;
const D: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";

async fn fake() -> FakeKube {
    let f = FakeKube::start().await;
    f.with(|s| {
        s.deployments.insert(
            ("shop".into(), "checkout".into()),
            fake_kube::deployment(
                "shop",
                "checkout",
                3,
                3,
                json!({"reflex.io/managed": "true"}),
            ),
        );
        s.deployments.insert(
            ("shop".into(), "legacy".into()),
            fake_kube::deployment("shop", "legacy", 1, 1, json!({})),
        );
        for (rev, img) in [(1, "checkout:v1"), (2, "checkout:v2"), (3, "checkout:v3")] {
            s.replicasets
                .push(fake_kube::replicaset("shop", "checkout", rev, img));
        }
        let managed = json!({"app": "checkout", "reflex.io/managed": "true"});
        s.pods.push(fake_kube::pod(
            "shop",
            "checkout-a",
            "node-1",
            managed.clone(),
            "ReplicaSet",
        ));
        s.pods.push(fake_kube::pod(
            "shop",
            "checkout-b",
            "node-2",
            managed,
            "ReplicaSet",
        ));
        s.pods.push(fake_kube::pod(
            "kube-system",
            "agent-x",
            "node-1",
            json!({}),
            "DaemonSet",
        ));
        s.nodes.insert(
            "node-1".into(),
            fake_kube::node("node-1", json!({"pool": "general"})),
        );
    });
    f
}

fn runner(f: &FakeKube) -> Runner<KubeExecutor, Arc<ManualClock>> {
    let clock = Arc::new(ManualClock::at(EventTime(NOW)));
    let settings = KubeSettings {
        name: "kube-test".into(),
        workload_selector: Selector::parse("reflex.io/managed=true").unwrap(),
        node_selector: Selector::parse("pool=general").unwrap(),
        api_timeout: Duration::from_secs(5),
        rollout_timeout: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
    };
    Runner {
        gate: Gate {
            key: Some(KEY.to_vec()),
            namespaces: vec!["shop".into()],
            types: vec![
                ActionType::Restart,
                ActionType::Scale,
                ActionType::Rollback,
                ActionType::DeletePod,
                ActionType::DrainNode,
            ],
            ..Default::default()
        },
        ledger: Ledger::new(1000),
        executor: KubeExecutor::new(f.client(), settings, clock.clone(), Runbooks::default()),
        clock,
        dry_run: false,
    }
}

fn action(key: &str, t: ActionType, params: ActionParams) -> RecoveryAction {
    let mut a = RecoveryAction {
        action_id: format!("act-{key}"),
        incident_id: "inc-1".into(),
        created_at: EventTime(NOW - 1000),
        action_type: t,
        target: Target {
            service: "checkout".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "checkout".into(),
        },
        params,
        risk: 0.1,
        decision: Decision::Auto,
        idempotency_key: key.into(),
        reason: "test".into(),
        expires_at: EventTime(NOW + 60_000),
        signature: None,
    };
    a.signature = Some(sign::sign(&a, KEY));
    a
}

fn resign(a: &mut RecoveryAction) {
    a.signature = Some(sign::sign(a, KEY));
}

#[tokio::test]
async fn restart_patches_restarted_at_and_waits_for_the_rollout() {
    let f = fake().await;
    let mut r = runner(&f);
    let res = r
        .process(&action(
            "k-restart",
            ActionType::Restart,
            ActionParams::default(),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert_eq!(
        f.calls(),
        [format!("GET {D}"), format!("PATCH {D}"), format!("GET {D}")]
    );
    let patch = f.requests()[1].body.clone().unwrap();
    assert_eq!(
        f.requests()[1].content_type,
        "application/strategic-merge-patch+json"
    );
    assert_eq!(
        patch,
        json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": EventTime(NOW).to_rfc3339()}}}}})
    );
    assert!(res.detail.contains("rollout ready"), "{}", res.detail);
    assert_eq!(res.executor, "kube-test");
}

#[tokio::test]
async fn scale_patches_the_scale_subresource() {
    let f = fake().await;
    let mut r = runner(&f);
    let params = ActionParams {
        replicas: Some(5),
        ..Default::default()
    };
    let res = r
        .process(&action("k-scale", ActionType::Scale, params))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert_eq!(
        f.calls(),
        [
            format!("GET {D}"),
            format!("PATCH {D}/scale"),
            format!("GET {D}")
        ]
    );
    assert_eq!(f.requests()[1].body, Some(json!({"spec": {"replicas": 5}})));
    assert_eq!(f.requests()[1].content_type, "application/merge-patch+json");
    assert!(
        res.detail.contains("from 3 to 5 replicas"),
        "{}",
        res.detail
    );
}

#[tokio::test]
async fn rollback_restores_the_previous_revision_template() {
    let f = fake().await;
    let mut r = runner(&f);
    let res = r
        .process(&action(
            "k-rb",
            ActionType::Rollback,
            ActionParams::default(),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert_eq!(
        f.calls(),
        [
            format!("GET {D}"),
            "GET /apis/apps/v1/namespaces/shop/replicasets?&labelSelector=app%3Dcheckout"
                .to_string(),
            format!("PATCH {D}"),
            format!("GET {D}")
        ]
    );
    let patch = f.requests()[2].body.clone().unwrap();
    assert_eq!(
        patch["spec"]["template"],
        json!({"metadata": {"labels": {"app": "checkout"}},
               "spec": {"containers": [{"name": "checkout", "image": "checkout:v2"}]}})
    );
    assert!(
        res.detail.contains("from revision 3 to revision 2"),
        "{}",
        res.detail
    );

    // An explicit revision.
    f.clear();
    let params = ActionParams {
        to_revision: Some("1".into()),
        ..Default::default()
    };
    let res = r
        .process(&action("k-rb1", ActionType::Rollback, params))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    let patch = f.requests()[2].body.clone().unwrap();
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["image"],
        "checkout:v1"
    );
}

#[tokio::test]
async fn delete_pod_gets_then_deletes() {
    let f = fake().await;
    let mut r = runner(&f);
    let mut a = action(
        "k-del",
        ActionType::DeletePod,
        ActionParams {
            pod: Some("checkout-a".into()),
            ..Default::default()
        },
    );
    a.target.kind = "Pod".into();
    resign(&mut a);
    let res = r.process(&a).await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert_eq!(
        f.calls(),
        [
            "GET /api/v1/namespaces/shop/pods/checkout-a",
            "DELETE /api/v1/namespaces/shop/pods/checkout-a"
        ]
    );
}

#[tokio::test]
async fn drain_node_cordons_and_evicts_respecting_disruption_budgets() {
    let f = fake().await;
    f.with(|s| s.evict_429 = 2);
    let mut r = runner(&f);
    let mut a = action(
        "k-drain",
        ActionType::DrainNode,
        ActionParams {
            node: Some("node-1".into()),
            ..Default::default()
        },
    );
    a.target = Target {
        service: "checkout".into(),
        namespace: None,
        kind: "Node".into(),
        name: "node-1".into(),
    };
    resign(&mut a);
    let res = r.process(&a).await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    let evict = "POST /api/v1/namespaces/shop/pods/checkout-a/eviction".to_string();
    assert_eq!(
        f.calls(),
        [
            "GET /api/v1/nodes/node-1".to_string(),
            "GET /api/v1/pods?&fieldSelector=spec.nodeName%3Dnode-1".to_string(),
            "PATCH /api/v1/nodes/node-1".to_string(),
            evict.clone(),
            evict.clone(),
            evict
        ]
    );
    assert_eq!(
        f.requests()[2].body,
        Some(json!({"spec": {"unschedulable": true}}))
    );
    assert!(
        res.detail
            .contains("1 pods evicted (1 DaemonSet/mirror pods left), 2 retries"),
        "{}",
        res.detail
    );
    // The DaemonSet pod stays.
    assert!(f.with(|s| s.pods.iter().any(|p| p["metadata"]["name"] == "agent-x")));
}

fn drain(key: &str, options: Option<DrainOptions>) -> RecoveryAction {
    let mut a = action(
        key,
        ActionType::DrainNode,
        ActionParams {
            node: Some("node-1".into()),
            drain: options,
            ..Default::default()
        },
    );
    a.target = Target {
        service: "checkout".into(),
        namespace: None,
        kind: "Node".into(),
        name: "node-1".into(),
    };
    resign(&mut a);
    a
}

#[tokio::test]
async fn drain_refuses_emptydir_pods_before_the_cordon_unless_told_to_delete_their_data() {
    let f = fake().await;
    f.with(|s| {
        s.pods[0]["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    });
    let mut r = runner(&f);
    let res = r.process(&drain("k-local", None)).await;
    assert_eq!(res.status, ActionStatus::Rejected, "{}", res.detail);
    assert!(
        res.detail.contains("shop/checkout-a") && res.detail.contains("delete_emptydir_data"),
        "{}",
        res.detail
    );
    assert!(
        f.calls().iter().all(|c| c.starts_with("GET ")),
        "a refused drain writes nothing: {:?}",
        f.calls()
    );
    let res = r
        .process(&drain(
            "k-local-ok",
            Some(DrainOptions {
                grace_period_seconds: Some(30),
                delete_emptydir_data: true,
            }),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    let eviction = f
        .requests()
        .into_iter()
        .find(|q| q.path.ends_with("/eviction"))
        .expect("an eviction");
    assert_eq!(
        eviction
            .body
            .as_ref()
            .map(|b| &b["deleteOptions"]["gracePeriodSeconds"]),
        Some(&json!(30)),
        "{:?}",
        eviction.body
    );
}

#[tokio::test]
async fn drain_gives_up_when_budgets_block_past_the_timeout() {
    let f = fake().await;
    f.with(|s| s.evict_429 = usize::MAX);
    let mut r = runner(&f);
    r.executor = {
        let settings = KubeSettings {
            name: "kube-test".into(),
            workload_selector: Selector::default(),
            node_selector: Selector::default(),
            api_timeout: Duration::from_secs(5),
            rollout_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_millis(100),
            poll_interval: Duration::from_millis(10),
        };
        KubeExecutor::new(f.client(), settings, r.clock.clone(), Runbooks::default())
    };
    let mut a = action("k-drain2", ActionType::DrainNode, ActionParams::default());
    a.target = Target {
        service: "x".into(),
        namespace: None,
        kind: "Node".into(),
        name: "node-1".into(),
    };
    resign(&mut a);
    let res = r.process(&a).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail.contains("still blocked by PodDisruptionBudgets"),
        "{}",
        res.detail
    );
}

#[tokio::test]
async fn the_same_key_twice_makes_one_set_of_calls() {
    let f = fake().await;
    let mut r = runner(&f);
    let a = action("k-dup", ActionType::Restart, ActionParams::default());
    let first = r.process(&a).await;
    let mut again = a.clone();
    again.action_id = "act-other".into();
    resign(&mut again);
    let second = r.process(&again).await;
    assert_eq!(first.status, ActionStatus::Succeeded);
    assert_eq!(second.status, ActionStatus::SkippedDuplicate);
    assert_eq!(second.idempotency_key, "k-dup");
    assert_eq!(f.calls().len(), 3, "{:?}", f.calls());

    // A fresh executor rebuilt from the published results also skips it.
    let mut fresh = runner(&f);
    fresh.ledger.observe(&first);
    assert_eq!(
        fresh.process(&a).await.status,
        ActionStatus::SkippedDuplicate
    );
    assert_eq!(f.calls().len(), 3);
}

#[tokio::test]
async fn refused_actions_make_no_call_and_say_why() {
    let f = fake().await;
    let mut r = runner(&f);
    let base = action("k-ok", ActionType::Restart, ActionParams::default());

    let mut forged = base.clone();
    forged.idempotency_key = "k-forged".into();
    forged.signature = Some(sign::sign(&forged, b"someone-else"));
    let mut tampered = base.clone();
    tampered.target.name = "payments".into();
    let mut unsigned = base.clone();
    unsigned.signature = None;
    let mut expired = base.clone();
    expired.expires_at = EventTime(NOW - 1);
    resign(&mut expired);
    let mut ns = base.clone();
    ns.target.namespace = Some("kube-system".into());
    resign(&mut ns);
    let mut ty = base.clone();
    ty.action_type = ActionType::RunRunbook;
    resign(&mut ty);
    let mut approval = base.clone();
    approval.decision = Decision::ApprovalRequired;
    resign(&mut approval);

    for (a, reason) in [
        (&forged, "bad signature"),
        (&tampered, "bad signature"),
        (&unsigned, "unsigned"),
        (&expired, "expired"),
        (
            &ns,
            "namespace \"kube-system\" is not in the executor's allowed namespaces",
        ),
        (
            &ty,
            "action type run_runbook is not in the executor's allowed types",
        ),
        (&approval, "awaiting approval"),
    ] {
        let res = r.process(a).await;
        assert_eq!(res.status, ActionStatus::Rejected, "{reason}");
        assert!(res.detail.starts_with(reason), "{} vs {reason}", res.detail);
    }
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    assert!(r.ledger.is_empty());
}

#[tokio::test]
async fn a_workload_outside_the_selector_is_rejected_after_one_get() {
    let f = fake().await;
    let mut r = runner(&f);
    let mut a = action("k-legacy", ActionType::Restart, ActionParams::default());
    a.target.name = "legacy".into();
    resign(&mut a);
    let res = r.process(&a).await;
    assert_eq!(res.status, ActionStatus::Rejected);
    assert!(
        res.detail.contains("does not match the workload selector"),
        "{}",
        res.detail
    );
    assert_eq!(
        f.calls(),
        ["GET /apis/apps/v1/namespaces/shop/deployments/legacy"]
    );
}

#[tokio::test]
async fn api_errors_and_stuck_rollouts_fail_with_the_reason() {
    let f = fake().await;
    f.with(|s| s.fail = Some((format!("PATCH {D}"), 500)));
    let mut r = runner(&f);
    let res = r
        .process(&action(
            "k-err",
            ActionType::Restart,
            ActionParams::default(),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail
            .contains("patch deployment checkout: API error 500 InternalError: injected failure"),
        "{}",
        res.detail
    );
    assert_eq!(f.calls(), [format!("GET {D}"), format!("PATCH {D}")]);

    let mut missing = action("k-missing", ActionType::Restart, ActionParams::default());
    missing.target.name = "ghost".into();
    resign(&mut missing);
    let res = r.process(&missing).await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(
        res.detail.contains("API error 404 NotFound"),
        "{}",
        res.detail
    );

    f.with(|s| {
        s.fail = None;
        s.never_ready = true;
    });
    let res = r
        .process(&action(
            "k-stuck",
            ActionType::Restart,
            ActionParams::default(),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Failed);
    assert!(res.detail.contains("not ready within"), "{}", res.detail);
}

#[tokio::test]
async fn dry_run_touches_nothing() {
    let f = fake().await;
    let mut r = runner(&f);
    r.dry_run = true;
    let res = r
        .process(&action(
            "k-dry",
            ActionType::Restart,
            ActionParams::default(),
        ))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded);
    assert!(
        res.detail.starts_with("dry run: would restart"),
        "{}",
        res.detail
    );
    assert!(f.calls().is_empty());
}

/// (apiGroup, resource[/subresource], verb) of a recorded request.
fn rbac_triple(method: &str, path: &str) -> (String, String, String) {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => panic!("unexpected path {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, r @ ..] => r,
        r => r,
    };
    let resource = match rest {
        [r, _name, sub] => format!("{r}/{sub}"),
        [r, ..] => r.to_string(),
        [] => panic!("no resource in {path}"),
    };
    let verb = match (method, rest.len()) {
        ("GET", 1) => "list",
        ("GET", _) => "get",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        ("POST", _) => "create",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group.to_string(), resource, verb.to_string())
}

#[tokio::test]
async fn deploy_rbac_grants_exactly_the_calls_the_executor_makes() {
    use std::collections::BTreeSet;
    let f = fake().await;
    f.with(|s| s.evict_429 = 1);
    let mut r = runner(&f);
    let mut actions = vec![
        action("r1", ActionType::Restart, ActionParams::default()),
        action(
            "r2",
            ActionType::Scale,
            ActionParams {
                replicas: Some(2),
                ..Default::default()
            },
        ),
        action("r3", ActionType::Rollback, ActionParams::default()),
        action(
            "r4",
            ActionType::DeletePod,
            ActionParams {
                pod: Some("checkout-b".into()),
                ..Default::default()
            },
        ),
    ];
    let mut drain = action("r5", ActionType::DrainNode, ActionParams::default());
    drain.target = Target {
        service: "checkout".into(),
        namespace: None,
        kind: "Node".into(),
        name: "node-1".into(),
    };
    resign(&mut drain);
    actions.push(drain);
    for a in &actions {
        let res = r.process(a).await;
        assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    }
    let used: BTreeSet<(String, String, String)> = f
        .requests()
        .iter()
        .map(|q| rbac_triple(&q.method, &q.path))
        .collect();

    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/executor-kube.yaml"),
    )
    .unwrap();
    let mut granted = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" && v["kind"] != "Role" {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for res in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        granted.insert((
                            g.as_str().unwrap().to_string(),
                            res.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(
        granted, used,
        "RBAC in deploy/k8s/executor-kube.yaml vs the calls made"
    );
}

#[tokio::test]
async fn run_runbook_goes_through_the_gate_and_captures_output_without_a_shell() {
    use reflex::executors::runbook::{ParamSpec, RunbookConfig};
    use reflex::model::DurationMs;
    let f = fake().await;
    let mut r = runner(&f);
    r.gate.types.push(ActionType::RunRunbook);
    let book = RunbookConfig {
        name: "note".into(),
        command: "/bin/echo".into(),
        args: vec!["--service={service}".into(), "{text}".into()],
        params: [(
            "text".to_string(),
            ParamSpec::String {
                pattern: ".{1,64}".into(),
            },
        )]
        .into(),
        timeout: DurationMs(5_000),
        env: Default::default(),
    };
    r.executor = KubeExecutor::new(
        f.client(),
        KubeSettings {
            name: "kube-test".into(),
            workload_selector: Selector::default(),
            node_selector: Selector::default(),
            api_timeout: Duration::from_secs(5),
            rollout_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
        },
        r.clock.clone(),
        Runbooks { books: vec![book] },
    );
    let rb = |key: &str, text: &str| {
        let mut a = action(key, ActionType::RunRunbook, ActionParams::default());
        a.params.runbook = Some("note".into());
        a.params.args.insert("text".into(), text.into());
        resign(&mut a);
        a
    };
    // Shell syntax is one literal argument: echo prints it verbatim.
    let res = r
        .process(&rb("rb1", "x; rm -rf / $(reboot) `id` | cat"))
        .await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert!(
        res.detail
            .contains(r#"stdout: "--service=checkout x; rm -rf / $(reboot) `id` | cat\n""#),
        "{}",
        res.detail
    );
    // An option-looking value is refused before anything runs.
    let res = r.process(&rb("rb2", "--force")).await;
    assert_eq!(res.status, ActionStatus::Rejected);
    assert!(res.detail.contains("starts with '-'"), "{}", res.detail);
    // A runbook that is not allow-listed.
    let mut other = rb("rb3", "hello");
    other.params.runbook = Some("rm".into());
    resign(&mut other);
    let res = r.process(&other).await;
    assert_eq!(res.status, ActionStatus::Rejected);
    assert!(res.detail.contains("not allow-listed"), "{}", res.detail);
    assert!(f.calls().is_empty(), "runbooks make no API call");
    // A rejected key was not recorded; an executed one was.
    assert!(r.ledger.contains("rb1") && !r.ledger.contains("rb2"));
}
