//! Diagnosis: turns detections into incidents with a root cause, a category
//! (SPEC §3), a confidence and the evidence behind them.
//!
//! Correlation: a detection joins an open incident when it starts within
//! `correlation_gap` of the incident's last activity and is connected to it —
//! same service, adjacent in the dependency graph (catalog + learned from
//! `upstream` fields and from trace order, see the pattern detector's
//! `trace_cascade`), naming an affected service as its upstream, sharing an
//! external upstream, sharing trace ids, or failing mostly on the same node
//! with network errors — or when it is the open incident's root cause
//! failing again for the same reason, however long the pause. Otherwise a
//! strong enough detection opens a new incident.
//!
//! Lifecycle (event time): an incident is *pending* for `settle` after its
//! first detection so that the callers' detections of the same fault can
//! arrive before anyone acts on a premature root cause; then `open`;
//! `updated` when its root cause, category or services change; `resolved`
//! after `resolve_after` without detections (or when recovery verified a
//! fix, [`DiagnosisStage::resolve`]).
//!
//! Relapses: a strong detection on a resolved incident's root (unless it now
//! fails because of a dependency or for another category), or naming that
//! root as upstream in a third of its failing events, within `reopen_within`
//! of resolution starts a pending incident that *may* be a relapse. When it
//! settles, it reopens the old incident (same id) only if its own diagnosis
//! names the same root; otherwise it is a new incident — callers still
//! shouting about yesterday's culprit must not pull a new fault elsewhere
//! into the old incident.
//!
//! Duplicates: a pending incident whose diagnosis names the root of an open
//! incident joins that incident instead of opening; two open incidents that
//! come to name the same root are merged into the older one, and the younger
//! is published `resolved` with a "duplicate of …" evidence line.
//!
//! Keying: state is per correlation domain (everything the stage sees), so
//! in Kafka mode detections are keyed by namespace/cluster.

pub mod catalog;
pub mod classify;
pub mod config;
pub mod features;
pub mod graph;
pub mod rootcause;

pub use config::DiagnosisConfig;

use crate::model::{Detection, EventTime, Incident, IncidentStatus, Severity};
use crate::pipeline::stats::Stats;
use crate::pipeline::Stage;
use crate::util::stable_id;
use catalog::Catalog;
use graph::DependencyGraph;
use rootcause::{add_hint, Change, ServiceSignals};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Pending time before an incident is first published (event time).
const SETTLE_MS: i64 = 60_000;
/// Recent changes kept for deploy correlation.
const MAX_CHANGES: usize = 4096;
/// Trace ids kept per incident for linking.
const MAX_TRACES: usize = 256;

#[derive(Debug)]
struct Tracked {
    id: String,
    opened_at: EventTime,
    /// Watermark at which a pending incident is published.
    publish_at: Option<EventTime>,
    last_activity: EventTime,
    resolved_at: Option<EventTime>,
    signals: BTreeMap<String, ServiceSignals>,
    upstreams: BTreeSet<String>,
    traces: BTreeSet<String>,
    namespace: Option<String>,
    /// What was last published: (root, category, services, confidence).
    last: Option<(String, crate::model::Category, Vec<String>, f64)>,
    /// A pending incident that may be a relapse of this resolved one.
    relapse_of: Option<String>,
    /// (Resolved incidents) a pending incident is deciding whether it is a
    /// relapse of this one; no second candidate meanwhile.
    relapse_pending: bool,
}

/// Resolved incidents awaiting a relapse decision: id → (root, opened_at).
fn relapse_candidates(incidents: &[Tracked]) -> BTreeMap<String, (String, EventTime)> {
    incidents
        .iter()
        .filter(|t| t.relapse_pending)
        .filter_map(|t| Some((t.id.clone(), (t.last.as_ref()?.0.clone(), t.opened_at))))
        .collect()
}

