//! Pattern detections in the pipeline, built on the template miner:
//!
//! - **New templates**: a template never seen before, first produced by an
//!   event at `new_template_severity` or worse, after the miner's warm-up
//!   (everything is new at start-up). Reported per service per window with
//!   the templates' text; weak on its own (it joins incidents as evidence and
//!   opens one only together with stronger signals).
//! - **Recurring new templates**: the events of templates born within the
//!   last `recurring_within` that come back. A never-seen error shape that
//!   keeps occurring (a consumer failing poison messages, a new code path
//!   throwing) is a change in behaviour however low the service's volume;
//!   it needs no baseline, because the template had none. Only repeats
//!   count (the creating event does not), so a stream of messages the miner
//!   cannot mask, each its own template, never adds up; and only a
//!   service's own errors count, not its failing calls (events naming an
//!   `upstream`), which are the upstream's trouble and judged relative to
//!   the edge's normal elsewhere. Reported per service
//!   when, over the last `RECUR_WINDOWS` windows, at least two had repeats
//!   and they number `recurring_min_events` or more; it scores at the
//!   open threshold, so it can open an incident on its own.
//! - **Sequences** (`topology/rules/sequences.yaml`): event A then at least
//!   `count` events B within `within`, on the same service (or instance),
//!   e.g. a `change` then an error burst ⇒ a bad-deploy hint. Like the
//!   other pattern detections it scores below the diagnosis' open threshold:
//!   it strengthens and explains incidents, it does not open them.
//! - **Cascades**: failing calls of service A naming an `upstream` B that is
//!   itself failing in the same window, and trace ids shared by the errors of
//!   several services (ordered by first error) — recorded as evidence of who
//!   failed because of whom. Each edge (and trace pair) is judged against
//!   its own learned normal ([`super::baseline`]): a caller that fails a few
//!   calls to an upstream all day is that edge's baseline, and only a rise
//!   of 3× over it is reported.
//!
//! Per-template *rates* are judged by the threshold detector
//! (`group_by = "template"`), with the same baseline and significance test
//! as every other count.
//!
//! Keying: service (new templates, recurring ones, cascades), service or
//! instance (sequences). Bounds: per window at most `MAX_PER_WINDOW` entries
//! in each map; at most `MAX_YOUNG` young templates and `MAX_PER_WINDOW`
//! services with recurring history; one pending sequence start per (rule, scope), at most `MAX_PENDING`
//! (further starts are dropped and counted in `dropped_pending`). Per event
//! the cost is O(rules), whatever the number of pending starts.

use super::baseline::EdgeBaselines;
use super::config::MinerConfig;
use crate::detectors::facts::{Facts, Head, SignatureMeta};
use crate::detectors::signature::Signatures;
use crate::detectors::{Detector, Observed};
use crate::model::DetectorKind;
use crate::model::{Detection, DurationMs, EventKind, EventTime, Severity, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod sequence;
pub use sequence::{compile_sequences, EventMatch, SequenceRule, SequenceScope};
use sequence::{CompiledMatch, CompiledSequence, Pending};

const MAX_PER_WINDOW: usize = 4096;
const MAX_PENDING: usize = 10_000;
const MAX_TRACE_SERVICES: usize = 8;
/// Edges whose failing-call baselines are learned (cascades, trace pairs).
const MAX_EDGES: usize = 100_000;
/// Weight of the newest window in an edge's learned rate.
const EDGE_ALPHA: f64 = 0.1;
/// A cascade is a rise of this factor over the edge's own normal.
const EDGE_FACTOR: f64 = 3.0;
/// Young templates tracked at once (the oldest are forgotten first).
const MAX_YOUNG: usize = 10_000;
/// Windows over which a service's recurring new templates are summed.
const RECUR_WINDOWS: i64 = 3;
/// Score of a recurring-new-template detection: strong enough to open.
const RECUR_SCORE: f64 = 0.55;

/// `[detectors.pattern]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatternConfig {
    /// Turns template mining and pattern detections off.
    pub enabled: bool,
    /// Messages at this severity or worse are mined into templates.
    pub mine_severity: Severity,
    /// A never-seen template counts when its first event is at least this severe.
    pub new_template_severity: Severity,
    /// No template counts as new until this much event time has been mined.
    pub warmup: DurationMs,
    /// Window of new-template and cascade reports.
    pub window: DurationMs,
    /// A cascade edge needs at least this many failing calls in the window.
    pub cascade_min_calls: u64,
    /// A template counts as new (for recurring-new-template detections) this
    /// long after its first event.
    pub recurring_within: DurationMs,
    /// Repeats of new templates, over the last three windows, that make a
    /// recurring-new-template detection.
    pub recurring_min_events: u64,
    /// Sequence rule file; absent = the built-in `topology/rules/sequences.yaml`.
    pub sequences: Option<std::path::PathBuf>,
    /// The template miner's settings (one configuration for every kind of log).
    pub miner: MinerConfig,
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig {
            enabled: true,
            mine_severity: Severity::Error,
            new_template_severity: Severity::Error,
            warmup: DurationMs(30 * 60_000),
            window: DurationMs(60_000),
            cascade_min_calls: 5,
            recurring_within: DurationMs(15 * 60_000),
            recurring_min_events: 6,
            sequences: None,
            miner: MinerConfig::default(),
        }
    }
}

