//! Avro binary encoding of every record type, with the schemas of `schemas/`
//! compiled in and parsed once per process (apache-avro re-resolves a schema
//! on every call unless readers and writers are built once and reused).
//!
//! The input event is converted by hand so that a body that decodes as Avro
//! but breaks the contract (empty service, unknown severity) gets the same
//! precise reasons as JSON; output records go through serde.

use super::{DecodeError, DecodeErrorKind};
use crate::model::{ErrorEvent, EventKind, EventTime, Severity};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The record types reflex reads or writes, one Avro schema each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    ErrorEvent,
    Detection,
    Incident,
    RecoveryAction,
    Escalation,
    ActionResult,
    DeadLetter,
}

impl RecordType {
    /// Every record type.
    pub const ALL: [RecordType; 7] = [
        RecordType::ErrorEvent,
        RecordType::Detection,
        RecordType::Incident,
        RecordType::RecoveryAction,
        RecordType::Escalation,
        RecordType::ActionResult,
        RecordType::DeadLetter,
    ];

    /// The schema file name under `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            RecordType::ErrorEvent => "error_event.avsc",
            RecordType::Detection => "detection.avsc",
            RecordType::Incident => "incident.avsc",
            RecordType::RecoveryAction => "recovery_action.avsc",
            RecordType::Escalation => "escalation.avsc",
            RecordType::ActionResult => "action_result.avsc",
            RecordType::DeadLetter => "dead_letter.avsc",
        }
    }

    fn schema_text(self) -> &'static str {
        match self {
            RecordType::ErrorEvent => include_str!("../../schemas/error_event.avsc"),
            RecordType::Detection => include_str!("../../schemas/detection.avsc"),
            RecordType::Incident => include_str!("../../schemas/incident.avsc"),
            RecordType::RecoveryAction => include_str!("../../schemas/recovery_action.avsc"),
            RecordType::Escalation => include_str!("../../schemas/escalation.avsc"),
            RecordType::ActionResult => include_str!("../../schemas/action_result.avsc"),
            RecordType::DeadLetter => include_str!("../../schemas/dead_letter.avsc"),
        }
    }
}

/// Errors of Avro encoding or schema compilation (decoding failures are
/// [`DecodeError`]s, which become dead letters).
#[derive(Debug, thiserror::Error)]
#[error("avro {record:?}: {message}")]
pub struct AvroError {
    pub record: RecordType,
    pub message: String,
}

impl AvroError {
    fn new(record: RecordType, e: impl std::fmt::Display) -> Self {
        AvroError {
            record,
            message: e.to_string(),
        }
    }
}

struct Compiled {
    schema: &'static Schema,
    reader: GenericDatumReader<'static>,
    writer: GenericDatumWriter<'static>,
}

fn compiled(rt: RecordType) -> Result<&'static Compiled, AvroError> {
    static ALL: OnceLock<Result<HashMap<RecordType, Compiled>, (RecordType, String)>> =
        OnceLock::new();
    let all = ALL.get_or_init(|| {
        let mut map = HashMap::new();
        for rt in RecordType::ALL {
            let schema = Schema::parse_str(rt.schema_text()).map_err(|e| (rt, e.to_string()))?;
            // Leaked once per process: readers borrow their schema for 'static.
            let schema: &'static Schema = Box::leak(Box::new(schema));
            let reader = GenericDatumReader::builder(schema)
                .build()
                .map_err(|e| (rt, e.to_string()))?;
            let writer = GenericDatumWriter::builder(schema)
                .build()
                .map_err(|e| (rt, e.to_string()))?;
            map.insert(
                rt,
                Compiled {
                    schema,
                    reader,
                    writer,
                },
            );
        }
        Ok(map)
    });
    match all {
        Ok(map) => map
            .get(&rt)
            .ok_or_else(|| AvroError::new(rt, "schema not compiled")),
        Err((bad, msg)) => Err(AvroError::new(*bad, msg)),
    }
}

/// Checks that every compiled-in schema parses (used by `reflex validate`).
pub fn check_schemas() -> Result<(), AvroError> {
    for rt in RecordType::ALL {
        compiled(rt)?;
    }
    Ok(())
}

