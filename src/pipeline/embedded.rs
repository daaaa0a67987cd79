//! The embedded runtime: JSON Lines in, one JSON Lines file per topic out,
//! no broker.
//!
//! Three threads joined by bounded channels (backpressure: a slow stage
//! stalls the ones before it, memory stays bounded by
//! `channel_capacity × batch_size`):
//! read + decode → detect → decide (diagnosis, recovery, sink).
//! Each stage is single-threaded and channels are FIFO, and all time is event
//! time, so the same input always produces byte-identical outputs.

use super::batcher::{Batch, Batcher};
use super::stats::{StageName, Stats};
use super::watermark::WatermarkTracker;
use super::Stage;
use crate::codec::InputCodec;
use crate::config::Config;
use crate::detectors::DetectStage;
use crate::diagnosis::DiagnosisStage;
use crate::model::{ActionResult, DeadLetter, Detection, ErrorEvent, EventTime, Incident};
use crate::recovery::{ApprovalError, RecoveryOutput, RecoveryStage};
use crate::sinks::{Output, Sink, SinkError};
use crate::sources::file::{LineBatch, LineReader};
use crate::telemetry::{Readiness, ReadyCondition};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Event time after which the reader hands over a batch even mid-chunk.
pub const WATERMARK_CADENCE_MS: i64 = 1_000;

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading input {path}: {source}")]
    Input {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("a pipeline thread stopped unexpectedly")]
    Thread,
}

/// What a run did, for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub lines: u64,
    pub blank_lines: u64,
    pub events: u64,
    pub change_events: u64,
    pub dead_letters: u64,
    pub late_events: u64,
    pub detections: u64,
    pub incidents: u64,
    pub incident_records: u64,
    pub actions: u64,
    pub escalations: u64,
    pub elapsed: Duration,
}

impl RunSummary {
    /// Input events (good and bad) per wall-clock second.
    pub fn events_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            (self.events + self.dead_letters) as f64 / s
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reflex run summary")?;
        writeln!(
            f,
            "  input lines      {:>10}  (blank {})",
            self.lines, self.blank_lines
        )?;
        writeln!(
            f,
            "  events           {:>10}  (changes {}, late {})",
            self.events, self.change_events, self.late_events
        )?;
        writeln!(f, "  dead letters     {:>10}", self.dead_letters)?;
        writeln!(f, "  detections       {:>10}", self.detections)?;
        writeln!(
            f,
            "  incidents        {:>10}  ({} records)",
            self.incidents, self.incident_records
        )?;
        writeln!(f, "  actions          {:>10}", self.actions)?;
        writeln!(f, "  escalations      {:>10}", self.escalations)?;
        write!(
            f,
            "  elapsed          {:>10.3}s ({:.0} events/s)",
            self.elapsed.as_secs_f64(),
            self.events_per_sec()
        )
    }
}

/// Diagnosis + recovery + sink: everything after detection, shared by the
/// embedded runtime, the Kafka `decide` stage and the demo.
///
/// Executor results are applied in event time: [`Decider::action_result`]
/// queues them and each is handed to the recovery stage at the first
/// watermark ≥ its `finished_at` (ties by `finished_at`, then idempotency
/// key, then arrival), so a replay given the same results
/// (`reflex run --action-results`) reproduces the live run's records.
pub struct Decider<'s> {
    pub diagnose: DiagnosisStage,
    pub recover: RecoveryStage,
    sink: &'s mut dyn Sink,
    incidents: Vec<Incident>,
    outputs: Vec<RecoveryOutput>,
    /// Results waiting for the watermark to reach their `finished_at`.
    results: BTreeMap<(EventTime, String, u64), ActionResult>,
    arrivals: u64,
    stats: Arc<Stats>,
}

