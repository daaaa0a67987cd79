//! Pipeline counters shared by the stages of one run (lock-free atomics), read
//! for the run summary and exported as metrics, and the fixed label sets
//! they are indexed by ([`Guard`], [`Outcome`], [`StageName`],
//! [`KafkaErrorKind`]): the vocabulary the stages count in and telemetry
//! renders, kept here so neither has to import the other.
//!
//! Guarantees:
//! - Recording never blocks and never allocates. Per-event paths only bump
//!   relaxed atomics; stage latencies are recorded once per batch into a
//!   fixed-bucket histogram ([`LatencyHistogram`]).
//! - Each thing is counted once, here: the run summary and every metric
//!   family read these counters (a total is the sum of its labelled
//!   counts, [`Stats::get`]), nothing keeps a second tally of the same.

pub use super::labels::Total;
use super::labels::{label_set, Counts, DetectorName, Grid};
use crate::model::{ActionType, Category, DeadLetterKind, Decision};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Incident records of one status, by category.
pub type ByCategory = Counts<Category, { Category::ALL.len() }>;

/// Counters of one pipeline run.
///
/// The output counts (`dead_letters`, `detections`, `opened_by_category`,
/// `resolved_by_category`, `actions`, `escalations`) are bumped by the
/// decide node once per record it writes (`incident_records` too);
/// `incidents_opened` by diagnosis as it opens a new incident.
#[derive(Debug, Default)]
pub struct Stats {
    /// Input events decoded (by the detect stage).
    pub events_in: AtomicU64,
    /// Dead letters written, by reason kind.
    pub dead_letters: Counts<DeadLetterKind, { DeadLetterKind::ALL.len() }>,
    pub late_events: AtomicU64,
    pub change_events: AtomicU64,
    /// Detections written, by detector.
    pub detections: Counts<DetectorName, 6>,
    /// New incidents (a relapse that reopens a resolved incident is not
    /// new): fewer than the `open` records when incidents are reopened.
    pub incidents_opened: AtomicU64,
    /// Incident records published (every status): the `reflex.incidents`
    /// output count.
    pub incident_records: AtomicU64,
    /// `open` records written, by category at opening.
    pub opened_by_category: ByCategory,
    /// `resolved` records written, by category at resolution.
    pub resolved_by_category: ByCategory,
    /// Recovery actions written, by type and decision.
    pub actions: Grid<ActionType, Decision, 6, 3>,
    /// Escalations written.
    pub escalations: AtomicU64,
    /// Actions held back, by guard (indexed like [`Guard::ALL`]).
    pub guard_holds: [AtomicU64; Guard::ALL.len()],
    /// Verifications by outcome (indexed like [`Outcome::ALL`]).
    pub verifications: [AtomicU64; Outcome::ALL.len()],
    /// 1 while the recovery circuit breaker is open (a gauge).
    pub breaker_open: AtomicU64,
    /// Executor results handed to the recovery stage (`reflex.action-results`).
    pub action_results: AtomicU64,
    /// Input records (good or bad) taken from the source: `records_read`
    /// minus what the detect and decide stages have handled is the backlog
    /// inside the process (the embedded analogue of consumer lag).
    pub records_read: AtomicU64,
    /// Input records handled by the detect stage (decoded or dead-lettered).
    pub records_done: AtomicU64,
    /// Keys held by the detectors, as of the last batch (a gauge).
    pub detector_state_keys: AtomicU64,
    /// Wall-clock time per batch in each stage, indexed by [`StageName`].
    pub stage_latency: [LatencyHistogram; StageName::ALL.len()],
    /// Requests the ops HTTP API refused, by reason (counted by its
    /// outermost layer, once per answer).
    pub api_refused: Counts<ApiRefusal, { ApiRefusal::ALL.len() }>,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter; a labelled one ([`Counts`], [`Grid`]) reads as its
    /// total over every label.
    pub fn get(counter: &impl Total) -> u64 {
        counter.total()
    }

