//! Pipeline counters shared by the stages of one run (lock-free atomics), read
//! for the run summary and exported as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
