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
    /// Callers whose own detections have named an upstream (bounded like
    /// `services`).
    namers: BTreeSet<String>,
}

/// Bound on learned edges per caller (memory; real fan-out is far smaller).
const MAX_EDGES_PER_SERVICE: usize = 256;
/// Bound on callers remembered as naming their upstreams.
const MAX_NAMERS: usize = 100_000;

impl DependencyGraph {
    /// Declares a catalogued service and its dependencies.
    pub fn declare(&mut self, service: &str, depends_on: &[String]) {
        self.catalogued.insert(service.to_string());
        self.services.insert(service.to_string());
        for d in depends_on {
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

    /// The known callers of `callee` (a scan over all callers: for
    /// occasional questions, not per event).
    pub fn callers<'a>(&'a self, callee: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges
            .iter()
            .filter(move |(_, o)| o.contains_key(callee))
            .map(|(c, _)| c.as_str())
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
}
