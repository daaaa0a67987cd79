//! The Kafka plumbing of `reflex executor kube|webhook`: a consumer group on
//! the input topic, a producer to `reflex.action-results`, and the ledger
//! rebuilt from that topic at start-up.
//!
//! Guarantees:
//! - **At least once**: an input's offset is stored (and later committed by
//!   the auto-commit timer, or at shutdown) only after its `ActionResult`
//!   was acknowledged by the broker (`acks=all`, idempotent producer). A
//!   crash between acting and publishing re-delivers the input; the ledger
//!   (rebuilt from published results) then skips what was recorded, so
//!   duplicates are limited to that window.
//! - **Nothing is dropped silently**: an input that does not decode gets a
//!   `rejected` result naming its partition and offset (and its
//!   `action_id` and key when it is JSON that names them).
//! - Inputs are JSON (the default record encoding); Avro inputs are not
//!   decoded by executors yet.
//! - SIGTERM / Ctrl-C: the current input finishes, offsets are committed, the
//!   loop returns.

use super::{Clock, Executor, Ledger, Runner};
use crate::model::{ActionResult, ActionStatus, Escalation, EventTime, RecoveryAction};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why the loop stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("ledger rebuild task: {0}")]
    Task(String),
    #[error("publishing result for {key}: {error}")]
    Publish {
        key: String,
        error: rdkafka::error::KafkaError,
    },
}

/// Connection settings shared by the consumer and producer.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    /// Topics consumed (one group over all of them).
    pub input_topics: Vec<String>,
    pub results_topic: String,
    /// Extra librdkafka properties applied to every client.
    pub properties: BTreeMap<String, String>,
    /// Probe state to update (ready after the ledger rebuild; a heartbeat per
    /// input and per second of waiting).
    pub health: Option<std::sync::Arc<super::health::Health>>,
}

impl KafkaSettings {
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Something that turns one input record into one result.
pub trait Handler {
    /// Handles one input; `raw_origin` names it for undecodable inputs.
    /// `None`: the input is not for this executor (nothing is published).
    fn handle(
        &mut self,
        payload: &[u8],
        raw_origin: &str,
    ) -> impl std::future::Future<Output = Option<ActionResult>>;
    /// The ledger to rebuild from published results.
    fn ledger(&mut self) -> &mut Ledger;
    /// The executor name: only results it published rebuild its ledger.
    fn name(&self) -> String;
    /// Which published results mark a key as done.
    fn counts(&self, result: &ActionResult) -> bool {
        matches!(
            result.status,
            ActionStatus::Succeeded | ActionStatus::Failed
        )
    }
}

fn undecodable(
    origin: &str,
    payload: &[u8],
    err: &serde_json::Error,
    now: EventTime,
    executor: &str,
) -> ActionResult {
    // A record that is JSON but not a valid action (a malformed typed
    // parameter) still names its action, so its sender sees the refusal.
    let named = |field: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let s = v.get(field)?.as_str()?;
        (!s.is_empty() && s.len() <= 256).then(|| s.to_string())
    };
    ActionResult {
        action_id: named("action_id").unwrap_or_else(|| origin.to_string()),
        idempotency_key: named("idempotency_key").unwrap_or_default(),
        status: ActionStatus::Rejected,
        detail: format!("undecodable input at {origin}: {err}"),
        finished_at: now,
        executor: executor.to_string(),
    }
}

impl<E: Executor, C: Clock> Handler for Runner<E, C> {
    async fn handle(&mut self, payload: &[u8], origin: &str) -> Option<ActionResult> {
        Some(match serde_json::from_slice::<RecoveryAction>(payload) {
            Ok(a) => self.process(&a).await,
            Err(e) => undecodable(origin, payload, &e, self.clock.now(), self.executor.name()),
        })
    }
    fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    fn name(&self) -> String {
        self.executor.name().to_string()
    }
}

impl Handler for super::webhook::WebhookExecutor {
    /// Escalations, and (when the actions topic is consumed too) approval
    /// requests; records are told apart by shape.
    async fn handle(&mut self, payload: &[u8], origin: &str) -> Option<ActionResult> {
        match serde_json::from_slice::<Escalation>(payload) {
            Ok(e) => Some(self.process(&e).await),
            Err(err) => match serde_json::from_slice::<RecoveryAction>(payload) {
                Ok(a) => self.process_approval(&a).await,
                Err(_) => Some(undecodable(
                    origin,
                    payload,
                    &err,
                    self.clock.now(),
                    &self.settings.name,
                )),
            },
        }
    }
    fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    fn name(&self) -> String {
        self.settings.name.clone()
    }
    /// A failed delivery may be retried on redelivery: only successes count.
    fn counts(&self, result: &ActionResult) -> bool {
        result.status == ActionStatus::Succeeded
    }
}

