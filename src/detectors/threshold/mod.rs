//! Windowed threshold detector: count / rate / ratio per key in tumbling
//! event-time windows, relative to each key's learned baseline. A detection's
//! upstreams are relative too: each key learns the failing calls a normal
//! window makes to each upstream, and reports only the calls beyond that.
//!
//! Keying: each rule keys events by `group_by` (service, service+instance or
//! service+error_type). Windows are aligned to the epoch, so all keys of a
//! rule close together when the watermark passes a window's end; keys are
//! evaluated in sorted order, which keeps the output deterministic.
//!
//! Guarantees: a window is evaluated exactly once, after the watermark has
//! passed its end; an event later than that is folded into the oldest window
//! still open (it is counted late by the pipeline, never dropped). State per
//! key is one baseline (~80 bytes plus the key, plus up to `EDGE_CAP`
//! upstream normals) and, per open window, one
//! accumulator bounded by the caps below; silent keys are evicted after
//! `idle_eviction`.

pub mod config;

pub use config::{GroupBy, Measure, ThresholdConfig, ThresholdRule};

use super::facts::{Facts, Head, SignatureMeta};
use super::normal::Normal;
use super::{Detector, Observed};
use crate::model::DetectorKind;
use crate::model::{Detection, EventTime, Window};
use std::collections::{BTreeMap, HashMap};

/// One key's window: its facts plus the events of any severity (for ratios).
#[derive(Debug, Default)]
struct WindowAcc {
    facts: Facts,
    total: u64,
    /// The template's text, for per-template keys.
    template: Option<String>,
    /// The window holds the message that created its (novel) template.
    novel: bool,
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

/// Upstreams whose normal failing calls are learned per key (as many as a
/// window's facts list).
const EDGE_CAP: usize = 8;

/// A key's learned normal ([`Normal`]) and its edges' normals.
#[derive(Debug, Clone)]
struct Baseline {
    normal: Normal,
    /// Per upstream, the failing calls naming it in a normal window (same
    /// weighting as `normal`): a caller that fails a few calls to an upstream
    /// all day has that as the edge's normal, and a detection reports only
    /// the calls beyond it.
    edges: Vec<(String, f64)>,
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
    signature_meta: SignatureMeta,
    key_buf: String,
    /// The longest configured rule window (see [`Detector::hold_ms`]).
    hold_ms: i64,
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
            // Over the configured rules even when disabled: an upper bound,
            // the span the runtime has always held offsets for.
            hold_ms: cfg.rules.iter().map(|r| r.window.0).max().unwrap_or(0),
            idle_eviction_ms: cfg.idle_eviction.0,
            signature_meta: SignatureMeta::new(signatures),
            key_buf: String::new(),
        }
    }

    fn close_window(
        rs: &mut RuleState,
        start: i64,
        accs: HashMap<String, WindowAcc>,
        meta: &SignatureMeta,
        out: &mut Vec<Detection>,
    ) {
        let r = &rs.rule;
        let w = r.window.0;
        let mut keys: Vec<(String, WindowAcc)> = accs.into_iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, mut acc) in keys {
            let matched = acc.facts.matched;
            let value = match r.measure {
                Measure::Count => matched as f64,
                Measure::Rate => matched as f64 * 1000.0 / w as f64,
                Measure::Ratio if acc.total > 0 => matched as f64 / acc.total as f64,
                Measure::Ratio => 0.0,
            };
            let last_seen = acc.facts.first_seen.unwrap_or(EventTime(start));
            // A novel template's normal is known: it never occurred. Its
            // key does not warm up, or a new failure mode that starts as a
            // burst (a bad deploy's new exception) would be learned as
            // normal before it could fire.
            let b = rs.baselines.entry(key.clone()).or_insert(Baseline {
                normal: Normal::new(start, w, if acc.novel { r.warmup_windows } else { 0 }),
                edges: Vec::new(),
                last_seen,
            });
            // Windows without events count as zeros in the mean.
            let decay = b.normal.catch_up(start, w, r.baseline_alpha);
            if decay < 1.0 {
                for e in &mut b.edges {
                    e.1 *= decay;
                }
            }
            let normal = b.normal.mean;
            let bar = r.threshold.max(r.baseline_factor * normal);
            let significant = match r.measure {
                // The baseline is in the rule's unit; the test is on counts.
                Measure::Count => poisson_sf(matched, normal) <= r.significance,
                Measure::Rate => poisson_sf(matched, normal * w as f64 / 1000.0) <= r.significance,
                Measure::Ratio => true,
            };
            let warming = b.normal.warming(r.warmup_windows);
            let fired = !warming && value >= bar && matched >= r.min_count && significant;
            let alpha = b
                .normal
                .learn(start, value, fired, r.warmup_windows, r.baseline_alpha);
            learn_edges(&mut b.edges, &mut acc.facts, alpha, fired);
            b.last_seen = b.last_seen.max(last_seen);
            if !fired {
                continue;
            }
            let ratio = value / bar;
            let score = (ratio / (ratio + 1.0)).clamp(0.0, 1.0);
            let unit = match r.measure {
                Measure::Count => format!("{value:.0} events"),
                Measure::Rate => format!("{value:.2}/s"),
                Measure::Ratio => format!("{:.0}% of events", value * 100.0),
            };
            let normal_txt = match r.measure {
                Measure::Ratio => format!("{:.0}%", normal * 100.0),
                _ => format!("{normal:.1}"),
            };
            let what = match &acc.template {
                Some(t) => format!(" of template \"{t}\""),
                None => String::new(),
            };
            let evidence = format!(
                "{}: {unit}{what} at {} or worse in {}s (threshold {}, normal {normal_txt})",
                acc.facts.service,
                r.min_severity.as_str(),
                w / 1000,
                r.threshold
            );
            let head = Head {
                detector: DetectorKind::Threshold,
                rule: r.name.clone(),
                key,
                score,
                window: Window {
                    start: EventTime(start),
                    end: EventTime(start + w),
                },
                evidence,
            };
            out.push(acc.facts.into_detection(meta, head));
        }
    }
}

