//! Dry run end to end over the real broker (REFLEX_TEST_BROKERS; under
//! CI=true a missing broker fails): `reflex run --brokers` with `[recovery]
//! dry_run = true` diagnoses a remediable fault (an OOM in `inventory`) and
//! emits its action with the decision `dry_run`; the kube executor's Kafka
//! loop, against the fake Kubernetes API, refuses it — zero API calls, let
//! alone mutating ones — and reports `skipped_dry_run` on
//! `reflex.action-results`. The same run with `dry_run = false` emits an
//! `auto` restart that the executor carries out (GET, PATCH, GET of the
//! Deployment).

mod common;
mod exec_support;

use common::*;
use exec_support::fake_kube::{self, FakeKube};
use reflex::executors::kafka_loop::{self, KafkaSettings};
use reflex::executors::ManualClock;
use reflex::model::EventTime;
use reflex::sim::gen::generate;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "dry-run-e2e-key";

/// What one run saw: reflex's actions, the executor's results, the API calls.
struct Seen {
    actions: Vec<serde_json::Value>,
    /// The executor's results as JSON (statuses compared as the wire
    /// strings, so this file also compiles against builds that predate them).
    results: Vec<serde_json::Value>,
    calls: Vec<String>,
}

/// Runs reflex (signing with [`KEY`]) over a generated hour with an OOM
/// fault in `inventory`, waits for its first action, then runs the kube
/// executor over `reflex.actions` until it published a result for every
/// action seen.
async fn run(dry_run: bool) -> Option<Seen> {
    let b = brokers()?;
    let prefix = unique(if dry_run { "dry" } else { "wet" });
    let b2 = b.clone();
    let p2 = prefix.clone();
    tokio::task::spawn_blocking(move || create_topics(&b2, &p2, &[]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(
        dir.path(),
        &prefix,
        "",
        &format!("\n[recovery]\ndry_run = {dry_run}\n"),
    );
    let g = inventory_oom_hour();
    let recs: Vec<Out> = generate(&g)
        .iter()
        .map(|e| (Some(0), String::new(), serde_json::to_vec(e).unwrap()))
        .collect();
    let input = format!("{prefix}.errors");
    let (b3, i3) = (b.clone(), input.clone());
    tokio::task::spawn_blocking(move || produce(&producer(&b3), &i3, &recs))
        .await
        .unwrap();
    let reflex = Reflex::start_with_env(
        &b,
        &cfg,
        "all",
        dir.path().join("reflex.log"),
        &[("REFLEX_ACTION_KEY", KEY)],
    );
    let actions_topic = format!("{prefix}.reflex.actions");
    let results_topic = format!("{prefix}.reflex.action-results");
    let (b4, t4) = (b.clone(), actions_topic.clone());
    let actions = tokio::task::spawn_blocking(move || {
        let mut r = Reader::new(&b4, &t4);
        let found = r.until(Duration::from_secs(120), |x| !x.is_empty());
        (found, r.records.iter().map(Rec::json).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(actions.0, "no action; log:\n{}", reflex.log_text());
    let first = actions.1[0].clone();
    assert_eq!(first["target"]["service"], "inventory", "{first}");
    let created = EventTime::parse_rfc3339(first["created_at"].as_str().unwrap()).unwrap();

    let f = FakeKube::start().await;
    f.with(|s| {
        s.deployments.insert(
            ("shop".into(), "inventory".into()),
            fake_kube::deployment(
                "shop",
                "inventory",
                2,
                4,
                json!({"reflex.io/managed": "true"}),
            ),
        );
    });
    // The executor's clock stands at the action's event time (not expired).
    let clock = Arc::new(ManualClock::at(created.plus_ms(1_000)));
    let settings = KafkaSettings {
        brokers: b.clone(),
        group_id: unique("dry-run-executor"),
        input_topics: vec![actions_topic.clone()],
        results_topic: results_topic.clone(),
        properties: [("fetch.wait.max.ms".to_string(), "10".to_string())].into(),
        health: None,
    };
    let since = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut runner = exec_support::kube_runner(&f, clock, Some(KEY.as_bytes()));
    let exec = tokio::spawn(async move {
        kafka_loop::run(&settings, &mut runner, since, async {
            let _ = stopped.await;
        })
        .await
    });

    // Every action reflex emitted so far gets exactly one result.
    let (b5, t5, a5) = (b.clone(), results_topic.clone(), actions_topic.clone());
    let already = actions.1.len();
    let (actions, results) = tokio::task::spawn_blocking(move || {
        // At least the actions seen above (a single poll may return before
        // the new consumer's first fetch).
        let mut acts = Reader::new(&b5, &a5);
        assert!(
            acts.until(Duration::from_secs(60), |x| x.len() >= already),
            "the actions read before are gone"
        );
        let ids: Vec<String> = acts
            .records
            .iter()
            .filter_map(|r| r.json()["action_id"].as_str().map(String::from))
            .collect();
        let mut res = Reader::new(&b5, &t5);
        let all = res.until(Duration::from_secs(60), |x| {
            let from_executor = ours(x);
            ids.iter()
                .all(|id| from_executor.iter().any(|r| r["action_id"] == id.as_str()))
        });
        assert!(all, "not every action got a result");
        let results = ours(&res.records);
        (acts.records.iter().map(Rec::json).collect(), results)
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    exec.await.unwrap().unwrap();
    assert!(reflex.terminate().success());
    Some(Seen {
        actions,
        results,
        calls: f.calls(),
    })
}

/// The results the test's executor published.
fn ours(records: &[Rec]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(Rec::json)
        .filter(|r| r["executor"] == "kube-e2e")
        .collect()
}

fn mutating(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| !c.starts_with("GET ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_actions_are_refused_by_the_kube_executor_with_zero_api_calls() {
    let Some(seen) = run(true).await else { return };
    assert!(!seen.actions.is_empty());
    // First what matters most: nothing was done to the cluster.
    assert_eq!(mutating(&seen.calls), Vec::<&String>::new());
    assert!(seen.calls.is_empty(), "not even a read: {:?}", seen.calls);
    assert_eq!(seen.results.len(), seen.actions.len(), "{:?}", seen.results);
    for r in &seen.results {
        assert_eq!(r["status"], "skipped_dry_run", "{r}");
    }
    for a in &seen.actions {
        assert_eq!(a["decision"], "dry_run", "{a}");
        // The decision says it; no free-form marker is needed or sent.
        assert!(a["params"]["args"].get("dry_run").is_none(), "{a}");
        assert!(a["signature"].is_string(), "signed like any action: {a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_without_dry_run_restarts_the_deployment() {
    let Some(seen) = run(false).await else { return };
    let a = &seen.actions[0];
    assert_eq!(a["decision"], "auto", "{a}");
    assert_eq!(a["type"], "restart", "{a}");
    assert_eq!(seen.results[0]["status"], "succeeded", "{:?}", seen.results);
    let path = "/apis/apps/v1/namespaces/shop/deployments/inventory";
    assert_eq!(
        seen.calls[..3],
        [
            format!("GET {path}"),
            format!("PATCH {path}"),
            format!("GET {path}")
        ]
    );
    // Reflex may already have moved on to its next ladder step (the fault
    // outlives the restart); whatever else was done is on this Deployment.
    for c in mutating(&seen.calls) {
        assert!(
            c == &format!("PATCH {path}") || c == &format!("PATCH {path}/scale"),
            "{:?}",
            seen.calls
        );
    }
}
