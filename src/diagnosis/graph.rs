//! The service dependency graph: declared edges from the catalog plus edges
//! learned online from `upstream` fields (caller → upstream). Also remembers
//! which names have been seen as services, so an upstream that never
//! reports itself can be recognised as an external dependency, and which
//! callers name their upstreams in their own events (for those, a failure
//! naming none is not a failure of their calls).

use std::collections::{BTreeMap, BTreeSet};

/// Caller → callee edges with how often each was observed.
#[derive(Debug, Default, Clone)]
pub struct DependencyGraph {
    edges: BTreeMap<String, BTreeMap<String, u64>>,
    services: BTreeSet<String>,
    /// Names declared as services in the catalog.
    catalogued: BTreeSet<String>,
    /// Caller → callee edges declared in the catalog (trusted whatever the
    /// traces say).
    declared: BTreeMap<String, BTreeSet<String>>,
    /// Per caller, the callees it named in `upstream` fields (not inferred
    /// from trace order; bounded like `edges`).
    named: BTreeMap<String, BTreeSet<String>>,
    /// Callers whose own detections have named an upstream (bounded like
    /// `services`).
    namers: BTreeSet<String>,
}

/// Bound on learned edges per caller (memory; real fan-out is far smaller).
const MAX_EDGES_PER_SERVICE: usize = 256;
/// An edge observed this many times less often than its reverse is noise
/// of trace ordering, not a call (see [`DependencyGraph::callers`]).
const REVERSAL_RATIO: u64 = 8;
/// Bound on callers remembered as naming their upstreams.
const MAX_NAMERS: usize = 100_000;

impl DependencyGraph {
    /// Declares a catalogued service and its dependencies.
    pub fn declare(&mut self, service: &str, depends_on: &[String]) {
        self.catalogued.insert(service.to_string());
        self.services.insert(service.to_string());
        for d in depends_on {
            self.declared
                .entry(service.to_string())
                .or_default()
                .insert(d.to_string());
            self.add_edge(service, d, 0);
        }
    }

    /// Marks `name` as a service that reports its own events.
    pub fn saw_service(&mut self, name: &str) {
        if !self.services.contains(name) {
            self.services.insert(name.to_string());
        }
    }

    /// Marks `caller` as naming its upstreams in its own events (an
    /// `upstream` field, not an edge inferred from trace order).
    pub fn saw_named_upstream(&mut self, caller: &str) {
        if !self.namers.contains(caller) && self.namers.len() < MAX_NAMERS {
            self.namers.insert(caller.to_string());
        }
    }

    /// Whether `caller`'s events are known to name their upstreams: then a
    /// failure of it that names none is its own, whatever it calls.
    pub fn names_upstreams(&self, caller: &str) -> bool {
        self.namers.contains(caller)
    }

    /// Records that `caller` named `callee` in an `upstream` field: a direct
    /// call (trace order also pairs a service with whatever its callees
    /// call, several hops down).
    pub fn saw_named_edge(&mut self, caller: &str, callee: &str) {
        if caller == callee {
            return;
        }
        let out = self.named.entry(caller.to_string()).or_default();
        if !out.contains(callee) && out.len() < MAX_EDGES_PER_SERVICE {
            out.insert(callee.to_string());
        }
    }

    /// Records that `caller` called `callee` (`n` observations).
    pub fn add_edge(&mut self, caller: &str, callee: &str, n: u64) {
        if caller == callee {
            return;
        }
        let out = self.edges.entry(caller.to_string()).or_default();
        if let Some(c) = out.get_mut(callee) {
            *c += n;
        } else if out.len() < MAX_EDGES_PER_SERVICE {
            out.insert(callee.to_string(), n);
        }
    }

    /// Whether `caller` is known to call `callee`.
    pub fn calls(&self, caller: &str, callee: &str) -> bool {
        self.edges
            .get(caller)
            .is_some_and(|o| o.contains_key(callee))
    }

    /// Whether the two are directly connected either way.
    pub fn adjacent(&self, a: &str, b: &str) -> bool {
        self.calls(a, b) || self.calls(b, a)
    }