/// The diagnosis stage.
pub struct DiagnosisStage {
    cfg: DiagnosisConfig,
    catalog: Arc<Catalog>,
    graph: DependencyGraph,
    changes: VecDeque<Change>,
    incidents: Vec<Tracked>,
    watermark: EventTime,
    stats: Arc<Stats>,
    /// The learned category classifier (absent: rules only).
    model: Option<Arc<classify::CategoryModel>>,
    /// Namespace last reported per service (any detection, changes included),
    /// so an incident rooted at a silent service still targets the right one.
    namespaces: BTreeMap<String, String>,
}

/// Bound on remembered service namespaces.
const MAX_NAMESPACES: usize = 65_536;

impl DiagnosisStage {
    /// A stage with the catalog's declared dependencies loaded.
    pub fn new(cfg: DiagnosisConfig, catalog: Arc<Catalog>, stats: Arc<Stats>) -> Self {
        let mut graph = DependencyGraph::default();
        for (name, entry) in &catalog.services {
            graph.declare(name, &entry.depends_on);
        }
        let model = if cfg.classifier {
            cfg.category_model
                .clone()
                .or_else(|| classify::builtin().map(|m| Arc::new(m.clone())))
        } else {
            None
        };
        DiagnosisStage {
            model,
            cfg,
            catalog,
            graph,
            changes: VecDeque::new(),
            incidents: Vec::new(),
            watermark: EventTime(i64::MIN),
            stats,
            namespaces: BTreeMap::new(),
        }
    }

    fn related(&self, t: &Tracked, d: &Detection) -> bool {
        if t.signals.contains_key(&d.service) {
            return true;
        }
        t.signals.keys().any(|s| {
            self.graph.adjacent(s, &d.service) || d.upstreams.iter().any(|u| &u.value == s)
        }) || d.upstreams.iter().any(|u| t.upstreams.contains(&u.value))
            || d.trace_ids.iter().any(|x| t.traces.contains(x))
            || Self::same_troubled_node(t, d)
    }

    /// The detection shows the service failing for another reason than the
    /// incident's `category`: mostly because of a dependency (a third of its
    /// failing events name one upstream, or strong evidence about a
    /// dependency), or with strong evidence of its own
    /// for a different category. Such a failure is not a relapse.
    fn other_trouble(d: &Detection, category: crate::model::Category) -> bool {
        let victim = d.upstreams.iter().any(|u| 3 * u.count >= d.count)
            || d.hints
                .iter()
                .any(|h| h.about == crate::model::About::Dependency && h.weight >= 0.3);
        let other = d.hints.iter().any(|h| {
            h.about == crate::model::About::Itself && h.weight >= 0.3 && h.category != category
        });
        victim || other
    }

    /// `d` is `t`'s published root cause failing again for the same reason
    /// (not because of a dependency, not for another category).
    fn root_again(t: &Tracked, d: &Detection) -> bool {
        t.last.as_ref().is_some_and(|(root, category, ..)| {
            d.service == *root && !Self::other_trouble(d, *category)
        })
    }

    /// Both fail mostly on the same node with network errors (node-local trouble).
    fn same_troubled_node(t: &Tracked, d: &Detection) -> bool {
        let w = d
            .hints
            .iter()
            .filter(|h| h.category == crate::model::Category::Network)
            .map(|h| h.weight)
            .fold(0.0, f64::max);
        let Some(node) =
            rootcause::network_node(d.nodes.iter().map(|n| (n.value.as_str(), n.count)), w)
        else {
            return false;
        };
        t.signals.values().any(|s| {
            let w = s
                .self_hints
                .get(&crate::model::Category::Network)
                .copied()
                .unwrap_or(0.0);
            rootcause::network_node(s.nodes.iter().map(|(k, v)| (k.as_str(), *v)), w).as_deref()
                == Some(node.as_str())
        })
    }

