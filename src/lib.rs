//! reflex — a self-healing stream processor.
//!
//! Error events flow down the pipeline, and the module tree follows them:
//!
//! ```text
//! sources ─▶ codec ─▶ detectors ─▶ diagnosis ─▶ recovery ─▶ sinks
//!  (file,     (JSON,   (signature,   (incidents,   (risk,       (JSONL files,
//!   Kafka)    Avro,    threshold,    root cause,   decisions,   Kafka topics)
//!             wire)    anomaly,      category)     guards)
//!                      pattern)
//! ```
//!
//! Guarantees that hold across the crate:
//! - **Event time only.** Every window, timeout and lifecycle step is driven
//!   by event time and watermarks ([`stage::watermark`]), so a replay gives
//!   byte-identical output.
//! - **Nothing is lost.** Input that cannot be decoded becomes a
//!   [`model::DeadLetter`] with its raw bytes and a precise reason; the
//!   decoder never panics (property-tested).
//! - **Stages are pure.** A [`stage::Stage`] does no I/O; runtimes
//!   ([`pipeline::embedded`], Kafka) own threads, channels and I/O.
//! - **Bounded state.** Every per-key structure has a documented bound and
//!   evicts idle keys.

pub mod cli;
pub mod codec;
pub mod config;
pub mod detectors;
pub mod diagnosis;
pub mod error;
pub mod executors;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod recovery;
pub mod report;
pub mod shutdown;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod stage;
pub mod telemetry;
pub mod topics;
pub mod util;
