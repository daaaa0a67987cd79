//! Length limits on the fields of an input event.
//!
//! Identifiers (`id`, `service`, `namespace`, `cluster`, `environment`,
//! `instance`, `node`, `version`, `error_type`, `upstream`, `trace_id`,
//! `span_id` and attribute keys) become state keys, record keys and parts
//! of every output about the event. One producer sending a 100k-character
//! `service` would otherwise grow reflex's state and every output record
//! about that service by as much. An event with an identifier over
//! `max_identifier_bytes` is an `invalid_event` dead letter whose reason
//! names the field, its length and the limit — never cut, since a cut
//! identifier would silently merge different services.
//!
//! Free text that flows into outputs (`message`, which detections quote in
//! their evidence, samples and templates, and attribute values) is cut to
//! `max_message_bytes` at a character boundary: a 900 KB log line is still
//! an event, but it must not make a detection larger than a Kafka record
//! may be (which would stop the pipeline). `stack_trace` is only matched by
//! the signature rules and is bounded by `max_event_bytes` alone.

use super::{DecodeError, DecodeErrorKind};
use crate::model::ErrorEvent;

/// The limits applied to every decoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_identifier_bytes: usize,
    pub max_message_bytes: usize,
}

/// Rejects an event with an over-long identifier and cuts its free text.
pub fn apply(ev: &mut ErrorEvent, limits: Limits) -> Result<(), DecodeError> {
    check(ev, limits.max_identifier_bytes)?;
    cut(&mut ev.message, limits.max_message_bytes);
    for v in ev.attributes.values_mut() {
        cut(v, limits.max_message_bytes);
    }
    Ok(())
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Checks every identifier of `ev` against `max` bytes.
pub fn check(ev: &ErrorEvent, max: usize) -> Result<(), DecodeError> {
    let fields: [(&str, Option<&str>); 12] = [
        ("id", Some(&ev.id)),
        ("service", Some(&ev.service)),
        ("namespace", ev.namespace.as_deref()),
        ("cluster", ev.cluster.as_deref()),
        ("environment", ev.environment.as_deref()),
        ("instance", ev.instance.as_deref()),
        ("node", ev.node.as_deref()),
        ("version", ev.version.as_deref()),
        ("error_type", ev.error_type.as_deref()),
        ("upstream", ev.upstream.as_deref()),
        ("trace_id", ev.trace_id.as_deref()),
        ("span_id", ev.span_id.as_deref()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            if v.len() > max {
                return Err(too_long(&format!("field `{name}`"), v.len(), max));
            }
        }
    }
    if let Some(k) = ev.attributes.keys().find(|k| k.len() > max) {
        return Err(too_long("an attribute key", k.len(), max));
    }
    Ok(())
}

fn too_long(what: &str, len: usize, max: usize) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::InvalidEvent,
        format!("{what}: {len} bytes is longer than the limit of {max} for an identifier"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventTime, Severity};

    #[test]
    fn identifiers_over_the_limit_are_named() {
        let mut ev = ErrorEvent::new("e1", EventTime(0), "svc", Severity::Error, "m");
        assert!(check(&ev, 8).is_ok());
        ev.message = "x".repeat(10_000);
        ev.stack_trace = Some("y".repeat(10_000));
        ev.attributes.insert("k".into(), "v".repeat(10_000));
        assert!(check(&ev, 8).is_ok(), "free text is not an identifier");
        ev.node = Some("n".repeat(9));
        let e = check(&ev, 8).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidEvent);
        assert!(
            e.reason.starts_with("field `node`: 9 bytes"),
            "{}",
            e.reason
        );
        ev.node = None;
        ev.attributes.insert("k".repeat(9), "v".into());
        assert!(check(&ev, 8).unwrap_err().reason.contains("attribute key"));
    }

    #[test]
    fn free_text_is_cut_at_a_character_boundary() {
        let mut ev = ErrorEvent::new("e1", EventTime(0), "svc", Severity::Error, "ééé");
        ev.attributes.insert("k".into(), "abcdef".into());
        let limits = Limits {
            max_identifier_bytes: 8,
            max_message_bytes: 5,
        };
        apply(&mut ev, limits).unwrap();
        assert_eq!(ev.message, "éé");
        assert_eq!(ev.attributes["k"], "abcde");
    }
}
