//! A key's learned normal per window: an exponentially weighted mean of its
//! per-window value, empty windows included as zeros. Shared by the
//! threshold and node detectors so both judge "above normal" the same way.
//!
//! Pure: no I/O, no clock; the caller passes window starts in event time.

/// One key's normal.
#[derive(Debug, Clone, PartialEq)]
pub struct Normal {
    /// The weighted mean of past windows' values.
    pub mean: f64,
    /// Windows folded in so far (saturating).
    pub windows: u32,
    /// Start of the last window folded in.
    pub last_window: i64,
}

impl Normal {
    /// A normal that has seen nothing before the window starting at
    /// `start` (of length `w`); `windows` pre-counts warm-up windows (a key
    /// whose normal is known, e.g. "never", starts warmed).
    pub fn new(start: i64, w: i64, windows: u32) -> Self {
        Normal {
            mean: 0.0,
            windows,
            last_window: start - w,
        }
    }

    /// Folds in the empty windows between the last one and `start` as
    /// zeros; returns the factor the mean was multiplied by (1 when none),
    /// for the caller to decay what it learns beside the mean.
    pub fn catch_up(&mut self, start: i64, w: i64, alpha: f64) -> f64 {
        let skipped = ((start - self.last_window) / w.max(1) - 1).max(0);
        if skipped == 0 {
            return 1.0;
        }
        let decay = (1.0 - alpha).powi(skipped.min(10_000) as i32);
        self.mean *= decay;
        decay
    }

    /// Still learning: the first `warmup` windows only teach the normal.
    pub fn warming(&self, warmup: u32) -> bool {
        self.windows < warmup
    }

    /// Folds in the window starting at `start` with `value`; returns the
    /// weight it was given. While warming up the normal is a plain running
    /// mean; after that a window that fired teaches it ten times more
    /// slowly, so an ongoing fault keeps firing for tens of windows instead
    /// of being learned as normal within a few.
    pub fn learn(&mut self, start: i64, value: f64, fired: bool, warmup: u32, alpha: f64) -> f64 {
        let a = if self.warming(warmup) {
            (1.0 / f64::from(self.windows + 1)).max(alpha)
        } else if fired {
            alpha / 10.0
        } else {
            alpha
        };
        self.windows = self.windows.saturating_add(1);
        self.mean = (1.0 - a) * self.mean + a * value;
        self.last_window = start;
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_windows_count_as_zeros() {
        let mut n = Normal::new(0, 10, 0);
        n.learn(0, 10.0, false, 0, 0.5);
        assert_eq!(n.mean, 5.0);
        // Two empty windows (10 and 20) before 30.
        assert_eq!(n.catch_up(30, 10, 0.5), 0.25);
        assert_eq!(n.mean, 1.25);
        n.learn(30, 1.25, false, 0, 0.5);
        assert_eq!(n.catch_up(40, 10, 0.5), 1.0, "nothing skipped");
    }

    #[test]
    fn a_firing_window_teaches_slowly_after_warm_up() {
        let mut n = Normal::new(0, 10, 0);
        assert!(n.warming(2));
        assert_eq!(
            n.learn(0, 4.0, true, 2, 0.1),
            1.0,
            "first window: its value"
        );
        assert_eq!(n.learn(10, 8.0, true, 2, 0.1), 0.5, "running mean");
        assert_eq!(n.mean, 6.0);
        assert!(!n.warming(2));
        assert!((n.learn(20, 100.0, true, 2, 0.1) - 0.01).abs() < 1e-15);
        assert!((n.learn(30, 100.0, false, 2, 0.1) - 0.1).abs() < 1e-15);
    }

    proptest! {
        #[test]
        fn the_mean_stays_within_the_values_seen(vals in proptest::collection::vec(0.0f64..1e6, 1..50), alpha in 0.01f64..1.0) {
            let mut n = Normal::new(0, 1, 0);
            let hi = vals.iter().copied().fold(0.0, f64::max);
            for (i, v) in vals.iter().enumerate() {
                n.catch_up(i as i64, 1, alpha);
                n.learn(i as i64, *v, i % 2 == 0, 3, alpha);
                prop_assert!(n.mean >= 0.0 && n.mean <= hi * (1.0 + 1e-12));
            }
        }
    }
}
