//! The Kafka sink: one idempotent producer for every output topic, with
//! delivery acknowledgements tracked by sequence number.
//!
//! Guarantees:
//! - **Order per key.** Records are keyed so that everything about one
//!   correlation domain (detections: namespace or cluster) or one incident
//!   (incidents, actions, escalations: `incident_id`) lands on one partition,
//!   and the idempotent producer (`enable.idempotence=true`, acks=all) keeps
//!   per-partition order across retries without duplicates.
//! - **Acks are observable.** Every record gets a sequence number when it is
//!   handed to librdkafka; [`Deliveries::acked_below`] is the lowest sequence
//!   number not yet acknowledged, so "everything produced before X is on the
//!   broker" is one comparison. The source commits input offsets against it
//!   (see `sources::kafka`).
//! - **No silent loss, no crash loop.** librdkafka retries without a
//!   deadline (`message.timeout.ms=0`) while the broker is away. A record
//!   that cannot be produced at all (larger than the message limit,
//!   rejected by the broker) — when handed over or when its delivery
//!   fails — follows `[kafka.on_permanent_failure]`: `skip` (the default
//!   for dead letters) counts it in `reflex_outputs_skipped_total{topic}`,
//!   logs it with its coordinates and treats it as done, so the input that
//!   caused it is committed like any other (once what holds it back in
//!   windows is done) and the pipeline goes on; `stop` (the default for
//!   other outputs) records it in
//!   [`Deliveries::failure`], which stops the runtime before anything after
//!   it is committed.

use super::{Output, Sink, SinkError, Topic};
use crate::codec::avro::{self, RecordType};
use crate::codec::wire;
use crate::config::kafka::{
    CorrelationKey, FailurePolicy, KafkaConfig, OutputFormat, PermanentFailure, SchemaIds,
};
use crate::model::{Detection, EventTime};
use crate::stage::stats::{kafka_error, KafkaErrorKind};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// Header naming the kind of a record on `reflex.detections`: absent for a
/// detection, `watermark` for a watermark marker (split deployments only).
pub const HEADER_TYPE: &str = "reflex.type";
/// Header: the detect stage's watermark (epoch ms) announced before this
/// detection was emitted; the decide stage replays the same order from it.
pub const HEADER_WM: &str = "reflex.wm";
/// Header: the detect stage's output sequence number (orders detections
/// that share a watermark).
pub const HEADER_SEQ: &str = "reflex.seq";
/// Services whose cluster is remembered for `correlation_key = "cluster"`.
const MAX_CLUSTERS: usize = 100_000;

/// Output records skipped after a permanent failure, per topic (index in
/// [`Topic::ALL`]). Process-wide like the Kafka error counters: they are
/// counted in librdkafka's delivery callback, which has no `Stats`.
static SKIPPED: [AtomicU64; Topic::ALL.len()] = [const { AtomicU64::new(0) }; Topic::ALL.len()];

/// Output records of `topic` skipped after a permanent failure so far.
pub fn skipped(topic: Topic) -> u64 {
    Topic::ALL
        .iter()
        .position(|t| *t == topic)
        .map_or(0, |i| SKIPPED[i].load(Ordering::Relaxed))
}

