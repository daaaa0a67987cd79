//! The Kafka runtime: drives the stages of a [`Topology`] (detect and the
//! [`Decider`]) from a consumer group, producing to the output topics of
//! SPEC §2. A fresh topology is built at start and on every rebalance.
//!
//! Stages (`reflex run --stage ...`):
//! - `all` (default): consumes the input topic; detect and decide run in one
//!   process, detections are published and fed to the decider in process.
//! - `detect`: consumes the input topic (partitioned by service); publishes
//!   detections keyed by correlation domain, each with headers carrying the
//!   watermark announced before it and a sequence number, plus a
//!   *watermark marker* (header `reflex.type=watermark`) to every partition
//!   of `reflex.detections` whenever its watermark advances.
//! - `decide`: consumes `reflex.detections` (group `<group_id>-decide`). Its
//!   watermark is the smallest marker seen across its partitions; it
//!   replays, for every marker value in order, the detections announced
//!   before it (ordered by the detect stage's sequence number) and then
//!   the watermark — exactly the sequence the `all` stage applies, so a
//!   split deployment with one detect instance gives the same incidents.
//!
//! One thread, `BaseConsumer` + `ThreadedProducer`: stages are synchronous
//! and cheap, the consumer is polled at least every 100 ms (heartbeats,
//! rebalances, shutdown), and librdkafka's own threads do the network I/O.
//! `BaseConsumer` was chosen over `StreamConsumer` because it is measured
//! several times faster for small messages and needs no async runtime.
//!
//! Watermark: per input partition the maximum event time; the stage
//! watermark is the minimum over assigned partitions (every one must have
//! been read, unless it is idle: at end of log for `idle_partition_timeout`),
//! minus `allowed_lateness`, rounded down to `watermark_interval`.
//!
//! Offsets and failure handling: see [`crate::sources::kafka`] (at-least-once)
//! and [`crate::sinks::kafka`] (acks). Backpressure: when more than
//! `max_in_flight` outputs await acknowledgement, no more input is read
//! until half of them are acknowledged (librdkafka heartbeats meanwhile). Memory is bounded by librdkafka's queues
//! (`queued.max.messages.kbytes`, `queue.buffering.max.kbytes`), the
//! in-flight bound, and the stages' own documented bounds.

use super::stats::Stats;
use super::topology::{DecideOptions, Decider, Topology, TopologyError};
use super::watermark::WatermarkTracker;
use super::Stage;
use crate::codec::avro::{self, RecordType};
use crate::codec::registry::{RegistryError, RegistryErrorKind, SchemaRegistry};
use crate::codec::{wire, DecodeError, DecodeErrorKind, InputCodec};
use crate::config::Config;
use crate::model::{Detection, ErrorEvent, EventTime};
use crate::sinks::kafka::{
    create_producer, Deliveries, KafkaSink, HEADER_SEQ, HEADER_TYPE, HEADER_WM,
};
use crate::sinks::{Output, Sink, SinkError, Topic};
use crate::sources::kafka::{
    commit_now, create_consumer, RebalanceContext, SourceShared, POLL_TIMEOUT,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::Producer;
use rdkafka::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Which part of the pipeline this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageSel {
    /// Detect and decide in one process.
    All,
    /// Input topic → `reflex.detections`.
    Detect,
    /// `reflex.detections` → incidents, actions, escalations.
    Decide,
}

impl std::str::FromStr for StageSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(StageSel::All),
            "detect" => Ok(StageSel::Detect),
            "decide" => Ok(StageSel::Decide),
            o => Err(format!(
                "unknown stage {o:?} (expected detect, decide or all)"
            )),
        }
    }
}

/// Settings of one Kafka run that do not come from the config file.
#[derive(Clone)]
pub struct KafkaOptions {
    pub stage: StageSel,
    /// Bootstrap servers (`--brokers`; overrides `kafka.brokers`).
    pub brokers: String,
    pub decide: DecideOptions,
    /// Counters, readiness and the live output tap of `/metrics`, `/ready`
    /// and `/api/*`; `None` = no telemetry. Readiness here means: the
    /// runtime runs (Pipeline), partitions are assigned (Partitions, cleared
    /// again while none are), and state is loaded (State: nothing is
    /// restored yet, so it holds as soon as partitions are assigned).
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

/// Errors that stop a Kafka run (exit 1; offsets of unfinished work are
/// not committed, so a restart replays it).
#[derive(Debug, thiserror::Error)]
pub enum KafkaRunError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("delivery failed permanently: {0}")]
    Delivery(String),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// What a Kafka run did.
