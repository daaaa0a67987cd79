//! What one service contributed to an incident ([`ServiceSignals`], shared by
//! the root-cause ranking and the classifier) and the feature vector of the
//! learned category classifier computed from it, the same
//! way at training time (from labelled error events, see
//! [`super::classify::signals_from_events`]) and at run time (from the
//! detections folded into an incident's per-service [`ServiceSignals`]): both
//! paths first build the same `ServiceSignals` map, and [`features`] is a
//! pure function of that map, the root and two structural facts.
//!
//! Layout (`DENSE` dense features, then `hash_dims` hashed ones):
//! - per category (SPEC §3 order): the root's own signature-hint weight, the
//!   root's dependency-hint weight, the strongest dependency hint and the
//!   strongest own hint among the callers that name the root as upstream;
//! - structure: root silent (a known service with no errors of its own),
//!   root external, a change of the root shortly before onset, log-scaled
//!   error count of the root, share of affected services calling the root,
//!   node-local network trouble, the root's busiest-node share, the root
//!   failed first, the share of the root's failing calls that go to
//!   something outside the incident (a dependency it is a victim of);
//! - HTTP status classes (4xx, 5xx, 429, 502, 503, 504) as shares of the
//!   root's and of its callers' failing events; the share of the root's
//!   events that carry an `error_type`;
//! - hashed (signed feature hashing, FNV-1a): word tokens, camel-case parts
//!   and word bigrams of the root's masked messages (numbers, ids, hex and
//!   addresses masked by the template miner's [`mask`]), each as the share
//!   of the root's distinct templates containing it; the same for its
//!   callers' messages under a `c:` prefix; `error_type` tokens (`et:`) and
//!   status codes (`st:`), as shares of their counts.
//!
//! Every value is a share or a clamped log count, so counts from a handful
//! of sampled messages (run time) and from every event of a labelled incident
//! (training) are comparable; every value lies in [-1, 1] and the vector is
//! a deterministic function of its inputs (property-tested).
//!
//! Timing features beyond "failed first" and "changed shortly before" (onset
//! abruptness, latency rise) are not used: detections do not carry them in a
//! form the labelled events reproduce faithfully.

use crate::detectors::pattern::mask;
use crate::model::{Category, EventTime};
use crate::util::stable_hash;
use std::collections::{BTreeMap, BTreeSet};

/// Number of dense features (see the module docs for the layout).
pub const DENSE: usize = 4 * CATS + 10 + 13;
const CATS: usize = Category::ALL.len();
/// Masked templates kept per service (bounded memory per incident).
pub const MAX_TEMPLATES: usize = 32;
/// Distinct error types / status codes kept per service.
pub const MAX_VALUES: usize = 16;
/// Tokens taken from one message.
const MAX_TOKENS: usize = 48;

/// The masked template of one message (the template miner's masking).
pub fn template(message: &str) -> String {
    let toks = mask::mask_message(message, MAX_TOKENS, 64, true);
    let mut s = String::with_capacity(message.len().min(256));
    for (i, t) in toks.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Adds one to `key` in a map bounded to `cap` distinct keys.
pub fn bump(m: &mut BTreeMap<String, i64>, key: &str, by: i64, cap: usize) {
    if let Some(v) = m.get_mut(key) {
        *v += by;
    } else if m.len() < cap {
        m.insert(key.to_string(), by);
    }
}

/// What one affected service contributed to an incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSignals {
    pub first_seen: Option<EventTime>,
    pub score: f64,
    pub count: i64,
    /// Strongest hint weight per category, split by whose failure it describes.
    pub self_hints: BTreeMap<Category, f64>,
    pub dep_hints: BTreeMap<Category, f64>,
    /// Upstreams named by this service's failing calls, with counts.
    pub upstreams: BTreeMap<String, i64>,
    pub nodes: BTreeMap<String, i64>,
    /// Per detector rule: (failing events, their upstreams, their nodes)
    /// summed over windows. `count`, `upstreams` and `nodes` are the
    /// largest view of any one rule (see [`ServiceSignals::add_tally`]).
    pub tallies: BTreeMap<String, Tally>,
    /// The strongest detection's evidence line.
    pub evidence: Option<(f64, String)>,
    /// The service's namespace, as its detections report it.
    pub namespace: Option<String>,
    /// Masked sample messages (templates) with how often they were sampled
    /// (bounded: [`MAX_TEMPLATES`]).
    pub templates: BTreeMap<String, i64>,
    /// `error_type` values with counts (bounded).
    pub error_types: BTreeMap<String, i64>,
    /// HTTP status codes with counts (bounded).
    pub statuses: BTreeMap<String, i64>,
}

