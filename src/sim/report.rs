//! Scoring a run against its ground truth, and the demo's report table.
//!
//! Pure: a function of the truth records and reflex's output records.
//! Definitions (the acceptance floors are stated in these terms):
//! - an incident **matches** a fault when it opened between 2 minutes
//!   before the onset and 12 minutes after the fault ended, and its services
//!   or root include the fault's root or a service the fault affected; when
//!   several faults qualify (overlapping faults), one whose root the incident
//!   names as its root cause wins over one it merely touches, then the
//!   latest; an incident that matches no fault is a **false incident**;
//! - a fault has **its own incident** when an incident matches it and names
//!   its root (an incident opened for another fault cannot match it: it
//!   opened before this onset);
//! - a fault is **detected** when an incident matches it; time to detect is
//!   from onset to the first record of its first incident;
//! - the **root cause is found** when that incident's latest record names the
//!   fault's root (for a node-local network fault, the node or the `network`
//!   category, since incidents name services);
//! - a **wrong action** is an `auto` action on a false incident, or whose
//!   target is not the fault's root, or whose type is not an acceptable
//!   remedy for the true category.

use super::faults::RootKind;
use super::truth::TruthRecord;
use crate::model::{
    ActionResult, ActionStatus, ActionType, Category, Decision, Escalation, EventTime, Incident,
    IncidentStatus, RecoveryAction,
};
use crate::sinks::Output;
use std::collections::BTreeMap;
use std::fmt;

/// One fault's line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRow {
    pub id: String,
    pub category: Category,
    pub root: String,
    pub detected: bool,
    pub root_found: bool,
    pub diagnosed: Option<(String, Category)>,
    /// The stated confidence of that diagnosis (the incident's latest record).
    pub confidence: Option<f64>,
    pub time_to_detect_ms: Option<i64>,
    /// e.g. `restart inventory (auto)`, `escalate`, `-`.
    pub action: String,
    pub time_to_recover_ms: i64,
    pub fixed_automatically: bool,
    /// `verified`, `escalated`, `approval`, `open` or `-`.
    pub outcome: String,
    /// Whether the category has an automatic remedy.
    pub remediable: bool,
    /// Onset to the first record of its own incident (one that matches it
    /// and names its root), if any.
    pub own_time_to_detect_ms: Option<i64>,
}

impl FaultRow {
    /// Its own incident appeared within 5 minutes of onset.
    pub fn own_incident_within_5m(&self) -> bool {
        self.own_time_to_detect_ms.is_some_and(|t| t <= 5 * 60_000)
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rows: Vec<FaultRow>,
    pub incidents: usize,
    pub false_incidents: Vec<String>,
    pub actions: usize,
    pub auto_actions: usize,
    pub wrong_actions: Vec<String>,
    pub escalations: usize,
    pub events: u64,
    pub dead_letters: u64,
    pub wall_secs: f64,
    pub sim_hours: f64,
    /// The most services any incident record listed.
    pub largest_incident: usize,
    /// The longest an incident stayed open (to its resolution, or to the
    /// end of the run), in ms.
    pub longest_open_ms: i64,
    /// Incidents still open more than 30 minutes after the end of the fault
    /// they match (`id: open until ..., fault F.. ended ...`).
    pub overstayed: Vec<String>,
}

impl Report {
    /// Faults detected / all.
    pub fn detected(&self) -> usize {
        self.rows.iter().filter(|r| r.detected).count()
    }
    /// Faults whose root cause was found.
    pub fn roots_found(&self) -> usize {
        self.rows.iter().filter(|r| r.root_found).count()
    }
    /// Detected faults whose diagnosed category is the true one.
    pub fn categories_right(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.diagnosed.as_ref().is_some_and(|(_, c)| *c == r.category))
            .count()
    }
    /// (fixed automatically, remediable) counts.
    pub fn auto_remediation(&self) -> (usize, usize) {
        let rem = self.rows.iter().filter(|r| r.remediable).count();
        let fixed = self
            .rows
            .iter()
            .filter(|r| r.remediable && r.fixed_automatically)
            .count();
        (fixed, rem)
    }
    /// Input events per wall-clock second.
    pub fn events_per_sec(&self) -> f64 {
        if self.wall_secs > 0.0 {
            (self.events + self.dead_letters) as f64 / self.wall_secs
        } else {
            0.0
        }
    }
}

struct Inc {
    first: Incident,
    last: Incident,
}

