//! Every metric reflex exports, by name, as one set of families
//! ([`families`]) that both exporters encode: Prometheus through the
//! `prometheus-client` crate ([`FamilyCollector`], [`render`]) and the OTLP
//! instruments (`otel`), so the two cannot drift.
//!
//! Guarantees:
//! - All names live here as constants and follow Prometheus conventions
//!   (`reflex_` prefix, `_total` counters, base units in the name).
//! - Labels come from small fixed sets ([`Topic::ALL`],
//!   [`DeadLetterKind::ALL`], [`Category::ALL`], [`ACTION_TYPES`],
//!   [`DETECTORS`], [`StageName::ALL`]), so cardinality is bounded whatever
//!   the input.
//! - Nothing here runs per event: the pipeline bumps relaxed atomics
//!   ([`Stats`], [`OutputCounters`]) and a scrape reads them; the
//!   prometheus-client registry holds no metric of its own, only the
//!   collector that reads the families when scraped.
//! - The exposition is Prometheus text 0.0.4 ([`CONTENT_TYPE`]), with the
//!   exported series names exactly the constants below (`_total` included).

use crate::model::{ActionType, Category, DeadLetterKind, Decision};
use crate::sinks::{Output, Topic};
pub use crate::stage::stats::{kafka_error, KafkaErrorKind};
use crate::stage::stats::{kafka_errors, Guard, HistogramSnapshot, Outcome, StageName, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// What kind of metric a family is (its Prometheus `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    Histogram(HistogramSnapshot),
}

/// One labelled sample of a family (label values come from the fixed label
/// sets above, so they are `'static`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, &'static str)>,
    pub value: Value,
}

/// One metric family: the unit both exporters share. The Prometheus text
/// and the OTLP instruments are two encodings of the same [`families`], so
/// a name, a label or a value cannot differ between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

impl Family {
    fn int(mut self, labels: &[(&'static str, &'static str)], v: u64) -> Self {
        self.samples.push(Sample {
            labels: labels.to_vec(),
            value: Value::Int(v),
        });
        self
    }

    fn ints<T: Copy>(
        mut self,
        key: &'static str,
        set: &[T],
        label: impl Fn(T) -> &'static str,
        value: impl Fn(usize) -> u64,
    ) -> Self {
        for (i, x) in set.iter().enumerate() {
            self = self.int(&[(key, label(*x))], value(i));
        }
        self.samples.shrink_to_fit();
        self
    }
}

