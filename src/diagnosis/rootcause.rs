//! Root-cause ranking and categorisation of one incident. Pure: a function of
//! the incident's per-service signals, the dependency graph and recent
//! changes; no I/O, no clock.
//!
//! Ranking, per candidate (each affected service, and each upstream named by
//! callers that is not affected itself — an external dependency, or a known
//! service that has gone silent, e.g. scaled to zero):
//! - **dependency direction** (weight 1.0): summed over the other affected
//!   services, the share of each one's failing events that name the candidate
//!   as `upstream` (half a vote when only the graph says it calls it),
//!   normalised by their number. Callers shout; the callee is the cause.
//! - **intrinsic evidence** (0.6): the strongest signature hint about the
//!   service itself (OOM, bad config, TLS) — errors "about someone else"
//!   (timeouts, refused connections to an upstream) count against (−0.4).
//! - **victim** (−0.6): the share of the candidate's own failing events that
//!   name other failing candidates as upstream (it is failing because of them).
//! - **onset** (0.3): the candidate failed first in event time.
//! - **recent change** (0.5, scaled down for victims): a `change` on the
//!   candidate shortly before onset.
//! - **outside** (0.2): an external or silent candidate, which cannot
//!   contribute its own evidence.
//!
//! Node-local network trouble comes first: when at least two affected
//! services (and half of them) fail mostly on one node with network errors
//! of their own, the node is the root and the category is `network`.
//!
//! Category: votes from the root's own hints plus half the weight of its
//! callers' dependency hints (the strongest caller's per category, not a sum); a recent change of the root makes it
//! `bad_deploy` (or `config_error` when configuration evidence dominates);
//! an external root is `dependency_failure`. A silent root (blamed, but
//! with no detection of its own) is capped below the usual auto-action
//! confidence unless a recent change on it explains the silence.

use crate::model::{About, Category, EventTime};

/// A root with at least this many of its own failing events in the incident
/// is "loud": its own errors, not its callers', must explain the category.
pub const LOUD_ROOT_EVENTS: i64 = 20;
/// Confidence in a verdict from the root's lead over the runner-up
/// (`margin`, 0..1) and the strength of the evidence for its category
/// (`category_share`, 0..1).
pub fn confidence(margin: f64, category_share: f64) -> f64 {
    (0.4 + 0.3 * margin + 0.3 * category_share).clamp(0.0, 1.0)
}

/// How many of the failing services name `root` in their failing calls.
fn callers_failing_on(services: &BTreeMap<String, ServiceSignals>, root: &str) -> usize {
    services
        .iter()
        .filter(|(n, s)| n.as_str() != root && s.upstreams.get(root).is_some_and(|c| *c > 0))
        .count()
}

/// Some failing service reports network trouble (name resolution, routes,
/// resets) of its own or on its calls: what a rollout does not cause, so a
/// silent root's recent change is no explanation.
fn network_trouble_among(services: &BTreeMap<String, ServiceSignals>) -> bool {
    services.values().any(|s| {
        s.self_hints
            .get(&Category::Network)
            .into_iter()
            .chain(s.dep_hints.get(&Category::Network))
            .any(|w| *w >= super::OWN_WAY)
    })
}

/// How soon after a change a silent service must have gone silent for the
/// change to be what broke it (a rollout takes effect within minutes).
const BREAKING_CHANGE_LEAD_MS: i64 = 5 * 60_000;

/// Confidence cap of a diagnosis a human should confirm (silent root, hearsay):
/// below the usual automatic-action threshold.
pub const SILENT_ROOT_CAP: f64 = 0.55;
/// Hops blame is followed along a chain of failing callers.
const BLAME_HOPS: usize = 4;
use std::collections::BTreeMap;

use super::graph::DependencyGraph;

// The per-service signals are shared with the feature vector: they live
// there, and this module (like every other user) imports them.
pub use super::features::{ServiceSignals, Tally};

/// A recent `change` on a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub service: String,
    pub time: EventTime,
    pub version: Option<String>,
    pub evidence: String,
    /// What changed (`attributes.change_type`: `deploy`, `config`, `scale`,
    /// ...; `deploy` when only a version is given).
    pub kind: String,
}

