//! Codecs: JSON, Avro binary and the Confluent wire format.
//!
//! [`decode_input`] is the one entry point for input bytes: it tells JSON
//! from Confluent-framed Avro per message (a JSON text never starts with a
//! NUL byte) and returns an event or a [`DecodeError`] that carries a
//! [`DecodeErrorKind`] to branch on and a precise human reason. It never
//! panics, whatever the bytes (property-tested).

pub mod avro;
pub mod json;
pub mod registry;
pub mod wire;

use crate::model::{DeadLetter, DeadLetterKind, ErrorEvent};

/// What kind of decoding failure; maps one to one onto [`DeadLetterKind`].
pub type DecodeErrorKind = DeadLetterKind;

/// Why an input could not be decoded into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {reason}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub reason: String,
}

impl DecodeError {
    /// A new error of `kind`.
    pub fn new(kind: DecodeErrorKind, reason: impl Into<String>) -> Self {
        DecodeError {
            kind,
            reason: reason.into(),
        }
    }

    /// The dead letter for `raw`, read from `source` at `offset`.
    pub fn into_dead_letter(
        self,
        raw: &[u8],
        source: &str,
        partition: Option<i32>,
        offset: Option<i64>,
    ) -> DeadLetter {
        DeadLetter {
            raw: raw.to_vec(),
            reason: self.reason,
            reason_kind: self.kind,
            source_topic: source.to_string(),
            source_partition: partition,
            source_offset: offset,
        }
    }
}

/// Input decoding settings.
#[derive(Debug, Clone)]
pub struct InputCodec {
    /// Inputs larger than this become `too_large` dead letters.
    pub max_bytes: usize,
    /// Schema ids accepted for Confluent-framed `ErrorEvent`s; empty = any id
    /// (the body is read with the compiled-in schema).
    pub event_schema_ids: Vec<u32>,
}

impl Default for InputCodec {
    fn default() -> Self {
        InputCodec {
            max_bytes: 1 << 20,
            event_schema_ids: Vec::new(),
        }
    }
}

impl InputCodec {
    /// Decodes one input message (JSON or Confluent-framed Avro).
    pub fn decode(&self, bytes: &[u8]) -> Result<ErrorEvent, DecodeError> {
        if bytes.len() > self.max_bytes {
            return Err(DecodeError::new(
                DecodeErrorKind::TooLarge,
                format!(
                    "{} bytes exceeds the limit of {}",
                    bytes.len(),
                    self.max_bytes
                ),
            ));
        }
        match wire::unframe(bytes) {
            Some((id, body)) => {
                if !self.event_schema_ids.is_empty() && !self.event_schema_ids.contains(&id) {
                    return Err(DecodeError::new(
                        DecodeErrorKind::UnknownSchema,
                        format!("schema id {id} is not an ErrorEvent schema known to reflex"),
                    ));
                }
                avro::decode_event(body)
            }
            None => json::decode_event(bytes),
        }
    }
}

/// Decodes with the default settings.
pub fn decode_input(bytes: &[u8]) -> Result<ErrorEvent, DecodeError> {
    InputCodec::default().decode(bytes)
}