#[derive(Debug, Clone, Default)]
pub struct KafkaSummary {
    pub messages: u64,
    pub events: u64,
    pub dead_letters: u64,
    pub detections: u64,
    pub incident_records: u64,
    pub actions: u64,
    pub escalations: u64,
    pub delivered: u64,
    pub rebalances: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for KafkaSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reflex kafka run summary")?;
        writeln!(f, "  messages read    {:>10}", self.messages)?;
        writeln!(f, "  events           {:>10}", self.events)?;
        writeln!(f, "  dead letters     {:>10}", self.dead_letters)?;
        writeln!(f, "  detections       {:>10}", self.detections)?;
        writeln!(f, "  incident records {:>10}", self.incident_records)?;
        writeln!(f, "  actions          {:>10}", self.actions)?;
        writeln!(f, "  escalations      {:>10}", self.escalations)?;
        writeln!(f, "  records acked    {:>10}", self.delivered)?;
        writeln!(f, "  rebalances       {:>10}", self.rebalances)?;
        write!(
            f,
            "  elapsed          {:>10.3}s",
            self.elapsed.as_secs_f64()
        )
    }
}

/// Per-partition input bookkeeping for the watermark.
#[derive(Default)]
struct PartClock {
    assigned: BTreeSet<i32>,
    seen: BTreeSet<i32>,
    eof_since: HashMap<i32, Instant>,
}

impl PartClock {
    fn reset(&mut self, assigned: BTreeSet<i32>) {
        self.assigned = assigned;
        self.seen.clear();
        self.eof_since.clear();
    }

    /// Partitions whose progress bounds the watermark.
    fn ready(&self, idle: Duration, wm: &mut WatermarkTracker) -> bool {
        let mut ready = true;
        for p in &self.assigned {
            let is_idle = self.eof_since.get(p).is_some_and(|t| t.elapsed() >= idle);
            if is_idle {
                wm.remove_partition(*p);
            } else if !self.seen.contains(p) {
                ready = false;
            }
        }
        ready && !self.assigned.is_empty()
    }
}

/// Decodes framed Avro with a registry schema when the id is not one of ours.
struct InputDecoder {
    codec: InputCodec,
    registry: Option<SchemaRegistry>,
    ours: Option<String>,
}

impl InputDecoder {
    /// The event or its dead letter reason; `Err` only for a registry that
    /// cannot be asked right now (retried by the caller, never a dead letter).
    fn decode(&self, bytes: &[u8]) -> Result<Result<ErrorEvent, DecodeError>, RegistryError> {
        if let (Some(reg), Some((id, body))) = (&self.registry, wire::unframe(bytes)) {
            if bytes.len() <= self.codec.max_bytes && !self.codec.event_schema_ids.contains(&id) {
                let writer = match reg.schema(id) {
                    Ok(w) => w,
                    Err(e)
                        if matches!(
                            e.kind,
                            RegistryErrorKind::NotFound | RegistryErrorKind::BadSchema
                        ) =>
                    {
                        return Ok(Err(DecodeError::new(
                            DecodeErrorKind::UnknownSchema,
                            e.to_string(),
                        )))
                    }
                    Err(e) => return Err(e),
                };
                if Some(writer.canonical_form()) == self.ours {
                    return Ok(avro::decode_event(body));
                }
                return Ok(avro::decode_event_with_writer(&writer, body));
            }
        }
        Ok(self.codec.decode(bytes))
    }

