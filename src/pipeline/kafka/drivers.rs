//! One driver per stage mode: what a consumed message does in `all`,
//! `detect` and `decide`, and the clocks that say when event time advances.
//! Everything here is rebuilt from a fresh
//! [`Topology`](crate::pipeline::topology::Topology) at start and on every
//! rebalance ([`Epoch::new`]), so both begin from the same state.
//!
//! Guarantees: the watermark is the minimum over the assigned partitions
//! (each read at least once unless idle), so no partition's event is passed
//! by event time before it is read, except that an idle partition (at end
//! of log for `idle_partition_timeout`) does not hold it back and, once all
//! are idle, it moves to the latest event time read (see
//! [`WatermarkTracker::advance_to_read`]); what arrives later than that
//! takes the late-event path. Event time is also re-evaluated on the poll
//! loop's timer ([`Epoch::tick`]), so idleness takes effect without a new
//! message. An input's offset is released only once
//! the watermark has passed everything the stages may still emit for it
//! (its time plus the topology's [`Hold`]); the decide driver applies,
//! per marker value in order, the detections announced before it (by the
//! detect stage's sequence number) and then the watermark, the sequence the
//! `all` mode applies in process.

use super::io::{decode_detection, header_i64, is_marker, InputDecoder, SharedSink};
use super::{KafkaRunError, KafkaSummary, StageSel};
use crate::detectors::DetectStage;
use crate::model::{Detection, EventTime};
use crate::pipeline::topology::{Decider, Hold};
use crate::sinks::kafka::{HEADER_SEQ, HEADER_WM};
use crate::sources::kafka::SourceShared;
use crate::stage::stats::Stats;
use crate::stage::watermark::WatermarkTracker;
use crate::stage::Stage;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tracing::debug;

/// Per-partition input bookkeeping for the watermark.
#[derive(Default)]
pub(super) struct PartClock {
    pub(super) assigned: BTreeSet<i32>,
    seen: BTreeSet<i32>,
    pub(super) eof_since: HashMap<i32, Instant>,
}

impl PartClock {
    /// At end of log for at least `idle` (wall clock).
    fn is_idle(&self, p: i32, idle: Duration) -> bool {
        self.eof_since.get(&p).is_some_and(|t| t.elapsed() >= idle)
    }

    /// Every assigned partition is idle: nothing more is arriving for now.
    fn all_idle(&self, idle: Duration) -> bool {
        !self.assigned.is_empty() && self.assigned.iter().all(|p| self.is_idle(*p, idle))
    }

    /// Whether the partitions' progress bounds the watermark: each one read
    /// at least once, or idle (an idle one is forgotten by `wm`, so it does
    /// not hold the watermark back while the others deliver).
    fn ready(&self, idle: Duration, wm: &mut WatermarkTracker) -> bool {
        let mut ready = true;
        for p in &self.assigned {
            if self.is_idle(*p, idle) {
                wm.remove_partition(*p);
            } else if !self.seen.contains(p) {
                ready = false;
            }
        }
        ready && !self.assigned.is_empty()
    }
}

/// Event time as the runtime tracks it, common to every mode.
pub(super) struct Time {
    pub(super) parts: PartClock,
    watermarks: WatermarkTracker,
    /// The watermark applied (`all`), published (`detect`) or replayed
    /// (`decide`) last: everything up to it is emitted.
    pub(super) announced: EventTime,
}

/// What the runtime lends a driver for one message.
pub(super) struct Ctx<'a, 's> {
    pub(super) decider: &'a mut Decider<'s>,
    pub(super) sink: &'a SharedSink,
    pub(super) shared: &'a SourceShared,
    pub(super) decoder: &'a InputDecoder,
    pub(super) summary: &'a mut KafkaSummary,
    pub(super) stats: &'a Stats,
    pub(super) topic: &'a str,
    pub(super) shutdown: &'a AtomicBool,
    /// `kafka.watermark_interval` (ms, at least 1).
    pub(super) interval: i64,
    /// `kafka.idle_partition_timeout`.
    pub(super) idle: Duration,
}

/// Where the detect driver sends detections and watermarks.
enum Publish {
    /// `all`: to the decider in this process.
    InProcess,
    /// `detect`: to `reflex.detections`, with a marker to each of these
    /// partitions whenever the watermark advances.
    Topic(Vec<i32>),
}

/// `all` and `detect`: input events through the detect stage.
struct DetectDriver {
    detect: DetectStage,
    dets: Vec<Detection>,
    /// An event's offset is held until the watermark passes its time plus this.
    hold_ms: i64,
    publish: Publish,
}

/// `decide`'s reordering buffer.
struct DecideClock {
    /// Latest marker per partition.
    markers: BTreeMap<i32, i64>,
    /// Marker values not yet applied.
    pending_marks: BTreeSet<i64>,
    /// Detections waiting for their watermark, by (announced wm, seq).
    buffer: BTreeMap<(i64, u64, i32, i64), Detection>,
    applied: i64,
}

