//! One caller's word against a dependency: a lone caller failing on a
//! dependency its other callers use fine is that edge's trouble, not the
//! dependency's fault.

use super::*;
use crate::model::Category;

/// Evidence of a failure of a service's own kind among its self hints.
fn fails_its_own_way(sig: &ServiceSignals) -> bool {
    sig.self_hints
        .iter()
        .any(|(c, w)| *w >= OWN_WAY && c.is_own_kind())
}

/// What becomes of a settling incident that is due.
pub(super) enum Due {
    /// Not confirmed yet: wait for the next window.
    Wait,
    /// Not opened, and why: a blip that did not come back, one edge's
    /// trouble, a job failing on its schedule (its detections stay published
    /// on the detections topic).
    Drop(&'static str),
    Open,
}

impl DiagnosisStage {
    /// Decides a due settling incident `t` at watermark `wm` (`None` at the
    /// end of input: no more windows will come, so nothing waits). The
    /// services its root does not explain are another fault's (or
    /// background's): they are split off into `parts` and settle on their
    /// own, held to the same bar, and so is what is left. Two unrelated
    /// one-window blips must not confirm each other by landing in the same
    /// pending incident.
    pub(super) fn due(
        &self,
        t: &mut Tracked,
        wm: Option<EventTime>,
        parts: &mut Vec<Tracked>,
    ) -> Due {
        let mut unconfirmed = self.unconfirmed(t);
        if !unconfirmed {
            if let Some(mut part) = self.split_unexplained(t) {
                part.publish_at = wm.or(t.publish_at);
                parts.push(part);
                unconfirmed = self.unconfirmed(t);
            }
        }
        if unconfirmed && wm.is_some_and(|wm| wm.millis() <= t.last_activity.millis() + SETTLE_MS) {
            return Due::Wait;
        }
        if unconfirmed {
            return Due::Drop("unconfirmed");
        }
        if self
            .edge_witness(t)
            .is_some_and(|w| self.one_edge_only(t, w))
        {
            return Due::Drop("one caller failing on a dependency that is fine for others");
        }
        match self.job_not_fault(t) {
            Some(reason) => Due::Drop(reason),
            None => Due::Open,
        }
    }

    /// The lone witness of a settling incident: its root is silent or
    /// external (known only from complaints), and exactly one service fails,
    /// mostly calling it. Returns that caller, the root, and whether anything
    /// besides the witness speaks for the root's trouble: a change of the
    /// root shortly before (which explains the silence), or the root's own
    /// weak detections naming a failure of its own kind (a quiet
    /// `OOMKilled`). Corroborated, the witness need not wait for more
    /// windows.
    pub(super) fn lone_witness<'a>(&self, t: &'a Tracked) -> Option<(Witness<'a>, bool)> {
        if t.signals.len() != 1 {
            return None;
        }
        let v = self.verdict(&t.signals)?;
        if !(v.silent || v.external) {
            return None;
        }
        let (caller, sig) = t.signals.iter().next()?;
        let named = sig.upstreams.get(&v.root).copied().unwrap_or(0);
        let corroborated = v.root_changed || Self::root_says_so(t, &v.root);
        (3 * named >= sig.count.max(1)).then_some(((caller.as_str(), sig, v.root), corroborated))
    }

    /// The root's own weak detections name a failure of its own kind.
    fn root_says_so(t: &Tracked, root: &str) -> bool {
        t.whispers
            .get(root)
            .is_some_and(|(c, w)| *w >= OWN_WAY && c.is_own_kind())
    }