    /// Whether `name` is known as a service (reports events or is catalogued).
    pub fn is_service(&self, name: &str) -> bool {
        self.services.contains(name)
    }

    /// The known callers of `callee`, direct or a hop or more further out
    /// (a scan over all callers: for occasional questions, not per event):
    /// whoever's requests reach it. An edge seen far less often than its
    /// reverse is left out: trace order cannot tell who called whom when
    /// both err in one trace (skewed clocks, a caller logging its timeout
    /// before the callee logs the cause), so a gateway's backend is now and
    /// then "seen" calling the gateway. Declared edges stay.
    pub fn callers<'a>(&'a self, callee: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges
            .iter()
            .filter(move |(caller, o)| {
                // Declared edges are in `edges` too (with no observations).
                o.get(callee).is_some_and(|&n| {
                    self.declared_edge(caller, callee)
                        || self.count(callee, caller) < REVERSAL_RATIO * n.max(1)
                })
            })
            .map(|(c, _)| c.as_str())
    }

    /// The known direct callers of `callee`: [`Self::callers`] without
    /// those a trace pairs with a callee's callees. A caller that names its
    /// upstreams calls directly only what it names.
    pub fn direct_callers<'a>(&'a self, callee: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.callers(callee).filter(move |caller| {
            self.declared_edge(caller, callee)
                || !self.names_upstreams(caller)
                || self.named.get(*caller).is_some_and(|n| n.contains(callee))
        })
    }

    fn declared_edge(&self, caller: &str, callee: &str) -> bool {
        self.declared
            .get(caller)
            .is_some_and(|d| d.contains(callee))
    }

    /// Observations of `caller` calling `callee` (0 when declared only or unknown).
    fn count(&self, caller: &str, callee: &str) -> u64 {
        self.edges
            .get(caller)
            .and_then(|o| o.get(callee))
            .copied()
            .unwrap_or(0)
    }

    /// What `caller` depends on.
    pub fn callees(&self, caller: &str) -> impl Iterator<Item = &str> {
        self.edges
            .get(caller)
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_and_declared_edges() {
        let mut g = DependencyGraph::default();
        g.declare("web", &["api".to_string()]);
        g.add_edge("api", "db.example.com", 3);
        g.saw_service("api");
        assert!(g.calls("web", "api"));
        assert!(g.adjacent("api", "web"));
        assert!(!g.calls("api", "web"));
        assert!(g.is_service("api"));
        assert!(!g.is_service("db.example.com"));
        assert_eq!(g.callees("api").collect::<Vec<_>>(), vec!["db.example.com"]);
    }

    #[test]
    fn a_rare_reversed_edge_is_not_a_caller_a_mutual_one_is() {
        let mut g = DependencyGraph::default();
        g.add_edge("ingress", "gateway", 500);
        g.add_edge("gateway", "bff", 400);
        // One trace where the backend erred after the gateway.
        g.add_edge("bff", "gateway", 2);
        assert_eq!(g.callers("gateway").collect::<Vec<_>>(), vec!["ingress"]);
        assert!(g.calls("bff", "gateway"));
        // Real mutual calls, each seen often, stay both ways.
        g.add_edge("bff", "gateway", 100);
        assert_eq!(
            g.callers("gateway").collect::<Vec<_>>(),
            vec!["bff", "ingress"]
        );
        // A caller that names its upstreams calls only what it names; trace
        // order also pairs it with its callees' callees.
        g.saw_named_upstream("ingress");
        g.saw_named_edge("ingress", "gateway");
        g.add_edge("ingress", "bff", 40);
        assert!(!g.direct_callers("bff").any(|c| c == "ingress"));
        assert!(
            g.callers("bff").any(|c| c == "ingress"),
            "its requests reach it"
        );
        assert!(g.direct_callers("gateway").any(|c| c == "ingress"));
        // A declared edge stays whatever the traces say.
        g.declare("api", &["gateway".to_string()]);
        g.add_edge("api", "gateway", 3);
        g.add_edge("gateway", "api", 1000);
        assert!(g.callers("gateway").any(|c| c == "api"));
    }
}
