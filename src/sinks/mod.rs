//! Sinks: where output records go. One record type per topic (SPEC §2).
//!
//! The embedded runtime writes JSON Lines files ([`file`]); the Kafka
//! runtime produces to topics. Both take [`Output`]s in pipeline order.

pub mod file;
pub mod kafka;

use crate::config::kafka::TopicName;
use crate::model::{DeadLetter, Detection, Escalation, Incident, RecoveryAction};

/// The output topics of SPEC §2 that the pipeline writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Detections,
    Incidents,
    Actions,
    Escalations,
    Dlq,
}

impl Topic {
    /// Every output topic.
    pub const ALL: [Topic; 5] = [
        Topic::Detections,
        Topic::Incidents,
        Topic::Actions,
        Topic::Escalations,
        Topic::Dlq,
    ];

    /// The topic of SPEC §2 this output goes to.
    pub fn name(self) -> TopicName {
        match self {
            Topic::Detections => TopicName::Detections,
            Topic::Incidents => TopicName::Incidents,
            Topic::Actions => TopicName::Actions,
            Topic::Escalations => TopicName::Escalations,
            Topic::Dlq => TopicName::Dlq,
        }
    }

    /// The default Kafka topic name.
    pub fn default_name(self) -> &'static str {
        self.name().logical()
    }

    /// The short name (topic without the `reflex.` prefix): the embedded file stem.
    pub fn short_name(self) -> &'static str {
        match self {
            Topic::Detections => "detections",
            Topic::Incidents => "incidents",
            Topic::Actions => "actions",
            Topic::Escalations => "escalations",
            Topic::Dlq => "dlq",
        }
    }
}

/// One output record.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Detection(Detection),
    Incident(Incident),
    Action(RecoveryAction),
    Escalation(Escalation),
    DeadLetter(DeadLetter),
}

impl Output {
    /// The topic this record belongs to.
    pub fn topic(&self) -> Topic {
        match self {
            Output::Detection(_) => Topic::Detections,
            Output::Incident(_) => Topic::Incidents,
            Output::Action(_) => Topic::Actions,
            Output::Escalation(_) => Topic::Escalations,
            Output::DeadLetter(_) => Topic::Dlq,
        }
    }

    /// The record as one JSON document.
    pub fn to_json(&self, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Output::Detection(r) => serde_json::to_writer(buf, r),
            Output::Incident(r) => serde_json::to_writer(buf, r),
            Output::Action(r) => serde_json::to_writer(buf, r),
            Output::Escalation(r) => serde_json::to_writer(buf, r),
            Output::DeadLetter(r) => serde_json::to_writer(buf, r),
        }
    }
}

/// Errors of a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding a {topic:?} record: {source}")]
    Encode {
        topic: Topic,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding a {topic:?} record as Avro: {source}")]
    Avro {
        topic: Topic,
        #[source]
        source: crate::codec::avro::AvroError,
    },
    #[error("producing to {topic}: {message}")]
    Kafka { topic: String, message: String },
}

/// A destination for output records. `write` is required; `flush` defaults to a no-op.
pub trait Sink: Send {
    /// Writes one record.
    fn write(&mut self, out: &Output) -> Result<(), SinkError>;
    /// Makes everything written so far durable / visible.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink that keeps records in memory (tests, the demo).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub records: Vec<Output>,
}

impl Sink for MemorySink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.records.push(out.clone());
        Ok(())
    }
}

// The `topic` label of the output metrics: the default topic name.
crate::stage::labels::label_set!(Topic, "topic", &Topic::ALL, Topic::default_name);