impl Change {
    /// A new version or configuration: a change that can break the service
    /// (a scale or restart runs the same code and settings).
    pub fn can_break(&self) -> bool {
        matches!(self.kind.as_str(), "config" | "deploy")
    }
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub root: String,
    /// The root is an external dependency, not a reporting service.
    pub external: bool,
    pub category: Category,
    pub confidence: f64,
    /// Facts in order of weight.
    pub evidence: Vec<String>,
    /// The change tied to the root, if any.
    pub change: Option<Change>,
    /// The root is a known service with no detection of its own.
    pub silent: bool,
    /// A change of the root shortly before onset (for a silent root: before
    /// the incident's onset).
    pub root_changed: bool,
    /// Upper bound on the confidence from the root alone (a silent root
    /// nothing explains), 1.0 when none.
    pub root_cap: f64,
    /// The root's lead over the runner-up candidate, relative to its score, in [0, 1].
    pub margin: f64,
    /// The rule-based category (before any learned classifier).
    pub rule: RuleCategory,
}

/// Ranks the candidates and categorises the winner.
pub fn diagnose(
    services: &BTreeMap<String, ServiceSignals>,
    graph: &DependencyGraph,
    changes: &std::collections::VecDeque<Change>,
    change_window_ms: i64,
    min_category_weight: f64,
) -> Option<Verdict> {
    diagnose_pinned(
        services,
        graph,
        changes,
        change_window_ms,
        min_category_weight,
        None,
    )
}

