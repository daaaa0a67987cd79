//! The one way a service's [`ServiceSignals`] are built: from detections,
//! folded by [`fold_detection`]. The live diagnosis folds every detection
//! of an incident's service with it (`DiagnosisStage::fold`), and
//! `reflex train` folds the detections [`window_detections`] builds from a
//! labelled incident's events with it ([`service_signals`]), so training and
//! run time cannot drift apart.
//!
//! A labelled incident holds only a few minutes of failing events around the
//! onset, too little history for the threshold and anomaly detectors'
//! learned normals (they warm up over hours). Training therefore stands in
//! for "a detector fired" with one-minute windows of at least
//! [`MIN_WINDOW_EVENTS`] failing events (all events as one window when none
//! has that many), and builds each window's detection with the detectors'
//! own [`Facts`] gatherer — the same bounded counts, samples and signature
//! hints every windowed detector emits.
//!
//! Guarantees: pure, deterministic; the result depends only on the events
//! (order within a window does not change counts or hints).

use super::features;
use super::rootcause::{add_hint, ServiceSignals};
use crate::detectors::facts::{Facts, Head, SignatureMeta};
use crate::detectors::signature::Signatures;
use crate::detectors::Observed;
use crate::model::DetectorKind;
use crate::model::{Detection, ErrorEvent, Window};
use std::collections::BTreeMap;

/// The detectors' window length.
pub const WINDOW_MS: i64 = 60_000;
/// A training window needs this many failing events to count as a detection.
pub const MIN_WINDOW_EVENTS: usize = 5;
/// The `detector` of the detections training builds.
pub const TRAIN_DETECTOR: DetectorKind = DetectorKind::Train;

/// Folds one detection of `sig`'s service into it: onset, score, hints,
/// counts under the detection's rule, sample templates, error types, HTTP
/// statuses, the strongest evidence line and the namespace.
pub fn fold_detection(sig: &mut ServiceSignals, d: &Detection) {
    sig.first_seen = Some(sig.first_seen.map_or(d.first_seen, |f| f.min(d.first_seen)));
    sig.score += d.score;
    for h in &d.hints {
        add_hint(sig, h.category, h.weight, h.about);
    }
    sig.add_tally(
        &format!("{}/{}", d.detector, d.rule),
        d.count,
        d.upstreams.iter().map(|u| (u.value.clone(), u.count)),
        d.nodes.iter().map(|n| (n.value.clone(), n.count)),
    );
    for m in &d.samples {
        features::bump(
            &mut sig.templates,
            &features::template(m),
            1,
            features::MAX_TEMPLATES,
        );
    }
    for e in &d.error_types {
        features::bump(
            &mut sig.error_types,
            &e.value,
            e.count,
            features::MAX_VALUES,
        );
    }
    for e in &d.http_statuses {
        features::bump(&mut sig.statuses, &e.value, e.count, features::MAX_VALUES);
    }
    if sig.evidence.as_ref().is_none_or(|(s, _)| d.score > *s) {
        sig.evidence = Some((d.score, d.evidence.clone()));
    }
    if sig.namespace.is_none() {
        sig.namespace.clone_from(&d.namespace);
    }
}

/// The detections training sees for one service's failing events (`evs`,
/// all of one service): one per one-minute window of at least
/// [`MIN_WINDOW_EVENTS`] events, or one over all of them when no window is
/// that busy; built by the detectors' [`Facts`].
pub fn window_detections(
    evs: &[&ErrorEvent],
    sigs: &Signatures,
    meta: &SignatureMeta,
) -> Vec<Detection> {
    let mut windows: BTreeMap<i64, Vec<&ErrorEvent>> = BTreeMap::new();
    for e in evs {
        windows
            .entry(e.time.millis().div_euclid(WINDOW_MS))
            .or_default()
            .push(e);
    }
    let mut groups: Vec<(Window, Vec<&ErrorEvent>)> = windows
        .into_iter()
        .filter(|(_, w)| w.len() >= MIN_WINDOW_EVENTS)
        .map(|(k, w)| {
            let start = crate::model::EventTime(k * WINDOW_MS);
            (
                Window {
                    start,
                    end: start.plus_ms(WINDOW_MS),
                },
                w,
            )
        })
        .collect();
    if groups.is_empty() {
        if let (Some(lo), Some(hi)) = (
            evs.iter().map(|e| e.time).min(),
            evs.iter().map(|e| e.time).max(),
        ) {
            groups.push((Window { start: lo, end: hi }, evs.to_vec()));
        }
    }
    let mut hits = Vec::new();
    let mut out = Vec::with_capacity(groups.len());
    for (window, w) in groups {
        let Some(first) = w.first() else { continue };
        let mut facts: Option<Facts> = None;
        for e in &w {
            sigs.matches(e, &mut hits);
            let o = Observed {
                event: e,
                template: None,
                signatures: &hits,
                late: false,
                watermark: e.time,
            };
            facts.get_or_insert_with(|| Facts::for_event(&o)).add(&o);
        }
        let Some(facts) = facts else { continue };
        out.push(facts.into_detection(
            meta,
            Head {
                detector: TRAIN_DETECTOR,
                rule: "window".to_string(),
                key: format!("service={}", first.service),
                score: 0.0,
                window,
                evidence: String::new(),
            },
        ));
    }
    out
}