/// Every metric family, read now. `gauges` are the values only the
/// telemetry hub knows (incident store, readiness, start time); without
/// them (the OTLP callbacks) those families are left out.
pub fn families(stats: &Stats, out: &OutputCounters, g: Option<&Gauges>) -> Vec<Family> {
    let received = Stats::get(&stats.events_in) + Stats::get(&stats.dead_letters);
    let mut f = vec![
        family(
            EVENTS_IN,
            Kind::Counter,
            "Input records received (decoded or dead-lettered), by input topic.",
        )
        .int(&[("topic", INPUT_TOPIC)], received),
        family(
            EVENTS_OUT,
            Kind::Counter,
            "Output records written, by output topic.",
        )
        .ints("topic", &Topic::ALL, Topic::default_name, |i| {
            get(&out.by_topic[i])
        }),
        family(DEAD_LETTERS, Kind::Counter, "Dead letters by reason kind.").ints(
            "reason_kind",
            &DeadLetterKind::ALL,
            DeadLetterKind::as_str,
            |i| get(&out.dead_by_kind[i]),
        ),
        family(
            LATE_EVENTS,
            Kind::Counter,
            "Events older than the watermark (counted and still used).",
        )
        .int(&[], Stats::get(&stats.late_events)),
        family(
            CHANGE_EVENTS,
            Kind::Counter,
            "Change events (deploys, config changes).",
        )
        .int(&[], Stats::get(&stats.change_events)),
        family(DETECTIONS, Kind::Counter, "Detections by detector.").ints(
            "detector",
            &DETECTORS,
            |d| d,
            |i| get(&out.detections_by_detector[i]),
        ),
        family(
            INCIDENTS_OPENED,
            Kind::Counter,
            "Incidents opened, by category at opening.",
        )
        .ints("category", &Category::ALL, Category::as_str, |i| {
            get(&out.opened_by_category[i])
        }),
        family(
            INCIDENTS_RESOLVED,
            Kind::Counter,
            "Incidents resolved, by category at resolution.",
        )
        .ints("category", &Category::ALL, Category::as_str, |i| {
            get(&out.resolved_by_category[i])
        }),
    ];
    if let Some(g) = g {
        f.push(
            family(
                INCIDENTS_OPEN,
                Kind::Gauge,
                "Incidents open now, by category.",
            )
            .ints("category", &Category::ALL, Category::as_str, |i| {
                g.open_by_category.get(i).copied().unwrap_or(0)
            }),
        );
    }
    let mut actions = family(
        ACTIONS,
        Kind::Counter,
        "Recovery actions by type and decision.",
    );
    for (i, t) in ACTION_TYPES.iter().enumerate() {
        for (j, d) in DECISIONS.iter().enumerate() {
            actions = actions.int(
                &[("type", t.as_str()), ("decision", decision_str(*d))],
                get(&out.actions[i][j]),
            );
        }
    }
    f.push(actions);
    f.push(
        family(ESCALATIONS, Kind::Counter, "Escalations to humans.")
            .int(&[], get(&out.escalations)),
    );
    f.push(
        family(
            ACTION_RESULTS,
            Kind::Counter,
            "Executor results received for verification and learning.",
        )
        .int(&[], get(&stats.action_results)),
    );
    f.push(
        family(
            GUARD_HOLDS,
            Kind::Counter,
            "Actions held back by a safety guard, by guard.",
        )
        .ints("guard", &Guard::ALL, Guard::as_str, |i| {
            Stats::get(&stats.guard_holds[i])
        }),
    );
    f.push(
        family(
            VERIFICATIONS,
            Kind::Counter,
            "Verifications of executed actions, by outcome.",
        )
        .ints("outcome", &Outcome::ALL, Outcome::as_str, |i| {
            Stats::get(&stats.verifications[i])
        }),
    );
    f.push(
        family(
            BREAKER_OPEN,
            Kind::Gauge,
            "Circuit breaker state: 1 = tripped (automatic actions stopped), 0 = closed.",
        )
        .ints(
            "breaker",
            &BREAKERS,
            |b| b,
            |_| Stats::get(&stats.breaker_open),
        ),
    );
    f.push(
        family(
            CONSUMER_LAG,
            Kind::Gauge,
            "Input records received but not yet processed, by input topic.",
        )
        .int(&[("topic", INPUT_TOPIC)], stats.backlog()),
    );
    let mut hist = family(
        STAGE_BATCH_SECONDS,
        Kind::Histogram,
        "Wall-clock time a pipeline stage spends on one batch.",
    );
    for st in StageName::ALL {
        hist.samples.push(Sample {
            labels: vec![("stage", st.as_str())],
            value: Value::Histogram(stats.stage_latency[st as usize].snapshot()),
        });
    }
    f.push(hist);
    if let Some(g) = g {
        let mut state = family(
            STATE_ENTRIES,
            Kind::Gauge,
            "Entries held in bounded in-memory state, by store.",
        );
        for (store, n) in &g.state {
            state = state.int(&[("store", *store)], *n);
        }
        f.push(state);
        f.push(
            family(
                READY,
                Kind::Gauge,
                "1 when the process is ready (see /ready).",
            )
            .int(&[], u64::from(g.ready)),
        );
    }
    f.push(
        family(BUILD_INFO, Kind::Gauge, "Build information; always 1.")
            .int(&[("version", env!("CARGO_PKG_VERSION"))], 1),
    );
    if let Some(g) = g {
        let mut start = family(
            START_TIME,
            Kind::Gauge,
            "Process start time in Unix seconds.",
        );
        start.samples.push(Sample {
            labels: Vec::new(),
            value: Value::Float(g.start_time),
        });
        f.push(start);
    }
    f.push(
        family(
            KAFKA_ERRORS,
            Kind::Counter,
            "Kafka client trouble retried through (consumer/producer errors, failed deliveries, backpressure waits, schema registry errors).",
        )
        .ints("kind", &KafkaErrorKind::ALL, KafkaErrorKind::as_str, |i| {
            kafka_errors(KafkaErrorKind::ALL[i])
        }),
    );
    f
}

