//! The input record: one error (or change) event, SPEC §1.
//!
//! Decoding is hand-written rather than derived so that every failure names
//! the field and what was wrong with it (the dead-letter `reason`), unknown
//! fields are kept in `attributes` instead of failing, and no intermediate
//! buffer is built on the hot path.

use super::time::EventTime;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How bad an event is. Ordered: `Debug < Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// Case-insensitive, with the aliases of SPEC §1 (`warn`, `fatal`, `panic`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let eq = |w: &str| s.eq_ignore_ascii_case(w);
        Some(if eq("debug") || eq("trace") {
            Severity::Debug
        } else if eq("info") || eq("notice") {
            Severity::Info
        } else if eq("warning") || eq("warn") {
            Severity::Warning
        } else if eq("error") || eq("err") {
            Severity::Error
        } else if eq("critical") || eq("fatal") || eq("panic") || eq("crit") || eq("emerg") {
            Severity::Critical
        } else {
            return None;
        })
    }

    /// The canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// `error` (default) or `change` (a deploy, config change or scaling event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    #[default]
    Error,
    Change,
}

/// One error event as producers publish it (SPEC §1). Field names are the contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorEvent {
    pub id: String,
    pub time: EventTime,
    pub service: String,
    pub severity: Severity,
    pub message: String,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl ErrorEvent {
    /// What a `change` event changed: `attributes.change_type` (`deploy`,
    /// `config`, `scale`, ...), else `deploy` when it carries a version,
    /// else `change`.
    pub fn change_type(&self) -> &str {
        self.attributes
            .get("change_type")
            .map(String::as_str)
            .unwrap_or(if self.version.is_some() {
                "deploy"
            } else {
                "change"
            })
    }

    /// A minimal event; the other fields start empty.
    pub fn new(
        id: impl Into<String>,
        time: EventTime,
        service: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        ErrorEvent {
            id: id.into(),
            time,
            service: service.into(),
            severity,
            message: message.into(),
            kind: EventKind::Error,
            namespace: None,
            cluster: None,
            environment: None,
            instance: None,
            node: None,
            version: None,
            error_type: None,
            stack_trace: None,
            http_status: None,
            latency_ms: None,
            upstream: None,
            trace_id: None,
            span_id: None,
            attributes: BTreeMap::new(),
        }
    }
}

/// Names of the required fields, in the order a reason lists missing ones.
pub const REQUIRED_FIELDS: [&str; 5] = ["id", "time", "service", "severity", "message"];

impl<'de> Deserialize<'de> for ErrorEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

fn field_err<E: de::Error>(field: &str, what: impl fmt::Display) -> E {
    E::custom(format_args!("field `{field}`: {what}"))
}

/// A string that borrows from the input when it can (no escapes), unlike
/// serde's `Cow<str>`, which always allocates. Used for keys and enum-like
/// values, once per field per event.
struct Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value that is a string or null (null means absent).
fn opt_string<'de, A: MapAccess<'de>>(
    map: &mut A,
    field: &str,
) -> Result<Option<String>, A::Error> {
    map.next_value::<Option<String>>()
        .map_err(|e| field_err(field, e))
}

fn req_string<'de, A: MapAccess<'de>>(map: &mut A, field: &str) -> Result<String, A::Error> {
    let s: Option<String> = map.next_value().map_err(|e| field_err(field, e))?;
    match s {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(field_err(field, "must not be empty")),
        None => Err(field_err(field, "must not be null")),
    }
}

/// Scalar JSON values that are kept as attribute strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    F(f64),
    B(bool),
    N(()),
    Other(de::IgnoredAny),
}

impl Scalar {
    fn into_string(self) -> Option<String> {
        match self {
            Scalar::S(s) => Some(s),
            Scalar::I(i) => Some(i.to_string()),
            Scalar::F(f) => Some(f.to_string()),
            Scalar::B(b) => Some(b.to_string()),
            Scalar::N(()) | Scalar::Other(_) => None,
        }
    }
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = ErrorEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an error event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorEvent, A::Error> {
        let mut ev = ErrorEvent::new(String::new(), EventTime(0), "", Severity::Info, "");
        let (mut has_id, mut has_time, mut has_service, mut has_severity, mut has_message) =
            (false, false, false, false, false);
        let mut extra: Vec<(String, String)> = Vec::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "id" => {
                    ev.id = req_string(&mut map, "id")?;
                    has_id = true;
                }
                "time" => {
                    ev.time = map
                        .next_value::<EventTime>()
                        .map_err(|e| field_err("time", e))?;
                    has_time = true;
                }
                "service" => {
                    ev.service = req_string(&mut map, "service")?;
                    has_service = true;
                }
                "severity" => {
                    // Borrowed when the JSON has no escapes: no allocation.
                    let s = map
                        .next_value::<Option<Text<'de>>>()
                        .map_err(|e| field_err("severity", e))?
                        .ok_or_else(|| field_err("severity", "must not be null"))?
                        .0;
                    ev.severity = Severity::parse(&s).ok_or_else(|| {
                        field_err(
                            "severity",
                            format_args!(
                                "unknown severity {s:?} (expected debug, info, warning, error or critical)"
                            ),
                        )
                    })?;
                    has_severity = true;
                }
                "message" => {
                    // An empty message is still a message; only its absence is an error.
                    ev.message = map
                        .next_value::<String>()
                        .map_err(|e| field_err("message", e))?;
                    has_message = true;
                }
                "kind" => {
                    let k: Option<Text<'de>> =
                        map.next_value().map_err(|e| field_err("kind", e))?;
                    if let Some(Text(k)) = k {
                        ev.kind = if k.eq_ignore_ascii_case("error") {
                            EventKind::Error
                        } else if k.eq_ignore_ascii_case("change") {
                            EventKind::Change
                        } else {
                            return Err(field_err(
                                "kind",
                                format_args!("unknown kind {k:?} (expected error or change)"),
                            ));
                        };
                    }
                }
                "namespace" => ev.namespace = opt_string(&mut map, "namespace")?,
                "cluster" => ev.cluster = opt_string(&mut map, "cluster")?,
                "environment" => ev.environment = opt_string(&mut map, "environment")?,
                "instance" => ev.instance = opt_string(&mut map, "instance")?,
                "node" => ev.node = opt_string(&mut map, "node")?,
                "version" => ev.version = opt_string(&mut map, "version")?,
                "error_type" => ev.error_type = opt_string(&mut map, "error_type")?,
                "stack_trace" => ev.stack_trace = opt_string(&mut map, "stack_trace")?,
                "upstream" => ev.upstream = opt_string(&mut map, "upstream")?,
                "trace_id" => ev.trace_id = opt_string(&mut map, "trace_id")?,
                "span_id" => ev.span_id = opt_string(&mut map, "span_id")?,
                "http_status" => {
                    let v: Option<i64> =
                        map.next_value().map_err(|e| field_err("http_status", e))?;
                    ev.http_status = match v {
                        None => None,
                        Some(v) if (0..=999).contains(&v) => Some(v as i32),
                        Some(v) => {
                            return Err(field_err(
                                "http_status",
                                format_args!("{v} is not an HTTP status (0..=999)"),
                            ))
                        }
                    };
                }
                "latency_ms" => {
                    let v: Option<f64> =
                        map.next_value().map_err(|e| field_err("latency_ms", e))?;
                    if let Some(v) = v {
                        if !v.is_finite() || v < 0.0 {
                            return Err(field_err("latency_ms", "must be a finite number >= 0"));
                        }
                    }
                    ev.latency_ms = v;
                }
                "attributes" => {
                    let attrs: Option<BTreeMap<String, Scalar>> =
                        map.next_value().map_err(|e| field_err("attributes", e))?;
                    for (k, v) in attrs.into_iter().flatten() {
                        if let Some(v) = v.into_string() {
                            ev.attributes.insert(k, v);
                        }
                    }
                }
                // SPEC §1: unknown fields are kept (scalars) or ignored, never fatal.
                _ => {
                    let v: Scalar = map.next_value()?;
                    if let Some(v) = v.into_string() {
                        extra.push((key.into_owned(), v));
                    }
                }
            }
        }
        let missing: Vec<&str> = [has_id, has_time, has_service, has_severity, has_message]
            .iter()
            .zip(REQUIRED_FIELDS)
            .filter(|(has, _)| !**has)
            .map(|(_, f)| f)
            .collect();
        if !missing.is_empty() {
            return Err(de::Error::custom(format_args!(
                "missing required field(s): {}",
                missing.join(", ")
            )));
        }
        for (k, v) in extra {
            // An explicit attribute wins over a same-named stray top-level field.
            ev.attributes.entry(k).or_insert(v);
        }
        Ok(ev)
    }
}
