//! The Kafka runtime: drives the stages of a [`Topology`] (detect and the
//! decider) from a consumer group, producing to the output topics of
//! SPEC §2.
//!
//! Structure: [`run`] sets up the clients and a `Runtime`, a small state
//! machine (`Consuming` → `Backpressure` → `Consuming` …, `Draining` on
//! shutdown). The state of one assignment of partitions is an
//! `Epoch` (in `drivers`): the mode's driver (one per `--stage`), built from a
//! fresh topology by the same function at start and on every rebalance.
//! Decoding and the sink handles are in `io`.
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
//! been read, unless it is idle: at end of log for `idle_partition_timeout`,
//! and then it no longer holds the watermark back), minus
//! `allowed_lateness`, rounded down to `watermark_interval`. When *every*
//! assigned partition is idle, nothing more can arrive for now, so the
//! lateness allowance need not hold windows open: event time advances to
//! the latest event time read over all partitions (exactly, not rounded),
//! and every window that ended by then closes — a backlog, a replay or a
//! quiet night gives its incidents without waiting for new traffic. Idleness
//! is evaluated on the poll loop's timer (every `POLL_TIMEOUT` while no
//! message arrives), not only when a message comes. An event that arrives
//! afterwards older than that watermark is late: counted
//! (`late_events`) and folded into the window open now, never dropped. The
//! split `detect` stage publishes that advance as a marker like any other,
//! and the `decide` stage reaches it once it has read it on every partition.
//!
//! Offsets and failure handling: see [`crate::sources::kafka`] (at-least-once)
//! and [`crate::sinks::kafka`] (acks). Backpressure: when more than
//! `max_in_flight` outputs await acknowledgement, no more input is read
//! until half of them are acknowledged (librdkafka heartbeats meanwhile). Memory is bounded by librdkafka's queues
//! (`queued.max.messages.kbytes`, `queue.buffering.max.kbytes`), the
//! in-flight bound, and the stages' own documented bounds.

mod drivers;
mod io;

use self::drivers::{Ctx, Epoch};
use self::io::{InputDecoder, SharedSink, TappedSink};
use super::feedback::ResultsFollower;
use super::readiness::ReadyCondition;
use super::topology::{DecideOptions, DecideStages, Decider, Topology, TopologyError};
use super::Observer;
use crate::codec::InputCodec;
use crate::config::Config;
use crate::sinks::kafka::{create_producer, Deliveries, KafkaSink};
use crate::sinks::{SinkError, Topic};
use crate::sources::kafka::{
    commit_now, create_consumer, RebalanceContext, SourceShared, POLL_TIMEOUT,
};
use crate::stage::stats::{kafka_error, KafkaErrorKind, Stats};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::Message;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    pub telemetry: Option<Arc<dyn Observer>>,
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
    /// Records that could not be produced and were skipped by policy.
    pub skipped: u64,
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
        writeln!(f, "  records skipped  {:>10}", self.skipped)?;
        writeln!(f, "  rebalances       {:>10}", self.rebalances)?;
        write!(
            f,
            "  elapsed          {:>10.3}s",
            self.elapsed.as_secs_f64()
        )
    }
}

/// What the runtime is doing; each state's step returns the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a batch of messages through the mode's driver, then
    /// following results and approvals and storing offsets.
    Consuming,
    /// More than `max_in_flight` outputs await acknowledgement: nothing is
    /// read until half of them are (librdkafka keeps heartbeating).
    Backpressure,
    /// Shutdown was requested: flush the outputs, store and commit, stop.
    Draining,
}

/// The clients and the stages of one Kafka run.
struct Runtime<'a, 's> {
    cfg: &'a Config,
    opts: &'a KafkaOptions,
    shutdown: &'a AtomicBool,
    consumer: &'a BaseConsumer<RebalanceContext>,
    shared: &'a SourceShared,
    deliveries: &'a Deliveries,
    /// The runtime's own handle on the sink (headers, markers, clusters).
    sink: SharedSink,
    decoder: InputDecoder,
    stats: Arc<Stats>,
    topic: String,
    det_partitions: Vec<i32>,
    decider: Decider<'s>,
    epoch: Epoch,
    /// The decide side hears back from executors (`None` in `detect`).
    results: Option<ResultsFollower>,
    /// And from humans, when telemetry serves the approval API.
    approvals: Option<&'a Arc<dyn Observer>>,
    summary: KafkaSummary,
    last_err_log: Instant,
}

/// A fresh topology as an epoch plus its decide stages: the one setup of
/// both start-up and rebalance.
fn fresh(
    cfg: &Config,
    opts: &KafkaOptions,
    stats: &Arc<Stats>,
    det_partitions: &[i32],
    assigned: BTreeSet<i32>,
) -> Result<(Epoch, DecideStages, InputCodec), KafkaRunError> {
    let t = Topology::build(cfg, &opts.decide, stats.clone())?;
    let epoch = Epoch::new(
        opts.stage,
        t.detect,
        t.decode.watermarks,
        t.hold,
        det_partitions,
        assigned,
    );
    Ok((epoch, t.decide, t.decode.codec))
}