/// One service's signals from its failing events, as training builds them:
/// [`window_detections`] folded by [`fold_detection`].
pub fn service_signals(
    evs: &[&ErrorEvent],
    sigs: &Signatures,
    meta: &SignatureMeta,
) -> ServiceSignals {
    let mut s = ServiceSignals::default();
    for d in window_detections(evs, sigs, meta) {
        fold_detection(&mut s, &d);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::classify::tests::burst;
    use super::super::classify::{signals_from_events, LabelledIncident};
    use super::super::{DiagnosisStage, Tracked};
    use super::*;
    use crate::config::Config;
    use crate::model::{Category, EventKind, Severity};

    fn sigs() -> Signatures {
        Config::embedded().expect("embedded config").signatures
    }

    /// A labelled sample: `orders` runs out of connections, `checkout` and
    /// `web` time out calling it, plus noise that is not part of it.
    fn sample() -> LabelledIncident {
        let t0 = 1_700_000_000_000;
        let mut events = burst(
            "orders",
            t0,
            14,
            &[
                (
                    "HikariPool-1 - Connection is not available, request timed out after 30000ms",
                    Some("java.sql.SQLTransientConnectionException"),
                    None,
                ),
                ("too many connections for role orders", None, Some(500)),
            ],
            None,
            "node-a",
        );
        events.extend(burst(
            "checkout",
            t0 + 5_000,
            80,
            &[
                ("upstream request timeout calling orders", None, Some(504)),
                ("POST /api/orders failed: 503", None, Some(503)),
            ],
            Some("orders"),
            "node-b",
        ));
        events.extend(burst(
            "web",
            t0 + 9_000,
            6,
            &[("GET /cart: upstream connect error", None, Some(502))],
            Some("checkout"),
            "node-c",
        ));
        // Not part of the incident: below error severity, and a bystander.
        let mut warn = events[0].clone();
        warn.severity = Severity::Warning;
        warn.message = "slow query".into();
        events.push(warn);
        events.extend(burst(
            "search",
            t0,
            7,
            &[("index refresh failed", None, None)],
            None,
            "node-d",
        ));
        LabelledIncident {
            category: Category::ResourceExhaustion,
            root_cause_service: "orders".into(),
            events,
        }
    }

    /// The live path for the same events: each service's failing events
    /// become detections and go through the diagnosis stage's own fold,
    /// into an incident of the root and its callers.
    fn live_signals(inc: &LabelledIncident, sigs: &Signatures) -> BTreeMap<String, ServiceSignals> {
        let meta = SignatureMeta::new(sigs);
        let mut per: BTreeMap<&str, Vec<&ErrorEvent>> = BTreeMap::new();
        for e in inc
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Error && e.severity >= Severity::Error)
        {
            per.entry(e.service.as_str()).or_default().push(e);
        }
        let mut tracked: Option<Tracked> = None;
        for svc in ["orders", "checkout"] {
            for d in window_detections(&per[svc], sigs, &meta) {
                let t = tracked.get_or_insert_with(|| Tracked::open(&d, None));
                DiagnosisStage::fold(t, &d, true);
            }
        }
        tracked.map(|t| t.signals).unwrap_or_default()
    }

    #[test]
    fn training_signals_equal_the_live_signals_of_the_same_events() {
        let s = sigs();
        let inc = sample();
        let trained = signals_from_events(&inc, &s).services;
        let live = live_signals(&inc, &s);
        assert_eq!(
            trained.keys().collect::<Vec<_>>(),
            vec!["checkout", "orders"]
        );
        assert_eq!(trained, live);
        // Not vacuous: the fold saw windows, hints, counts and templates.
        let orders = &trained["orders"];
        assert_eq!(orders.count, 14);
        assert!(!orders.self_hints.is_empty(), "{orders:?}");
        assert_eq!(trained["checkout"].upstreams.get("orders"), Some(&80));
        assert!(orders.templates.len() >= 2, "{orders:?}");
    }

    #[test]
    fn windows_below_the_floor_are_not_detections_unless_none_is_busy() {
        let s = sigs();
        let meta = SignatureMeta::new(&s);
        let t0 = 1_700_000_080_000; // 20 s before a minute boundary
        let evs = burst(
            "a",
            t0,
            24,
            &[("OutOfMemoryError: Java heap space", None, None)],
            None,
            "n",
        );
        let refs: Vec<&ErrorEvent> = evs.iter().collect();
        // 20 events in the first minute, 4 in the next: one detection.
        let ds = window_detections(&refs, &s, &meta);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].count, 20);
        assert_eq!(
            ds[0].window.end.millis() - ds[0].window.start.millis(),
            WINDOW_MS
        );
        // Only quiet windows: one detection over every event.
        let few: Vec<&ErrorEvent> = refs.iter().copied().step_by(6).collect();
        let ds = window_detections(&few, &s, &meta);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].count, few.len() as i64);
        assert!(window_detections(&[], &s, &meta).is_empty());
    }

    #[test]
    fn folding_is_the_max_of_hints_and_the_min_of_onsets() {
        let s = sigs();
        let meta = SignatureMeta::new(&s);
        let evs = burst(
            "a",
            1_700_000_000_000,
            150,
            &[("OutOfMemoryError: Java heap space", None, None)],
            None,
            "n",
        );
        let refs: Vec<&ErrorEvent> = evs.iter().collect();
        let ds = window_detections(&refs, &s, &meta);
        assert!(ds.len() >= 3);
        let mut fwd = ServiceSignals::default();
        ds.iter().for_each(|d| fold_detection(&mut fwd, d));
        let mut rev = ServiceSignals::default();
        ds.iter().rev().for_each(|d| fold_detection(&mut rev, d));
        assert_eq!(fwd.first_seen, Some(evs[0].time));
        assert_eq!(fwd.first_seen, rev.first_seen);
        assert_eq!(fwd.count, 150);
        assert_eq!(fwd.self_hints, rev.self_hints);
        assert!(fwd
            .self_hints
            .get(&Category::MemoryExhaustion)
            .is_some_and(|w| *w > 0.0));
    }
}
