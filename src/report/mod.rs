//! The value report: what automatic healing did, what it saved, and where it
//! is not trusted yet — per category and overall.
//!
//! One pure function, [`compute`], turns reflex's own output records
//! (incidents, actions, escalations) and the executors' results into a
//! [`ValueReport`]; `reflex report`, `GET /api/report` and `reflex demo`
//! all call it, so the three always agree. [`render`] turns a report into
//! text, JSON or a self-contained HTML page; [`load`] reads the JSON Lines
//! files `reflex run --output-dir` and `reflex demo --export` write.
//!
//! Definitions (all times are event time):
//! - an **incident** is one `incident_id`; its category, root and
//!   confidence are those of its latest record; it is counted when its first
//!   record was written at or after `since`;
//! - **time to detect**: the incident's onset (`opened_at`, the first
//!   detection's first error) to its first record; **time to recover**:
//!   onset to `resolved_at`, over resolved incidents;
//! - **handling**, one per incident: `approved` when a human approved one of
//!   its actions (an `approval_required` action emitted again as `auto`),
//!   else `automatic` when an `auto` action (not a dry run, not an undo) was
//!   sent to executors, else `escalated` when it has an escalation, else
//!   `unhandled` (reflex only watched it);
//! - a **verified fix**: the incident was resolved by verification (its
//!   latest record's evidence has a `verified:` line);
//! - **wrong-action signals**: undos (an action reverting an earlier one)
//!   and verification failures (an executed step followed by another step or
//!   an undo on the same incident: the errors went on or got worse); steps
//!   whose executor reported `failed`/`rejected` are execution failures, not
//!   counted as wrong;
//! - **minutes saved**: automatic verified fixes × `minutes_per_fix` plus
//!   approved verified fixes × (`minutes_per_fix` − `minutes_per_approval`);
//! - **held back**: incidents whose remedy was not carried out automatically
//!   because of policy (approval required, above the approval limit, not
//!   automated for the category, a safety guard, dry run, rejected) or low
//!   confidence (stated confidence below `low_confidence` when held).
//!
//! The recovery stage's records carry no machine-readable hold reason, so
//! escalations are classified by the fixed phrases it writes
//! ([`HoldReason::of_escalation`]); `tests/report.rs` pins them against a
//! real demo run so that a rewording fails a test instead of the report.

pub mod load;
pub mod render;

use crate::model::{
    ActionResult, ActionStatus, Category, Decision, Escalation, EventTime, Incident,
    IncidentStatus, RecoveryAction,
};
use crate::sinks::Output;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The records a report is computed from, in emission order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub incidents: Vec<Incident>,
    pub actions: Vec<RecoveryAction>,
    pub escalations: Vec<Escalation>,
    pub results: Vec<ActionResult>,
}

impl Records {
    /// The incident, action and escalation records among `outputs`, plus `results`.
    pub fn from_outputs<'a>(
        outputs: impl IntoIterator<Item = &'a Output>,
        results: &[ActionResult],
    ) -> Records {
        let mut r = Records {
            results: results.to_vec(),
            ..Records::default()
        };
        for o in outputs {
            r.push(o);
        }
        r
    }

    /// Adds one output record (detections and dead letters are ignored).
    pub fn push(&mut self, o: &Output) {
        match o {
            Output::Incident(i) => self.incidents.push(i.clone()),
            Output::Action(a) => self.actions.push(a.clone()),
            Output::Escalation(e) => self.escalations.push(e.clone()),
            Output::Detection(_) | Output::DeadLetter(_) => {}
        }
    }
}

/// What the report assumes and which incidents it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Only incidents first reported at or after this event time.
    pub since: Option<EventTime>,
    /// Human minutes one manual fix takes (page, diagnose, act, check).
    pub minutes_per_fix: f64,
    /// Human minutes an approval still takes.
    pub minutes_per_approval: f64,
    /// A held-back incident stated below this confidence counts as held by
    /// low confidence.
    pub low_confidence: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            since: None,
            minutes_per_fix: 30.0,
            minutes_per_approval: 5.0,
            low_confidence: 0.7,
        }
    }
}

/// How one incident was handled (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    Automatic,
    Approved,
    Escalated,
    Unhandled,
}

