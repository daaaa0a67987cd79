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
//!   node-local network incident. A caller failing on two incidents' roots
//!   counts toward each with its calls to that root. Anything else — a
//!   strong, independent failure — is a new incident.
//! - While *pending* (`settle` after its first detection, so the callers'
//!   detections can arrive before anyone acts on a premature root) an
//!   incident gathers connected strong detections (same service, adjacent in
//!   the dependency graph learned from the catalog, `upstream` fields and
//!   trace order, shared upstreams or trace ids, the same troubled node).
//!   When it settles, the services its root does not explain are split off
//!   into their own incident (two faults at once on connected services).
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
//!   dependency) must persist for three windows; and when that dependency
//!   has other callers, none of which fails on it, the trouble is that one
//!   edge's (a retry storm, a batch job's heavy queries), not an incident.
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

pub use config::DiagnosisConfig;

use crate::model::{Detection, EventTime, Incident, IncidentStatus, Severity};
use crate::stage::stats::Stats;
use crate::stage::Stage;
use crate::util::stable_id;
use catalog::Catalog;
use graph::DependencyGraph;
use rootcause::{Change, ServiceSignals};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use tracing::debug;

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
    /// Recovery emitted an action for this incident: its root is fixed.
    acted: bool,
    /// Ends of the windows with strong detections (the first few): a
    /// pending incident is confirmed by a second window or a second service
    /// (a one-window blip such as a retry storm is not a fault).
    windows: BTreeSet<i64>,
    /// The verdict last published (kept when a pinned root is no longer
    /// among the candidates, e.g. a node once its services left).
    verdict: Option<rootcause::Verdict>,
    /// Per service, the end of its last strong detection in this incident:
    /// a service quiet for `resolve_after` leaves it again.
    seen: BTreeMap<String, (EventTime, u32)>,
    /// Per dependency the incident's services fail calling, the strongest
    /// category (not `unknown`) its own weak detections name about itself,
    /// with its weight: a quiet root's own words, for the category only
    /// (they never add a service or keep the incident open).
    whispers: BTreeMap<String, (crate::model::Category, f64)>,
}

impl Tracked {
    /// A new pending incident opened by the strong detection `d`.
    fn open(d: &Detection, relapse_of: Option<String>) -> Tracked {
        Tracked {
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
            acted: false,
            windows: BTreeSet::new(),
            verdict: None,
            seen: BTreeMap::new(),
            whispers: BTreeMap::new(),
        }
    }

    /// Strong evidence in two windows, or two services (the second may be
    /// a quiet one on the same troubled node).
    fn confirmed(&self) -> bool {
        self.signals.len() >= 2 || self.windows.len() >= 2
    }

    /// Published and not resolved.
    fn live(&self) -> bool {
        self.resolved_at.is_none() && self.publish_at.is_none()
    }

    /// The published root cause, if any.
    fn root(&self) -> Option<&str> {
        self.last.as_ref().map(|l| l.0.as_str())
    }
}

/// Resolved incidents awaiting a relapse decision: id → (root, opened_at).
fn relapse_candidates(incidents: &[Tracked]) -> BTreeMap<String, (String, EventTime)> {
    incidents
        .iter()
        .filter(|t| t.relapse_pending)
        .filter_map(|t| Some((t.id.clone(), (t.last.as_ref()?.0.clone(), t.opened_at))))
        .collect()
}

/// A self-describing hint this strong, of another category than the
/// incident's, says a service fails "in its own way".
const OWN_WAY: f64 = 0.3;

/// A service fails "in its own way" for an incident of `category`: its
/// strongest self-describing hint is of another category, at least
/// [`OWN_WAY`] strong (a stray signature hit next to stronger evidence of the
/// incident's own kind does not count).
fn own_way(
    self_hints: impl Iterator<Item = (crate::model::Category, f64)>,
    category: crate::model::Category,
) -> bool {
    let (mut same, mut other) = (0.0f64, 0.0f64);
    for (c, w) in self_hints {
        if c == category {
            same = same.max(w);
        } else {
            other = other.max(w);
        }
    }
    other >= OWN_WAY && other > same
}