/// [`diagnose`], keeping `pinned` as the root whenever it is still a
/// candidate (an incident whose root was acted on, or whose new leader does
/// not explain the old root's failure, keeps its root: incident identity is
/// its root cause). The ranking evidence is reported as usual.
pub fn diagnose_pinned(
    services: &BTreeMap<String, ServiceSignals>,
    graph: &DependencyGraph,
    changes: &std::collections::VecDeque<Change>,
    change_window_ms: i64,
    min_category_weight: f64,
    pinned: Option<&str>,
) -> Option<Verdict> {
    let onset = services.values().filter_map(|s| s.first_seen).min()?;
    let n = services.len();
    let others = (n.saturating_sub(1)).max(1) as f64;

    // Candidates: affected services, plus upstreams they name that are not
    // affected themselves: external hosts (never report events) and silent
    // services (known, but emitting nothing — e.g. scaled to zero).
    let mut candidates: BTreeMap<String, bool> =
        services.keys().map(|s| (s.clone(), false)).collect();
    for s in services.values() {
        for u in s.upstreams.keys() {
            if !services.contains_key(u) {
                candidates.entry(u.clone()).or_insert(true);
            }
        }
    }

    let recent_change = |svc: &str, first: EventTime| -> Option<&Change> {
        changes
            .iter()
            .filter(|c| {
                c.service == svc
                    && c.time <= first
                    && first.millis() - c.time.millis() <= change_window_ms
            })
            .max_by_key(|c| c.time)
    };

    // How strongly `caller` blames `callee`: the share of its failing calls
    // that name it, or half a vote for a known edge without upstream data
    // (only for a caller whose events never name upstreams: one that does,
    // failing without naming any, fails on its own, whatever it calls).
    // Denominator: all its failing events (a service's few background
    // errors naming a dependency do not make it a victim of that dependency).
    let failing = |sig: &ServiceSignals| -> i64 { sig.count.max(sig.upstreams.values().sum()) };
    let blame = |caller: &str, sig: &ServiceSignals, callee: &str| -> f64 {
        let total = failing(sig);
        if !sig.upstreams.is_empty() && total > 0 {
            sig.upstreams.get(callee).copied().unwrap_or(0) as f64 / total as f64
        } else if !graph.names_upstreams(caller) && graph.calls(caller, callee) {
            0.5
        } else {
            0.0
        }
    };

    // Blame flows along chains: a caller failing on X, which itself fails
    // mostly calling Y, blames Y through X. Each affected service keeps the
    // share of the blame it receives that its own failure does not pass on
    // (1 − its victim share) and forwards the rest to the candidates it
    // names, in proportion; external and silent candidates keep all of it.
    // Without this, the middle of a chain (web → api → silent auth) outranks
    // the silent end: its callers blame it fully.
    // Dense indices over the candidates: the propagation below runs for
    // every affected service on every diagnosis, so it works on vectors
    // (masses reaching the same node in a hop are summed, which keeps the
    // work linear in the edges instead of growing with every path).
    let names: Vec<&str> = candidates.keys().map(String::as_str).collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let k = names.len();
    let mut out_edges: Vec<Vec<(usize, f64)>> = vec![Vec::new(); k];
    for (name, sig) in services {
        let Some(&i) = index.get(name.as_str()) else {
            continue;
        };
        out_edges[i] = names
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != name.as_str())
            .map(|(j, c)| (j, blame(name, sig, c)))
            .filter(|(_, b)| *b > 0.0)
            .collect();
    }
    let mut received = vec![0.0f64; k];
    let mut callers_of = vec![0usize; k];
    let (mut mass, mut next) = (vec![0.0f64; k], vec![0.0f64; k]);
    for name in services.keys() {
        let Some(&src) = index.get(name.as_str()) else {
            continue;
        };
        mass.fill(0.0);
        for &(c, b) in &out_edges[src] {
            callers_of[c] += 1;
            mass[c] += b;
        }
        // Chains are short; a few hops bound the work and break cycles.
        for hop in 0..BLAME_HOPS {
            next.fill(0.0);
            let mut pushed = false;
            for node in 0..k {
                let m = mass[node];
                if m == 0.0 {
                    continue;
                }
                if hop + 1 == BLAME_HOPS {
                    // The last hop keeps what it got: blame is never lost.
                    received[node] += m;
                    continue;
                }
                let fwd = out_edges[node].iter().filter(|(c, _)| *c != src);
                let passed: f64 = fwd.clone().map(|(_, b)| b).sum::<f64>().min(1.0);
                received[node] += m * (1.0 - passed);
                for &(c, b) in fwd {
                    next[c] += m * b;
                    pushed = true;
                }
            }
            if !pushed {
                break;
            }
            std::mem::swap(&mut mass, &mut next);
        }
    }

    let mut ranked: Vec<(f64, String, bool, Vec<String>)> = Vec::new();
    for (cand, &outside) in &candidates {
        let external = outside && !graph.is_service(cand);
        let mut why = Vec::new();
        let ci = index.get(cand.as_str()).copied();
        let callers = ci.map_or(0, |i| callers_of[i]);
        let blamed = ci.map_or(0.0, |i| received[i]);
        let callers_share = if outside {
            blamed / n as f64
        } else {
            blamed / others
        };
        let mut score = callers_share;
        if callers > 0 {
            why.push(format!(
                "{callers} affected service(s) depend on {cand} and fail calling it"
            ));
        }
        if let Some(sig) = services.get(cand) {
            let intrinsic = sig.self_hints.values().copied().fold(0.0, f64::max);
            let about_other = sig.dep_hints.values().copied().fold(0.0, f64::max);
            score += 0.6 * intrinsic - 0.4 * about_other;
            // Failing calls to other failing candidates: this one is a victim,
            // in proportion to how much of its failure is about them.
            let total = failing(sig);
            let victim = if total > 0 {
                sig.upstreams
                    .iter()
                    .filter(|(u, _)| *u != cand && candidates.contains_key(*u))
                    .map(|(_, c)| *c)
                    .sum::<i64>() as f64
                    / total as f64
            } else {
                0.0
            };
            score -= 0.6 * victim;
            if sig.first_seen == Some(onset) {
                score += 0.3;
                why.push(format!("{cand} failed first ({onset})"));
            }
            if let Some(c) = sig.first_seen.and_then(|f| recent_change(cand, f)) {
                score += 0.5 * (1.0 - victim);
                why.push(format!("change shortly before onset: {}", c.evidence));
            }
            // A lone service with only its own errors is its own root cause.
            if n == 1 {
                score += 0.5;
            }
        } else if external {
            score += 0.2;
            why.push(format!(
                "{cand} is an external dependency (it reports no events)"
            ));
        } else {
            score += 0.2;
            why.push(format!(
                "{cand} is silent while its callers fail (no instance answering?)"
            ));
        }
        ranked.push((score, cand.clone(), external, why));
    }
    // Node-local network trouble: the failing events of several affected
    // services come mostly from one node and carry network evidence of their
    // own. The node is the root (SPEC §3: escalate, or drain it).
    if let Some(node) = node_local_network(services).filter(|n| pinned.is_none_or(|p| p == n)) {
        let on_node: Vec<&String> = services
            .iter()
            .filter(|(_, s)| service_node(s, NODE_QUORUM_EVENTS).as_deref() == Some(node.as_str()))
            .map(|(k, _)| k)
            .collect();
        return Some(Verdict {
            evidence: vec![
                format!(
                    "{} affected service(s) fail mostly on node {node} with network errors: {}",
                    on_node.len(),
                    on_node
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("onset {onset}"),
            ],
            root: node,
            external: false,
            category: Category::Network,
            confidence: 0.75,
            change: None,
            silent: false,
            root_changed: false,
            root_cap: 1.0,
            margin: 1.0,
            rule: RuleCategory {
                category: Category::Network,
                share: 1.0,
                from_votes: true,
                hearsay: false,
                structural: false,
                votes: BTreeMap::new(),
            },
        });
    }

    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if let Some(k) = pinned.and_then(|p| ranked.iter().position(|r| r.1 == p)) {
        let r = ranked.remove(k);
        ranked.insert(0, r);
    }
    let (top_score, root, external, mut evidence) = ranked.first()?.clone();
    let runner_up = ranked.get(1).map_or(0.0, |r| r.0);

    let change = services
        .get(&root)
        .and_then(|s| s.first_seen)
        .and_then(|f| recent_change(&root, f))
        .cloned();
    // A silent root's change is the rules' only word about it (see
    // `categorise`), if it came just before the silence: a change that
    // breaks a service does so as it rolls out, while one that left it
    // serving for longer is a coincidence (harmless changes land all day).
    let silent = !external && !services.contains_key(&root);
    let silent_change = silent
        .then(|| recent_change(&root, onset))
        .flatten()
        .filter(|c| onset.millis() - c.time.millis() <= BREAKING_CHANGE_LEAD_MS);
    let rc = categorise_with(
        services,
        &root,
        external,
        change.as_ref().or(silent_change),
        min_category_weight,
        graph.direct_callers(&root).count(),
    );
    let best = (rc.category, 0.0);
    let category_share = rc.share;
    let from_votes = rc.from_votes;
    let hearsay = rc.hearsay;
    if let Some(c) = &change {
        if !external {
            evidence.push(format!("errors began after {}", c.evidence));
        }
    }
    for (c, w) in rc.votes.iter().filter(|(_, w)| **w > 0.0) {
        evidence.push(format!("signature votes {c} ({w:.2})"));
    }
    let margin = if top_score > 0.0 {
        ((top_score - runner_up) / top_score).clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Confidence in the whole verdict: the root's lead over the runner-up and
    // the category's share of the votes. `unknown` is never confident.
    let mut confidence = confidence(margin, category_share);
    // A silent service blamed by its callers: it may be down, or merely not
    // failing loudly enough to be detected. Confident only when a change on
    // it (e.g. scaled to zero) explains the silence.
    let mut root_cap: f64 = 1.0;
    let mut root_changed = change.is_some();
    if silent {
        root_changed = recent_change(&root, onset).is_some();
        match recent_change(&root, onset) {
            Some(c) => evidence.push(format!(
                "{root} changed before going silent: {}",
                c.evidence
            )),
            None => {
                confidence = confidence.min(SILENT_ROOT_CAP);
                root_cap = SILENT_ROOT_CAP;
            }
        }
    }
    if from_votes && hearsay {
        confidence = confidence.min(SILENT_ROOT_CAP);
        evidence.push(format!(
            "{} inferred only from callers' errors about {root}",
            best.0
        ));
    }
    if best.0 == Category::Unknown {
        confidence = confidence.min(0.5);
    }
    Some(Verdict {
        root,
        external,
        category: best.0,
        confidence,
        evidence,
        change,
        silent,
        root_changed,
        root_cap,
        margin,
        rule: rc,
    })
}

/// The rule-based category of an incident rooted at `root`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCategory {
    pub category: Category,
    /// The winning category's share of the votes (0.8 for a structural answer:
    /// an external root or a recent change).
    pub share: f64,
    /// The category came from signature votes (not from a change or an external root).
    pub from_votes: bool,
    /// Only the callers vouch for it while the root is loud with errors of
    /// its own that support nothing of the kind.
    pub hearsay: bool,
    /// The category follows from what happened to the root, not from
    /// anything it or its callers logged (a silent root's config change or
    /// deploy): the rules decide, whatever the classifier makes of the
    /// callers' errors.
    pub structural: bool,
    /// Votes per category: the root's own hints plus half its callers'
    /// dependency hints about it.
    pub votes: BTreeMap<Category, f64>,
}

