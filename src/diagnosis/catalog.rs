//! The service catalog (SPEC §5): per service its namespace, workload,
//! dependencies, criticality, owning team and change-freeze windows.

use crate::model::EventTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much a service matters; raises the risk of acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// A change-freeze or maintenance window (event time, RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub start: EventTime,
    pub end: EventTime,
}

/// One service's catalog entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceEntry {
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Workload kind (`Deployment`, `StatefulSet`, ...); default `Deployment`.
    pub kind: Option<String>,
    /// Workload name; default the service name.
    pub name: Option<String>,
    /// Services (or external hosts) this service calls.
    pub depends_on: Vec<String>,
    pub criticality: Criticality,
    /// Owning team (escalations are addressed to it).
    pub team: Option<String>,
    /// Usual replica count (blast-radius estimates).
    pub replicas: Option<i64>,
    /// No automatic action inside these windows.
    pub freeze_windows: Vec<TimeRange>,
}

/// The catalog file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    pub services: BTreeMap<String, ServiceEntry>,
}

impl Catalog {
    /// The entry of `service`, if catalogued.
    pub fn get(&self, service: &str) -> Option<&ServiceEntry> {
        self.services.get(service)
    }

    /// Whether `t` falls in a freeze window of `service`.
    pub fn frozen(&self, service: &str, t: EventTime) -> bool {
        self.get(service)
            .is_some_and(|s| s.freeze_windows.iter().any(|w| w.start <= t && t < w.end))
    }
}
