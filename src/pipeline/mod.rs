//! The runtimes that wire stages together, and what they share with the
//! outside: readiness ([`readiness`]), the approval queue ([`approvals`])
//! and the [`Observer`] of outputs. The stage abstraction, watermarks and
//! counters are the layer below ([`crate::stage`]).
//!
//! A stage is synchronous and does no I/O: it turns inputs into outputs and
//! reacts to event time. Runtimes own the I/O and the threads: the embedded
//! runtime ([`embedded`]) reads JSON Lines and writes one file per topic; the
//! Kafka runtime drives the same stages from a consumer group. Both (and the
//! demo) get their stages from [`topology::Topology::build`], the one place
//! they are built and wired. Because stages only see event time, the same
//! input gives the same output in every runtime.

pub mod approvals;
pub mod embedded;
pub mod readiness;
pub mod topology;

// The stage layer below, re-exported so `pipeline::{Stage, stats, ..}` paths
// keep working; stages themselves import from `crate::stage`.
pub use crate::stage::{batcher, stats, watermark, Stage};

use crate::sinks::Output;
use crate::stage::stats::Stats;
use approvals::ApprovalQueue;
use readiness::Readiness;
use std::sync::Arc;

/// What a runtime reports to, and takes commands from, the outside (the ops
/// HTTP API): every output record written, readiness, and human approvals.
/// Implemented by [`crate::telemetry::Telemetry`]; the runtimes only know
/// this trait, so telemetry depends on the pipeline and not the reverse.
pub trait Observer: Send + Sync {
    /// The counters the run bumps (and the observer exports).
    fn stats(&self) -> Arc<Stats>;
    /// One output record was written.
    fn observe(&self, out: &Output);
    /// The process's readiness flag.
    fn readiness(&self) -> &Readiness;
    /// Approvals waiting for the thread that owns the recovery stage.
    fn approvals(&self) -> &ApprovalQueue;
}

pub mod feedback;
pub mod kafka;