impl Handling {
    pub const ALL: [Handling; 4] = [
        Handling::Automatic,
        Handling::Approved,
        Handling::Escalated,
        Handling::Unhandled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Handling::Automatic => "automatic",
            Handling::Approved => "approved",
            Handling::Escalated => "escalated",
            Handling::Unhandled => "unhandled",
        }
    }
}

/// Why a remedy was not carried out automatically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "guard")]
pub enum HoldReason {
    /// The decision was `approval_required` (risk or confidence above the auto limits).
    ApprovalRequired,
    /// The risk was above even the approval limit.
    AboveApprovalLimit,
    /// The category is not remediated automatically (escalate by policy).
    NotAutomated,
    /// A safety guard held the action (its name).
    Guard(String),
    /// Emitted as a dry run only.
    DryRun,
    /// A human rejected the proposed action.
    Rejected,
    /// Every ladder step was tried or skipped.
    LadderExhausted,
    /// The stated confidence was below [`ReportOptions::low_confidence`].
    LowConfidence,
}

impl HoldReason {
    /// A short label (`guard:cooldown`, `approval_required`, ...).
    pub fn label(&self) -> String {
        match self {
            HoldReason::ApprovalRequired => "approval_required".into(),
            HoldReason::AboveApprovalLimit => "above_approval_limit".into(),
            HoldReason::NotAutomated => "not_automated".into(),
            HoldReason::Guard(g) => format!("guard:{g}"),
            HoldReason::DryRun => "dry_run".into(),
            HoldReason::Rejected => "rejected".into(),
            HoldReason::LadderExhausted => "ladder_exhausted".into(),
            HoldReason::LowConfidence => "low_confidence".into(),
        }
    }

    /// Whether this is policy (everything but low confidence).
    pub fn is_policy(&self) -> bool {
        *self != HoldReason::LowConfidence
    }

    /// The hold an escalation reports, from the recovery stage's fixed
    /// phrasing (`held by guard NAME`, `approval required:`, ...); `None`
    /// for escalations that are not holds (verification outcomes, timeouts).
    pub fn of_escalation(reason: &str) -> Option<HoldReason> {
        if let Some(i) = reason.find("held by guard ") {
            let name: String = reason[i + "held by guard ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                return Some(if name == "dry_run" {
                    HoldReason::DryRun
                } else {
                    HoldReason::Guard(name)
                });
            }
        }
        if reason.starts_with("approval required:") {
            Some(HoldReason::ApprovalRequired)
        } else if reason.contains("is above the approval limit") {
            Some(HoldReason::AboveApprovalLimit)
        } else if reason.contains("is not remediated automatically") {
            Some(HoldReason::NotAutomated)
        } else if reason.contains(") was rejected by ") {
            Some(HoldReason::Rejected)
        } else if reason.starts_with("remedy ladder exhausted") {
            Some(HoldReason::LadderExhausted)
        } else {
            None
        }
    }
}

/// Median and 90th percentile of a set of durations (nearest rank), in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    pub n: usize,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
}

impl Quantiles {
    /// Of `values` (any order).
    pub fn of(values: &[i64]) -> Quantiles {
        let mut v = values.to_vec();
        v.sort_unstable();
        let rank = |q: f64| -> Option<i64> {
            if v.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least q of the set at or below it.
            let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v.get(k - 1).copied()
        };
        Quantiles {
            n: v.len(),
            median_ms: rank(0.5),
            p90_ms: rank(0.9),
        }
    }
}

/// The figures of one category, or of all together.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub incidents: usize,
    pub automatic: usize,
    pub approved: usize,
    pub escalated: usize,
    pub unhandled: usize,
    /// Resolved by verification.
    pub verified_fixes: usize,
    pub verified_automatic: usize,
    pub verified_approved: usize,
    pub undos: usize,
    pub verification_failures: usize,
    /// Undos plus verification failures.
    pub wrong_action_signals: usize,
    pub execution_failures: usize,
    pub time_to_detect: Quantiles,
    pub time_to_recover: Quantiles,
    pub minutes_saved: f64,
    /// Incidents held back by policy or low confidence.
    pub held_back: usize,
}

/// One place where automation is held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    pub category: Category,
    pub service: String,
    pub reason: String,
    pub incidents: usize,
}

