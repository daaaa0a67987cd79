//! One caller's word against a dependency: a lone caller failing on a
//! dependency its other callers use fine is that edge's trouble, not the
//! dependency's fault.

use super::*;

impl DiagnosisStage {
    /// The lone witness of a settling incident: its root is silent or
    /// external (known only from complaints), and exactly one service fails,
    /// mostly calling it. Returns that caller, the root, and whether the
    /// root changed shortly before (a change explains the silence, so the
    /// witness need not wait for more windows; it is still the only one).
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
        (3 * named >= sig.count.max(1)).then_some(((caller.as_str(), sig, v.root), v.root_changed))
    }

    /// A settling incident is one caller failing its calls to a dependency
    /// that is fine for everyone else: a lone witness (see
    /// [`Self::lone_witness`]) of a dependency with at least two other known
    /// callers, none of which blamed it since shortly before the onset,
    /// while the caller neither changed recently nor fails in a way of its
    /// own. If the dependency were down (or a change of its own had broken
    /// it), its other callers would fail too:
    /// this is trouble on one edge (a retry storm, a batch job's heavy
    /// queries), not a fault of the dependency.
    pub(super) fn one_edge_only(&self, t: &Tracked, (caller, sig, root): Witness<'_>) -> bool {
        let since = t.opened_at.millis() - self.cfg.change_window.0;
        if self
            .changes
            .iter()
            .any(|c| c.service == caller && c.time.millis() >= since)
        {
            return false;
        }
        // Evidence of a failure of the caller's own (not a description of
        // failing calls: timeouts, refusals, 5xx and overload are what a
        // failing dependency looks like from its caller).
        use crate::model::Category as C;
        let own = sig.self_hints.iter().any(|(c, w)| {
            *w >= OWN_WAY
                && !matches!(
                    c,
                    C::Overload | C::Unavailable | C::Network | C::DependencyFailure | C::Unknown
                )
        });
        if own {
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