fn mmss(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Scores reflex's `outputs` against `truth`; incidents never resolved count
/// as open until the latest time in the outputs (see [`score_until`]).
pub fn score(truth: &[TruthRecord], outputs: &[Output], results: &[ActionResult]) -> Report {
    score_until(truth, outputs, results, None)
}

/// Scores reflex's `outputs` against `truth` for a run that ended at `end`
/// (incidents never resolved count as open until then).
pub fn score_until(
    truth: &[TruthRecord],
    outputs: &[Output],
    results: &[ActionResult],
    end: Option<EventTime>,
) -> Report {
    let mut incs: BTreeMap<String, Inc> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut actions: Vec<&RecoveryAction> = Vec::new();
    let mut escalations: Vec<&Escalation> = Vec::new();
    for o in outputs {
        match o {
            Output::Incident(i) => match incs.get_mut(&i.incident_id) {
                Some(e) => e.last = i.clone(),
                None => {
                    order.push(i.incident_id.clone());
                    incs.insert(
                        i.incident_id.clone(),
                        Inc {
                            first: i.clone(),
                            last: i.clone(),
                        },
                    );
                }
            },
            Output::Action(a) => actions.push(a),
            Output::Escalation(e) => escalations.push(e),
            _ => {}
        }
    }
    let run_end = end.unwrap_or_else(|| {
        incs.values()
            .map(|i| {
                i.last
                    .updated_at
                    .max(i.last.resolved_at.unwrap_or_default())
            })
            .max()
            .unwrap_or_default()
    });
    let closed_at = |inc: &Inc| match (inc.last.status, inc.last.resolved_at) {
        (IncidentStatus::Resolved, Some(r)) => r,
        _ => run_end.max(inc.last.updated_at),
    };
    let names_root = |inc: &Inc, t: &TruthRecord| {
        [&inc.first, &inc.last].iter().any(|r| {
            r.root_cause_service == t.root
                || (t.root_kind == RootKind::Node && r.category == Category::Network)
        })
    };
    // Incident → fault.
    let mut fault_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut false_incidents = Vec::new();
    for id in &order {
        let Some(inc) = incs.get(id) else { continue };
        let opened = inc.first.opened_at;
        let touches = |t: &TruthRecord| {
            let names = inc
                .first
                .services
                .iter()
                .chain(inc.last.services.iter())
                .chain([&inc.first.root_cause_service, &inc.last.root_cause_service]);
            names
                .into_iter()
                .any(|s| *s == t.root || t.affected.contains(s))
        };
        let best = truth
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                opened.millis() >= t.onset.millis() - 120_000
                    && opened.millis() <= t.end.millis() + 12 * 60_000
                    && touches(t)
            })
            .max_by_key(|(_, t)| (names_root(inc, t), t.onset));
        match best {
            Some((i, _)) => {
                fault_of.insert(id.clone(), i);
            }
            None => false_incidents.push(format!(
                "{} at {}: {} ({})",
                id, inc.first.opened_at, inc.last.root_cause_service, inc.last.category
            )),
        }
    }
    let mut wrong = Vec::new();
    let mut auto_actions = 0;
    for a in &actions {
        if a.decision != Decision::Auto {
            continue;
        }
        auto_actions += 1;
        let why = match fault_of.get(&a.incident_id).and_then(|&i| truth.get(i)) {
            None => Some("on a false incident".to_string()),
            Some(t) => {
                let on_root = if a.action_type == ActionType::DrainNode {
                    a.params.node.as_deref() == Some(t.root.as_str())
                } else {
                    a.target.service == t.root
                };
                if !on_root {
                    Some(format!(
                        "{} is not the root cause {}",
                        a.target.service, t.root
                    ))
                } else if !t.acceptable_actions.contains(&a.action_type) {
                    Some(format!("not a remedy for {}", t.category))
                } else {
                    None
                }
            }
        };
        if let Some(why) = why {
            wrong.push(format!(
                "{} {} ({}): {why}",
                a.action_type.as_str(),
                a.target.service,
                a.action_id
            ));
        }
    }
    let mut largest_incident = 0;
    let mut longest_open_ms = 0;
    let mut overstayed = Vec::new();
    for id in &order {
        let Some(inc) = incs.get(id) else { continue };
        largest_incident = largest_incident
            .max(inc.first.services.len())
            .max(inc.last.services.len());
        let closed = closed_at(inc);
        longest_open_ms = longest_open_ms.max(closed.millis() - inc.first.opened_at.millis());
        if let Some(t) = fault_of.get(id).and_then(|&i| truth.get(i)) {
            if closed.millis() > t.end.millis() + 30 * 60_000 {
                overstayed.push(format!(
                    "{id}: open {} to {closed} ({} services); fault {} ended {}",
                    inc.first.opened_at,
                    inc.last.services.len(),
                    t.id,
                    t.end
                ));
            }
        }
    }
    let mut rows = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        let mine: Vec<&Inc> = order
            .iter()
            .filter(|id| fault_of.get(*id) == Some(&i))
            .filter_map(|id| incs.get(id))
            .collect();
        let first = mine.first();
        let own_time_to_detect_ms = mine
            .iter()
            .filter(|m| names_root(m, t))
            .map(|m| m.first.updated_at.millis() - t.onset.millis())
            .min();
        let diagnosed = first.map(|m| (m.last.root_cause_service.clone(), m.last.category));
        let confidence = first.map(|m| m.last.confidence);
        let root_found = diagnosed.as_ref().is_some_and(|(r, c)| {
            *r == t.root || (t.root_kind == RootKind::Node && *c == Category::Network)
        });
        let ids: Vec<&str> = mine.iter().map(|m| m.first.incident_id.as_str()).collect();
        let my_actions: Vec<&&RecoveryAction> = actions
            .iter()
            .filter(|a| ids.contains(&a.incident_id.as_str()))
            .collect();
        let escalated = escalations
            .iter()
            .any(|e| ids.contains(&e.incident_id.as_str()));
        let action = match my_actions.first() {
            Some(a) => format!(
                "{} {}{}",
                a.action_type.as_str(),
                a.target.service,
                if a.decision == Decision::Auto {
                    ""
                } else {
                    " (approval)"
                }
            ),
            None if escalated => "escalate".into(),
            None => "-".into(),
        };
        let succeeded: Option<EventTime> = results
            .iter()
            .filter(|r| {
                r.status == ActionStatus::Succeeded
                    && my_actions.iter().any(|a| a.action_id == r.action_id)
            })
            .map(|r| r.finished_at)
            .min();
        let resolved_after = |s: EventTime| {
            mine.iter().any(|m| {
                m.last.status == IncidentStatus::Resolved
                    && m.last.resolved_at.is_some_and(|r| r >= s)
            })
        };
        let outcome = if succeeded.is_some_and(resolved_after) {
            "verified"
        } else if escalated {
            "escalated"
        } else if my_actions.iter().any(|a| a.decision != Decision::Auto) {
            "approval"
        } else if mine.is_empty() {
            "-"
        } else {
            "open"
        };
        rows.push(FaultRow {
            id: t.id.clone(),
            category: t.category,
            root: t.root.clone(),
            detected: !mine.is_empty(),
            root_found,
            diagnosed,
            confidence,
            time_to_detect_ms: first.map(|m| m.first.updated_at.millis() - t.onset.millis()),
            action,
            time_to_recover_ms: t.end.millis() - t.onset.millis(),
            fixed_automatically: t.fixed_by == "reflex",
            outcome: outcome.into(),
            remediable: t.expected_action != "escalate",
            own_time_to_detect_ms,
        });
    }
    Report {
        rows,
        incidents: order.len(),
        false_incidents,
        actions: actions.len(),
        auto_actions,
        wrong_actions: wrong,
        escalations: escalations.len(),
        largest_incident,
        longest_open_ms,
        overstayed,
        ..Report::default()
    }
}

