//! Pipeline counters shared by the stages of one run (lock-free atomics), read
//! for the run summary and exported as metrics.
//!
//! Guarantee: recording never blocks and never allocates. Per-event paths
//! only bump relaxed atomics; stage latencies are recorded once per batch
//! into a fixed-bucket histogram ([`LatencyHistogram`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one pipeline run.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_in: AtomicU64,
    pub dead_letters: AtomicU64,
    pub late_events: AtomicU64,
    pub change_events: AtomicU64,
    pub detections: AtomicU64,
    pub incidents_opened: AtomicU64,
    pub incident_records: AtomicU64,
    pub actions: AtomicU64,
    pub escalations: AtomicU64,
    /// Actions held back, by guard (indexed like [`crate::telemetry::metrics::GUARDS`]).
    pub guard_holds: [AtomicU64; crate::telemetry::metrics::GUARDS.len()],
    /// Verifications by outcome (indexed like [`crate::telemetry::metrics::VERIFICATION_OUTCOMES`]).
    pub verifications: [AtomicU64; crate::telemetry::metrics::VERIFICATION_OUTCOMES.len()],
    /// 1 while the recovery circuit breaker is open (a gauge).
    pub breaker_open: AtomicU64,
    /// Executor results handed to the recovery stage (`reflex.action-results`).
    pub action_results: AtomicU64,
    /// Input records (good or bad) taken from the source: `records_read`
    /// minus what the detect and decide stages have handled is the backlog
    /// inside the process (the embedded analogue of consumer lag).
    pub records_read: AtomicU64,
    /// Input records handled by the detect stage (decoded or dead-lettered).
    pub records_done: AtomicU64,
    /// Keys held by the detectors, as of the last batch (a gauge).
    pub detector_state_keys: AtomicU64,
    /// Wall-clock time per batch in each stage, indexed by [`StageName`].
    pub stage_latency: [LatencyHistogram; StageName::ALL.len()],
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records how long `stage` took over one batch.
    pub fn record_batch(&self, stage: StageName, elapsed: Duration) {
        self.stage_latency[stage as usize].record(elapsed);
    }

    /// Records read from the source but not yet through the detect stage.
    pub fn backlog(&self) -> u64 {
        Self::get(&self.records_read).saturating_sub(Self::get(&self.records_done))
    }
}

/// The stages whose batch latency is measured (a fixed metric label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageName {
    /// Reading and decoding input lines.
    Decode = 0,
    /// Running every detector.
    Detect = 1,
    /// Diagnosis, recovery and the sink.
    Decide = 2,
}

impl StageName {
    /// Every stage, in pipeline order.
    pub const ALL: [StageName; 3] = [StageName::Decode, StageName::Detect, StageName::Decide];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Decode => "decode",
            StageName::Detect => "detect",
            StageName::Decide => "decide",
        }
    }
}

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket latency histogram of relaxed atomics.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (non-cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a histogram for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts; the `+Inf` bucket equals `count` by construction.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            count: acc,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_overflow() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(*s.cumulative.last().unwrap(), 3);
    }
}