/// The Prometheus side of [`families`]: a prometheus-client collector that
/// reads the families at scrape time and hands them to the crate's encoder,
/// so the exposition format (names, label escaping, number formats, the
/// histogram series) is prometheus-client's, not ours. Nothing is stored in
/// the registry: the counters stay the pipeline's relaxed atomics, and a
/// scrape is the only moment they are read.
pub struct FamilyCollector {
    stats: Arc<Stats>,
    outputs: Arc<OutputCounters>,
    /// The values only the telemetry hub knows, read at each scrape.
    gauges: Box<dyn Fn() -> Gauges + Send + Sync>,
}

impl FamilyCollector {
    /// A collector over `stats` and `outputs`, with the hub's `gauges`.
    pub fn new(
        stats: Arc<Stats>,
        outputs: Arc<OutputCounters>,
        gauges: impl Fn() -> Gauges + Send + Sync + 'static,
    ) -> Self {
        FamilyCollector {
            stats,
            outputs,
            gauges: Box::new(gauges),
        }
    }
}

impl std::fmt::Debug for FamilyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyCollector").finish_non_exhaustive()
    }
}

impl Collector for FamilyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = (self.gauges)();
        for f in families(&self.stats, &self.outputs, Some(&g)) {
            encode_family(&mut encoder, &f)?;
        }
        Ok(())
    }
}

/// Encodes one family through prometheus-client.
fn encode_family(enc: &mut DescriptorEncoder<'_>, f: &Family) -> Result<(), std::fmt::Error> {
    let (name, metric_type) = match f.kind {
        // prometheus-client appends `_total` to a counter's name itself:
        // handing it our name without the suffix keeps the exported series
        // (`reflex_events_in_total`) exactly the SPEC's.
        Kind::Counter => (
            f.name.strip_suffix("_total").unwrap_or(f.name),
            MetricType::Counter,
        ),
        Kind::Gauge => (f.name, MetricType::Gauge),
        Kind::Histogram => (f.name, MetricType::Histogram),
    };
    let mut family = enc.encode_descriptor(name, f.help, None, metric_type)?;
    for s in &f.samples {
        let labels = s.labels.as_slice();
        let mut m = family.encode_family(&labels)?;
        match (&s.value, f.kind) {
            (Value::Int(v), Kind::Counter) => m.encode_counter::<NoLabelSet, _, u64>(v, None)?,
            (Value::Float(v), Kind::Counter) => m.encode_counter::<NoLabelSet, _, f64>(v, None)?,
            (Value::Int(v), _) => m.encode_gauge(v)?,
            (Value::Float(v), _) => m.encode_gauge(v)?,
            (Value::Histogram(h), _) => {
                m.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.per_bucket(), None)?
            }
        }
    }
    Ok(())
}

