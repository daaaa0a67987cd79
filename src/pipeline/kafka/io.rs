//! The Kafka runtime's edges: decoding what is consumed (events with an
//! optional Schema Registry, detections and watermark markers from a detect
//! stage) and the sink handles the stages write through.
//!
//! Guarantees: an input that does not decode is a dead-letter reason, never
//! an error; only a registry that cannot be asked right now is retried
//! (with backoff, until shutdown), so no event is dead-lettered because of a
//! registry outage.

use super::KafkaRunError;
use crate::codec::avro::{self, RecordType};
use crate::codec::registry::{RegistryError, RegistryErrorKind, SchemaRegistry};
use crate::codec::{limits, wire, DecodeError, DecodeErrorKind, InputCodec};
use crate::http::RetryPolicy;
use crate::model::{Detection, ErrorEvent};
use crate::sinks::kafka::{KafkaSink, HEADER_TYPE};
use crate::sinks::{Output, Sink, SinkError};
use crate::sources::kafka::RebalanceContext;
use crate::stage::stats::{kafka_error, KafkaErrorKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::warn;

/// Decodes framed Avro with a registry schema when the id is not one of ours.
pub(super) struct InputDecoder {
    /// Also makes the dead letters of inputs that did not decode.
    pub(super) codec: InputCodec,
    registry: Option<SchemaRegistry>,
    ours: Option<String>,
}

impl InputDecoder {
    /// The topology's codec, narrowed to `schema_ids` (when configured), and
    /// the registry of `kafka.schema_registry_*` (when a URL is set).
    pub(super) fn new(
        codec: InputCodec,
        schema_ids: &[u32],
        kafka: &crate::config::kafka::KafkaConfig,
    ) -> Result<Self, KafkaRunError> {
        Ok(InputDecoder {
            codec: InputCodec {
                event_schema_ids: schema_ids.to_vec(),
                ..codec
            },
            registry: match &kafka.schema_registry_url {
                Some(u) => Some(
                    SchemaRegistry::with_options(u, kafka.registry_options())
                        .map_err(|e| KafkaRunError::Registry(e.to_string()))?,
                ),
                None => None,
            },
            ours: avro::schema(RecordType::ErrorEvent)
                .ok()
                .map(|s| s.canonical_form()),
        })
    }

    /// The event or its dead letter reason; `Err` only for a registry that
    /// cannot be asked right now (retried by the caller, never a dead letter).
    fn decode(&self, bytes: &[u8]) -> Result<Result<ErrorEvent, DecodeError>, RegistryError> {
        Ok(self.decode_unchecked(bytes)?.and_then(|mut ev| {
            // The registry path bypasses `InputCodec::decode`: same limits.
            limits::apply(&mut ev, self.codec.limits())?;
            Ok(ev)
        }))
    }

    fn decode_unchecked(
        &self,
        bytes: &[u8],
    ) -> Result<Result<ErrorEvent, DecodeError>, RegistryError> {
        if let (Some(reg), Some((id, body))) = (&self.registry, wire::unframe(bytes)) {
            if bytes.len() <= self.codec.max_bytes && !self.codec.event_schema_ids.contains(&id) {
                let writer = match reg.schema(id) {
                    Ok(w) => w,
                    Err(e)
                        if matches!(
                            e.kind,
                            RegistryErrorKind::NotFound | RegistryErrorKind::BadSchema
                        ) =>
                    {
                        return Ok(Err(DecodeError::new(
                            DecodeErrorKind::UnknownSchema,
                            e.to_string(),
                        )))
                    }
                    Err(e) => return Err(e),
                };
                if Some(writer.canonical_form()) == self.ours {
                    return Ok(avro::decode_event(body));
                }
                return Ok(avro::decode_event_with_writer(&writer, body));
            }
        }
        Ok(self.codec.decode(bytes))
    }

    /// Decodes, retrying with backoff while the registry is unreachable.
    pub(super) fn decode_retrying(
        &self,
        bytes: &[u8],
        shutdown: &AtomicBool,
    ) -> Result<Result<ErrorEvent, DecodeError>, KafkaRunError> {
        // Each failed lookup already used the client's own retry policy;
        // this waits between lookups, without limit, until shutdown.
        let between_lookups = RetryPolicy {
            max_attempts: 0,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        between_lookups
            .run_blocking(
                || self.decode(bytes),
                |_| !shutdown.load(Ordering::SeqCst),
                |error, _, _| {
                    kafka_error(KafkaErrorKind::SchemaRegistry);
                    warn!(%error, "Schema Registry unavailable; retrying.");
                },
            )
            .result
            .map_err(|error| {
                kafka_error(KafkaErrorKind::SchemaRegistry);
                KafkaRunError::Registry(error.to_string())
            })
    }
}

/// A numeric header of `msg` (the watermark and sequence a detect stage sets).
pub(super) fn header_i64(msg: &BorrowedMessage<'_>, key: &str) -> Option<i64> {
    let h = msg.headers()?;
    h.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

/// `msg` is a detect stage's watermark marker, not a detection.
pub(super) fn is_marker(msg: &BorrowedMessage<'_>) -> bool {
    msg.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == HEADER_TYPE && h.value == Some(b"watermark".as_slice()))
    })
}

/// A detection as JSON or as Avro in the Confluent wire format.
pub(super) fn decode_detection(bytes: &[u8]) -> Result<Detection, DecodeError> {
    match wire::unframe(bytes) {
        Some((_, body)) => avro::decode::<Detection>(RecordType::Detection, body),
        None => serde_json::from_slice::<Detection>(bytes)
            .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidJson, e.to_string())),
    }
}

/// Partitions of the detections topic (markers go to each); waits for
/// metadata while the broker is unavailable.
pub(super) fn detections_partitions(
    consumer: &BaseConsumer<RebalanceContext>,
    topic: &str,
    shutdown: &AtomicBool,
) -> Result<Vec<i32>, KafkaRunError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        return Ok(t.partitions().iter().map(|p| p.id()).collect());
                    }
                }
                warn!(
                    topic,
                    "Detections topic has no partitions yet (run `reflex topics apply`); retrying."
                );
            }
            Err(error) => warn!(%error, topic, "Cannot read metadata; retrying."),
        }
        if shutdown.load(Ordering::SeqCst) {
            return Err(KafkaRunError::Kafka(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
            )));
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The sink as the decider sees it; the runtime keeps its own handle for
/// detect-stage publishing (headers, markers).
pub(super) struct SharedSink(pub(super) Arc<Mutex<KafkaSink>>);

impl SharedSink {
    pub(super) fn get(&self) -> MutexGuard<'_, KafkaSink> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for SharedSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.get().write(out)
    }
}

/// The decider's sink: the producer, plus the telemetry tap (counters,
/// incident store, live stream) when telemetry is on.
pub(super) struct TappedSink {
    pub(super) inner: SharedSink,
    pub(super) telemetry: Option<Arc<dyn crate::pipeline::Observer>>,
}

impl Sink for TappedSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.inner.write(out)?;
        if let Some(t) = &self.telemetry {
            t.observe(out);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}
