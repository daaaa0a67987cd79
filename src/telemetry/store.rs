//! The in-memory incident store behind `/api/incidents`: the latest record of
//! every open incident plus the most recently resolved ones.
//!
//! Guarantees: bounded (at most `max_open` open and `max_recent` resolved
//! incidents; beyond that the least recently updated open incident and the
//! oldest resolved one are forgotten), and each incident appears once, in
//! its latest state.

use crate::model::{Category, Incident, IncidentStatus};
use std::collections::{HashMap, VecDeque};

/// Open + recently resolved incidents.
#[derive(Debug)]
pub struct IncidentStore {
    open: HashMap<String, Incident>,
    recent: VecDeque<Incident>,
    max_open: usize,
    max_recent: usize,
}

/// Which incidents a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only incidents whose latest status is this.
    pub status: Option<IncidentStatus>,
    /// Only incidents whose root cause or affected services include this.
    pub service: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

impl IncidentStore {
    /// An empty store with the given bounds (each at least 1).
    pub fn new(max_open: usize, max_recent: usize) -> Self {
        IncidentStore {
            open: HashMap::new(),
            recent: VecDeque::new(),
            max_open: max_open.max(1),
            max_recent: max_recent.max(1),
        }
    }

    /// Applies one incident record.
    pub fn apply(&mut self, inc: &Incident) {
        if inc.status == IncidentStatus::Resolved {
            self.open.remove(&inc.incident_id);
            self.recent.retain(|i| i.incident_id != inc.incident_id);
            self.recent.push_back(inc.clone());
            while self.recent.len() > self.max_recent {
                self.recent.pop_front();
            }
            return;
        }
        // A reopened incident leaves the resolved list.
        self.recent.retain(|i| i.incident_id != inc.incident_id);
        self.open.insert(inc.incident_id.clone(), inc.clone());
        if self.open.len() > self.max_open {
            if let Some(oldest) = self
                .open
                .values()
                .min_by_key(|i| (i.updated_at, i.incident_id.clone()))
                .map(|i| i.incident_id.clone())
            {
                self.open.remove(&oldest);
            }
        }
    }

    /// Matching incidents, newest update first (ties by id).
    pub fn list(&self, f: &IncidentFilter) -> Vec<Incident> {
        let mut v: Vec<&Incident> = self
            .open
            .values()
            .chain(self.recent.iter())
            .filter(|i| f.status.is_none_or(|s| i.status == s))
            .filter(|i| {
                f.service
                    .as_deref()
                    .is_none_or(|s| i.root_cause_service == s || i.services.iter().any(|x| x == s))
            })
            .collect();
        v.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.incident_id.cmp(&b.incident_id))
        });
        v.into_iter()
            .take(f.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Open incidents per category, indexed like [`Category::ALL`].
    pub fn open_by_category(&self) -> Vec<u64> {
        let mut v = vec![0u64; Category::ALL.len()];
        for i in self.open.values() {
            v[super::metrics::category_index(i.category)] += 1;
        }
        v
    }

    /// (open, recent) sizes.
    pub fn sizes(&self) -> (usize, usize) {
        (self.open.len(), self.recent.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventTime, Severity};

    fn inc(id: &str, status: IncidentStatus, at: i64, service: &str) -> Incident {
        Incident {
            incident_id: id.into(),
            status,
            opened_at: EventTime(0),
            updated_at: EventTime(at),
            resolved_at: (status == IncidentStatus::Resolved).then_some(EventTime(at)),
            root_cause_service: service.into(),
            category: Category::Overload,
            confidence: 0.9,
            services: vec![service.into(), "caller".into()],
            summary: String::new(),
            evidence: Vec::new(),
            namespace: None,
            severity: Severity::Error,
        }
    }

    #[test]
    fn latest_state_once_bounded_and_filtered() {
        let mut s = IncidentStore::new(2, 2);
        s.apply(&inc("a", IncidentStatus::Open, 1, "x"));
        s.apply(&inc("b", IncidentStatus::Open, 2, "y"));
        s.apply(&inc("a", IncidentStatus::Updated, 3, "x"));
        s.apply(&inc("c", IncidentStatus::Open, 4, "z")); // evicts b (oldest update)
        let ids = |v: Vec<Incident>| v.into_iter().map(|i| i.incident_id).collect::<Vec<_>>();
        assert_eq!(ids(s.list(&IncidentFilter::default())), vec!["c", "a"]);
        s.apply(&inc("a", IncidentStatus::Resolved, 5, "x"));
        s.apply(&inc("c", IncidentStatus::Resolved, 6, "z"));
        s.apply(&inc("d", IncidentStatus::Resolved, 7, "z")); // recent keeps 2
        assert_eq!(s.sizes(), (0, 2));
        let f = IncidentFilter {
            status: Some(IncidentStatus::Resolved),
            service: Some("caller".into()),
            limit: Some(1),
        };
        assert_eq!(ids(s.list(&f)), vec!["d"]);
        assert_eq!(s.open_by_category().iter().sum::<u64>(), 0);
    }
}
