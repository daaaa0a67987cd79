//! Diagnosis: turns detections into incidents with a root cause, a category
//! (SPEC §3), a confidence and the evidence behind them.
//!
//! Incident identity is a root cause: an incident is one root and the
//! services whose failure it explains, not everything connected to it.
//! - Only a **strong** detection (score ≥ `min_open_score`: threshold and
//!   anomaly detections, which are relative to each key's learned normal)
//!   opens an incident, adds a service to one or keeps one open. **Weak**
//!   evidence (cascades, trace cascades, new templates, sequences) is folded
//!   as context into services an incident already holds, and nothing more:
//!   on a real fleet callers fail a few calls to their upstreams all day,
//!   and letting that connect incidents kept one incident open for hours
//!   and swallowed every later fault.
//! - A strong detection joins a published incident when the incident
//!   explains it: it is the root failing again for the same reason (however
//!   long the pause), or most of the calls it blames go to the root or to
//!   services the incident explains (two thirds of its failures when it also
//!   fails in its own way), or, without upstream data, it calls them and
//!   shows no failure of its own, or it fails on the troubled node of a
//!   node-local network incident. A member whose latest strong detection
//!   the incident did not explain (a victim now failing on a new fault
//!   upstream of it) no longer speaks for it until it is explained again,
//!   so its callers' complaints about it do not join. A caller failing on two incidents' roots
//!   counts toward each with its calls to that root. Anything else — a
//!   strong, independent failure — is a new incident.
//! - While *pending* (`settle` after its first detection, so the callers'
//!   detections can arrive before anyone acts on a premature root) an
//!   incident gathers connected strong detections (same service, adjacent in
//!   the dependency graph learned from the catalog, `upstream` fields and
//!   trace order, shared upstreams or trace ids, the same troubled node).
//!   Threshold detections count each upstream's failing calls only beyond
//!   that edge's normal, so a noisy caller's usual failing calls tie it to
//!   nothing, and a shared upstream must be a fifth of its failure or more.
//!   A pending incident whose root is silent to it but failing loudly in
//!   another incident joins that one (a service failing on its upstream
//!   fails its callers too, whatever it logs).
//!   When it settles, the services its root does not explain are split off
//!   into their own pending incident (two faults at once on connected
//!   services), which keeps gathering its own evidence and is held to the
//!   same bar, as is what is left: two unrelated one-window blips do not
//!   confirm each other by landing in the same pending incident.
//! - The root of an incident that recovery acted on never changes; before
//!   any action it moves only to a service that explains the old root's
//!   failure (the old root fails mostly calling it).
//! - Services other than the root that had no strong detection for
//!   `resolve_after` leave the incident; an incident holds at most
//!   `MAX_INCIDENT_SERVICES` services.
//!
//! - A pending incident opens only when **confirmed**: strong evidence in a
//!   second window or on a second service (or weak network evidence from a
//!   second service on the same troubled node, the only weak evidence that
//!   may add a service, and only while the incident settles). A one-window blip (a harmless
//!   retry storm on one edge) that does not come back within the settle time
//!   is dropped; its detections remain on the detections topic.
//! - A settling incident whose every failing service repeats an earlier
//!   short episode of its own a whole number of hours later (± 5 minutes,
//!   up to a day; [`recurrence`]) is a scheduled job failing on schedule,
//!   not a new fault: it is logged and not opened (it opens once it
//!   outlasts the earlier run).
//! - A lone witness (one caller's complaints about a silent or external
//!   dependency) must persist for three windows, unless the dependency
//!   changed shortly before or its own weak detections name a failure of
//!   its own kind (a quiet `OOMKilled`); and when that dependency has other
//!   callers, none of which fails on it, the trouble is that one edge's (a
//!   retry storm, a batch job's heavy queries), not an incident. The same
//!   holds when the dependencies it blames log errors that say nothing
//!   about themselves on exactly those requests (echoes of one caller).
//! - At the end of input, what is pending is decided by the same bar,
//!   without waiting for windows that will not come.
//!
//! Lifecycle (event time): `open` when it settles; `updated` when its root
//! cause, category or services change; `resolved` when neither its root nor
//! the services it explains had a strong detection for `resolve_after` (so
//! other services' background and the root's baseline-level errors do not
//! keep it open), or when recovery verified a fix
//! ([`DiagnosisStage::resolve`]).
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
pub mod recurrence;
pub mod rootcause;
pub mod signals;
pub mod workload;

