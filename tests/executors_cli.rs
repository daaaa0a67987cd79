//! `reflex executor kube|webhook` as processes: a bad config exits 2 naming
//! file and key; over the real broker (REFLEX_TEST_BROKERS; under CI=true a
//! missing broker fails) the kube executor acts on the fake Kubernetes API
//! found through KUBECONFIG, the webhook executor delivers an escalation and
//! an approval request,
//! both publish results and exit 0 on SIGTERM.

mod common;
mod exec_support;

use common::{brokers, unique};

use axum::body::Bytes;
use axum::http::HeaderMap;
use exec_support::fake_kube::{self, FakeKube};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reflex::model::{
    ActionParams, ActionResult, ActionStatus, ActionType, Decision, Escalation, EventTime,
    RecoveryAction, Severity, Target,
};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reflex"))
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

async fn produce(brokers: &str, topic: &str, key: &str, payload: &[u8]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

fn read_results(brokers: &str, topic: &str, n: usize) -> Vec<ActionResult> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("cli-reader"))
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

/// Status code of a plain HTTP GET, or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.get(9..12)?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIGTERM, then the exit status within 30 s.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("executor did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bad_config_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("executor.toml");
    std::fs::write(
        &cfg,
        "[executor]\nallowed_types = [\"reboot\"]\n[executor.webhook]\nurls = [\"ftp://x\"]\n",
    )
    .unwrap();
    let out = bin()
        .args(["executor", "kube", "--brokers", "127.0.0.1:1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("executor.toml: executor.allowed_types"),
        "{err}"
    );

    std::fs::write(&cfg, "[executor.webhook]\nurls = [\"ftp://x\"]\n").unwrap();
    let out = bin()
        .args([
            "executor",
            "webhook",
            "--brokers",
            "127.0.0.1:1",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("executor.webhook.urls[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_executor_process_acts_through_kubeconfig_and_stops_on_sigterm() {
    let Some(brokers) = brokers() else { return };
    let f = FakeKube::start().await;
    f.with(|s| {
        s.deployments.insert(
            ("shop".into(), "cart".into()),
            fake_kube::deployment("shop", "cart", 2, 1, json!({"reflex.io/managed": "true"})),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u}}\ncurrent-context: c\n",
            f.url
        ),
    )
    .unwrap();
    let actions = unique("cli.actions");
    let results = unique("cli.results");
    create_topics(&brokers, &[&actions, &results]).await;
    let cfg = dir.path().join("executor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[executor]\nname = \"kube-cli\"\nallowed_namespaces = [\"shop\"]\nworkload_selector = \"reflex.io/managed=true\"\npoll_interval = \"10ms\"\n[executor.kafka]\nactions_topic = \"{actions}\"\nresults_topic = \"{results}\"\nproperties = {{ \"fetch.wait.max.ms\" = \"10\" }}\n"
        ),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut a = RecoveryAction {
        action_id: "act-cli".into(),
        incident_id: "inc-cli".into(),
        created_at: EventTime(now),
        action_type: ActionType::Scale,
        target: Target {
            service: "cart".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "cart".into(),
        },
        params: ActionParams {
            replicas: Some(4),
            ..Default::default()
        },
        risk: 0.2,
        decision: Decision::Auto,
        idempotency_key: unique("idem-cli"),
        reason: "overload".into(),
        expires_at: EventTime(now + 600_000),
        signature: None,
    };
    a.signature = Some(reflex::recovery::sign::sign(&a, b"cli-key"));
    let mut unsigned = a.clone();
    unsigned.idempotency_key = unique("idem-unsigned");
    unsigned.signature = None;
    produce(
        &brokers,
        &actions,
        &a.idempotency_key,
        &serde_json::to_vec(&a).unwrap(),
    )
    .await;
    produce(
        &brokers,
        &actions,
        "u",
        &serde_json::to_vec(&unsigned).unwrap(),
    )
    .await;
    produce(&brokers, &actions, "junk", b"{not json").await;

    let health_port = free_port();
    let child = bin()
        .args(["executor", "kube", "--brokers", &brokers, "--config"])
        .arg(&cfg)
        .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("REFLEX_ACTION_KEY", "cli-key")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (b, t) = (brokers.clone(), results.clone());
    let got = tokio::task::spawn_blocking(move || read_results(&b, &t, 3))
        .await
        .unwrap();
    // Results flowed, so the loop is subscribed: ready and live.
    assert_eq!(http_get(health_port, "/readyz"), Some(200));
    assert_eq!(http_get(health_port, "/healthz"), Some(200));
    let status = terminate(child);
    let statuses: Vec<ActionStatus> = got.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            ActionStatus::Succeeded,
            ActionStatus::Rejected,
            ActionStatus::Rejected
        ],
        "{got:?}"
    );
    assert!(
        got[0].detail.contains("from 2 to 4 replicas"),
        "{}",
        got[0].detail
    );
    assert_eq!(got[0].executor, "kube-cli");
    assert!(got[1].detail.starts_with("unsigned"), "{}", got[1].detail);
    assert!(
        got[2].detail.starts_with("undecodable input at"),
        "{}",
        got[2].detail
    );
    let path = "/apis/apps/v1/namespaces/shop/deployments/cart";
    assert_eq!(
        f.calls(),
        [
            format!("GET {path}"),
            format!("PATCH {path}/scale"),
            format!("GET {path}")
        ]
    );
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_executor_process_delivers_an_escalation() {
    let Some(brokers) = brokers() else { return };
    let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Default::default();
    let r2 = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let r = r2.clone();
            async move {
                r.lock().unwrap().push((h, b));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let escalations = unique("cli.escalations");
    let actions = unique("cli.wh-actions");
    let results = unique("cli.results");
    create_topics(&brokers, &[&escalations, &actions, &results]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("executor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[executor]\nname = \"webhook-cli\"\n[executor.kafka]\nescalations_topic = \"{escalations}\"\nactions_topic = \"{actions}\"\nresults_topic = \"{results}\"\nproperties = {{ \"fetch.wait.max.ms\" = \"10\" }}\n[executor.webhook]\nurls = [\"http://{addr}/hook\"]\napproval_requests = true\nsecret_env = \"CLI_HOOK_SECRET\"\n"
        ),
    )
    .unwrap();
    let e = Escalation {
        escalation_id: unique("esc-cli"),
        incident_id: "inc-cli".into(),
        created_at: EventTime(1_795_000_000_000),
        severity: Severity::Critical,
        reason: "certificate_expired".into(),
        team: Some("payments".into()),
        summary: "certificate expired".into(),
        suggested_actions: vec![],
    };
    produce(
        &brokers,
        &escalations,
        &e.escalation_id,
        &serde_json::to_vec(&e).unwrap(),
    )
    .await;
    // On the actions topic: an auto action (ignored) and one needing approval.
    let mut a = RecoveryAction {
        action_id: unique("act-wh"),
        incident_id: "inc-cli".into(),
        created_at: EventTime(1_795_000_000_000),
        action_type: ActionType::Rollback,
        target: Target {
            service: "cart".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "cart".into(),
        },
        params: ActionParams::default(),
        risk: 0.9,
        decision: Decision::Auto,
        idempotency_key: unique("idem-wh"),
        reason: "bad_deploy".into(),
        expires_at: EventTime(1_795_000_600_000),
        signature: None,
    };
    produce(&brokers, &actions, "auto", &serde_json::to_vec(&a).unwrap()).await;
    a.decision = Decision::ApprovalRequired;
    produce(
        &brokers,
        &actions,
        "approval",
        &serde_json::to_vec(&a).unwrap(),
    )
    .await;
    let child = bin()
        .args(["executor", "webhook", "--brokers", &brokers, "--config"])
        .arg(&cfg)
        .env("CLI_HOOK_SECRET", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (b, t) = (brokers.clone(), results.clone());
    let mut got = tokio::task::spawn_blocking(move || read_results(&b, &t, 2))
        .await
        .unwrap();
    let status = terminate(child);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().all(|r| r.status == ActionStatus::Succeeded),
        "{got:?}"
    );
    got.sort_by(|x, y| x.action_id.cmp(&y.action_id));
    assert_eq!(
        got[0].action_id,
        format!("approval-request:{}", a.action_id)
    );
    assert_eq!(got[1].action_id, e.escalation_id);
    let rec = received.lock().unwrap();
    assert_eq!(rec.len(), 2, "the auto action is not sent to humans");
    let (h, body) = rec
        .iter()
        .find(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["type"] == "reflex.escalation"
        })
        .unwrap();
    assert_eq!(
        h["x-reflex-signature"].to_str().unwrap(),
        format!(
            "sha256={}",
            reflex::executors::webhook::hmac_hex(b"s3cret", body)
        )
    );
    assert!(status.success(), "{status:?}");
}
