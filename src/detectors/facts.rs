//! The facts a window gathers about one key — counts, upstreams, error types,
//! nodes, trace ids, sample messages, signature hits — and the [`Detection`]
//! built from them. Shared by every windowed detector so a detection carries
//! the same evidence whichever detector fired. Every list is bounded.

use super::signature::Signatures;
use super::Observed;
use crate::model::DetectorKind;
use crate::model::{About, Category, CategoryHint, Detection, EventTime, Window};
use crate::util::{stable_id, TopCounts};

/// Distinct values tracked per window for upstreams, error types, etc.
const TOP_CAP: usize = 8;
/// Sample messages kept per window.
const SAMPLE_CAP: usize = 3;
/// Trace ids kept per window (enough to link services, bounded).
const TRACE_CAP: usize = 16;

/// Everything gathered about one key in one window.
#[derive(Debug, Default)]
pub struct Facts {
    pub service: String,
    pub namespace: Option<String>,
    /// Events folded in.
    pub matched: u64,
    pub first_seen: Option<EventTime>,
    upstreams: TopCounts,
    error_types: TopCounts,
    statuses: TopCounts,
    nodes: TopCounts,
    instances: TopCounts,
    trace_ids: Vec<String>,
    samples: Vec<String>,
    version: Option<String>,
    /// (signature rule index, the event named its upstream, matching events).
    signature_hits: Vec<(usize, bool, u64)>,
}

impl Facts {
    /// Empty facts about `o`'s service.
    pub fn for_event(o: &Observed<'_>) -> Self {
        Facts {
            service: o.event.service.clone(),
            namespace: o.event.namespace.clone(),
            ..Facts::default()
        }
    }

    /// Folds one event in.
    pub fn add(&mut self, o: &Observed<'_>) {
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
            self.statuses.add(&s.to_string(), TOP_CAP);
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
        let calling = ev.upstream.is_some();
        for &s in o.signatures {
            match self
                .signature_hits
                .iter_mut()
                .find(|h| h.0 == s && h.1 == calling)
            {
                Some(h) => h.2 += 1,
                None => self.signature_hits.push((s, calling, 1)),
            }
        }
    }

    /// Replaces each upstream's failing-call count by `f(upstream, count)`
    /// (the threshold detector's edge normals; an upstream at its normal
    /// stays listed with 0).
    pub fn map_upstreams(&mut self, f: impl FnMut(&str, i64) -> i64) {
        self.upstreams.map_counts(f);
    }

    /// The detection these facts support.
    pub fn into_detection(self, meta: &SignatureMeta, head: Head) -> Detection {
        let hints = meta.hints(&self.signature_hits, self.matched);
        Detection {
            detection_id: stable_id(
                "det-",
                &[
                    head.detector.as_str().as_bytes(),
                    head.rule.as_bytes(),
                    head.key.as_bytes(),
                    &head.window.start.millis().to_be_bytes(),
                ],
            ),
            detector: head.detector,
            rule: head.rule,
            key: head.key,
            first_seen: self.first_seen.unwrap_or(head.window.start),
            service: self.service,
            namespace: self.namespace,
            score: head.score,
            window: head.window,
            evidence: head.evidence,
            count: self.matched as i64,
            hints,
            upstreams: self.upstreams.sorted(),
            error_types: self.error_types.sorted(),
            http_statuses: self.statuses.sorted(),
            nodes: self.nodes.sorted(),
            instances: self.instances.sorted(),
            trace_ids: self.trace_ids,
            samples: self.samples,
            version: self.version,
        }
    }
}

/// What a detector decided about a window; the rest comes from [`Facts`].
#[derive(Debug, Clone)]
pub struct Head {
    pub detector: DetectorKind,
    pub rule: String,
    pub key: String,
    pub score: f64,
    pub window: Window,
    pub evidence: String,
}

/// What a hint needs of one signature rule.
#[derive(Debug, Clone)]
struct RuleMeta {
    category: Category,
    weight: f64,
    name: String,
    about: About,
    /// `about` on events that name their upstream.
    calling: About,
}

/// The signature rules' metadata, indexed like the rules.
#[derive(Debug, Clone, Default)]
pub struct SignatureMeta(Vec<RuleMeta>);

impl SignatureMeta {
    /// Copies what hints need from compiled rules.
    pub fn new(s: &Signatures) -> Self {
        SignatureMeta(
            s.rules()
                .iter()
                .map(|r| RuleMeta {
                    category: r.category,
                    weight: r.weight,
                    name: r.name.clone(),
                    about: r.about,
                    calling: r.calling.unwrap_or(r.about),
                })
                .collect(),
        )
    }

    /// Hints from hit counts `(rule, on events naming an upstream, events)`:
    /// each rule's weight times the share of the window's events it matched,
    /// about whomever the rule says for events of that kind (hits of one rule
    /// describing the same party are summed); strongest first, ties by name
    /// then the service's own first.
    pub fn hints(&self, hits: &[(usize, bool, u64)], events: u64) -> Vec<CategoryHint> {
        let mut sums: Vec<(usize, About, u64)> = Vec::with_capacity(hits.len());
        for &(i, calling, n) in hits {
            let Some(r) = self.0.get(i) else { continue };
            let about = if calling { r.calling } else { r.about };
            match sums.iter_mut().find(|s| s.0 == i && s.1 == about) {
                Some(s) => s.2 += n,
                None => sums.push((i, about, n)),
            }
        }
        let mut h: Vec<CategoryHint> = sums
            .into_iter()
            .map(|(i, about, n)| {
                let r = &self.0[i];
                CategoryHint {
                    category: r.category,
                    weight: r.weight * (n as f64 / events.max(1) as f64).min(1.0),
                    source: r.name.clone(),
                    about,
                }
            })
            .collect();
        h.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| a.source.cmp(&b.source))
                .then_with(|| (a.about as u8).cmp(&(b.about as u8)))
        });
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::signature::SignatureRule;

    fn meta(calling: Option<About>) -> SignatureMeta {
        let rule = SignatureRule {
            name: "saturation".into(),
            category: Category::Overload,
            weight: 0.8,
            about: About::Itself,
            calling,
            message: Some("(?i)too many requests".into()),
            error_type: None,
            http_status: vec![429],
            exit_code: vec![],
        };
        SignatureMeta::new(&Signatures::new(vec![rule]).expect("compiles"))
    }

    #[test]
    fn a_rule_describes_the_upstream_on_calls_when_it_says_so() {
        // 6 of 10 events shed load themselves, 2 got a 429 back from an upstream.
        let hits = [(0, false, 6), (0, true, 2)];
        let h = meta(Some(About::Dependency)).hints(&hits, 10);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].about, h[0].weight), (About::Itself, 0.8 * 0.6));
        assert_eq!(h[1].about, About::Dependency);
        assert!((h[1].weight - 0.8 * 0.2).abs() < 1e-12);
        // Without `calling`, both kinds of hit are the service's own, summed.
        let h = meta(None).hints(&hits, 10);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].about, About::Itself);
        assert!((h[0].weight - 0.8 * 0.8).abs() < 1e-12);
    }
}