/// What one detector rule saw of a service's failing events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub count: i64,
    pub upstreams: BTreeMap<String, i64>,
    pub nodes: BTreeMap<String, i64>,
}

impl ServiceSignals {
    /// Adds one detection's counts under its rule and refreshes the service's
    /// view. Detectors overlap (an error burst and a signature rule count
    /// the same events; a trace cascade counts traces, with no upstreams), so
    /// summing across rules would double-count events and dilute the share
    /// naming an upstream. Each rule's counts are summed over its windows
    /// and the service's figures are the largest of any rule, per key.
    /// Folds another incident's view of the same service into this one.
    pub fn absorb(&mut self, other: &ServiceSignals) {
        self.first_seen = match (self.first_seen, other.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.score += other.score;
        for (c, w) in &other.self_hints {
            let e = self.self_hints.entry(*c).or_insert(0.0);
            *e = e.max(*w);
        }
        for (c, w) in &other.dep_hints {
            let e = self.dep_hints.entry(*c).or_insert(0.0);
            *e = e.max(*w);
        }
        if other
            .evidence
            .as_ref()
            .is_some_and(|(s, _)| self.evidence.as_ref().is_none_or(|(mine, _)| s > mine))
        {
            self.evidence.clone_from(&other.evidence);
        }
        if self.namespace.is_none() {
            self.namespace.clone_from(&other.namespace);
        }
        for (m, o) in [
            (&mut self.templates, &other.templates),
            (&mut self.error_types, &other.error_types),
            (&mut self.statuses, &other.statuses),
        ] {
            for (k, v) in o {
                bump(m, k, *v, MAX_TEMPLATES.max(MAX_VALUES));
            }
        }
        for (rule, t) in &other.tallies {
            self.add_tally(
                rule,
                t.count,
                t.upstreams.iter().map(|(k, v)| (k.clone(), *v)),
                t.nodes.iter().map(|(k, v)| (k.clone(), *v)),
            );
        }
    }

    pub fn add_tally(
        &mut self,
        rule: &str,
        count: i64,
        upstreams: impl Iterator<Item = (String, i64)>,
        nodes: impl Iterator<Item = (String, i64)>,
    ) {
        let t = self.tallies.entry(rule.to_string()).or_default();
        t.count += count;
        for (u, c) in upstreams {
            *t.upstreams.entry(u).or_default() += c;
        }
        for (n, c) in nodes {
            *t.nodes.entry(n).or_default() += c;
        }
        self.count = self.tallies.values().map(|t| t.count).max().unwrap_or(0);
        self.upstreams.clear();
        self.nodes.clear();
        for t in self.tallies.values() {
            for (u, c) in &t.upstreams {
                let e = self.upstreams.entry(u.clone()).or_default();
                *e = (*e).max(*c);
            }
            for (n, c) in &t.nodes {
                let e = self.nodes.entry(n.clone()).or_default();
                *e = (*e).max(*c);
            }
        }
    }
}

/// Word tokens of a masked template: lower-cased alphanumeric runs (no
/// wildcards, no pure numbers), their camel-case parts, and bigrams.
pub fn tokens(text: &str, out: &mut BTreeSet<String>) {
    let mut words: Vec<String> = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if raw.len() < 2 || raw.len() > 40 || raw.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let lower = raw.to_lowercase();
        // camelCase / PascalCase parts: OutOfMemoryError → out, of, memory, error.
        let mut part = String::new();
        let mut parts = 0;
        let mut prev_lower = false;
        for ch in raw.chars() {
            if ch.is_uppercase() && prev_lower && !part.is_empty() {
                out.insert(part.to_lowercase());
                part.clear();
                parts += 1;
            }
            prev_lower = ch.is_lowercase() || ch.is_ascii_digit();
            part.push(ch);
        }
        if parts > 0 && !part.is_empty() {
            out.insert(part.to_lowercase());
        }
        out.insert(lower.clone());
        words.push(lower);
    }
    for w in words.windows(2) {
        out.insert(format!("{} {}", w[0], w[1]));
    }
}

