//! Publishing an incident: the verdict over its signals becomes the
//! record (root, category, confidence, evidence), and a settling incident
//! decides whether it is the relapse of a recently resolved one.
//!
//! Guarantee: a record is published only when something a consumer sees
//! changed (root, category, services or a confidence step), unless forced.

use super::*;

impl DiagnosisStage {
    /// Diagnoses `t` and returns a record if something worth publishing changed.
    pub(super) fn publish(
        &self,
        t: &mut Tracked,
        status: IncidentStatus,
        force: bool,
    ) -> Option<Incident> {
        let diagnose = |pinned: Option<&str>| {
            rootcause::diagnose_pinned(
                &t.signals,
                &self.graph,
                &self.changes,
                self.cfg.change_window.0,
                self.cfg.min_category_weight,
                pinned,
            )
        };
        let mut v = diagnose(None)?;
        // Incident identity is its root cause: an acted-on incident keeps
        // its root, and before any action the root moves only to a service
        // that explains the old root's failure.
        if let Some(old) = t.root().filter(|r| *r != v.root) {
            if t.acted || !Self::may_reroot(t, old, &v.root) {
                match diagnose(Some(old)).filter(|p| p.root == old) {
                    Some(p) => v = p,
                    None => v = t.verdict.clone()?,
                }
            }
        }
        t.verdict = Some(v.clone());
        if let Some(m) = &self.model {
            let node_local = rootcause::node_local_network(&t.signals).is_some();
            m.refine(&mut v, &t.signals, node_local);
        }
        // A quiet root: its callers' errors say it fails, and its own
        // errors, too few for a strong detection, say how. Callers only
        // see timeouts and refusals whatever the cause; the root's words
        // name the cause (a pool exhausted, the heap full), so they decide
        // the category, and the root is not silent after all.
        if v.silent && !v.root_changed && !t.acted {
            let words = t.whispers.get(&v.root).copied();
            if let Some((c, w)) = words.filter(|(_, w)| *w >= QUIET_ROOT_WORDS) {
                v.category = c;
                v.confidence = rootcause::confidence(v.margin, w).min(0.9);
                v.evidence.push(format!(
                    "{} logs errors of its own, too few to fire alone, that say {} ({:.2})",
                    v.root,
                    c.as_str(),
                    w
                ));
            }
        }
        // The action was chosen for this root and category: later context
        // does not turn the incident into another kind of fault.
        if let (true, Some(last)) = (t.acted, &t.last) {
            v.category = last.1;
        }
        let mut services: Vec<String> = t.signals.keys().cloned().collect();
        if !services.contains(&v.root) {
            services.push(v.root.clone());
        }
        services.sort();
        // A service nothing is known to depend on (no caller ever named
        // it): nothing corroborates the diagnosis and nobody is hurt, so a
        // human confirms before anything acts (the first run of a noisy
        // batch job looks just like it). Lifts once a caller is seen.
        if !t.acted
            && !v.external
            && self.graph.is_service(&v.root)
            && !self.called.contains(&v.root)
            && !self
                .catalog
                .services
                .values()
                .any(|e| e.depends_on.contains(&v.root))
        {
            v.confidence = v.confidence.min(rootcause::SILENT_ROOT_CAP);
            v.evidence.push(format!(
                "no other service is known to depend on {}: confidence capped for a human to confirm",
                v.root
            ));
        }
        let key = (v.root.clone(), v.category, services.clone(), v.confidence);
        let changed = match &t.last {
            None => true,
            Some((r, c, s, conf)) => {
                r != &key.0 || *c != key.1 || s != &key.2 || (conf - key.3).abs() >= 0.1
            }
        };
        if !changed && !force {
            return None;
        }
        t.last = Some(key);
        let mut evidence = v.evidence.clone();
        let mut lines: Vec<(f64, String)> = t
            .signals
            .values()
            .filter_map(|s| s.evidence.clone())
            .collect();
        lines.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        evidence.extend(lines.into_iter().take(5).map(|(_, l)| l));
        let affected: Vec<&String> = services.iter().filter(|s| **s != v.root).collect();
        let what = if v.external {
            format!("external dependency {} is failing", v.root)
        } else {
            format!("{} shows {}", v.root, v.category.as_str().replace('_', " "))
        };
        let summary = if affected.is_empty() {
            format!("{what} (since {}).", t.opened_at)
        } else {
            format!(
                "{what}; {} other service(s) affected: {} (since {}).",
                affected.len(),
                affected
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                t.opened_at
            )
        };
        let severity = if services.len() >= 3 {
            Severity::Critical
        } else {
            Severity::Error
        };
        // The root's own namespace (actions target it), else the incident's.
        let namespace = t
            .signals
            .get(&v.root)
            .and_then(|s| s.namespace.clone())
            .or_else(|| self.namespaces.get(&v.root).cloned())
            .or_else(|| t.namespace.clone().filter(|_| v.external));
        Some(Incident {
            incident_id: t.id.clone(),
            status,
            opened_at: t.opened_at,
            updated_at: self.watermark.max(t.last_activity),
            resolved_at: t.resolved_at,
            root_cause_service: v.root,
            category: v.category,
            confidence: (v.confidence * 1000.0).round() / 1000.0,
            services,
            summary,
            evidence,
            namespace,
            severity,
        })
    }