#[derive(Default)]
struct PatternWindow {
    /// service → (facts of its new-template events, template texts)
    new_templates: BTreeMap<String, (Facts, BTreeSet<String>)>,
    /// service → (facts of repeats of its young templates, their texts)
    recurring: BTreeMap<String, (Facts, BTreeSet<String>)>,
    /// caller → upstream → facts of the failing calls
    calls: BTreeMap<String, BTreeMap<String, Facts>>,
    /// Entries in `calls` (bounded by `MAX_PER_WINDOW`).
    call_edges: usize,
    /// services with error events in the window
    failing: BTreeSet<String>,
    /// trace id → services with errors in it, by first error time
    traces: BTreeMap<String, Vec<(EventTime, String)>>,
}

/// The pattern detector.
pub struct PatternStream {
    cfg: PatternConfig,
    meta: SignatureMeta,
    sequences: Vec<CompiledSequence>,
    /// Per sequence rule: scope key → pending start.
    pending: Vec<BTreeMap<String, Pending>>,
    pending_len: usize,
    open: BTreeMap<i64, PatternWindow>,
    first_event: Option<EventTime>,
    /// Failing calls per window along each caller → upstream edge (cascade)
    /// and per (later, first) trace pair (trace cascade), learned.
    edges: EdgeBaselines,
    traces: EdgeBaselines,
    /// Templates born after the warm-up, by birth time (ms), while young.
    young: HashMap<crate::detectors::pattern::miner::TemplateId, i64>,
    /// Per service, the repeats of young templates in recent windows
    /// (window start, events), newest last, at most `RECUR_WINDOWS`.
    recur: HashMap<String, Vec<(i64, u64)>>,
    /// Sequence starts dropped because `MAX_PENDING` was reached.
    pub dropped_pending: u64,
    /// The longest of the window and every sequence rule's `within`
    /// (see [`Detector::hold_ms`]).
    hold_ms: i64,
}