/// Structural facts about the incident that the signals alone do not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Context {
    /// The root is an external dependency (reports no events).
    pub external: bool,
    /// A change of the root shortly before onset.
    pub changed: bool,
    /// Node-local network trouble among the affected services.
    pub node_local: bool,
}

fn cat_index(c: Category) -> usize {
    Category::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(CATS - 1)
}

fn signed_bucket(key: &str, dims: usize) -> (usize, f64) {
    let h = stable_hash(&[key.as_bytes()]);
    let idx = (h % dims.max(1) as u64) as usize;
    let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
    (idx, sign)
}

/// Status-class shares of a status→count map over `total` failing events.
fn status_shares(st: &BTreeMap<String, i64>, total: f64, out: &mut [f64]) {
    if total <= 0.0 {
        return;
    }
    for (code, n) in st {
        let Ok(c) = code.parse::<i32>() else { continue };
        let n = *n as f64;
        let mut add = |i: usize| out[i] = (out[i] + n / total).min(1.0);
        match c {
            400..=499 => add(0),
            500..=599 => add(1),
            _ => {}
        }
        match c {
            429 => add(2),
            502 => add(3),
            503 => add(4),
            504 => add(5),
            _ => {}
        }
    }
}

/// Adds hashed token shares of `templates` under `prefix`.
fn hash_templates(
    templates: &BTreeMap<String, i64>,
    prefix: &str,
    weight: f64,
    dims: usize,
    x: &mut [f64],
) {
    if templates.is_empty() {
        return;
    }
    let mut df: BTreeMap<String, usize> = BTreeMap::new();
    let mut toks = BTreeSet::new();
    for t in templates.keys() {
        toks.clear();
        tokens(t, &mut toks);
        for k in &toks {
            *df.entry(k.clone()).or_default() += 1;
        }
    }
    let n = templates.len() as f64;
    for (k, c) in df {
        let (i, s) = signed_bucket(&format!("{prefix}{k}"), dims);
        x[DENSE + i] = (x[DENSE + i] + s * weight * c as f64 / n).clamp(-1.0, 1.0);
    }
}

/// Adds hashed shares of counted values (error types, statuses) under `prefix`.
fn hash_counts(m: &BTreeMap<String, i64>, prefix: &str, split: bool, dims: usize, x: &mut [f64]) {
    let total: i64 = m.values().sum();
    if total <= 0 {
        return;
    }
    let mut toks = BTreeSet::new();
    for (v, c) in m {
        let share = *c as f64 / total as f64;
        toks.clear();
        toks.insert(v.to_lowercase());
        if split {
            tokens(v, &mut toks);
        }
        for k in &toks {
            let (i, s) = signed_bucket(&format!("{prefix}{k}"), dims);
            x[DENSE + i] = (x[DENSE + i] + s * share).clamp(-1.0, 1.0);
        }
    }
}

