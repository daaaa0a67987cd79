//! The pipeline's topology: the one place its stages are built from a
//! [`Config`] and wired together. The embedded runtime, the Kafka runtime
//! and the demo all start from [`Topology::build`]; they differ only in how
//! they carry records between the pieces (threads and channels, a consumer
//! group, a simulation loop).
//!
//! ```text
//! input ─► decode ─────────► detect ────────────────► decide ──────────► sink
//!          (Decode: codec,   (DetectStage: signature  (Decider: diagnosis
//!           watermarks)       rules, template miner,   ⇄ recovery, see
//!                             every registered         [`decide`])
//!                             Detector)
//! ```
//!
//! Modelled on Vector's `topology::builder`: building checks the wiring as
//! a whole and hands back owned pieces, which a runtime moves onto its
//! threads or rebuilds (the Kafka runtime builds a fresh topology on every
//! rebalance, so start-up and rebalance share one setup).
//!
//! Guarantees: building is deterministic: two topologies built from the
//! same config and options make the same outputs from the same inputs, which
//! is what lets a replay reproduce a live run and a rebuilt Kafka topology
//! resume from committed offsets. The offset hold ([`Hold`]) is derived
//! from the detectors themselves ([`crate::detectors::Detector::hold_ms`]),
//! so a new detector cannot be left out of it.

pub mod decide;

pub use decide::{count_output, DecideOptions, DecideStages, Decider};

use crate::codec::InputCodec;
use crate::config::Config;
use crate::detectors::{self, DetectStage};
use crate::stage::batcher::Batcher;
use crate::stage::stats::Stats;
use crate::stage::watermark::WatermarkTracker;
use std::sync::Arc;

/// Event time after which a line source hands over a batch even mid-chunk.
pub const WATERMARK_CADENCE_MS: i64 = 1_000;

/// Why a topology could not be built: the wiring's own invariants, checked
/// here so that a config built in code gets the same checks as a loaded one.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Offsets would be released before an event was seen, or never.
    #[error(
        "offset hold out of range: detectors {detect_ms} ms + kafka.decide_hold {decide_ms} ms \
         (each must be at least 0 and their sum fit in event time)"
    )]
    Hold { detect_ms: i64, decide_ms: i64 },
}

/// How long (event time, ms) an input stays inside the stages before
/// everything it contributes to has been emitted: the Kafka runtime commits
/// an input's offset only once the watermark has passed its time plus this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The longest hold of any detector (the `detect` stage alone).
    pub detect_ms: i64,
    /// `kafka.decide_hold`: a detection can still change what the decide
    /// stage emits until the watermark passes its window end plus this.
    pub decide_ms: i64,
}

impl Hold {
    /// Detect and decide in one process (`--stage all`); checked not to
    /// overflow when the topology is built.
    pub fn all_ms(&self) -> i64 {
        self.detect_ms.saturating_add(self.decide_ms)
    }
}

/// The decode piece: the input codec and the event-time watermark tracker.
pub struct Decode {
    /// Accepts any schema id for framed Avro (a source that knows its ids,
    /// the Kafka one, narrows `event_schema_ids`).
    pub codec: InputCodec,
    /// `pipeline.allowed_lateness` and `pipeline.max_time_skew`.
    pub watermarks: WatermarkTracker,
}

impl Decode {
    /// The batcher of a line source (files, stdin, the demo): batches of
    /// decoded lines, each with the watermark after it.
    pub fn into_batcher(self) -> Batcher {
        Batcher::new(self.codec, self.watermarks, WATERMARK_CADENCE_MS)
    }
}

/// The pipeline built from one config: owned, fresh (no state), ready to
/// be moved onto a runtime's threads.
pub struct Topology {
    pub decode: Decode,
    pub detect: DetectStage,
    /// Diagnosis and recovery, joined to the runtime's sink by
    /// [`DecideStages::connect`].
    pub decide: DecideStages,
    pub hold: Hold,
}