    /// Records how long `stage` took over one batch.
    pub fn record_batch(&self, stage: StageName, elapsed: Duration) {
        self.stage_latency[stage as usize].record(elapsed);
    }

    /// Records read from the source but not yet through the detect stage.
    pub fn backlog(&self) -> u64 {
        Self::get(&self.records_read).saturating_sub(Self::get(&self.records_done))
    }
}

/// The stages whose batch latency is measured (a fixed metric label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageName {
    /// Reading and decoding input lines.
    Decode = 0,
    /// Running every detector.
    Detect = 1,
    /// Diagnosis, recovery and the sink.
    Decide = 2,
}

impl StageName {
    /// Every stage, in pipeline order.
    pub const ALL: [StageName; 3] = [StageName::Decode, StageName::Detect, StageName::Decide];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Decode => "decode",
            StageName::Detect => "detect",
            StageName::Decide => "decide",
        }
    }
}

/// A guard (a fixed metric label set, [`Guard::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guard {
    KillSwitch,
    CircuitBreaker,
    Maintenance,
    Flap,
    Cooldown,
    MaxInFlight,
    DisruptionBudget,
    RateBudget,
    DryRun,
}

impl Guard {
    /// Every guard, in check order.
    pub const ALL: [Guard; 9] = [
        Guard::KillSwitch,
        Guard::CircuitBreaker,
        Guard::Maintenance,
        Guard::Flap,
        Guard::Cooldown,
        Guard::MaxInFlight,
        Guard::DisruptionBudget,
        Guard::RateBudget,
        Guard::DryRun,
    ];

    /// The metric label / log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::KillSwitch => "kill_switch",
            Guard::CircuitBreaker => "circuit_breaker",
            Guard::Maintenance => "maintenance",
            Guard::Flap => "flap",
            Guard::Cooldown => "cooldown",
            Guard::MaxInFlight => "max_in_flight",
            Guard::DisruptionBudget => "disruption_budget",
            Guard::RateBudget => "rate_budget",
            Guard::DryRun => "dry_run",
        }
    }
}

label_set!(StageName, "stage", &StageName::ALL, StageName::as_str);

label_set!(Guard, "guard", &Guard::ALL, Guard::as_str);

label_set!(Outcome, "outcome", &Outcome::ALL, Outcome::as_str);

label_set!(ApiRefusal, "reason", &ApiRefusal::ALL, ApiRefusal::as_str);

/// Why the ops HTTP API refused a request (a fixed metric label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiRefusal {
    /// `401`: no or a wrong bearer token.
    Unauthorized = 0,
    /// `403`: the route needs a token and none is configured.
    Forbidden = 1,
    /// `413`: the body is over the limit.
    TooLarge = 2,
    /// `429`: the client is over its rate limit.
    RateLimited = 3,
    /// `408`: the request did not complete in time.
    Timeout = 4,
}

impl ApiRefusal {
    /// Every reason, in label order.
    pub const ALL: [ApiRefusal; 5] = [
        ApiRefusal::Unauthorized,
        ApiRefusal::Forbidden,
        ApiRefusal::TooLarge,
        ApiRefusal::RateLimited,
        ApiRefusal::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRefusal::Unauthorized => "unauthorized",
            ApiRefusal::Forbidden => "forbidden",
            ApiRefusal::TooLarge => "too_large",
            ApiRefusal::RateLimited => "rate_limited",
            ApiRefusal::Timeout => "timeout",
        }
    }
}

label_set!(
    KafkaErrorKind,
    "kind",
    &KafkaErrorKind::ALL,
    KafkaErrorKind::as_str
);