/// Runs until `shutdown` is triggered (then drains, commits, returns) or a fatal error.
pub fn run(
    cfg: &Config,
    opts: &KafkaOptions,
    shutdown: &crate::shutdown::Shutdown,
) -> Result<KafkaSummary, KafkaRunError> {
    let shutdown = shutdown.flag();
    let started = Instant::now();
    let k = &cfg.kafka;
    let stats = opts
        .telemetry
        .as_ref()
        .map_or_else(|| Arc::new(Stats::default()), |t| t.stats());
    let deliveries = Arc::new(Deliveries::default());
    let producer = Arc::new(create_producer(&opts.brokers, k, deliveries.clone())?);
    let mut ksink = KafkaSink::new(producer.clone(), deliveries.clone(), k);
    ksink.suppress_detections = opts.stage == StageSel::Decide;
    let det_topic = ksink.topic_name(Topic::Detections).to_string();
    let sink = SharedSink(Arc::new(Mutex::new(ksink)));
    let (topic, group) = match opts.stage {
        StageSel::Decide => (
            k.topic(crate::config::kafka::TopicName::Detections),
            format!("{}-decide", k.group_id),
        ),
        _ => (k.input_topic(), k.group_id.clone()),
    };
    let flush_timeout = flush_timeout(cfg);
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
        io::detections_partitions(&consumer, &det_topic, &shutdown)?
    } else {
        Vec::new()
    };
    let (epoch, decide, codec) = fresh(cfg, opts, &stats, &det_partitions, BTreeSet::new())?;
    let decoder = InputDecoder::new(codec, &k.schema_ids.error_event, k)?;

    // The decider borrows the sink for the whole run; a rebalance gives it
    // fresh stages (`Decider::reset`).
    let handle = SharedSink(sink.0.clone());
    let mut decider_sink = TappedSink {
        inner: sink,
        telemetry: opts.telemetry.clone(),
    };
    let decider = decide.connect(&mut decider_sink);
    let deciding = opts.stage != StageSel::Detect;
    let results = if deciding {
        Some(ResultsFollower::new(&opts.brokers, k)?)
    } else {
        None
    };
    let approvals = opts.telemetry.as_ref().filter(|_| deciding);
    if let Some(t) = approvals {
        t.approvals().attach();
    }

    if let Some(t) = &opts.telemetry {
        t.readiness().set(ReadyCondition::Pipeline);
    }
    info!(?opts.stage, topic, group, "Kafka runtime started.");
    let mut rt = Runtime {
        cfg,
        opts,
        shutdown: &shutdown,
        consumer: &consumer,
        shared: &shared,
        deliveries: &deliveries,
        sink: handle,
        decoder,
        stats,
        topic,
        det_partitions,
        decider,
        epoch,
        results,
        approvals,
        summary: KafkaSummary::default(),
        last_err_log: Instant::now()
            .checked_sub(Duration::from_secs(60))
            .unwrap_or_else(Instant::now),
    };
    let mut state = State::Consuming;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            state = State::Draining;
        }
        state = match state {
            State::Consuming => rt.consume()?,
            State::Backpressure => rt.wait_for_acks(),
            State::Draining => return rt.drain(started),
        };
    }
}

fn flush_timeout(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.kafka.shutdown_timeout.0.max(1) as u64)
}

impl Runtime<'_, '_> {
    /// Readiness follows the assignment: partitions (and the state, which
    /// nothing restores yet) are ready while some are assigned.
    fn set_assigned(&self, assigned: bool) {
        if let Some(t) = &self.opts.telemetry {
            if assigned {
                t.readiness().set(ReadyCondition::Partitions);
                t.readiness().set(ReadyCondition::State);
            } else {
                t.readiness().clear(ReadyCondition::Partitions);
            }
        }
    }