impl Topology {
    /// Builds every stage of `cfg`. `opts` are the decide stages' settings
    /// from outside the config file; `stats` are the counters every stage
    /// updates (shared with metrics).
    pub fn build(
        cfg: &Config,
        opts: &DecideOptions,
        stats: Arc<Stats>,
    ) -> Result<Topology, TopologyError> {
        let p = &cfg.pipeline;
        let decode = Decode {
            codec: InputCodec {
                max_bytes: p.max_event_bytes,
                max_identifier_bytes: p.max_identifier_bytes,
                max_message_bytes: p.max_message_bytes,
                dead_letter_max_raw: p.dead_letter_max_raw_bytes,
                event_schema_ids: Vec::new(),
            },
            watermarks: WatermarkTracker::new(p.allowed_lateness.0, p.max_time_skew.0),
        };
        let detect = Self::detect_stage(cfg, stats.clone());
        let decide = DecideStages::build(cfg, opts, stats);
        let hold = Hold {
            detect_ms: detect.hold_ms(),
            decide_ms: cfg.kafka.decide_hold.0,
        };
        if hold.detect_ms < 0
            || hold.decide_ms < 0
            || hold.detect_ms.checked_add(hold.decide_ms).is_none()
        {
            return Err(TopologyError::Hold {
                detect_ms: hold.detect_ms,
                decide_ms: hold.decide_ms,
            });
        }
        Ok(Topology {
            decode,
            detect,
            decide,
            hold,
        })
    }

    /// The detect piece alone, as [`Self::build`] makes it (for benches and
    /// tools that run detection without the rest).
    pub fn detect_stage(cfg: &Config, stats: Arc<Stats>) -> DetectStage {
        DetectStage::new(
            &cfg.detectors,
            cfg.signatures.clone(),
            detectors::registered(
                &cfg.detectors,
                detectors::BuildContext {
                    signatures: &cfg.signatures,
                    sequences: &cfg.sequences,
                },
            ),
            stats,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DurationMs;

    fn cfg() -> Config {
        Config::embedded().expect("embedded config")
    }

    /// The hold the Kafka runtime used before it was asked of the detectors
    /// (the rule spelled out by hand), for the equality test below.
    fn hand_written_hold(cfg: &Config) -> i64 {
        let d = &cfg.detectors;
        let threshold = d.threshold.rules.iter().map(|r| r.window.0).max();
        let anomaly = if d.anomaly.enabled {
            d.anomaly.bucket.0
        } else {
            0
        };
        let pattern = if d.pattern.enabled {
            let within = cfg.sequences.iter().map(|r| r.within.0).max().unwrap_or(0);
            d.pattern.window.0.max(within)
        } else {
            0
        };
        let node = if d.node.enabled {
            d.node.window.0 * i64::from(d.node.min_windows)
        } else {
            0
        };
        threshold.unwrap_or(0).max(anomaly).max(pattern).max(node)
    }

    #[test]
    fn the_hold_comes_from_every_detector() {
        let base = cfg();
        let mut variants = vec![base.clone()];
        let mut c = base.clone();
        c.detectors.anomaly.bucket = DurationMs(3_600_000);
        variants.push(c);
        let mut c = base.clone();
        c.detectors.pattern.window = DurationMs(7_200_000);
        variants.push(c);
        let mut c = base.clone();
        if let Some(s) = c.sequences.first_mut() {
            s.within = DurationMs(9_000_000);
        }
        variants.push(c);
        let mut c = base.clone();
        if let Some(r) = c.detectors.threshold.rules.first_mut() {
            r.window = DurationMs(10_800_000);
        }
        variants.push(c);
        let mut c = base.clone();
        c.detectors.node.window = DurationMs(4_000_000);
        variants.push(c);
        let mut c = base.clone();
        c.detectors.anomaly.enabled = false;
        c.detectors.pattern.enabled = false;
        c.detectors.node.enabled = false;
        variants.push(c);
        for (i, c) in variants.iter().enumerate() {
            let t = Topology::build(c, &DecideOptions::default(), Arc::default()).expect("build");
            assert_eq!(t.hold.detect_ms, hand_written_hold(c), "variant {i}");
            assert_eq!(t.hold.decide_ms, c.kafka.decide_hold.0);
            assert_eq!(t.hold.all_ms(), t.hold.detect_ms + t.hold.decide_ms);
        }
        // Each variant moved the hold of one detector: all were asked.
        let holds: std::collections::BTreeSet<i64> =
            variants[..6].iter().map(hand_written_hold).collect();
        assert_eq!(holds.len(), 6, "{holds:?}");
    }

    #[test]
    fn a_hold_that_does_not_fit_is_an_error() {
        let mut c = cfg();
        c.kafka.decide_hold = DurationMs(i64::MAX);
        let e = Topology::build(&c, &DecideOptions::default(), Arc::default());
        assert!(matches!(e, Err(TopologyError::Hold { .. })));
        let mut c = cfg();
        c.kafka.decide_hold = DurationMs(-1);
        let e = Topology::build(&c, &DecideOptions::default(), Arc::default());
        assert!(matches!(e, Err(TopologyError::Hold { .. })));
    }
}
