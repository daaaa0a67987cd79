//! The output records of SPEC §2 and the diagnosis taxonomy of SPEC §3.
//!
//! These types are the public contract: their serde field names are the JSON
//! and Avro field names (`schemas/*.avsc` mirror them one to one, checked by
//! the codec round-trip tests). Optional fields are omitted from JSON when
//! empty and are `null` in Avro.

use super::event::Severity;
pub use super::params::{ActionParams, ActionType};
use super::time::EventTime;
use serde::{Deserialize, Serialize};

/// Diagnosis category (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    BadDeploy,
    MemoryExhaustion,
    ResourceExhaustion,
    Overload,
    Unavailable,
    ConfigError,
    CertificateExpired,
    DependencyFailure,
    Network,
    DataError,
    Unknown,
}

impl Category {
    /// Whether the category describes a failure of the service itself
    /// (memory, config, certificate, a deploy, bad data, exhaustion) rather
    /// than what a failing dependency looks like from its caller (timeouts,
    /// refusals, 5xx, overload, the network).
    pub fn is_own_kind(self) -> bool {
        !matches!(
            self,
            Category::Overload
                | Category::Unavailable
                | Category::Network
                | Category::DependencyFailure
                | Category::Unknown
        )
    }

    /// Every category, in taxonomy order.
    pub const ALL: [Category; 11] = [
        Category::BadDeploy,
        Category::MemoryExhaustion,
        Category::ResourceExhaustion,
        Category::Overload,
        Category::Unavailable,
        Category::ConfigError,
        Category::CertificateExpired,
        Category::DependencyFailure,
        Category::Network,
        Category::DataError,
        Category::Unknown,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::BadDeploy => "bad_deploy",
            Category::MemoryExhaustion => "memory_exhaustion",
            Category::ResourceExhaustion => "resource_exhaustion",
            Category::Overload => "overload",
            Category::Unavailable => "unavailable",
            Category::ConfigError => "config_error",
            Category::CertificateExpired => "certificate_expired",
            Category::DependencyFailure => "dependency_failure",
            Category::Network => "network",
            Category::DataError => "data_error",
            Category::Unknown => "unknown",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event-time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: EventTime,
    pub end: EventTime,
}

/// Whether evidence describes the failing service itself or a dependency it
/// called. Root-cause ranking trusts the first and discounts the second:
/// "connection refused to payments" is evidence against `payments`, not
/// against the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    /// The service's own failure (OOM, bad config, panic).
    #[default]
    #[serde(rename = "self")]
    Itself,
    /// A failure of something the service called (timeouts, refused connections, 5xx from upstream).
    Dependency,
}

/// A weighted vote for a category, produced by a rule or classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryHint {
    pub category: Category,
    /// Strength in [0,1]: the rule's weight times the share of events that matched.
    pub weight: f64,
    /// What produced the hint (rule name).
    pub source: String,
    /// Whose failure the evidence describes.
    #[serde(default)]
    pub about: About,
}

/// How often one value was seen in a window (upstreams, error types, nodes...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Counted {
    pub value: String,
    pub count: i64,
}

/// A detector's finding about one key in one window (`reflex.detections`).
///
/// Besides the SPEC fields (`detector`, `key`, `score`, `window`, `evidence`)
/// a detection carries the compact facts the diagnosis stage needs, because in
/// a split deployment (`--stage decide`) detections are all it sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub detection_id: String,
    /// `threshold`, `anomaly`, `pattern`, `node` or `change`.
    pub detector: DetectorKind,
    /// The rule or signal within the detector.
    pub rule: String,
    /// What was measured, e.g. `service=checkout,severity>=error`.
    pub key: String,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Strength of the finding in [0,1].
    pub score: f64,
    pub window: Window,
    /// One human-readable line: what was seen against what is normal.
    pub evidence: String,
    /// Events that matched in the window.
    pub count: i64,
    /// First matching event in the window (onset, in event time).
    pub first_seen: EventTime,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<CategoryHint>,
    /// Dependencies the failing calls went to (`upstream` field), most
    /// frequent first. Threshold detections count only the calls beyond the
    /// edge's learned normal (an upstream at its normal is listed with 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Counted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_types: Vec<Counted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_statuses: Vec<Counted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Counted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Counted>,
    /// Trace ids seen in the window (bounded sample) for cross-service linking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_ids: Vec<String>,
    /// A few representative messages (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// The service's version as last seen (change detections: the new version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Lifecycle state carried by an incident record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Updated,
    Resolved,
}

/// One state change of an incident (`reflex.incidents`); the latest record per
/// `incident_id` is its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub incident_id: String,
    pub status: IncidentStatus,
    pub opened_at: EventTime,
    pub updated_at: EventTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<EventTime>,
    pub root_cause_service: String,
    pub category: Category,
    pub confidence: f64,
    pub services: Vec<String>,
    pub summary: String,
    pub evidence: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub severity: Severity,
}

/// The detector that made a detection (`Detection.detector`). A name this
/// version does not know reads as `other`, so a newer producer's detections
/// still decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Threshold,
    Anomaly,
    Pattern,
    /// A deploy or config change of a service (not a failure by itself).
    Change,
    /// Built by `reflex train` from labelled windows.
    Train,
    /// A node's own-failure errors above its normal (one detection per
    /// service that logged them there).
    Node,
    #[serde(other)]
    Other,
}

impl DetectorKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Threshold => "threshold",
            DetectorKind::Anomaly => "anomaly",
            DetectorKind::Pattern => "pattern",
            DetectorKind::Change => "change",
            DetectorKind::Train => "train",
            DetectorKind::Node => "node",
            DetectorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an action acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kubernetes kind, e.g. `Deployment`, `StatefulSet`, `Node`.
    pub kind: String,
    pub name: String,
}