/// The registry `/metrics` encodes: one [`FamilyCollector`], nothing else.
pub fn registry(collector: FamilyCollector) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(collector));
    r
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Renders every metric of `registry` in the Prometheus text exposition
/// format 0.0.4 (what `promtool check metrics` reads and every Prometheus
/// scrapes; the OpenMetrics form would name counter families without
/// `_total`, which promtool 2.42 rejects as "no help text").
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut s = String::with_capacity(16 * 1024);
    prometheus_text::encode(&mut s, registry)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(stats: Arc<Stats>, out: Arc<OutputCounters>, g: Gauges) -> String {
        let r = registry(FamilyCollector::new(stats, out, move || g.clone()));
        render(&r).expect("encode")
    }

    fn hub() -> Gauges {
        Gauges {
            open_by_category: vec![1; Category::ALL.len()],
            state: vec![("detector_keys", 4)],
            ready: true,
            start_time: 1.5,
        }
    }

    #[test]
    fn otlp_view_is_the_prometheus_view_minus_hub_gauges() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.events_in, 3);
        Stats::add(&stats.guard_holds[Guard::Cooldown as usize], 2);
        let out = Arc::new(OutputCounters::default());
        let g = hub();
        let prom = families(&stats, &out, Some(&g));
        let otlp = families(&stats, &out, None);
        for f in &otlp {
            assert_eq!(
                prom.iter().find(|p| p.name == f.name),
                Some(f),
                "{}",
                f.name
            );
        }
        let missing: Vec<_> = prom
            .iter()
            .filter(|p| !otlp.iter().any(|f| f.name == p.name))
            .map(|p| p.name)
            .collect();
        assert_eq!(
            missing,
            vec![INCIDENTS_OPEN, STATE_ENTRIES, READY, START_TIME]
        );
        let text = scrape(stats, out, g);
        assert!(text.contains("reflex_events_in_total{topic=\"errors\"} 3\n"));
        assert!(text.contains("reflex_guard_holds_total{guard=\"cooldown\"} 2\n"));
        assert!(text.contains("reflex_start_time_seconds 1.5\n"));
    }

    #[test]
    fn scrape_is_prometheus_text_with_our_names_help_and_values() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.events_in, 5);
        Stats::add(&stats.dead_letters, 2);
        let out = Arc::new(OutputCounters::default());
        out.by_topic[4].fetch_add(2, Ordering::Relaxed);
        stats.record_batch(StageName::Decide, std::time::Duration::from_micros(300));
        stats.record_batch(StageName::Decide, std::time::Duration::from_secs(9));
        let text = scrape(stats, out, hub());
        // A whole counter family, exactly: HELP and TYPE carry the sample
        // name (`_total` once), as text format 0.0.4 requires.
        assert!(
            text.contains(
                "# HELP reflex_events_in_total Input records received (decoded or dead-lettered), by input topic.\n\
                 # TYPE reflex_events_in_total counter\n\
                 reflex_events_in_total{topic=\"errors\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains("reflex_events_out_total{topic=\"reflex.dlq\"} 2\n"));
        assert!(text.contains("# TYPE reflex_incidents_open gauge\n"));
        assert!(text.contains("reflex_build_info{version=\""));
        // Histogram series: cumulative buckets, then `+Inf` = count.
        let h = "reflex_stage_batch_duration_seconds";
        assert!(text.contains(&format!("# TYPE {h} histogram\n")));
        assert!(text.contains(&format!(
            "{h}_bucket{{stage=\"decide\",le=\"0.00025\"}} 0\n"
        )));
        assert!(text.contains(&format!("{h}_bucket{{stage=\"decide\",le=\"0.0005\"}} 1\n")));
        assert!(text.contains(&format!("{h}_bucket{{stage=\"decide\",le=\"2.5\"}} 1\n")));
        assert!(text.contains(&format!("{h}_bucket{{stage=\"decide\",le=\"+Inf\"}} 2\n")));
        assert!(text.contains(&format!("{h}_count{{stage=\"decide\"}} 2\n")));
        assert!(
            text.contains(&format!("{h}_sum{{stage=\"decide\"}} 9.0003\n")),
            "{text}"
        );
        // Text format 0.0.4, not OpenMetrics.
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("_total_total"));
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let text = scrape(Arc::default(), Arc::default(), Gauges::default());
        let mut types = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            assert!(name.starts_with("reflex_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            types += 1;
        }
        assert_eq!(types, 22, "{text}");
        assert!(text.contains("reflex_dead_letters_total{reason_kind=\"too_large\"} 0"));
        assert!(text.contains(
            "reflex_stage_batch_duration_seconds_bucket{stage=\"decide\",le=\"+Inf\"} 0"
        ));
    }
}
