//! The live incident board and the value report over HTTP.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` and `GET /board` | the board: one self-contained HTML page (style and script inline, compiled into the binary from `assets/`); it reads `/api/board` once, then follows `/api/stream` |
//! | `GET /api/board` | the board's snapshot: recent incidents, each with its first and latest record, actions, escalations and executor results; pending approvals; guard holds and breaker state |
//! | `GET /api/report?since=&format=json\|text\|html&minutes_per_fix=&minutes_per_approval=` | the value report ([`crate::report`]) over the records this process has seen |
//!
//! [`Journal`] keeps the records behind both: every incident, action and
//! escalation written, and the executor results the process was given
//! (bounded: beyond [`MAX_INCIDENTS`] incidents the oldest one's records go).
//!
//! Guarantees: the page fetches nothing from outside the process (no CDN,
//! fonts or images); the snapshot and the report are pure functions of the
//! journal ([`view`], [`crate::report::compute`]), computed under a short
//! lock on a copy-free borrow; handlers never touch pipeline state.

pub mod live;

use super::Telemetry;
use crate::model::{ActionResult, Decision, EventTime, Incident, IncidentStatus, RecoveryAction};
use crate::report::{self, Records, ReportOptions};
use crate::sinks::Output;
use crate::stage::stats::{Guard, Stats};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// Incidents the journal remembers (with all their records).
pub const MAX_INCIDENTS: usize = 5_000;
/// Incidents the board's snapshot lists (newest update first).
pub const BOARD_INCIDENTS: usize = 50;

/// The records this process has written (and results it was given), bounded.
#[derive(Debug, Default)]
pub struct Journal {
    records: Records,
    /// Incident ids in first-seen order (for eviction).
    order: std::collections::VecDeque<String>,
    known: HashSet<String>,
}

impl Journal {
    /// Adds one output record (detections and dead letters are not kept).
    pub fn push(&mut self, out: &Output) {
        if let Output::Incident(i) = out {
            if self.known.insert(i.incident_id.clone()) {
                self.order.push_back(i.incident_id.clone());
                if self.order.len() > MAX_INCIDENTS {
                    self.evict_oldest();
                }
            }
        }
        self.records.push(out);
    }

    /// Adds an executor result.
    pub fn result(&mut self, r: &ActionResult) {
        self.records.results.push(r.clone());
    }

    fn evict_oldest(&mut self) {
        let Some(old) = self.order.pop_front() else {
            return;
        };
        self.known.remove(&old);
        let r = &mut self.records;
        r.incidents.retain(|i| i.incident_id != old);
        let gone: HashSet<String> = r
            .actions
            .iter()
            .filter(|a| a.incident_id == old)
            .map(|a| a.action_id.clone())
            .collect();
        r.actions.retain(|a| a.incident_id != old);
        r.escalations.retain(|e| e.incident_id != old);
        r.results.retain(|x| !gone.contains(&x.action_id));
    }

    /// Everything kept.
    pub fn records(&self) -> &Records {
        &self.records
    }
}

/// One incident on the board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardIncident {
    /// The first record (when it was diagnosed, and what was said first).
    pub first: Incident,
    /// The latest record (its current state).
    pub latest: Incident,
    /// Action records in emission order (an approved action appears twice:
    /// `approval_required`, then `auto`).
    pub actions: Vec<RecoveryAction>,
    pub escalations: Vec<crate::model::Escalation>,
    pub results: Vec<ActionResult>,
}

/// A guard and how often it held an action back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardCount {
    pub guard: &'static str,
    pub holds: u64,
}

/// The board's snapshot (`GET /api/board`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardView {
    /// Open incidents first, then resolved ones; newest update first in each.
    pub incidents: Vec<BoardIncident>,
    /// `approval_required` actions nobody has decided yet and that have not expired.
    pub pending: Vec<RecoveryAction>,
    /// The latest event time among the records (the board's clock).
    pub now: Option<EventTime>,
    pub guards: Vec<GuardCount>,
    pub breaker_open: bool,
    /// Whether approvals over HTTP can succeed (a token is configured and a
    /// pipeline in this process takes them).
    pub approvals_enabled: bool,
}