    fn fold(t: &mut Tracked, d: &Detection) {
        let sig = t.signals.entry(d.service.clone()).or_default();
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
        for u in &d.upstreams {
            t.upstreams.insert(u.value.clone());
        }
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
        for x in &d.trace_ids {
            if t.traces.len() < MAX_TRACES {
                t.traces.insert(x.clone());
            }
        }
        t.last_activity = t.last_activity.max(d.window.end);
        if sig.namespace.is_none() {
            sig.namespace.clone_from(&d.namespace);
        }
        if t.namespace.is_none() {
            t.namespace.clone_from(&d.namespace);
        }
    }

    /// Diagnoses `t` and returns a record if something worth publishing changed.
    fn publish(&self, t: &mut Tracked, status: IncidentStatus, force: bool) -> Option<Incident> {
        let mut v = rootcause::diagnose(
            &t.signals,
            &self.graph,
            &self.changes,
            self.cfg.change_window.0,
            self.cfg.min_category_weight,
        )?;
        if let Some(m) = &self.model {
            let node_local = rootcause::node_local_network(&t.signals).is_some();
            m.refine(&mut v, &t.signals, node_local);
        }
        let mut services: Vec<String> = t.signals.keys().cloned().collect();
        if !services.contains(&v.root) {
            services.push(v.root.clone());
        }
        services.sort();
        let key = (v.root.clone(), v.category, services.clone(), v.confidence);
        let changed = match &t.last {
            None => true,
            Some((r, c, s, conf)) => {
                r != &key.0 || *c != key.1 || s != &key.2 || (conf - key.3).abs() >= 0.1
            }
        };
        if !changed && !force {
            return None;
        }
        t.last = Some(key);
        let mut evidence = v.evidence.clone();
        let mut lines: Vec<(f64, String)> = t
            .signals
            .values()
            .filter_map(|s| s.evidence.clone())
            .collect();
        lines.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        evidence.extend(lines.into_iter().take(5).map(|(_, l)| l));
        let affected: Vec<&String> = services.iter().filter(|s| **s != v.root).collect();
        let what = if v.external {
            format!("external dependency {} is failing", v.root)
        } else {
            format!("{} shows {}", v.root, v.category.as_str().replace('_', " "))
        };
        let summary = if affected.is_empty() {
            format!("{what} (since {}).", t.opened_at)
        } else {
            format!(
                "{what}; {} other service(s) affected: {} (since {}).",
                affected.len(),
                affected
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                t.opened_at
            )
        };
        let severity = if services.len() >= 3 {
            Severity::Critical
        } else {
            Severity::Error
        };
        Stats::add(&self.stats.incident_records, 1);
        // The root's own namespace (actions target it), else the incident's.
        let namespace = t
            .signals
            .get(&v.root)
            .and_then(|s| s.namespace.clone())
            .or_else(|| self.namespaces.get(&v.root).cloned())
            .or_else(|| t.namespace.clone().filter(|_| v.external));
        Some(Incident {
            incident_id: t.id.clone(),
            status,
            opened_at: t.opened_at,
            updated_at: self.watermark.max(t.last_activity),
            resolved_at: t.resolved_at,
            root_cause_service: v.root,
            category: v.category,
            confidence: (v.confidence * 1000.0).round() / 1000.0,
            services,
            summary,
            evidence,
            namespace,
            severity,
        })
    }

    /// Publishes `incident_id` as `resolved` at `at` because recovery verified
    /// a fix; `evidence` (e.g. `verified: restart of payments succeeded, no
    /// errors for 5m`) leads the record's evidence. No-op for an unknown,
    /// unpublished or already resolved incident. A later relapse reopens it
    /// as usual.
    pub fn resolve(
        &mut self,
        incident_id: &str,
        at: EventTime,
        evidence: &str,
        out: &mut Vec<Incident>,
    ) {
        let Some(i) = self
            .incidents
            .iter()
            .position(|t| t.id == incident_id && t.resolved_at.is_none() && t.publish_at.is_none())
        else {
            return;
        };
        let mut t = self.incidents.remove(i);
        t.resolved_at = Some(at);
        if let Some(mut rec) = self.publish(&mut t, IncidentStatus::Resolved, true) {
            rec.evidence.insert(0, evidence.to_string());
            out.push(rec);
        }
        self.incidents.insert(i, t);
    }