    /// One batch (`Consuming`); errors stop the run with offsets of
    /// unfinished work uncommitted.
    fn consume(&mut self) -> Result<State, KafkaRunError> {
        let k = &self.cfg.kafka;
        if let Some(f) = self.deliveries.failure() {
            return Err(KafkaRunError::Delivery(f));
        }
        if self.deliveries.in_flight() >= k.max_in_flight {
            kafka_error(KafkaErrorKind::Backpressure);
            return Ok(State::Backpressure);
        }
        // The messages borrow the consumer, not the runtime, so a rebalance
        // can rebuild the stages between two of them.
        let consumer = self.consumer;
        let batch_max = self.cfg.pipeline.batch_size.max(1);
        let interval = k.watermark_interval.0.max(1);
        let idle = Duration::from_millis(k.idle_partition_timeout.0 as u64);
        let mut n = 0usize;
        let mut timeout = POLL_TIMEOUT;
        while n < batch_max {
            let Some(res) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            if self.shared.rebalanced.swap(false, Ordering::SeqCst) {
                self.restart()?;
            }
            let msg = match res {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    let parts = &mut self.epoch.time.parts;
                    parts.eof_since.entry(p).or_insert_with(Instant::now);
                    continue;
                }
                Err(error) => {
                    kafka_error(KafkaErrorKind::Consumer);
                    if self.last_err_log.elapsed() > Duration::from_secs(5) {
                        warn!(%error, topic = self.topic, "Consumer error; retrying.");
                        self.last_err_log = Instant::now();
                    }
                    break;
                }
            };
            n += 1;
            self.summary.messages += 1;
            self.epoch.time.parts.eof_since.remove(&msg.partition());
            self.learn_assignment();
            self.step(Some(&msg), interval, idle)?;
        }
        // The timer: with no message (every partition at end of log) event
        // time still advances once partitions turn idle.
        self.learn_assignment();
        self.step(None, interval, idle)?;
        if let Some(r) = &mut self.results {
            r.poll(&mut self.decider)?;
        }
        if let Some(t) = self.approvals {
            super::feedback::answer_approvals(t.approvals(), &mut self.decider)?;
        }
        self.store();
        Ok(State::Consuming)
    }

    /// The partitions of the first assignment are looked up when there is
    /// something to do with them (a rebalance sets them otherwise).
    fn learn_assignment(&mut self) {
        let parts = &mut self.epoch.time.parts;
        if parts.assigned.is_empty() {
            if let Ok(a) = self.consumer.assignment() {
                parts.assigned = a.elements().iter().map(|e| e.partition()).collect();
                let any = !parts.assigned.is_empty();
                self.set_assigned(any);
            }
        }
    }

    /// Runs one message (or, with `None`, the timer) through the epoch.
    fn step(
        &mut self,
        msg: Option<&rdkafka::message::BorrowedMessage<'_>>,
        interval: i64,
        idle: Duration,
    ) -> Result<(), KafkaRunError> {
        let mut ctx = Ctx {
            decider: &mut self.decider,
            sink: &self.sink,
            shared: self.shared,
            decoder: &self.decoder,
            summary: &mut self.summary,
            stats: &self.stats,
            topic: &self.topic,
            shutdown: self.shutdown,
            interval,
            idle,
        };
        match msg {
            Some(m) => self.epoch.message(&mut ctx, m),
            None => self.epoch.tick(&mut ctx),
        }
    }

    /// Everything up to the announced watermark is emitted: stamp and store.
    fn store(&self) {
        self.shared.tracker().mark(
            self.epoch.time.announced.millis(),
            self.deliveries.next_seq(),
        );
        if let Err(error) = self.shared.store(self.consumer) {
            warn!(%error, "Failed to store offsets.");
        }
    }

    /// A rebalance: start clean. Stage state is dropped (a fresh topology),
    /// the tracker was cleared for revoked partitions, and unfinished inputs
    /// replay from the committed offsets.
    fn restart(&mut self) -> Result<(), KafkaRunError> {
        self.summary.rebalances += 1;
        let assigned: BTreeSet<i32> = self
            .consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        self.set_assigned(!assigned.is_empty());
        self.shared.tracker().clear();
        let (epoch, decide, _) = fresh(
            self.cfg,
            self.opts,
            &self.stats,
            &self.det_partitions,
            assigned,
        )?;
        self.epoch = epoch;
        self.decider.reset(decide);
        if let Some(r) = &mut self.results {
            r.rewind();
        }
        Ok(())
    }

    /// `Backpressure`: waits until half the outputs in flight are
    /// acknowledged (or shutdown). A stall longer than
    /// `max.poll.interval.ms` makes the group reassign the partitions; the
    /// uncommitted work is then replayed, never lost.
    fn wait_for_acks(&mut self) -> State {
        let since = Instant::now();
        let below = self.cfg.kafka.max_in_flight / 2;
        while !self.deliveries.wait_below(below, POLL_TIMEOUT) {
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            if since.elapsed() > Duration::from_secs(10)
                && self.last_err_log.elapsed() > Duration::from_secs(10)
            {
                warn!(
                    in_flight = self.deliveries.in_flight(),
                    "Outputs are not being acknowledged (broker unavailable?); consumption paused."
                );
                self.last_err_log = Instant::now();
            }
        }
        State::Consuming
    }

    /// `Draining`: flushes the outputs, commits what they cover, leaves the
    /// group and reports.
    fn drain(self, started: Instant) -> Result<KafkaSummary, KafkaRunError> {
        info!("Shutting down: draining deliveries and committing.");
        let Runtime {
            cfg,
            opts,
            consumer,
            shared,
            deliveries,
            sink,
            stats,
            decider,
            epoch,
            mut summary,
            ..
        } = self;
        drop(decider);
        if let Err(e) = sink.get().flush_for(flush_timeout(cfg)) {
            warn!(error = %e, "Not every output was acknowledged; their inputs stay uncommitted.");
        }
        if let Some(f) = deliveries.failure() {
            return Err(KafkaRunError::Delivery(f));
        }
        shared
            .tracker()
            .mark(epoch.time.announced.millis(), deliveries.next_seq());
        shared.store(consumer)?;
        commit_now(consumer)?;
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
        summary.skipped = deliveries.skipped();
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}
