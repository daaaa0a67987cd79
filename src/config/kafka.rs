//! The `[kafka]` config section: brokers, consumer group, topic names,
//! output format, schema ids, Schema Registry and librdkafka overrides.
//!
//! Only read in Kafka mode (`reflex run --brokers`, `reflex topics apply`);
//! the embedded runtime ignores it. Every problem is reported by
//! [`KafkaConfig::validate`] with its key, together with the rest of the file.

use crate::codec::avro::RecordType;
use crate::model::DurationMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every topic of SPEC §2. Code names a topic by its variant, so a typo
/// cannot compile; the logical (default) name is the key of
/// `[kafka.topics]` and of `topology/topics.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicName {
    Errors,
    Detections,
    Incidents,
    Actions,
    Escalations,
    ActionResults,
    Dlq,
}

impl TopicName {
    /// Every topic, in SPEC §2 order.
    pub const ALL: [TopicName; 7] = [
        TopicName::Errors,
        TopicName::Detections,
        TopicName::Incidents,
        TopicName::Actions,
        TopicName::Escalations,
        TopicName::ActionResults,
        TopicName::Dlq,
    ];

    /// The logical (default) name.
    pub const fn logical(self) -> &'static str {
        match self {
            TopicName::Errors => "errors",
            TopicName::Detections => "reflex.detections",
            TopicName::Incidents => "reflex.incidents",
            TopicName::Actions => "reflex.actions",
            TopicName::Escalations => "reflex.escalations",
            TopicName::ActionResults => "reflex.action-results",
            TopicName::Dlq => "reflex.dlq",
        }
    }

    /// The topic whose logical name is `s`.
    pub fn parse(s: &str) -> Option<TopicName> {
        TopicName::ALL.into_iter().find(|t| t.logical() == s)
    }

    /// The logical names, comma-separated (for error messages).
    pub fn list() -> String {
        TopicName::ALL.map(TopicName::logical).join(", ")
    }
}

/// Output record encoding on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One JSON document per record (default).
    #[default]
    Json,
    /// Avro binary in the Confluent wire format (schema id from `[kafka.schema_ids]`).
    Avro,
}

/// What `reflex.detections` is keyed by: the unit the decide stage
/// correlates within, so all of one domain lands on one decide instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorrelationKey {
    /// The service's Kubernetes namespace (default).
    #[default]
    Namespace,
    /// The cluster the service runs in (learned from the events' `cluster`).
    Cluster,
}

/// What happens to an output record that cannot be produced at all (a
/// permanent failure: larger than the producer's or broker's message
/// limit, rejected by the broker) — not to a broker outage, which is
/// retried without a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Count it (`reflex_outputs_skipped_total{topic}`), log it with its
    /// coordinates and go on: its input counts as done and is committed.
    Skip,
    /// Stop the run (exit 1) with its input uncommitted; a restart replays
    /// it, so a record that can never be produced stops every restart.
    Stop,
}

/// `[kafka.on_permanent_failure]`: the policy per kind of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermanentFailure {
    /// Dead letters (`reflex.dlq`): `skip` by default. A dead letter is
    /// already cut to fit; one that still cannot be produced must not turn
    /// one bad input into a crash loop (its source coordinates are logged).
    pub dead_letter: FailurePolicy,
    /// Every other output (detections, incidents, actions, escalations):
    /// `stop` by default, so no action or incident is lost silently.
    pub output: FailurePolicy,
}

impl Default for PermanentFailure {
    fn default() -> Self {
        PermanentFailure {
            dead_letter: FailurePolicy::Skip,
            output: FailurePolicy::Stop,
        }
    }
}

/// Confluent schema ids, one per record type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaIds {
    /// Ids accepted for framed input events (read with the compiled-in
    /// schema); empty = any id (or, with a registry, whatever it resolves).
    pub error_event: Vec<u32>,
    /// Id written in front of Avro `reflex.detections` records.
    pub detection: Option<u32>,
    /// Id written in front of Avro `reflex.incidents` records.
    pub incident: Option<u32>,
    /// Id written in front of Avro `reflex.actions` records.
    pub recovery_action: Option<u32>,
    /// Id written in front of Avro `reflex.escalations` records.
    pub escalation: Option<u32>,
    /// Id of Avro `reflex.action-results` records.
    pub action_result: Option<u32>,
    /// Id written in front of Avro `reflex.dlq` records.
    pub dead_letter: Option<u32>,
}

