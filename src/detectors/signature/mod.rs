//! Signature matching: which category hints an event carries.
//!
//! All message patterns are compiled into one `RegexSet` (one pass over the
//! text whatever the number of rules), likewise for `error_type`. Pure: no
//! I/O, no state beyond the compiled rules.

pub mod config;

pub use crate::model::About;
pub use config::SignatureRule;

use crate::model::ErrorEvent;
use regex::RegexSet;

/// A compiled set of signature rules.
#[derive(Debug, Clone)]
pub struct Signatures {
    rules: Vec<SignatureRule>,
    message_set: RegexSet,
    message_rule: Vec<usize>,
    type_set: RegexSet,
    type_rule: Vec<usize>,
}

/// A rule whose pattern does not compile: (rule index, field, error).
pub type PatternError = (usize, &'static str, String);

impl Signatures {
    /// Compiles `rules`; returns every bad pattern at once.
    pub fn new(rules: Vec<SignatureRule>) -> Result<Self, Vec<PatternError>> {
        let mut errs = Vec::new();
        let (mut msgs, mut message_rule, mut types, mut type_rule) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rules.iter().enumerate() {
            if let Some(p) = &r.message {
                match regex::Regex::new(p) {
                    Ok(_) => {
                        msgs.push(p.clone());
                        message_rule.push(i);
                    }
                    Err(e) => errs.push((i, "message", e.to_string())),
                }
            }
            if let Some(p) = &r.error_type {
                match regex::Regex::new(p) {
                    Ok(_) => {
                        types.push(p.clone());
                        type_rule.push(i);
                    }
                    Err(e) => errs.push((i, "error_type", e.to_string())),
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let message_set = RegexSet::new(&msgs).map_err(|e| vec![(0, "message", e.to_string())])?;
        let type_set = RegexSet::new(&types).map_err(|e| vec![(0, "error_type", e.to_string())])?;
        Ok(Signatures {
            rules,
            message_set,
            message_rule,
            type_set,
            type_rule,
        })
    }

    /// The rules, by index.
    pub fn rules(&self) -> &[SignatureRule] {
        &self.rules
    }

    /// Indices of the rules that match `ev`, ascending, each once.
    pub fn matches(&self, ev: &ErrorEvent, out: &mut Vec<usize>) {
        out.clear();
        for m in self.message_set.matches(&ev.message).iter() {
            out.push(self.message_rule[m]);
        }
        if let Some(st) = &ev.stack_trace {
            for m in self.message_set.matches(st).iter() {
                out.push(self.message_rule[m]);
            }
        }
        if let Some(t) = &ev.error_type {
            for m in self.type_set.matches(t).iter() {
                out.push(self.type_rule[m]);
            }
        }
        if let Some(s) = ev.http_status {
            for (i, r) in self.rules.iter().enumerate() {
                if r.http_status.contains(&s) {
                    out.push(i);
                }
            }
        }
        if let Some(code) = ev
            .attributes
            .get("exit_code")
            .and_then(|c| c.trim().parse::<i32>().ok())
        {
            for (i, r) in self.rules.iter().enumerate() {
                if r.exit_code.contains(&code) {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Category, EventTime, Severity};

    fn rule(name: &str, cat: Category, msg: &str) -> SignatureRule {
        SignatureRule {
            name: name.into(),
            category: cat,
            weight: 0.9,
            about: About::Itself,
            calling: None,
            message: Some(msg.into()),
            error_type: None,
            http_status: vec![],
            exit_code: vec![],
        }
    }

    #[test]
    fn matches_message_type_and_status() {
        let mut r2 = rule(
            "tls",
            Category::CertificateExpired,
            "(?i)x509|certificate has expired",
        );
        r2.http_status = vec![495];
        let mut r3 = rule("oom-type", Category::MemoryExhaustion, "^$never");
        r3.message = None;
        r3.error_type = Some("OutOfMemory".into());
        let s = Signatures::new(vec![
            rule(
                "oom",
                Category::MemoryExhaustion,
                "(?i)outofmemory|oomkilled",
            ),
            r2,
            r3,
        ])
        .unwrap();
        let mut ev = ErrorEvent::new(
            "1",
            EventTime(0),
            "a",
            Severity::Error,
            "Container OOMKilled",
        );
        let mut out = Vec::new();
        s.matches(&ev, &mut out);
        assert_eq!(out, vec![0]);
        ev.message = "all fine".into();
        ev.http_status = Some(495);
        ev.error_type = Some("java.lang.OutOfMemoryError".into());
        s.matches(&ev, &mut out);
        assert_eq!(out, vec![1, 2]);
        ev.http_status = None;
        ev.error_type = None;
        s.matches(&ev, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn exit_codes_come_from_attributes() {
        let mut r = rule("killed", Category::MemoryExhaustion, "^$never");
        r.exit_code = vec![137];
        let s = Signatures::new(vec![r]).unwrap();
        let mut ev = ErrorEvent::new("1", EventTime(0), "a", Severity::Error, "container exited");
        let mut out = Vec::new();
        ev.attributes.insert("exit_code".into(), "1".into());
        s.matches(&ev, &mut out);
        assert!(out.is_empty());
        ev.attributes.insert("exit_code".into(), " 137".into());
        s.matches(&ev, &mut out);
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn bad_patterns_are_all_reported() {
        let errs = Signatures::new(vec![
            rule("a", Category::Unknown, "("),
            rule("b", Category::Unknown, "ok"),
            rule("c", Category::Unknown, "[z-a]"),
        ])
        .unwrap_err();
        assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 2]);
    }
}