impl PatternStream {
    /// Builds the detector; `sequences` were validated at config load (invalid ones are skipped).
    pub fn new(cfg: &PatternConfig, signatures: &Signatures, sequences: &[SequenceRule]) -> Self {
        let rules = sequences;
        let sequences: Vec<CompiledSequence> = rules
            .iter()
            .filter_map(|r| {
                Some(CompiledSequence {
                    rule: r.clone(),
                    first: CompiledMatch::compile(&r.first, signatures).ok()?,
                    then: CompiledMatch::compile(&r.then, signatures).ok()?,
                })
            })
            .collect();
        let pending = (0..sequences.len()).map(|_| BTreeMap::new()).collect();
        let within = rules.iter().map(|r| r.within.0).max().unwrap_or(0);
        PatternStream {
            hold_ms: if cfg.enabled {
                cfg.window.0.max(within)
            } else {
                0
            },
            pending,
            cfg: cfg.clone(),
            meta: SignatureMeta::new(signatures),
            sequences,
            pending_len: 0,
            open: BTreeMap::new(),
            first_event: None,
            edges: EdgeBaselines::new(EDGE_ALPHA, EDGE_FACTOR, MAX_EDGES),
            traces: EdgeBaselines::new(EDGE_ALPHA, EDGE_FACTOR, MAX_EDGES),
            young: HashMap::new(),
            recur: HashMap::new(),
            dropped_pending: 0,
        }
    }

    fn window_start(&self, o: &Observed<'_>) -> i64 {
        o.window_start(self.cfg.window.0)
    }

    fn close(&mut self, start: i64, w: PatternWindow, out: &mut Vec<Detection>) {
        let window = Window {
            start: EventTime(start),
            end: EventTime(start + self.cfg.window.0),
        };
        for (service, (facts, templates)) in w.new_templates {
            let n = templates.len();
            let head = Head {
                detector: DetectorKind::Pattern,
                rule: "new_template".into(),
                key: format!("new_template,service={service}"),
                // Weak alone; more distinct new error shapes, more weight.
                score: (0.2 + 0.1 * n as f64).min(0.45),
                window,
                evidence: format!(
                    "{service}: {n} never-seen error template(s): {}",
                    quoted(&templates)
                ),
            };
            out.push(facts.into_detection(&self.meta, head));
        }
        self.close_recurring(start, window, w.recurring, out);
        let edges = w
            .calls
            .into_iter()
            .flat_map(|(caller, m)| m.into_iter().map(move |(u, f)| ((caller.clone(), u), f)));
        let span = self.cfg.window.0;
        for ((caller, upstream), facts) in edges {
            // Learned on every window, judged against the edge's normal.
            let rise = self
                .edges
                .observe(&caller, &upstream, start, span, facts.matched as f64);
            if facts.matched < self.cfg.cascade_min_calls || !w.failing.contains(&upstream) || !rise
            {
                continue;
            }
            let head = Head {
                detector: DetectorKind::Pattern,
                rule: "cascade".into(),
                key: format!("cascade,{caller}->{upstream}"),
                score: 0.3,
                window,
                evidence: format!(
                    "{caller} → {upstream}: {} failing call(s) while {upstream} itself reports errors",
                    facts.matched
                ),
            };
            out.push(facts.into_detection(&self.meta, head));
        }
        // Traces crossing services: who erred first in each. A service that
        // erred later in a trace than another was (directly or through
        // others) calling it: one detection per (later, first) pair per
        // window, on the later service, naming the first as its upstream
        // with the number of such traces. This is how dependencies are
        // learned from traces when events carry no `upstream` field.
        let mut pairs: BTreeMap<(String, String), (u64, String, EventTime)> = BTreeMap::new();
        let mut per_first: BTreeMap<String, usize> = BTreeMap::new();
        for (trace, mut svcs) in w.traces {
            if svcs.len() < 2 {
                continue;
            }
            svcs.sort();
            let first = svcs[0].1.clone();
            let mut seen = BTreeSet::new();
            for (t, s) in svcs.into_iter().skip(1) {
                if s == first || !seen.insert(s.clone()) {
                    continue;
                }
                let key = (s, first.clone());
                if !pairs.contains_key(&key) {
                    let k = per_first.entry(first.clone()).or_default();
                    if *k >= MAX_TRACE_SERVICES {
                        continue;
                    }
                    *k += 1;
                }
                let e = pairs.entry(key).or_insert_with(|| (0, trace.clone(), t));
                e.0 += 1;
                e.2 = e.2.min(t);
            }
        }
        for ((later, first), (n, example, first_time)) in pairs {
            if !self.traces.observe(&later, &first, start, span, n as f64) {
                continue;
            }
            let head = Head {
                detector: DetectorKind::Pattern,
                rule: "trace_cascade".into(),
                key: format!("trace_cascade,{later}->{first}"),
                score: 0.3,
                window,
                evidence: format!(
                    "{n} trace(s) erred first in {first}, then in {later} (e.g. trace {})",
                    truncate(&example, 32)
                ),
            };
            let mut facts = Facts::default();
            facts.service = later;
            facts.matched = n;
            let mut d = facts.into_detection(&self.meta, head);
            d.upstreams = vec![crate::model::Counted {
                value: first,
                count: n as i64,
            }];
            d.trace_ids = vec![example];
            d.first_seen = first_time;
            out.push(d);
        }
    }
}