/// `decide`: detections and watermark markers from `reflex.detections`.
struct DecideDriver {
    clock: DecideClock,
    /// A detection's offset is held until the watermark passes its window
    /// end plus this.
    hold_ms: i64,
}

enum Driver {
    // Boxed: the detect stage is large and moved once per epoch.
    Detect(Box<DetectDriver>),
    Decide(DecideDriver),
}

/// The state of one assignment of partitions: the mode's driver and event
/// time, built fresh from a topology at start and after every rebalance.
pub(super) struct Epoch {
    pub(super) time: Time,
    driver: Driver,
}

impl Epoch {
    /// The epoch of `stage` over a fresh topology's detect stage and
    /// watermarks; `assigned` are the partitions known so far (none at start:
    /// they are looked up with the first message).
    pub(super) fn new(
        stage: StageSel,
        detect: DetectStage,
        watermarks: WatermarkTracker,
        hold: Hold,
        det_partitions: &[i32],
        assigned: BTreeSet<i32>,
    ) -> Epoch {
        let detect_driver = |hold_ms, publish| {
            Driver::Detect(Box::new(DetectDriver {
                detect,
                dets: Vec::new(),
                hold_ms,
                publish,
            }))
        };
        let driver = match stage {
            StageSel::All => detect_driver(hold.all_ms(), Publish::InProcess),
            StageSel::Detect => {
                detect_driver(hold.detect_ms, Publish::Topic(det_partitions.to_vec()))
            }
            StageSel::Decide => Driver::Decide(DecideDriver {
                clock: DecideClock {
                    markers: BTreeMap::new(),
                    pending_marks: BTreeSet::new(),
                    buffer: BTreeMap::new(),
                    applied: i64::MIN,
                },
                hold_ms: hold.decide_ms,
            }),
        };
        Epoch {
            time: Time {
                parts: PartClock {
                    assigned,
                    ..PartClock::default()
                },
                watermarks,
                announced: EventTime(i64::MIN),
            },
            driver,
        }
    }

    /// Runs one consumed message through the mode's driver.
    pub(super) fn message(
        &mut self,
        ctx: &mut Ctx<'_, '_>,
        msg: &BorrowedMessage<'_>,
    ) -> Result<(), KafkaRunError> {
        match &mut self.driver {
            Driver::Detect(d) => d.event(&mut self.time, ctx, msg),
            Driver::Decide(d) => d.detection(&mut self.time, ctx, msg),
        }
    }

    /// The poll loop's timer (no message): partitions may have become idle
    /// since the last message, so event time is re-evaluated. This is what
    /// lets a backlog, a replay or a quiet night close its windows without
    /// waiting for new traffic.
    pub(super) fn tick(&mut self, ctx: &mut Ctx<'_, '_>) -> Result<(), KafkaRunError> {
        match &mut self.driver {
            Driver::Detect(d) => d.advance(&mut self.time, ctx),
            Driver::Decide(d) => d.advance(&mut self.time, ctx),
        }
    }
}

impl DetectDriver {
    fn event(
        &mut self,
        time: &mut Time,
        ctx: &mut Ctx<'_, '_>,
        msg: &BorrowedMessage<'_>,
    ) -> Result<(), KafkaRunError> {
        let (p, off) = (msg.partition(), msg.offset());
        let payload = msg.payload().unwrap_or(&[]);
        Stats::add(&ctx.stats.records_read, 1);
        match ctx.decoder.decode_retrying(payload, ctx.shutdown)? {
            Ok(ev) => {
                Stats::add(&ctx.stats.events_in, 1);
                let t = ev.time.max(time.announced);
                time.parts.seen.insert(p);
                // An implausible jump into the future (broken clock) would
                // hold the partition's offsets until that time: such an
                // event does not hold them.
                let release = if time.watermarks.observe(p, ev.time) {
                    t.millis().saturating_add(self.hold_ms)
                } else {
                    i64::MIN
                };
                ctx.shared.tracker().add(p, off, release);
                ctx.sink
                    .get()
                    .learn_cluster(&ev.service, ev.cluster.as_deref());
                self.detect.process(ev, &mut self.dets);
            }
            Err(e) => {
                ctx.shared.tracker().add(p, off, i64::MIN);
                let dl = ctx
                    .decoder
                    .codec
                    .dead_letter(e, payload, ctx.topic, Some(p), Some(off));
                ctx.decider.dead_letter(dl)?;
            }
        }
        self.advance(time, ctx)
    }