/// `auto` (executors may act), `approval_required` (a human must approve)
/// or `dry_run` (shown and recorded, never carried out by any executor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Auto,
    ApprovalRequired,
    /// `[recovery] dry_run = true`: what reflex would have done. Every
    /// executor refuses it and reports `skipped_dry_run`; it is a decision
    /// (covered by the signature) rather than a parameter, so an executor
    /// that does not know about dry runs cannot mistake it for `auto`.
    DryRun,
}

impl Decision {
    /// The snake_case name used on the wire and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Auto => "auto",
            Decision::ApprovalRequired => "approval_required",
            Decision::DryRun => "dry_run",
        }
    }
}

/// A recovery action for executors (`reflex.actions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryAction {
    pub action_id: String,
    pub incident_id: String,
    pub created_at: EventTime,
    #[serde(rename = "type")]
    pub action_type: ActionType,
    pub target: Target,
    pub params: ActionParams,
    pub risk: f64,
    pub decision: Decision,
    /// Same key ⇒ same action; executors apply a key at most once.
    pub idempotency_key: String,
    pub reason: String,
    pub expires_at: EventTime,
    /// HMAC-SHA256 (hex) over the canonical record, when a key is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A hand-off to humans (`reflex.escalations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub escalation_id: String,
    pub incident_id: String,
    pub created_at: EventTime,
    pub severity: Severity,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub summary: String,
    pub suggested_actions: Vec<String>,
}

/// Outcome of an action as an executor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Succeeded,
    Failed,
    Rejected,
    SkippedDuplicate,
    /// The action's decision was `dry_run`: nothing was done. Neither a
    /// failure (no ladder step, no rollback) nor an outcome to learn from.
    SkippedDryRun,
}

/// An executor's report (`reflex.action-results`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    pub action_id: String,
    pub idempotency_key: String,
    pub status: ActionStatus,
    pub detail: String,
    pub finished_at: EventTime,
    pub executor: String,
}

/// Why an input could not be used; code branches on this, never on `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// Not UTF-8 / not parseable JSON.
    InvalidJson,
    /// Valid JSON but not an object of the event shape, or a field missing / of the wrong type.
    InvalidEvent,
    /// Confluent framing present but the Avro body did not decode.
    InvalidAvro,
    /// Confluent framing names a schema id reflex does not know.
    UnknownSchema,
    /// An input larger than the configured maximum.
    TooLarge,
}

impl DeadLetterKind {
    /// Every kind, for metrics with a fixed label set.
    pub const ALL: [DeadLetterKind; 5] = [
        DeadLetterKind::InvalidJson,
        DeadLetterKind::InvalidEvent,
        DeadLetterKind::InvalidAvro,
        DeadLetterKind::UnknownSchema,
        DeadLetterKind::TooLarge,
    ];

    /// The snake_case name used on the wire and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::InvalidJson => "invalid_json",
            DeadLetterKind::InvalidEvent => "invalid_event",
            DeadLetterKind::InvalidAvro => "invalid_avro",
            DeadLetterKind::UnknownSchema => "unknown_schema",
            DeadLetterKind::TooLarge => "too_large",
        }
    }
}

/// An input that could not be used (`reflex.dlq`): raw bytes and why.
///
/// A dead letter always fits in one Kafka record: `raw` holds at most a
/// configured number of leading bytes of the input
/// (`[pipeline] dead_letter_max_raw_bytes`), `raw_length` and `raw_sha256`
/// describe the whole input, and the source coordinates point at the
/// original. `reason` is cut to [`DeadLetter::MAX_REASON_BYTES`] (a decoder's
/// message may quote the offending value, which can be as large as the input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The input bytes as received — all of them, or the first
    /// `dead_letter_max_raw_bytes` when `raw_length` is larger — base64
    /// (standard alphabet, padded) in JSON.
    #[serde(with = "base64_bytes")]
    pub raw: Vec<u8>,
    /// Length in bytes of the whole input (`raw.len()` unless it was cut).
    /// 0 in records written before the field existed.
    #[serde(default)]
    pub raw_length: i64,
    /// SHA-256 of the whole input, lower-case hex. Empty in records written
    /// before the field existed.
    #[serde(default)]
    pub raw_sha256: String,
    pub reason: String,
    pub reason_kind: DeadLetterKind,
    /// Kafka topic, or the input path in embedded mode (`-` for stdin).
    pub source_topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_partition: Option<i32>,
    /// Kafka offset, or the 1-based line number in embedded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_offset: Option<i64>,
}

impl DeadLetter {
    /// Longest `reason` kept, in bytes (cut at a character boundary).
    pub const MAX_REASON_BYTES: usize = 1024;

    /// A dead letter for `input` whose `raw` keeps at most `max_raw` leading
    /// bytes; length and hash are of the whole input.
    pub fn new(
        input: &[u8],
        max_raw: usize,
        reason: &str,
        reason_kind: DeadLetterKind,
        source_topic: &str,
        source_partition: Option<i32>,
        source_offset: Option<i64>,
    ) -> DeadLetter {
        use sha2::Digest;
        DeadLetter {
            raw: input[..input.len().min(max_raw)].to_vec(),
            raw_length: input.len() as i64,
            raw_sha256: hex::encode(sha2::Sha256::digest(input)),
            reason: cut(reason, Self::MAX_REASON_BYTES),
            reason_kind,
            source_topic: source_topic.to_string(),
            source_partition,
            source_offset,
        }
    }

    /// Whether `raw` holds fewer bytes than the input had.
    pub fn is_cut(&self) -> bool {
        (self.raw.len() as i64) < self.raw_length
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with an ellipsis
/// and the original length when it was cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
