//! The embedded runtime: JSON Lines in, one JSON Lines file per topic out,
//! no broker.
//!
//! Three threads joined by bounded channels (backpressure: a slow stage
//! stalls the ones before it, memory stays bounded by
//! `channel_capacity × batch_size`):
//! read + decode → detect → decide (diagnosis, recovery, sink).
//! Each stage is single-threaded and channels are FIFO, and all time is event
//! time, so the same input always produces byte-identical outputs. The
//! stages come from [`Topology::build`]; this module only moves records
//! between them.

use super::readiness::{Readiness, ReadyCondition};
use super::topology::{Topology, TopologyError};
use crate::config::Config;
use crate::model::{ActionResult, DeadLetter, Detection, ErrorEvent, EventTime};
use crate::sinks::{Sink, SinkError};
use crate::sources::file::{LineBatch, LineReader};
use crate::stage::batcher::Batch;
use crate::stage::stats::{StageName, Stats};
use crate::stage::Stage;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Where they were before the topology had its own module: tests, tools and
// the binary name them through here.
pub use super::topology::{DecideOptions, Decider, WATERMARK_CADENCE_MS};

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
    #[error(transparent)]
    Topology(#[from] TopologyError),
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
    let Topology {
        decode,
        mut detect,
        decide,
        ..
    } = Topology::build(cfg, opts, stats.clone())?;
    let mut decider = decide.connect(sink);
    let (lines, blank) = std::thread::scope(|s| -> Result<(u64, u64), RunError> {
        let batch_size = p.batch_size;
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
            let mut batcher = decode.into_batcher();
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
