//! Shared helpers of the Kafka integration tests: the broker address
//! (REFLEX_TEST_BROKERS; under CI=true a missing broker FAILS the test),
//! unique topic names, topic creation through `reflex::topics`, a plain
//! producer and a read-everything consumer, and a handle on a `reflex`
//! process (SIGTERM / SIGKILL).
#![allow(dead_code)]

pub mod accounting;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The test broker, or `None` (skip) outside CI. Under `CI` it panics.
pub fn brokers() -> Option<String> {
    match std::env::var("REFLEX_TEST_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
                panic!("REFLEX_TEST_BROKERS is not set but CI is: run `bash scripts/test.sh`");
            }
            eprintln!("skipping: REFLEX_TEST_BROKERS is not set (run `bash scripts/test.sh`)");
            None
        }
    }
}

/// A prefix unique to this test run (topics, groups).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Creates every reflex topic under `prefix.` with the given partition counts
/// (default 1), replication 1, through `reflex topics`' own code.
pub fn create_topics(brokers: &str, prefix: &str, partitions: &[(&str, i32)]) {
    let k = reflex::config::kafka::KafkaConfig {
        topic_prefix: format!("{prefix}."),
        ..Default::default()
    };
    let mut specs = reflex::topics::parse(reflex::topics::EMBEDDED_TOPICS, "topics.toml", &k)
        .expect("embedded topics parse");
    for s in &mut specs {
        s.replication = 1;
        s.partitions = partitions
            .iter()
            .find(|(n, _)| *n == s.logical)
            .map(|p| p.1)
            .unwrap_or(1);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(reflex::topics::apply(brokers, &specs, &BTreeMap::new()))
        .expect("topics apply");
    assert!(report.ok(), "{report}");
}

pub fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer")
}

/// A record to produce: (partition, key, payload).
pub type Out = (Option<i32>, String, Vec<u8>);

/// Produces records and waits for all acks.
pub fn produce(p: &BaseProducer, topic: &str, records: &[Out]) {
    for (part, key, payload) in records {
        let mut r = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        if let Some(x) = part {
            r = r.partition(*x);
        }
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Rec {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
    pub fn is_marker(&self) -> bool {
        self.headers.get("reflex.type").map(String::as_str) == Some("watermark")
    }
}

/// Reads a topic from the beginning (all partitions) and keeps reading
/// until `done(records)` holds or `deadline` passes; returns what was read.
pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Rec>,
}

impl Reader {
    pub fn new(brokers: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            records: Vec::new(),
        }
    }

    /// Reads what is available now (bounded wait).
    pub fn poll_some(&mut self) {
        let mut first = true;
        self.until(Duration::from_millis(50), |_| {
            let stop = !first;
            first = false;
            stop
        });
    }

    /// Reads until every partition's high watermark of now (what has been
    /// published so far: call it once the writers have exited) or the
    /// deadline; returns whether it got there.
    pub fn read_to_end(&mut self, timeout: Duration) -> bool {
        let mut ends = BTreeMap::new();
        let assignment = self.consumer.assignment().expect("assignment");
        for e in assignment.elements() {
            let (_, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                .expect("watermarks");
            ends.insert(e.partition(), high);
        }
        self.until(timeout, |recs| {
            ends.iter().all(|(p, high)| {
                *high == 0
                    || recs
                        .iter()
                        .any(|r| r.partition == *p && r.offset + 1 >= *high)
            })
        })
    }

    /// Polls until `done` or the deadline; returns whether `done` held.
    pub fn until(&mut self, timeout: Duration, mut done: impl FnMut(&[Rec]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.records) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            while let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.records.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().unwrap_or(&[]).to_vec(),
                    headers,
                });
                if self.records.len() % 1000 == 0 {
                    break;
                }
            }
        }
    }
}

/// Writes a reflex config for a test: unique group and topic prefix, a
/// threshold rule that fires on every non-empty 10 s window (so every event
/// is accounted for in some detection's count), quick idle detection.
pub fn write_config(dir: &Path, prefix: &str, extra: &str) -> PathBuf {
    write_config_with(dir, prefix, EVERY_WINDOW, extra)
}

/// The rule of [`write_config`]: fires on every non-empty 10 s window.
pub const EVERY_WINDOW: &str = r#"
[detectors.threshold]
enabled = true

[[detectors.threshold.rules]]
name = "every_window"
group_by = "service"
min_severity = "debug"
window = "10s"
measure = "count"
threshold = 1
min_count = 1
baseline_factor = 1.0
baseline_alpha = 0.000001
significance = 1.0
warmup_windows = 0

[detectors.anomaly]
enabled = false
"#;

/// A test config with the given detector section (empty = the defaults).
pub fn write_config_with(dir: &Path, prefix: &str, detectors: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[pipeline]
allowed_lateness = "1s"
batch_size = 256
{detectors}
[kafka]
group_id = "{prefix}-g"
topic_prefix = "{prefix}."
watermark_interval = "1s"
idle_partition_timeout = "2s"
commit_interval = "100ms"
shutdown_timeout = "20s"

[kafka.consumer]
"fetch.wait.max.ms" = "5"
{extra}
"#
    );
    let p = dir.join(format!("{prefix}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `reflex run --brokers` process.
pub struct Reflex {
    pub child: Child,
    pub log: PathBuf,
}

impl Reflex {
    pub fn start(brokers: &str, config: &Path, stage: &str, log: PathBuf) -> Reflex {
        Self::start_with_env(brokers, config, stage, log, &[])
    }

    /// [`Reflex::start`] with extra environment variables.
    pub fn start_with_env(
        brokers: &str,
        config: &Path,
        stage: &str,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Reflex {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_reflex"))
            .args(["run", "--brokers", brokers, "--stage", stage, "--config"])
            .arg(config)
            .env("REFLEX_LOG", "info,rdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn reflex");
        Reflex { child, log }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} failed");
    }

    /// SIGKILL: no drain, no commit.
    pub fn crash(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "reflex did not exit after SIGTERM; log {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Reflex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON error event.
pub fn event_json(id: &str, time_ms: i64, service: &str, kind: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id, "time": time_ms, "service": service, "severity": "error",
        "message": format!("failure {id}"), "kind": kind, "namespace": "shop"
    })
    .to_string()
    .into_bytes()
}

/// One HTTP/1.1 request to `addr` (`Connection: close`); (status, body).
/// `auth` is sent as a bearer token.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `f` until it returns `Some`, or fails after `limit` showing `log()`.
pub fn within<T>(
    limit: Duration,
    what: &str,
    log: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of a metric's samples in a Prometheus text scrape.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The shop fleet for an hour with inventory running out of memory from
/// minute 20 for 20 minutes: a remediable fault (`restart`) that the
/// default configuration acts on.
#[allow(dead_code)]
pub fn inventory_oom_hour() -> reflex::sim::gen::GenConfig {
    let mut g = reflex::sim::gen::GenConfig::shop(11, 3_600_000);
    g.faults.push(reflex::sim::gen::Fault {
        service: "inventory".into(),
        start: g.start.plus_ms(20 * 60_000),
        duration_ms: 20 * 60_000,
        rate: 4.0,
        message: "java.lang.OutOfMemoryError: Java heap space at {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    g
}
