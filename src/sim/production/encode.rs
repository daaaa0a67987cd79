//! The production fleet's producers: the node's zone attached to every
//! event ([`decorate`]), Go services logging local time with their
//! logger's severities ([`encode_zoned`]), and log shippers' envelopes
//! with nested unknown fields ([`encode_shipper`]).
//!
//! Guarantees: every encoding decodes to the same event (time, severity,
//! upstream, attributes) through reflex's JSON codec.

use crate::model::{ErrorEvent, EventKind, EventTime, Severity};
use crate::sim::fleet::Fleet;
use crate::sim::gen::Rng;

/// Adds what the production fleet's producers attach: the node's zone.
pub fn decorate(ev: &mut ErrorEvent, fleet: &Fleet) {
    if let Some(z) = ev.node.as_deref().and_then(|n| fleet.zones.get(n)) {
        ev.attributes.insert("zone".into(), z.clone());
    }
}

fn put_common(m: &mut serde_json::Map<String, serde_json::Value>, ev: &ErrorEvent) {
    use serde_json::Value;
    let mut s = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    };
    s("namespace", &ev.namespace);
    s("cluster", &ev.cluster);
    s("environment", &ev.environment);
    s("instance", &ev.instance);
    s("node", &ev.node);
    s("version", &ev.version);
    s("error_type", &ev.error_type);
    s("stack_trace", &ev.stack_trace);
    s("upstream", &ev.upstream);
    s("trace_id", &ev.trace_id);
    s("span_id", &ev.span_id);
    if let Some(h) = ev.http_status {
        m.insert("http_status".into(), Value::from(h));
    }
    if let Some(l) = ev.latency_ms {
        m.insert("latency_ms".into(), Value::from(l));
    }
    if ev.kind == EventKind::Change {
        m.insert("kind".into(), Value::from("change"));
    }
    if !ev.attributes.is_empty() {
        m.insert(
            "attributes".into(),
            Value::Object(
                ev.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
}

fn rfc3339_at(ms: i64, offset_s: i32, micros: bool) -> String {
    use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return EventTime(ms).to_rfc3339();
    };
    let fmt = if micros {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Millis
    };
    match FixedOffset::east_opt(offset_s) {
        Some(o) if offset_s != 0 => t.with_timezone(&o).to_rfc3339_opts(fmt, false),
        _ => t.to_rfc3339_opts(fmt, true),
    }
}

/// A Go service logging local time (`+02:00`, microseconds) with its
/// logger's severities (`warn`, `error`, `panic`) and a `caller` field.
pub fn encode_zoned(ev: &ErrorEvent) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::Value;
    let mut m = serde_json::Map::new();
    m.insert(
        "time".into(),
        Value::String(rfc3339_at(ev.time.millis(), 7200, true)),
    );
    m.insert("id".into(), Value::String(ev.id.clone()));
    m.insert("service".into(), Value::String(ev.service.clone()));
    let sev = match ev.severity {
        Severity::Debug => "debug",
        Severity::Info => "info",
        Severity::Warning => "warn",
        Severity::Error => "error",
        Severity::Critical => "panic",
    };
    m.insert("severity".into(), Value::from(sev));
    m.insert("message".into(), Value::String(ev.message.clone()));
    m.insert(
        "caller".into(),
        Value::String(format!("server/handler.go:{}", 40 + ev.message.len() % 300)),
    );
    put_common(&mut m, ev);
    serde_json::to_vec(&Value::Object(m))
}

/// What a log shipper forwards: `@timestamp`, `time` with microseconds,
/// `Error`/`Warning`/`WARN`/`FATAL`, nested `kubernetes`, `log`, `agent`
/// objects (unknown to reflex, ignored) and dotted keys (`log.file.path`).
pub fn encode_shipper(ev: &ErrorEvent, rng: &mut Rng) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::{json, Value};
    let mut m = serde_json::Map::new();
    let ts = rfc3339_at(ev.time.millis(), 0, true);
    m.insert(
        "@timestamp".into(),
        Value::String(rfc3339_at(ev.time.millis(), 0, false)),
    );
    m.insert("id".into(), Value::String(ev.id.clone()));
    // Half the shippers forward epoch milliseconds, half the string.
    if rng.chance(0.3) {
        m.insert("time".into(), Value::from(ev.time.millis()));
    } else {
        m.insert("time".into(), Value::String(ts));
    }
    m.insert("service".into(), Value::String(ev.service.clone()));
    let upper = rng.chance(0.5);
    let sev = match (ev.severity, upper) {
        (Severity::Debug, _) => "DEBUG",
        (Severity::Info, true) => "INFO",
        (Severity::Info, false) => "Info",
        (Severity::Warning, true) => "WARN",
        (Severity::Warning, false) => "Warning",
        (Severity::Error, true) => "ERROR",
        (Severity::Error, false) => "Error",
        (Severity::Critical, true) => "FATAL",
        (Severity::Critical, false) => "Critical",
    };
    m.insert("severity".into(), Value::from(sev));
    m.insert("message".into(), Value::String(ev.message.clone()));
    put_common(&mut m, ev);
    let pod = ev.instance.clone().unwrap_or_default();
    let ns = ev.namespace.clone().unwrap_or_default();
    let path = format!(
        "/var/log/containers/{pod}_{ns}_{}-{}.log",
        ev.service,
        &ev.id[..8.min(ev.id.len())]
    );
    m.insert(
        "kubernetes".into(),
        json!({
            "pod_name": pod,
            "namespace_name": ns,
            "container_name": ev.service,
            "host": ev.node.clone().unwrap_or_default(),
            "labels": {"app.kubernetes.io/name": ev.service, "app.kubernetes.io/part-of": "shop"},
        }),
    );
    if rng.chance(0.5) {
        m.insert(
            "log".into(),
            json!({"file": {"path": path}, "offset": rng.int(1000, 90_000_000)}),
        );
    } else {
        m.insert("log.file.path".into(), Value::String(path));
    }
    m.insert("stream".into(), Value::from("stderr"));
    m.insert(
        "agent".into(),
        json!({"type": "filebeat", "version": "8.14.3"}),
    );
    serde_json::to_vec(&Value::Object(m))
}
