//! Configuration of the windowed threshold detector.

use crate::model::{DurationMs, Severity};
use serde::{Deserialize, Serialize};

/// What a rule groups events by; each distinct value is one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One key per service.
    Service,
    /// One key per (service, instance).
    Instance,
    /// One key per (service, error_type).
    ErrorType,
    /// One key per (service, message template) — per-template rates.
    Template,
}

/// What a rule measures per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Matching events per window.
    Count,
    /// Matching events per second.
    Rate,
    /// Matching events / all events of the key in the window.
    Ratio,
}

/// One threshold rule. A window fires when the measured value reaches
/// `threshold`, at least `min_count` events matched, and the value is at
/// least `baseline_factor` times the key's learned normal (an exponentially
/// weighted mean of past windows, empty windows included) — so a noisy
/// service's usual background does not fire every window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Unique rule name; becomes the detection's `rule`.
    pub name: String,
    /// Grouping of events into keys.
    #[serde(default = "default_group_by")]
    pub group_by: GroupBy,
    /// Events below this severity never match.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Tumbling window length (aligned to the epoch).
    #[serde(default = "default_window")]
    pub window: DurationMs,
    /// What is compared with `threshold`.
    #[serde(default = "default_measure")]
    pub measure: Measure,
    /// Fire when the measure is >= this (count, events/s, or a ratio in 0..1).
    pub threshold: f64,
    /// Never fire on fewer matching events than this in a window.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Fire only when the value is >= this many times the learned baseline (1 = off).
    #[serde(default = "default_baseline_factor")]
    pub baseline_factor: f64,
    /// Weight of the newest window in the baseline (0 < alpha <= 1).
    #[serde(default = "default_baseline_alpha")]
    pub baseline_alpha: f64,
    /// Count/rate rules: fire only when a count this high has at most this
    /// probability under the key's normal rate (Poisson tail). Background
    /// noise then stays quiet however many keys are watched.
    #[serde(default = "default_significance")]
    pub significance: f64,
    /// A key's first windows (after it appears or is evicted) only teach the
    /// baseline: a busy service is not "bursting" just because reflex has
    /// not seen it before. 0 = judge from the first window.
    #[serde(default = "default_warmup_windows")]
    pub warmup_windows: u32,
}

fn default_group_by() -> GroupBy {
    GroupBy::Service
}
fn default_min_severity() -> Severity {
    Severity::Error
}
fn default_window() -> DurationMs {
    DurationMs(60_000)
}
fn default_measure() -> Measure {
    Measure::Count
}
fn default_min_count() -> u64 {
    5
}
fn default_baseline_factor() -> f64 {
    3.0
}
fn default_baseline_alpha() -> f64 {
    0.1
}
fn default_significance() -> f64 {
    1e-6
}
fn default_warmup_windows() -> u32 {
    3
}

/// The threshold detector's section of the config (`[detectors.threshold]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdConfig {
    /// Turns the detector off entirely.
    pub enabled: bool,
    /// Keys silent for longer than this lose their learned baseline (bounds memory).
    pub idle_eviction: DurationMs,
    /// The rules; every rule is evaluated on every event.
    pub rules: Vec<ThresholdRule>,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            enabled: true,
            idle_eviction: DurationMs(6 * 3_600_000),
            rules: vec![ThresholdRule {
                name: "error_burst".into(),
                group_by: default_group_by(),
                min_severity: default_min_severity(),
                window: default_window(),
                measure: default_measure(),
                threshold: 10.0,
                min_count: default_min_count(),
                baseline_factor: default_baseline_factor(),
                baseline_alpha: default_baseline_alpha(),
                significance: default_significance(),
                warmup_windows: default_warmup_windows(),
            }],
        }
    }
}

impl ThresholdConfig {
    /// Semantic checks; every problem is returned as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let k = |f: &str| format!("detectors.threshold.rules[{i}].{f}");
            if r.name.trim().is_empty() {
                errs.push((k("name"), "must not be empty".into()));
            } else if !names.insert(r.name.clone()) {
                errs.push((k("name"), format!("duplicate rule name {:?}", r.name)));
            }
            if r.window.0 < 1_000 {
                errs.push((k("window"), "must be at least 1s".into()));
            }
            if !(r.threshold.is_finite() && r.threshold > 0.0) {
                errs.push((k("threshold"), "must be a positive number".into()));
            }
            if r.measure == Measure::Ratio && r.threshold > 1.0 {
                errs.push((k("threshold"), "a ratio threshold must be in (0, 1]".into()));
            }
            if !(r.baseline_factor.is_finite() && r.baseline_factor >= 1.0) {
                errs.push((k("baseline_factor"), "must be >= 1".into()));
            }
            if !(r.significance > 0.0 && r.significance <= 1.0) {
                errs.push((k("significance"), "must be in (0, 1]".into()));
            }
            if !(r.baseline_alpha > 0.0 && r.baseline_alpha <= 1.0) {
                errs.push((k("baseline_alpha"), "must be in (0, 1]".into()));
            }
        }
        errs
    }
}