mod explain;
mod jobs;
mod merge;
mod node;
mod publish;
mod split;
mod tracked;
mod witness;

pub use config::DiagnosisConfig;

use crate::model::DetectorKind;
use crate::model::{Detection, EventTime, Incident, IncidentStatus, Severity};
use crate::stage::stats::Stats;
use crate::stage::Stage;
use crate::util::stable_id;
use catalog::Catalog;
use explain::{explained_by, own_way, OWN_WAY};
use graph::DependencyGraph;
use rootcause::{Change, ServiceSignals};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use tracing::debug;
use tracked::{relapse_candidates, Candidate, Tracked};
use witness::Due;

/// Pending time before an incident is first published (event time).
const SETTLE_MS: i64 = 60_000;
/// Recent changes kept for deploy correlation.
const MAX_CHANGES: usize = 4096;
/// Services one incident holds at most (its root and what it explains).
const MAX_INCIDENT_SERVICES: usize = 64;
/// Strong-detection windows remembered per incident (enough to confirm).
const MAX_WINDOWS: usize = 8;
/// Windows of strong evidence a lone witness needs (see
/// [`DiagnosisStage::lone_witness`]): one caller's complaints about a
/// dependency nobody else sees failing must outlast a retry storm.
const LONE_WITNESS_WINDOWS: usize = 3;
/// Trace ids kept per incident for linking.
const MAX_TRACES: usize = 256;

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
    /// Per service, the node its failing events last came from (when one
    /// node held most of them): where a service that falls silent runs.
    homes: BTreeMap<String, String>,
    /// Episodes of strong detections per service (scheduled failures).
    episodes: recurrence::Episodes,
    /// Services some caller named as its `upstream` (something depends on them).
    called: BTreeSet<String>,
    /// Per upstream, the callers whose strong detections mostly blamed it,
    /// with when they last did: whether a dependency's other callers fail
    /// too (weak cascades are chronic background on a real fleet).
    blame: BTreeMap<String, BTreeMap<String, EventTime>>,
    /// Per service, the end of its last strong detection that came from a
    /// batch job's run (ms): see [`Self::batch_only`].
    batch_runs: BTreeMap<String, i64>,
    /// Per node, recent weak detections of services failing there with
    /// network errors of their own: see [`Self::watch_node`].
    node_watch: BTreeMap<String, Vec<Detection>>,
}

/// Bound on services remembered in `called`.
const MAX_CALLED: usize = 65_536;
/// Bound on upstreams and callers per upstream remembered in `blame`.
const MAX_BLAME: usize = 65_536;
const MAX_BLAME_CALLERS: usize = 256;

/// A lone caller, its signals, and the dependency it blames.
type Witness<'a> = (&'a str, &'a ServiceSignals, String);

/// Bound on quiet dependencies whose own words an incident remembers.
const MAX_WHISPERS: usize = 16;
/// Weight of a quiet root's own evidence about itself that names the
/// category (the signature rules weigh a clear match 0.6 and more).
const QUIET_ROOT_WORDS: f64 = 0.5;

/// Bound on services remembered as batch job runs.
const MAX_BATCH_RUNS: usize = 65_536;

