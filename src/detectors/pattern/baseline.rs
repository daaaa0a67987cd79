//! Per-edge baselines for cascade evidence.
//!
//! On a real fleet callers fail a few calls to their upstreams all day
//! while those upstreams log their own harmless errors; "A fails calling B
//! while B reports errors" is then true every minute and says nothing. An
//! edge's failing calls per window are judged against that edge's own
//! normal, as the threshold detector judges a service's error count: only a
//! rise of `factor`× over the learned rate says "B is hurting its callers".
//! A warmed edge learns a rise at a quarter of the usual weight: a fault
//! lasting a quarter of an hour is still a rise at its end, not the new
//! normal after four windows (its callers still fail because of it).
//!
//! Pure: no I/O, no clock; the same observations give the same answers.
//! Bounded: at most `max_edges` edges are tracked; an edge beyond that is
//! judged against a zero baseline and counted in [`EdgeBaselines::untracked`].

use std::collections::HashMap;

/// Windows an edge is seen in before its rate is known well enough to
/// learn rises slowly (until then every window is learned in full, so a
/// chronic edge seen from start-up settles quickly).
pub const WARM_WINDOWS: u32 = 10;
/// The share of the usual learning weight a warmed edge's rise gets.
pub const RISE_DAMPING: f64 = 0.25;

/// Exponentially weighted failing-call rates per (caller, upstream) edge.
#[derive(Debug, Clone)]
pub struct EdgeBaselines {
    alpha: f64,
    factor: f64,
    max_edges: usize,
    /// edge → (rate per window, start of the last window it was seen in,
    /// windows it was seen in, up to [`WARM_WINDOWS`])
    edges: HashMap<(String, String), (f64, i64, u32)>,
    /// Observations of edges beyond `max_edges` (judged against zero).
    pub untracked: u64,
}

impl EdgeBaselines {
    /// `alpha`: weight of the newest window; `factor`: the rise over the
    /// learned rate that counts; `max_edges`: the bound on tracked edges.
    pub fn new(alpha: f64, factor: f64, max_edges: usize) -> Self {
        EdgeBaselines {
            alpha: alpha.clamp(0.0, 1.0),
            factor,
            max_edges,
            edges: HashMap::new(),
            untracked: 0,
        }
    }

    /// The learned rate of an edge as of the window starting at `start`
    /// (windows of `window` ms without failing calls decay it).
    pub fn rate(&self, caller: &str, upstream: &str, start: i64, window: i64) -> f64 {
        self.edges
            .get(&(caller.to_string(), upstream.to_string()))
            .map_or(0.0, |&(r, last, _)| self.decayed(r, last, start, window))
    }

    fn decayed(&self, rate: f64, last: i64, start: i64, window: i64) -> f64 {
        let quiet = ((start - last) / window.max(1) - 1).clamp(0, 10_000) as i32;
        rate * (1.0 - self.alpha).powi(quiet)
    }

    /// Records `n` failing calls on `caller → upstream` in the window
    /// starting at `start`; returns whether `n` is a rise over the edge's
    /// normal (at least `factor` times its learned rate). The window's
    /// count is learned either way.
    pub fn observe(
        &mut self,
        caller: &str,
        upstream: &str,
        start: i64,
        window: i64,
        n: f64,
    ) -> bool {
        let key = (caller.to_string(), upstream.to_string());
        let known = self.edges.get(&key).copied();
        let base = known.map_or(0.0, |(r, last, _)| self.decayed(r, last, start, window));
        let seen = known.map_or(0, |(_, _, k)| k);
        let rise = n >= self.factor * base;
        let alpha = if rise && seen >= WARM_WINDOWS {
            self.alpha * RISE_DAMPING
        } else {
            self.alpha
        };
        if known.is_some() || self.edges.len() < self.max_edges {
            self.edges.insert(
                key,
                (
                    (1.0 - alpha) * base + alpha * n,
                    start,
                    (seen + 1).min(WARM_WINDOWS),
                ),
            );
        } else {
            self.untracked += 1;
        }
        rise
    }

    /// Tracked edges.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// No edge tracked yet.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: i64 = 60_000;

    #[test]
    fn chronic_edge_stops_counting_and_a_real_rise_counts() {
        let mut b = EdgeBaselines::new(0.1, 3.0, 100);
        let fired: Vec<bool> = (0..60)
            .map(|k| b.observe("web", "api", k * W, W, 6.0))
            .collect();
        // Learning: the first windows count, then the steady rate is normal.
        assert!(fired[0]);
        assert!(fired[10..].iter().all(|f| !f), "{fired:?}");
        // A fault: ten times the usual failing calls.
        assert!(b.observe("web", "api", 60 * W, W, 60.0));
        // Another edge is judged on its own.
        assert!(b.observe("web", "search", 61 * W, W, 6.0));
    }

    #[test]
    fn a_warmed_edge_keeps_counting_a_fault_for_a_quarter_of_an_hour() {
        let mut b = EdgeBaselines::new(0.1, 3.0, 100);
        for k in 0..60 {
            b.observe("partner", "inventory", k * W, W, 1.0);
        }
        let fired = (60..75)
            .filter(|k| b.observe("partner", "inventory", k * W, W, 36.0))
            .count();
        assert_eq!(fired, 15);
    }

    #[test]
    fn quiet_windows_decay_the_rate() {
        let mut b = EdgeBaselines::new(0.1, 3.0, 100);
        for k in 0..30 {
            b.observe("a", "b", k * W, W, 10.0);
        }
        let busy = b.rate("a", "b", 30 * W, W);
        let later = b.rate("a", "b", 120 * W, W);
        assert!(busy > 9.0 && later < busy / 100.0, "{busy} {later}");
    }

    #[test]
    fn the_edge_bound_holds() {
        let mut b = EdgeBaselines::new(0.1, 3.0, 2);
        for u in ["x", "y", "z", "w"] {
            b.observe("a", u, 0, W, 5.0);
        }
        assert_eq!(b.len(), 2);
        assert_eq!(b.untracked, 2);
    }

    proptest! {
        #[test]
        fn the_learned_rate_stays_within_the_observed_range(
            counts in proptest::collection::vec(0u32..500, 1..80)
        ) {
            let mut b = EdgeBaselines::new(0.1, 3.0, 10);
            let max = f64::from(*counts.iter().max().unwrap_or(&0));
            for (k, n) in counts.iter().enumerate() {
                b.observe("a", "b", k as i64 * W, W, f64::from(*n));
                let r = b.rate("a", "b", (k as i64 + 1) * W, W);
                prop_assert!((0.0..=max + 1e-9).contains(&r));
            }
        }

        #[test]
        fn a_count_above_factor_times_the_rate_always_counts(
            counts in proptest::collection::vec(0u32..500, 1..40), extra in 0u32..1000
        ) {
            let mut b = EdgeBaselines::new(0.1, 3.0, 10);
            for (k, n) in counts.iter().enumerate() {
                b.observe("a", "b", k as i64 * W, W, f64::from(*n));
            }
            let t = counts.len() as i64 * W;
            let n = 3.0 * b.rate("a", "b", t, W) + f64::from(extra);
            prop_assert!(b.observe("a", "b", t, W, n));
        }
    }
}