/// The parsed schema of a record type.
pub fn schema(rt: RecordType) -> Result<&'static Schema, AvroError> {
    compiled(rt).map(|c| c.schema)
}

/// Encodes an output record (any type but the input event) as an Avro body.
pub fn encode<T: Serialize>(rt: RecordType, record: &T) -> Result<Vec<u8>, AvroError> {
    let c = compiled(rt)?;
    let wrap = |e| AvroError::new(rt, e);
    // to_value + resolve fills schema defaults for fields serde skipped
    // (empty optionals), which the schema-aware serializer would reject.
    let value = apache_avro::to_value(record)
        .map_err(wrap)?
        .resolve(c.schema)
        .map_err(wrap)?;
    c.writer.write_value_to_vec(value).map_err(wrap)
}

/// Decodes an Avro body of an output record type.
pub fn decode<T: DeserializeOwned>(rt: RecordType, mut body: &[u8]) -> Result<T, DecodeError> {
    let c =
        compiled(rt).map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))?;
    let value = c
        .reader
        .read_value(&mut body)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))?;
    if !body.is_empty() {
        return Err(trailing(body.len()));
    }
    apache_avro::from_value::<T>(&value)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))
}

fn trailing(n: usize) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::InvalidAvro,
        format!("{n} trailing byte(s) after the Avro record"),
    )
}