/// Record counts, for reconciling with other reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    pub incident_records: usize,
    pub actions: usize,
    pub auto_actions: usize,
    pub approval_required_actions: usize,
    pub escalations: usize,
    pub results: usize,
}

/// One incident as the report sees it (also listed in the JSON form).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentLine {
    pub incident_id: String,
    pub category: Category,
    pub root_cause_service: String,
    pub confidence: f64,
    pub handling: Handling,
    pub verified: bool,
    pub time_to_detect_ms: i64,
    pub time_to_recover_ms: Option<i64>,
    pub held: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueReport {
    pub since: Option<EventTime>,
    /// Earliest onset and latest record time covered.
    pub from: Option<EventTime>,
    pub until: Option<EventTime>,
    pub minutes_per_fix: f64,
    pub minutes_per_approval: f64,
    pub low_confidence: f64,
    pub overall: Row,
    /// Categories with at least one incident, in taxonomy order.
    pub categories: BTreeMap<Category, Row>,
    /// Most held-back places first.
    pub held_back: Vec<HeldBack>,
    pub records: RecordCounts,
    pub incidents: Vec<IncidentLine>,
}

/// Whether an action reverts an earlier one (the recovery stage's undo).
pub fn is_undo(a: &RecoveryAction) -> bool {
    a.reason.starts_with("undo:")
}

/// Whether an action was emitted as a dry run only: the decision
/// `dry_run`, or (records written before that decision existed) the old
/// `params.args.dry_run = "true"` marker.
pub fn is_dry_run(a: &RecoveryAction) -> bool {
    a.decision == Decision::DryRun || a.params.args.get("dry_run").is_some_and(|v| v == "true")
}

/// Whether an incident record says it was resolved by verification.
pub fn is_verified(i: &Incident) -> bool {
    i.status == IncidentStatus::Resolved && i.evidence.iter().any(|e| e.starts_with("verified:"))
}

#[derive(Default)]
struct Acc<'a> {
    first: Option<&'a Incident>,
    last: Option<&'a Incident>,
    onset: Option<EventTime>,
    records: usize,
    /// Action ids in first-seen order, with (every decision seen, the last record).
    actions: Vec<&'a str>,
    by_action: HashMap<&'a str, (BTreeSet<u8>, &'a RecoveryAction)>,
    action_records: Vec<&'a RecoveryAction>,
    escalations: Vec<&'a Escalation>,
}

fn decision_code(d: Decision) -> u8 {
    match d {
        Decision::Auto => 0,
        Decision::ApprovalRequired => 1,
        Decision::DryRun => 2,
    }
}