/// Folds one window's failing calls per upstream into a key's edge normals
/// (an edge the window did not name learns a zero). In a `fired` window the
/// facts then count each upstream's calls beyond its normal as it was
/// before this window (an upstream without one counts in full). Only quiet
/// windows add new edges: a fault's upstream is not normal for its caller.
/// One pass over at most `EDGE_CAP` edges; nothing is allocated but a new
/// edge's name.
fn learn_edges(edges: &mut Vec<(String, f64)>, facts: &mut Facts, alpha: f64, fired: bool) {
    let mut named = [false; EDGE_CAP];
    facts.map_upstreams(|u, c| match edges.iter().position(|e| e.0 == u) {
        Some(k) => {
            named[k] = true;
            let normal = edges[k].1;
            edges[k].1 = (1.0 - alpha) * normal + alpha * c as f64;
            if fired {
                (c as f64 - normal).max(0.0).round() as i64
            } else {
                c
            }
        }
        None => {
            if !fired && edges.len() < EDGE_CAP {
                named[edges.len()] = true;
                edges.push((u.to_string(), alpha * c as f64));
            }
            c
        }
    });
    for (e, named) in edges.iter_mut().zip(named) {
        if !named {
            e.1 *= 1.0 - alpha;
        }
    }
    // Edges that faded out make room for new ones.
    edges.retain(|e| e.1 >= 0.01);
}

impl crate::detectors::FromConfig for ThresholdDetector {
    type Config = ThresholdConfig;
    fn from_config(cfg: &ThresholdConfig, ctx: crate::detectors::BuildContext<'_>) -> Self {
        ThresholdDetector::new(cfg, ctx.signatures)
    }
}

impl Detector for ThresholdDetector {
    fn hold_ms(&self) -> i64 {
        self.hold_ms
    }

