//! JSON decoding of input events and encoding of output records.
//!
//! Guarantee: `decode_event` never panics; every failure is a
//! [`DecodeError`] whose `reason` names the field and what was wrong.

use super::{DecodeError, DecodeErrorKind};
use crate::model::ErrorEvent;
use serde::Serialize;

/// Decodes one JSON object into an event.
pub fn decode_event(bytes: &[u8]) -> Result<ErrorEvent, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(
            DecodeErrorKind::InvalidJson,
            format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
        )
    })?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        let what = if trimmed.is_empty() {
            "empty input".to_string()
        } else if serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
            "valid JSON but not an object".to_string()
        } else {
            "not JSON: expected an object starting with '{'".to_string()
        };
        return Err(DecodeError::new(
            if what.starts_with("valid") {
                DecodeErrorKind::InvalidEvent
            } else {
                DecodeErrorKind::InvalidJson
            },
            what,
        ));
    }
    serde_json::from_str::<ErrorEvent>(text).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => DecodeErrorKind::InvalidEvent,
            _ => DecodeErrorKind::InvalidJson,
        };
        DecodeError::new(kind, e.to_string())
    })
}

/// Appends one record as a JSON line (no trailing newline) to `out`.
pub fn encode_into<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, record)
}

/// One record as JSON bytes.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(record)
}