impl<'s> Decider<'s> {
    /// Builds the decide stages from config; `opts.action_results` are queued.
    pub fn new(
        cfg: &Config,
        opts: &DecideOptions,
        sink: &'s mut dyn Sink,
        stats: Arc<Stats>,
    ) -> Self {
        let catalog = Arc::new(cfg.catalog.clone());
        let mut recover = RecoveryStage::new(
            cfg.recovery.clone(),
            cfg.actions.clone(),
            catalog.clone(),
            opts.signing_key.clone(),
            opts.healing_env_off,
            stats.clone(),
        );
        recover.set_min_score(cfg.diagnosis.min_open_score);
        let mut d = Decider {
            diagnose: DiagnosisStage::new(cfg.diagnosis.clone(), catalog, stats.clone()),
            recover,
            sink,
            incidents: Vec::new(),
            outputs: Vec::new(),
            results: BTreeMap::new(),
            arrivals: 0,
            stats,
        };
        for r in &opts.action_results {
            d.action_result(r);
        }
        d
    }

    /// Writes a dead letter.
    pub fn dead_letter(&mut self, d: DeadLetter) -> Result<(), SinkError> {
        Stats::add(&self.stats.dead_letters, 1);
        self.sink.write(&Output::DeadLetter(d))
    }

    /// Publishes detections and runs them through diagnosis and recovery
    /// (recovery watches them to verify its actions).
    pub fn detections(&mut self, dets: Vec<Detection>) -> Result<(), SinkError> {
        Stats::add(&self.stats.detections, dets.len() as u64);
        for d in dets {
            self.sink.write(&Output::Detection(d.clone()))?;
            self.recover.observe(&d);
            self.diagnose.process(d, &mut self.incidents);
        }
        self.route()
    }

    /// An executor reported how an action went (`reflex.action-results`).
    /// Queued and applied at the first watermark ≥ its `finished_at` (a
    /// result older than the watermark already passed is applied at the
    /// next one).
    pub fn action_result(&mut self, r: &ActionResult) {
        Stats::add(&self.stats.action_results, 1);
        self.arrivals += 1;
        self.results.insert(
            (r.finished_at, r.idempotency_key.clone(), self.arrivals),
            r.clone(),
        );
    }

    /// Results queued and not yet applied.
    pub fn queued_results(&self) -> usize {
        self.results.len()
    }

    /// A human approved or rejected a pending `approval_required` action;
    /// the outputs (the re-emitted `auto` action, or an escalation) are
    /// written at once.
    pub fn approval(
        &mut self,
        action_id: &str,
        approve: bool,
        by: &str,
    ) -> Result<Result<(), ApprovalError>, SinkError> {
        let r = self
            .recover
            .approval(action_id, approve, by, &mut self.outputs);
        self.route()?;
        Ok(r)
    }

    /// Closes the recovery circuit breaker.
    pub fn reset_breaker(&mut self) {
        self.recover.reset_breaker();
    }

    /// The decide side of one batch: its dead letters, its detections, then
    /// its watermark (the order every runtime uses).
    pub fn run_batch(
        &mut self,
        dead: Vec<DeadLetter>,
        detections: Vec<Detection>,
        watermark: Option<EventTime>,
    ) -> Result<(), SinkError> {
        for d in dead {
            self.dead_letter(d)?;
        }
        self.detections(detections)?;
        match watermark {
            Some(wm) => self.watermark(wm),
            None => Ok(()),
        }
    }

    /// Advances event time: diagnosis timers, then the results due, then
    /// recovery timers (verification windows, timeouts, expiries).
    pub fn watermark(&mut self, wm: EventTime) -> Result<(), SinkError> {
        self.diagnose.on_watermark(wm, &mut self.incidents);
        self.route()?;
        while let Some(e) = self.results.first_entry() {
            if e.key().0 > wm {
                break;
            }
            let r = e.remove();
            self.recover.on_result(&r, &mut self.outputs);
            self.route()?;
        }
        self.recover.on_watermark(wm, &mut self.outputs);
        self.route()
    }

    /// End of input: flush every stage and the sink. Results whose
    /// `finished_at` the watermark never reached stay unapplied.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        self.diagnose.flush(&mut self.incidents);
        self.route()?;
        self.recover.flush(&mut self.outputs);
        self.route()?;
        self.sink.flush()
    }

    fn route(&mut self) -> Result<(), SinkError> {
        loop {
            for inc in std::mem::take(&mut self.incidents) {
                self.sink.write(&Output::Incident(inc.clone()))?;
                self.recover.process(inc, &mut self.outputs);
            }
            for o in std::mem::take(&mut self.outputs) {
                if let RecoveryOutput::Action(a) = &o {
                    // Acted on: the incident's root cause is now fixed.
                    self.diagnose.acted_on(&a.incident_id);
                }
                self.sink.write(&match o {
                    RecoveryOutput::Action(a) => Output::Action(*a),
                    RecoveryOutput::Escalation(e) => Output::Escalation(e),
                })?;
            }
            let resolved = self.recover.take_resolutions();
            if resolved.is_empty() {
                return Ok(());
            }
            for r in resolved {
                self.diagnose
                    .resolve(&r.incident_id, r.at, &r.evidence, &mut self.incidents);
            }
        }
    }
}

