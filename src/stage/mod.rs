//! The stage abstraction and the vocabulary every stage shares: the
//! [`Stage`] trait, event-time watermarks ([`watermark`]), input batches
//! ([`batcher`]) and the run's counters with their fixed label sets
//! ([`stats`]: guards, verification outcomes, stage names, Kafka trouble;
//! [`labels`]: the typed label sets and the counters indexed by them).
//!
//! This is the layer below the stages (detectors, diagnosis, recovery) and
//! the runtimes that wire them ([`crate::pipeline`]); it depends only on the
//! contract ([`crate::model`]) and the input codec, so every layer above can
//! count and be counted without a module cycle (checked by
//! `scripts/modcycles.py`).

pub mod batcher;
pub mod labels;
pub mod stats;
pub mod watermark;

use crate::model::EventTime;

/// One step of the pipeline. `process` is the only required method; the
/// lifecycle hooks default to doing nothing. A stateful stage documents its
/// keying in its module docs.
pub trait Stage: Send {
    /// What the stage consumes.
    type In;
    /// What the stage produces.
    type Out;

    /// Handles one input, appending any outputs.
    fn process(&mut self, input: Self::In, out: &mut Vec<Self::Out>);

    /// Event time has advanced to `watermark`: no input older than it is
    /// expected any more, so windows and timers up to it may close.
    fn on_watermark(&mut self, _watermark: EventTime, _out: &mut Vec<Self::Out>) {}

    /// End of input: emit everything still held (open windows, incidents).
    fn flush(&mut self, _out: &mut Vec<Self::Out>) {}
}