/// The feature vector of an incident rooted at `root` (`DENSE + hash_dims` values).
pub fn features(
    services: &BTreeMap<String, ServiceSignals>,
    root: &str,
    ctx: Context,
    hash_dims: usize,
) -> Vec<f64> {
    let mut x = vec![0.0; DENSE + hash_dims];
    let own = services.get(root);
    let callers: Vec<&ServiceSignals> = services
        .iter()
        .filter(|(n, s)| n.as_str() != root && s.upstreams.contains_key(root))
        .map(|(_, s)| s)
        .collect();
    if let Some(s) = own {
        for (c, w) in &s.self_hints {
            x[cat_index(*c)] = w.clamp(0.0, 1.0);
        }
        for (c, w) in &s.dep_hints {
            x[CATS + cat_index(*c)] = w.clamp(0.0, 1.0);
        }
    }
    for s in &callers {
        for (c, w) in &s.dep_hints {
            let i = 2 * CATS + cat_index(*c);
            x[i] = x[i].max(w.clamp(0.0, 1.0));
        }
        for (c, w) in &s.self_hints {
            let i = 3 * CATS + cat_index(*c);
            x[i] = x[i].max(w.clamp(0.0, 1.0));
        }
    }
    let b = 4 * CATS;
    let onset = services.values().filter_map(|s| s.first_seen).min();
    x[b] = f64::from(u8::from(own.is_none() && !ctx.external));
    x[b + 1] = f64::from(u8::from(ctx.external));
    x[b + 2] = f64::from(u8::from(ctx.changed));
    x[b + 3] = own.map_or(0.0, |s| ((1.0 + s.count.max(0) as f64).ln() / 8.0).min(1.0));
    let others = services
        .len()
        .saturating_sub(usize::from(own.is_some()))
        .max(1);
    x[b + 4] = (callers.len() as f64 / others as f64).min(1.0);
    x[b + 5] = f64::from(u8::from(ctx.node_local));
    if let Some(s) = own {
        let total: i64 = s.nodes.values().sum();
        if total >= 5 {
            let top = s.nodes.values().copied().max().unwrap_or(0);
            x[b + 6] = top as f64 / total as f64;
        }
        x[b + 7] = f64::from(u8::from(onset.is_some() && s.first_seen == onset));
        let failing = s.count.max(s.upstreams.values().sum()).max(1) as f64;
        let outside: i64 = s
            .upstreams
            .iter()
            .filter(|(u, _)| !services.contains_key(*u))
            .map(|(_, c)| *c)
            .sum();
        x[b + 8] = (outside as f64 / failing).min(1.0);
        let typed: i64 = s.error_types.values().sum();
        x[b + 9] = (typed as f64 / failing).min(1.0);
    }
    let st = b + 10;
    if let Some(s) = own {
        let failing = s.count.max(1) as f64;
        status_shares(&s.statuses, failing, &mut x[st..st + 6]);
    }
    let mut caller_st: BTreeMap<String, i64> = BTreeMap::new();
    let mut caller_tpl: BTreeMap<String, i64> = BTreeMap::new();
    let mut caller_total = 0;
    for s in &callers {
        caller_total += s.count.max(0);
        for (k, v) in &s.statuses {
            *caller_st.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.templates {
            *caller_tpl.entry(k.clone()).or_default() += v;
        }
    }
    status_shares(&caller_st, caller_total as f64, &mut x[st + 6..st + 12]);
    x[st + 12] = f64::from(u8::from(callers.is_empty()));
    if hash_dims > 0 {
        if let Some(s) = own {
            hash_templates(&s.templates, "", 1.0, hash_dims, &mut x);
            hash_counts(&s.error_types, "et:", true, hash_dims, &mut x);
            hash_counts(&s.statuses, "st:", false, hash_dims, &mut x);
        }
        hash_templates(&caller_tpl, "c:", 1.0, hash_dims, &mut x);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::About;

    #[test]
    fn tokens_split_camel_case_and_bigrams() {
        let mut t = BTreeSet::new();
        tokens("java.lang.OutOfMemoryError: Java heap space", &mut t);
        for k in ["outofmemoryerror", "memory", "heap", "heap space", "java"] {
            assert!(t.contains(k), "{k} missing from {t:?}");
        }
        let tpl = template("pool exhausted after 3000ms waiting for conn 0xdeadbeef");
        assert!(!tpl.contains("3000"), "{tpl}");
    }

    #[test]
    fn dense_layout_fits() {
        let mut m = BTreeMap::new();
        let mut s = ServiceSignals {
            count: 40,
            ..ServiceSignals::default()
        };
        super::super::rootcause::add_hint(&mut s, Category::MemoryExhaustion, 0.9, About::Itself);
        bump(&mut s.statuses, "503", 10, MAX_VALUES);
        bump(&mut s.templates, "OOMKilled <*>", 3, MAX_TEMPLATES);
        m.insert("a".to_string(), s);
        let x = features(&m, "a", Context::default(), 64);
        assert_eq!(x.len(), DENSE + 64);
        assert!((x[cat_index(Category::MemoryExhaustion)] - 0.9).abs() < 1e-9);
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
