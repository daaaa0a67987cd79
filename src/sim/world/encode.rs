//! How producers render events: the canonical JSON, the legacy style
//! (epoch milliseconds, upper-case severities, a `logger` field), the
//! production profile's zoned and shipper styles (delegated), and the
//! broken renderings buggy producers publish (dead letters).
//!
//! Guarantees: encoding an event never fails (a serialisation error gives
//! an empty line); the legacy and malformed renderings draw from the
//! given seeded stream only.

use crate::model::{ErrorEvent, EventKind, Severity};
use crate::sim::fleet::Encoding;
use crate::sim::gen::Rng;
use crate::sim::production;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Legacy<'a> {
    id: &'a str,
    time: i64,
    service: &'a str,
    severity: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_trace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    logger: &'static str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    attributes: &'a BTreeMap<String, String>,
}

/// Encodes an event in one of the two producer styles.
pub(super) fn encode(ev: &ErrorEvent, enc: Encoding, rng: &mut Rng) -> Vec<u8> {
    let r = match enc {
        Encoding::Canonical => serde_json::to_vec(ev),
        Encoding::Legacy => serde_json::to_vec(&Legacy {
            id: &ev.id,
            time: ev.time.millis(),
            service: &ev.service,
            severity: match ev.severity {
                Severity::Debug => "DEBUG",
                Severity::Info => "INFO",
                Severity::Warning => "WARN",
                Severity::Error => "ERROR",
                Severity::Critical => "FATAL",
            },
            message: &ev.message,
            kind: (ev.kind == EventKind::Change).then_some("change"),
            namespace: ev.namespace.as_deref(),
            instance: ev.instance.as_deref(),
            node: ev.node.as_deref(),
            version: ev.version.as_deref(),
            error_type: ev.error_type.as_deref(),
            stack_trace: ev.stack_trace.as_deref(),
            http_status: ev.http_status,
            latency_ms: ev.latency_ms,
            upstream: ev.upstream.as_deref(),
            trace_id: ev.trace_id.as_deref(),
            logger: if rng.chance(0.5) { "app" } else { "root" },
            attributes: &ev.attributes,
        }),
        Encoding::Zoned => production::encode_zoned(ev),
        Encoding::Shipper => production::encode_shipper(ev, rng),
    };
    r.unwrap_or_default()
}

/// A broken rendering of `ev`: what buggy producers publish.
pub(super) fn malformed(rng: &mut Rng, ev: &ErrorEvent) -> Vec<u8> {
    let good = serde_json::to_vec(ev).unwrap_or_default();
    match rng.below(5) {
        0 => {
            let cut = (good.len() / 2).max(1);
            good[..cut.min(good.len())].to_vec()
        }
        1 => format!(
            "{{\"id\":\"{}\",\"time\":\"{}\",\"severity\":\"error\",\"message\":{}}}",
            ev.id,
            ev.time,
            serde_json::to_string(&ev.message).unwrap_or_default()
        )
        .into_bytes(),
        2 => format!(
            "{{\"id\":\"{}\",\"time\":\"{}\",\"service\":\"{}\",\"severity\":3,\"message\":\"x\"}}",
            ev.id, ev.time, ev.service
        )
        .into_bytes(),
        3 => format!(
            "{} ERROR [{}] {}",
            ev.time,
            ev.service,
            ev.message.lines().next().unwrap_or("")
        )
        .into_bytes(),
        _ => {
            let mut b = good;
            let at = b.len() / 3;
            b.insert(at, 0xff);
            b.insert(at, 0xfe);
            b
        }
    }
}
