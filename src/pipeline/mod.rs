//! The stage abstraction, event-time watermarks, and the runtimes that wire
//! stages together.
//!
//! A stage is synchronous and does no I/O: it turns inputs into outputs and
//! reacts to event time. Runtimes own the I/O and the threads: the embedded
//! runtime ([`embedded`]) reads JSON Lines and writes one file per topic; the
//! Kafka runtime drives the same stages from a consumer group. Both (and the
//! demo) get their stages from [`topology::Topology::build`], the one place
//! they are built and wired. Because stages only see event time, the same
//! input gives the same output in every runtime.

pub mod batcher;
pub mod embedded;
pub mod stats;
pub mod topology;
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
pub mod feedback;
pub mod kafka;
