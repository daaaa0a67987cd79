//! Windowed threshold detector: count / rate / ratio per key in tumbling
//! event-time windows, relative to each key's learned baseline.
//!
//! Keying: each rule keys events by `group_by` (service, service+instance or
//! service+error_type). Windows are aligned to the epoch, so all keys of a
//! rule close together when the watermark passes a window's end; keys are
//! evaluated in sorted order, which keeps the output deterministic.
//!
//! Guarantees: a window is evaluated exactly once, after the watermark has
//! passed its end; an event later than that is folded into the oldest window
//! still open (it is counted late by the pipeline, never dropped). State per
//! key is one baseline (~80 bytes plus the key) and, per open window, one
//! accumulator bounded by the caps below; silent keys are evicted after
//! `idle_eviction`.

pub mod config;

pub use config::{GroupBy, Measure, ThresholdConfig, ThresholdRule};

use super::{Detector, Observed};
use crate::model::{CategoryHint, Detection, EventTime, Window};
use crate::util::{stable_id, TopCounts};
use std::collections::{BTreeMap, HashMap};

/// Distinct values tracked per window for upstreams, error types, etc.
const TOP_CAP: usize = 8;
/// Sample messages kept per window.
const SAMPLE_CAP: usize = 3;
/// Trace ids kept per window (enough to link services, bounded).
const TRACE_CAP: usize = 16;

/// Everything gathered about one key in one window.
#[derive(Debug, Default)]
struct WindowAcc {
    service: String,
    namespace: Option<String>,
    matched: u64,
    total: u64,
    first_seen: Option<EventTime>,
    upstreams: TopCounts,
    error_types: TopCounts,
    statuses: TopCounts,
    nodes: TopCounts,
    instances: TopCounts,
    trace_ids: Vec<String>,
    samples: Vec<String>,
    version: Option<String>,
    /// (signature rule index, matching events).
    signature_hits: Vec<(usize, u64)>,
}

impl WindowAcc {
    fn add_matched(&mut self, o: &Observed<'_>) {
        let ev = o.event;
        self.matched += 1;
        self.first_seen = Some(self.first_seen.map_or(ev.time, |t| t.min(ev.time)));
        if let Some(u) = &ev.upstream {
            self.upstreams.add(u, TOP_CAP);
        }
        if let Some(t) = &ev.error_type {
            self.error_types.add(t, TOP_CAP);
        }
        if let Some(s) = ev.http_status {
            self.statuses.add(itoa(s).as_str(), TOP_CAP);
        }
        if let Some(n) = &ev.node {
            self.nodes.add(n, TOP_CAP);
        }
        if let Some(i) = &ev.instance {
            self.instances.add(i, TOP_CAP);
        }
        if let Some(t) = &ev.trace_id {
            if self.trace_ids.len() < TRACE_CAP && !self.trace_ids.contains(t) {
                self.trace_ids.push(t.clone());
            }
        }
        if self.samples.len() < SAMPLE_CAP && !self.samples.contains(&ev.message) {
            self.samples.push(ev.message.clone());
        }
        if ev.version.is_some() {
            self.version.clone_from(&ev.version);
        }
        for &s in o.signatures {
            match self.signature_hits.iter_mut().find(|h| h.0 == s) {
                Some(h) => h.1 += 1,
                None => self.signature_hits.push((s, 1)),
            }
        }
    }
}

fn itoa(v: i32) -> String {
    v.to_string()
}

/// ln(k!) — exact below 32, Stirling's series above (error < 1e-10).
fn ln_factorial(k: u64) -> f64 {
    if k < 32 {
        (2..=k).map(|i| (i as f64).ln()).sum()
    } else {
        let n = k as f64;
        n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
            - 1.0 / (360.0 * n * n * n)
    }
}

/// P(X >= k) for X ~ Poisson(lambda). Pure; 0 when lambda is 0 and k >= 1.
pub fn poisson_sf(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 || !lambda.is_finite() {
        return if lambda.is_finite() { 0.0 } else { 1.0 };
    }
    if (k as f64) <= lambda {
        // At or below the mean the tail is large; precision is not needed.
        return 1.0;
    }
    // Sum pmf(k) + pmf(k+1) + ... with the ratio recurrence; terms shrink
    // geometrically (ratio lambda/(i+1) < 1) so a few hundred suffice.
    let mut term = (k as f64 * lambda.ln() - lambda - ln_factorial(k)).exp();
    let mut sum = 0.0;
    let mut i = k;
    while term > sum * 1e-12 && i < k + 10_000 {
        sum += term;
        i += 1;
        term *= lambda / i as f64;
    }
    sum.min(1.0)
}