    /// Decodes, retrying with backoff while the registry is unreachable.
    fn decode_retrying(
        &self,
        bytes: &[u8],
        shutdown: &AtomicBool,
    ) -> Result<Result<ErrorEvent, DecodeError>, KafkaRunError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.decode(bytes) {
                Ok(r) => return Ok(r),
                Err(error) => {
                    crate::telemetry::metrics::kafka_error(
                        crate::telemetry::metrics::KafkaErrorKind::SchemaRegistry,
                    );
                    warn!(%error, "Schema Registry unavailable; retrying.");
                    if shutdown.load(Ordering::SeqCst) {
                        return Err(KafkaRunError::Registry(error.to_string()));
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn header_i64(msg: &BorrowedMessage<'_>, key: &str) -> Option<i64> {
    let h = msg.headers()?;
    h.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

fn is_marker(msg: &BorrowedMessage<'_>) -> bool {
    msg.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == HEADER_TYPE && h.value == Some(b"watermark".as_slice()))
    })
}

fn decode_detection(bytes: &[u8]) -> Result<Detection, DecodeError> {
    match wire::unframe(bytes) {
        Some((_, body)) => avro::decode::<Detection>(RecordType::Detection, body),
        None => serde_json::from_slice::<Detection>(bytes)
            .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidJson, e.to_string())),
    }
}

/// The decide stage's reordering buffer (split mode).
#[derive(Default)]
struct DecideClock {
    /// Latest marker per partition.
    markers: BTreeMap<i32, i64>,
    /// Marker values not yet applied.
    pending_marks: BTreeSet<i64>,
    /// Detections waiting for their watermark, by (announced wm, seq).
    buffer: BTreeMap<(i64, u64, i32, i64), Detection>,
    applied: i64,
}