    /// A pending incident is about to be published. When it is a possible
    /// relapse and its diagnosis names the resolved incident's root cause,
    /// it takes over that incident's id and opening time (the incident is
    /// reopened, not counted again); otherwise the resolved incident is
    /// released and this one is new. Returns whether it is a new incident.
    fn settle(
        &self,
        t: &mut Tracked,
        candidates: &BTreeMap<String, (String, EventTime)>,
        adopted: &mut Vec<String>,
        released: &mut Vec<String>,
    ) -> bool {
        let Some(old) = t.relapse_of.take() else {
            return true;
        };
        let same_root = candidates.get(&old).is_some_and(|(root, _)| {
            rootcause::diagnose(
                &t.signals,
                &self.graph,
                &self.changes,
                self.cfg.change_window.0,
                self.cfg.min_category_weight,
            )
            .is_some_and(|v| v.root == *root)
        });
        if same_root {
            if let Some((_, opened_at)) = candidates.get(&old) {
                t.opened_at = *opened_at;
            }
            t.id.clone_from(&old);
            adopted.push(old);
            false
        } else {
            released.push(old);
            true
        }
    }

    /// The open, published incident (other than `incidents[i]`) whose root
    /// cause is the root `incidents[i]` would be published with.
    fn duplicate_of(&self, incidents: &[Tracked], i: usize) -> Option<usize> {
        let v = rootcause::diagnose(
            &incidents[i].signals,
            &self.graph,
            &self.changes,
            self.cfg.change_window.0,
            self.cfg.min_category_weight,
        )?;
        incidents.iter().enumerate().position(|(k, q)| {
            k != i
                && q.resolved_at.is_none()
                && q.publish_at.is_none()
                && q.last.as_ref().is_some_and(|l| l.0 == v.root)
        })
    }

    /// Folds `other`'s evidence into `into` (duplicates of one fault).
    fn absorb(into: &mut Tracked, other: Tracked) {
        for (svc, sig) in other.signals {
            into.signals.entry(svc).or_default().absorb(&sig);
        }
        into.upstreams.extend(other.upstreams);
        for x in other.traces {
            if into.traces.len() < MAX_TRACES {
                into.traces.insert(x);
            }
        }
        into.opened_at = into.opened_at.min(other.opened_at);
        into.last_activity = into.last_activity.max(other.last_activity);
        if into.namespace.is_none() {
            into.namespace = other.namespace;
        }
    }

    /// Two open incidents that came to name the same root cause are one
    /// fault: the younger is folded into the older and published as
    /// resolved, its evidence saying where it went.
    fn merge_published_duplicates(&self, incidents: &mut Vec<Tracked>, out: &mut Vec<Incident>) {
        // The oldest open, published incident per root (one pass), then
        // every younger one with that root folds into it.
        let live = |t: &Tracked| t.resolved_at.is_none() && t.publish_at.is_none();
        let mut oldest: BTreeMap<&str, (EventTime, &str)> = BTreeMap::new();
        for t in incidents.iter().filter(|t| live(t)) {
            if let Some(l) = &t.last {
                let e = oldest
                    .entry(l.0.as_str())
                    .or_insert((t.opened_at, t.id.as_str()));
                if (t.opened_at, t.id.as_str()) < *e {
                    *e = (t.opened_at, t.id.as_str());
                }
            }
        }
        let merges: Vec<(String, String, String)> = incidents
            .iter()
            .filter(|t| live(t))
            .filter_map(|t| {
                let root = &t.last.as_ref()?.0;
                let (_, keep) = oldest.get(root.as_str())?;
                (*keep != t.id).then(|| (t.id.clone(), keep.to_string(), root.clone()))
            })
            .collect();
        for (dup, into, root) in merges {
            let (Some(i), Some(_)) = (
                incidents.iter().position(|t| t.id == dup),
                incidents.iter().position(|t| t.id == into),
            ) else {
                continue;
            };
            let mut t = incidents.remove(i);
            t.resolved_at = Some(self.watermark);
            if let Some(mut rec) = self.publish(&mut t, IncidentStatus::Resolved, true) {
                rec.evidence.insert(
                    0,
                    format!("duplicate of {into} (same root cause {root}); merged into it"),
                );
                rec.summary = format!("Merged into {into}: {}", rec.summary);
                out.push(rec);
            }
            if let Some(j) = incidents.iter().position(|q| q.id == into) {
                Self::absorb(&mut incidents[j], t);
                if let Some(rec) = self.publish(&mut incidents[j], IncidentStatus::Updated, false) {
                    out.push(rec);
                }
            }
        }
    }