/// A key's learned normal: an exponentially weighted mean of its per-window value.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    mean: f64,
    /// Start of the last window folded in.
    last_window: i64,
    last_seen: EventTime,
}

struct RuleState {
    rule: ThresholdRule,
    /// Open windows by start time, then key.
    open: BTreeMap<i64, HashMap<String, WindowAcc>>,
    baselines: HashMap<String, Baseline>,
}

/// The threshold detector over all configured rules.
pub struct ThresholdDetector {
    rules: Vec<RuleState>,
    idle_eviction_ms: i64,
    signature_meta: Vec<(crate::model::Category, f64, String, crate::model::About)>,
    key_buf: String,
}

impl ThresholdDetector {
    /// Builds the detector; `signatures` gives the rule metadata that hints are made from.
    pub fn new(cfg: &ThresholdConfig, signatures: &super::signature::Signatures) -> Self {
        let rules = if cfg.enabled {
            cfg.rules
                .iter()
                .map(|r| RuleState {
                    rule: r.clone(),
                    open: BTreeMap::new(),
                    baselines: HashMap::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        ThresholdDetector {
            rules,
            idle_eviction_ms: cfg.idle_eviction.0,
            signature_meta: signatures
                .rules()
                .iter()
                .map(|r| (r.category, r.weight, r.name.clone(), r.about))
                .collect(),
            key_buf: String::new(),
        }
    }

    fn close_window(
        rs: &mut RuleState,
        start: i64,
        accs: HashMap<String, WindowAcc>,
        meta: &[(crate::model::Category, f64, String, crate::model::About)],
        out: &mut Vec<Detection>,
    ) {
        let r = &rs.rule;
        let w = r.window.0;
        let mut keys: Vec<(String, WindowAcc)> = accs.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, acc) in keys {
            let value = match r.measure {
                Measure::Count => acc.matched as f64,
                Measure::Rate => acc.matched as f64 * 1000.0 / w as f64,
                Measure::Ratio if acc.total > 0 => acc.matched as f64 / acc.total as f64,
                Measure::Ratio => 0.0,
            };
            let last_seen = acc.first_seen.unwrap_or(EventTime(start));
            let b = rs.baselines.entry(key.clone()).or_insert(Baseline {
                mean: 0.0,
                last_window: start - w,
                last_seen,
            });
            // Windows without events count as zeros in the mean.
            let skipped = ((start - b.last_window) / w - 1).max(0);
            if skipped > 0 {
                b.mean *= (1.0 - r.baseline_alpha).powi(skipped.min(10_000) as i32);
            }
            let bar = r.threshold.max(r.baseline_factor * b.mean);
            let significant = match r.measure {
                // The baseline is in the rule's unit; the test is on counts.
                Measure::Count => poisson_sf(acc.matched, b.mean) <= r.significance,
                Measure::Rate => {
                    poisson_sf(acc.matched, b.mean * w as f64 / 1000.0) <= r.significance
                }
                Measure::Ratio => true,
            };
            let fired = value >= bar && acc.matched >= r.min_count && significant;
            // A firing window teaches the baseline ten times more slowly, so an
            // ongoing fault keeps firing for tens of windows instead of being
            // learned as normal within a few.
            let alpha = if fired {
                r.baseline_alpha / 10.0
            } else {
                r.baseline_alpha
            };
            let normal = b.mean;
            b.mean = (1.0 - alpha) * b.mean + alpha * value;
            b.last_window = start;
            b.last_seen = b.last_seen.max(last_seen);
            if !fired {
                continue;
            }
            let ratio = value / bar;
            let score = (ratio / (ratio + 1.0)).clamp(0.0, 1.0);
            let hints: Vec<CategoryHint> = {
                let mut h: Vec<CategoryHint> = acc
                    .signature_hits
                    .iter()
                    .filter_map(|&(i, n)| {
                        meta.get(i).map(|(cat, weight, name, about)| CategoryHint {
                            category: *cat,
                            weight: weight * (n as f64 / acc.matched.max(1) as f64).min(1.0),
                            source: name.clone(),
                            about: *about,
                        })
                    })
                    .collect();
                h.sort_by(|a, b| {
                    b.weight
                        .total_cmp(&a.weight)
                        .then_with(|| a.source.cmp(&b.source))
                });
                h
            };
            let unit = match r.measure {
                Measure::Count => format!("{value:.0} events"),
                Measure::Rate => format!("{value:.2}/s"),
                Measure::Ratio => format!("{:.0}% of events", value * 100.0),
            };
            let normal_txt = match r.measure {
                Measure::Ratio => format!("{:.0}%", normal * 100.0),
                _ => format!("{normal:.1}"),
            };
            let evidence = format!(
                "{}: {unit} at {} or worse in {}s (threshold {}, normal {normal_txt})",
                acc.service,
                r.min_severity.as_str(),
                w / 1000,
                r.threshold
            );
            out.push(Detection {
                detection_id: stable_id(
                    "det-",
                    &[r.name.as_bytes(), key.as_bytes(), &start.to_be_bytes()],
                ),
                detector: "threshold".into(),
                rule: r.name.clone(),
                key,
                service: acc.service,
                namespace: acc.namespace,
                score,
                window: Window {
                    start: EventTime(start),
                    end: EventTime(start + w),
                },
                evidence,
                count: acc.matched as i64,
                first_seen: acc.first_seen.unwrap_or(EventTime(start)),
                hints,
                upstreams: acc.upstreams.sorted(),
                error_types: acc.error_types.sorted(),
                http_statuses: acc.statuses.sorted(),
                nodes: acc.nodes.sorted(),
                instances: acc.instances.sorted(),
                trace_ids: acc.trace_ids,
                samples: acc.samples,
                version: acc.version,
            });
        }
    }
}

impl Detector for ThresholdDetector {
    fn observe(&mut self, o: &Observed<'_>, _out: &mut Vec<Detection>) {
        let ev = o.event;
        for rs in &mut self.rules {
            let r = &rs.rule;
            let matched = ev.severity >= r.min_severity;
            if !matched && r.measure != Measure::Ratio {
                continue;
            }
            let w = r.window.0;
            let mut start = ev.time.millis().div_euclid(w) * w;
            // Its window already closed (the watermark passed its end): fold
            // the late event into the window that is open now.
            if start + w <= o.watermark.millis() {
                start = o.watermark.millis().div_euclid(w) * w;
            }
            self.key_buf.clear();
            self.key_buf.push_str("service=");
            self.key_buf.push_str(&ev.service);
            match r.group_by {
                GroupBy::Service => {}
                GroupBy::Instance => {
                    self.key_buf.push_str(",instance=");
                    self.key_buf.push_str(ev.instance.as_deref().unwrap_or("-"));
                }
                GroupBy::ErrorType => {
                    self.key_buf.push_str(",error_type=");
                    self.key_buf
                        .push_str(ev.error_type.as_deref().unwrap_or("-"));
                }
            }
            let accs = rs.open.entry(start).or_default();
            let acc = match accs.get_mut(self.key_buf.as_str()) {
                Some(a) => a,
                None => accs
                    .entry(self.key_buf.clone())
                    .or_insert_with(|| WindowAcc {
                        service: ev.service.clone(),
                        namespace: ev.namespace.clone(),
                        ..WindowAcc::default()
                    }),
            };
            acc.total += 1;
            if matched {
                acc.add_matched(o);
            }
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Detection>) {
        for rs in &mut self.rules {
            let w = rs.rule.window.0;
            let mut closed = false;
            while let Some(entry) = rs.open.first_entry() {
                if *entry.key() + w > wm.millis() {
                    break;
                }
                let start = *entry.key();
                let accs = entry.remove();
                Self::close_window(rs, start, accs, &self.signature_meta, out);
                closed = true;
            }
            if closed {
                let horizon = wm.millis() - self.idle_eviction_ms;
                rs.baselines.retain(|_, b| b.last_seen.millis() >= horizon);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Detection>) {
        for rs in &mut self.rules {
            while let Some((start, accs)) = rs.open.pop_first() {
                Self::close_window(rs, start, accs, &self.signature_meta, out);
            }
        }
    }

    fn state_keys(&self) -> usize {
        self.rules.iter().map(|r| r.baselines.len()).sum()
    }
}