/// Settings of the decide stages that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct DecideOptions {
    /// HMAC key for action signatures (`REFLEX_ACTION_KEY`).
    pub signing_key: Option<Vec<u8>>,
    /// `REFLEX_HEALING=off`.
    pub healing_env_off: bool,
    /// Executor results known up front (`reflex run --action-results`),
    /// applied in event time like live ones.
    pub action_results: Vec<ActionResult>,
}

/// Reads a JSON Lines file of [`ActionResult`]s (blank lines skipped).
pub fn load_action_results(path: &std::path::Path) -> Result<Vec<ActionResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: ActionResult = serde_json::from_str(line)
            .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
        v.push(r);
    }
    Ok(v)
}

enum Decoded {
    Batch {
        items: Vec<Result<ErrorEvent, DeadLetter>>,
        watermark: Option<EventTime>,
    },
    End,
}

enum Detected {
    Batch {
        detections: Vec<Detection>,
        dead: Vec<DeadLetter>,
        watermark: Option<EventTime>,
    },
    End,
}

/// What a caller can observe a run through (all optional).
#[derive(Debug, Clone, Default)]
pub struct RunHooks {
    /// Counters the run updates (read concurrently for metrics).
    pub stats: Arc<Stats>,
    /// Set to [`ReadyCondition::Pipeline`] once the stages run and the source
    /// has delivered its first batch (or reached end of input).
    pub readiness: Option<Readiness>,
}

/// Runs the whole pipeline over `reader`, writing to `sink`.
pub fn run(
    cfg: &Config,
    opts: &DecideOptions,
    reader: LineReader,
    source_name: &str,
    sink: &mut dyn Sink,
) -> Result<RunSummary, RunError> {
    run_with(cfg, opts, reader, source_name, sink, RunHooks::default())
}