    /// Advances event time to what the partitions allow: the usual
    /// watermark (minimum over partitions minus lateness, rounded down to
    /// `watermark_interval`), or, once every partition is idle, the latest
    /// event time read (exact: no lateness, no rounding, so every window
    /// that ended by then closes). Emits what that closes and announces it.
    fn advance(&mut self, time: &mut Time, ctx: &mut Ctx<'_, '_>) -> Result<(), KafkaRunError> {
        let ready = time.parts.ready(ctx.idle, &mut time.watermarks);
        let all_idle = time.parts.all_idle(ctx.idle);
        let wm = if all_idle {
            time.watermarks.advance_to_read()
        } else if ready {
            time.watermarks
                .watermark()
                .map(|w| EventTime(w.millis().div_euclid(ctx.interval) * ctx.interval))
        } else {
            None
        };
        let advanced = wm.filter(|w| *w > time.announced);
        if let Some(w) = advanced {
            if all_idle {
                debug!(
                    watermark = w.millis(),
                    "Every partition idle: event time advanced to the latest event read."
                );
            }
            self.detect.on_watermark(w, &mut self.dets);
        }
        self.emit(ctx, time.announced)?;
        if let Some(w) = advanced {
            time.announced = w;
            match &self.publish {
                Publish::InProcess => ctx.decider.watermark(w)?,
                Publish::Topic(partitions) => {
                    for dp in partitions {
                        ctx.sink.get().send_marker(*dp, w)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends the detections of one step: in process (`all`) or to Kafka
    /// (`detect`), tagged with the watermark announced before them.
    fn emit(&mut self, ctx: &mut Ctx<'_, '_>, announced: EventTime) -> Result<(), KafkaRunError> {
        if self.dets.is_empty() {
            return Ok(());
        }
        match self.publish {
            Publish::Topic(_) => {
                ctx.summary.detections += self.dets.len() as u64;
                for d in self.dets.drain(..) {
                    ctx.sink.get().send_detection(&d, announced)?;
                }
                Ok(())
            }
            Publish::InProcess => Ok(ctx.decider.detections(std::mem::take(&mut self.dets))?),
        }
    }
}

impl DecideDriver {
    fn detection(
        &mut self,
        time: &mut Time,
        ctx: &mut Ctx<'_, '_>,
        msg: &BorrowedMessage<'_>,
    ) -> Result<(), KafkaRunError> {
        let (p, off) = (msg.partition(), msg.offset());
        let payload = msg.payload().unwrap_or(&[]);
        let dclock = &mut self.clock;
        if is_marker(msg) {
            let w = header_i64(msg, HEADER_WM).unwrap_or(i64::MIN);
            let m = dclock.markers.entry(p).or_insert(i64::MIN);
            *m = (*m).max(w);
            if w > dclock.applied {
                dclock.pending_marks.insert(w);
            }
            ctx.shared.tracker().add(p, off, w);
        } else {
            match decode_detection(payload) {
                Ok(d) => {
                    let tag = header_i64(msg, HEADER_WM);
                    let seq = header_i64(msg, HEADER_SEQ).unwrap_or(0) as u64;
                    let release = d
                        .window
                        .end
                        .millis()
                        .saturating_add(self.hold_ms)
                        .max(tag.unwrap_or(i64::MIN).saturating_add(1));
                    ctx.shared.tracker().add(p, off, release);
                    match tag {
                        Some(t) if t >= dclock.applied => {
                            dclock.buffer.insert((t, seq, p, off), d);
                        }
                        // Late or not from a reflex detect stage: at once.
                        _ => {
                            ctx.summary.detections += 1;
                            ctx.decider.detections(vec![d])?;
                        }
                    }
                }
                Err(e) => {
                    ctx.shared.tracker().add(p, off, i64::MIN);
                    let dl =
                        ctx.decoder
                            .codec
                            .dead_letter(e, payload, ctx.topic, Some(p), Some(off));
                    ctx.decider.dead_letter(dl)?;
                }
            }
        }
        time.parts.seen.insert(p);
        self.advance(time, ctx)
    }

    /// The decide watermark: the smallest latest marker over the assigned
    /// partitions. A partition with a marker always bounds it, idle or not:
    /// the detect stage sends every marker to every partition, and what a
    /// partition delivers after its marker `m` is tagged `>= m`, so passing
    /// `m` before reading it could apply its detections out of order (an
    /// idle partition may simply not have fetched the final burst yet). A
    /// partition that never had a marker holds it back only until idle.
    /// Then every marker up to it is replayed, in order.
    fn advance(&mut self, time: &mut Time, ctx: &mut Ctx<'_, '_>) -> Result<(), KafkaRunError> {
        let dclock = &mut self.clock;
        let parts = &time.parts;
        let w = if parts.ready(ctx.idle, &mut time.watermarks) {
            parts
                .assigned
                .iter()
                .filter(|q| dclock.markers.contains_key(q) || !parts.is_idle(**q, ctx.idle))
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
                ctx.summary.detections += batch.len() as u64;
                ctx.decider.detections(batch)?;
                ctx.decider.watermark(EventTime(m))?;
                dclock.applied = m;
                time.announced = EventTime(m);
            }
        }
        Ok(())
    }
}
