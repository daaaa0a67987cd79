//! Event-time watermarks with bounded out-of-orderness.
//!
//! The watermark is the oldest event time still expected: the smallest of the
//! per-partition maxima, minus the allowed lateness. It never goes back. An
//! event older than the watermark is *late*: stages still use it (folded into
//! the current window) and the pipeline counts it. A single event far in the
//! future (a producer with a broken clock) does not drag the watermark along:
//! a jump larger than `max_skew` is ignored for watermark purposes.

use crate::model::EventTime;
use std::collections::BTreeMap;

/// Tracks the watermark over one or more input partitions.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    max_skew_ms: i64,
    maxima: BTreeMap<i32, i64>,
    current: Option<EventTime>,
}

impl WatermarkTracker {
    /// A tracker allowing `lateness_ms` of disorder and ignoring jumps over `max_skew_ms`.
    pub fn new(lateness_ms: i64, max_skew_ms: i64) -> Self {
        WatermarkTracker {
            lateness_ms,
            max_skew_ms,
            maxima: BTreeMap::new(),
            current: None,
        }
    }

    /// Records an event time seen on `partition`; returns whether it was
    /// considered (false for an implausible jump into the future).
    pub fn observe(&mut self, partition: i32, t: EventTime) -> bool {
        let m = self.maxima.entry(partition).or_insert(i64::MIN);
        if *m != i64::MIN && t.millis() > m.saturating_add(self.max_skew_ms) {
            return false;
        }
        *m = (*m).max(t.millis());
        true
    }

    /// Forgets a partition (revoked in a rebalance).
    pub fn remove_partition(&mut self, partition: i32) {
        self.maxima.remove(&partition);
    }

    /// The current watermark, advanced from what was observed; `None` before any event.
    pub fn watermark(&mut self) -> Option<EventTime> {
        let min = self
            .maxima
            .values()
            .copied()
            .filter(|m| *m != i64::MIN)
            .min()?;
        let wm = EventTime(min.saturating_sub(self.lateness_ms));
        let next = match self.current {
            Some(c) if c >= wm => c,
            _ => wm,
        };
        self.current = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_of_partitions_minus_lateness_and_monotone() {
        let mut w = WatermarkTracker::new(1_000, 3_600_000);
        assert_eq!(w.watermark(), None);
        w.observe(0, EventTime(10_000));
        w.observe(1, EventTime(5_000));
        assert_eq!(w.watermark(), Some(EventTime(4_000)));
        w.observe(1, EventTime(20_000));
        assert_eq!(w.watermark(), Some(EventTime(9_000)));
        // An old event never moves it back.
        w.observe(0, EventTime(1_000));
        assert_eq!(w.watermark(), Some(EventTime(9_000)));
    }

    #[test]
    fn implausible_future_jump_is_ignored() {
        let mut w = WatermarkTracker::new(0, 60_000);
        w.observe(0, EventTime(1_000));
        assert!(!w.observe(0, EventTime(10_000_000)));
        assert_eq!(w.watermark(), Some(EventTime(1_000)));
    }
}