/// Whether a service's failure (`failing` events, `upstreams` it names with
/// counts, `own_way`: evidence of a failure of its own of another kind) is
/// explained by a set of failing services (`member`): most of the calls it
/// blames go to members and they are a third of its failing events (two
/// thirds when it also fails in its own way); without upstream data, it
/// calls a member (`calls_member`) and shows nothing of its own. A caller
/// failing a few calls to a member while failing mostly for other reasons
/// is not explained: that is chronic background, not this fault.
fn explained_by<'a>(
    failing: i64,
    upstreams: impl Iterator<Item = (&'a str, i64)>,
    own_way: bool,
    member: impl Fn(&str) -> bool,
    calls_member: impl FnOnce() -> bool,
) -> bool {
    let (mut named, mut total) = (0i64, 0i64);
    for (u, c) in upstreams {
        total += c;
        if member(u) {
            named += c;
        }
    }
    if total > 0 {
        let failing = failing.max(total);
        named > 0
            && 2 * named >= total
            && 3 * named >= failing
            && (!own_way || 3 * named >= 2 * failing)
    } else {
        !own_way && calls_member()
    }
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

    /// The lone witness of a settling incident: its root is silent or
    /// external (known only from complaints), and exactly one service fails,
    /// mostly calling it. Returns that caller, the root, and whether the
    /// root changed shortly before (a change explains the silence, so the
    /// witness need not wait for more windows; it is still the only one).
    fn lone_witness<'a>(&self, t: &'a Tracked) -> Option<(Witness<'a>, bool)> {
        if t.signals.len() != 1 {
            return None;
        }
        let v = self.verdict(&t.signals)?;
        if !(v.silent || v.external) {
            return None;
        }
        let (caller, sig) = t.signals.iter().next()?;
        let named = sig.upstreams.get(&v.root).copied().unwrap_or(0);
        (3 * named >= sig.count.max(1)).then_some(((caller.as_str(), sig, v.root), v.root_changed))
    }

    /// A settling incident is one caller failing its calls to a dependency
    /// that is fine for everyone else: a lone witness (see
    /// [`Self::lone_witness`]) of a dependency with at least two other known
    /// callers, none of which blamed it since shortly before the onset,
    /// while the caller neither changed recently nor fails in a way of its
    /// own. If the dependency were down (or a change of its own had broken
    /// it), its other callers would fail too:
    /// this is trouble on one edge (a retry storm, a batch job's heavy
    /// queries), not a fault of the dependency.
    fn one_edge_only(&self, t: &Tracked, (caller, sig, root): Witness<'_>) -> bool {
        let since = t.opened_at.millis() - self.cfg.change_window.0;
        if self
            .changes
            .iter()
            .any(|c| c.service == caller && c.time.millis() >= since)
        {
            return false;
        }
        // Evidence of a failure of the caller's own (not a description of
        // failing calls: timeouts, refusals, 5xx and overload are what a
        // failing dependency looks like from its caller).
        use crate::model::Category as C;
        let own = sig.self_hints.iter().any(|(c, w)| {
            *w >= OWN_WAY
                && !matches!(
                    c,
                    C::Overload | C::Unavailable | C::Network | C::DependencyFailure | C::Unknown
                )
        });
        if own {
            return false;
        }
        let recent = t.opened_at.millis() - SETTLE_MS;
        let failing_elsewhere = |u: &str| {
            self.blame
                .get(u)
                .is_some_and(|m| m.iter().any(|(c, at)| c != caller && at.millis() >= recent))
        };
        // Every dependency it blames for a quarter of its failures or more.
        let named: Vec<&str> = sig
            .upstreams
            .iter()
            .filter(|(_, c)| 4 * **c >= sig.count.max(1))
            .map(|(u, _)| u.as_str())
            .collect();
        if named.iter().any(|u| failing_elsewhere(u)) || failing_elsewhere(&root) {
            return false;
        }
        // Failing on several dependencies at once while nobody else fails
        // on any of them: the common factor is the caller.
        named.len() >= 2 || self.graph.callers(&root).filter(|c| *c != caller).count() >= 2
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
        for u in &d.upstreams {
            t.upstreams.insert(u.value.clone());
        }
        for x in &d.trace_ids {
            if t.traces.len() < MAX_TRACES {
                t.traces.insert(x.clone());
            }
        }
        if strong {
            if t.windows.len() < MAX_WINDOWS {
                t.windows.insert(d.window.end.millis());
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

    /// Diagnoses `t` and returns a record if something worth publishing changed.
    fn publish(&self, t: &mut Tracked, status: IncidentStatus, force: bool) -> Option<Incident> {
        let diagnose = |pinned: Option<&str>| {
            rootcause::diagnose_pinned(
                &t.signals,
                &self.graph,
                &self.changes,
                self.cfg.change_window.0,
                self.cfg.min_category_weight,
                pinned,
            )
        };
        let mut v = diagnose(None)?;
        // Incident identity is its root cause: an acted-on incident keeps
        // its root, and before any action the root moves only to a service
        // that explains the old root's failure.
        if let Some(old) = t.root().filter(|r| *r != v.root) {
            if t.acted || !Self::may_reroot(t, old, &v.root) {
                match diagnose(Some(old)).filter(|p| p.root == old) {
                    Some(p) => v = p,
                    None => v = t.verdict.clone()?,
                }
            }
        }
        t.verdict = Some(v.clone());
        if let Some(m) = &self.model {
            let node_local = rootcause::node_local_network(&t.signals).is_some();
            m.refine(&mut v, &t.signals, node_local);
        }
        // A quiet root: its callers' errors say it fails, and its own
        // errors, too few for a strong detection, say how. Callers only
        // see timeouts and refusals whatever the cause; the root's words
        // name the cause (a pool exhausted, the heap full), so they decide
        // the category, and the root is not silent after all.
        if v.silent && !v.root_changed && !t.acted {
            let words = t.whispers.get(&v.root).copied();
            if let Some((c, w)) = words.filter(|(_, w)| *w >= QUIET_ROOT_WORDS) {
                v.category = c;
                v.confidence = rootcause::confidence(v.margin, w).min(0.9);
                v.evidence.push(format!(
                    "{} logs errors of its own, too few to fire alone, that say {} ({:.2})",
                    v.root,
                    c.as_str(),
                    w
                ));
            }
        }
        // The action was chosen for this root and category: later context
        // does not turn the incident into another kind of fault.
        if let (true, Some(last)) = (t.acted, &t.last) {
            v.category = last.1;
        }
        let mut services: Vec<String> = t.signals.keys().cloned().collect();
        if !services.contains(&v.root) {
            services.push(v.root.clone());
        }
        services.sort();
        // A service nothing is known to depend on (no caller ever named
        // it): nothing corroborates the diagnosis and nobody is hurt, so a
        // human confirms before anything acts (the first run of a noisy
        // batch job looks just like it). Lifts once a caller is seen.
        if !t.acted
            && !v.external
            && self.graph.is_service(&v.root)
            && !self.called.contains(&v.root)
            && !self
                .catalog
                .services
                .values()
                .any(|e| e.depends_on.contains(&v.root))
        {
            v.confidence = v.confidence.min(rootcause::SILENT_ROOT_CAP);
            v.evidence.push(format!(
                "no other service is known to depend on {}: confidence capped for a human to confirm",
                v.root
            ));
        }
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
        let same_root = candidates
            .get(&old)
            .is_some_and(|(root, _)| self.verdict(&t.signals).is_some_and(|v| v.root == *root));
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
        let v = self.verdict(&incidents[i].signals)?;
        let network = v.category == crate::model::Category::Network;
        // Network errors on a node whose trouble is an incident (open or
        // settling): one of the node's services, not a fault of its own.
        let node_trouble = |q: &Tracked| {
            let root = match q.last.as_ref() {
                Some(l) => (l.1 == crate::model::Category::Network).then(|| l.0.clone()),
                None => self
                    .verdict(&q.signals)
                    .filter(|qv| qv.category == crate::model::Category::Network)
                    .map(|qv| qv.root),
            };
            root.is_some_and(|r| !self.graph.is_service(&r) && Self::on_node(&incidents[i], &r))
        };
        incidents.iter().enumerate().position(|(k, q)| {
            k != i
                && q.resolved_at.is_none()
                && ((q.publish_at.is_none() && q.last.as_ref().is_some_and(|l| l.0 == v.root))
                    || (network && node_trouble(q)))
        })
    }

    /// Folds `other`'s evidence into `into` (duplicates of one fault).
    fn absorb(into: &mut Tracked, other: Tracked) {
        for (svc, sig) in other.signals {
            into.signals.entry(svc).or_default().absorb(&sig);
        }
        into.upstreams.extend(other.upstreams);
        for (svc, (c, w)) in other.whispers {
            Self::whisper(into, &svc, c, w);
        }
        for (svc, (at, n)) in other.seen {
            let e = into.seen.entry(svc).or_insert((at, 0));
            e.0 = e.0.max(at);
            e.1 += n;
        }
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
        Self::fold(&mut t, d, strong);
        if t.live() {
            if let Some(rec) = self.publish(&mut t, IncidentStatus::Updated, false) {
                out.push(rec);
            }
        }
        self.incidents.insert(i, t);
    }

    /// The published incident `t` explains `d`'s failure: `d` fails calling
    /// `t`'s root or the services it explains (see [`explained_by`]), or
    /// fails on the same troubled node as a node-local network incident.
    fn explains(&self, t: &Tracked, d: &Detection) -> bool {
        let Some((root, category, ..)) = t.last.as_ref() else {
            return false;
        };
        if *category == crate::model::Category::Network
            && (Self::same_troubled_node(t, d)
                || rootcause::network_node(
                    d.nodes.iter().map(|n| (n.value.as_str(), n.count)),
                    1.0,
                )
                .as_deref()
                    == Some(root.as_str()))
        {
            return true;
        }
        if t.signals.len() >= MAX_INCIDENT_SERVICES && !t.signals.contains_key(&d.service) {
            return false;
        }
        let member = |s: &str| s == root || t.signals.contains_key(s);
        let ups = d.upstreams.iter().map(|u| (u.value.as_str(), u.count));
        let own_way = own_way(
            d.hints
                .iter()
                .filter(|h| h.about == crate::model::About::Itself)
                .map(|h| (h.category, h.weight)),
            *category,
        );
        explained_by(
            d.count,
            ups,
            own_way,
            |s| member(s),
            || member(&d.service) || self.graph.calls(&d.service, root),
        )
    }

    /// `d` restricted to its calls to `t`'s root and explained services (a
    /// caller failing on several open incidents' roots).
    fn share_for(t: &Tracked, d: &Detection) -> Detection {
        let member = |s: &str| t.root() == Some(s) || t.signals.contains_key(s);
        let mut part = d.clone();
        part.upstreams.retain(|u| member(&u.value));
        part.count = part.upstreams.iter().map(|u| u.count).sum::<i64>().max(1);
        part
    }

    /// Splits off the services of a settling incident that its root does not
    /// explain: they failed on their own (another fault at the same time,
    /// connected only by the graph), so they form their own incident.
    /// `None` when the root explains everything.
    fn split_unexplained(&self, t: &mut Tracked) -> Option<Tracked> {
        let v = self.verdict(&t.signals)?;
        let mut explained: BTreeSet<String> = BTreeSet::new();
        if t.signals.contains_key(&v.root) || v.external || v.silent {
            explained.insert(v.root.clone());
        } else {
            // A node: the services failing mostly on it (with network
            // errors of their own, or failing every call from there).
            for (s, sig) in &t.signals {
                let on_node = |min| {
                    rootcause::network_node_min(
                        sig.nodes.iter().map(|(k, c)| (k.as_str(), *c)),
                        1.0,
                        min,
                    )
                    .as_deref()
                        == Some(v.root.as_str())
                };
                let quorum = rootcause::service_node(sig, rootcause::NODE_QUORUM_EVENTS).as_deref()
                    == Some(v.root.as_str());
                if on_node(5) || quorum {
                    explained.insert(s.clone());
                }
            }
            explained.insert(v.root.clone());
        }
        loop {
            let before = explained.len();
            for (s, sig) in &t.signals {
                if explained.contains(s) {
                    continue;
                }
                let own_way = own_way(sig.self_hints.iter().map(|(c, w)| (*c, *w)), v.category);
                let ups = sig.upstreams.iter().map(|(u, c)| (u.as_str(), *c));
                if explained_by(
                    sig.count,
                    ups,
                    own_way,
                    |u| explained.contains(u),
                    || explained.iter().any(|e| self.graph.calls(s, e)),
                ) {
                    explained.insert(s.clone());
                }
            }
            if explained.len() == before {
                break;
            }
        }
        let rest: Vec<String> = t
            .signals
            .keys()
            .filter(|s| !explained.contains(*s))
            .cloned()
            .collect();
        if rest.is_empty() || rest.len() == t.signals.len() {
            return None;
        }
        let (mut signals, mut seen) = (BTreeMap::new(), BTreeMap::new());
        for s in rest {
            if let Some(at) = t.seen.remove(&s) {
                seen.insert(s.clone(), at);
            }
            if let Some(sig) = t.signals.remove(&s) {
                signals.insert(s, sig);
            }
        }
        // What stays began with its own first failure: the detection that
        // opened the pending incident may be one of those split off (an
        // unrelated storm that the fault's first callers happened to join),
        // and its time would date the fault before its onset.
        if let Some((first, service)) = t
            .signals
            .iter()
            .filter_map(|(s, sig)| Some((sig.first_seen?, s.clone())))
            .min()
            .filter(|(first, _)| *first > t.opened_at)
        {
            t.opened_at = first;
            t.id = stable_id("inc-", &[service.as_bytes(), &first.millis().to_be_bytes()]);
        }
        let (first, service) = signals
            .iter()
            .filter_map(|(s, sig)| Some((sig.first_seen?, s.clone())))
            .min()?;
        let namespace = signals.values().find_map(|s| s.namespace.clone());
        let upstreams: BTreeSet<String> = signals
            .values()
            .flat_map(|s| s.upstreams.keys().cloned())
            .collect();
        let whispers = t
            .whispers
            .iter()
            .filter(|(s, _)| upstreams.contains(*s))
            .map(|(s, w)| (s.clone(), *w))
            .collect();
        Some(Tracked {
            id: stable_id("inc-", &[service.as_bytes(), &first.millis().to_be_bytes()]),
            opened_at: first,
            publish_at: None,
            last_activity: t.last_activity,
            resolved_at: None,
            signals,
            upstreams,
            traces: BTreeSet::new(),
            namespace,
            last: None,
            relapse_of: None,
            relapse_pending: false,
            acted: false,
            windows: BTreeSet::new(),
            verdict: None,
            seen,
            whispers,
        })
    }

    /// Opens the incidents split off settling ones (each may split again),
    /// unless its root is already an open incident's root: then it joins it.
    fn open_splits(
        &self,
        incidents: &mut Vec<Tracked>,
        mut splits: Vec<Tracked>,
        out: &mut Vec<Incident>,
    ) {
        while let Some(mut n) = splits.pop() {
            splits.extend(self.split_unexplained(&mut n));
            // What split off is held to the same bar as a settling incident.
            if let Some(reason) = self.job_not_fault(&n) {
                debug!(incident_id = %n.id, reason, "Split incident not opened.");
                continue;
            }
            incidents.push(n);
            let i = incidents.len() - 1;
            if let Some(j) = self.duplicate_of(incidents, i) {
                if let Some(t) = incidents.pop() {
                    Self::absorb(&mut incidents[j], t);
                    if !incidents[j].live() {
                        continue;
                    }
                    if let Some(rec) =
                        self.publish(&mut incidents[j], IncidentStatus::Updated, false)
                    {
                        out.push(rec);
                    }
                }
                continue;
            }
            Stats::add(&self.stats.incidents_opened, 1);
            if let Some(rec) = self.publish(&mut incidents[i], IncidentStatus::Open, true) {
                out.push(rec);
            }
        }
    }

    /// Services other than the root that joined with a single strong
    /// detection and had none since for `resolve_after` leave the incident
    /// (a blip of background that happened to name the root, not a victim
    /// of the fault); the incident stays its root and what it explains.
    /// Returns whether any left.
    fn drop_quiet(&self, t: &mut Tracked, wm: EventTime) -> bool {
        let horizon = wm.millis() - self.cfg.resolve_after.0;
        let root = t.root().map(str::to_string);
        let quiet: Vec<String> = t
            .seen
            .iter()
            .filter(|(s, (at, n))| {
                *n <= 1 && at.millis() < horizon && root.as_deref() != Some(s.as_str())
            })
            .map(|(s, _)| s.clone())
            .collect();
        // Never empty an incident: the last service is what it is about.
        if quiet.is_empty() || quiet.len() >= t.signals.len() {
            return false;
        }
        for s in &quiet {
            t.seen.remove(s);
            t.signals.remove(s);
        }
        true
    }

    /// Remembers when `d` (strong) came from a batch job's run: a Job or
    /// CronJob in the catalog, or mostly from pods named as CronJob runs
    /// are (see [`workload`]).
    fn note_batch_run(&mut self, d: &Detection) {
        let declared = self
            .catalog
            .services
            .get(&d.service)
            .and_then(|e| e.kind.as_deref())
            .is_some_and(|k| k.eq_ignore_ascii_case("cronjob") || k.eq_ignore_ascii_case("job"));
        let runs = workload::mostly_cronjob_runs(
            d.instances.iter().map(|i| (i.value.as_str(), i.count)),
            d.window.end.millis(),
        );
        if !(declared || runs) {
            return;
        }
        if self.batch_runs.len() >= MAX_BATCH_RUNS && !self.batch_runs.contains_key(&d.service) {
            return;
        }
        let at = self.batch_runs.entry(d.service.clone()).or_insert(i64::MIN);
        *at = (*at).max(d.window.end.millis());
    }

    /// Watches weak evidence of node-local network trouble. A fault on a
    /// node's network spreads thin: every pod there loses a few
    /// connections, each too few to fire alone. When [`rootcause::NODE_QUORUM`]
    /// services log network errors of their own (a few each) mostly from
    /// one node within [`NODE_WATCH_MS`], that is the node's trouble: a
    /// pending incident opens with their evidence (the diagnosis then names
    /// the node), or, when an incident already covers the node, the quorum
    /// counts as its activity. Chronic noise rarely puts three services'
    /// network errors on one node at once; a single service never does.
    fn watch_node(&mut self, d: &Detection, out: &mut Vec<Incident>) -> bool {
        let w = d
            .hints
            .iter()
            .filter(|h| {
                h.category == crate::model::Category::Network
                    && h.about == crate::model::About::Itself
            })
            .map(|h| h.weight)
            .fold(0.0, f64::max);
        if w < OWN_WAY {
            return false;
        }
        let Some(node) =
            rootcause::network_node_min(d.nodes.iter().map(|n| (n.value.as_str(), n.count)), w, 1)
        else {
            return false;
        };
        if self.node_watch.len() >= MAX_NODES && !self.node_watch.contains_key(&node) {
            return false;
        }
        let horizon = d.window.end.millis() - NODE_WATCH_MS;
        let seen = self.node_watch.entry(node.clone()).or_default();
        seen.retain(|x| x.window.end.millis() > horizon);
        if seen.len() < MAX_NODE_DETECTIONS {
            seen.push(d.clone());
        }
        let mut per_service: BTreeMap<&str, i64> = BTreeMap::new();
        for x in seen.iter() {
            *per_service.entry(x.service.as_str()).or_default() += x.count;
        }
        let quorum = per_service
            .values()
            .filter(|c| **c >= rootcause::NODE_QUORUM_EVENTS)
            .count();
        // The trouble of a node already in an incident goes on while two
        // of its services keep failing there (its incident stays open); a
        // new one takes a full quorum.
        let covering = self
            .incidents
            .iter()
            .position(|t| t.resolved_at.is_none() && Self::on_node(t, &node));
        let needed = if covering.is_some() {
            2
        } else {
            rootcause::NODE_QUORUM
        };
        if quorum < needed {
            return false;
        }
        let found = std::mem::take(seen);
        if let Some(i) = covering {
            for x in &found {
                self.join(i, x, true, out);
            }
            return true;
        }
        let Some(first) = found.iter().min_by_key(|x| x.first_seen) else {
            return false;
        };
        debug!(node, services = quorum, "Node-local network trouble.");
        // The node's trouble coming back soon after its incident resolved
        // may be a relapse (decided when it settles, as for services).
        let reopen = self.cfg.reopen_within.0;
        let relapse_of = self
            .incidents
            .iter_mut()
            .find(|t| {
                !t.relapse_pending
                    && t.root() == Some(node.as_str())
                    && t.resolved_at
                        .is_some_and(|r| first.first_seen.millis() <= r.millis() + reopen)
            })
            .map(|t| {
                t.relapse_pending = true;
                t.id.clone()
            });
        let mut t = Tracked::open(first, relapse_of);
        for x in &found {
            Self::fold(&mut t, x, true);
        }
        self.incidents.push(t);
        true
    }

    /// `t` is about `node`'s network trouble: rooted there, or holding a
    /// service that fails mostly there with network errors of its own.
    fn on_node(t: &Tracked, node: &str) -> bool {
        t.root() == Some(node)
            || t.signals.values().any(|s| {
                rootcause::service_node(s, rootcause::NODE_QUORUM_EVENTS).as_deref() == Some(node)
            })
    }

    /// Every service failing in a settling incident is a batch job's run
    /// (failing during the incident): a job failing on its own, which its
    /// Job controller retries and its owner reads about in the job's
    /// report. Were a service it calls down, that service's other callers
    /// would fail too and open an incident rooted there.
    fn batch_only(&self, t: &Tracked) -> bool {
        let since = t.opened_at.millis() - SETTLE_MS;
        !t.seen.is_empty()
            && t.seen
                .keys()
                .all(|s| self.batch_runs.get(s).is_some_and(|at| *at >= since))
    }

    /// Why `t` is a job's doing rather than a fault: a batch job's run
    /// failing on its own, or a failure recurring on its schedule.
    fn job_not_fault(&self, t: &Tracked) -> Option<&'static str> {
        if self.batch_only(t) {
            Some("a batch job's run failing on its own")
        } else if self.recurring(t) {
            Some("a failure recurring on an hourly schedule")
        } else {
            None
        }
    }

    /// A settling incident is a scheduled failure recurring: every service
    /// failing in it is in an episode that repeats an earlier short one of
    /// its own a whole number of hours later (see [`recurrence`]).
    fn recurring(&self, t: &Tracked) -> bool {
        !t.seen.is_empty() && t.seen.keys().all(|s| self.episodes.recurs(s))
    }

    /// Before any action, an incident's root may move from `old` to `new`
    /// only when `new` explains `old`'s failure (`old` fails mostly calling
    /// `new`). A root only its callers named (external, silent, a node)
    /// stays: nothing of its own can show it was a victim.
    fn may_reroot(t: &Tracked, old: &str, new: &str) -> bool {
        match t.signals.get(old) {
            None => false,
            Some(sig) => {
                let failing = sig.count.max(sig.upstreams.values().sum());
                let named = sig.upstreams.get(new).copied().unwrap_or(0);
                named > 0 && 3 * named >= failing
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
        // Callers named in `upstream` fields (not inferred from trace order,
        // which also pairs a batch job with the services it hammers).
        if d.rule != "trace_cascade" {
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
        let reopen = self.cfg.reopen_within.0;
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
        if explaining.len() == 1 {
            self.join(explaining[0], &d, true, out);
            return;
        }
        if explaining.len() > 1 {
            for i in explaining {
                let part = Self::share_for(&self.incidents[i], &d);
                self.join(i, &part, true, out);
            }
            return;
        }
        // A pending incident gathers what is connected to it while its root
        // settles; what its root does not explain is split off when it
        // settles (`split_unexplained`).
        // Of several, the one holding the service it blames most: a caller
        // failing on a dependency belongs with that dependency's own
        // failure, not with whatever storm the graph also connects it to.
        let blamed = |t: &Tracked| {
            d.upstreams
                .iter()
                .filter(|u| t.signals.contains_key(&u.value))
                .map(|u| u.count)
                .max()
                .unwrap_or(0)
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
        let mut splits = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        for t in &mut incidents {
            if let Some(p) = t.publish_at {
                if wm < p {
                    continue;
                }
                let lone = self.lone_witness(t);
                let waits = lone.as_ref().is_some_and(|(_, changed)| !changed);
                let witness = lone.map(|(w, _)| w);
                let unconfirmed =
                    !t.confirmed() || (t.windows.len() < LONE_WITNESS_WINDOWS && waits);
                if unconfirmed && wm.millis() <= t.last_activity.millis() + SETTLE_MS {
                    // Unconfirmed: wait for the next window.
                    continue;
                }
                // A blip that did not come back, one edge's trouble, or a
                // job failing on its schedule: not opened (its detections
                // stay published on the detections topic).
                let not_opened = if unconfirmed {
                    Some("unconfirmed")
                } else if witness.is_some_and(|w| self.one_edge_only(t, w)) {
                    Some("one caller failing on a dependency that is fine for others")
                } else {
                    self.job_not_fault(t)
                };
                if let Some(reason) = not_opened {
                    debug!(incident_id = %t.id, reason, "Pending incident not opened.");
                    dropped.push(t.id.clone());
                    if let Some(old) = t.relapse_of.take() {
                        released.push(old);
                    }
                    continue;
                }
                t.publish_at = None;
                splits.extend(self.split_unexplained(t));
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
        self.open_splits(&mut incidents, splits, out);
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
        let mut splits = Vec::new();
        for t in &mut incidents {
            if t.publish_at.take().is_some() {
                splits.extend(self.split_unexplained(t));
                if self.settle(t, &candidates, &mut adopted, &mut released) {
                    Stats::add(&self.stats.incidents_opened, 1);
                }
                if let Some(rec) = self.publish(t, IncidentStatus::Open, true) {
                    out.push(rec);
                }
            }
        }
        self.open_splits(&mut incidents, splits, out);
        incidents.retain(|t| !(t.resolved_at.is_some() && adopted.contains(&t.id)));
        self.incidents = incidents;
    }
}
