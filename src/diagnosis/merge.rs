//! Duplicates of one fault become one incident: a pending incident whose
//! root is already an open incident's (or a service of a node already in
//! trouble, or a service silent to it but failing in another incident)
//! joins it, and two open incidents that came to name one root are
//! merged, the younger published as resolved saying where it went.
//!
//! Guarantee: evidence is never dropped by a merge (signals, traces,
//! upstreams and activity are folded into the survivor).

use super::*;

/// How long before a pending incident's onset its silent root may have
/// last failed in another incident and still be relaying that one's fault
/// (two detection windows).
const RELAY_GAP_MS: i64 = 120_000;

impl DiagnosisStage {
    /// The open, published incident (other than `incidents[i]`) whose root
    /// cause is the root `incidents[i]` would be published with.
    pub(super) fn duplicate_of(&self, incidents: &[Tracked], i: usize) -> Option<usize> {
        let v = self.verdict(&incidents[i].signals)?;
        let network = v.category == crate::model::Category::Network;
        // Network errors on a node whose trouble is an incident (open or
        // settling): one of the node's services, not a fault of its own.
        let node_trouble = |q: &Tracked| {
            let root = match q.last.as_ref() {
                Some(l) => (l.1 == crate::model::Category::Network).then(|| l.0.clone()),
                None => self
                    .verdict(&q.signals)
                    .filter(|qv| qv.category == crate::model::Category::Network)
                    .map(|qv| qv.root),
            };
            let near =
                (q.opened_at.millis() - incidents[i].opened_at.millis()).abs() <= NODE_WATCH_MS;
            root.as_ref().is_some_and(|r| {
                !self.graph.is_service(r)
                    && (network && Self::on_node(&incidents[i], r)
                        || near
                            && (Self::fails_only_on(&incidents[i], r)
                                || self.silent_root_on(&incidents[i], &v.root, r)))
            })
        };
        // Its root is silent here but failing loudly in `q`, which holds it
        // as a service its root explains: a service failing on its
        // upstream fails its callers too, logged here or not, so their
        // complaints are `q`'s fault seen one hop further out.
        // Only while it fails there: one that went quiet in `q` before
        // these complaints began is down, not relaying `q`'s fault.
        let relayed = |q: &Tracked| {
            v.silent
                && !q.estranged.contains(&v.root)
                && q.signals
                    .get(&v.root)
                    .is_some_and(|s| s.first_seen.is_some())
                && q.seen.get(&v.root).is_some_and(|(end, _)| {
                    end.millis() >= incidents[i].opened_at.millis() - RELAY_GAP_MS
                })
        };
        incidents.iter().enumerate().position(|(k, q)| {
            k != i
                && q.resolved_at.is_none()
                && ((q.publish_at.is_none() && q.last.as_ref().is_some_and(|l| l.0 == v.root))
                    || node_trouble(q)
                    || relayed(q))
        })
    }

    /// Folds `other`'s evidence into `into` (duplicates of one fault).
    pub(super) fn absorb(into: &mut Tracked, other: Tracked) {
        for (svc, sig) in other.signals {
            into.signals.entry(svc).or_default().absorb(&sig);
        }
        into.upstreams.extend(other.upstreams);
        for (svc, (c, w)) in other.whispers {
            Self::whisper(into, &svc, c, w);
        }
        for (svc, at) in other.heard {
            let e = into.heard.entry(svc).or_insert(at);
            *e = (*e).max(at);
        }
        for (svc, (at, n)) in other.seen {
            let e = into.seen.entry(svc).or_insert((at, 0));
            e.0 = e.0.max(at);
            e.1 += n;
        }
        for x in other.traces {
            if into.traces.len() < MAX_TRACES {
                into.traces.insert(x);
            }
        }
        into.opened_at = into.opened_at.min(other.opened_at);
        into.last_activity = into.last_activity.max(other.last_activity);
        if into.namespace.is_none() {
            into.namespace = other.namespace;
        }
    }

    /// Two open incidents that came to name the same root cause are one
    /// fault: the younger is folded into the older and published as
    /// resolved, its evidence saying where it went.
    pub(super) fn merge_published_duplicates(
        &self,
        incidents: &mut Vec<Tracked>,
        out: &mut Vec<Incident>,
    ) {
        // The oldest open, published incident per root (one pass), then
        // every younger one with that root folds into it.
        let live = |t: &Tracked| t.resolved_at.is_none() && t.publish_at.is_none();
        let mut oldest: BTreeMap<&str, (EventTime, &str)> = BTreeMap::new();
        for t in incidents.iter().filter(|t| live(t)) {
            if let Some(l) = &t.last {
                let e = oldest
                    .entry(l.0.as_str())
                    .or_insert((t.opened_at, t.id.as_str()));
                if (t.opened_at, t.id.as_str()) < *e {
                    *e = (t.opened_at, t.id.as_str());
                }
            }
        }
        let merges: Vec<(String, String, String)> = incidents
            .iter()
            .filter(|t| live(t))
            .filter_map(|t| {
                let root = &t.last.as_ref()?.0;
                let (_, keep) = oldest.get(root.as_str())?;
                (*keep != t.id).then(|| (t.id.clone(), keep.to_string(), root.clone()))
            })
            .collect();
        for (dup, into, root) in merges {
            let (Some(i), Some(_)) = (
                incidents.iter().position(|t| t.id == dup),
                incidents.iter().position(|t| t.id == into),
            ) else {
                continue;
            };
            let mut t = incidents.remove(i);
            t.resolved_at = Some(self.watermark);
            if let Some(mut rec) = self.publish(&mut t, IncidentStatus::Resolved, true) {
                rec.evidence.insert(
                    0,
                    format!("duplicate of {into} (same root cause {root}); merged into it"),
                );
                rec.summary = format!("Merged into {into}: {}", rec.summary);
                out.push(rec);
            }
            if let Some(j) = incidents.iter().position(|q| q.id == into) {
                Self::absorb(&mut incidents[j], t);
                if let Some(rec) = self.publish(&mut incidents[j], IncidentStatus::Updated, false) {
                    out.push(rec);
                }
            }
        }
    }
}