/// A verification outcome (a fixed metric label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Recovered,
    NotRecovered,
    Worse,
    Timeout,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Recovered,
        Outcome::NotRecovered,
        Outcome::Worse,
        Outcome::Timeout,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::NotRecovered => "not_recovered",
            Outcome::Worse => "worse",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Kinds of Kafka client trouble (a fixed label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaErrorKind {
    Consumer = 0,
    Producer = 1,
    Delivery = 2,
    Backpressure = 3,
    SchemaRegistry = 4,
}

impl KafkaErrorKind {
    /// Every kind, in label order.
    pub const ALL: [KafkaErrorKind; 5] = [
        KafkaErrorKind::Consumer,
        KafkaErrorKind::Producer,
        KafkaErrorKind::Delivery,
        KafkaErrorKind::Backpressure,
        KafkaErrorKind::SchemaRegistry,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaErrorKind::Consumer => "consumer",
            KafkaErrorKind::Producer => "producer",
            KafkaErrorKind::Delivery => "delivery",
            KafkaErrorKind::Backpressure => "backpressure_wait",
            KafkaErrorKind::SchemaRegistry => "schema_registry",
        }
    }
}

/// Process-wide Kafka client counters. Global because they are counted in
/// librdkafka callbacks that have no handle on a run's `Stats`; there is one
/// Kafka client set per process.
static KAFKA_ERROR_COUNTS: [AtomicU64; KafkaErrorKind::ALL.len()] =
    [const { AtomicU64::new(0) }; KafkaErrorKind::ALL.len()];

/// Counts one occurrence of Kafka client trouble.
pub fn kafka_error(kind: KafkaErrorKind) {
    KAFKA_ERROR_COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// Kafka client trouble of `kind` counted so far in this process.
pub fn kafka_errors(kind: KafkaErrorKind) -> u64 {
    KAFKA_ERROR_COUNTS[kind as usize].load(Ordering::Relaxed)
}

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket latency histogram of relaxed atomics.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (non-cumulative) counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a histogram for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    /// (upper bound, count in that bucket alone) for every finite bucket of
    /// [`LATENCY_BUCKETS`]: the form an exposition encoder takes; the
    /// `+Inf` bucket is [`Self::count`].
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        LATENCY_BUCKETS
            .iter()
            .zip(&self.cumulative)
            .map(|(&le, &c)| {
                let n = c.saturating_sub(below);
                below = c;
                (le, n)
            })
            .collect()
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts; the `+Inf` bucket equals `count` by construction.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            count: acc,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct_snake_case(labels: &[&str]) {
        let set: std::collections::BTreeSet<_> = labels.iter().collect();
        assert_eq!(set.len(), labels.len(), "duplicate label in {labels:?}");
        for l in labels {
            assert!(
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }

    #[test]
    fn label_sets_are_distinct_and_indexed_by_discriminant() {
        let g: Vec<_> = Guard::ALL.iter().map(|g| g.as_str()).collect();
        distinct_snake_case(&g);
        let o: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        distinct_snake_case(&o);
        let s: Vec<_> = StageName::ALL.iter().map(|s| s.as_str()).collect();
        distinct_snake_case(&s);
        let k: Vec<_> = KafkaErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        distinct_snake_case(&k);
        // Arrays are indexed by `as usize`: ALL must be in discriminant order.
        for (i, st) in StageName::ALL.iter().enumerate() {
            assert_eq!(*st as usize, i);
        }
        for (i, k) in KafkaErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn kafka_errors_are_counted_per_kind() {
        let before = kafka_errors(KafkaErrorKind::SchemaRegistry);
        let other = kafka_errors(KafkaErrorKind::Delivery);
        kafka_error(KafkaErrorKind::SchemaRegistry);
        assert!(kafka_errors(KafkaErrorKind::SchemaRegistry) > before);
        // Other tests may count deliveries concurrently, never schema errors here.
        assert!(kafka_errors(KafkaErrorKind::Delivery) >= other);
    }

    #[test]
    fn histogram_is_cumulative_and_counts_overflow() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(*s.cumulative.last().unwrap(), 3);
        let per = s.per_bucket();
        assert_eq!(per.len(), LATENCY_BUCKETS.len());
        assert_eq!(per[0], (LATENCY_BUCKETS[0], 1));
        // 3 ms lands in the 5 ms bucket; the 10 s overflow is in no finite one.
        assert_eq!(per.iter().map(|b| b.1).sum::<u64>(), 2);
        assert_eq!(per[5], (0.005, 1));
    }
}
