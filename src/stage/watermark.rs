//! Event-time watermarks with bounded out-of-orderness.
//!
//! The watermark is the oldest event time still expected: the smallest of the
//! per-partition maxima, minus the allowed lateness. It never goes back. An
//! event older than the watermark is *late*: stages still use it (folded into
//! the current window) and the pipeline counts it. A single event far in the
//! future (a producer with a broken clock) does not drag the watermark along:
//! a jump larger than `max_skew` is ignored for watermark purposes.
//!
//! When every input is idle (a source that knows it, the Kafka runtime, says
//! so), nothing more can arrive for now and the lateness allowance need not
//! hold windows open: [`WatermarkTracker::advance_to_read`] moves the
//! watermark to the latest event time read over every partition, including
//! ones forgotten since. An event that arrives afterwards older than that
//! is late, as above.

use crate::model::EventTime;
use std::collections::BTreeMap;

/// Tracks the watermark over one or more input partitions.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    max_skew_ms: i64,
    maxima: BTreeMap<i32, i64>,
    /// The latest event time considered on any partition, kept when a
    /// partition is forgotten: what [`Self::advance_to_read`] moves to.
    read_max: Option<i64>,
    current: Option<EventTime>,
}

impl WatermarkTracker {
    /// A tracker allowing `lateness_ms` of disorder and ignoring jumps over `max_skew_ms`.
    pub fn new(lateness_ms: i64, max_skew_ms: i64) -> Self {
        WatermarkTracker {
            lateness_ms,
            max_skew_ms,
            maxima: BTreeMap::new(),
            read_max: None,
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
        self.read_max = Some(self.read_max.map_or(t.millis(), |r| r.max(t.millis())));
        true
    }

    /// Forgets a partition (idle, or revoked in a rebalance): it no longer
    /// holds the watermark back; its next event starts its maximum afresh.
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

    /// Every input is idle: advances the watermark to the latest event time
    /// read on any partition (no lateness allowance: nothing more is
    /// arriving to be waited for), never back. `None` before any event.
    pub fn advance_to_read(&mut self) -> Option<EventTime> {
        let read = EventTime(self.read_max?);
        let next = self.current.map_or(read, |c| c.max(read));
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
        // Nor is it what an idle advance moves to.
        assert_eq!(w.advance_to_read(), Some(EventTime(1_000)));
    }

    #[test]
    fn idle_advance_goes_to_the_latest_read_without_lateness() {
        let mut w = WatermarkTracker::new(5_000, 3_600_000);
        assert_eq!(w.advance_to_read(), None);
        w.observe(0, EventTime(10_000));
        w.observe(1, EventTime(30_000));
        assert_eq!(w.watermark(), Some(EventTime(5_000)));
        // Forgotten (idle) partitions still count for what was read.
        w.remove_partition(1);
        assert_eq!(w.advance_to_read(), Some(EventTime(30_000)));
        // Never back: new input below it is late, the watermark stays.
        w.observe(0, EventTime(20_000));
        assert_eq!(w.watermark(), Some(EventTime(30_000)));
        w.observe(0, EventTime(40_000));
        assert_eq!(w.watermark(), Some(EventTime(35_000)));
    }
}