/// Groups `records` into the board's incidents and pending approvals (pure).
pub fn view(records: &Records, limit: usize) -> (Vec<BoardIncident>, Vec<RecoveryAction>) {
    let mut by_id: BTreeMap<&str, BoardIncident> = BTreeMap::new();
    for i in &records.incidents {
        by_id
            .entry(i.incident_id.as_str())
            .and_modify(|b| b.latest = i.clone())
            .or_insert_with(|| BoardIncident {
                first: i.clone(),
                latest: i.clone(),
                actions: Vec::new(),
                escalations: Vec::new(),
                results: Vec::new(),
            });
    }
    let mut incident_of: HashMap<&str, &str> = HashMap::new();
    for a in &records.actions {
        if let Some(b) = by_id.get_mut(a.incident_id.as_str()) {
            b.actions.push(a.clone());
            incident_of.insert(a.action_id.as_str(), a.incident_id.as_str());
        }
    }
    for e in &records.escalations {
        if let Some(b) = by_id.get_mut(e.incident_id.as_str()) {
            b.escalations.push(e.clone());
        }
    }
    for r in &records.results {
        if let Some(b) = incident_of
            .get(r.action_id.as_str())
            .and_then(|i| by_id.get_mut(i))
        {
            b.results.push(r.clone());
        }
    }
    let now = report::latest_time(records);
    let mut pending = Vec::new();
    for b in by_id.values() {
        let mut last_by_id: BTreeMap<&str, &RecoveryAction> = BTreeMap::new();
        for a in &b.actions {
            last_by_id.insert(a.action_id.as_str(), a);
        }
        for a in last_by_id.values() {
            let rejected = b.escalations.iter().any(|e| {
                e.reason
                    .contains(&format!("({}) was rejected by", a.action_id))
                    || e.reason.contains("approved by")
            });
            let superseded = b
                .actions
                .iter()
                .any(|x| x.action_id != a.action_id && x.created_at > a.created_at);
            let expired = now.is_some_and(|n| a.expires_at <= n);
            if a.decision == Decision::ApprovalRequired
                && !report::is_dry_run(a)
                && !rejected
                && !superseded
                && !expired
                && b.latest.status != IncidentStatus::Resolved
            {
                pending.push((*a).clone());
            }
        }
    }
    pending.sort_by_key(|a| std::cmp::Reverse(a.created_at));
    let mut incidents: Vec<BoardIncident> = by_id.into_values().collect();
    incidents.sort_by(|a, b| {
        let open = |x: &BoardIncident| x.latest.status == IncidentStatus::Resolved;
        open(a)
            .cmp(&open(b))
            .then_with(|| b.latest.updated_at.cmp(&a.latest.updated_at))
            .then_with(|| a.latest.incident_id.cmp(&b.latest.incident_id))
    });
    incidents.truncate(limit);
    (incidents, pending)
}

const PAGE_HTML: &str = include_str!("assets/board.html");
const PAGE_CSS: &str = include_str!("assets/board.css");
const PAGE_JS: &str = include_str!("assets/board.js");

/// The board page with its style and script inlined (built once).
pub fn page_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        PAGE_HTML
            .replace("/*BOARD_CSS*/", PAGE_CSS)
            .replace("/*BOARD_JS*/", PAGE_JS)
    })
}

/// `GET /` and `GET /board`.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page may talk to this origin only: nothing else loads.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'",
            ),
        ],
        Html(page_html()),
    )
        .into_response()
}

/// `GET /api/board`.
pub async fn snapshot(State(t): State<Arc<Telemetry>>) -> Json<BoardView> {
    let (incidents, pending, now) = {
        let j = t.journal();
        let (i, p) = view(j.records(), BOARD_INCIDENTS);
        (i, p, report::latest_time(j.records()))
    };
    let guards = Guard::ALL
        .iter()
        .zip(&t.stats.guard_holds)
        .map(|(g, holds)| GuardCount {
            guard: g.as_str(),
            holds: Stats::get(holds),
        })
        .collect();
    Json(BoardView {
        incidents,
        pending,
        now,
        guards,
        breaker_open: Stats::get(&t.stats.breaker_open) > 0,
        approvals_enabled: t.api_token_set() && t.approvals.attached(),
    })
}

/// Query of `/api/report`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// RFC 3339, epoch ms, or a duration back from the latest record (`24h`).
    pub since: Option<String>,
    /// `json` (default), `text` or `html`.
    pub format: Option<String>,
    pub minutes_per_fix: Option<f64>,
    pub minutes_per_approval: Option<f64>,
}

/// `GET /api/report`.
pub async fn report_route(
    State(t): State<Arc<Telemetry>>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let bad = |m: String| super::api::ApiError::BadRequest(m).into_response();
    let mut opts = ReportOptions::default();
    for (v, slot) in [
        (q.minutes_per_fix, &mut opts.minutes_per_fix),
        (q.minutes_per_approval, &mut opts.minutes_per_approval),
    ] {
        match v {
            Some(x) if x.is_finite() && x >= 0.0 => *slot = x,
            Some(x) => return bad(format!("minutes must be a non-negative number (got {x})")),
            None => {}
        }
    }
    let rep = {
        let j = t.journal();
        if let Some(s) = q.since.as_deref().filter(|s| !s.is_empty()) {
            match report::parse_since(s, report::latest_time(j.records())) {
                Some(t) => opts.since = Some(t),
                None => {
                    return bad(format!(
                        "since {s:?}: expected RFC 3339, epoch milliseconds or a duration like 24h"
                    ))
                }
            }
        }
        report::compute(j.records(), &opts)
    };
    match q.format.as_deref().unwrap_or("json") {
        "json" => (
            [(header::CONTENT_TYPE, "application/json")],
            report::render::json(&rep),
        )
            .into_response(),
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            report::render::text(&rep),
        )
            .into_response(),
        "html" => Html(report::render::html(&rep)).into_response(),
        other => bad(format!("format {other:?}: expected json, text or html")),
    }
}

#[cfg(test)]
mod tests;