/// How long weak node evidence waits for a quorum of services (ms).
const NODE_WATCH_MS: i64 = 180_000;
/// Bounds on nodes watched and detections kept per node.
const MAX_NODES: usize = 1024;
const MAX_NODE_DETECTIONS: usize = 64;
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
            homes: BTreeMap::new(),
            episodes: recurrence::Episodes::default(),
            called: BTreeSet::new(),
            blame: BTreeMap::new(),
            batch_runs: BTreeMap::new(),
            node_watch: BTreeMap::new(),
        }
    }

    /// The diagnosis of `signals` with this stage's graph, changes and
    /// settings (no root pinned).
    fn verdict(&self, signals: &BTreeMap<String, ServiceSignals>) -> Option<rootcause::Verdict> {
        rootcause::diagnose(
            signals,
            &self.graph,
            &self.changes,
            self.cfg.change_window.0,
            self.cfg.min_category_weight,
        )
    }

    /// Remembers which upstreams `d` mostly blames (a third of its failing
    /// events or more).
    fn note_blame(&mut self, d: &Detection) {
        for u in d.upstreams.iter().filter(|u| 3 * u.count >= d.count) {
            if self.blame.len() >= MAX_BLAME && !self.blame.contains_key(&u.value) {
                continue;
            }
            let callers = self.blame.entry(u.value.clone()).or_default();
            if callers.len() < MAX_BLAME_CALLERS || callers.contains_key(&d.service) {
                let at = callers.entry(d.service.clone()).or_insert(d.window.end);
                *at = (*at).max(d.window.end);
            }
        }
    }

    fn related(&self, t: &Tracked, d: &Detection) -> bool {
        if t.signals.contains_key(&d.service) {
            return true;
        }
        // Upstreams `d` names beyond their edges' normal; a shared one must
        // be a fair part of `d`'s failure (a noisy caller's stray call to
        // an upstream another caller blames does not tie the two).
        let named = || d.upstreams.iter().filter(|u| u.count > 0);
        t.signals
            .keys()
            .any(|s| self.graph.adjacent(s, &d.service) || named().any(|u| &u.value == s))
            || named().any(|u| 5 * u.count >= d.count && t.upstreams.contains(&u.value))
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

    /// Remembers that `service` (a dependency of `t`'s services) said
    /// `category` about itself with `weight` in a weak detection.
    fn whisper(t: &mut Tracked, service: &str, category: crate::model::Category, weight: f64) {
        if category == crate::model::Category::Unknown
            || (t.whispers.len() >= MAX_WHISPERS && !t.whispers.contains_key(service))
        {
            return;
        }
        let w = t
            .whispers
            .entry(service.to_string())
            .or_insert((category, weight));
        if weight > w.1 {
            *w = (category, weight);
        }
    }

    /// Folds `d` into `t`. Only a strong detection (one that may open an
    /// incident) counts as activity: weak evidence (cascades, new templates,
    /// sequences) explains an incident but never keeps it open.
    fn fold(t: &mut Tracked, d: &Detection, strong: bool) {
        signals::fold_detection(t.signals.entry(d.service.clone()).or_default(), d);
        for u in d.upstreams.iter().filter(|u| u.count > 0) {
            t.upstreams.insert(u.value.clone());
        }
        for x in &d.trace_ids {
            if t.traces.len() < MAX_TRACES {
                t.traces.insert(x.clone());
            }
        }
        if !strong
            && d.upstreams.iter().any(|u| {
                u.count > 0
                    && u.value != d.service
                    && (t.signals.contains_key(&u.value) || t.root() == Some(u.value.as_str()))
            })
        {
            let e = t.heard.entry(d.service.clone()).or_insert(d.window.end);
            *e = (*e).max(d.window.end);
        }
        if strong {
            let end = d.window.end.millis();
            if t.windows.len() < MAX_WINDOWS || t.windows.contains_key(&end) {
                t.windows.entry(end).or_default().insert(d.service.clone());
            }
            t.last_activity = t.last_activity.max(d.window.end);
            let e = t.seen.entry(d.service.clone()).or_insert((d.window.end, 0));
            e.0 = e.0.max(d.window.end);
            e.1 += 1;
        }
        if t.namespace.is_none() {
            t.namespace.clone_from(&d.namespace);
        }
    }

    /// Recovery emitted an action for `incident_id`: from now on its root
    /// cause is fixed (acting on one service and then calling another the
    /// cause would make the action's incident a different fault).
    pub fn acted_on(&mut self, incident_id: &str) {
        for t in self.incidents.iter_mut().filter(|t| t.id == incident_id) {
            t.acted = true;
        }
    }

    /// Folds `d` into `incidents[i]` and publishes the change, if any.
    fn join(&mut self, i: usize, d: &Detection, strong: bool, out: &mut Vec<Incident>) {
        let mut t = self.incidents.remove(i);
        if strong {
            t.estranged.remove(&d.service);
        }
        Self::fold(&mut t, d, strong);
        if t.live() {
            if let Some(rec) = self.publish(&mut t, IncidentStatus::Updated, false) {
                out.push(rec);
            }
        }
        self.incidents.insert(i, t);
    }

    /// Before any action, an incident's root may move from `old` to `new`
    /// only when `new` explains `old`'s failure (`old` fails mostly calling
    /// `new`). A root only its callers named (external, silent, a node)
    /// stays: nothing of its own can show it was a victim. So does a root
    /// whose own words name the incident's category (an expired
    /// certificate of its own): it failed its own way, and failing later
    /// on a new fault upstream of it does not make it that fault's victim.
    fn may_reroot(t: &Tracked, old: &str, new: &str) -> bool {
        let said_so = |sig: &ServiceSignals| {
            t.last.as_ref().is_some_and(|(_, category, ..)| {
                *category != crate::model::Category::Unknown
                    && sig.self_hints.get(category).is_some_and(|w| *w >= OWN_WAY)
            })
        };
        match t.signals.get(old) {
            None => false,
            Some(sig) if said_so(sig) => false,
            Some(sig) => {
                let failing = sig.count.max(sig.upstreams.values().sum());
                let named = sig.upstreams.get(new).copied().unwrap_or(0);
                named > 0 && 3 * named >= failing
            }
        }
    }

    /// Routes a strong detection no published incident explains: into the
    /// pending incident it is connected to, or into a new pending incident
    /// (a possible relapse of a resolved one).
    fn gather(&mut self, d: Detection, out: &mut Vec<Incident>) {
        let gap = self.cfg.correlation_gap.0;
        let reopen = self.cfg.reopen_within.0;
        let within = |t: &Tracked| d.first_seen.millis() <= t.last_activity.millis() + gap;
        // A pending incident gathers what is connected to it while its root
        // settles; what its root does not explain is split off when it
        // settles (`split_unexplained`).
        // Of several, the one already holding the service (what split off
        // keeps gathering its own evidence), else the one holding the
        // service it blames most: a caller failing on a dependency belongs
        // with that dependency's own failure, not with whatever storm the
        // graph also connects it to.
        let blamed = |t: &Tracked| {
            let most = d
                .upstreams
                .iter()
                .filter(|u| t.signals.contains_key(&u.value))
                .map(|u| u.count)
                .max()
                .unwrap_or(0);
            (t.signals.contains_key(&d.service), most)
        };
        if let Some((i, _)) = self
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.resolved_at.is_none()
                    && t.publish_at.is_some()
                    && within(t)
                    && self.related(t, &d)
            })
            .map(|(i, t)| (i, blamed(t)))
            .max_by_key(|(i, b)| (*b, std::cmp::Reverse(*i)))
        {
            self.join(i, &d, true, out);
            return;
        }
        // A relapse of the same root cause reopens; a new failure of one of
        // its former victims is a new incident. A possible relapse is
        // tracked as a new pending incident that remembers the resolved
        // one; when it settles, it takes over the old id only if it names
        // the same root cause (see `settle`). Deciding at once would let the
        // first detection (often a caller's, about the old root) decide for
        // the whole fault.
        let relapse = self.incidents.iter().position(|t| {
            t.resolved_at.is_some_and(|r| {
                !t.relapse_pending
                    && d.first_seen.millis() <= r.millis() + reopen
                    && (Self::root_again(t, &d)
                        || t.last.as_ref().is_some_and(|(root, ..)| {
                            d.upstreams
                                .iter()
                                .any(|u| u.value == *root && 3 * u.count >= d.count)
                        }))
            })
        });
        let relapse_of = relapse.map(|i| {
            self.incidents[i].relapse_pending = true;
            self.incidents[i].id.clone()
        });
        let mut t = Tracked::open(&d, relapse_of);
        Self::fold(&mut t, &d, true);
        self.incidents.push(t);
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
        self.note_home(&d);
        if let Some(ns) = &d.namespace {
            if self.namespaces.len() < MAX_NAMESPACES || self.namespaces.contains_key(&d.service) {
                self.namespaces.insert(d.service.clone(), ns.clone());
            }
        }
        if d.detector == DetectorKind::Change {
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
                kind: d.rule.clone(),
            });
            return;
        }
        self.graph.saw_service(&d.service);
        if d.detector == DetectorKind::Node {
            // Already judged against the node's normal: evidence for the
            // node's trouble only, never a service's own incident (each
            // service logged only a few of the node's errors), and its
            // calls teach the graph nothing the other detectors do not.
            self.watch_node(&d, out);
            return;
        }
        for u in &d.upstreams {
            self.graph.add_edge(&d.service, &u.value, u.count as u64);
        }
        // Callers named in `upstream` fields (not inferred from trace order,
        // which also pairs a batch job with the services it hammers).
        if d.rule != "trace_cascade" {
            if !d.upstreams.is_empty() {
                self.graph.saw_named_upstream(&d.service);
            }
            for u in d.upstreams.iter().filter(|u| u.count > 0) {
                self.graph.saw_named_edge(&d.service, &u.value);
            }
            for u in &d.upstreams {
                if self.called.len() < MAX_CALLED && !self.called.contains(&u.value) {
                    self.called.insert(u.value.clone());
                }
            }
        }
        if d.score >= self.cfg.min_open_score {
            self.note_blame(&d);
            self.note_batch_run(&d);
            let prints = d
                .samples
                .iter()
                .map(|m| crate::util::stable_hash(&[features::template(m).as_bytes()]));
            self.episodes.observe(
                &d.service,
                d.first_seen.millis(),
                d.window.end.millis(),
                prints,
            );
        }
        let gap = self.cfg.correlation_gap.0;
        let within = |t: &Tracked| d.first_seen.millis() <= t.last_activity.millis() + gap;
        if d.score < self.cfg.min_open_score {
            if self.watch_node(&d, out) {
                return;
            }
            // Weak evidence (cascades, new templates, sequences) is context
            // for a service an incident already holds: it never opens an
            // incident, adds a service to one or keeps one open. On a real
            // fleet callers fail a little all day; letting that evidence
            // connect incidents kept one incident open for hours.
            if let Some(i) = self.incidents.iter().position(|t| {
                t.resolved_at.is_none() && within(t) && t.signals.contains_key(&d.service)
            }) {
                self.join(i, &d, false, out);
            } else if let Some(i) = self.incidents.iter().position(|t| {
                t.publish_at.is_some() && within(t) && Self::same_troubled_node(t, &d)
            }) {
                // The one exception: while an incident settles, services
                // failing with network errors on the same node as it are
                // the node's trouble spreading, each too quiet to fire
                // alone (a node-local network fault).
                self.join(i, &d, false, out);
            } else if let Some(t) = self
                .incidents
                .iter_mut()
                .find(|t| t.resolved_at.is_none() && within(t) && t.upstreams.contains(&d.service))
            {
                for h in d
                    .hints
                    .iter()
                    .filter(|h| h.about == crate::model::About::Itself)
                {
                    Self::whisper(t, &d.service, h.category, h.weight);
                }
            }
            return;
        }
        // The root cause of an incident failing again for the same reason is
        // that incident, however long the pause (it is not resolved).
        if let Some(i) = self
            .incidents
            .iter()
            .position(|t| t.resolved_at.is_none() && Self::root_again(t, &d))
        {
            self.join(i, &d, true, out);
            return;
        }
        // A published incident is its root and the services whose failure
        // it explains: a detection joins only when it is explained by it.
        // A caller failing on two open incidents' roots counts toward each
        // with the calls it makes to that root.
        let explaining: Vec<usize> = self
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, t)| t.live() && within(t) && self.explains(t, &d))
            .map(|(i, _)| i)
            .collect();
        for (i, t) in self.incidents.iter_mut().enumerate() {
            if t.live() && t.signals.contains_key(&d.service) && !explaining.contains(&i) {
                t.estranged.insert(d.service.clone());
            }
        }
        if !explaining.is_empty() {
            if explaining
                .iter()
                .any(|&i| self.incidents[i].root().is_some_and(|r| r != d.service))
            {
                self.episodes.victim(&d.service);
            }
            let rest = self.unexplained_share(&explaining, &d);
            if explaining.len() == 1 && rest.is_none() {
                self.join(explaining[0], &d, true, out);
            } else {
                for &i in &explaining {
                    let part = Self::share_for(&self.incidents[i], &d);
                    self.join(i, &part, true, out);
                }
            }
            if let Some(rest) = rest {
                self.gather(rest, out);
            }
            return;
        }
        self.gather(d, out);
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
                if incidents[j].live() {
                    if let Some(rec) =
                        self.publish(&mut incidents[j], IncidentStatus::Updated, false)
                    {
                        out.push(rec);
                    }
                }
                continue;
            }
            i += 1;
        }
        let mut parts = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        for t in &mut incidents {
            if let Some(p) = t.publish_at {
                if wm < p {
                    continue;
                }
                match self.due(t, Some(wm), &mut parts) {
                    Due::Wait => continue,
                    Due::Drop(reason) => {
                        debug!(incident_id = %t.id, opened_at = %t.opened_at, services = ?t.signals.keys().collect::<Vec<_>>(), reason, "Pending incident not opened.");
                        dropped.push(t.id.clone());
                        if let Some(old) = t.relapse_of.take() {
                            released.push(old);
                        }
                        continue;
                    }
                    Due::Open => {}
                }
                t.publish_at = None;
                if self.settle(t, &candidates, &mut adopted, &mut released) {
                    Stats::add(&self.stats.incidents_opened, 1);
                }
                if let Some(rec) = self.publish(t, IncidentStatus::Open, true) {
                    out.push(rec);
                }
                continue;
            }
            if t.live() && self.drop_quiet(t, wm) {
                if let Some(rec) = self.publish(t, IncidentStatus::Updated, false) {
                    out.push(rec);
                }
            }
            if t.resolved_at.is_none() && wm.millis() > t.last_activity.millis() + resolve_after {
                t.resolved_at = Some(t.last_activity.plus_ms(resolve_after));
                if let Some(rec) = self.publish(t, IncidentStatus::Resolved, true) {
                    out.push(rec);
                }
            }
        }
        incidents.retain(|t| !(t.publish_at.is_some() && dropped.contains(&t.id)));
        incidents.extend(parts);
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
        // Decide what is still pending, by the same bar but without waiting
        // for windows that will not come; open incidents stay open (the
        // input ended, not the fault).
        let mut incidents = std::mem::take(&mut self.incidents);
        let candidates = relapse_candidates(&incidents);
        let (mut adopted, mut released) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < incidents.len() {
            if incidents[i].publish_at.is_none() {
                i += 1;
                continue;
            }
            if incidents[i].relapse_of.is_none() {
                if let Some(j) = self.duplicate_of(&incidents, i) {
                    let t = incidents.remove(i);
                    let j = if j > i { j - 1 } else { j };
                    Self::absorb(&mut incidents[j], t);
                    if incidents[j].live() {
                        if let Some(rec) =
                            self.publish(&mut incidents[j], IncidentStatus::Updated, false)
                        {
                            out.push(rec);
                        }
                    }
                    continue;
                }
            }
            let mut parts = Vec::new();
            let t = &mut incidents[i];
            if let Due::Drop(reason) = self.due(t, None, &mut parts) {
                debug!(incident_id = %t.id, opened_at = %t.opened_at, services = ?t.signals.keys().collect::<Vec<_>>(), reason, "Pending incident not opened.");
                if let Some(old) = t.relapse_of.take() {
                    released.push(old);
                }
                incidents.remove(i);
                incidents.extend(parts);
                continue;
            }
            t.publish_at = None;
            if self.settle(t, &candidates, &mut adopted, &mut released) {
                Stats::add(&self.stats.incidents_opened, 1);
            }
            if let Some(rec) = self.publish(t, IncidentStatus::Open, true) {
                out.push(rec);
            }
            incidents.extend(parts);
            i += 1;
        }
        incidents.retain(|t| !(t.resolved_at.is_some() && adopted.contains(&t.id)));
        for t in &mut incidents {
            if released.contains(&t.id) {
                t.relapse_pending = false;
            }
        }
        self.incidents = incidents;
    }
}