    /// Publishes `incident_id` as `resolved` at `at` because recovery verified
    /// a fix; `evidence` (e.g. `verified: restart of payments succeeded, no
    /// errors for 5m`) leads the record's evidence. No-op for an unknown,
    /// unpublished or already resolved incident. A later relapse reopens it
    /// as usual.
    pub fn resolve(
        &mut self,
        incident_id: &str,
        at: EventTime,
        evidence: &str,
        out: &mut Vec<Incident>,
    ) {
        let Some(i) = self
            .incidents
            .iter()
            .position(|t| t.id == incident_id && t.resolved_at.is_none() && t.publish_at.is_none())
        else {
            return;
        };
        let mut t = self.incidents.remove(i);
        t.resolved_at = Some(at);
        if let Some(mut rec) = self.publish(&mut t, IncidentStatus::Resolved, true) {
            rec.evidence.insert(0, evidence.to_string());
            out.push(rec);
        }
        self.incidents.insert(i, t);
    }

    /// A pending incident is about to be published. When it is a possible
    /// relapse and its diagnosis names the resolved incident's root cause,
    /// it takes over that incident's id and opening time (the incident is
    /// reopened, not counted again); otherwise the resolved incident is
    /// released and this one is new. A root deployed or reconfigured since
    /// its incident resolved that fails again is failing for a new reason
    /// (the change), not relapsing. Returns whether it is a new incident.
    pub(super) fn settle(
        &self,
        t: &mut Tracked,
        candidates: &BTreeMap<String, Candidate>,
        adopted: &mut Vec<String>,
        released: &mut Vec<String>,
    ) -> bool {
        let Some(old) = t.relapse_of.take() else {
            return true;
        };
        let relapse = candidates.get(&old).filter(|c| {
            self.verdict(&t.signals).is_some_and(|v| v.root == c.root)
                && !self.changed_since(&c.root, c.resolved_at, t.last_activity)
        });
        if let Some(c) = relapse {
            t.opened_at = c.opened_at;
            t.id.clone_from(&old);
            adopted.push(old);
            false
        } else {
            released.push(old);
            true
        }
    }

    /// `service` was deployed or reconfigured after `since` (when its
    /// incident resolved) and by `until`.
    fn changed_since(&self, service: &str, since: Option<EventTime>, until: EventTime) -> bool {
        let Some(since) = since else {
            return false;
        };
        self.changes
            .iter()
            .any(|c| c.service == service && c.time > since && c.time <= until && c.can_break())
    }
}
