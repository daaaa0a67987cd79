//! Configuration of the per-node detector (`[detectors.node]`).

use crate::model::{Category, DurationMs, Severity};
use serde::{Deserialize, Serialize};

/// The per-node detector's section of the config. Defaults are in
/// [`NodeConfig::default`], the one place they are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Turns the detector off entirely.
    pub enabled: bool,
    /// The failure class counted per node: events whose signature rules say
    /// the service itself failed this way (the default, `network`, counts
    /// DNS failures, resets and unreachable hosts, whoever was called).
    pub category: Category,
    /// Events below this severity are not counted.
    pub min_severity: Severity,
    /// Tumbling window length (aligned to the epoch).
    pub window: DurationMs,
    /// Never fire on fewer counted events on the node in a window.
    pub min_count: u64,
    /// Services that must each log at least `min_service_events` of them on
    /// the node in the window: one service's own trouble is not its node's.
    pub min_services: usize,
    /// See `min_services`.
    pub min_service_events: u64,
    /// Fire only when the count is at least this many times the node's
    /// learned normal (an exponentially weighted mean of past windows).
    pub baseline_factor: f64,
    /// Weight of the newest window in the normal (0 < alpha <= 1).
    pub baseline_alpha: f64,
    /// Fire only when a count this high has at most this probability under
    /// the node's normal rate (Poisson tail).
    pub significance: f64,
    /// A node's first windows only teach its normal.
    pub warmup_windows: u32,
    /// Consecutive windows the rise must last before anything is emitted
    /// (then every one of them is): seconds of trouble that heal by
    /// themselves (a DNS blip) are not a node's fault. Costs that many
    /// windows of detection time.
    pub min_windows: u32,
    /// Nodes silent this long forget their normal.
    pub idle_eviction: DurationMs,
    /// Nodes tracked at most; events of further nodes are not counted (and
    /// are counted in the detector's refused keys).
    pub max_nodes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            enabled: true,
            category: Category::Network,
            min_severity: Severity::Error,
            window: DurationMs(60_000),
            min_count: 10,
            min_services: 3,
            min_service_events: 2,
            baseline_factor: 3.0,
            baseline_alpha: 0.1,
            significance: 1e-6,
            warmup_windows: 3,
            min_windows: 2,
            idle_eviction: DurationMs(6 * 3_600_000),
            max_nodes: 4096,
        }
    }
}

impl NodeConfig {
    /// Semantic checks; every problem is returned as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let k = |f: &str| format!("detectors.node.{f}");
        if self.window.0 < 1_000 {
            errs.push((k("window"), "must be at least 1s".into()));
        }
        if self.min_services == 0 {
            errs.push((k("min_services"), "must be at least 1".into()));
        }
        if !(self.baseline_factor.is_finite() && self.baseline_factor >= 1.0) {
            errs.push((k("baseline_factor"), "must be >= 1".into()));
        }
        if !(self.baseline_alpha > 0.0 && self.baseline_alpha <= 1.0) {
            errs.push((k("baseline_alpha"), "must be in (0, 1]".into()));
        }
        if !(self.significance > 0.0 && self.significance <= 1.0) {
            errs.push((k("significance"), "must be in (0, 1]".into()));
        }
        if self.min_windows == 0 || self.min_windows > 60 {
            errs.push((k("min_windows"), "must be in 1..=60".into()));
        }
        if self.max_nodes == 0 {
            errs.push((k("max_nodes"), "must be at least 1".into()));
        }
        errs
    }
}