impl Report {
    /// Faults with their own incident within 5 minutes of onset.
    pub fn own_within_5m(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.own_incident_within_5m())
            .count()
    }

    /// The figures that matter on a hostile fleet (printed after the report
    /// by `reflex demo --profile production`).
    pub fn hostile_summary(&self) -> String {
        let n = self.rows.len();
        let hours = self.sim_hours.max(1e-9);
        let mut s = format!(
            "own incident within 5m   {}/{n}\nincidents per fault      {:.2}\nfalse incidents          {:.2}/hour\nlargest incident         {} services\nlongest open incident    {:.0} min\nopen > fault end + 30m   {}",
            self.own_within_5m(),
            (self.incidents - self.false_incidents.len()) as f64 / n.max(1) as f64,
            self.false_incidents.len() as f64 / hours,
            self.largest_incident,
            self.longest_open_ms as f64 / 60_000.0,
            self.overstayed.len()
        );
        for o in &self.overstayed {
            s.push_str(&format!("\n  overstayed: {o}"));
        }
        s
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<4} {:<20} {:<22} {:<5} {:<22} {:>7} {:<26} {:>7} {:<5} outcome",
            "id",
            "category",
            "root cause",
            "found",
            "diagnosed",
            "detect",
            "action",
            "recover",
            "auto",
        )?;
        for r in &self.rows {
            let diag = r
                .diagnosed
                .as_ref()
                .map_or("-".to_string(), |(s, c)| format!("{} ({})", s, c));
            writeln!(
                f,
                "{:<4} {:<20} {:<22} {:<5} {:<22} {:>7} {:<26} {:>7} {:<5} {}",
                r.id,
                r.category.as_str(),
                short(&r.root, 22),
                if r.root_found {
                    "yes"
                } else if r.detected {
                    "NO"
                } else {
                    "-"
                },
                short(&diag, 22),
                r.time_to_detect_ms.map_or("missed".into(), mmss),
                short(&r.action, 26),
                mmss(r.time_to_recover_ms),
                if r.fixed_automatically { "yes" } else { "no" },
                r.outcome
            )?;
        }
        let n = self.rows.len();
        let (fixed, rem) = self.auto_remediation();
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        writeln!(f)?;
        writeln!(
            f,
            "faults detected          {}/{n}   root cause found {}/{n} ({:.0}%)",
            self.detected(),
            self.roots_found(),
            pct(self.roots_found(), n)
        )?;
        writeln!(
            f,
            "category right           {}/{n} ({:.0}%)",
            self.categories_right(),
            pct(self.categories_right(), n)
        )?;
        writeln!(
            f,
            "automatic remediation    {fixed}/{rem} remediable faults fixed automatically ({:.0}%); {} of {n} faults overall",
            pct(fixed, rem),
            self.rows.iter().filter(|r| r.fixed_automatically).count()
        )?;
        writeln!(
            f,
            "false incidents          {}   wrong actions {} (of {} automatic, {} total)   escalations {}   incidents {}",
            self.false_incidents.len(),
            self.wrong_actions.len(),
            self.auto_actions,
            self.actions,
            self.escalations,
            self.incidents
        )?;
        for x in &self.false_incidents {
            writeln!(f, "  false incident: {x}")?;
        }
        for x in &self.wrong_actions {
            writeln!(f, "  wrong action: {x}")?;
        }
        write!(
            f,
            "events processed         {} (+{} dead letters) over {:.1} simulated hours in {:.1}s wall = {:.0} events/s",
            self.events,
            self.dead_letters,
            self.sim_hours,
            self.wall_secs,
            self.events_per_sec()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionParams, Severity, Target};
    use crate::sim::faults::FaultKind;

    fn truth() -> TruthRecord {
        TruthRecord {
            id: "F01".into(),
            category: Category::MemoryExhaustion,
            kind: FaultKind::MemoryLeak,
            root: "inventory".into(),
            root_kind: RootKind::Service,
            namespace: None,
            onset: EventTime(600_000),
            end: EventTime(900_000),
            expected_action: "restart".into(),
            acceptable_actions: vec![ActionType::Restart, ActionType::Scale],
            affected: vec!["inventory".into(), "checkout".into()],
            ends: "when_fixed".into(),
            fixed_by: "reflex".into(),
            sample: None,
        }
    }

    fn incident(id: &str, root: &str, opened: i64) -> Output {
        Output::Incident(Incident {
            incident_id: id.into(),
            status: IncidentStatus::Open,
            opened_at: EventTime(opened),
            updated_at: EventTime(opened + 60_000),
            resolved_at: None,
            root_cause_service: root.into(),
            category: Category::MemoryExhaustion,
            confidence: 0.8,
            services: vec![root.into()],
            summary: String::new(),
            evidence: vec![],
            namespace: None,
            severity: Severity::Error,
        })
    }

    fn action(inc: &str, svc: &str, t: ActionType) -> Output {
        Output::Action(RecoveryAction {
            action_id: format!("a-{svc}"),
            incident_id: inc.into(),
            created_at: EventTime(0),
            action_type: t,
            target: Target {
                service: svc.into(),
                namespace: None,
                kind: "Deployment".into(),
                name: svc.into(),
            },
            params: ActionParams::default(),
            risk: 0.2,
            decision: Decision::Auto,
            idempotency_key: format!("k-{svc}"),
            reason: String::new(),
            expires_at: EventTime(0),
            signature: None,
        })
    }

    #[test]
    fn wrong_target_wrong_type_and_false_incidents_are_counted() {
        let outs = vec![
            incident("i1", "checkout", 620_000),
            action("i1", "checkout", ActionType::Restart),
            incident("i2", "inventory", 630_000),
            action("i2", "inventory", ActionType::Rollback),
            incident("i3", "ledger", 5_000_000),
            action("i3", "ledger", ActionType::Restart),
        ];
        let r = score(&[truth()], &outs, &[]);
        assert_eq!(r.false_incidents.len(), 1, "{r}");
        assert_eq!(r.wrong_actions.len(), 3, "{r}");
        assert!(r.rows[0].detected);
        assert!(
            !r.rows[0].root_found,
            "first matched incident blamed checkout"
        );

        let good = vec![
            incident("i2", "inventory", 630_000),
            action("i2", "inventory", ActionType::Restart),
        ];
        let r = score(&[truth()], &good, &[]);
        assert!(r.wrong_actions.is_empty() && r.false_incidents.is_empty());
        assert!(r.rows[0].root_found);
        assert_eq!(r.rows[0].time_to_detect_ms, Some(90_000));
    }
}