/// The report over `records` (see the module doc for every definition).
pub fn compute(records: &Records, opts: &ReportOptions) -> ValueReport {
    let mut accs: BTreeMap<&str, Acc<'_>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for i in &records.incidents {
        let a = accs.entry(i.incident_id.as_str()).or_insert_with(|| {
            order.push(i.incident_id.as_str());
            Acc::default()
        });
        a.first.get_or_insert(i);
        a.last = Some(i);
        a.records += 1;
        a.onset = Some(a.onset.map_or(i.opened_at, |o| o.min(i.opened_at)));
    }
    for act in &records.actions {
        let Some(a) = accs.get_mut(act.incident_id.as_str()) else {
            continue;
        };
        a.action_records.push(act);
        let e = a
            .by_action
            .entry(act.action_id.as_str())
            .or_insert_with(|| (BTreeSet::new(), act));
        if e.0.is_empty() {
            a.actions.push(act.action_id.as_str());
        }
        e.0.insert(decision_code(act.decision));
        e.1 = act;
    }
    for esc in &records.escalations {
        if let Some(a) = accs.get_mut(esc.incident_id.as_str()) {
            a.escalations.push(esc);
        }
    }
    // Per action id: did any result say succeeded / failed.
    let mut results: HashMap<&str, (bool, bool)> = HashMap::new();
    for r in &records.results {
        let e = results.entry(r.action_id.as_str()).or_default();
        match r.status {
            ActionStatus::Succeeded => e.0 = true,
            ActionStatus::Failed | ActionStatus::Rejected => e.1 = true,
            // A dry run did nothing: neither a fix nor a failed one.
            ActionStatus::SkippedDuplicate | ActionStatus::SkippedDryRun => {}
        }
    }

    let mut lines = Vec::new();
    let mut ttd: BTreeMap<Option<Category>, Vec<i64>> = BTreeMap::new();
    let mut ttr: BTreeMap<Option<Category>, Vec<i64>> = BTreeMap::new();
    let mut rows: BTreeMap<Category, Row> = BTreeMap::new();
    let mut overall = Row::default();
    let mut held_places: BTreeMap<(Category, String, String), usize> = BTreeMap::new();
    let mut counts = RecordCounts::default();
    let (mut from, mut until): (Option<EventTime>, Option<EventTime>) = (None, None);
    let mut included: BTreeSet<&str> = BTreeSet::new();

    for id in &order {
        let Some(a) = accs.get(id) else { continue };
        let (Some(first), Some(last), Some(onset)) = (a.first, a.last, a.onset) else {
            continue;
        };
        if opts.since.is_some_and(|s| first.updated_at < s) {
            continue;
        }
        included.insert(id);
        from = Some(from.map_or(onset, |f: EventTime| f.min(onset)));
        let latest = a
            .action_records
            .iter()
            .map(|x| x.created_at)
            .chain(a.escalations.iter().map(|e| e.created_at))
            .chain([last.updated_at])
            .max()
            .unwrap_or(last.updated_at);
        until = Some(until.map_or(latest, |u: EventTime| u.max(latest)));

        counts.incident_records += a.records;
        counts.actions += a.action_records.len();
        counts.auto_actions += a
            .action_records
            .iter()
            .filter(|x| x.decision == Decision::Auto)
            .count();
        counts.approval_required_actions += a
            .action_records
            .iter()
            .filter(|x| x.decision == Decision::ApprovalRequired)
            .count();
        counts.escalations += a.escalations.len();

        // Actions by id: (decisions seen, last record).
        let acts: Vec<(&BTreeSet<u8>, &RecoveryAction)> = a
            .actions
            .iter()
            .filter_map(|aid| a.by_action.get(aid).map(|(d, r)| (d, *r)))
            .collect();
        let approved = acts
            .iter()
            .any(|(d, r)| d.contains(&1) && r.decision == Decision::Auto && !is_dry_run(r));
        let executed: Vec<&RecoveryAction> = acts
            .iter()
            .filter(|(_, r)| r.decision == Decision::Auto && !is_dry_run(r))
            .map(|(_, r)| *r)
            .collect();
        let automatic = executed.iter().any(|r| !is_undo(r));
        let handling = if approved {
            Handling::Approved
        } else if automatic {
            Handling::Automatic
        } else if !a.escalations.is_empty() {
            Handling::Escalated
        } else {
            Handling::Unhandled
        };
        let verified = is_verified(last);
        let undos = executed.iter().filter(|r| is_undo(r)).count();
        let mut verification_failures = 0;
        let mut execution_failures = 0;
        for (k, r) in executed.iter().enumerate() {
            if is_undo(r) {
                continue;
            }
            let (ok, failed) = results
                .get(r.action_id.as_str())
                .copied()
                .unwrap_or_default();
            if failed && !ok {
                execution_failures += 1;
            } else if k + 1 < executed.len() {
                // Something came after it on the same incident: it did not fix it.
                verification_failures += 1;
            }
        }

        let mut held: BTreeSet<HoldReason> = BTreeSet::new();
        for e in &a.escalations {
            if let Some(h) = HoldReason::of_escalation(&e.reason) {
                held.insert(h);
            }
        }
        if acts.iter().any(|(_, r)| is_dry_run(r)) {
            held.insert(HoldReason::DryRun);
        }
        if acts.iter().any(|(d, _)| d.contains(&1)) {
            held.insert(HoldReason::ApprovalRequired);
        }
        if handling == Handling::Automatic {
            // An automatic fix after all: what held an earlier step back did not hold the incident.
            held.clear();
        }
        if !held.is_empty() && last.confidence < opts.low_confidence {
            held.insert(HoldReason::LowConfidence);
        }
        for h in &held {
            *held_places
                .entry((last.category, last.root_cause_service.clone(), h.label()))
                .or_default() += 1;
        }

        let detect_ms = (first.updated_at.millis() - onset.millis()).max(0);
        let recover_ms = match (last.status, last.resolved_at) {
            (IncidentStatus::Resolved, Some(r)) => Some((r.millis() - onset.millis()).max(0)),
            _ => None,
        };
        let saved = match (verified, handling) {
            (true, Handling::Automatic) => opts.minutes_per_fix,
            (true, Handling::Approved) => {
                (opts.minutes_per_fix - opts.minutes_per_approval).max(0.0)
            }
            _ => 0.0,
        };
        let cat = last.category;
        for row in [rows.entry(cat).or_default(), &mut overall] {
            row.incidents += 1;
            match handling {
                Handling::Automatic => row.automatic += 1,
                Handling::Approved => row.approved += 1,
                Handling::Escalated => row.escalated += 1,
                Handling::Unhandled => row.unhandled += 1,
            }
            if verified {
                row.verified_fixes += 1;
                match handling {
                    Handling::Automatic => row.verified_automatic += 1,
                    Handling::Approved => row.verified_approved += 1,
                    _ => {}
                }
            }
            row.undos += undos;
            row.verification_failures += verification_failures;
            row.wrong_action_signals += undos + verification_failures;
            row.execution_failures += execution_failures;
            row.minutes_saved += saved;
            if !held.is_empty() {
                row.held_back += 1;
            }
        }
        for key in [Some(cat), None] {
            ttd.entry(key).or_default().push(detect_ms);
            if let Some(r) = recover_ms {
                ttr.entry(key).or_default().push(r);
            }
        }
        lines.push(IncidentLine {
            incident_id: last.incident_id.clone(),
            category: cat,
            root_cause_service: last.root_cause_service.clone(),
            confidence: last.confidence,
            handling,
            verified,
            time_to_detect_ms: detect_ms,
            time_to_recover_ms: recover_ms,
            held: held.iter().map(HoldReason::label).collect(),
        });
    }
    counts.results = records
        .results
        .iter()
        .filter(|r| {
            records
                .actions
                .iter()
                .any(|a| a.action_id == r.action_id && included.contains(a.incident_id.as_str()))
        })
        .count();
    let q = |m: &BTreeMap<Option<Category>, Vec<i64>>, k: Option<Category>| {
        m.get(&k)
            .map_or_else(Quantiles::default, |v| Quantiles::of(v))
    };
    for (c, row) in rows.iter_mut() {
        row.time_to_detect = q(&ttd, Some(*c));
        row.time_to_recover = q(&ttr, Some(*c));
    }
    overall.time_to_detect = q(&ttd, None);
    overall.time_to_recover = q(&ttr, None);
    let mut held_back: Vec<HeldBack> = held_places
        .into_iter()
        .map(|((category, service, reason), incidents)| HeldBack {
            category,
            service,
            reason,
            incidents,
        })
        .collect();
    held_back.sort_by(|a, b| {
        b.incidents
            .cmp(&a.incidents)
            .then_with(|| a.category.cmp(&b.category))
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.reason.cmp(&b.reason))
    });
    ValueReport {
        since: opts.since,
        from,
        until,
        minutes_per_fix: opts.minutes_per_fix,
        minutes_per_approval: opts.minutes_per_approval,
        low_confidence: opts.low_confidence,
        overall,
        categories: rows,
        held_back,
        records: counts,
        incidents: lines,
    }
}

/// Parses `since` as RFC 3339, epoch milliseconds, or a duration (`24h`,
/// `7d`) back from `latest`.
pub fn parse_since(s: &str, latest: Option<EventTime>) -> Option<EventTime> {
    let s = s.trim();
    if let Some(t) = EventTime::parse_rfc3339(s) {
        return Some(t);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Some(EventTime(ms));
    }
    let d = crate::model::time::parse_duration_ms(s)?;
    Some(latest.unwrap_or_default().plus_ms(-d))
}

/// The latest event time among `records` (for relative `since`).
pub fn latest_time(records: &Records) -> Option<EventTime> {
    records
        .incidents
        .iter()
        .map(|i| i.updated_at)
        .chain(records.actions.iter().map(|a| a.created_at))
        .chain(records.escalations.iter().map(|e| e.created_at))
        .max()
}

#[cfg(test)]
mod tests;
