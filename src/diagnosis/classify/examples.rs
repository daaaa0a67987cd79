//! Training examples: a labelled incident as the classifier sees it — the
//! root's and its callers' signals, the structural facts and the rules'
//! answer — built from its events. Each service's signals come from
//! [`signals::service_signals`], the detections-and-fold path the live
//! diagnosis uses.

use super::super::features::Context;
use super::super::rootcause::{self, categorise, Change, RuleCategory, ServiceSignals};
use super::super::signals;
use super::labelled::LabelledIncident;
use crate::detectors::facts::SignatureMeta;
use crate::detectors::signature::Signatures;
use crate::model::{Category, ErrorEvent, EventKind, EventTime, Severity};
use std::collections::BTreeMap;

/// A recent change this long before onset ties the fault to it (as `diagnosis.change_window`).
const CHANGE_WINDOW_MS: i64 = 15 * 60_000;
/// A labelled incident as the classifier sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub services: BTreeMap<String, ServiceSignals>,
    pub root: String,
    pub ctx: Context,
    pub rule: RuleCategory,
    pub category: Category,
}

impl Example {
    pub(super) fn structural(&self) -> bool {
        self.ctx.external || self.ctx.changed || self.ctx.node_local
    }
}

/// Builds the classifier's view of a labelled incident from its events: the
/// root's and its callers' signals, the structural facts and the rules' answer.
pub fn signals_from_events(inc: &LabelledIncident, sigs: &Signatures) -> Example {
    let meta = SignatureMeta::new(sigs);
    let root = inc.root_cause_service.as_str();
    let failing = |e: &&ErrorEvent| e.kind == EventKind::Error && e.severity >= Severity::Error;
    let mut per: BTreeMap<&str, Vec<&ErrorEvent>> = BTreeMap::new();
    for e in inc.events.iter().filter(failing) {
        per.entry(e.service.as_str()).or_default().push(e);
    }
    for v in per.values_mut() {
        v.sort_by_key(|e| e.time);
    }
    let named = inc.events.iter().any(|e| e.service == root);
    // A node as root cause: every service failing on it is in the picture.
    let node_root = !named && inc.events.iter().any(|e| e.node.as_deref() == Some(root));
    let callers: Vec<&str> = per
        .iter()
        .filter(|(s, evs)| {
            **s != root && (node_root || evs.iter().any(|e| e.upstream.as_deref() == Some(root)))
        })
        .map(|(s, _)| *s)
        .collect();
    let mut services = BTreeMap::new();
    if let Some(evs) = per.get(root) {
        services.insert(root.to_string(), signals::service_signals(evs, sigs, &meta));
    }
    for c in callers {
        if let Some(evs) = per.get(c) {
            services.insert(c.to_string(), signals::service_signals(evs, sigs, &meta));
        }
    }
    let external = !named && !node_root;
    let onset: Option<EventTime> = services
        .get(root)
        .and_then(|s| s.first_seen)
        .or_else(|| services.values().filter_map(|s| s.first_seen).min());
    let change = onset.and_then(|first| change_before(&inc.events, root, first));
    Example::of(services, root, external, change, inc.category)
}

/// The latest `change` of `service` at most [`CHANGE_WINDOW_MS`] before `first`.
fn change_before(events: &[ErrorEvent], service: &str, first: EventTime) -> Option<Change> {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Change
                && e.service == service
                && e.time <= first
                && first.millis() - e.time.millis() <= CHANGE_WINDOW_MS
        })
        .max_by_key(|e| e.time)
        .map(|e| Change {
            service: e.service.clone(),
            time: e.time,
            version: e.version.clone(),
            evidence: e.message.clone(),
            kind: e.change_type().to_string(),
        })
}

/// Every training example of a labelled incident: the incident itself and,
/// when its root is external (reflex can only see callers), the view from
/// each of its two loudest callers labelled with the true category — so that
/// a diagnosis that stops at a caller still reports `dependency_failure`
/// (escalate) instead of blaming the caller's own health.
pub fn examples_from_labelled(inc: &LabelledIncident, sigs: &Signatures) -> Vec<Example> {
    let main = signals_from_events(inc, sigs);
    let mut out = Vec::new();
    if main.ctx.external {
        let mut callers: Vec<(&String, i64)> = main
            .services
            .iter()
            .filter(|(n, _)| **n != main.root)
            .map(|(n, s)| (n, s.count))
            .collect();
        callers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (c, _) in callers.into_iter().take(2) {
            let first = main.services.get(c).and_then(|s| s.first_seen);
            let change = first.and_then(|f| change_before(&inc.events, c, f));
            out.push(Example::of(
                main.services.clone(),
                c,
                false,
                change,
                inc.category,
            ));
        }
    }
    out.insert(0, main);
    out
}

impl Example {
    pub(super) fn of(
        services: BTreeMap<String, ServiceSignals>,
        root: &str,
        external: bool,
        change: Option<Change>,
        category: Category,
    ) -> Example {
        let node_local = rootcause::node_local_network(&services).is_some();
        // As at run time (`categorise` decides what a change means for a
        // silent root).
        let rule = if node_local {
            RuleCategory {
                category: Category::Network,
                share: 1.0,
                from_votes: true,
                hearsay: false,
                structural: false,
                votes: BTreeMap::new(),
            }
        } else {
            categorise(&services, root, external, change.as_ref(), 0.25)
        };
        Example {
            ctx: Context {
                external,
                changed: change.is_some(),
                node_local,
            },
            services,
            root: root.to_string(),
            rule,
            category,
        }
    }
}
