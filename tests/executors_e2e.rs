//! End to end over the real broker (REFLEX_TEST_BROKERS; under CI=true a
//! missing broker fails): `reflex run` emits a signed action from a
//! generated incident, it is published on an actions topic, the kube
//! executor's Kafka loop (against the fake Kubernetes API) carries it out
//! and publishes its ActionResult; a second copy of the action yields
//! `skipped_duplicate`; a restarted executor rebuilds its ledger from the
//! results topic and skips the key again without calling the API.
//!
//! reflex reading the result back for verification: `tests/kafka_feedback.rs`.

mod common;
mod exec_support;

use common::{brokers, unique};

use exec_support::fake_kube::{self, FakeKube};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reflex::executors::kafka_loop::{self, KafkaSettings};
use reflex::executors::ManualClock;
use reflex::model::{ActionResult, ActionStatus, ActionType, RecoveryAction};
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "e2e-action-key";

/// `reflex generate` + `reflex run` with a signing key: the first action.
fn action_from_reflex() -> RecoveryAction {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_reflex");
    let events = dir.path().join("events.jsonl");
    let out = dir.path().join("out");
    let st = Command::new(bin)
        .args(["generate", "--events", "20000", "--output"])
        .arg(&events)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new(bin)
        .env("REFLEX_ACTION_KEY", KEY)
        .arg("run")
        .arg("--input")
        .arg(&events)
        .arg("--output-dir")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(out.join("actions.jsonl")).unwrap();
    let line = text.lines().next().expect("reflex emitted an action");
    serde_json::from_str(line).unwrap()
}

async fn create_topics(brokers: &str, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// Reads results until `n` arrived (or 60 s passed).
fn read_results(brokers: &str, topic: &str, n: usize) -> Vec<ActionResult> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("e2e-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflex_action_is_executed_once_and_its_result_flows_back() {
    let Some(brokers) = brokers() else { return };
    let action = action_from_reflex();
    assert_eq!(action.action_type, ActionType::Restart);
    assert!(action.signature.is_some());
    let (ns, name) = (
        action.target.namespace.clone().unwrap(),
        action.target.name.clone(),
    );

    let f = FakeKube::start().await;
    f.with(|s| {
        s.deployments.insert(
            (ns.clone(), name.clone()),
            fake_kube::deployment(&ns, &name, 2, 4, json!({"reflex.io/managed": "true"})),
        );
    });
    let actions_topic = unique("e2e.actions");
    let results_topic = unique("e2e.action-results");
    create_topics(&brokers, &[&actions_topic, &results_topic]).await;
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        group_id: unique("e2e-executor"),
        input_topics: vec![actions_topic.clone()],
        results_topic: results_topic.clone(),
        properties: [("fetch.wait.max.ms".to_string(), "10".to_string())].into(),
        health: None,
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let payload = serde_json::to_vec(&action).unwrap();
    for _ in 0..2 {
        producer
            .send(
                FutureRecord::to(&actions_topic)
                    .key(&action.idempotency_key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // The executor's clock stands at the action's event time (not expired).
    let clock = Arc::new(ManualClock::at(action.created_at.plus_ms(1000)));
    let since = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s2 = settings.clone();
    let mut r = exec_support::kube_runner(&f, clock.clone(), Some(KEY.as_bytes()));
    let exec = tokio::spawn(async move {
        let n = kafka_loop::run(&s2, &mut r, since, async {
            let _ = stopped.await;
        })
        .await;
        (n, r)
    });

    let b2 = brokers.clone();
    let t2 = results_topic.clone();
    let results = tokio::task::spawn_blocking(move || read_results(&b2, &t2, 2))
        .await
        .unwrap();
    let statuses: Vec<ActionStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [ActionStatus::Succeeded, ActionStatus::SkippedDuplicate],
        "{results:?}"
    );
    assert_eq!(results[0].action_id, action.action_id);
    assert_eq!(results[0].idempotency_key, action.idempotency_key);
    assert!(
        results[0].detail.contains("rollout ready"),
        "{}",
        results[0].detail
    );
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    assert_eq!(
        f.calls(),
        [
            format!("GET {path}"),
            format!("PATCH {path}"),
            format!("GET {path}")
        ]
    );
    stop.send(()).unwrap();
    let (n, _) = exec.await.unwrap();
    assert_eq!(n.unwrap(), 2);

    // A restarted executor (empty ledger) rebuilds it from the results topic:
    // the same action again makes no call.
    producer
        .send(
            FutureRecord::to(&actions_topic)
                .key(&action.idempotency_key)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut r = exec_support::kube_runner(&f, clock, Some(KEY.as_bytes()));
    let s3 = settings.clone();
    let exec = tokio::spawn(async move {
        let n = kafka_loop::run(&s3, &mut r, since, async {
            let _ = stopped.await;
        })
        .await;
        (n, r)
    });
    let b3 = brokers.clone();
    let t3 = results_topic.clone();
    let results = tokio::task::spawn_blocking(move || read_results(&b3, &t3, 3))
        .await
        .unwrap();
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[2].status, ActionStatus::SkippedDuplicate);
    assert_eq!(f.calls().len(), 3, "no new API call: {:?}", f.calls());
    stop.send(()).unwrap();
    let (n, r) = exec.await.unwrap();
    assert_eq!(n.unwrap(), 1, "the committed offsets were honoured");
    assert!(r.ledger.contains(&action.idempotency_key));
}