    fn observe(&mut self, o: &Observed<'_>, _out: &mut Vec<Detection>) {
        let ev = o.event;
        for rs in &mut self.rules {
            let r = &rs.rule;
            let matched = ev.severity >= r.min_severity;
            if !matched && r.measure != Measure::Ratio {
                continue;
            }
            let w = r.window.0;
            let start = o.window_start(w);
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
                GroupBy::Template => match o.template {
                    Some(t) => {
                        use std::fmt::Write;
                        let _ = write!(self.key_buf, ",template={}", t.id);
                    }
                    None => continue, // not mined: no template to count
                },
            }
            let accs = rs.open.entry(start).or_default();
            let acc = match accs.get_mut(self.key_buf.as_str()) {
                Some(a) => a,
                None => accs
                    .entry(self.key_buf.clone())
                    .or_insert_with(|| WindowAcc {
                        facts: Facts::for_event(o),
                        total: 0,
                        template: None,
                        novel: false,
                    }),
            };
            acc.total += 1;
            if r.group_by == GroupBy::Template {
                if let Some(t) = o.template {
                    if acc.template.as_deref() != Some(t.text) {
                        acc.template = Some(t.text.to_string());
                    }
                    acc.novel |= t.novel;
                }
            }
            if matched {
                acc.facts.add(o);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::signature::Signatures;
    use crate::model::{ErrorEvent, Severity};
    use proptest::prelude::*;

    fn rule() -> ThresholdRule {
        ThresholdRule {
            name: "burst".into(),
            group_by: GroupBy::Service,
            min_severity: Severity::Error,
            window: crate::model::DurationMs(60_000),
            measure: Measure::Count,
            threshold: 10.0,
            min_count: 10,
            baseline_factor: 3.0,
            baseline_alpha: 0.1,
            significance: 1e-6,
            warmup_windows: 2,
        }
    }

    fn detector(r: ThresholdRule) -> ThresholdDetector {
        let cfg = ThresholdConfig {
            enabled: true,
            idle_eviction: crate::model::DurationMs(3_600_000),
            rules: vec![r],
        };
        ThresholdDetector::new(&cfg, &Signatures::new(Vec::new()).unwrap())
    }

    fn feed(d: &mut ThresholdDetector, svc: &str, t: i64, sev: Severity, wm: i64) {
        let ev = ErrorEvent::new("x", EventTime(t), svc, sev, "boom");
        d.observe(
            &Observed {
                event: &ev,
                template: None,
                signatures: &[],
                late: t < wm,
                watermark: EventTime(wm),
            },
            &mut Vec::new(),
        );
    }

    /// `n` error events per minute for `minutes`, starting at minute `from`.
    fn minutes(
        d: &mut ThresholdDetector,
        svc: &str,
        from: i64,
        minutes: i64,
        n: i64,
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        for m in from..from + minutes {
            for i in 0..n {
                feed(
                    d,
                    svc,
                    m * 60_000 + i * (60_000 / n.max(1)),
                    Severity::Error,
                    m * 60_000,
                );
            }
            d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
        }
        out
    }

    #[test]
    fn burst_after_warmup_fires_once_per_window_and_quiet_does_not() {
        let mut d = detector(rule());
        assert!(minutes(&mut d, "a", 0, 5, 2).is_empty(), "background only");
        let out = minutes(&mut d, "a", 5, 2, 40);
        assert_eq!(out.len(), 2, "two burst windows");
        assert_eq!(out[0].count, 40);
        assert_eq!(out[0].window.start, EventTime(5 * 60_000));
        assert!(out[0].score > 0.5 && out[0].score <= 1.0);
        assert!(minutes(&mut d, "a", 7, 3, 2).is_empty(), "back to normal");
    }

    #[test]
    fn warmup_suppresses_a_busy_newcomer() {
        let mut d = detector(rule());
        assert!(minutes(&mut d, "busy", 0, 2, 100).is_empty());
        // After warm-up the same level is normal, not a burst.
        assert!(minutes(&mut d, "busy", 2, 3, 100).is_empty());
    }

    /// `n` events of one template per minute for `minutes`; the first event
    /// of the first minute created the template (`novel` as given).
    fn template_minutes(
        d: &mut ThresholdDetector,
        from: i64,
        minutes: i64,
        n: i64,
        novel: bool,
    ) -> usize {
        let mut out = Vec::new();
        for m in from..from + minutes {
            for i in 0..n {
                let ev =
                    ErrorEvent::new("x", EventTime(m * 60_000 + i), "a", Severity::Error, "boom");
                let first = m == from && i == 0;
                d.observe(
                    &Observed {
                        event: &ev,
                        template: Some(crate::detectors::TemplateRef {
                            id: crate::detectors::pattern::miner::TemplateId(7),
                            created: first,
                            novel: first && novel,
                            text: "boom",
                        }),
                        signatures: &[],
                        late: false,
                        watermark: EventTime(m * 60_000),
                    },
                    &mut Vec::new(),
                );
            }
            d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
        }
        out.len()
    }

    #[test]
    fn a_novel_template_bursting_fires_at_once_a_warm_up_one_is_learned() {
        let mut r = rule();
        r.group_by = GroupBy::Template;
        // A new exception right after a deploy, 40 a minute from its first
        // minute: its normal is "never", so every burst window fires.
        assert_eq!(
            template_minutes(&mut detector(r.clone()), 0, 4, 40, true),
            4
        );
        // The same shape first seen while the miner learns the fleet is
        // learned as this key's normal during warm-up, then stays quiet.
        assert_eq!(template_minutes(&mut detector(r), 0, 4, 40, false), 0);
    }

    #[test]
    fn chronic_noise_needs_a_significant_jump() {
        let mut d = detector(rule());
        minutes(&mut d, "noisy", 0, 30, 12);
        // 3x of 12 = 36 is needed; 30 is not enough.
        assert!(minutes(&mut d, "noisy", 30, 1, 30).is_empty());
        assert_eq!(minutes(&mut d, "noisy", 31, 1, 80).len(), 1);
    }

    #[test]
    fn window_closes_only_when_the_watermark_passes_its_end() {
        let mut r = rule();
        r.warmup_windows = 0;
        let mut d = detector(r);
        for i in 0..20 {
            feed(&mut d, "a", 1_000 + i, Severity::Critical, 0);
        }
        let mut out = Vec::new();
        d.on_watermark(EventTime(59_999), &mut out);
        assert!(out.is_empty());
        d.on_watermark(EventTime(60_000), &mut out);
        assert_eq!(out.len(), 1);
        d.on_watermark(EventTime(120_000), &mut out);
        assert_eq!(out.len(), 1, "a window is evaluated exactly once");
    }

    #[test]
    fn late_events_fold_into_the_open_window_not_lost() {
        let mut r = rule();
        r.warmup_windows = 0;
        let mut d = detector(r);
        let mut out = Vec::new();
        d.on_watermark(EventTime(120_000), &mut out);
        // Events from minute 0 arrive after the watermark passed minute 2.
        for i in 0..15 {
            feed(&mut d, "a", 1_000 + i, Severity::Error, 120_000);
        }
        d.on_watermark(EventTime(180_000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].window.start, EventTime(120_000));
        assert_eq!(out[0].count, 15);
    }

    #[test]
    fn severity_filter_and_flush() {
        let mut r = rule();
        r.warmup_windows = 0;
        let mut d = detector(r);
        for i in 0..50 {
            feed(&mut d, "a", i, Severity::Warning, 0);
        }
        let mut out = Vec::new();
        d.flush(&mut out);
        assert!(out.is_empty(), "warnings do not match an error rule");
        for i in 0..50 {
            feed(&mut d, "a", i, Severity::Error, 0);
        }
        d.flush(&mut out);
        assert_eq!(out.len(), 1, "flush closes open windows");
    }

    #[test]
    fn idle_keys_are_evicted() {
        let mut d = detector(rule());
        minutes(&mut d, "a", 0, 1, 5);
        minutes(&mut d, "b", 0, 1, 5);
        assert_eq!(d.state_keys(), 2);
        minutes(&mut d, "b", 200, 1, 5);
        assert_eq!(d.state_keys(), 1, "a was silent for over an hour");
    }

    /// One minute of `svc` errors: `n` naming each of `upstreams`, `own`
    /// naming none; returns what closing the minute detected.
    fn minute_with(
        d: &mut ThresholdDetector,
        svc: &str,
        m: i64,
        upstreams: &[(&str, i64)],
        own: i64,
    ) -> Vec<Detection> {
        let mut i = 0;
        let mut ev = |up: Option<&str>| {
            let mut e =
                ErrorEvent::new("x", EventTime(m * 60_000 + i), svc, Severity::Error, "boom");
            e.upstream = up.map(str::to_string);
            i += 50;
            d.observe(
                &Observed {
                    event: &e,
                    template: None,
                    signatures: &[],
                    late: false,
                    watermark: EventTime(m * 60_000),
                },
                &mut Vec::new(),
            );
        };
        for (u, n) in upstreams {
            for _ in 0..*n {
                ev(Some(u));
            }
        }
        for _ in 0..own {
            ev(None);
        }
        let mut out = Vec::new();
        d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
        out
    }

    #[test]
    fn a_detection_counts_an_edges_failing_calls_only_beyond_its_normal() {
        let mut d = detector(rule());
        // All day: 12 failing calls a minute to `orders` (the edge's normal).
        for m in 0..60 {
            assert!(minute_with(&mut d, "partner", m, &[("orders", 12)], 0).is_empty());
        }
        // Then the caller fails its own way: the burst is not about orders.
        let out = minute_with(&mut d, "partner", 60, &[("orders", 12)], 150);
        assert_eq!(out.len(), 1, "{out:?}");
        let up = &out[0].upstreams;
        assert_eq!(out[0].count, 162);
        assert!(
            up.iter().any(|u| u.value == "orders" && u.count == 0),
            "orders stays named, at 0 beyond normal: {up:?}"
        );
        // A rise on the edge is reported as the rise; a new upstream in full.
        let out = minute_with(&mut d, "partner", 61, &[("orders", 112), ("ledger", 40)], 0);
        let up = &out[0].upstreams;
        let count = |v: &str| up.iter().find(|u| u.value == v).map(|u| u.count);
        assert_eq!(count("ledger"), Some(40), "{up:?}");
        assert!(
            count("orders").is_some_and(|c| (98..=101).contains(&c)),
            "{up:?}"
        );
    }

    #[test]
    fn poisson_tail_known_values() {
        assert_eq!(poisson_sf(0, 3.0), 1.0);
        assert_eq!(poisson_sf(5, 0.0), 0.0);
        // P(X >= 10 | 2.8) = 6.60087e-4 (exact sum of the pmf).
        let p = poisson_sf(10, 2.8);
        assert!((p - 6.60087e-4).abs() < 1e-9, "{p}");
        assert!(poisson_sf(200, 20.0) < 1e-60);
    }

    proptest! {
        #[test]
        fn poisson_tail_is_a_probability_and_decreasing_in_k(k in 0u64..500, lambda in 0.0f64..200.0) {
            let p = poisson_sf(k, lambda);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!(poisson_sf(k + 1, lambda) <= p + 1e-12);
        }

        #[test]
        fn every_matching_event_is_counted_in_exactly_one_window(times in proptest::collection::vec(0i64..600_000, 1..300)) {
            let mut r = rule();
            r.warmup_windows = 0;
            r.threshold = 1.0;
            r.min_count = 1;
            r.significance = 1.0;
            r.baseline_factor = 1.0;
            let mut d = detector(r);
            for t in &times {
                feed(&mut d, "a", *t, Severity::Error, 0);
            }
            let mut out = Vec::new();
            d.flush(&mut out);
            let total: i64 = out.iter().map(|o| o.count).sum();
            prop_assert_eq!(total, times.len() as i64);
        }
    }
}
