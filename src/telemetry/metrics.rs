//! Every metric reflex exports, by name, and the Prometheus text renderer.
//!
//! Guarantees:
//! - All names live here as constants and follow Prometheus conventions
//!   (`reflex_` prefix, `_total` counters, base units in the name).
//! - Labels come from small fixed sets ([`Topic::ALL`],
//!   [`DeadLetterKind::ALL`], [`Category::ALL`], [`ACTION_TYPES`],
//!   [`DETECTORS`], [`StageName::ALL`]), so cardinality is bounded whatever
//!   the input.
//! - Nothing here runs per event: the pipeline bumps relaxed atomics
//!   ([`Stats`], [`OutputCounters`]) and a scrape reads them.

use crate::model::{ActionType, Category, DeadLetterKind, Decision};
use crate::sinks::{Output, Topic};
pub use crate::stage::stats::{kafka_error, KafkaErrorKind};
use crate::stage::stats::{
    kafka_errors, Guard, HistogramSnapshot, Outcome, StageName, Stats, LATENCY_BUCKETS,
};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Input records received (decoded or dead-lettered), by input topic.
pub const EVENTS_IN: &str = "reflex_events_in_total";
/// Output records written, by output topic.
pub const EVENTS_OUT: &str = "reflex_events_out_total";
/// Dead letters by `reason_kind`.
pub const DEAD_LETTERS: &str = "reflex_dead_letters_total";
/// Events older than the watermark (counted and still used).
pub const LATE_EVENTS: &str = "reflex_late_events_total";
/// `change` events (deploys, config changes).
pub const CHANGE_EVENTS: &str = "reflex_change_events_total";
/// Detections by detector.
pub const DETECTIONS: &str = "reflex_detections_total";
/// Incidents opened, by category at opening.
pub const INCIDENTS_OPENED: &str = "reflex_incidents_opened_total";
/// Incidents resolved, by category at resolution.
pub const INCIDENTS_RESOLVED: &str = "reflex_incidents_resolved_total";
/// Incidents open now, by current category.
pub const INCIDENTS_OPEN: &str = "reflex_incidents_open";
/// Recovery actions by type and decision.
pub const ACTIONS: &str = "reflex_actions_total";
/// Executor results received (`reflex.action-results`) for verification.
pub const ACTION_RESULTS: &str = "reflex_action_results_total";
/// Escalations to humans.
pub const ESCALATIONS: &str = "reflex_escalations_total";
/// Actions held back by a safety guard, by guard.
pub const GUARD_HOLDS: &str = "reflex_guard_holds_total";
/// Circuit breaker state (1 = open/tripped: automatic actions stopped).
pub const BREAKER_OPEN: &str = "reflex_circuit_breaker_open";
/// Verifications of executed actions, by outcome.
pub const VERIFICATIONS: &str = "reflex_verifications_total";
/// Input records received but not yet processed.
pub const CONSUMER_LAG: &str = "reflex_consumer_lag_records";
/// Wall-clock time a stage spends on one batch.
pub const STAGE_BATCH_SECONDS: &str = "reflex_stage_batch_duration_seconds";
/// Entries held in bounded in-memory state, by store.
pub const STATE_ENTRIES: &str = "reflex_state_entries";
/// 1 when `/ready` would answer ready.
pub const READY: &str = "reflex_ready";
/// Build information (always 1).
pub const BUILD_INFO: &str = "reflex_build_info";
/// Process start time (Unix seconds).
pub const START_TIME: &str = "reflex_start_time_seconds";
/// Kafka client trouble the runtime retried through, by kind.
pub const KAFKA_ERRORS: &str = "reflex_kafka_errors_total";

/// The input topic label in embedded mode (the SPEC's default input topic).
pub const INPUT_TOPIC: &str = "errors";
/// The `detector` label values; anything else is counted as `other`.
pub const DETECTORS: [&str; 5] = ["threshold", "anomaly", "pattern", "change", "other"];
/// The `type` label values of actions, in a fixed order.
pub const ACTION_TYPES: [ActionType; 6] = [
    ActionType::Restart,
    ActionType::DeletePod,
    ActionType::Scale,
    ActionType::Rollback,
    ActionType::DrainNode,
    ActionType::RunRunbook,
];
/// The `decision` label values.
pub const DECISIONS: [Decision; 2] = [Decision::Auto, Decision::ApprovalRequired];
/// The breakers whose state is exported.
pub const BREAKERS: [&str; 1] = ["recovery"];

fn action_index(t: ActionType) -> usize {
    match t {
        ActionType::Restart => 0,
        ActionType::DeletePod => 1,
        ActionType::Scale => 2,
        ActionType::Rollback => 3,
        ActionType::DrainNode => 4,
        ActionType::RunRunbook => 5,
    }
}

fn decision_index(d: Decision) -> usize {
    match d {
        Decision::Auto => 0,
        Decision::ApprovalRequired => 1,
    }
}

