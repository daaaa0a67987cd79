//! Node-local network trouble from weak evidence: a few network errors of
//! their own from several services on one node within minutes are that
//! node's fault (each alone is background). The node detector's
//! detections (the node's errors judged against its normal) count toward
//! the same quorum and feed the node's open incident directly.
//!
//! Keying: per node (bounded: `MAX_NODES` nodes, `MAX_NODE_DETECTIONS`
//! detections each, kept `NODE_WATCH_MS`).

use super::*;

impl DiagnosisStage {
    /// Watches weak evidence of node-local network trouble. A fault on a
    /// node's network spreads thin: every pod there loses a few
    /// connections, each too few to fire alone. When [`rootcause::NODE_QUORUM`]
    /// services log network errors of their own (a few each) mostly from
    /// one node within [`NODE_WATCH_MS`], that is the node's trouble: a
    /// pending incident opens with their evidence (the diagnosis then names
    /// the node), or, when an incident already covers the node, the quorum
    /// counts as its activity. Chronic noise rarely puts three services'
    /// network errors on one node at once; a single service never does.
    pub(super) fn watch_node(&mut self, d: &Detection, out: &mut Vec<Incident>) -> bool {
        let w = d
            .hints
            .iter()
            .filter(|h| {
                h.category == crate::model::Category::Network
                    && h.about == crate::model::About::Itself
            })
            .map(|h| h.weight)
            .fold(0.0, f64::max);
        // The node detector has judged the node as a whole against its
        // normal; other detections speak for it only with network errors
        // of their own.
        let judged = d.detector == crate::model::DetectorKind::Node;
        if w < OWN_WAY && !judged {
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
        let covering = self
            .incidents
            .iter()
            .position(|t| t.resolved_at.is_none() && Self::on_node(t, &node));
        if let (true, Some(i)) = (judged, covering) {
            self.join(i, d, true, out);
            return true;
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
    pub(super) fn on_node(t: &Tracked, node: &str) -> bool {
        t.root() == Some(node)
            || t.signals.values().any(|s| {
                rootcause::service_node(s, rootcause::NODE_QUORUM_EVENTS).as_deref() == Some(node)
            })
    }

    /// Every service of `t` that failed did so mostly on `node` (a silent
    /// root aside): callers on a broken node failing to reach a healthy
    /// upstream are the node's trouble, whatever their errors say.
    pub(super) fn fails_only_on(t: &Tracked, node: &str) -> bool {
        let mut failing = t
            .signals
            .values()
            .filter(|s| s.nodes.values().any(|c| *c > 0))
            .peekable();
        failing.peek().is_some()
            && failing.all(|s| {
                Self::home_of(s.nodes.iter().map(|(k, v)| (k.as_str(), *v)))
                    == Some(node.to_string())
            })
    }

    /// The node most of some failing events came from (the 70 % rule of
    /// [`rootcause::network_node_min`], whatever the errors say).
    fn home_of<'a>(nodes: impl Iterator<Item = (&'a str, i64)>) -> Option<String> {
        rootcause::network_node_min(nodes, 1.0, 1)
    }

    /// Remembers the node most of `d`'s events came from.
    pub(super) fn note_home(&mut self, d: &Detection) {
        let Some(home) = Self::home_of(d.nodes.iter().map(|n| (n.value.as_str(), n.count))) else {
            return;
        };
        if let Some(h) = self.homes.get_mut(&d.service) {
            *h = home;
        } else if self.homes.len() < MAX_NAMESPACES {
            self.homes.insert(d.service.clone(), home);
        }
    }

    /// `t` is `node`'s trouble seen from elsewhere: its root is silent in
    /// it and was last seen failing on `node` (callers everywhere failing
    /// to reach a service on a broken node).
    pub(super) fn silent_root_on(&self, t: &Tracked, root: &str, node: &str) -> bool {
        let silent = t
            .signals
            .get(root)
            .is_none_or(|s| s.nodes.values().all(|c| *c == 0));
        silent && self.homes.get(root).is_some_and(|h| h == node)
    }
}
