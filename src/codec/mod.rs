//! Codecs: JSON, Avro binary and the Confluent wire format.
//!
//! [`decode_input`] is the one entry point for input bytes: it tells JSON
//! from Confluent-framed Avro per message (a JSON text never starts with a
//! NUL byte) and returns an event or a [`DecodeError`] that carries a
//! [`DecodeErrorKind`] to branch on and a precise human reason. It never
//! panics, whatever the bytes (property-tested).

pub mod avro;
pub mod json;
pub mod limits;
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

    /// The dead letter for `raw`, read from `source` at `offset`, keeping at
    /// most [`DEFAULT_DEAD_LETTER_MAX_RAW`] bytes of it.
    pub fn into_dead_letter(
        self,
        raw: &[u8],
        source: &str,
        partition: Option<i32>,
        offset: Option<i64>,
    ) -> DeadLetter {
        self.into_dead_letter_max(raw, DEFAULT_DEAD_LETTER_MAX_RAW, source, partition, offset)
    }

    /// [`DecodeError::into_dead_letter`] keeping at most `max_raw` bytes.
    pub fn into_dead_letter_max(
        self,
        raw: &[u8],
        max_raw: usize,
        source: &str,
        partition: Option<i32>,
        offset: Option<i64>,
    ) -> DeadLetter {
        DeadLetter::new(
            raw,
            max_raw,
            &self.reason,
            self.kind,
            source,
            partition,
            offset,
        )
    }
}

/// Default of `[pipeline] dead_letter_max_raw_bytes`: 64 KiB of raw bytes
/// are about 87 KB of base64, far below Kafka's usual 1 MB record limit
/// together with the rest of the dead letter.
pub const DEFAULT_DEAD_LETTER_MAX_RAW: usize = 64 * 1024;

/// Default of `[pipeline] max_identifier_bytes`: the longest identifier
/// field value accepted (Kubernetes names are at most 253 bytes).
pub const DEFAULT_MAX_IDENTIFIER_BYTES: usize = 256;

/// Default of `[pipeline] max_message_bytes`: `message` and attribute
/// values are cut to this (see [`limits`]).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Input decoding settings.
#[derive(Debug, Clone)]
pub struct InputCodec {
    /// Inputs larger than this become `too_large` dead letters.
    pub max_bytes: usize,
    /// Identifier fields (see [`limits`]) longer than this make an event
    /// an `invalid_event` dead letter.
    pub max_identifier_bytes: usize,
    /// `message` and attribute values are cut to this many bytes.
    pub max_message_bytes: usize,
    /// Raw bytes kept in a dead letter (the rest is described by
    /// `raw_length` and `raw_sha256`).
    pub dead_letter_max_raw: usize,
    /// Schema ids accepted for Confluent-framed `ErrorEvent`s; empty = any id
    /// (the body is read with the compiled-in schema).
    pub event_schema_ids: Vec<u32>,
}

impl Default for InputCodec {
    fn default() -> Self {
        InputCodec {
            max_bytes: 1 << 20,
            max_identifier_bytes: DEFAULT_MAX_IDENTIFIER_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            dead_letter_max_raw: DEFAULT_DEAD_LETTER_MAX_RAW,
            event_schema_ids: Vec::new(),
        }
    }
}

impl InputCodec {
    /// The dead letter of an input that did not decode, cut to this
    /// codec's `dead_letter_max_raw`.
    pub fn dead_letter(
        &self,
        e: DecodeError,
        raw: &[u8],
        source: &str,
        partition: Option<i32>,
        offset: Option<i64>,
    ) -> DeadLetter {
        e.into_dead_letter_max(raw, self.dead_letter_max_raw, source, partition, offset)
    }

    /// The field limits of this codec.
    pub fn limits(&self) -> limits::Limits {
        limits::Limits {
            max_identifier_bytes: self.max_identifier_bytes,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// Decodes one input message (JSON or Confluent-framed Avro) and
    /// applies the field limits.
    pub fn decode(&self, bytes: &[u8]) -> Result<ErrorEvent, DecodeError> {
        let mut ev = self.decode_unchecked(bytes)?;
        limits::apply(&mut ev, self.limits())?;
        Ok(ev)
    }

    fn decode_unchecked(&self, bytes: &[u8]) -> Result<ErrorEvent, DecodeError> {
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