impl SchemaIds {
    /// The configured output id of a record type.
    pub fn output_id(&self, rt: RecordType) -> Option<u32> {
        match rt {
            RecordType::ErrorEvent => self.error_event.first().copied(),
            RecordType::Detection => self.detection,
            RecordType::Incident => self.incident,
            RecordType::RecoveryAction => self.recovery_action,
            RecordType::Escalation => self.escalation,
            RecordType::ActionResult => self.action_result,
            RecordType::DeadLetter => self.dead_letter,
        }
    }
}

/// `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]` (`--brokers` overrides).
    pub brokers: String,
    /// Consumer group of the detect stage (the decide stage uses `<group_id>-decide`).
    pub group_id: String,
    /// Prefix put in front of every default topic name (`prod.` → `prod.errors`).
    pub topic_prefix: String,
    /// Per-topic name overrides, keyed by default name (`errors = "app-errors"`);
    /// an override is used as is, without the prefix.
    pub topics: BTreeMap<String, String>,
    /// Output record encoding.
    pub output_format: OutputFormat,
    /// Confluent schema ids per record type.
    pub schema_ids: SchemaIds,
    /// Confluent-compatible Schema Registry (`http://host:port` or
    /// `https://host:port`, optionally with a path prefix); when set, framed
    /// inputs with an unknown schema id are resolved with
    /// `GET /schemas/ids/{id}` (cached). `https` certificates are always
    /// verified.
    pub schema_registry_url: Option<String>,
    /// PEM file of the CA certificates trusted for an `https` registry
    /// instead of the platform's roots. Unset = platform roots.
    pub schema_registry_ca_file: Option<std::path::PathBuf>,
    /// Timeout of one registry request (connect + TLS handshake + answer).
    pub schema_registry_timeout: DurationMs,
    /// Requests per lookup before it counts as failed (connection errors,
    /// timeouts, refused certificates, 429 and 5xx are retried; a failed
    /// lookup is tried again with the next message, so no event is
    /// dead-lettered because the registry is down).
    pub schema_registry_max_attempts: u32,
    /// First delay between two requests of a lookup; doubles per retry.
    pub schema_registry_backoff_initial: DurationMs,
    /// Largest delay between two requests of a lookup.
    pub schema_registry_backoff_max: DurationMs,
    /// What `reflex.detections` is keyed (partitioned) by.
    pub correlation_key: CorrelationKey,
    /// Event-time granularity of watermark steps (and of the markers the
    /// split detect stage sends to the decide stage).
    pub watermark_interval: DurationMs,
    /// Decide stage: a detection's offset is held until the watermark passes
    /// its window end plus this (the incident settle time plus margin).
    pub decide_hold: DurationMs,
    /// A partition with no new message for this long (wall clock, while
    /// caught up) stops holding the watermark back. When every assigned
    /// partition is idle, event time advances to the latest event time read
    /// on any of them, without `pipeline.allowed_lateness` and not rounded
    /// to `watermark_interval` (nothing more is arriving, so there is no
    /// disorder to wait for): windows that ended by then close, on a timer,
    /// without waiting for new traffic. An event that arrives afterwards
    /// older than that is late (counted, folded into the open window). The
    /// decide stage follows through the detect stage's markers.
    pub idle_partition_timeout: DurationMs,
    /// Outputs awaiting a broker ack before consumption pauses (bounds memory).
    pub max_in_flight: usize,
    /// How often stored offsets are committed (`auto.commit.interval.ms`).
    pub commit_interval: DurationMs,
    /// How long a graceful shutdown waits for outstanding deliveries.
    pub shutdown_timeout: DurationMs,
    /// Decide side: on start (and after a rebalance, when its state is
    /// rebuilt from the replayed input) `reflex.action-results` is read from
    /// this far back (broker timestamps), so verification of actions still
    /// in progress sees their results. `0s` = only results published from now on.
    pub results_lookback: DurationMs,
    /// What to do with an output that cannot be produced at all.
    pub on_permanent_failure: PermanentFailure,
    /// librdkafka properties for the consumer (override reflex's defaults).
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer (override reflex's defaults).
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "reflex".into(),
            topic_prefix: String::new(),
            topics: BTreeMap::new(),
            output_format: OutputFormat::Json,
            schema_ids: SchemaIds::default(),
            schema_registry_url: None,
            schema_registry_ca_file: None,
            schema_registry_timeout: DurationMs(5_000),
            schema_registry_max_attempts: 3,
            schema_registry_backoff_initial: DurationMs(100),
            schema_registry_backoff_max: DurationMs(2_000),
            correlation_key: CorrelationKey::Namespace,
            watermark_interval: DurationMs(1_000),
            decide_hold: DurationMs(120_000),
            idle_partition_timeout: DurationMs(10_000),
            max_in_flight: 50_000,
            commit_interval: DurationMs(1_000),
            shutdown_timeout: DurationMs(30_000),
            results_lookback: DurationMs(3_600_000),
            on_permanent_failure: PermanentFailure::default(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// librdkafka properties reflex sets itself (at-least-once, idempotence).
const RESERVED_CONSUMER: [&str; 2] = ["enable.auto.offset.store", "group.id"];
const RESERVED_PRODUCER: [&str; 1] = ["enable.idempotence"];

impl KafkaConfig {
    /// The real name of a topic.
    pub fn topic(&self, t: TopicName) -> String {
        match self.topics.get(t.logical()) {
            Some(n) => n.clone(),
            None => format!("{}{}", self.topic_prefix, t.logical()),
        }
    }

    /// The input topic.
    pub fn input_topic(&self) -> String {
        self.topic(TopicName::Errors)
    }

    /// How the Schema Registry client connects and retries.
    pub fn registry_options(&self) -> crate::codec::registry::RegistryOptions {
        let ms = |d: DurationMs| std::time::Duration::from_millis(d.0.max(0) as u64);
        crate::codec::registry::RegistryOptions {
            timeout: ms(self.schema_registry_timeout),
            ca_file: self.schema_registry_ca_file.clone(),
            retry: crate::http::RetryPolicy {
                max_attempts: self.schema_registry_max_attempts.max(1),
                min_delay: ms(self.schema_registry_backoff_initial),
                max_delay: ms(self.schema_registry_backoff_max),
            },
        }
    }

    /// Problems as (key, message), all at once.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.brokers.trim().is_empty() {
            errs.push(("kafka.brokers".into(), "must not be empty".into()));
        }
        if self.group_id.trim().is_empty() {
            errs.push(("kafka.group_id".into(), "must not be empty".into()));
        }
        for (k, v) in &self.topics {
            if TopicName::parse(k).is_none() {
                errs.push((
                    format!("kafka.topics.{k}"),
                    format!("unknown topic (expected one of {})", TopicName::list()),
                ));
            }
            if !valid_topic_name(v) {
                errs.push((
                    format!("kafka.topics.{k}"),
                    format!("invalid topic name {v:?}"),
                ));
            }
        }
        for name in TopicName::ALL {
            let t = self.topic(name);
            if !self.topics.contains_key(name.logical()) && !valid_topic_name(&t) {
                errs.push((
                    "kafka.topic_prefix".into(),
                    format!("gives the invalid topic name {t:?}"),
                ));
                break;
            }
        }
        if self.output_format == OutputFormat::Avro {
            for (rt, key) in [
                (RecordType::Detection, "detection"),
                (RecordType::Incident, "incident"),
                (RecordType::RecoveryAction, "recovery_action"),
                (RecordType::Escalation, "escalation"),
                (RecordType::DeadLetter, "dead_letter"),
            ] {
                if self.schema_ids.output_id(rt).is_none() {
                    errs.push((
                        format!("kafka.schema_ids.{key}"),
                        "required when output_format = \"avro\"".into(),
                    ));
                }
            }
        }
        if let Some(u) = &self.schema_registry_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                errs.push((
                    "kafka.schema_registry_url".into(),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        if let Some(p) = &self.schema_registry_ca_file {
            if let Err(e) = std::fs::metadata(p) {
                errs.push((
                    "kafka.schema_registry_ca_file".into(),
                    format!("{}: {e}", p.display()),
                ));
            }
        }
        if self.schema_registry_timeout.0 < 1 {
            errs.push((
                "kafka.schema_registry_timeout".into(),
                "must be at least 1ms".into(),
            ));
        }
        if self.schema_registry_max_attempts == 0 {
            errs.push((
                "kafka.schema_registry_max_attempts".into(),
                "must be at least 1".into(),
            ));
        }
        if self.schema_registry_backoff_max.0 < self.schema_registry_backoff_initial.0 {
            errs.push((
                "kafka.schema_registry_backoff_max".into(),
                "must not be below schema_registry_backoff_initial".into(),
            ));
        }
        if self.watermark_interval.0 < 1 {
            errs.push((
                "kafka.watermark_interval".into(),
                "must be at least 1ms".into(),
            ));
        }
        if self.max_in_flight == 0 {
            errs.push(("kafka.max_in_flight".into(), "must be at least 1".into()));
        }
        if self.commit_interval.0 < 1 {
            errs.push((
                "kafka.commit_interval".into(),
                "must be at least 1ms".into(),
            ));
        }
        for k in self.consumer.keys() {
            if RESERVED_CONSUMER.contains(&k.as_str()) {
                errs.push((
                    format!("kafka.consumer.{k}"),
                    "is set by reflex (at-least-once); use kafka.group_id for the group".into(),
                ));
            }
        }
        for k in self.producer.keys() {
            if RESERVED_PRODUCER.contains(&k.as_str()) {
                errs.push((
                    format!("kafka.producer.{k}"),
                    "is set by reflex (idempotent producer)".into(),
                ));
            }
        }
        errs
    }
}

/// Kafka's topic name rule: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefix_and_overrides() {
        let mut k = KafkaConfig {
            topic_prefix: "prod.".into(),
            ..KafkaConfig::default()
        };
        k.topics.insert("errors".into(), "app-errors".into());
        assert_eq!(k.input_topic(), "app-errors");
        assert_eq!(k.topic(TopicName::Dlq), "prod.reflex.dlq");
        assert!(k.validate().is_empty());
    }

    #[test]
    fn all_problems_reported() {
        let mut k = KafkaConfig {
            brokers: String::new(),
            output_format: OutputFormat::Avro,
            ..KafkaConfig::default()
        };
        k.topics.insert("nope".into(), "bad name!".into());
        k.consumer.insert("group.id".into(), "x".into());
        let errs = k.validate();
        let keys: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert!(keys.contains(&"kafka.brokers"));
        assert!(keys.contains(&"kafka.topics.nope"));
        assert!(keys.contains(&"kafka.schema_ids.detection"));
        assert!(keys.contains(&"kafka.consumer.group.id"));
    }

    #[test]
    fn schema_registry_keys_are_checked_and_become_client_options() {
        let k = KafkaConfig {
            schema_registry_url: Some("ftp://reg".into()),
            schema_registry_ca_file: Some("/nonexistent/ca.pem".into()),
            schema_registry_max_attempts: 0,
            schema_registry_backoff_initial: DurationMs(500),
            schema_registry_backoff_max: DurationMs(100),
            ..KafkaConfig::default()
        };
        let errs = k.validate();
        let keys: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        for key in [
            "kafka.schema_registry_url",
            "kafka.schema_registry_ca_file",
            "kafka.schema_registry_max_attempts",
            "kafka.schema_registry_backoff_max",
        ] {
            assert!(keys.contains(&key), "{key} missing in {keys:?}");
        }
        let ok = KafkaConfig {
            schema_registry_url: Some("https://reg:8081".into()),
            schema_registry_max_attempts: 4,
            schema_registry_backoff_initial: DurationMs(10),
            schema_registry_backoff_max: DurationMs(40),
            ..KafkaConfig::default()
        };
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
        let o = ok.registry_options();
        assert_eq!(o.retry.max_attempts, 4);
        assert_eq!(o.retry.min_delay, std::time::Duration::from_millis(10));
        assert_eq!(o.retry.max_delay, std::time::Duration::from_millis(40));
        assert_eq!(o.timeout, std::time::Duration::from_secs(5));
    }
}