/// Runs until `shutdown` is set (then drains, commits, returns) or a fatal error.
pub fn run(
    cfg: &Config,
    opts: &KafkaOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<KafkaSummary, KafkaRunError> {
    let started = Instant::now();
    let k = &cfg.kafka;
    let stats = opts
        .telemetry
        .as_ref()
        .map_or_else(|| Arc::new(Stats::default()), |t| t.stats.clone());
    let set_assigned = |assigned: bool| {
        if let Some(t) = &opts.telemetry {
            use crate::telemetry::ReadyCondition;
            if assigned {
                t.readiness.set(ReadyCondition::Partitions);
                t.readiness.set(ReadyCondition::State);
            } else {
                t.readiness.clear(ReadyCondition::Partitions);
            }
        }
    };
    let deliveries = Arc::new(Deliveries::default());
    let producer = Arc::new(create_producer(&opts.brokers, k, deliveries.clone())?);
    let mut ksink = KafkaSink::new(producer.clone(), deliveries.clone(), k);
    ksink.suppress_detections = opts.stage == StageSel::Decide;
    let det_topic = ksink.topic_name(Topic::Detections).to_string();
    let sink = SharedSink(Arc::new(Mutex::new(ksink)));
    let (topic, group) = match opts.stage {
        StageSel::Decide => (
            k.topic("reflex.detections"),
            format!("{}-decide", k.group_id),
        ),
        _ => (k.input_topic(), k.group_id.clone()),
    };
    let flush_timeout = Duration::from_millis(k.shutdown_timeout.0.max(1) as u64);
    let flush = {
        let producer = producer.clone();
        let deliveries = deliveries.clone();
        Box::new(move || {
            let _ = producer.flush(flush_timeout);
            deliveries.wait_idle(flush_timeout)
        })
    };
    let shared = Arc::new(SourceShared {
        tracker: Default::default(),
        deliveries: deliveries.clone(),
        rebalanced: AtomicBool::new(false),
        flush,
        topic: topic.clone(),
    });
    let consumer = create_consumer(&opts.brokers, &group, &topic, k, shared.clone())?;
    let det_partitions: Vec<i32> = if opts.stage == StageSel::Detect {
        detections_partitions(&consumer, &det_topic, &shutdown)?
    } else {
        Vec::new()
    };
    // The stages, built again (fresh) on every rebalance.
    let Topology {
        decode,
        mut detect,
        decide,
        hold,
    } = Topology::build(cfg, &opts.decide, stats.clone())?;
    let mut wm_tracker = decode.watermarks;
    let decoder = InputDecoder {
        codec: InputCodec {
            event_schema_ids: k.schema_ids.error_event.clone(),
            ..decode.codec
        },
        registry: match &k.schema_registry_url {
            Some(u) => {
                Some(SchemaRegistry::new(u).map_err(|e| KafkaRunError::Registry(e.to_string()))?)
            }
            None => None,
        },
        ours: avro::schema(RecordType::ErrorEvent)
            .ok()
            .map(|s| s.canonical_form()),
    };
    let interval = k.watermark_interval.0.max(1);
    // An input event's offset is held until every stage of this process
    // has passed it (the decide stage holds detections by their window).
    let hold_ms = if opts.stage == StageSel::All {
        hold.all_ms()
    } else {
        hold.detect_ms
    };
    let idle = Duration::from_millis(k.idle_partition_timeout.0 as u64);

    let mut summary = KafkaSummary::default();
    // Stage state, rebuilt on every rebalance.
    let mut clock = PartClock::default();
    let mut announced = EventTime(i64::MIN);
    let mut dclock = DecideClock {
        applied: i64::MIN,
        ..DecideClock::default()
    };
    let mut dets: Vec<Detection> = Vec::new();
    let mut last_err_log = Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(Instant::now);
    let batch_max = cfg.pipeline.batch_size.max(1);

    // The decider borrows the sink; it is rebuilt on rebalance with the stages.
    let handle = SharedSink(sink.0.clone());
    let mut decider_sink = TappedSink {
        inner: sink,
        telemetry: opts.telemetry.clone(),
    };
    let mut decider = decide.connect(&mut decider_sink);
    // The decide side hears back from executors and humans.
    let deciding = opts.stage != StageSel::Detect;
    let mut results = if deciding {
        Some(super::feedback::ResultsFollower::new(&opts.brokers, k)?)
    } else {
        None
    };
    let approvals = opts.telemetry.as_ref().filter(|_| deciding);
    if let Some(t) = approvals {
        t.approvals.attach();
    }

    if let Some(t) = &opts.telemetry {
        t.readiness.set(crate::telemetry::ReadyCondition::Pipeline);
    }
    info!(?opts.stage, topic, group, "Kafka runtime started.");
    while !shutdown.load(Ordering::SeqCst) {
        if let Some(f) = deliveries.failure() {
            return Err(KafkaRunError::Delivery(f));
        }
        // Backpressure: while too many outputs await acks, read nothing
        // more (librdkafka keeps heartbeating in the background). A stall
        // longer than `max.poll.interval.ms` makes the group reassign the
        // partitions; the uncommitted work is then replayed, never lost.
        if deliveries.in_flight() >= k.max_in_flight {
            crate::telemetry::metrics::kafka_error(
                crate::telemetry::metrics::KafkaErrorKind::Backpressure,
            );
            let since = Instant::now();
            while !deliveries.wait_below(k.max_in_flight / 2, POLL_TIMEOUT) {
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
                if since.elapsed() > Duration::from_secs(10)
                    && last_err_log.elapsed() > Duration::from_secs(10)
                {
                    warn!(
                        in_flight = deliveries.in_flight(),
                        "Outputs are not being acknowledged (broker unavailable?); consumption paused."
                    );
                    last_err_log = Instant::now();
                }
            }
            continue;
        }
        let mut n = 0usize;
        let mut timeout = POLL_TIMEOUT;
        while n < batch_max {
            let Some(res) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            if shared.rebalanced.swap(false, Ordering::SeqCst) {
                // Start clean: drop stage state; the tracker was cleared for
                // revoked partitions; unfinished inputs replay from commits.
                summary.rebalances += 1;
                let assigned: BTreeSet<i32> = consumer
                    .assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                set_assigned(!assigned.is_empty());
                shared.tracker().clear();
                let fresh = Topology::build(cfg, &opts.decide, stats.clone())?;
                detect = fresh.detect;
                wm_tracker = fresh.decode.watermarks;
                clock.reset(assigned);
                announced = EventTime(i64::MIN);
                dclock = DecideClock {
                    applied: i64::MIN,
                    ..DecideClock::default()
                };
                drop(decider);
                decider = fresh.decide.connect(&mut decider_sink);
                if let Some(r) = &mut results {
                    r.rewind();
                }
            }
            let msg = match res {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    clock.eof_since.entry(p).or_insert_with(Instant::now);
                    continue;
                }
                Err(error) => {
                    crate::telemetry::metrics::kafka_error(
                        crate::telemetry::metrics::KafkaErrorKind::Consumer,
                    );
                    if last_err_log.elapsed() > Duration::from_secs(5) {
                        warn!(%error, topic, "Consumer error; retrying.");
                        last_err_log = Instant::now();
                    }
                    break;
                }
            };
            n += 1;
            summary.messages += 1;
            let (p, off) = (msg.partition(), msg.offset());
            clock.eof_since.remove(&p);
            if clock.assigned.is_empty() {
                if let Ok(a) = consumer.assignment() {
                    clock.assigned = a.elements().iter().map(|e| e.partition()).collect();
                    set_assigned(!clock.assigned.is_empty());
                }
            }
            let payload = msg.payload().unwrap_or(&[]);
            match opts.stage {
                StageSel::All | StageSel::Detect => {
                    Stats::add(&stats.records_read, 1);
                    match decoder.decode_retrying(payload, &shutdown)? {
                        Ok(ev) => {
                            Stats::add(&stats.events_in, 1);
                            let t = ev.time.max(announced);
                            clock.seen.insert(p);
                            // An implausible jump into the future (broken
                            // clock) would hold the partition's offsets until
                            // that time: such an event does not hold them.
                            let release = if wm_tracker.observe(p, ev.time) {
                                t.millis().saturating_add(hold_ms)
                            } else {
                                i64::MIN
                            };
                            shared.tracker().add(p, off, release);
                            handle
                                .get()
                                .learn_cluster(&ev.service, ev.cluster.as_deref());
                            detect.process(ev, &mut dets);
                        }
                        Err(e) => {
                            shared.tracker().add(p, off, i64::MIN);
                            let dl = e.into_dead_letter(payload, &topic, Some(p), Some(off));
                            decider.dead_letter(dl)?;
                        }
                    }
                    // Advance event time.
                    let wm = if clock.ready(idle, &mut wm_tracker) {
                        wm_tracker.watermark()
                    } else {
                        None
                    };
                    let wm = wm.map(|w| EventTime(w.millis().div_euclid(interval) * interval));
                    let advanced = wm.filter(|w| *w > announced);
                    if let Some(w) = advanced {
                        detect.on_watermark(w, &mut dets);
                    }
                    emit(
                        opts.stage,
                        &mut decider,
                        &handle,
                        &mut dets,
                        announced,
                        &mut summary,
                    )?;
                    if let Some(w) = advanced {
                        announced = w;
                        if opts.stage == StageSel::All {
                            decider.watermark(w)?;
                        } else {
                            for dp in &det_partitions {
                                handle.get().send_marker(*dp, w)?;
                            }
                        }
                    }
                }
                StageSel::Decide => {
                    if is_marker(&msg) {
                        let w = header_i64(&msg, HEADER_WM).unwrap_or(i64::MIN);
                        let m = dclock.markers.entry(p).or_insert(i64::MIN);
                        *m = (*m).max(w);
                        if w > dclock.applied {
                            dclock.pending_marks.insert(w);
                        }
                        shared.tracker().add(p, off, w);
                    } else {
                        match decode_detection(payload) {
                            Ok(d) => {
                                let tag = header_i64(&msg, HEADER_WM);
                                let seq = header_i64(&msg, HEADER_SEQ).unwrap_or(0) as u64;
                                let release = d
                                    .window
                                    .end
                                    .millis()
                                    .saturating_add(hold.decide_ms)
                                    .max(tag.unwrap_or(i64::MIN).saturating_add(1));
                                shared.tracker().add(p, off, release);
                                match tag {
                                    Some(t) if t >= dclock.applied => {
                                        dclock.buffer.insert((t, seq, p, off), d);
                                    }
                                    // Late or not from a reflex detect stage: at once.
                                    _ => {
                                        summary.detections += 1;
                                        decider.detections(vec![d])?;
                                    }
                                }
                            }
                            Err(e) => {
                                shared.tracker().add(p, off, i64::MIN);
                                let dl = e.into_dead_letter(payload, &topic, Some(p), Some(off));
                                decider.dead_letter(dl)?;
                            }
                        }
                    }
                    clock.seen.insert(p);
                    // The decide watermark: the smallest marker over assigned partitions.
                    let w = if clock.ready(idle, &mut wm_tracker) {
                        clock
                            .assigned
                            .iter()
                            .filter(|q| clock.eof_since.get(q).is_none_or(|t| t.elapsed() < idle))
                            .map(|q| dclock.markers.get(q).copied())
                            .try_fold(i64::MAX, |acc, m| m.map(|m| acc.min(m)))
                    } else {
                        None
                    };
                    if let Some(w) = w.filter(|w| *w != i64::MAX) {
                        while let Some(&m) = dclock.pending_marks.first() {
                            if m > w {
                                break;
                            }
                            dclock.pending_marks.pop_first();
                            let rest = dclock.buffer.split_off(&(m, 0, i32::MIN, i64::MIN));
                            let ready = std::mem::replace(&mut dclock.buffer, rest);
                            let batch: Vec<Detection> = ready.into_values().collect();
                            summary.detections += batch.len() as u64;
                            decider.detections(batch)?;
                            decider.watermark(EventTime(m))?;
                            dclock.applied = m;
                            announced = EventTime(m);
                        }
                    }
                }
            }
        }
        if let Some(r) = &mut results {
            r.poll(&mut decider)?;
        }
        if let Some(t) = approvals {
            super::feedback::answer_approvals(&t.approvals, &mut decider)?;
        }
        // Everything up to `announced` is emitted: stamp and store.
        shared
            .tracker()
            .mark(announced.millis(), deliveries.next_seq());
        if let Err(error) = shared.store(&consumer) {
            warn!(%error, "Failed to store offsets.");
        }
    }

    info!("Shutting down: draining deliveries and committing.");
    drop(decider);
    if let Err(e) = handle.get().flush_for(flush_timeout) {
        warn!(error = %e, "Not every output was acknowledged; their inputs stay uncommitted.");
    }
    if let Some(f) = deliveries.failure() {
        return Err(KafkaRunError::Delivery(f));
    }
    shared
        .tracker()
        .mark(announced.millis(), deliveries.next_seq());
    shared.store(&consumer)?;
    commit_now(&consumer)?;
    consumer.unsubscribe();
    summary.events = Stats::get(&stats.events_in);
    summary.dead_letters = Stats::get(&stats.dead_letters);
    if opts.stage != StageSel::Decide {
        summary.detections = Stats::get(&stats.detections);
    }
    summary.incident_records = Stats::get(&stats.incident_records);
    summary.actions = Stats::get(&stats.actions);
    summary.escalations = Stats::get(&stats.escalations);
    summary.delivered = deliveries.delivered();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Sends the detections of one step: in process (all) or to Kafka (detect).
fn emit(
    stage: StageSel,
    decider: &mut Decider<'_>,
    sink: &SharedSink,
    dets: &mut Vec<Detection>,
    announced: EventTime,
    summary: &mut KafkaSummary,
) -> Result<(), KafkaRunError> {
    if dets.is_empty() {
        return Ok(());
    }
    match stage {
        StageSel::Detect => {
            summary.detections += dets.len() as u64;
            for d in dets.drain(..) {
                sink.get().send_detection(&d, announced)?;
            }
            Ok(())
        }
        _ => Ok(decider.detections(std::mem::take(dets))?),
    }
}

/// Partitions of the detections topic (markers go to each); waits for
/// metadata while the broker is unavailable.
fn detections_partitions(
    consumer: &BaseConsumer<RebalanceContext>,
    topic: &str,
    shutdown: &AtomicBool,
) -> Result<Vec<i32>, KafkaRunError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        return Ok(t.partitions().iter().map(|p| p.id()).collect());
                    }
                }
                warn!(
                    topic,
                    "Detections topic has no partitions yet (run `reflex topics apply`); retrying."
                );
            }
            Err(error) => warn!(%error, topic, "Cannot read metadata; retrying."),
        }
        if shutdown.load(Ordering::SeqCst) {
            return Err(KafkaRunError::Kafka(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The sink as the decider sees it; the runtime keeps its own handle for
/// detect-stage publishing (headers, markers).
struct SharedSink(Arc<Mutex<KafkaSink>>);

/// The decider's sink: the producer, plus the telemetry tap (counters,
/// incident store, live stream) when telemetry is on.
struct TappedSink {
    inner: SharedSink,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

impl Sink for TappedSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.inner.write(out)?;
        if let Some(t) = &self.telemetry {
            t.observe(out);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}

impl SharedSink {
    fn get(&self) -> MutexGuard<'_, KafkaSink> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for SharedSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.get().write(out)
    }
}
