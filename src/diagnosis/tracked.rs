//! An incident while diagnosis tracks it: pending (settling), open or
//! recently resolved, with the signals folded into it.

use super::*;

#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) id: String,
    pub(super) opened_at: EventTime,
    /// Watermark at which a pending incident is published.
    pub(super) publish_at: Option<EventTime>,
    pub(super) last_activity: EventTime,
    pub(super) resolved_at: Option<EventTime>,
    pub(super) signals: BTreeMap<String, ServiceSignals>,
    pub(super) upstreams: BTreeSet<String>,
    pub(super) traces: BTreeSet<String>,
    pub(super) namespace: Option<String>,
    /// What was last published: (root, category, services, confidence).
    pub(super) last: Option<(String, crate::model::Category, Vec<String>, f64)>,
    /// A pending incident that may be a relapse of this resolved one.
    pub(super) relapse_of: Option<String>,
    /// (Resolved incidents) a pending incident is deciding whether it is a
    /// relapse of this one; no second candidate meanwhile.
    pub(super) relapse_pending: bool,
    /// Recovery emitted an action for this incident: its root is fixed.
    pub(super) acted: bool,
    /// Ends of the windows with strong detections (the first few): a
    /// pending incident is confirmed by a second window or a second service
    /// (a one-window blip such as a retry storm is not a fault). Per window,
    /// the services that fired in it, so that a part split off takes its
    /// own windows along.
    pub(super) windows: BTreeMap<i64, BTreeSet<String>>,
    /// The verdict last published (kept when a pinned root is no longer
    /// among the candidates, e.g. a node once its services left).
    pub(super) verdict: Option<rootcause::Verdict>,
    /// Per service, the end of its last strong detection in this incident:
    /// a service quiet for `resolve_after` leaves it again.
    pub(super) seen: BTreeMap<String, (EventTime, u32)>,
    /// Per service, the end of its last weak detection of failing calls to
    /// another of the incident's services: still failing on the fault,
    /// though no longer loud enough for strong evidence (never keeps the
    /// incident open; see [`Self::speaks_for`]).
    pub(super) heard: BTreeMap<String, EventTime>,
    /// Per dependency the incident's services fail calling, the strongest
    /// category (not `unknown`) its own weak detections name about itself,
    /// with its weight: a quiet root's own words, for the category only
    /// (they never add a service or keep the incident open).
    pub(super) whispers: BTreeMap<String, (crate::model::Category, f64)>,
    /// Services of the incident whose latest strong detection it did not
    /// explain: failing now for another reason (a new fault upstream of
    /// them), they no longer speak for it, so their callers' complaints
    /// about them do not join it. A detection it explains again lifts it.
    pub(super) estranged: BTreeSet<String>,
}

impl Tracked {
    /// A new pending incident opened by the strong detection `d`.
    pub(super) fn open(d: &Detection, relapse_of: Option<String>) -> Tracked {
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
            windows: BTreeMap::new(),
            verdict: None,
            seen: BTreeMap::new(),
            heard: BTreeMap::new(),
            whispers: BTreeMap::new(),
            estranged: BTreeSet::new(),
        }
    }

    /// Strong evidence in two windows, or two services (the second may be
    /// a quiet one on the same troubled node).
    pub(super) fn confirmed(&self) -> bool {
        self.signals.len() >= 2 || self.windows.len() >= 2
    }

    /// Keeps only the windows in which one of `services` fired.
    pub(super) fn windows_of(
        &self,
        services: &BTreeSet<&String>,
    ) -> BTreeMap<i64, BTreeSet<String>> {
        self.windows
            .iter()
            .filter_map(|(end, fired)| {
                let kept: BTreeSet<String> = fired
                    .iter()
                    .filter(|s| services.contains(s))
                    .cloned()
                    .collect();
                (!kept.is_empty()).then_some((*end, kept))
            })
            .collect()
    }

    /// Whether `service`, one of this incident's services, still speaks
    /// for it when judging `d`: it fails itself (a strong detection of its
    /// own here, or a weak one of failing calls to another of its services,
    /// ended at most two of `d`'s windows before `d`'s). Callers'
    /// failures are explained through a service only while it fails on
    /// the incident's root; one that went quiet while its callers still
    /// fail calling it is not failing on the root any more (it would say
    /// so, as before): it is down, a new fault.
    pub(super) fn speaks_for(&self, service: &str, d: &Detection) -> bool {
        let span = (d.window.end.millis() - d.window.start.millis()).max(1);
        let recent = |end: &EventTime| end.millis() >= d.window.end.millis() - 2 * span;
        self.signals.contains_key(service)
            && (self.seen.get(service).is_some_and(|(end, _)| recent(end))
                || self.heard.get(service).is_some_and(recent))
    }

    /// Published and not resolved.
    pub(super) fn live(&self) -> bool {
        self.resolved_at.is_none() && self.publish_at.is_none()
    }

    /// The published root cause, if any.
    pub(super) fn root(&self) -> Option<&str> {
        self.last.as_ref().map(|l| l.0.as_str())
    }
}

/// A resolved incident awaiting a relapse decision.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) root: String,
    pub(super) opened_at: EventTime,
    pub(super) resolved_at: Option<EventTime>,
}

/// Resolved incidents awaiting a relapse decision, by id.
pub(super) fn relapse_candidates(incidents: &[Tracked]) -> BTreeMap<String, Candidate> {
    incidents
        .iter()
        .filter(|t| t.relapse_pending)
        .filter_map(|t| {
            let c = Candidate {
                root: t.last.as_ref()?.0.clone(),
                opened_at: t.opened_at,
                resolved_at: t.resolved_at,
            };
            Some((t.id.clone(), c))
        })
        .collect()
}
