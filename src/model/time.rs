//! Event time: milliseconds since the Unix epoch, rendered as RFC 3339.
//!
//! reflex reasons in *event time* everywhere (windows, incident lifecycle,
//! expiry); wall-clock time is used only for throughput figures. Every
//! timestamp in an output record is RFC 3339 UTC with millisecond precision,
//! so the same input always renders to the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in event time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: i64) -> Self {
        EventTime(self.0.saturating_add(ms))
    }

    /// Parses RFC 3339 with an explicit offset (`Z` or `+hh:mm`).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| EventTime(t.timestamp_millis()))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-23T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            // Outside chrono's range (±262,000 years): the raw number is the
            // only honest rendering.
            None => self.0.to_string(),
        }
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for EventTime {
    /// Accepts both forms of SPEC §1: RFC 3339 with offset, or integer epoch ms.
    /// A direct visitor (not an untagged enum) so nothing is buffered: this
    /// runs once per input event.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EventTime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time with offset or integer epoch milliseconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EventTime, E> {
                Ok(EventTime(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EventTime, E> {
                i64::try_from(v)
                    .map(EventTime)
                    .map_err(|_| E::custom("epoch milliseconds out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<EventTime, E> {
                EventTime::parse_rfc3339(s)
                    .ok_or_else(|| E::custom("not an RFC 3339 time with offset"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Durations in config files are written as milliseconds or with a unit
/// (`"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A duration in config: serde helper that reads `"30s"` or a plain integer of ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct DurationMs(pub i64);

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0))
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        let ms = match Raw::deserialize(d)? {
            Raw::Ms(ms) => ms,
            Raw::Text(s) => parse_duration_ms(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?}: expected e.g. \"500ms\", \"30s\", \"5m\", \"2h\""
                ))
            })?,
        };
        if ms < 0 {
            return Err(serde::de::Error::custom("duration must not be negative"));
        }
        Ok(DurationMs(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_with_offsets() {
        let t = EventTime::parse_rfc3339("2026-11-23T13:00:00.250+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T12:00:00.250Z");
        assert!(EventTime::parse_rfc3339("2026-11-23 12:00:00").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("5 parsecs"), None);
    }
}