/// Encodes the input event as an Avro body (producers, tests, the simulator).
pub fn encode_event(ev: &ErrorEvent) -> Result<Vec<u8>, AvroError> {
    let c = compiled(RecordType::ErrorEvent)?;
    let s = |v: &str| Value::String(v.to_string());
    let opt = |v: &Option<String>| match v {
        Some(v) => Value::Union(1, Box::new(Value::String(v.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let kind = match ev.kind {
        EventKind::Error => None,
        EventKind::Change => Some("change".to_string()),
    };
    let record = Value::Record(vec![
        ("id".into(), s(&ev.id)),
        ("time".into(), Value::TimestampMillis(ev.time.millis())),
        ("service".into(), s(&ev.service)),
        ("severity".into(), s(ev.severity.as_str())),
        ("message".into(), s(&ev.message)),
        ("kind".into(), opt(&kind)),
        ("namespace".into(), opt(&ev.namespace)),
        ("cluster".into(), opt(&ev.cluster)),
        ("environment".into(), opt(&ev.environment)),
        ("instance".into(), opt(&ev.instance)),
        ("node".into(), opt(&ev.node)),
        ("version".into(), opt(&ev.version)),
        ("error_type".into(), opt(&ev.error_type)),
        ("stack_trace".into(), opt(&ev.stack_trace)),
        (
            "http_status".into(),
            match ev.http_status {
                Some(v) => Value::Union(1, Box::new(Value::Int(v))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        (
            "latency_ms".into(),
            match ev.latency_ms {
                Some(v) => Value::Union(1, Box::new(Value::Double(v))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        ("upstream".into(), opt(&ev.upstream)),
        ("trace_id".into(), opt(&ev.trace_id)),
        ("span_id".into(), opt(&ev.span_id)),
        (
            "attributes".into(),
            Value::Map(
                ev.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        ),
    ]);
    c.writer
        .write_value_to_vec(record)
        .map_err(|e| AvroError::new(RecordType::ErrorEvent, e))
}

/// Decodes an Avro body into the input event, with the contract checks of SPEC §1.
pub fn decode_event(mut body: &[u8]) -> Result<ErrorEvent, DecodeError> {
    let c = compiled(RecordType::ErrorEvent)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))?;
    let value = c
        .reader
        .read_value(&mut body)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))?;
    if !body.is_empty() {
        return Err(trailing(body.len()));
    }
    event_from_value(value)
}

/// Decodes an input event written with another (registry-supplied) schema,
/// resolved against the compiled-in one: Avro schema evolution for
/// producers that added fields or defaults. Same contract checks as
/// [`decode_event`]. Build cost: one reader per call; callers cache
/// per schema id when the writer schema is not ours.
pub fn decode_event_with_writer(
    writer: &Schema,
    mut body: &[u8],
) -> Result<ErrorEvent, DecodeError> {
    let ours = schema(RecordType::ErrorEvent)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string()))?;
    let bad = |e: apache_avro::Error| DecodeError::new(DecodeErrorKind::InvalidAvro, e.to_string());
    let reader = GenericDatumReader::builder(writer)
        .reader_schema(ours)
        .build()
        .map_err(|e| {
            DecodeError::new(
                DecodeErrorKind::UnknownSchema,
                format!("writer schema is not compatible with ErrorEvent: {e}"),
            )
        })?;
    let value = reader.read_value(&mut body).map_err(bad)?;
    if !body.is_empty() {
        return Err(trailing(body.len()));
    }
    event_from_value(value)
}

fn invalid(field: &str, what: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::InvalidEvent,
        format!("field `{field}`: {what}"),
    )
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn event_from_value(value: Value) -> Result<ErrorEvent, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidAvro,
            "Avro body is not a record",
        ));
    };
    let mut ev = ErrorEvent::new(String::new(), EventTime(0), "", Severity::Info, "");
    for (name, v) in fields {
        let v = unwrap_union(v);
        let opt_str = |v: Value, field: &str| -> Result<Option<String>, DecodeError> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                other => Err(invalid(
                    field,
                    format_args!("expected a string, got {other:?}"),
                )),
            }
        };
        let req_str = |v: Value, field: &str| -> Result<String, DecodeError> {
            match opt_str(v, field)? {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(invalid(field, "must not be empty")),
            }
        };
        match name.as_str() {
            "id" => ev.id = req_str(v, "id")?,
            "time" => {
                ev.time = match v {
                    Value::TimestampMillis(ms) | Value::Long(ms) => EventTime(ms),
                    other => {
                        return Err(invalid(
                            "time",
                            format_args!("expected epoch ms, got {other:?}"),
                        ))
                    }
                }
            }
            "service" => ev.service = req_str(v, "service")?,
            "severity" => {
                let s = req_str(v, "severity")?;
                ev.severity = Severity::parse(&s)
                    .ok_or_else(|| invalid("severity", format_args!("unknown severity {s:?}")))?;
            }
            "message" => ev.message = opt_str(v, "message")?.unwrap_or_default(),
            "kind" => {
                ev.kind = match opt_str(v, "kind")?.as_deref() {
                    None => EventKind::Error,
                    Some(k) if k.eq_ignore_ascii_case("error") => EventKind::Error,
                    Some(k) if k.eq_ignore_ascii_case("change") => EventKind::Change,
                    Some(k) => return Err(invalid("kind", format_args!("unknown kind {k:?}"))),
                }
            }
            "namespace" => ev.namespace = opt_str(v, "namespace")?,
            "cluster" => ev.cluster = opt_str(v, "cluster")?,
            "environment" => ev.environment = opt_str(v, "environment")?,
            "instance" => ev.instance = opt_str(v, "instance")?,
            "node" => ev.node = opt_str(v, "node")?,
            "version" => ev.version = opt_str(v, "version")?,
            "error_type" => ev.error_type = opt_str(v, "error_type")?,
            "stack_trace" => ev.stack_trace = opt_str(v, "stack_trace")?,
            "upstream" => ev.upstream = opt_str(v, "upstream")?,
            "trace_id" => ev.trace_id = opt_str(v, "trace_id")?,
            "span_id" => ev.span_id = opt_str(v, "span_id")?,
            "http_status" => {
                ev.http_status = match v {
                    Value::Null => None,
                    Value::Int(i) if (0..=999).contains(&i) => Some(i),
                    other => {
                        return Err(invalid(
                            "http_status",
                            format_args!("{other:?} is not an HTTP status"),
                        ))
                    }
                }
            }
            "latency_ms" => {
                ev.latency_ms = match v {
                    Value::Null => None,
                    Value::Double(d) if d.is_finite() && d >= 0.0 => Some(d),
                    other => {
                        return Err(invalid(
                            "latency_ms",
                            format_args!("{other:?} is not a finite number >= 0"),
                        ))
                    }
                }
            }
            "attributes" => {
                if let Value::Map(m) = v {
                    for (k, v) in m {
                        if let Value::String(s) = v {
                            ev.attributes.insert(k, s);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(ev)
}
