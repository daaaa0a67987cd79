//! Keeping an incident to one root: what a settling incident holds that its
//! root does not explain is split off as incidents of its own, and services
//! quiet for the resolve hold leave an open incident.
//!
//! Guarantee: a split never leaves a service in two incidents; the part
//! that stays dates from its own first failure.

use super::*;

/// Calls a caller's share of a second fault needs (a detection's floor).
const MIN_SHARE: i64 = 10;

impl DiagnosisStage {
    /// The published incident `t` explains `d`'s failure: `d` fails calling
    /// `t`'s root or the services it explains (see [`explained_by`]), or
    /// fails on the same troubled node as a node-local network incident.
    pub(super) fn explains(&self, t: &Tracked, d: &Detection) -> bool {
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
        let member = |s: &str| s == root || (t.speaks_for(s, d) && !t.estranged.contains(s));
        let ups = d.upstreams.iter().map(|u| (u.value.as_str(), u.count));
        // Without upstream data, a change of the service itself shortly
        // before it failed explains its failure better than an incident
        // elsewhere (a bad deploy of a victim of an earlier fault).
        // (Not for recurring new templates, which count only the events
        // that name no upstream: their lack of upstreams says nothing.)
        let changed = d.upstreams.is_empty()
            && d.rule != "recurring_new_template"
            && self.changed_before(&d.service, d.first_seen);
        let own_way = changed
            || own_way(
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

    /// `service` changed (deploy, config, ...) within `change_window` before `at`.
    pub(super) fn changed_before(&self, service: &str, at: EventTime) -> bool {
        self.changes.iter().any(|c| {
            c.service == service
                && c.time <= at
                && at.millis() - c.time.millis() <= self.cfg.change_window.0
        })
    }

    /// `d` restricted to its calls to `t`'s root and explained services (a
    /// caller failing on several open incidents' roots).
    pub(super) fn share_for(t: &Tracked, d: &Detection) -> Detection {
        let mut part = d.clone();
        part.upstreams.retain(|u| Self::speaks(t, &u.value, d));
        part.count = part.upstreams.iter().map(|u| u.count).sum::<i64>().max(1);
        part
    }

    /// `s` is `t`'s root or one of its services that speaks for it when judging `d`.
    fn speaks(t: &Tracked, s: &str, d: &Detection) -> bool {
        t.root() == Some(s) || (t.speaks_for(s, d) && !t.estranged.contains(s))
    }

    /// The part of `d` that the incidents `explaining` (which explain most
    /// of it) do not: its calls beyond their edges' normal to services one
    /// of them holds that have gone quiet there (they no longer fail on its
    /// root: down, a second fault), when they are a fifth of its failure
    /// and at least [`MIN_SHARE`] calls. A caller failing on a second fault
    /// while most of its failure is an open incident's counts toward each
    /// root with the calls it makes to it. Calls to upstreams no incident
    /// holds stay with the caller's failure as a whole (a batch job
    /// failing on everything it hammers is one edge's trouble).
    pub(super) fn unexplained_share(
        &self,
        explaining: &[usize],
        d: &Detection,
    ) -> Option<Detection> {
        let rest: Vec<_> = d
            .upstreams
            .iter()
            .filter(|u| {
                let held = |i: &usize| self.incidents[*i].signals.contains_key(&u.value);
                u.count > 0
                    && explaining.iter().any(held)
                    && !explaining
                        .iter()
                        .any(|&i| Self::speaks(&self.incidents[i], &u.value, d))
            })
            .cloned()
            .collect();
        let n: i64 = rest.iter().map(|u| u.count).sum();
        (n >= MIN_SHARE && 5 * n >= d.count).then(|| {
            let mut part = d.clone();
            part.upstreams = rest;
            part.count = n;
            part
        })
    }

    /// Splits off the services of a settling incident that its root does not
    /// explain: they failed on their own (another fault at the same time,
    /// connected only by the graph), so they form their own incident.
    /// `None` when the root explains everything.
    pub(super) fn split_unexplained(&self, t: &mut Tracked) -> Option<Tracked> {
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
        // Each part keeps its own windows and last activity: the bar to open
        // (a second window, a second service) is each part's own.
        let windows = t.windows_of(&signals.keys().collect());
        t.windows = t.windows_of(&t.signals.keys().collect());
        let last_of =
            |seen: &BTreeMap<String, (EventTime, u32)>| seen.values().map(|(at, _)| *at).max();
        let last_activity = last_of(&seen).unwrap_or(t.last_activity);
        if let Some(at) = last_of(&t.seen) {
            t.last_activity = at;
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
            last_activity,
            resolved_at: None,
            signals,
            upstreams,
            traces: BTreeSet::new(),
            namespace,
            last: None,
            relapse_of: None,
            relapse_pending: false,
            acted: false,
            windows,
            verdict: None,
            seen,
            heard: BTreeMap::new(),
            whispers,
            estranged: BTreeSet::new(),
        })
    }

    /// Services other than the root that joined with a single strong
    /// detection and had none since for `resolve_after` leave the incident
    /// (a blip of background that happened to name the root, not a victim
    /// of the fault); the incident stays its root and what it explains.
    /// Returns whether any left.
    pub(super) fn drop_quiet(&self, t: &mut Tracked, wm: EventTime) -> bool {
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
}