/// Categorises an incident rooted at `root` from signature votes, a recent
/// change (`bad_deploy`, or `config_error` when configuration evidence
/// dominates) and an external root (`dependency_failure`).
pub fn categorise(
    services: &BTreeMap<String, ServiceSignals>,
    root: &str,
    external: bool,
    change: Option<&Change>,
    min_category_weight: f64,
) -> RuleCategory {
    categorise_with(services, root, external, change, min_category_weight, 2)
}

/// [`categorise`] for a root with `known_callers` callers in the
/// dependency graph: a silent root's change broke it when every caller
/// fails reaching it, or at least two do (a service that stopped serving
/// fails all its callers; a gateway's one backend has one).
pub fn categorise_with(
    services: &BTreeMap<String, ServiceSignals>,
    root: &str,
    external: bool,
    change: Option<&Change>,
    min_category_weight: f64,
    known_callers: usize,
) -> RuleCategory {
    let mut votes: BTreeMap<Category, f64> = BTreeMap::new();
    if let Some(sig) = services.get(root) {
        for (c, w) in &sig.self_hints {
            *votes.entry(*c).or_default() += w;
        }
    }
    // Callers' evidence about the root counts half, and once: many callers
    // seeing the same failure are one signal, not several.
    // Of a silent root, their own network trouble (they cannot resolve or
    // route) is evidence about the way to it too.
    let silent = !services.contains_key(root);
    let mut dep_votes: BTreeMap<Category, f64> = BTreeMap::new();
    for (name, sig) in services {
        if name != root && sig.upstreams.contains_key(root) {
            let own_network = sig
                .self_hints
                .get_key_value(&Category::Network)
                .filter(|_| silent);
            for (c, w) in sig.dep_hints.iter().chain(own_network) {
                let e = dep_votes.entry(*c).or_default();
                *e = e.max(0.5 * w);
            }
        }
    }
    for (c, w) in dep_votes {
        *votes.entry(c).or_default() += w;
    }
    let total: f64 = votes.values().sum();
    let mut best = votes
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(c, w)| (*c, *w))
        .unwrap_or((Category::Unknown, 0.0));
    let mut category_share = if total > 0.0 { best.1 / total } else { 0.0 };
    // Only the callers vouch for the category while the root is itself
    // bursting with errors of its own that support nothing of the kind: a
    // service loud enough to fail on its own is not "unreachable", and its
    // callers' impression ("connection refused to X") does not say why it
    // fails. Hearsay: not enough to act without a human.
    let hearsay = services
        .get(root)
        .is_some_and(|s| s.count >= LOUD_ROOT_EVENTS && !s.self_hints.contains_key(&best.0));
    let mut from_votes = false;
    let mut structural = false;
    if external {
        best = (Category::DependencyFailure, 1.0);
        category_share = 0.8;
    } else if let Some(c) = change.filter(|c| {
        silent
            && c.can_break()
            && callers_failing_on(services, root) >= known_callers.clamp(1, 2)
            && !network_trouble_among(services)
    }) {
        // A service that went silent right after its configuration changed
        // or a new version rolled out, with its callers failing to reach
        // it: the change broke it (it crashes on start, or listens
        // nowhere). Its callers' impression (refused, unavailable) is how
        // that looks from outside, not why. A service that stopped serving
        // fails all its callers: one caller's trouble after a change
        // nearby is no such break.
        best = if c.kind == "config" {
            (Category::ConfigError, 1.0)
        } else {
            (Category::BadDeploy, 1.0)
        };
        category_share = 0.8;
        structural = true;
    } else if change.is_some() && !silent {
        if best.0 != Category::ConfigError {
            best = (Category::BadDeploy, 1.0);
        }
        category_share = category_share.max(0.8);
    } else if best.1 < min_category_weight {
        best = (Category::Unknown, 0.0);
        category_share = 0.0;
    } else {
        from_votes = true;
    }
    RuleCategory {
        category: best.0,
        share: category_share,
        from_votes,
        hearsay,
        structural,
        votes,
    }
}

