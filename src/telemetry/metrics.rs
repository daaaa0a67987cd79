//! Every metric reflex exports, by name, as one set of families
//! ([`families`]) that both exporters encode: Prometheus through the
//! `prometheus-client` crate ([`FamilyCollector`], [`render`]) and the OTLP
//! instruments (`otel`), so the two cannot drift.
//!
//! Guarantees:
//! - All names live here as constants and follow Prometheus conventions
//!   (`reflex_` prefix, `_total` counters, base units in the name).
//! - Labels are typed: every labelled family is built from an enum that is
//!   a [`Label`] set (its key and every value: topics, dead-letter kinds,
//!   categories, action types and decisions, detectors, guards, outcomes,
//!   stages, Kafka error kinds), so cardinality is bounded whatever the
//!   input.
//! - Nothing here counts: every value is read from the pipeline's
//!   [`Stats`] (relaxed atomics, each thing counted once, there) when a
//!   scrape or an OTLP collection asks; the
//!   prometheus-client registry holds no metric of its own, only the
//!   collector that reads the families when scraped.
//! - The exposition is Prometheus text 0.0.4 ([`CONTENT_TYPE`]), with the
//!   exported series names exactly the constants below (`_total` included).

use crate::model::{ActionType, Category, Decision};
use crate::sinks::Topic;
use crate::stage::labels::{DetectorName, Label};
pub use crate::stage::stats::{kafka_error, KafkaErrorKind};
use crate::stage::stats::{
    kafka_errors, ApiRefusal, Guard, HistogramSnapshot, Outcome, StageName, Stats,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
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
/// Output records that could not be produced at all and were skipped by
/// `[kafka.on_permanent_failure]` policy `skip`, by output topic.
pub const OUTPUTS_SKIPPED: &str = "reflex_outputs_skipped_total";
/// Requests the ops HTTP API refused, by `reason` (`unauthorized`,
/// `forbidden`, `too_large`, `rate_limited`, `timeout`).
pub const API_REFUSED: &str = "reflex_api_requests_refused_total";

/// The input topic label in embedded mode (the SPEC's default input topic).
pub const INPUT_TOPIC: &str = crate::config::kafka::TopicName::Errors.logical();
/// The breakers whose state is exported.
pub const BREAKERS: [&str; 1] = ["recovery"];

/// The wire name of a decision.
pub fn decision_str(d: Decision) -> &'static str {
    d.value()
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
    c.index()
}

/// How many records went to output `t`: the sum of that output's own
/// labelled counts (or, for incidents, diagnosis's count of the records it
/// published), so the by-topic family keeps no tally of its own.
fn written(stats: &Stats, t: Topic) -> u64 {
    match t {
        Topic::Detections => Stats::get(&stats.detections),
        Topic::Incidents => Stats::get(&stats.incident_records),
        Topic::Actions => Stats::get(&stats.actions),
        Topic::Escalations => Stats::get(&stats.escalations),
        Topic::Dlq => Stats::get(&stats.dead_letters),
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

    /// One sample per value of the label set `L` (its key, its values,
    /// in `L::ALL` order).
    fn by<L: Label>(mut self, value: impl Fn(L) -> u64) -> Self {
        for &l in L::ALL {
            self = self.int(&[(L::KEY, l.value())], value(l));
        }
        self.samples.shrink_to_fit();
        self
    }
}

/// Every metric family, read now. `gauges` are the values only the
/// telemetry hub knows (incident store, readiness, start time); without
/// them (the OTLP callbacks) those families are left out.
pub fn families(stats: &Stats, g: Option<&Gauges>) -> Vec<Family> {
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
        .by(|t: Topic| written(stats, t)),
        family(DEAD_LETTERS, Kind::Counter, "Dead letters by reason kind.")
            .by(|k| stats.dead_letters.get(k)),
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
        family(DETECTIONS, Kind::Counter, "Detections by detector.")
            .by(|d: DetectorName| stats.detections.get(d)),
        family(
            INCIDENTS_OPENED,
            Kind::Counter,
            "Incidents opened, by category at opening.",
        )
        .by(|c| stats.opened_by_category.get(c)),
        family(
            INCIDENTS_RESOLVED,
            Kind::Counter,
            "Incidents resolved, by category at resolution.",
        )
        .by(|c| stats.resolved_by_category.get(c)),
    ];
    if let Some(g) = g {
        f.push(
            family(
                INCIDENTS_OPEN,
                Kind::Gauge,
                "Incidents open now, by category.",
            )
            .by(|c: Category| g.open_by_category.get(c.index()).copied().unwrap_or(0)),
        );
    }
    let mut actions = family(
        ACTIONS,
        Kind::Counter,
        "Recovery actions by type and decision.",
    );
    for &t in <ActionType as Label>::ALL {
        for &d in <Decision as Label>::ALL {
            actions = actions.int(
                &[(ActionType::KEY, t.value()), (Decision::KEY, d.value())],
                stats.actions.get(t, d),
            );
        }
    }
    f.push(actions);
    f.push(
        family(ESCALATIONS, Kind::Counter, "Escalations to humans.")
            .int(&[], Stats::get(&stats.escalations)),
    );
    f.push(
        family(
            ACTION_RESULTS,
            Kind::Counter,
            "Executor results received for verification and learning.",
        )
        .int(&[], Stats::get(&stats.action_results)),
    );
    f.push(
        family(
            GUARD_HOLDS,
            Kind::Counter,
            "Actions held back by a safety guard, by guard.",
        )
        .by(|g: Guard| Stats::get(&stats.guard_holds[g.index()])),
    );
    f.push(
        family(
            VERIFICATIONS,
            Kind::Counter,
            "Verifications of executed actions, by outcome.",
        )
        .by(|o: Outcome| Stats::get(&stats.verifications[o.index()])),
    );
    let mut breakers = family(
        BREAKER_OPEN,
        Kind::Gauge,
        "Circuit breaker state: 1 = tripped (automatic actions stopped), 0 = closed.",
    );
    for b in BREAKERS {
        breakers = breakers.int(&[("breaker", b)], Stats::get(&stats.breaker_open));
    }
    f.push(breakers);
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
            labels: vec![(StageName::KEY, st.value())],
            value: Value::Histogram(stats.stage_latency[st.index()].snapshot()),
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
        .by(kafka_errors),
    );
    f.push(
        family(
            OUTPUTS_SKIPPED,
            Kind::Counter,
            "Output records that could not be produced at all (too large, refused by the broker) and were skipped by policy, by topic.",
        )
        .by(crate::sinks::kafka::skipped),
    );
    f.push(
        family(
            API_REFUSED,
            Kind::Counter,
            "Requests the ops HTTP API refused, by reason (401 unauthorized, 403 forbidden, 413 too_large, 429 rate_limited, 408 timeout).",
        )
        .by(|r: ApiRefusal| stats.api_refused.get(r)),
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
    /// The values only the telemetry hub knows, read at each scrape.
    gauges: Box<dyn Fn() -> Gauges + Send + Sync>,
}

