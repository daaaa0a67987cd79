//! Sequence rules of the pattern detector (`topology/rules/sequences.yaml`):
//! "event A then at least `count` events B within `within`" on one service
//! or instance — the rule file's types, their compilation against the
//! signature rules, and the detector's matching of pending starts.
//!
//! Bounds: one pending start per (rule, scope), at most `MAX_PENDING`.

use super::{truncate, PatternStream, MAX_PENDING};
use crate::detectors::facts::{Facts, Head};
use crate::detectors::signature::Signatures;
use crate::detectors::Observed;
use crate::model::DetectorKind;
use crate::model::{
    About, Category, CategoryHint, Detection, DurationMs, EventKind, EventTime, Severity, Window,
};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Matches one side of a sequence rule; every given condition must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventMatch {
    /// `error` or `change`.
    pub kind: Option<EventKind>,
    pub min_severity: Option<Severity>,
    /// Regex over the message.
    pub message: Option<String>,
    /// Name of a signature rule the event must match.
    pub signature: Option<String>,
}

/// Where both events of a sequence must happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceScope {
    #[default]
    Service,
    Instance,
}

/// "A then B within T" (sequence rule file item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceRule {
    pub name: String,
    pub first: EventMatch,
    pub then: EventMatch,
    /// How many B events must follow (a burst, not one line).
    #[serde(default = "one")]
    pub count: u64,
    pub within: DurationMs,
    #[serde(default)]
    pub scope: SequenceScope,
    /// The category the sequence points at, with a weight.
    pub category: Category,
    pub weight: f64,
}

fn one() -> u64 {
    1
}

pub(super) struct CompiledMatch {
    pub(super) kind: Option<EventKind>,
    pub(super) min_severity: Option<Severity>,
    pub(super) message: Option<Regex>,
    pub(super) signature: Option<usize>,
}

impl CompiledMatch {
    pub(super) fn compile(m: &EventMatch, sigs: &Signatures) -> Result<Self, String> {
        let message = match &m.message {
            Some(p) => Some(Regex::new(p).map_err(|e| format!("invalid regex: {e}"))?),
            None => None,
        };
        let signature = match &m.signature {
            Some(n) => Some(
                sigs.rules()
                    .iter()
                    .position(|r| &r.name == n)
                    .ok_or_else(|| format!("unknown signature rule {n:?}"))?,
            ),
            None => None,
        };
        Ok(CompiledMatch {
            kind: m.kind,
            min_severity: m.min_severity,
            message,
            signature,
        })
    }

    fn matches(&self, o: &Observed<'_>) -> bool {
        let ev = o.event;
        self.kind.is_none_or(|k| ev.kind == k)
            && self.min_severity.is_none_or(|s| ev.severity >= s)
            && self.signature.is_none_or(|s| o.signatures.contains(&s))
            && self
                .message
                .as_ref()
                .is_none_or(|r| r.is_match(&ev.message))
    }
}

pub(super) struct CompiledSequence {
    pub(super) rule: SequenceRule,
    pub(super) first: CompiledMatch,
    pub(super) then: CompiledMatch,
}

/// Compiles sequence rules against the signature rules; errors as (index, field, message).
pub fn compile_sequences(
    rules: &[SequenceRule],
    sigs: &Signatures,
) -> Result<(), Vec<(usize, &'static str, String)>> {
    let mut errs = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if let Err(e) = CompiledMatch::compile(&r.first, sigs) {
            errs.push((i, "first", e));
        }
        if let Err(e) = CompiledMatch::compile(&r.then, sigs) {
            errs.push((i, "then", e));
        }
        if !(r.weight > 0.0 && r.weight <= 1.0) {
            errs.push((i, "weight", "must be in (0, 1]".into()));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// A sequence start waiting for its follow-up (keyed by rule and scope).
pub(super) struct Pending {
    pub(super) started: EventTime,
    pub(super) first_message: String,
    pub(super) seen: u64,
    pub(super) facts: Facts,
}

impl PatternStream {
    fn scope_key<'e>(rule: &SequenceRule, ev: &'e crate::model::ErrorEvent) -> &'e str {
        match rule.scope {
            SequenceScope::Service => &ev.service,
            SequenceScope::Instance => ev.instance.as_deref().unwrap_or(""),
        }
    }

    pub(super) fn sequences(&mut self, o: &Observed<'_>, out: &mut Vec<Detection>) {
        let ev = o.event;
        for ri in 0..self.sequences.len() {
            let s = &self.sequences[ri];
            let key = Self::scope_key(&s.rule, ev);
            // Follow-ups first, so an event cannot complete the sequence it starts.
            let complete = match self.pending[ri].get_mut(key) {
                Some(p)
                    if ev.time >= p.started
                        && ev.time.millis() <= p.started.millis() + s.rule.within.0
                        && s.then.matches(o) =>
                {
                    p.seen += 1;
                    p.facts.add(o);
                    p.seen >= s.rule.count
                }
                _ => false,
            };
            if complete {
                if let Some(p) = self.pending[ri].remove(key) {
                    self.pending_len -= 1;
                    out.push(self.sequence_detection(ri, key, p, ev.time));
                }
            }
            if !self.sequences[ri].first.matches(o) {
                continue;
            }
            // One pending start per (rule, scope): a repeated A restarts the
            // clock (the latest A gives B the most time), so memory is bounded
            // by the number of scopes, not of events.
            let known = self.pending[ri].contains_key(key);
            if !known && self.pending_len >= MAX_PENDING {
                self.dropped_pending += 1;
                continue;
            }
            if !known {
                self.pending_len += 1;
            }
            self.pending[ri].insert(
                key.to_string(),
                Pending {
                    started: ev.time,
                    first_message: ev.message.clone(),
                    seen: 0,
                    facts: Facts::for_event(o),
                },
            );
        }
    }

    fn sequence_detection(
        &self,
        ri: usize,
        scope_key: &str,
        p: Pending,
        now: EventTime,
    ) -> Detection {
        let r = &self.sequences[ri].rule;
        let end = p.facts.first_seen.unwrap_or(p.started).max(now);
        let evidence = format!(
            "{}: {} — \"{}\" then {} matching event(s) within {}s",
            p.facts.service,
            r.name,
            truncate(&p.first_message, 120),
            p.seen,
            (end.millis() - p.started.millis()) / 1000
        );
        let head = Head {
            detector: DetectorKind::Pattern,
            rule: format!("sequence:{}", r.name),
            key: format!("sequence={},{scope_key}", r.name),
            // Evidence, not an opener: a deploy on a service with
            // ordinary background errors also "completes" the sequence;
            // only a real burst (threshold/anomaly) opens an incident.
            score: 0.3 + 0.15 * r.weight,
            window: Window {
                start: p.started,
                end: end.plus_ms(1),
            },
            evidence,
        };
        let mut d = p.facts.into_detection(&self.meta, head);
        d.first_seen = p.started;
        d.hints.insert(
            0,
            CategoryHint {
                category: r.category,
                weight: r.weight,
                source: format!("sequence:{}", r.name),
                about: About::Itself,
            },
        );
        d
    }
}