fn count_skip(topic: Topic) {
    if let Some(i) = Topic::ALL.iter().position(|t| *t == topic) {
        SKIPPED[i].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct DelState {
    next_seq: u64,
    inflight: BTreeSet<u64>,
    /// Where the in-flight dead letters came from (their source
    /// coordinates), to log a permanent failure with them.
    origins: HashMap<u64, String>,
    delivered: u64,
    skipped: u64,
    failure: Option<String>,
}

/// Delivery bookkeeping shared by the producer's callback thread and the runtime.
#[derive(Debug, Default)]
pub struct Deliveries {
    state: Mutex<DelState>,
    changed: Condvar,
}

impl Deliveries {
    fn lock(&self) -> MutexGuard<'_, DelState> {
        // A panic while holding the lock cannot leave the sets inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) -> u64 {
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.inflight.insert(seq);
        seq
    }

    fn abort(&self, seq: u64) {
        let mut s = self.lock();
        s.inflight.remove(&seq);
        s.origins.remove(&seq);
    }

    fn set_origin(&self, seq: u64, origin: String) {
        self.lock().origins.insert(seq, origin);
    }

    /// A record given up by policy: no longer in flight, so everything it
    /// held back (the offset of its input) may be committed.
    fn skip(&self, seq: u64) -> Option<String> {
        let mut s = self.lock();
        s.inflight.remove(&seq);
        s.skipped += 1;
        let origin = s.origins.remove(&seq);
        drop(s);
        self.changed.notify_all();
        origin
    }

    fn complete(&self, seq: u64, failure: Option<String>) {
        let mut s = self.lock();
        s.inflight.remove(&seq);
        s.origins.remove(&seq);
        match failure {
            None => s.delivered += 1,
            Some(f) => {
                if s.failure.is_none() {
                    s.failure = Some(f);
                }
            }
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Every record with a lower sequence number has been acknowledged
    /// (unless [`failure`](Self::failure) is set).
    pub fn acked_below(&self) -> u64 {
        let s = self.lock();
        s.inflight.first().copied().unwrap_or(s.next_seq)
    }

    /// Records handed to librdkafka and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.lock().inflight.len()
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    /// Records given up after a permanent failure (policy `skip`) so far.
    pub fn skipped(&self) -> u64 {
        self.lock().skipped
    }

    /// The first permanent delivery failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Waits until at most `n` records are in flight (or a failure, or
    /// `timeout`); returns whether that holds.
    pub fn wait_below(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.inflight.len() > n && s.failure.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = match self.changed.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Waits until nothing is in flight (or a failure, or `timeout`).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while !s.inflight.is_empty() && s.failure.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = match self.changed.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        s.failure.is_none()
    }
}

/// The producer context: routes delivery reports into [`Deliveries`].
pub struct DeliveryContext {
    deliveries: Arc<Deliveries>,
    /// Real topic name → output topic (for the policy and the skip count).
    topics: HashMap<String, Topic>,
    policy: PermanentFailure,
}

/// The policy for records of `topic`.
fn policy_for(policy: PermanentFailure, topic: Option<Topic>) -> FailurePolicy {
    if topic == Some(Topic::Dlq) {
        policy.dead_letter
    } else {
        policy.output
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        kafka_error(KafkaErrorKind::Producer);
        warn!(%error, reason, "Kafka producer error (retrying).");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let failure = match result {
            Ok(_) => None,
            Err((e, m)) => {
                use rdkafka::Message;
                kafka_error(KafkaErrorKind::Delivery);
                let topic = self.topics.get(m.topic()).copied();
                if policy_for(self.policy, topic) == FailurePolicy::Skip {
                    if let Some(t) = topic {
                        count_skip(t);
                    }
                    let origin = self.deliveries.skip(seq as u64);
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    error!(
                        error = %e,
                        topic = m.topic(),
                        %key,
                        source = origin.as_deref().unwrap_or("-"),
                        "Output could not be delivered; skipped by policy."
                    );
                    return;
                }
                error!(error = %e, topic = m.topic(), "Failed to deliver.");
                Some(format!("{}: {e}", m.topic()))
            }
        };
        self.deliveries.complete(seq as u64, failure);
    }
}

/// The shared producer type.
pub type Producer_ = ThreadedProducer<DeliveryContext>;

/// Creates the idempotent producer.
pub fn create_producer(
    brokers: &str,
    kafka: &KafkaConfig,
    deliveries: Arc<Deliveries>,
) -> Result<Producer_, KafkaError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "0")
        .set(
            "queue.buffering.max.messages",
            (kafka.max_in_flight.saturating_mul(2).max(100_000)).to_string(),
        )
        .set("queue.buffering.max.kbytes", "262144")
        .set("compression.type", "lz4");
    for (k, v) in &kafka.producer {
        cc.set(k, v);
    }
    cc.set("enable.idempotence", "true");
    let topics = Topic::ALL
        .iter()
        .map(|t| (kafka.topic(t.name()), *t))
        .collect();
    cc.create_with_context(DeliveryContext {
        deliveries,
        topics,
        policy: kafka.on_permanent_failure,
    })
}

/// The Kafka sink. `write` hands a record to librdkafka (blocking only while
/// its queue is full); delivery is asynchronous and tracked in [`Deliveries`].
pub struct KafkaSink {
    producer: Arc<Producer_>,
    deliveries: Arc<Deliveries>,
    names: HashMap<Topic, String>,
    format: OutputFormat,
    schema_ids: SchemaIds,
    correlation: CorrelationKey,
    clusters: HashMap<String, String>,
    /// Drop `Detection` records (the split decide stage must not re-publish them).
    pub suppress_detections: bool,
    policy: PermanentFailure,
    buf: Vec<u8>,
}

impl KafkaSink {
    /// A sink over a shared producer.
    pub fn new(producer: Arc<Producer_>, deliveries: Arc<Deliveries>, kafka: &KafkaConfig) -> Self {
        let names = Topic::ALL
            .iter()
            .map(|t| (*t, kafka.topic(t.name())))
            .collect();
        KafkaSink {
            producer,
            deliveries,
            names,
            format: kafka.output_format,
            schema_ids: kafka.schema_ids.clone(),
            correlation: kafka.correlation_key,
            clusters: HashMap::new(),
            suppress_detections: false,
            policy: kafka.on_permanent_failure,
            buf: Vec::with_capacity(4096),
        }
    }

    /// The real topic name of an output topic.
    pub fn topic_name(&self, t: Topic) -> &str {
        self.names.get(&t).map(String::as_str).unwrap_or("")
    }

    /// Remembers the cluster of a service (for `correlation_key = "cluster"`).
    pub fn learn_cluster(&mut self, service: &str, cluster: Option<&str>) {
        if self.correlation != CorrelationKey::Cluster {
            return;
        }
        if let Some(c) = cluster {
            if self.clusters.get(service).map(String::as_str) != Some(c) {
                if self.clusters.len() >= MAX_CLUSTERS {
                    self.clusters.clear();
                }
                self.clusters.insert(service.to_string(), c.to_string());
            }
        }
    }

    /// The partitioning key of a detection: its correlation domain.
    pub fn domain_key(&self, d: &Detection) -> String {
        match self.correlation {
            CorrelationKey::Namespace => d.namespace.clone().unwrap_or_default(),
            CorrelationKey::Cluster => self.clusters.get(&d.service).cloned().unwrap_or_default(),
        }
    }

    fn key_of(&self, out: &Output) -> String {
        match out {
            Output::Detection(d) => self.domain_key(d),
            Output::Incident(i) => i.incident_id.clone(),
            Output::Action(a) => a.incident_id.clone(),
            Output::Escalation(e) => e.incident_id.clone(),
            Output::DeadLetter(d) => format!(
                "{}/{}",
                d.source_topic,
                d.source_partition.map_or(-1, |p| p)
            ),
        }
    }

    fn encode(&mut self, out: &Output) -> Result<(), SinkError> {
        let topic = out.topic();
        self.buf.clear();
        match self.format {
            OutputFormat::Json => out
                .to_json(&mut self.buf)
                .map_err(|source| SinkError::Encode { topic, source })?,
            OutputFormat::Avro => {
                let (rt, body) = match out {
                    Output::Detection(r) => (
                        RecordType::Detection,
                        avro::encode(RecordType::Detection, r),
                    ),
                    Output::Incident(r) => {
                        (RecordType::Incident, avro::encode(RecordType::Incident, r))
                    }
                    Output::Action(r) => (
                        RecordType::RecoveryAction,
                        avro::encode(RecordType::RecoveryAction, r),
                    ),
                    Output::Escalation(r) => (
                        RecordType::Escalation,
                        avro::encode(RecordType::Escalation, r),
                    ),
                    Output::DeadLetter(r) => (
                        RecordType::DeadLetter,
                        avro::encode(RecordType::DeadLetter, r),
                    ),
                };
                let body = body.map_err(|source| SinkError::Avro { topic, source })?;
                let id = self.schema_ids.output_id(rt).unwrap_or(0);
                self.buf = wire::frame(id, &body);
            }
        }
        Ok(())
    }

    /// Produces the encoded `self.buf`; retries while librdkafka's queue is
    /// full. `origin` names a dead letter's source for the logs. A record
    /// librdkafka refuses outright (too large, ...) is an error, or, under
    /// the `skip` policy, counted, logged and `Ok(None)`.
    fn send_buf(
        &self,
        out: Topic,
        key: &str,
        partition: Option<i32>,
        headers: Option<OwnedHeaders>,
        origin: Option<String>,
    ) -> Result<Option<u64>, SinkError> {
        let topic = self.topic_name(out);
        let seq = self.deliveries.begin();
        if let Some(o) = &origin {
            self.deliveries.set_origin(seq, o.clone());
        }
        let mut record = BaseRecord::with_opaque_to(topic, seq as usize)
            .key(key)
            .payload(&self.buf[..]);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let mut warned = false;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(Some(seq)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if !warned {
                        warn!(topic, "Producer queue full; waiting for the broker.");
                        warned = true;
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    if policy_for(self.policy, Some(out)) == FailurePolicy::Skip {
                        self.deliveries.skip(seq);
                        count_skip(out);
                        kafka_error(KafkaErrorKind::Delivery);
                        error!(
                            %error,
                            topic,
                            key,
                            bytes = self.buf.len(),
                            source = origin.as_deref().unwrap_or("-"),
                            "Output cannot be produced; skipped by policy."
                        );
                        return Ok(None);
                    }
                    self.deliveries.abort(seq);
                    return Err(SinkError::Kafka {
                        topic: topic.to_string(),
                        message: error.to_string(),
                    });
                }
            }
        }
    }

    /// Publishes a detection with the split-mode ordering headers.
    pub fn send_detection(
        &mut self,
        d: &Detection,
        announced_wm: EventTime,
    ) -> Result<(), SinkError> {
        let out = Output::Detection(d.clone());
        self.encode(&out)?;
        let key = self.domain_key(d);
        let seq = self.deliveries.next_seq().to_string();
        let wm = announced_wm.millis().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_WM,
                value: Some(wm.as_bytes()),
            })
            .insert(Header {
                key: HEADER_SEQ,
                value: Some(seq.as_bytes()),
            });
        self.send_buf(Topic::Detections, &key, None, Some(headers), None)
            .map(|_| ())
    }

    /// Sends a watermark marker to one partition of `reflex.detections`.
    pub fn send_marker(&mut self, partition: i32, wm: EventTime) -> Result<(), SinkError> {
        self.buf.clear();
        self.buf
            .extend_from_slice(format!("{{\"watermark\":{}}}", wm.millis()).as_bytes());
        let v = wm.millis().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_TYPE,
                value: Some("watermark".as_bytes()),
            })
            .insert(Header {
                key: HEADER_WM,
                value: Some(v.as_bytes()),
            });
        self.send_buf(Topic::Detections, "", Some(partition), Some(headers), None)
            .map(|_| ())
    }

    /// Waits for every outstanding delivery (bounded by `timeout`).
    pub fn flush_for(&self, timeout: Duration) -> Result<(), SinkError> {
        let _ = self.producer.flush(timeout);
        if self.deliveries.wait_idle(timeout) {
            Ok(())
        } else {
            Err(SinkError::Kafka {
                topic: "*".into(),
                message: self
                    .deliveries
                    .failure()
                    .unwrap_or_else(|| format!("deliveries still pending after {timeout:?}")),
            })
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        if self.suppress_detections && matches!(out, Output::Detection(_)) {
            return Ok(());
        }
        self.encode(out)?;
        let key = self.key_of(out);
        let origin = match out {
            Output::DeadLetter(d) => Some(format!(
                "{}/{}/{}",
                d.source_topic,
                d.source_partition.map_or(-1, |p| p),
                d.source_offset.map_or(-1, |o| o)
            )),
            _ => None,
        };
        self.send_buf(out.topic(), &key, None, None, origin)
            .map(|_| ())
    }

    /// Deliveries are asynchronous; the runtime waits for them where it
    /// matters (offset commits, shutdown). Nothing to do here.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_record_stops_holding_back_the_acks_and_is_no_failure() {
        let d = Deliveries::default();
        let (a, b) = (d.begin(), d.begin());
        d.set_origin(a, "errors/0/7".into());
        assert_eq!(d.acked_below(), a);
        assert_eq!(d.skip(a).as_deref(), Some("errors/0/7"));
        assert_eq!(d.acked_below(), b, "the skipped record is done");
        assert_eq!((d.skipped(), d.failure()), (1, None));
        d.complete(b, None);
        assert_eq!(d.acked_below(), d.next_seq());
        assert!(d.wait_idle(Duration::from_millis(1)));
        assert_eq!(d.delivered(), 1);
    }

    #[test]
    fn dead_letters_and_outputs_have_their_own_policy() {
        let p = PermanentFailure::default();
        assert_eq!(policy_for(p, Some(Topic::Dlq)), FailurePolicy::Skip);
        assert_eq!(policy_for(p, Some(Topic::Actions)), FailurePolicy::Stop);
        assert_eq!(policy_for(p, None), FailurePolicy::Stop);
    }
}