impl FamilyCollector {
    /// A collector over `stats`, with the hub's `gauges`.
    pub fn new(stats: Arc<Stats>, gauges: impl Fn() -> Gauges + Send + Sync + 'static) -> Self {
        FamilyCollector {
            stats,
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
        for f in families(&self.stats, Some(&g)) {
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
    use crate::model::DeadLetterKind;

    fn scrape(stats: Arc<Stats>, g: Gauges) -> String {
        let r = registry(FamilyCollector::new(stats, move || g.clone()));
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
        let g = hub();
        let prom = families(&stats, Some(&g));
        let otlp = families(&stats, None);
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
        let text = scrape(stats, g);
        assert!(text.contains("reflex_events_in_total{topic=\"errors\"} 3\n"));
        assert!(text.contains("reflex_guard_holds_total{guard=\"cooldown\"} 2\n"));
        assert!(text.contains("reflex_start_time_seconds 1.5\n"));
    }

    #[test]
    fn scrape_is_prometheus_text_with_our_names_help_and_values() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.events_in, 5);
        stats.dead_letters.add(DeadLetterKind::InvalidJson, 2);
        stats.record_batch(StageName::Decide, std::time::Duration::from_micros(300));
        stats.record_batch(StageName::Decide, std::time::Duration::from_secs(9));
        let text = scrape(stats, hub());
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
    fn output_families_read_the_one_set_of_counts() {
        use crate::model::IncidentStatus;
        let stats = Arc::new(Stats::default());
        stats.detections.add(DetectorName::Pattern, 3);
        stats.detections.add(DetectorName::Other, 1);
        Stats::add(&stats.incident_records, 5);
        stats.opened_by_category.add(Category::Network, 2);
        stats.resolved_by_category.add(Category::Network, 1);
        stats
            .actions
            .add(ActionType::Scale, Decision::ApprovalRequired, 2);
        stats.actions.add(ActionType::Restart, Decision::Auto, 1);
        Stats::add(&stats.escalations, 4);
        stats.dead_letters.add(DeadLetterKind::TooLarge, 1);
        let text = scrape(stats, hub());
        for line in [
            "reflex_detections_total{detector=\"pattern\"} 3",
            "reflex_detections_total{detector=\"other\"} 1",
            "reflex_detections_total{detector=\"threshold\"} 0",
            "reflex_events_out_total{topic=\"reflex.detections\"} 4",
            "reflex_events_out_total{topic=\"reflex.incidents\"} 5",
            "reflex_events_out_total{topic=\"reflex.actions\"} 3",
            "reflex_events_out_total{topic=\"reflex.escalations\"} 4",
            "reflex_events_out_total{topic=\"reflex.dlq\"} 1",
            "reflex_incidents_opened_total{category=\"network\"} 2",
            "reflex_incidents_resolved_total{category=\"network\"} 1",
            "reflex_actions_total{type=\"scale\",decision=\"approval_required\"} 2",
            "reflex_actions_total{type=\"restart\",decision=\"auto\"} 1",
            "reflex_actions_total{type=\"restart\",decision=\"approval_required\"} 0",
            "reflex_escalations_total 4",
            "reflex_dead_letters_total{reason_kind=\"too_large\"} 1",
            "reflex_events_in_total{topic=\"errors\"} 1",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
        assert_eq!(status_str(IncidentStatus::Updated), "updated");
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let text = scrape(Arc::default(), Gauges::default());
        let mut types = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            assert!(name.starts_with("reflex_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            types += 1;
        }
        assert_eq!(types, 24, "{text}");
        assert!(text.contains("reflex_api_requests_refused_total{reason=\"rate_limited\"} 0"));
        assert!(text.contains("reflex_dead_letters_total{reason_kind=\"too_large\"} 0"));
        assert!(text.contains("reflex_outputs_skipped_total{topic=\"reflex.dlq\"} "));
        assert!(text.contains(
            "reflex_stage_batch_duration_seconds_bucket{stage=\"decide\",le=\"+Inf\"} 0"
        ));
    }
}
