//! The ground truth of a simulated run: one record per injected fault
//! (`truth.jsonl` next to the exported `events.jsonl`). This is the labelled
//! corpus the diagnosis and recovery work is scored against.

use super::faults::{acceptable, expected_action, FaultKind, RootKind};
use super::world::{FaultState, FixedBy};
use crate::model::{ActionType, Category, EventTime};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One injected fault, as it really happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthRecord {
    pub id: String,
    pub category: Category,
    pub kind: FaultKind,
    /// The root cause: a service, an external host or a node.
    pub root: String,
    pub root_kind: RootKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub onset: EventTime,
    /// When the errors stopped.
    pub end: EventTime,
    /// `rollback`, `restart`, `scale` or `escalate`.
    pub expected_action: String,
    /// Action types that are an acceptable automatic remedy (empty: escalate).
    pub acceptable_actions: Vec<ActionType>,
    /// Services that emitted errors because of the fault.
    pub affected: Vec<String>,
    /// `on_its_own` or `when_fixed`.
    pub ends: String,
    /// `reflex`, `human` or `itself`.
    pub fixed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
}

impl TruthRecord {
    /// The record of a fault after the run.
    pub fn of(f: &FaultState, namespace: Option<String>) -> TruthRecord {
        let c = f.plan.kind.category();
        let (end, by) = f.end();
        TruthRecord {
            id: f.plan.id.clone(),
            category: c,
            kind: f.plan.kind,
            root: f.plan.root.clone(),
            root_kind: f.plan.root_kind,
            namespace,
            onset: f.plan.onset,
            end,
            expected_action: expected_action(c).to_string(),
            acceptable_actions: acceptable(c).to_vec(),
            affected: f.affected.iter().cloned().collect(),
            ends: if f.plan.kind.self_ending() {
                "on_its_own"
            } else {
                "when_fixed"
            }
            .into(),
            fixed_by: match by {
                FixedBy::Reflex { .. } => "reflex",
                FixedBy::Human => "human",
                FixedBy::Itself => "itself",
            }
            .into(),
            sample: f.sample.clone(),
        }
    }
}

/// Errors reading a truth file.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    Parse {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a `truth.jsonl` file.
pub fn load(path: &Path) -> Result<Vec<TruthRecord>, TruthError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TruthError::Io {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| TruthError::Parse {
                path: p.clone(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Error events within this long after onset go into a labelled incident.
const LABEL_AFTER_MS: i64 = 10 * 60_000;
/// Failing events kept per service in a labelled incident.
const LABEL_PER_SERVICE: usize = 400;

/// The labelled incidents (LABELLED.jsonl, see [`crate::diagnosis::classify`])
/// of a run: per fault, the root's events and its callers' (for a node, the
/// services failing on it) from a minute before onset to ten minutes after
/// (or the end), and the root's changes in the quarter hour before onset.
pub fn labelled(
    truth: &[TruthRecord],
    events: &[crate::model::ErrorEvent],
) -> Vec<crate::diagnosis::classify::LabelledIncident> {
    use crate::model::{EventKind, Severity};
    let mut out = Vec::new();
    for t in truth {
        let from = t.onset.millis() - 60_000;
        let to = t.end.millis().min(t.onset.millis() + LABEL_AFTER_MS);
        let in_window = |e: &&crate::model::ErrorEvent| {
            let m = e.time.millis();
            m >= from && m <= to
        };
        let mut picked: Vec<crate::model::ErrorEvent> = Vec::new();
        let mut per: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for e in events {
            let root_change = e.kind == EventKind::Change
                && e.service == t.root
                && e.time <= t.onset
                && t.onset.millis() - e.time.millis() <= 15 * 60_000;
            let relevant = root_change
                || (in_window(&e)
                    && e.kind == EventKind::Error
                    && e.severity >= Severity::Error
                    && match t.root_kind {
                        RootKind::Node => e.node.as_deref() == Some(t.root.as_str()),
                        _ => {
                            e.service == t.root
                                || (e.upstream.as_deref() == Some(t.root.as_str())
                                    || t.affected.contains(&e.service))
                        }
                    });
            if !relevant {
                continue;
            }
            let n = per.entry(e.service.as_str()).or_default();
            if root_change || *n < LABEL_PER_SERVICE {
                *n += 1;
                picked.push(e.clone());
            }
        }
        out.push(crate::diagnosis::classify::LabelledIncident {
            category: t.category,
            root_cause_service: t.root.clone(),
            events: picked,
        });
    }
    out
}
