//! The anomaly detector in the pipeline: one [`SeriesDetector`] per
//! (signal, service), fed one point per bucket of event time.
//!
//! Signals: `error_rate` (events at `min_severity` or worse per bucket; a
//! bucket without events is a 0, so the series is regular) and `latency`
//! (mean `latency_ms` of the bucket's events, fed only for buckets that have
//! some). Only rises are reported — fewer errors or faster responses are
//! good news — and an error-rate rise needs `min_count` events and a count
//! that is improbable under the learned rate (Poisson tail ≤ `significance`),
//! so neither a quiet service's first error nor a busy one's chance wiggle
//! is news.
//!
//! Keying: (signal, service). State per key: the series detector (1,112
//! bytes with the default config) plus its bucket accumulator and key
//! (~200 bytes); at most `max_keys` keys (new keys beyond that are not
//! tracked, and counted), keys silent for `idle_eviction` are evicted.
//! Buckets close when the watermark passes their end, keys in sorted order,
//! so output is deterministic.

use super::config::AnomalyConfig;
use super::detector::SeriesDetector;
use crate::detectors::facts::{Facts, Head, SignatureMeta};
use crate::detectors::signature::Signatures;
use crate::detectors::threshold::poisson_sf;
use crate::detectors::{Detector, Observed};
use crate::model::DetectorKind;
use crate::model::{Detection, DurationMs, EventTime, Severity, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `[detectors.anomaly]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyStreamConfig {
    /// Turns the detector off.
    pub enabled: bool,
    /// One point per key per bucket of event time.
    pub bucket: DurationMs,
    /// Events at this severity or worse count towards `error_rate`.
    pub min_severity: Severity,
    /// Report points scoring at or above this (0..1; 0.5 is the threshold the
    /// series detector was benchmarked at, fixed in advance).
    pub alert_level: f64,
    /// An error-rate anomaly needs at least this many events in its bucket.
    pub min_count: u64,
    /// An error-rate anomaly must also be improbable as a count: Poisson tail
    /// under the learned normal rate at most this. An unusual shape is not
    /// proof of trouble when the count is within chance.
    pub significance: f64,
    /// Also watch mean `latency_ms` per service.
    pub latency: bool,
    /// A latency anomaly must also be a material slowdown: the bucket's mean
    /// at least this multiple of the learned normal. A steady service's
    /// +10% is statistically unusual but not an incident.
    pub min_latency_ratio: f64,
    /// Keys silent this long are forgotten.
    pub idle_eviction: DurationMs,
    /// Hard bound on tracked keys (memory).
    pub max_keys: usize,
    /// The per-series detector's settings (one configuration for every series).
    pub series: AnomalyConfig,
}

impl Default for AnomalyStreamConfig {
    fn default() -> Self {
        AnomalyStreamConfig {
            enabled: true,
            bucket: DurationMs(60_000),
            min_severity: Severity::Error,
            alert_level: 0.5,
            min_count: 5,
            significance: 1e-6,
            latency: true,
            min_latency_ratio: 1.5,
            idle_eviction: DurationMs(6 * 3_600_000),
            max_keys: 100_000,
            series: AnomalyConfig::default(),
        }
    }
}

impl AnomalyStreamConfig {
    /// Semantic checks; every problem as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if self.bucket.0 < 1_000 {
            e.push((
                "detectors.anomaly.bucket".into(),
                "must be at least 1s".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.alert_level) {
            e.push((
                "detectors.anomaly.alert_level".into(),
                "must be in [0, 1]".into(),
            ));
        }
        if !(self.significance > 0.0 && self.significance <= 1.0) {
            e.push((
                "detectors.anomaly.significance".into(),
                "must be in (0, 1]".into(),
            ));
        }
        if !(self.min_latency_ratio.is_finite() && self.min_latency_ratio >= 1.0) {
            e.push((
                "detectors.anomaly.min_latency_ratio".into(),
                "must be at least 1".into(),
            ));
        }
        if self.max_keys == 0 {
            e.push((
                "detectors.anomaly.max_keys".into(),
                "must be at least 1".into(),
            ));
        }
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Signal {
    ErrorRate,
    Latency,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::ErrorRate => "error_rate",
            Signal::Latency => "latency",
        }
    }
}

#[derive(Default)]
struct Bucket {
    facts: Option<Facts>,
    latency_sum: f64,
}

struct Series {
    det: SeriesDetector,
    last_seen: EventTime,
    /// Start of the last bucket fed.
    last_fed: i64,
}

/// The pipeline's anomaly detector.
pub struct AnomalyStream {
    cfg: AnomalyStreamConfig,
    meta: SignatureMeta,
    /// Per signal (indexed by `Signal as usize`): service → its series.
    series: [BTreeMap<String, Series>; 2],
    /// Open buckets by start; per signal, service → bucket.
    open: BTreeMap<i64, [HashMap<String, Bucket>; 2]>,
    /// Keys refused because `max_keys` was reached.
    pub refused_keys: u64,
}

/// Buckets of zeros fed at most after a silence (older history adds nothing).
const MAX_GAP_POINTS: i64 = 120;

impl AnomalyStream {
    /// A detector with `cfg`; hints come from `signatures`.
    pub fn new(cfg: &AnomalyStreamConfig, signatures: &Signatures) -> Self {
        AnomalyStream {
            cfg: cfg.clone(),
            meta: SignatureMeta::new(signatures),
            series: [BTreeMap::new(), BTreeMap::new()],
            open: BTreeMap::new(),
            refused_keys: 0,
        }
    }

    fn add(&mut self, signal: Signal, o: &Observed<'_>, start: i64, latency: f64) {
        let svc = o.event.service.as_str();
        let keys: usize = self.series.iter().map(BTreeMap::len).sum();
        let series = &mut self.series[signal as usize];
        // Borrowed lookups first: no allocation per event for known keys.
        match series.get_mut(svc) {
            Some(s) => s.last_seen = s.last_seen.max(o.event.time),
            None if keys >= self.cfg.max_keys => {
                self.refused_keys += 1;
                return;
            }
            None => {
                series.insert(
                    svc.to_string(),
                    Series {
                        det: SeriesDetector::new(&self.cfg.series),
                        last_seen: o.event.time,
                        last_fed: start - self.cfg.bucket.0,
                    },
                );
            }
        }
        let buckets = &mut self.open.entry(start).or_default()[signal as usize];
        let b = match buckets.get_mut(svc) {
            Some(b) => b,
            None => buckets.entry(svc.to_string()).or_default(),
        };
        b.facts.get_or_insert_with(|| Facts::for_event(o)).add(o);
        b.latency_sum += latency;
    }

    fn close(
        &mut self,
        start: i64,
        mut buckets: [HashMap<String, Bucket>; 2],
        out: &mut Vec<Detection>,
    ) {
        for signal in [Signal::ErrorRate, Signal::Latency] {
            let b = std::mem::take(&mut buckets[signal as usize]);
            self.close_signal(signal, start, b, out);
        }
    }

    fn close_signal(
        &mut self,
        signal: Signal,
        start: i64,
        mut buckets: HashMap<String, Bucket>,
        out: &mut Vec<Detection>,
    ) {
        let w = self.cfg.bucket.0;
        let per_s = 1000.0 / w as f64;
        for (service, s) in self.series[signal as usize].iter_mut() {
            let bucket = buckets.remove(service);
            if signal == Signal::Latency && bucket.is_none() {
                continue; // latency is only defined where there were calls
            }
            if signal == Signal::ErrorRate {
                // Silent buckets since the last point are zeros.
                let gap = ((start - s.last_fed) / w - 1).clamp(0, MAX_GAP_POINTS);
                for i in (1..=gap).rev() {
                    s.det.update(start - i * w, 0.0);
                }
            }
            let n = bucket
                .as_ref()
                .and_then(|b| b.facts.as_ref())
                .map_or(0, |f| f.matched);
            let value = match signal {
                Signal::ErrorRate => n as f64,
                Signal::Latency => bucket
                    .as_ref()
                    .map_or(0.0, |b| b.latency_sum / n.max(1) as f64),
            };
            let before = s.det.baseline();
            let score = s.det.update(start, value);
            s.last_fed = start;
            let Some(bucket) = bucket else { continue };
            let Some(facts) = bucket.facts else { continue };
            let rising = before.is_none_or(|(mean, _)| value > mean);
            let enough = match signal {
                Signal::ErrorRate => {
                    n >= self.cfg.min_count
                        && poisson_sf(n, before.map_or(0.0, |b| b.0)) <= self.cfg.significance
                }
                Signal::Latency => {
                    before.is_none_or(|(mean, _)| value >= mean * self.cfg.min_latency_ratio)
                }
            };
            if score < self.cfg.alert_level || !rising || !enough {
                continue;
            }
            let (mean, spread) = before.unwrap_or((0.0, 0.0));
            let evidence = match signal {
                Signal::ErrorRate => format!(
                    "{service}: error rate {:.2}/s vs normal {:.2}/s ± {:.2} (anomaly score {score:.2})",
                    value * per_s,
                    mean * per_s,
                    spread * per_s
                ),
                Signal::Latency => format!(
                    "{service}: mean latency {value:.0} ms vs normal {mean:.0} ms ± {spread:.0} (anomaly score {score:.2})"
                ),
            };
            let head = Head {
                detector: DetectorKind::Anomaly,
                rule: signal.name().to_string(),
                key: format!("signal={},service={service}", signal.name()),
                score,
                window: Window {
                    start: EventTime(start),
                    end: EventTime(start + w),
                },
                evidence,
            };
            out.push(facts.into_detection(&self.meta, head));
        }
    }
}

impl crate::detectors::FromConfig for AnomalyStream {
    type Config = AnomalyStreamConfig;
    fn from_config(cfg: &AnomalyStreamConfig, ctx: crate::detectors::BuildContext<'_>) -> Self {
        AnomalyStream::new(cfg, ctx.signatures)
    }
}

impl Detector for AnomalyStream {
    fn hold_ms(&self) -> i64 {
        // A point is judged when its bucket closes.
        if self.cfg.enabled {
            self.cfg.bucket.0
        } else {
            0
        }
    }

    fn observe(&mut self, o: &Observed<'_>, _out: &mut Vec<Detection>) {
        if !self.cfg.enabled {
            return;
        }
        let w = self.cfg.bucket.0;
        let start = o.window_start(w); // late: the open bucket
        if o.event.severity >= self.cfg.min_severity {
            self.add(Signal::ErrorRate, o, start, 0.0);
        }
        if self.cfg.latency {
            if let Some(l) = o.event.latency_ms {
                self.add(Signal::Latency, o, start, l);
            }
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Detection>) {
        let w = self.cfg.bucket.0;
        let mut closed = false;
        while let Some(e) = self.open.first_entry() {
            if *e.key() + w > wm.millis() {
                break;
            }
            let start = *e.key();
            let b = e.remove();
            self.close(start, b, out);
            closed = true;
        }
        if closed {
            let horizon = wm.millis() - self.cfg.idle_eviction.0;
            for m in &mut self.series {
                m.retain(|_, s| s.last_seen.millis() >= horizon);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Detection>) {
        while let Some((start, b)) = self.open.pop_first() {
            self.close(start, b, out);
        }
    }

    fn state_keys(&self) -> usize {
        self.series.iter().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorEvent;

    fn obs(d: &mut AnomalyStream, svc: &str, t: i64, latency: Option<f64>) {
        let mut ev = ErrorEvent::new("x", EventTime(t), svc, Severity::Error, "boom");
        ev.latency_ms = latency;
        d.observe(
            &Observed {
                event: &ev,
                template: None,
                signatures: &[],
                late: false,
                watermark: EventTime(t - 1),
            },
            &mut Vec::new(),
        );
    }

    fn stream() -> AnomalyStream {
        AnomalyStream::new(
            &AnomalyStreamConfig::default(),
            &Signatures::new(Vec::new()).unwrap(),
        )
    }

    #[test]
    fn error_rate_jump_after_quiet_history_is_reported_with_evidence() {
        let mut d = stream();
        let mut out = Vec::new();
        for m in 0..300i64 {
            let n = if m < 280 { 2 } else { 60 };
            for i in 0..n {
                obs(&mut d, "api", m * 60_000 + i * 500, None);
            }
            d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
            if m == 279 {
                assert!(out.is_empty(), "steady background: {out:?}");
            }
        }
        assert!(!out.is_empty(), "a 30x jump is an anomaly");
        assert_eq!(out[0].detector, DetectorKind::Anomaly);
        assert_eq!(out[0].rule, "error_rate");
        assert_eq!(out[0].window.start, EventTime(280 * 60_000));
        assert!(
            out[0].evidence.contains("error rate 1.00/s vs normal"),
            "{}",
            out[0].evidence
        );
    }

    #[test]
    fn a_small_but_unusual_slowdown_is_not_an_anomaly() {
        // A very steady service: +25% is many spreads away from normal but
        // below the 1.5x material slowdown; 2x is reported.
        for (slow, expect) in [(125.0, false), (200.0, true)] {
            let mut d = stream();
            let mut out = Vec::new();
            for m in 0..400i64 {
                let v = if m < 350 {
                    100.0 + (m % 2) as f64
                } else {
                    slow
                };
                obs(&mut d, "api", m * 60_000, Some(v));
                d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
            }
            let lat = out.iter().filter(|o| o.rule == "latency").count();
            assert_eq!(lat > 0, expect, "slowdown to {slow}: {out:?}");
        }
    }

    #[test]
    fn latency_rise_is_reported_and_drop_is_not() {
        let mut d = stream();
        let mut out = Vec::new();
        for m in 0..400i64 {
            let fast = 100.0 + (m % 7) as f64;
            // "api" gets slow at minute 350; "web" gets much faster.
            obs(
                &mut d,
                "api",
                m * 60_000,
                Some(if m < 350 { fast } else { 2_000.0 }),
            );
            obs(
                &mut d,
                "web",
                m * 60_000,
                Some(if m < 350 { fast } else { 5.0 }),
            );
            d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
        }
        let lat: Vec<_> = out.iter().filter(|o| o.rule == "latency").collect();
        assert!(lat
            .iter()
            .any(|o| o.service == "api" && o.window.start.millis() == 350 * 60_000));
        assert!(
            lat.iter().all(|o| o.service != "web"),
            "faster is not an anomaly"
        );
    }

    #[test]
    fn silent_keys_are_evicted_and_keys_are_bounded() {
        let cfg = AnomalyStreamConfig {
            max_keys: 2,
            ..AnomalyStreamConfig::default()
        };
        let mut d = AnomalyStream::new(&cfg, &Signatures::new(Vec::new()).unwrap());
        obs(&mut d, "a", 0, None);
        obs(&mut d, "b", 0, None);
        obs(&mut d, "c", 0, None);
        assert_eq!(d.state_keys(), 2);
        assert_eq!(d.refused_keys, 1);
        let mut out = Vec::new();
        d.on_watermark(EventTime(60_000), &mut out);
        obs(&mut d, "a", 7 * 3_600_000, None);
        d.on_watermark(EventTime(7 * 3_600_000 + 60_000), &mut out);
        assert_eq!(d.state_keys(), 1, "b went quiet for over 6h");
    }
}