/// [`run`], observed through `hooks`.
pub fn run_with(
    cfg: &Config,
    opts: &DecideOptions,
    mut reader: LineReader,
    source_name: &str,
    sink: &mut dyn Sink,
    hooks: RunHooks,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let stats = hooks.stats;
    let readiness = hooks.readiness;
    let p = &cfg.pipeline;
    let (tx_a, rx_a): (SyncSender<Decoded>, Receiver<Decoded>) = sync_channel(p.channel_capacity);
    let (tx_b, rx_b): (SyncSender<Detected>, Receiver<Detected>) = sync_channel(p.channel_capacity);
    let codec = InputCodec {
        max_bytes: p.max_event_bytes,
        event_schema_ids: Vec::new(),
    };
    let mut detect = DetectStage::new(
        &cfg.detectors,
        cfg.signatures.clone(),
        &cfg.sequences,
        stats.clone(),
    );
    let mut decider = Decider::new(cfg, opts, sink, stats.clone());
    let (lines, blank) = std::thread::scope(|s| -> Result<(u64, u64), RunError> {
        let batch_size = p.batch_size;
        let (lateness, skew) = (p.allowed_lateness.0, p.max_time_skew.0);
        let stats_a = stats.clone();
        let read = s.spawn(move || -> Result<(u64, u64), std::io::Error> {
            let _span = tracing::info_span!("stage", stage = "decode").entered();
            let mut ready = readiness;
            let mut mark_ready = move || {
                if let Some(r) = ready.take() {
                    r.set(ReadyCondition::Pipeline);
                    tracing::info!("pipeline ready: first input batch received");
                }
            };
            let mut batcher = Batcher::new(
                codec,
                WatermarkTracker::new(lateness, skew),
                WATERMARK_CADENCE_MS,
            );
            let mut batch = LineBatch::default();
            let (mut lines, mut blank) = (0u64, 0u64);
            while reader.next_batch(batch_size, &mut batch)? {
                mark_ready();
                // Decode time per handed-on batch, not counting time blocked
                // on a full channel (that is backpressure, seen as lag).
                let mut t0 = Instant::now();
                Stats::add(&stats_a.records_read, batch.spans.len() as u64);
                blank += batch.blank;
                lines += batch.spans.len() as u64;
                let go = batcher.feed(
                    batch.lines().map(|(n, l)| (n as i64, l)),
                    source_name,
                    &mut |b| {
                        let msg = Decoded::Batch {
                            items: b.items,
                            watermark: b.watermark,
                        };
                        stats_a.record_batch(StageName::Decode, t0.elapsed());
                        let sent = tx_a.send(msg).is_ok();
                        t0 = Instant::now();
                        sent
                    },
                );
                if !go {
                    break; // downstream stopped; its error is reported
                }
            }
            mark_ready();
            let _ = tx_a.send(Decoded::End);
            tracing::debug!(lines = lines + blank, blank, "end of input");
            Ok((lines + blank, blank))
        });
        let stats_b = stats.clone();
        let det = s.spawn(move || {
            let _span = tracing::info_span!("stage", stage = "detect").entered();
            let mut state_counted: Option<Instant> = None;
            for msg in rx_a {
                match msg {
                    Decoded::Batch { items, watermark } => {
                        let t0 = Instant::now();
                        let n_items = items.len() as u64;
                        let (detections, dead) = detect.run_batch(Batch { items, watermark });
                        Stats::add(&stats_b.records_done, n_items);
                        // Counting state walks the detectors' maps: at most once a second.
                        if state_counted
                            .is_none_or(|t: Instant| t0.duration_since(t).as_secs() >= 1)
                        {
                            state_counted = Some(t0);
                            stats_b
                                .detector_state_keys
                                .store(detect.state_keys() as u64, Ordering::Relaxed);
                        }
                        stats_b.record_batch(StageName::Detect, t0.elapsed());
                        if !detections.is_empty() {
                            tracing::debug!(
                                events = n_items,
                                detections = detections.len(),
                                "detect batch"
                            );
                        }
                        let m = Detected::Batch {
                            detections,
                            dead,
                            watermark,
                        };
                        if tx_b.send(m).is_err() {
                            return;
                        }
                    }
                    Decoded::End => {
                        let mut detections = Vec::new();
                        detect.flush(&mut detections);
                        stats_b
                            .detector_state_keys
                            .store(detect.state_keys() as u64, Ordering::Relaxed);
                        let _ = tx_b.send(Detected::Batch {
                            detections,
                            dead: Vec::new(),
                            watermark: None,
                        });
                        let _ = tx_b.send(Detected::End);
                        return;
                    }
                }
            }
        });
        let mut ended = false;
        let decide_span = tracing::info_span!("stage", stage = "decide").entered();
        for msg in rx_b {
            match msg {
                Detected::Batch {
                    detections,
                    dead,
                    watermark,
                } => {
                    let t0 = Instant::now();
                    decider.run_batch(dead, detections, watermark)?;
                    stats.record_batch(StageName::Decide, t0.elapsed());
                }
                Detected::End => {
                    ended = true;
                    break;
                }
            }
        }
        let read_result = read.join().map_err(|_| RunError::Thread)?;
        det.join().map_err(|_| RunError::Thread)?;
        let counts = read_result.map_err(|source| RunError::Input {
            path: source_name.to_string(),
            source,
        })?;
        if !ended {
            return Err(RunError::Thread);
        }
        decider.finish()?;
        drop(decide_span);
        Ok(counts)
    })?;
    Ok(RunSummary {
        lines,
        blank_lines: blank,
        events: Stats::get(&stats.events_in),
        change_events: Stats::get(&stats.change_events),
        dead_letters: Stats::get(&stats.dead_letters),
        late_events: Stats::get(&stats.late_events),
        detections: Stats::get(&stats.detections),
        incidents: Stats::get(&stats.incidents_opened),
        incident_records: Stats::get(&stats.incident_records),
        actions: Stats::get(&stats.actions),
        escalations: Stats::get(&stats.escalations),
        elapsed: started.elapsed(),
    })
}