/// Reads `results_topic` from `since` (wall-clock ms) to its current end and
/// calls `observe` for every result. Returns how many results were read.
pub fn rebuild_ledger(
    settings: &KafkaSettings,
    since_ms: i64,
    mut observe: impl FnMut(&ActionResult),
) -> Result<usize, LoopError> {
    let consumer: BaseConsumer = settings
        .client()
        .set("group.id", format!("{}-ledger", settings.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(&settings.results_topic), timeout)?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut times = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(&settings.results_topic, p.id(), timeout)?;
            if hi > lo {
                ends.insert(p.id(), hi);
                times.add_partition_offset(
                    &settings.results_topic,
                    p.id(),
                    Offset::Offset(since_ms),
                )?;
            }
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    let mut assign = TopicPartitionList::new();
    let starts = consumer.offsets_for_times(times, timeout)?;
    for e in starts.elements() {
        let start = match e.offset() {
            Offset::Offset(o) => o,
            _ => continue, // nothing newer than `since`
        };
        if ends.get(&e.partition()).is_some_and(|&hi| start < hi) {
            assign.add_partition_offset(
                &settings.results_topic,
                e.partition(),
                Offset::Offset(start),
            )?;
        } else {
            ends.remove(&e.partition());
        }
    }
    ends.retain(|p, _| assign.elements().iter().any(|e| e.partition() == *p));
    consumer.assign(&assign)?;
    let mut read = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        if let Some(Ok(r)) = m.payload().map(serde_json::from_slice::<ActionResult>) {
            observe(&r);
            read += 1;
        }
        if ends
            .get(&m.partition())
            .is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            ends.remove(&m.partition());
        }
    }
    if !ends.is_empty() {
        tracing::warn!(partitions = ?ends.keys().collect::<Vec<_>>(), "ledger rebuild stopped before the end of the results topic");
    }
    Ok(read)
}

/// Consumes `input_topics` until `shutdown` resolves, publishing one result
/// per input before storing its offset.
pub async fn run<H: Handler>(
    settings: &KafkaSettings,
    handler: &mut H,
    ledger_since_ms: i64,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<u64, LoopError> {
    let s = settings.clone();
    let name = handler.name();
    // Results of this executor that count, oldest first.
    let (keys, read) = tokio::task::spawn_blocking(move || {
        let mut keys = Vec::new();
        let r = rebuild_ledger(&s, ledger_since_ms, |r| {
            if r.executor == name {
                keys.push(r.clone());
            }
        });
        (keys, r)
    })
    .await
    .map_err(|e| LoopError::Task(e.to_string()))?;
    let read = read?;
    for r in &keys {
        if handler.counts(r) {
            handler.ledger().insert(&r.idempotency_key);
        }
    }
    tracing::info!(
        results = read,
        keys = handler.ledger().len(),
        "ledger rebuilt"
    );

    let producer: FutureProducer = settings
        .client()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    let consumer: StreamConsumer = settings
        .client()
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let topics: Vec<&str> = settings.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?settings.input_topics, group = %settings.group_id, "executor consuming");
    if let Some(h) = &settings.health {
        h.set_ready();
    }
    tokio::pin!(shutdown);
    let mut handled = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                if let Some(h) = &settings.health {
                    h.beat();
                }
                continue;
            }
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        let origin = format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset());
        let Some(res) = handler.handle(msg.payload().unwrap_or(&[]), &origin).await else {
            consumer.store_offset_from_message(&msg)?;
            continue;
        };
        let payload = serde_json::to_vec(&res).unwrap_or_default();
        let key = if res.idempotency_key.is_empty() {
            res.action_id.clone()
        } else {
            res.idempotency_key.clone()
        };
        let record = FutureRecord::to(&settings.results_topic)
            .key(&key)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| LoopError::Publish {
                key: key.clone(),
                error,
            })?;
        consumer.store_offset_from_message(&msg)?;
        handled += 1;
        if let Some(h) = &settings.health {
            h.beat();
        }
    }
    let c = consumer;
    tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync))
        .await
        .ok()
        .transpose()
        .or_else(|e| match e {
            // Nothing consumed yet: nothing to commit.
            rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            ) => Ok(None),
            e => Err(e),
        })?;
    Ok(handled)
}
