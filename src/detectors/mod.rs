//! Detection: turns events into [`Detection`]s.
//!
//! The detect stage runs every detector over every event. Signature rules
//! are matched once per event and shared (as [`Observed::signatures`]) with
//! every detector. `change` events (deploys, config changes) become `change`
//! detections at once: they are facts for the diagnosis, not trouble.
//!
//! Keying: all per-key state is keyed by service first, so the stage can be
//! partitioned by service across instances (Kafka mode); the node detector
//! is keyed by node, and with several instances each learns its share.

pub mod anomaly;
pub mod facts;
pub mod node;
pub mod normal;
pub mod pattern;
pub mod signature;
pub mod threshold;

use crate::model::DetectorKind;
use crate::model::{Detection, ErrorEvent, EventKind, EventTime, Window};
use crate::stage::stats::Stats;
use crate::stage::Stage;
use crate::util::stable_id;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The template an event's message was mined into.
#[derive(Debug, Clone, Copy)]
pub struct TemplateRef<'a> {
    pub id: pattern::miner::TemplateId,
    /// This message created the template (never seen before).
    pub created: bool,
    /// It created the template after the miner's warm-up (`pattern.warmup`
    /// of event time since the first mined message): a message shape the
    /// service did not show before, not one merely first seen while the
    /// miner was still learning the fleet's usual shapes.
    pub novel: bool,
    pub text: &'a str,
}

/// An event as detectors see it, with what the stage already worked out.
pub struct Observed<'a> {
    pub event: &'a ErrorEvent,
    /// Its template, when the message was mined (severity >= `mine_severity`).
    pub template: Option<TemplateRef<'a>>,
    /// Indices of the signature rules the event matched.
    pub signatures: &'a [usize],
    /// The event is older than the watermark.
    pub late: bool,
    pub watermark: EventTime,
}

impl Observed<'_> {
    /// Start of the tumbling window of length `w` (epoch-aligned) the
    /// event counts in: its own, or, when the watermark has already passed
    /// that window's end, the window open now (a late event is folded in,
    /// never dropped). Every windowed detector places events this way.
    pub fn window_start(&self, w: i64) -> i64 {
        let start = self.event.time.millis().div_euclid(w) * w;
        if start + w <= self.watermark.millis() {
            self.watermark.millis().div_euclid(w) * w
        } else {
            start
        }
    }
}

/// A detector. `observe` and `hold_ms` are required; the hooks default to
/// no-ops.
pub trait Detector: Send {
    /// Sees one event; may emit detections at once.
    fn observe(&mut self, o: &Observed<'_>, out: &mut Vec<Detection>);
    /// The longest span of event time (ms) an event can stay inside this
    /// detector before everything it contributes to has been emitted: its
    /// window, bucket or sequence span; 0 when it emits at once. The Kafka
    /// runtime holds an input's offset until the watermark has passed the
    /// event's time plus the largest hold of any detector, so a restart
    /// replays every event whose detections were not yet out. Required (no
    /// default) so that a new windowed detector cannot forget it.
    fn hold_ms(&self) -> i64;
    /// Event time reached `wm`: close windows that end at or before it.
    fn on_watermark(&mut self, _wm: EventTime, _out: &mut Vec<Detection>) {}
    /// End of input: close everything.
    fn flush(&mut self, _out: &mut Vec<Detection>) {}
    /// Keys currently held (for state-size metrics).
    fn state_keys(&self) -> usize {
        0
    }
}

/// What a detector is built from besides its own config section.
#[derive(Clone, Copy)]
pub struct BuildContext<'a> {
    pub signatures: &'a signature::Signatures,
    pub sequences: &'a [pattern::stream::SequenceRule],
}

/// A detector built from its own `[detectors.NAME]` section.
pub trait FromConfig: Detector + Sized + 'static {
    /// Its section (serde, unknown fields rejected, defaults in one place).
    type Config;
    fn from_config(cfg: &Self::Config, ctx: BuildContext<'_>) -> Self;
}