/// Adds one hint to per-category maxima.
pub fn add_hint(sig: &mut ServiceSignals, category: Category, weight: f64, about: About) {
    let m = match about {
        About::Itself => &mut sig.self_hints,
        About::Dependency => &mut sig.dep_hints,
    };
    let e = m.entry(category).or_insert(0.0);
    *e = e.max(weight);
}

/// Failing events a service needs on one node to show node trouble alone.
const NODE_EVENTS: i64 = 5;
/// Services that together show a node's trouble although each logs only a
/// few network errors there (a node-local fault spreads thin: every pod on
/// the node loses some connections, none enough to fire alone).
pub const NODE_QUORUM: usize = 3;
/// Failing events each member of a [`NODE_QUORUM`] needs on the node.
pub const NODE_QUORUM_EVENTS: i64 = 2;

/// The node a service's failing events come from, when one node holds at
/// least 70% of at least 5 of them and the service shows network evidence
/// (`network_weight`, its strongest network hint) of at least 0.15.
pub fn network_node<'a>(
    nodes: impl Iterator<Item = (&'a str, i64)>,
    network_weight: f64,
) -> Option<String> {
    network_node_min(nodes, network_weight, NODE_EVENTS)
}

/// [`network_node`] with at least `min_events` failing events.
pub fn network_node_min<'a>(
    nodes: impl Iterator<Item = (&'a str, i64)>,
    network_weight: f64,
    min_events: i64,
) -> Option<String> {
    if network_weight < 0.15 {
        return None;
    }
    let mut total = 0;
    let mut best: Option<(&str, i64)> = None;
    for (n, c) in nodes {
        total += c;
        if best.is_none_or(|b| c > b.1 || (c == b.1 && n < b.0)) {
            best = Some((n, c));
        }
    }
    best.filter(|b| total >= min_events.max(1) && b.1 * 10 >= total * 7)
        .map(|b| b.0.to_string())
}