impl PatternStream {
    /// Judges one window's repeats of young templates against each
    /// service's recent windows (see the module docs), and forgets young
    /// templates and histories that aged out.
    fn close_recurring(
        &mut self,
        start: i64,
        window: Window,
        recurring: BTreeMap<String, (Facts, BTreeSet<String>)>,
        out: &mut Vec<Detection>,
    ) {
        let horizon = start - (RECUR_WINDOWS - 1) * self.cfg.window.0;
        for (service, (facts, templates)) in recurring {
            if !self.recur.contains_key(&service) && self.recur.len() >= MAX_PER_WINDOW {
                continue;
            }
            let h = self.recur.entry(service.clone()).or_default();
            h.retain(|(s, _)| *s >= horizon);
            h.push((start, facts.matched));
            let total: u64 = h.iter().map(|(_, n)| n).sum();
            if h.len() < 2 || total < self.cfg.recurring_min_events {
                continue;
            }
            let head = Head {
                detector: DetectorKind::Pattern,
                rule: "recurring_new_template".into(),
                key: format!("recurring_new_template,service={service}"),
                score: RECUR_SCORE,
                window,
                evidence: format!(
                    "{service}: {total} repeat(s) in {} min of error template(s) first seen in the last {} min: {}",
                    h.len() as i64 * self.cfg.window.0 / 60_000,
                    self.cfg.recurring_within.0 / 60_000,
                    quoted(&templates)
                ),
            };
            // Only a failure that describes itself as the service's own
            // (bad data, config, memory, a certificate, exhaustion): a
            // victim's new errors about whatever it could not get are its
            // upstream's trouble, judged elsewhere.
            let d = facts.into_detection(&self.meta, head);
            if d.hints.iter().any(|h| {
                h.about == crate::model::About::Itself
                    && h.weight >= OWN_KIND_WEIGHT
                    && h.category.is_own_kind()
            }) {
                out.push(d);
            }
        }
        self.recur
            .retain(|_, h| h.last().is_some_and(|(s, _)| *s >= horizon));
        let born_after = start - self.cfg.recurring_within.0;
        self.young.retain(|_, born| *born >= born_after);
    }
}

/// A self hint this strong makes a recurring new template the service's own failure.
const OWN_KIND_WEIGHT: f64 = 0.3;

/// The first three templates, quoted and cut to 100 characters, for evidence.
fn quoted(templates: &BTreeSet<String>) -> String {
    let list: Vec<String> = templates
        .iter()
        .take(3)
        .map(|t| format!("\"{}\"", truncate(t, 100)))
        .collect();
    list.join(", ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n).collect();
        format!("{t}…")
    }
}

impl crate::detectors::FromConfig for PatternStream {
    type Config = PatternConfig;
    fn from_config(cfg: &PatternConfig, ctx: crate::detectors::BuildContext<'_>) -> Self {
        PatternStream::new(cfg, ctx.signatures, ctx.sequences)
    }
}

impl Detector for PatternStream {
    fn hold_ms(&self) -> i64 {
        self.hold_ms
    }