    /// The catalog this stage was built with.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

impl Stage for DiagnosisStage {
    type In = Detection;
    type Out = Incident;

    fn process(&mut self, d: Detection, out: &mut Vec<Incident>) {
        if let Some(ns) = &d.namespace {
            if self.namespaces.len() < MAX_NAMESPACES || self.namespaces.contains_key(&d.service) {
                self.namespaces.insert(d.service.clone(), ns.clone());
            }
        }
        if d.detector == "change" {
            // A service that publishes changes is a service, not an external host.
            self.graph.saw_service(&d.service);
            if self.changes.len() >= MAX_CHANGES {
                self.changes.pop_front();
            }
            self.changes.push_back(Change {
                service: d.service.clone(),
                time: d.first_seen,
                version: d.version.clone(),
                evidence: d.evidence.clone(),
            });
            return;
        }
        self.graph.saw_service(&d.service);
        for u in &d.upstreams {
            self.graph.add_edge(&d.service, &u.value, u.count as u64);
        }
        let gap = self.cfg.correlation_gap.0;
        let reopen = self.cfg.reopen_within.0;
        // An open incident the detection belongs to comes first: a new fault
        // already being tracked must not lose its detections to an old
        // incident's relapse check.
        // The root cause of an open incident failing again after a pause
        // longer than the gap is still that incident (it is not resolved).
        let open = self.incidents.iter().position(|t| {
            t.resolved_at.is_none()
                && ((d.first_seen.millis() <= t.last_activity.millis() + gap
                    && self.related(t, &d))
                    || (d.score >= self.cfg.min_open_score && Self::root_again(t, &d)))
        });
        // A relapse of the same root cause reopens; a new failure of one of
        // its former victims is a new incident. Only a detection strong
        // enough to open an incident can reopen one: evidence-only records
        // (cascades, new templates) may not.
        let relapse = || {
            self.incidents.iter().position(|t| {
                t.resolved_at.is_some_and(|r| {
                    !t.relapse_pending
                        && d.first_seen.millis() <= r.millis() + reopen
                        && d.score >= self.cfg.min_open_score
                        && (Self::root_again(t, &d)
                            || t.last.as_ref().is_some_and(|(root, ..)| {
                                d.upstreams
                                    .iter()
                                    .any(|u| u.value == *root && 3 * u.count >= d.count)
                            }))
                })
            })
        };
        match open {
            Some(i) => {
                let mut t = self.incidents.remove(i);
                Self::fold(&mut t, &d);
                if t.publish_at.is_none() {
                    if let Some(rec) = self.publish(&mut t, IncidentStatus::Updated, false) {
                        out.push(rec);
                    }
                }
                self.incidents.insert(i, t);
            }
            None if d.score >= self.cfg.min_open_score => {
                // A possible relapse is tracked as a new pending incident
                // that remembers the resolved one; when it settles, it takes
                // over the old id only if it names the same root cause (see
                // `settle`). Deciding at once would let the first detection
                // (often a caller's, about the old root) decide for the whole
                // fault.
                let relapse_of = relapse().map(|i| {
                    self.incidents[i].relapse_pending = true;
                    self.incidents[i].id.clone()
                });
                let mut t = Tracked {
                    id: stable_id(
                        "inc-",
                        &[d.service.as_bytes(), &d.first_seen.millis().to_be_bytes()],
                    ),
                    opened_at: d.first_seen,
                    publish_at: Some(d.window.end.plus_ms(SETTLE_MS)),
                    last_activity: d.window.end,
                    resolved_at: None,
                    signals: BTreeMap::new(),
                    upstreams: BTreeSet::new(),
                    traces: BTreeSet::new(),
                    namespace: d.namespace.clone(),
                    last: None,
                    relapse_of,
                    relapse_pending: false,
                };
                Self::fold(&mut t, &d);
                self.incidents.push(t);
            }
            None => {}
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Incident>) {
        self.watermark = self.watermark.max(wm);
        let resolve_after = self.cfg.resolve_after.0;
        let reopen = self.cfg.reopen_within.0;
        let mut incidents = std::mem::take(&mut self.incidents);
        let candidates = relapse_candidates(&incidents);
        let (mut adopted, mut released) = (Vec::new(), Vec::new());
        // Pending incidents due now whose root cause is already the root of
        // an open incident are duplicates: they join it instead of opening.
        let mut i = 0;
        while i < incidents.len() {
            let due = incidents[i].publish_at.is_some_and(|p| wm >= p)
                && incidents[i].relapse_of.is_none();
            if let Some(j) = due.then(|| self.duplicate_of(&incidents, i)).flatten() {
                let t = incidents.remove(i);
                let j = if j > i { j - 1 } else { j };
                Self::absorb(&mut incidents[j], t);
                if let Some(rec) = self.publish(&mut incidents[j], IncidentStatus::Updated, false) {
                    out.push(rec);
                }
                continue;
            }
            i += 1;
        }
        for t in &mut incidents {
            if let Some(p) = t.publish_at {
                if wm >= p {
                    t.publish_at = None;
                    if self.settle(t, &candidates, &mut adopted, &mut released) {
                        Stats::add(&self.stats.incidents_opened, 1);
                    }
                    if let Some(rec) = self.publish(t, IncidentStatus::Open, true) {
                        out.push(rec);
                    }
                }
                continue;
            }
            if t.resolved_at.is_none() && wm.millis() > t.last_activity.millis() + resolve_after {
                t.resolved_at = Some(t.last_activity.plus_ms(resolve_after));
                if let Some(rec) = self.publish(t, IncidentStatus::Resolved, true) {
                    out.push(rec);
                }
            }
        }
        self.merge_published_duplicates(&mut incidents, out);
        incidents.retain(|t| {
            // A resolved incident whose relapse took over its id is gone.
            !(t.resolved_at.is_some() && adopted.contains(&t.id))
                && t.resolved_at
                    .is_none_or(|r| wm.millis() <= r.millis() + reopen)
        });
        for t in &mut incidents {
            if released.contains(&t.id) {
                t.relapse_pending = false;
            }
        }
        self.incidents = incidents;
        let horizon = wm.millis() - 2 * self.cfg.change_window.0;
        while self
            .changes
            .front()
            .is_some_and(|c| c.time.millis() < horizon)
        {
            self.changes.pop_front();
        }
    }

    fn flush(&mut self, out: &mut Vec<Incident>) {
        // Publish what is still pending; open incidents stay open (the input
        // ended, not the fault).
        let mut incidents = std::mem::take(&mut self.incidents);
        let candidates = relapse_candidates(&incidents);
        let (mut adopted, mut released) = (Vec::new(), Vec::new());
        for t in &mut incidents {
            if t.publish_at.take().is_some() {
                if self.settle(t, &candidates, &mut adopted, &mut released) {
                    Stats::add(&self.stats.incidents_opened, 1);
                }
                if let Some(rec) = self.publish(t, IncidentStatus::Open, true) {
                    out.push(rec);
                }
            }
        }
        incidents.retain(|t| !(t.resolved_at.is_some() && adopted.contains(&t.id)));
        self.incidents = incidents;
    }
}