/// The node of `s`'s failing events as [`network_node_min`] sees it.
pub fn service_node(s: &ServiceSignals, min_events: i64) -> Option<String> {
    let w = s.self_hints.get(&Category::Network).copied().unwrap_or(0.0);
    network_node_min(s.nodes.iter().map(|(k, v)| (k.as_str(), *v)), w, min_events)
}

/// The node shared, as their [`network_node`], by at least half of the
/// affected services: at least two of them, or at least [`NODE_QUORUM`]
/// with a few ([`NODE_QUORUM_EVENTS`]) network errors each.
pub fn node_local_network(services: &BTreeMap<String, ServiceSignals>) -> Option<String> {
    let mut per_node: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in services.values() {
        if let Some(n) = service_node(s, NODE_QUORUM_EVENTS) {
            let e = per_node.entry(n.clone()).or_default();
            e.1 += 1;
            if service_node(s, NODE_EVENTS).as_deref() == Some(n.as_str()) {
                e.0 += 1;
            }
        }
    }
    per_node
        .into_iter()
        .filter(|(_, (k, all))| {
            (*k >= 2 && *k * 2 >= services.len())
                || (*all >= NODE_QUORUM && *all * 2 >= services.len())
        })
        .max_by(|a, b| a.1 .1.cmp(&b.1 .1).then_with(|| b.0.cmp(&a.0)))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(node_counts: &[(&str, i64)], net: f64, first: i64) -> ServiceSignals {
        let mut s = ServiceSignals {
            first_seen: Some(EventTime(first)),
            score: 1.0,
            count: node_counts.iter().map(|x| x.1).sum(),
            ..ServiceSignals::default()
        };
        for (n, c) in node_counts {
            s.nodes.insert((*n).to_string(), *c);
        }
        if net > 0.0 {
            add_hint(&mut s, Category::Network, net, About::Itself);
        }
        s
    }

    #[test]
    fn callers_that_cannot_reach_a_silent_root_for_network_reasons_say_network() {
        // Two callers on different nodes fail calling a silent `auth`:
        // their own DNS errors outweigh a few timeouts read as overload.
        let mut m = BTreeMap::new();
        for (name, node) in [("web", "n1"), ("pay", "n2")] {
            let mut s = sig(&[(node, 30)], 0.6, 10);
            s.upstreams.insert("auth".into(), 30);
            add_hint(&mut s, Category::Overload, 0.25, About::Dependency);
            m.insert(name.to_string(), s);
        }
        let rc = categorise(&m, "auth", false, None, 0.25);
        assert_eq!(rc.category, Category::Network, "{:?}", rc.votes);
        // A loud root's callers' own network trouble is theirs, not a vote.
        m.insert("auth".to_string(), sig(&[("n3", 30)], 0.0, 5));
        let rc = categorise(&m, "auth", false, None, 0.25);
        assert_ne!(rc.category, Category::Network, "{:?}", rc.votes);
    }

    #[test]
    fn node_local_network_names_the_node() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), sig(&[("n1", 40), ("n2", 2)], 0.5, 10));
        m.insert("b".to_string(), sig(&[("n1", 30), ("n3", 1)], 0.4, 20));
        let v = diagnose(
            &m,
            &DependencyGraph::default(),
            &Default::default(),
            900_000,
            0.25,
        )
        .unwrap();
        assert_eq!(v.root, "n1");
        assert_eq!(v.category, Category::Network);
        // Without network evidence it is not a node problem.
        m.insert("a".to_string(), sig(&[("n1", 40)], 0.0, 10));
        assert!(node_local_network(&m).is_none());
    }

    #[test]
    fn a_caller_failing_on_an_external_host_is_a_victim() {
        let mut g = DependencyGraph::default();
        g.saw_service("notify");
        g.saw_service("orders");
        let mut notify = sig(&[("n1", 20), ("n2", 20)], 0.0, 10);
        notify.upstreams.insert("api.mail.example".into(), 38);
        add_hint(&mut notify, Category::Unavailable, 0.7, About::Dependency);
        let mut orders = sig(&[("n3", 30)], 0.0, 400);
        orders.upstreams.insert("notify".into(), 25);
        let mut m = BTreeMap::new();
        m.insert("notify".to_string(), notify);
        m.insert("orders".to_string(), orders);
        let v = diagnose(&m, &g, &Default::default(), 900_000, 0.25).unwrap();
        assert_eq!(v.root, "api.mail.example");
        assert!(v.external);
        assert_eq!(v.category, Category::DependencyFailure);
    }

    #[test]
    fn a_service_that_names_its_upstreams_and_names_none_fails_on_its_own() {
        // `ledger` exhausts its pool (its events name no upstream); its
        // callers fail calling it, two also a couple of calls to `config`,
        // which ledger is known to call from the background.
        let mut g = DependencyGraph::default();
        for s in ["ledger", "orders", "pay", "refunds"] {
            g.saw_service(s);
        }
        g.add_edge("ledger", "config", 40);
        let mut ledger = sig(&[("n1", 50)], 0.0, 140);
        add_hint(
            &mut ledger,
            Category::ResourceExhaustion,
            0.3,
            About::Itself,
        );
        let mut m = BTreeMap::new();
        m.insert("ledger".to_string(), ledger);
        for (name, calls, first) in [("orders", 25, 130), ("pay", 30, 110), ("refunds", 29, 120)] {
            let mut c = sig(&[("n2", 40)], 0.0, first);
            c.upstreams.insert("ledger".into(), calls);
            if name != "refunds" {
                c.upstreams.insert("config".into(), 2);
            }
            m.insert(name.to_string(), c);
        }
        // Without upstream fields from ledger, the known edge is a half vote
        // that ledger fails because of config.
        let v = diagnose(&m, &g, &Default::default(), 900_000, 0.25).unwrap();
        assert_eq!(v.root, "config", "{:?}", v.evidence);
        // Ledger's events do name upstreams (the background edge came from
        // them): failing while naming none, it fails on its own.
        g.saw_named_upstream("ledger");
        let v = diagnose(&m, &g, &Default::default(), 900_000, 0.25).unwrap();
        assert_eq!(v.root, "ledger", "{:?}", v.evidence);
    }
}