    fn observe(&mut self, o: &Observed<'_>, out: &mut Vec<Detection>) {
        if !self.cfg.enabled {
            return;
        }
        let ev = o.event;
        let first = *self.first_event.get_or_insert(ev.time);
        if !self.sequences.is_empty() {
            self.sequences(o, out);
        }
        if ev.kind == EventKind::Change || ev.severity < Severity::Error {
            return;
        }
        let start = self.window_start(o);
        let warm = ev.time.millis() - first.millis() >= self.cfg.warmup.0;
        let w = self.open.entry(start).or_default();
        if !w.failing.contains(&ev.service) && w.failing.len() < MAX_PER_WINDOW {
            w.failing.insert(ev.service.clone());
        }
        let room =
            w.new_templates.len() < MAX_PER_WINDOW || w.new_templates.contains_key(&ev.service);
        if let Some(t) = o
            .template
            .filter(|_| ev.severity >= self.cfg.new_template_severity)
        {
            let entry = if t.created && warm && room {
                if self.young.len() < MAX_YOUNG {
                    self.young.insert(t.id, ev.time.millis());
                }
                Some(&mut w.new_templates)
            } else if ev.upstream.is_none()
                && self
                    .young
                    .get(&t.id)
                    .is_some_and(|born| ev.time.millis() - born <= self.cfg.recurring_within.0)
                && (w.recurring.len() < MAX_PER_WINDOW || w.recurring.contains_key(&ev.service))
            {
                Some(&mut w.recurring)
            } else {
                None
            };
            if let Some(m) = entry {
                let e = match m.get_mut(&ev.service) {
                    Some(e) => e,
                    None => m
                        .entry(ev.service.clone())
                        .or_insert_with(|| (Facts::for_event(o), BTreeSet::new())),
                };
                e.0.add(o);
                if e.1.len() < 16 && !e.1.contains(t.text) {
                    e.1.insert(t.text.to_string());
                }
            }
        }
        if let Some(u) = &ev.upstream {
            // Borrowed lookups first: no allocation per event for known edges.
            if let Some(f) = w.calls.get_mut(&ev.service).and_then(|m| m.get_mut(u)) {
                f.add(o);
            } else if w.call_edges < MAX_PER_WINDOW {
                w.call_edges += 1;
                let mut f = Facts::for_event(o);
                f.add(o);
                w.calls
                    .entry(ev.service.clone())
                    .or_default()
                    .insert(u.clone(), f);
            }
        }
        if let Some(tr) = &ev.trace_id {
            let room = w.traces.len() < MAX_PER_WINDOW;
            let v = if w.traces.contains_key(tr) {
                w.traces.get_mut(tr)
            } else if room {
                Some(w.traces.entry(tr.clone()).or_default())
            } else {
                None
            };
            if let Some(v) = v {
                if let Some(e) = v.iter_mut().find(|(_, s)| *s == ev.service) {
                    e.0 = e.0.min(ev.time);
                } else if v.len() < MAX_TRACE_SERVICES {
                    v.push((ev.time, ev.service.clone()));
                }
            }
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Detection>) {
        let w = self.cfg.window.0;
        while let Some(e) = self.open.first_entry() {
            if *e.key() + w > wm.millis() {
                break;
            }
            let start = *e.key();
            let win = e.remove();
            self.close(start, win, out);
        }
        let mut left = 0;
        for (ri, m) in self.pending.iter_mut().enumerate() {
            let within = self.sequences[ri].rule.within.0;
            m.retain(|_, p| wm.millis() <= p.started.millis() + within);
            left += m.len();
        }
        self.pending_len = left;
    }

    fn flush(&mut self, out: &mut Vec<Detection>) {
        while let Some((start, win)) = self.open.pop_first() {
            self.close(start, win, out);
        }
        for m in &mut self.pending {
            m.clear();
        }
        self.pending_len = 0;
    }

    fn state_keys(&self) -> usize {
        self.pending_len
            + self
                .open
                .values()
                .map(|w| w.calls.len() + w.traces.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