    /// The one caller of a settling incident whose complaints are all there
    /// is to it: a [lone witness](Self::lone_witness), or one caller with
    /// *echoes*: dependencies it blames for a quarter of its failures or
    /// more whose own errors say nothing about themselves (a batch job's
    /// heavy queries make its upstreams log errors on exactly those
    /// requests). The root must be silent, external or an echo. A change of
    /// the root does not make it more than that: a deploy that broke it
    /// would fail its other callers too, which [`Self::one_edge_only`]
    /// asks (harmless deploys land all day, batch runs hit them).
    pub(super) fn edge_witness<'a>(&self, t: &'a Tracked) -> Option<Witness<'a>> {
        if let Some((w, _)) = self.lone_witness(t) {
            return Some(w);
        }
        if t.signals.len() < 2 {
            return None;
        }
        let v = self.verdict(&t.signals)?;
        // An overloaded or crashing upstream says so (saturation, restarts):
        // a fault even when only one caller is loud about it.
        let mute = |sig: &ServiceSignals| {
            !sig.self_hints
                .iter()
                .any(|(c, w)| *w >= OWN_WAY && *c != Category::Unknown)
        };
        let echo_of = |caller: &ServiceSignals, s: &str, sig: &ServiceSignals| {
            let named = caller.upstreams.get(s).copied().unwrap_or(0);
            mute(sig) && 4 * named >= caller.count.max(1)
        };
        let mut callers = t.signals.iter().filter(|(s, _)| {
            !t.signals
                .iter()
                .any(|(c, csig)| c != *s && echo_of(csig, s, &t.signals[*s]))
        });
        let (caller, sig) = callers.next()?;
        if callers.next().is_some() {
            return None;
        }
        let all_echoes = t
            .signals
            .iter()
            .all(|(s, ssig)| s == caller || echo_of(sig, s, ssig));
        let named = sig.upstreams.get(&v.root).copied().unwrap_or(0);
        (all_echoes && 3 * named >= sig.count.max(1) && *caller != v.root).then_some((
            caller.as_str(),
            sig,
            v.root,
        ))
    }

    /// Whether a settling incident still lacks the evidence to open: strong
    /// evidence in a second window or on a second service, and, for a lone
    /// witness of a dependency that did not change, [`LONE_WITNESS_WINDOWS`]
    /// windows.
    pub(super) fn unconfirmed(&self, t: &Tracked) -> bool {
        let waits = self
            .lone_witness(t)
            .is_some_and(|(_, corroborated)| !corroborated);
        !t.confirmed() || (t.windows.len() < LONE_WITNESS_WINDOWS && waits)
    }

    /// A settling incident is one caller failing its calls to a dependency
    /// that is fine for everyone else: an edge witness (see
    /// [`Self::edge_witness`]) of a dependency with at least two other known
    /// callers, none of which blamed it since shortly before the onset,
    /// while the caller neither changed recently (unless it fails as on its
    /// earlier scheduled runs) nor fails in a way of its own. If the dependency
    /// were down (or a change of its own had broken it), its other callers
    /// would fail too:
    /// this is trouble on one edge (a retry storm, a batch job's heavy
    /// queries), not a fault of the dependency.
    pub(super) fn one_edge_only(&self, t: &Tracked, (caller, sig, root): Witness<'_>) -> bool {
        // A change of the caller may have broken its calls, unless it
        // fails as it did on its earlier scheduled runs (a job's run right
        // after a harmless deploy of it).
        let since = t.opened_at.millis() - self.cfg.change_window.0;
        if self
            .changes
            .iter()
            .any(|c| c.service == caller && c.time.millis() >= since)
            && !self.episodes.recurs(caller)
        {
            return false;
        }
        // A failure of the caller's own, or the root's own words about a
        // failure of its own: not just failing calls on one edge.
        if fails_its_own_way(sig) || Self::root_says_so(t, &root) {
            return false;
        }
        let recent = t.opened_at.millis() - SETTLE_MS;
        let failing_elsewhere = |u: &str| {
            self.blame
                .get(u)
                .is_some_and(|m| m.iter().any(|(c, at)| c != caller && at.millis() >= recent))
        };
        // Every dependency it blames for a quarter of its failures or more.
        let named: Vec<&str> = sig
            .upstreams
            .iter()
            .filter(|(_, c)| 4 * **c >= sig.count.max(1))
            .map(|(u, _)| u.as_str())
            .collect();
        if named.iter().any(|u| failing_elsewhere(u)) || failing_elsewhere(&root) {
            return false;
        }
        // Failing on several dependencies at once while nobody else fails
        // on any of them: the common factor is the caller.
        named.len() >= 2 || self.graph.callers(&root).filter(|c| *c != caller).count() >= 2
    }
}