/// The wire name of a decision.
pub fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Auto => "auto",
        Decision::ApprovalRequired => "approval_required",
    }
}

/// The wire name of an incident status.
pub fn status_str(s: crate::model::IncidentStatus) -> &'static str {
    match s {
        crate::model::IncidentStatus::Open => "open",
        crate::model::IncidentStatus::Updated => "updated",
        crate::model::IncidentStatus::Resolved => "resolved",
    }
}

/// Index of a category in [`Category::ALL`].
pub fn category_index(c: Category) -> usize {
    Category::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

fn topic_index(t: Topic) -> usize {
    Topic::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

fn kind_index(k: DeadLetterKind) -> usize {
    DeadLetterKind::ALL
        .iter()
        .position(|&x| x == k)
        .unwrap_or(0)
}

/// Counters of what was written to the outputs (bumped by the telemetry
/// sink wrapper once per output record, never per input event).
#[derive(Debug, Default)]
pub struct OutputCounters {
    pub by_topic: [AtomicU64; Topic::ALL.len()],
    pub dead_by_kind: [AtomicU64; DeadLetterKind::ALL.len()],
    pub detections_by_detector: [AtomicU64; DETECTORS.len()],
    pub opened_by_category: [AtomicU64; Category::ALL.len()],
    pub resolved_by_category: [AtomicU64; Category::ALL.len()],
    pub actions: [[AtomicU64; DECISIONS.len()]; ACTION_TYPES.len()],
    pub escalations: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl OutputCounters {
    /// Counts one output record.
    pub fn count(&self, out: &Output) {
        bump(&self.by_topic[topic_index(out.topic())]);
        match out {
            Output::DeadLetter(d) => bump(&self.dead_by_kind[kind_index(d.reason_kind)]),
            Output::Detection(d) => {
                let i = DETECTORS
                    .iter()
                    .position(|&x| x == d.detector)
                    .unwrap_or(DETECTORS.len() - 1);
                bump(&self.detections_by_detector[i]);
            }
            Output::Incident(i) => match i.status {
                crate::model::IncidentStatus::Open => {
                    bump(&self.opened_by_category[category_index(i.category)])
                }
                crate::model::IncidentStatus::Resolved => {
                    bump(&self.resolved_by_category[category_index(i.category)])
                }
                crate::model::IncidentStatus::Updated => {}
            },
            Output::Action(a) => {
                bump(&self.actions[action_index(a.action_type)][decision_index(a.decision)])
            }
            Output::Escalation(_) => bump(&self.escalations),
        }
    }
}

/// Values that are not counters of the pipeline, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Open incidents by current category (indexed like [`Category::ALL`]).
    pub open_by_category: Vec<u64>,
    /// (store, entries) pairs.
    pub state: Vec<(&'static str, u64)>,
    pub ready: bool,
    /// Unix seconds.
    pub start_time: f64,
}

struct Writer {
    s: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.s.push_str(name);
        if !labels.is_empty() {
            self.s.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.s.push(',');
                }
                let _ = write!(self.s, "{k}=\"{}\"", escape(val));
            }
            self.s.push('}');
        }
        let _ = writeln!(self.s, " {v}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (i, c) in h.cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".to_string());
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, c);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text exposition format 0.0.4.
pub fn render(stats: &Stats, out: &OutputCounters, g: &Gauges) -> String {
    let mut w = Writer {
        s: String::with_capacity(8192),
    };
    w.family(
        EVENTS_IN,
        "counter",
        "Input records received (decoded or dead-lettered), by input topic.",
    );
    let received = Stats::get(&stats.events_in) + Stats::get(&stats.dead_letters);
    w.sample(EVENTS_IN, &[("topic", INPUT_TOPIC)], received);
    w.family(
        EVENTS_OUT,
        "counter",
        "Output records written, by output topic.",
    );
    for t in Topic::ALL {
        w.sample(
            EVENTS_OUT,
            &[("topic", t.default_name())],
            get(&out.by_topic[topic_index(t)]),
        );
    }
    w.family(DEAD_LETTERS, "counter", "Dead letters by reason kind.");
    for k in DeadLetterKind::ALL {
        w.sample(
            DEAD_LETTERS,
            &[("reason_kind", k.as_str())],
            get(&out.dead_by_kind[kind_index(k)]),
        );
    }
    w.family(
        LATE_EVENTS,
        "counter",
        "Events older than the watermark (counted and still used).",
    );
    w.sample(LATE_EVENTS, &[], Stats::get(&stats.late_events));
    w.family(
        CHANGE_EVENTS,
        "counter",
        "Change events (deploys, config changes).",
    );
    w.sample(CHANGE_EVENTS, &[], Stats::get(&stats.change_events));
    w.family(DETECTIONS, "counter", "Detections by detector.");
    for (i, d) in DETECTORS.iter().enumerate() {
        w.sample(
            DETECTIONS,
            &[("detector", *d)],
            get(&out.detections_by_detector[i]),
        );
    }
    w.family(
        INCIDENTS_OPENED,
        "counter",
        "Incidents opened, by category at opening.",
    );
    for (i, c) in Category::ALL.iter().enumerate() {
        w.sample(
            INCIDENTS_OPENED,
            &[("category", c.as_str())],
            get(&out.opened_by_category[i]),
        );
    }
    w.family(
        INCIDENTS_RESOLVED,
        "counter",
        "Incidents resolved, by category at resolution.",
    );
    for (i, c) in Category::ALL.iter().enumerate() {
        w.sample(
            INCIDENTS_RESOLVED,
            &[("category", c.as_str())],
            get(&out.resolved_by_category[i]),
        );
    }
    w.family(INCIDENTS_OPEN, "gauge", "Incidents open now, by category.");
    for (i, c) in Category::ALL.iter().enumerate() {
        let v = g.open_by_category.get(i).copied().unwrap_or(0);
        w.sample(INCIDENTS_OPEN, &[("category", c.as_str())], v);
    }
    w.family(ACTIONS, "counter", "Recovery actions by type and decision.");
    for (i, t) in ACTION_TYPES.iter().enumerate() {
        for (j, d) in DECISIONS.iter().enumerate() {
            w.sample(
                ACTIONS,
                &[("type", t.as_str()), ("decision", decision_str(*d))],
                get(&out.actions[i][j]),
            );
        }
    }
    w.family(ESCALATIONS, "counter", "Escalations to humans.");
    w.sample(ESCALATIONS, &[], get(&out.escalations));
    w.family(
        ACTION_RESULTS,
        "counter",
        "Executor results received for verification and learning.",
    );
    w.sample(ACTION_RESULTS, &[], get(&stats.action_results));
    w.family(
        GUARD_HOLDS,
        "counter",
        "Actions held back by a safety guard, by guard.",
    );
    for (i, guard) in Guard::ALL.iter().enumerate() {
        w.sample(
            GUARD_HOLDS,
            &[("guard", guard.as_str())],
            Stats::get(&stats.guard_holds[i]),
        );
    }
    w.family(
        VERIFICATIONS,
        "counter",
        "Verifications of executed actions, by outcome.",
    );
    for (i, o) in Outcome::ALL.iter().enumerate() {
        w.sample(
            VERIFICATIONS,
            &[("outcome", o.as_str())],
            Stats::get(&stats.verifications[i]),
        );
    }
    w.family(
        BREAKER_OPEN,
        "gauge",
        "Circuit breaker state: 1 = tripped (automatic actions stopped), 0 = closed.",
    );
    for b in BREAKERS {
        w.sample(
            BREAKER_OPEN,
            &[("breaker", b)],
            Stats::get(&stats.breaker_open),
        );
    }
    w.family(
        CONSUMER_LAG,
        "gauge",
        "Input records received but not yet processed, by input topic.",
    );
    w.sample(CONSUMER_LAG, &[("topic", INPUT_TOPIC)], stats.backlog());
    w.family(
        STAGE_BATCH_SECONDS,
        "histogram",
        "Wall-clock time a pipeline stage spends on one batch.",
    );
    for st in StageName::ALL {
        let h = stats.stage_latency[st as usize].snapshot();
        w.histogram(STAGE_BATCH_SECONDS, &[("stage", st.as_str())], &h);
    }
    w.family(
        STATE_ENTRIES,
        "gauge",
        "Entries held in bounded in-memory state, by store.",
    );
    for (store, n) in &g.state {
        w.sample(STATE_ENTRIES, &[("store", *store)], n);
    }
    w.family(READY, "gauge", "1 when the process is ready (see /ready).");
    w.sample(READY, &[], u8::from(g.ready));
    w.family(BUILD_INFO, "gauge", "Build information; always 1.");
    w.sample(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1);
    w.family(START_TIME, "gauge", "Process start time in Unix seconds.");
    w.sample(START_TIME, &[], g.start_time);
    w.family(
        KAFKA_ERRORS,
        "counter",
        "Kafka client trouble retried through (consumer/producer errors, failed deliveries, backpressure waits, schema registry errors).",
    );
    for k in KafkaErrorKind::ALL {
        w.sample(KAFKA_ERRORS, &[("kind", k.as_str())], kafka_errors(k));
    }
    w.s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let text = render(
            &Stats::default(),
            &OutputCounters::default(),
            &Gauges::default(),
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            assert!(name.starts_with("reflex_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
        assert!(text.contains("reflex_dead_letters_total{reason_kind=\"too_large\"} 0"));
        assert!(text.contains(
            "reflex_stage_batch_duration_seconds_bucket{stage=\"decide\",le=\"+Inf\"} 0"
        ));
    }
}