/// The one registration list: each line names a detector's config key and
/// type, and yields both the `[detectors]` section ([`DetectorsConfig`], a
/// field per line) and [`registered`] (the detectors in line order, the
/// order in which they see each event). A new detector is its own folder
/// (its [`Detector`] and [`FromConfig`] impls and config type) plus one
/// line here.
macro_rules! register_detectors {
    ($( $(#[$doc:meta])* $key:ident: $det:ty ),+ $(,)?) => {
        /// `[detectors]` section: one sub-section per registered detector.
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct DetectorsConfig {
            $( $(#[$doc])* pub $key: <$det as FromConfig>::Config, )+
        }

        /// Every registered detector, built from config.
        pub fn registered(cfg: &DetectorsConfig, ctx: BuildContext<'_>) -> Vec<Box<dyn Detector>> {
            vec![$( Box::new(<$det as FromConfig>::from_config(&cfg.$key, ctx)) ),+]
        }
    };
}

register_detectors! {
    /// The windowed threshold detector.
    threshold: threshold::ThresholdDetector,
    /// The streaming anomaly detector over per-service series.
    anomaly: anomaly::AnomalyStream,
    /// Template mining and pattern detections.
    pattern: pattern::stream::PatternStream,
    /// Per-node rises of one failure class (network) over the node's normal.
    node: node::NodeDetector,
}

/// The detect stage: signatures + every detector.
pub struct DetectStage {
    signatures: signature::Signatures,
    miner: Option<pattern::miner::TemplateMiner>,
    mine_severity: crate::model::Severity,
    /// Event time of the first mined message, and the warm-up after which a
    /// new template is novel (see [`TemplateRef::novel`]).
    mined_since: Option<EventTime>,
    novel_after_ms: i64,
    detectors: Vec<Box<dyn Detector>>,
    watermark: EventTime,
    matches: Vec<usize>,
    stats: Arc<Stats>,
}

impl DetectStage {
    /// The stage over `detectors` (normally [`registered`]; the pipeline's
    /// topology builds it), with compiled signature rules and the template
    /// miner of `cfg.pattern`.
    pub fn new(
        cfg: &DetectorsConfig,
        signatures: signature::Signatures,
        detectors: Vec<Box<dyn Detector>>,
        stats: Arc<Stats>,
    ) -> Self {
        DetectStage {
            miner: cfg
                .pattern
                .enabled
                .then(|| pattern::miner::TemplateMiner::new(&cfg.pattern.miner)),
            mine_severity: cfg.pattern.mine_severity,
            mined_since: None,
            novel_after_ms: cfg.pattern.warmup.0,
            signatures,
            detectors,
            watermark: EventTime(i64::MIN),
            matches: Vec::new(),
            stats,
        }
    }

    /// The longest hold of any detector (ms, see [`Detector::hold_ms`]);
    /// `change` detections and signature hints are emitted at once.
    pub fn hold_ms(&self) -> i64 {
        self.detectors
            .iter()
            .map(|d| d.hold_ms())
            .max()
            .unwrap_or(0)
    }

    /// Keys held by all detectors together (for the state-size metric).
    pub fn state_keys(&self) -> usize {
        self.detectors.iter().map(|d| d.state_keys()).sum()
    }

    /// Runs one batch (as cut by [`crate::stage::batcher::Batcher`]):
    /// every event, then the batch's watermark. Dead letters pass through
    /// untouched, in order. Every runtime drives the stage through this, so
    /// they all make the same calls in the same order.
    pub fn run_batch(
        &mut self,
        batch: crate::stage::batcher::Batch,
    ) -> (Vec<Detection>, Vec<crate::model::DeadLetter>) {
        let mut detections = Vec::new();
        let mut dead = Vec::new();
        for it in batch.items {
            match it {
                Ok(ev) => {
                    Stats::add(&self.stats.events_in, 1);
                    self.process(ev, &mut detections);
                }
                Err(d) => dead.push(d),
            }
        }
        if let Some(wm) = batch.watermark {
            self.on_watermark(wm, &mut detections);
        }
        (detections, dead)
    }

    fn change_detection(ev: &ErrorEvent) -> Detection {
        let change_type = ev.change_type();
        let evidence = match &ev.version {
            Some(v) => format!(
                "{}: {change_type} to version {v} ({})",
                ev.service, ev.message
            ),
            None => format!("{}: {change_type} ({})", ev.service, ev.message),
        };
        Detection {
            detection_id: stable_id("chg-", &[ev.id.as_bytes(), ev.service.as_bytes()]),
            detector: DetectorKind::Change,
            rule: change_type.to_string(),
            key: format!("service={}", ev.service),
            service: ev.service.clone(),
            namespace: ev.namespace.clone(),
            score: 0.0,
            window: Window {
                start: ev.time,
                end: ev.time,
            },
            evidence,
            count: 1,
            first_seen: ev.time,
            hints: Vec::new(),
            upstreams: Vec::new(),
            error_types: Vec::new(),
            http_statuses: Vec::new(),
            nodes: ev
                .node
                .iter()
                .map(|n| crate::model::Counted {
                    value: n.clone(),
                    count: 1,
                })
                .collect(),
            instances: Vec::new(),
            trace_ids: Vec::new(),
            samples: Vec::new(),
            version: ev.version.clone(),
        }
    }
}

impl Stage for DetectStage {
    type In = ErrorEvent;
    type Out = Detection;

    fn process(&mut self, ev: ErrorEvent, out: &mut Vec<Detection>) {
        let late = ev.time < self.watermark;
        if late {
            Stats::add(&self.stats.late_events, 1);
        }
        if ev.kind == EventKind::Change {
            Stats::add(&self.stats.change_events, 1);
            out.push(Self::change_detection(&ev));
            return;
        }
        self.signatures.matches(&ev, &mut self.matches);
        let template = match &mut self.miner {
            Some(m) if ev.severity >= self.mine_severity => {
                let obs = m.observe_detailed(&ev.message);
                let since = *self.mined_since.get_or_insert(ev.time);
                let warm = ev.time.millis() - since.millis() >= self.novel_after_ms;
                Some((obs.id, obs.created, obs.created && warm))
            }
            _ => None,
        };
        let o = Observed {
            event: &ev,
            template: template.and_then(|(id, created, novel)| {
                let text = self.miner.as_ref()?.template(id)?;
                Some(TemplateRef {
                    id,
                    created,
                    novel,
                    text,
                })
            }),
            signatures: &self.matches,
            late,
            watermark: self.watermark,
        };
        for d in &mut self.detectors {
            d.observe(&o, out);
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Detection>) {
        self.watermark = self.watermark.max(wm);
        for d in &mut self.detectors {
            d.on_watermark(self.watermark, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Detection>) {
        for d in &mut self.detectors {
            d.flush(out);
        }
    }
}
