//! The learned category classifier (SPEC §3 categories), its model file,
//! `reflex train`, and the calibrated confidence of the combined answer.
//!
//! **Model.** A multinomial logistic regression (linfa-logistic, L2
//! regularised, L-BFGS) over the features of [`super::features`]: signature
//! hint weights per category (rules are features, so the model learns how far
//! to trust each), structural facts, HTTP status classes and hashed tokens of
//! the root's and its callers' masked messages and error types. At run time
//! only the fitted weights are used (a sparse dot product and a softmax: no
//! linfa, microseconds per incident).
//!
//! **Combination with the rules.** [`Policy`] says who decides the category:
//! the rules alone, the model alone, the model except for structural answers
//! (an external root ⇒ `dependency_failure`, a recent change ⇒ `bad_deploy`
//! or `config_error`, node-local network trouble ⇒ `network`: facts about the
//! incident, not about its messages), or the rules except when they have no
//! answer (`unknown`). `reflex train` measures all four on out-of-fold
//! predictions (5-fold cross-validation) and stores the best in the model
//! file; for the built-in model that is `model` (0.996 out of fold against
//! 0.861 for the rules alone and 0.942 for `model_unless_structural`; on the
//! held-out demo seeds 1–20 the category is right for 97.7% of faults
//! against 86.8% with the rules alone). Training also adds, per incident, a
//! copy without text features (so vocabulary a real fleet uses and the
//! simulator does not falls back on the general signature features) and,
//! except for `bad_deploy`, a copy without its recent change (a bad config or
//! an outage is what it is with or without a deploy); and, for an external
//! root, the view from its two loudest callers labelled
//! `dependency_failure`, so that a diagnosis stopping at a caller still
//! escalates instead of acting on it.
//!
//! **Calibration.** The confidence reported with a category is not the
//! softmax probability but how often *this kind of answer* was right on
//! held-out data: a table, fitted by `reflex train` on the out-of-fold
//! predictions, from (do the rules agree with the answer, bin of the model's
//! probability of the answer) to the observed accuracy (Laplace-smoothed
//! towards the group's accuracy, then made non-decreasing in probability by
//! pool-adjacent-violators). The incident's confidence is that value, capped
//! by what the root-cause ranking knows about the root (a silent root nothing
//! explains, a root only its callers vouch for, a narrow lead over the
//! runner-up candidate, the classifier overruling rules that found no
//! evidence or doing so with a probability below 0.6: training only sees
//! true roots, so such answers go to a human first).
//!
//! **Model file** (JSON): `format` (1), `hash_dims`, `dense` (must equal
//! [`features::DENSE`]), `categories` (the classes), `intercept`, `weights`
//! (sparse: `[feature index, [weight per class]]`), `policy`, `calibration`
//! and a `summary` of the training run. The built-in model
//! (`topology/models/category.json`) is compiled in; `diagnosis.model`
//! overrides it and a bad file is a configuration error (file and key).
//!
//! **LABELLED.jsonl** (input of `reflex train`): one labelled incident per
//! line, `{"category": "<SPEC §3 category>", "root_cause_service": "<root>",
//! "events": [<ErrorEvent>, ...]}` with the error events of the root and of
//! its callers around the onset (and the root's `change` events before it).
//! The root may be an external host (no events of its own: callers name it as
//! `upstream`). `reflex demo --export DIR` writes `DIR/labelled.jsonl` in this
//! format from its ground truth.

use super::features::{self, Context};
use super::rootcause::{self, categorise, Change, RuleCategory, ServiceSignals, Verdict};
use crate::detectors::facts::SignatureMeta;
use crate::detectors::signature::Signatures;
use crate::model::{Category, ErrorEvent, EventKind, EventTime, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// Below this probability for its own answer the model defers to a
/// category the signature rules found.
pub const UNSURE_MODEL: f64 = 0.5;

/// The model file format version this build reads and writes.
pub const FORMAT: u32 = 1;
/// Hashed feature dimensions of models `reflex train` fits.
pub const DEFAULT_HASH_DIMS: usize = 1024;
/// The built-in model, trained on `reflex demo` seeds 1001–1040 (never on the
/// evaluation seeds 1–20).
pub const BUILTIN_MODEL: &str = include_str!("../../topology/models/category.json");
/// No calibrated confidence exceeds this: a few hundred held-out incidents
/// from one simulated fleet cannot vouch for more.
pub const MAX_CONFIDENCE: f64 = 0.99;
/// Probability bins of the calibration table.
pub const BINS: usize = 10;
/// A recent change this long before onset ties the fault to it (as `diagnosis.change_window`).
const CHANGE_WINDOW_MS: i64 = 15 * 60_000;
/// Signature-hint windows (as the detectors' one-minute windows).
const WINDOW_MS: i64 = 60_000;
/// A window needs this many failing events to count as a detection.
const MIN_WINDOW_EVENTS: usize = 5;
/// Sample messages per window (as a detection's samples).
const SAMPLES_PER_WINDOW: usize = 3;

/// Who decides the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The signature rules and structural facts only (the classifier is ignored).
    Rules,
    /// The classifier only.
    Model,
    /// The classifier, except for structural answers (external root, recent change, node-local network).
    ModelUnlessStructural,
    /// The rules, except when they answer `unknown`.
    RulesUnlessUnknown,
}

impl Policy {
    /// Every policy, in the order ties are broken.
    pub const ALL: [Policy; 4] = [
        Policy::ModelUnlessStructural,
        Policy::Model,
        Policy::RulesUnlessUnknown,
        Policy::Rules,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Rules => "rules",
            Policy::Model => "model",
            Policy::ModelUnlessStructural => "model_unless_structural",
            Policy::RulesUnlessUnknown => "rules_unless_unknown",
        }
    }
}

/// Observed accuracy per probability bin, for answers the rules agree with
/// and for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub agree: Vec<f64>,
    pub disagree: Vec<f64>,
}

/// Held-out figures of a training run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainSummary {
    pub examples: usize,
    /// Examples per category.
    pub per_category: BTreeMap<String, usize>,
    /// Out-of-fold category accuracy per policy.
    pub held_out_accuracy: BTreeMap<String, f64>,
    /// Brier score of the calibrated confidence of the chosen policy (out of fold;
    /// the table is fitted on the same predictions, so this is optimistic).
    pub brier: f64,
    pub alpha: f64,
}

/// A fitted category model (the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryModel {
    pub format: u32,
    pub hash_dims: usize,
    pub dense: usize,
    pub categories: Vec<Category>,
    pub intercept: Vec<f64>,
    /// Non-zero rows: (feature index, weight per category).
    pub weights: Vec<(usize, Vec<f64>)>,
    pub policy: Policy,
    pub calibration: Calibration,
    #[serde(default)]
    pub summary: TrainSummary,
}

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a category model: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("invalid category model: {0}")]
    Invalid(String),
}

/// The classifier's answer for one incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub category: Category,
    /// Calibrated: held-out accuracy of answers like this one.
    pub confidence: f64,
    /// The model's own top class and its probability.
    pub model_category: Category,
    pub model_probability: f64,
    /// The category was decided by a structural fact or the rules.
    pub by_rules: bool,
}

/// The compiled-in model (parsed once; `None` if it does not load, which the
/// test suite rules out).
pub fn builtin() -> Option<&'static CategoryModel> {
    static MODEL: OnceLock<Option<CategoryModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| CategoryModel::from_json(BUILTIN_MODEL).ok())
        .as_ref()
}

fn softmax(z: &mut [f64]) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    if s > 0.0 && s.is_finite() {
        for v in z.iter_mut() {
            *v /= s;
        }
    } else {
        let n = z.len().max(1) as f64;
        z.iter_mut().for_each(|v| *v = 1.0 / n);
    }
}

fn bin(p: f64) -> usize {
    ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)
}

impl CategoryModel {
    /// Parses and checks a model file.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let m: CategoryModel = serde_json::from_str(text)?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.format != FORMAT {
            return bad(format!(
                "format {} (this build reads {FORMAT})",
                self.format
            ));
        }
        if self.dense != features::DENSE {
            return bad(format!(
                "{} dense features (this build computes {})",
                self.dense,
                features::DENSE
            ));
        }
        if self.hash_dims == 0 || self.hash_dims > 1 << 20 {
            return bad(format!("hash_dims {} not in 1..=1048576", self.hash_dims));
        }
        let k = self.categories.len();
        if k == 0 {
            return bad("no categories".into());
        }
        let mut seen = self.categories.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != k {
            return bad("duplicate categories".into());
        }
        if self.intercept.len() != k || self.intercept.iter().any(|v| !v.is_finite()) {
            return bad("intercept must hold one finite value per category".into());
        }
        let d = self.dense + self.hash_dims;
        for (i, row) in &self.weights {
            if *i >= d || row.len() != k || row.iter().any(|v| !v.is_finite()) {
                return bad(format!(
                    "weights row {i}: index must be < {d} with {k} finite values"
                ));
            }
        }
        for t in [&self.calibration.agree, &self.calibration.disagree] {
            if t.len() != BINS || t.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return bad(format!("calibration tables need {BINS} values in [0, 1]"));
            }
        }
        Ok(())
    }

    /// Class probabilities for a feature vector (sum to 1).
    pub fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        let mut z = self.intercept.clone();
        for (i, row) in &self.weights {
            let v = x.get(*i).copied().unwrap_or(0.0);
            if v != 0.0 {
                for (zj, w) in z.iter_mut().zip(row) {
                    *zj += v * w;
                }
            }
        }
        softmax(&mut z);
        z
    }

    /// The calibrated confidence of an answer with model probability `p`.
    pub fn calibrated(&self, p: f64, rules_agree: bool) -> f64 {
        let t = if rules_agree {
            &self.calibration.agree
        } else {
            &self.calibration.disagree
        };
        t.get(bin(p)).copied().unwrap_or(0.5).clamp(0.0, 1.0)
    }

    fn prob_of(&self, probs: &[f64], c: Category) -> f64 {
        self.categories
            .iter()
            .position(|x| *x == c)
            .and_then(|i| probs.get(i).copied())
            .unwrap_or(0.0)
    }

    /// Decides the category of an incident rooted at `root` under `policy`.
    pub fn decide_with(
        &self,
        policy: Policy,
        x: &[f64],
        rule: &RuleCategory,
        structural: bool,
    ) -> Decision {
        let probs = self.probabilities(x);
        let (mi, mp) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(i, p)| (i, *p))
            .unwrap_or((0, 0.0));
        let model_category = self
            .categories
            .get(mi)
            .copied()
            .unwrap_or(Category::Unknown);
        let by_rules = match policy {
            Policy::Rules => true,
            Policy::Model => false,
            Policy::ModelUnlessStructural => structural,
            Policy::RulesUnlessUnknown => rule.category != Category::Unknown,
        };
        let category = if by_rules {
            rule.category
        } else {
            model_category
        };
        let p = self.prob_of(&probs, category);
        let agree = rule.category == category && model_category == category;
        Decision {
            category,
            confidence: self.calibrated(p, agree),
            model_category,
            model_probability: mp,
            by_rules,
        }
    }

    /// Applies the model to a rule-based verdict: category and calibrated confidence.
    /// (Below [`UNSURE_MODEL`] the model defers to a category the rules found.)
    pub fn refine(
        &self,
        v: &mut Verdict,
        services: &BTreeMap<String, ServiceSignals>,
        node_local: bool,
    ) {
        let ctx = Context {
            external: v.external,
            changed: v.root_changed,
            node_local,
        };
        let x = features::features(services, &v.root, ctx, self.hash_dims);
        let structural = v.external || v.root_changed || node_local;
        let mut d = self.decide_with(self.policy, &x, &v.rule, structural);
        // The rules decide instead of the model when the model is unsure
        // and overrules a category the signature rules found (the
        // incident's evidence is probably unlike what it was trained on: no
        // message text, an unfamiliar stack; the rules are explicit about
        // what they matched), or when it says `bad_deploy` with no change
        // of the root shortly before the onset (a resemblance, e.g. a new
        // exception, with nothing to roll back).
        let unsure = d.category != v.rule.category
            && v.rule.category != Category::Unknown
            && d.model_probability < UNSURE_MODEL;
        let no_deploy = d.category == Category::BadDeploy && !v.root_changed;
        let deferred = !d.by_rules && (unsure || no_deploy);
        if deferred {
            d = self.decide_with(Policy::Rules, &x, &v.rule, structural);
        }
        let hearsay = d.category == v.rule.category && v.rule.from_votes && v.rule.hearsay;
        let mut confidence = d
            .confidence
            .min(v.root_cap)
            .min(0.7 + 0.3 * v.margin.clamp(0.0, 1.0));
        // The classifier overruling the rules on thin evidence — the rules
        // found nothing about the root, or the model itself is unsure — is
        // a hypothesis for a human: the root may be a victim whose own
        // evidence has not arrived yet (training only saw true roots).
        let overruled = !d.by_rules
            && d.category != v.rule.category
            && (v.rule.category == Category::Unknown || d.model_probability < 0.6);
        if hearsay || overruled {
            confidence = confidence.min(rootcause::SILENT_ROOT_CAP);
        }
        if deferred {
            // The rules' own confidence (lead of the root, share of the
            // votes) bounds an answer the model could not confirm.
            confidence = confidence.min(v.confidence);
        }
        v.evidence.push(format!(
            "classifier: {} (p={:.2}); rules: {}; {} decides; calibrated confidence {:.2}",
            d.model_category,
            d.model_probability,
            v.rule.category,
            if d.by_rules { "rules" } else { "classifier" },
            d.confidence
        ));
        v.category = d.category;
        v.confidence = confidence.clamp(0.0, 1.0);
    }
}

// ---------------------------------------------------------------- training

/// One labelled incident (a line of LABELLED.jsonl).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledIncident {
    pub category: Category,
    pub root_cause_service: String,
    pub events: Vec<ErrorEvent>,
}

#[derive(Serialize)]
struct LabelledOut<'a> {
    category: Category,
    root_cause_service: &'a str,
    events: &'a [ErrorEvent],
}

/// Serialises one labelled incident as a LABELLED.jsonl line (no newline).
pub fn labelled_line(inc: &LabelledIncident) -> Result<String, serde_json::Error> {
    serde_json::to_string(&LabelledOut {
        category: inc.category,
        root_cause_service: &inc.root_cause_service,
        events: &inc.events,
    })
}

/// Why `reflex train` cannot proceed (exit 2 unless `Fit`).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Input {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Data(String),
    #[error("fitting the model: {0}")]
    Fit(String),
}

/// Reads LABELLED.jsonl; every error names the file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledIncident>, TrainError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: p.clone(),
        source,
    })?;
    parse_labelled(&text, &p)
}

/// Parses LABELLED.jsonl text (`name` is used in error messages).
pub fn parse_labelled(text: &str, name: &str) -> Result<Vec<LabelledIncident>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| TrainError::Input {
            path: name.to_string(),
            line: i + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let cat = obj
            .get("category")
            .and_then(|c| c.as_str())
            .ok_or_else(|| err("missing string field `category`".into()))?;
        let category = Category::parse(cat).ok_or_else(|| {
            err(format!(
                "unknown category `{cat}` (expected one of: {})",
                Category::ALL.map(|c| c.as_str()).join(", ")
            ))
        })?;
        let root = obj
            .get("root_cause_service")
            .and_then(|c| c.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("missing string field `root_cause_service`".into()))?;
        let evs = obj
            .get("events")
            .and_then(|e| e.as_array())
            .ok_or_else(|| err("missing array field `events`".into()))?;
        let mut events = Vec::with_capacity(evs.len());
        for (j, e) in evs.iter().enumerate() {
            let bytes = serde_json::to_vec(e).map_err(|x| err(format!("events[{j}]: {x}")))?;
            let ev = crate::codec::json::decode_event(&bytes)
                .map_err(|x| err(format!("events[{j}]: {}", x.reason)))?;
            events.push(ev);
        }
        out.push(LabelledIncident {
            category,
            root_cause_service: root.to_string(),
            events,
        });
    }
    Ok(out)
}

/// A labelled incident as the classifier sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub services: BTreeMap<String, ServiceSignals>,
    pub root: String,
    pub ctx: Context,
    pub rule: RuleCategory,
    pub category: Category,
}

impl Example {
    fn structural(&self) -> bool {
        self.ctx.external || self.ctx.changed || self.ctx.node_local
    }
}

/// Folds one service's failing events into signals the way the detectors and
/// the diagnosis stage would: one-minute windows of at least
/// [`MIN_WINDOW_EVENTS`] events, each like one detection (hints = rule weight ×
/// share of the window's events, a few sample messages).
fn fold_service(evs: &[&ErrorEvent], sigs: &Signatures, meta: &SignatureMeta) -> ServiceSignals {
    let mut windows: BTreeMap<i64, Vec<&ErrorEvent>> = BTreeMap::new();
    for e in evs {
        windows
            .entry(e.time.millis().div_euclid(WINDOW_MS))
            .or_default()
            .push(e);
    }
    let mut groups: Vec<Vec<&ErrorEvent>> = windows
        .into_values()
        .filter(|w| w.len() >= MIN_WINDOW_EVENTS)
        .collect();
    if groups.is_empty() {
        groups.push(evs.to_vec());
    }
    let mut s = ServiceSignals::default();
    let mut hits = Vec::new();
    for w in groups {
        let mut rule_hits: Vec<(usize, u64)> = Vec::new();
        let mut samples: Vec<&str> = Vec::new();
        for e in &w {
            s.first_seen = Some(s.first_seen.map_or(e.time, |f| f.min(e.time)));
            s.count += 1;
            if let Some(u) = &e.upstream {
                *s.upstreams.entry(u.clone()).or_default() += 1;
            }
            if let Some(n) = &e.node {
                *s.nodes.entry(n.clone()).or_default() += 1;
            }
            if let Some(t) = &e.error_type {
                features::bump(&mut s.error_types, t, 1, features::MAX_VALUES);
            }
            if let Some(c) = e.http_status {
                features::bump(&mut s.statuses, &c.to_string(), 1, features::MAX_VALUES);
            }
            if samples.len() < SAMPLES_PER_WINDOW && !samples.contains(&e.message.as_str()) {
                samples.push(&e.message);
            }
            sigs.matches(e, &mut hits);
            for &h in &hits {
                match rule_hits.iter_mut().find(|x| x.0 == h) {
                    Some(x) => x.1 += 1,
                    None => rule_hits.push((h, 1)),
                }
            }
        }
        for m in samples {
            features::bump(
                &mut s.templates,
                &features::template(m),
                1,
                features::MAX_TEMPLATES,
            );
        }
        for h in meta.hints(&rule_hits, w.len() as u64) {
            rootcause::add_hint(&mut s, h.category, h.weight, h.about);
        }
    }
    s
}

/// Builds the classifier's view of a labelled incident from its events: the
/// root's and its callers' signals, the structural facts and the rules' answer.
pub fn signals_from_events(inc: &LabelledIncident, sigs: &Signatures) -> Example {
    let meta = SignatureMeta::new(sigs);
    let root = inc.root_cause_service.as_str();
    let failing = |e: &&ErrorEvent| e.kind == EventKind::Error && e.severity >= Severity::Error;
    let mut per: BTreeMap<&str, Vec<&ErrorEvent>> = BTreeMap::new();
    for e in inc.events.iter().filter(failing) {
        per.entry(e.service.as_str()).or_default().push(e);
    }
    for v in per.values_mut() {
        v.sort_by_key(|e| e.time);
    }
    let named = inc.events.iter().any(|e| e.service == root);
    // A node as root cause: every service failing on it is in the picture.
    let node_root = !named && inc.events.iter().any(|e| e.node.as_deref() == Some(root));
    let callers: Vec<&str> = per
        .iter()
        .filter(|(s, evs)| {
            **s != root && (node_root || evs.iter().any(|e| e.upstream.as_deref() == Some(root)))
        })
        .map(|(s, _)| *s)
        .collect();
    let mut services = BTreeMap::new();
    if let Some(evs) = per.get(root) {
        services.insert(root.to_string(), fold_service(evs, sigs, &meta));
    }
    for c in callers {
        if let Some(evs) = per.get(c) {
            services.insert(c.to_string(), fold_service(evs, sigs, &meta));
        }
    }
    let external = !named && !node_root;
    let onset: Option<EventTime> = services
        .get(root)
        .and_then(|s| s.first_seen)
        .or_else(|| services.values().filter_map(|s| s.first_seen).min());
    let change = onset.and_then(|first| change_before(&inc.events, root, first));
    Example::of(services, root, external, change, inc.category)
}

/// The latest `change` of `service` at most [`CHANGE_WINDOW_MS`] before `first`.
fn change_before(events: &[ErrorEvent], service: &str, first: EventTime) -> Option<Change> {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Change
                && e.service == service
                && e.time <= first
                && first.millis() - e.time.millis() <= CHANGE_WINDOW_MS
        })
        .max_by_key(|e| e.time)
        .map(|e| Change {
            service: e.service.clone(),
            time: e.time,
            version: e.version.clone(),
            evidence: e.message.clone(),
        })
}

/// Every training example of a labelled incident: the incident itself and,
/// when its root is external (reflex can only see callers), the view from
/// each of its two loudest callers labelled with the true category — so that
/// a diagnosis that stops at a caller still reports `dependency_failure`
/// (escalate) instead of blaming the caller's own health.
pub fn examples_from_labelled(inc: &LabelledIncident, sigs: &Signatures) -> Vec<Example> {
    let main = signals_from_events(inc, sigs);
    let mut out = Vec::new();
    if main.ctx.external {
        let mut callers: Vec<(&String, i64)> = main
            .services
            .iter()
            .filter(|(n, _)| **n != main.root)
            .map(|(n, s)| (n, s.count))
            .collect();
        callers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        for (c, _) in callers.into_iter().take(2) {
            let first = main.services.get(c).and_then(|s| s.first_seen);
            let change = first.and_then(|f| change_before(&inc.events, c, f));
            out.push(Example::of(
                main.services.clone(),
                c,
                false,
                change,
                inc.category,
            ));
        }
    }
    out.insert(0, main);
    out
}

impl Example {
    fn of(
        services: BTreeMap<String, ServiceSignals>,
        root: &str,
        external: bool,
        change: Option<Change>,
        category: Category,
    ) -> Example {
        let node_local = rootcause::node_local_network(&services).is_some();
        // As at run time: a change counts for the rules only when the root
        // has failing events of its own (a silent root's change is a feature).
        let rule_change = change.as_ref().filter(|_| services.contains_key(root));
        let rule = if node_local {
            RuleCategory {
                category: Category::Network,
                share: 1.0,
                from_votes: true,
                hearsay: false,
                votes: BTreeMap::new(),
            }
        } else {
            categorise(&services, root, external, rule_change, 0.25)
        };
        Example {
            ctx: Context {
                external,
                changed: change.is_some(),
                node_local,
            },
            services,
            root: root.to_string(),
            rule,
            category,
        }
    }
}

/// What `reflex train` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub summary: TrainSummary,
    pub policy: Policy,
    /// (bin, n, mean model probability, observed accuracy) of the chosen policy's answers.
    pub reliability: Vec<(usize, usize, f64, f64)>,
}

/// Fitted classes (indices into [`Category::ALL`]), weights and intercepts.
type Fitted = (Vec<usize>, ndarray::Array2<f64>, ndarray::Array1<f64>);

/// Out-of-fold figures of one regularisation: (accuracy, alpha, probabilities).
type FoldResult = (f64, f64, Vec<Vec<f64>>);

fn fit(x: &ndarray::Array2<f64>, y: &[usize], alpha: f64) -> Result<Fitted, TrainError> {
    use linfa::prelude::*;
    let ds = linfa::Dataset::new(x.clone(), ndarray::Array1::from(y.to_vec()));
    let m = linfa_logistic::MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(200)
        .fit(&ds)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    Ok((
        m.classes().to_vec(),
        m.params().to_owned(),
        m.intercept().to_owned(),
    ))
}

fn to_model(
    classes: &[usize],
    w: &ndarray::Array2<f64>,
    b: &ndarray::Array1<f64>,
    hash_dims: usize,
) -> CategoryModel {
    let round = |v: f64| (v * 1e4).round() / 1e4;
    let mut weights = Vec::new();
    for (i, row) in w.rows().into_iter().enumerate() {
        let r: Vec<f64> = row.iter().map(|v| round(*v)).collect();
        if r.iter().any(|v| *v != 0.0) {
            weights.push((i, r));
        }
    }
    CategoryModel {
        format: FORMAT,
        hash_dims,
        dense: features::DENSE,
        categories: classes
            .iter()
            .map(|c| Category::ALL.get(*c).copied().unwrap_or(Category::Unknown))
            .collect(),
        intercept: b.iter().map(|v| round(*v)).collect(),
        weights,
        policy: Policy::ModelUnlessStructural,
        calibration: Calibration {
            agree: vec![0.5; BINS],
            disagree: vec![0.5; BINS],
        },
        summary: TrainSummary::default(),
    }
}

/// Pool-adjacent-violators: the non-decreasing fit of `v` weighted by `n`.
pub fn isotonic(v: &[f64], n: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new(); // (mean, weight, len)
    for (x, w) in v.iter().zip(n) {
        blocks.push((*x, w.max(1e-9), 1));
        while blocks.len() >= 2 {
            let k = blocks.len();
            if blocks[k - 2].0 <= blocks[k - 1].0 {
                break;
            }
            let (b, a) = (blocks[k - 1], blocks[k - 2]);
            let wt = a.1 + b.1;
            blocks.truncate(k - 2);
            blocks.push(((a.0 * a.1 + b.0 * b.1) / wt, wt, a.2 + b.2));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(m, _, l)| std::iter::repeat_n(m.clamp(0.0, 1.0), l))
        .collect()
}

/// Fits a model on labelled examples: 5-fold out-of-fold predictions choose
/// the regularisation and the policy and fit the calibration table, then the
/// final weights are fitted on everything.
pub fn train(
    examples: &[Example],
    hash_dims: usize,
) -> Result<(CategoryModel, TrainReport), TrainError> {
    let n = examples.len();
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for e in examples {
        *per_category.entry(e.category.to_string()).or_default() += 1;
    }
    if n < 10 || per_category.len() < 2 {
        return Err(TrainError::Data(format!(
            "need at least 10 labelled incidents of at least 2 categories (got {n} of {})",
            per_category.len()
        )));
    }
    let d = features::DENSE + hash_dims;
    let label = |c: Category| {
        Category::ALL
            .iter()
            .position(|x| *x == c)
            .unwrap_or(Category::ALL.len() - 1)
    };
    // Rows: every example, then augmented copies (used for fitting only,
    // never for held-out scoring), each remembering its example.
    let mut rows: Vec<(Vec<f64>, usize, usize)> = Vec::with_capacity(3 * n);
    for (i, e) in examples.iter().enumerate() {
        rows.push((
            features::features(&e.services, &e.root, e.ctx, hash_dims),
            label(e.category),
            i,
        ));
    }
    for (i, e) in examples.iter().enumerate() {
        // Text dropout: the same incident seen through the signature hints
        // and structure alone, so that vocabulary the training fleet never
        // used (real fleets) still lands on the right category.
        let mut f = rows[i].0.clone();
        f[features::DENSE..].iter_mut().for_each(|v| *v = 0.0);
        rows.push((f, label(e.category), i));
        // Change dropout: only `bad_deploy` is defined by a change; a bad
        // config or an outage without one is still what it is.
        if e.ctx.changed && e.category != Category::BadDeploy {
            let alt = Example::of(
                e.services.clone(),
                &e.root,
                e.ctx.external,
                None,
                e.category,
            );
            rows.push((
                features::features(&alt.services, &alt.root, alt.ctx, hash_dims),
                label(e.category),
                i,
            ));
        }
    }
    let mut x = ndarray::Array2::<f64>::zeros((rows.len(), d));
    let mut y_all = Vec::with_capacity(rows.len());
    let mut origin = Vec::with_capacity(rows.len());
    for (r, (f, l, o)) in rows.into_iter().enumerate() {
        for (j, v) in f.into_iter().enumerate() {
            x[[r, j]] = v;
        }
        y_all.push(l);
        origin.push(o);
    }
    let y: Vec<usize> = y_all[..n].to_vec();
    // Deterministic folds, stratified by category (round robin within each).
    let folds = 5usize;
    let mut fold = vec![0usize; n];
    let mut next: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..n {
        let k = next.entry(y[i]).or_default();
        fold[i] = *k % folds;
        *k += 1;
    }
    let mut best: Option<FoldResult> = None;
    for alpha in [0.1, 1.0] {
        let mut oof: Vec<Vec<f64>> = vec![Vec::new(); n];
        for f in 0..folds {
            let tr: Vec<usize> = (0..origin.len())
                .filter(|r| fold[origin[*r]] != f)
                .collect();
            let te: Vec<usize> = (0..n).filter(|i| fold[*i] == f).collect();
            if te.is_empty() {
                continue;
            }
            let xt = x.select(ndarray::Axis(0), &tr);
            let yt: Vec<usize> = tr.iter().map(|i| y_all[*i]).collect();
            let (classes, w, b) = fit(&xt, &yt, alpha)?;
            let m = to_model(&classes, &w, &b, hash_dims);
            // Probabilities over every category, so folds are comparable.
            for i in te {
                let p = m.probabilities(x.row(i).as_slice().unwrap_or(&[]));
                let mut full = vec![0.0; Category::ALL.len()];
                for (c, pc) in m.categories.iter().zip(p) {
                    if let Some(k) = Category::ALL.iter().position(|a| a == c) {
                        full[k] = pc;
                    }
                }
                oof[i] = full;
            }
        }
        let acc = (0..n)
            .filter(|i| {
                oof[*i]
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(k, _)| k)
                    == Some(y[*i])
            })
            .count() as f64
            / n as f64;
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, alpha, oof));
        }
    }
    let Some((_, alpha, oof)) = best else {
        return Err(TrainError::Fit("no fold could be fitted".into()));
    };
    // An "all categories" model shell to evaluate policies on the OOF probabilities.
    let shell = CategoryModel {
        categories: Category::ALL.to_vec(),
        intercept: vec![0.0; Category::ALL.len()],
        weights: Vec::new(),
        ..to_model(
            &[],
            &ndarray::Array2::zeros((0, 0)),
            &ndarray::Array1::zeros(0),
            hash_dims,
        )
    };
    let decide = |policy: Policy, i: usize| -> (Category, f64, bool) {
        let e = &examples[i];
        let p = &oof[i];
        let (mi, _) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(&a.0)))
            .unwrap_or((Category::ALL.len() - 1, &0.0));
        let mc = Category::ALL[mi];
        let by_rules = match policy {
            Policy::Rules => true,
            Policy::Model => false,
            Policy::ModelUnlessStructural => e.structural(),
            Policy::RulesUnlessUnknown => e.rule.category != Category::Unknown,
        };
        let c = if by_rules { e.rule.category } else { mc };
        let pc = shell.prob_of(p, c);
        (c, pc, e.rule.category == c && mc == c)
    };
    let mut held_out = BTreeMap::new();
    let mut chosen = (Policy::ModelUnlessStructural, -1.0);
    for policy in Policy::ALL {
        let acc = (0..n)
            .filter(|i| decide(policy, *i).0 == examples[*i].category)
            .count() as f64
            / n as f64;
        held_out.insert(policy.as_str().to_string(), (acc * 1e4).round() / 1e4);
        if acc > chosen.1 + 1e-9 {
            chosen = (policy, acc);
        }
    }
    let policy = chosen.0;
    // Calibration: accuracy per (agree, bin), smoothed towards the group's mean.
    let mut tables = Vec::new();
    let mut reliability = Vec::new();
    for agree in [true, false] {
        let mut hit = [0.0; BINS];
        let mut cnt = [0.0; BINS];
        let mut psum = [0.0; BINS];
        for (i, e) in examples.iter().enumerate() {
            let (c, p, a) = decide(policy, i);
            if a != agree {
                continue;
            }
            let b = bin(p);
            cnt[b] += 1.0;
            psum[b] += p;
            hit[b] += f64::from(u8::from(c == e.category));
        }
        let total: f64 = cnt.iter().sum();
        let prior = if total > 0.0 {
            (hit.iter().sum::<f64>() + 1.0) / (total + 2.0)
        } else {
            0.5
        };
        let k = 2.0;
        let raw: Vec<f64> = (0..BINS)
            .map(|b| (hit[b] + k * prior) / (cnt[b] + k))
            .collect();
        let w: Vec<f64> = cnt.iter().map(|c| c + k).collect();
        let iso = isotonic(&raw, &w);
        if agree {
            for b in 0..BINS {
                if cnt[b] > 0.0 {
                    reliability.push((b, cnt[b] as usize, psum[b] / cnt[b], hit[b] / cnt[b]));
                }
            }
        }
        tables.push(
            iso.into_iter()
                .map(|v| (v.min(MAX_CONFIDENCE) * 1e4).round() / 1e4)
                .collect::<Vec<_>>(),
        );
    }
    let calibration = Calibration {
        disagree: tables.pop().unwrap_or_else(|| vec![0.5; BINS]),
        agree: tables.pop().unwrap_or_else(|| vec![0.5; BINS]),
    };
    let (classes, w, b) = fit(&x, &y_all, alpha)?;
    let mut model = to_model(&classes, &w, &b, hash_dims);
    model.policy = policy;
    model.calibration = calibration;
    // Brier score of the calibrated confidence on the OOF predictions.
    let mut brier = 0.0;
    for (i, e) in examples.iter().enumerate() {
        let (c, p, a) = decide(policy, i);
        let conf = model.calibrated(p, a);
        let yv = f64::from(u8::from(c == e.category));
        brier += (conf - yv).powi(2);
    }
    let summary = TrainSummary {
        examples: n,
        per_category,
        held_out_accuracy: held_out,
        brier: ((brier / n as f64) * 1e4).round() / 1e4,
        alpha,
    };
    model.summary = summary.clone();
    model.check().map_err(|e| TrainError::Fit(e.to_string()))?;
    Ok((
        model,
        TrainReport {
            summary,
            policy,
            reliability,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    /// A failing event (hand-written texts, not the simulator's).
    pub(crate) fn ev(
        service: &str,
        t: i64,
        message: &str,
        error_type: Option<&str>,
        status: Option<i32>,
        upstream: Option<&str>,
        node: &str,
    ) -> ErrorEvent {
        let mut e = ErrorEvent::new(
            format!("{service}-{t}-{}", message.len()),
            EventTime(t),
            service,
            Severity::Error,
            message,
        );
        e.error_type = error_type.map(str::to_string);
        e.http_status = status;
        e.upstream = upstream.map(str::to_string);
        e.node = Some(node.to_string());
        e
    }

    /// `n` events a second apart from `t0`, cycling through `msgs`.
    pub(crate) fn burst(
        service: &str,
        t0: i64,
        n: usize,
        msgs: &[(&str, Option<&str>, Option<i32>)],
        upstream: Option<&str>,
        node: &str,
    ) -> Vec<ErrorEvent> {
        (0..n)
            .map(|i| {
                let (m, et, st) = msgs[i % msgs.len()];
                let m = m.replace("{i}", &(1000 + i * 37).to_string());
                ev(service, t0 + i as i64 * 1000, &m, et, st, upstream, node)
            })
            .collect()
    }

    const T0: i64 = 1_800_000_000_000;

    /// Hand-written realistic incidents, one per category (and variant).
    pub(crate) fn realistic() -> Vec<LabelledIncident> {
        use Category::*;
        let mut v = Vec::new();
        let mut add = |category, root: &str, events: Vec<ErrorEvent>| {
            v.push(LabelledIncident {
                category,
                root_cause_service: root.to_string(),
                events,
            })
        };
        let mut oom = burst(
            "payments",
            T0,
            30,
            &[
                (
                    "Container payments was OOMKilled (exit code 137), restarting",
                    None,
                    None,
                ),
                (
                    "java.lang.OutOfMemoryError: Java heap space",
                    Some("java.lang.OutOfMemoryError"),
                    None,
                ),
                (
                    "GC overhead limit exceeded in worker-{i}",
                    Some("java.lang.OutOfMemoryError"),
                    None,
                ),
            ],
            None,
            "n1",
        );
        oom.extend(burst(
            "checkout",
            T0 + 2_000,
            20,
            &[("upstream connect error or disconnect/reset before headers. reset reason: connection failure", None, Some(503))],
            Some("payments"),
            "n2",
        ));
        add(MemoryExhaustion, "payments", oom);
        add(
            ResourceExhaustion,
            "orders",
            burst(
                "orders",
                T0,
                30,
                &[
                    ("HikariPool-1 - Connection is not available, request timed out after 30000ms.", Some("java.sql.SQLTransientConnectionException"), Some(500)),
                    ("accept4: too many open files; retrying in 1s", None, None),
                ],
                None,
                "n1",
            ),
        );
        add(
            Overload,
            "search",
            burst(
                "search",
                T0,
                40,
                &[
                    (
                        "429 Too Many Requests: rate limit exceeded for tenant {i}",
                        None,
                        Some(429),
                    ),
                    (
                        "request rejected: server overloaded, queue full (1024 pending)",
                        None,
                        Some(503),
                    ),
                ],
                None,
                "n1",
            ),
        );
        let mut unavail = burst(
            "cart",
            T0,
            25,
            &[("no healthy upstream", None, Some(503))],
            Some("inventory"),
            "n2",
        );
        unavail.extend(burst(
            "web",
            T0 + 500,
            25,
            &[(
                "dial tcp 10.0.4.{i}:8080: connect: connection refused",
                Some("ECONNREFUSED"),
                Some(503),
            )],
            Some("inventory"),
            "n3",
        ));
        let mut change = ev(
            "inventory",
            T0 - 60_000,
            "scaled deployment inventory to 0 replicas",
            None,
            None,
            None,
            "n1",
        );
        change.kind = EventKind::Change;
        change
            .attributes
            .insert("change_type".into(), "scale".into());
        unavail.push(change);
        add(Unavailable, "inventory", unavail);
        add(
            ConfigError,
            "billing",
            burst(
                "billing",
                T0,
                20,
                &[
                    ("Error: missing required environment variable STRIPE_API_KEY", None, None),
                    ("failed to parse config file /etc/billing/config.yaml: yaml: line {i}: mapping values are not allowed here", None, None),
                ],
                None,
                "n1",
            ),
        );
        add(
            CertificateExpired,
            "auth",
            burst(
                "auth",
                T0,
                20,
                &[
                    ("x509: certificate has expired or is not yet valid: current time 2026-11-23T10:00:{i}Z is after 2026-11-22T23:59:59Z", None, None),
                    ("javax.net.ssl.SSLHandshakeException: PKIX path validation failed: validity check failed", Some("javax.net.ssl.SSLHandshakeException"), None),
                ],
                None,
                "n1",
            ),
        );
        add(
            DependencyFailure,
            "api.stripe.com",
            burst(
                "payments",
                T0,
                30,
                &[
                    (
                        "POST https://api.stripe.com/v1/charges failed: 502 Bad Gateway",
                        None,
                        Some(502),
                    ),
                    (
                        "stripe: request failed after 3 retries: status 500",
                        None,
                        Some(500),
                    ),
                ],
                Some("api.stripe.com"),
                "n1",
            ),
        );
        let mut net = burst(
            "orders",
            T0,
            20,
            &[(
                "dial tcp: lookup inventory.shop.svc.cluster.local on 10.96.0.10:53: no such host",
                None,
                None,
            )],
            None,
            "node-7",
        );
        net.extend(burst(
            "cart",
            T0 + 700,
            20,
            &[(
                "read tcp 10.1.7.{i}:43210->10.1.2.3:5432: read: connection reset by peer",
                Some("ECONNRESET"),
                None,
            )],
            None,
            "node-7",
        ));
        add(Network, "node-7", net);
        add(
            DataError,
            "ingest",
            burst(
                "ingest",
                T0,
                25,
                &[
                    ("ValidationError: field 'amount' must be a positive number (record {i})", Some("ValidationError"), Some(422)),
                    ("com.fasterxml.jackson.core.JsonParseException: Unexpected character ('}' (code 125)) at line {i}", Some("com.fasterxml.jackson.core.JsonParseException"), None),
                ],
                None,
                "n1",
            ),
        );
        let mut deploy = burst(
            "catalog",
            T0,
            30,
            &[
                ("TypeError: Cannot read properties of undefined (reading 'price') at render (/app/dist/item.js:{i})", Some("TypeError"), Some(500)),
                ("java.lang.NullPointerException at com.shop.catalog.Item.total(Item.java:{i})", Some("java.lang.NullPointerException"), Some(500)),
            ],
            None,
            "n1",
        );
        let mut d = ev(
            "catalog",
            T0 - 120_000,
            "deployed catalog v2.14.0",
            None,
            None,
            None,
            "n1",
        );
        d.kind = EventKind::Change;
        d.version = Some("v2.14.0".into());
        deploy.push(d);
        add(BadDeploy, "catalog", deploy);
        v
    }

    /// A second set of hand-written incidents in other runtimes' words.
    pub(crate) fn realistic_other() -> Vec<LabelledIncident> {
        use Category::*;
        let mut v = Vec::new();
        let mut add = |category, root: &str, events: Vec<ErrorEvent>| {
            v.push(LabelledIncident {
                category,
                root_cause_service: root.to_string(),
                events,
            })
        };
        add(
            MemoryExhaustion,
            "reports",
            burst(
                "reports",
                T0,
                25,
                &[
                    ("fatal error: runtime: out of memory", None, None),
                    (
                        "Out of memory: Killed process {i} (python3) total-vm:8123456kB",
                        Some("MemoryError"),
                        None,
                    ),
                ],
                None,
                "n1",
            ),
        );
        add(
            ResourceExhaustion,
            "accounts",
            burst(
                "accounts",
                T0,
                25,
                &[
                    ("psycopg2.OperationalError: FATAL: sorry, too many clients already", Some("psycopg2.OperationalError"), Some(500)),
                    ("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30", None, Some(500)),
                ],
                None,
                "n1",
            ),
        );
        add(
            Overload,
            "gateway",
            burst(
                "gateway",
                T0,
                40,
                &[
                    (
                        "rate limited: too many requests from client {i}, retry after 30s",
                        None,
                        Some(429),
                    ),
                    (
                        "load shedding: request queue full, dropping request",
                        None,
                        Some(503),
                    ),
                ],
                None,
                "n1",
            ),
        );
        add(
            ConfigError,
            "mailer",
            burst(
                "mailer",
                T0,
                20,
                &[
                    ("panic: invalid configuration: missing key 'smtp.host'", None, None),
                    ("failed to load config: unknown configuration key 'retry_backof' in /etc/mailer/app.toml", None, None),
                ],
                None,
                "n1",
            ),
        );
        add(
            CertificateExpired,
            "ledger",
            burst(
                "ledger",
                T0,
                20,
                &[
                    ("tls: failed to verify certificate: x509: certificate has expired or is not yet valid", None, None),
                    ("ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired", Some("ssl.SSLCertVerificationError"), None),
                ],
                None,
                "n1",
            ),
        );
        add(
            DataError,
            "importer",
            burst(
                "importer",
                T0,
                25,
                &[
                    (
                        "invalid input syntax for type integer: \"abc{i}\"",
                        Some("DataError"),
                        Some(400),
                    ),
                    (
                        "schema validation failed: /items/{i}/sku is required",
                        Some("ValidationError"),
                        Some(400),
                    ),
                ],
                None,
                "n1",
            ),
        );
        add(
            DependencyFailure,
            "api.twilio.com",
            burst(
                "notify",
                T0,
                30,
                &[
                    ("POST https://api.twilio.com/2010-04-01/Messages.json: 503 Service Unavailable", None, Some(503)),
                    ("twilio request failed: context deadline exceeded", None, None),
                ],
                Some("api.twilio.com"),
                "n1",
            ),
        );
        v
    }

    fn sigs() -> Signatures {
        Config::embedded().expect("embedded config").signatures
    }

    #[test]
    fn the_builtin_model_loads_and_is_small() {
        let m = builtin().expect("the built-in model loads");
        assert!(
            BUILTIN_MODEL.len() < 300_000,
            "{} bytes",
            BUILTIN_MODEL.len()
        );
        assert!(m.categories.len() >= 10);
        let cfg = Config::embedded().expect("embedded config");
        assert!(cfg.diagnosis.category_model.is_some());
    }

    #[test]
    fn the_builtin_model_classifies_realistic_messages() {
        let m = builtin().expect("built-in model");
        let s = sigs();
        let mut wrong = Vec::new();
        for inc in realistic().into_iter().chain(realistic_other()) {
            let e = signals_from_events(&inc, &s);
            let x = features::features(&e.services, &e.root, e.ctx, m.hash_dims);
            let d = m.decide_with(m.policy, &x, &e.rule, e.structural());
            if d.category != inc.category {
                wrong.push(format!(
                    "{}: got {} (model {} p={:.2}, rules {})",
                    inc.category,
                    d.category,
                    d.model_category,
                    d.model_probability,
                    e.rule.category
                ));
            }
            assert!((0.0..=1.0).contains(&d.confidence));
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn the_stage_uses_the_classifier_unless_switched_off() {
        use crate::model::{About, CategoryHint, Counted, Detection, Window};
        use crate::pipeline::Stage;
        let det = Detection {
            detection_id: "d1".into(),
            detector: "threshold".into(),
            rule: "error_burst".into(),
            key: "service=payments".into(),
            service: "payments".into(),
            namespace: None,
            score: 0.9,
            window: Window {
                start: EventTime(T0),
                end: EventTime(T0 + 60_000),
            },
            evidence: "payments: 40 events".into(),
            count: 40,
            first_seen: EventTime(T0),
            hints: vec![CategoryHint {
                category: Category::MemoryExhaustion,
                weight: 0.9,
                source: "oom".into(),
                about: About::Itself,
            }],
            upstreams: vec![],
            error_types: vec![Counted {
                value: "java.lang.OutOfMemoryError".into(),
                count: 30,
            }],
            http_statuses: vec![],
            nodes: vec![],
            instances: vec![],
            trace_ids: vec![],
            samples: vec!["java.lang.OutOfMemoryError: Java heap space".into()],
            version: None,
        };
        let run = |classifier: bool| {
            let cfg = super::super::DiagnosisConfig {
                classifier,
                ..Default::default()
            };
            let mut st = super::super::DiagnosisStage::new(
                cfg,
                std::sync::Arc::new(super::super::catalog::Catalog::default()),
                std::sync::Arc::new(crate::pipeline::stats::Stats::default()),
            );
            let mut out = Vec::new();
            // Two windows of the fault (one window alone is a blip), and a
            // caller failing on it (a service nobody calls is capped).
            let mut again = det.clone();
            again.window = Window {
                start: EventTime(T0 + 60_000),
                end: EventTime(T0 + 120_000),
            };
            let mut caller = det.clone();
            caller.service = "checkout".into();
            caller.hints.clear();
            caller.error_types.clear();
            caller.samples = vec!["upstream payments returned 503".into()];
            caller.upstreams = vec![Counted {
                value: "payments".into(),
                count: 40,
            }];
            st.process(det.clone(), &mut out);
            st.process(caller, &mut out);
            st.process(again, &mut out);
            st.on_watermark(EventTime(T0 + 10 * 60_000), &mut out);
            out.into_iter().next().expect("an incident")
        };
        let on = run(true);
        let off = run(false);
        assert_eq!(on.category, Category::MemoryExhaustion);
        assert_eq!(off.category, Category::MemoryExhaustion);
        assert!(on.evidence.iter().any(|e| e.starts_with("classifier:")));
        assert!(!off.evidence.iter().any(|e| e.starts_with("classifier:")));
        assert!(
            on.confidence <= MAX_CONFIDENCE && on.confidence > 0.6,
            "{on:?}"
        );
    }

    #[test]
    fn labelled_input_errors_name_the_line() {
        let good = r#"{"category":"overload","root_cause_service":"a","events":[{"id":"1","time":1,"service":"a","severity":"error","message":"queue full"}]}"#;
        let text = format!(
            "{good}\n\n{{\"category\":\"nope\",\"root_cause_service\":\"a\",\"events\":[]}}\n"
        );
        let e = parse_labelled(&text, "x.jsonl").unwrap_err().to_string();
        assert!(
            e.starts_with("x.jsonl:3:") && e.contains("unknown category"),
            "{e}"
        );
        let bad_event = r#"{"category":"overload","root_cause_service":"a","events":[{"id":"1"}]}"#;
        let e = parse_labelled(bad_event, "y").unwrap_err().to_string();
        assert!(e.starts_with("y:1:") && e.contains("events[0]"), "{e}");
        assert!(parse_labelled("[1]", "z")
            .unwrap_err()
            .to_string()
            .starts_with("z:1:"));
        assert_eq!(parse_labelled(good, "g").map(|v| v.len()).ok(), Some(1));
    }

    #[test]
    fn a_bad_model_file_is_rejected_without_panicking() {
        assert!(CategoryModel::from_json("{}").is_err());
        assert!(CategoryModel::from_json("not json").is_err());
        let mut m = builtin().expect("built-in").clone();
        m.weights.push((usize::MAX, vec![0.0; m.categories.len()]));
        let text = serde_json::to_string(&m).expect("serialises");
        assert!(CategoryModel::from_json(&text).is_err());
        let mut m = builtin().expect("built-in").clone();
        m.calibration.agree[0] = 1.5;
        let text = serde_json::to_string(&m).expect("serialises");
        assert!(CategoryModel::from_json(&text).is_err());
    }

    #[test]
    fn training_on_a_small_labelled_set_classifies_held_out_incidents() {
        let s = sigs();
        // Three variants of each realistic incident, shifted in time, as training data.
        let mut train_set = Vec::new();
        for k in 0..3i64 {
            for mut inc in realistic() {
                for e in &mut inc.events {
                    e.time = EventTime(e.time.millis() + k * 3_600_000 + k * 17);
                    if k == 1 {
                        e.message.push_str(" (retry)");
                    }
                }
                train_set.push(signals_from_events(&inc, &s));
            }
        }
        let (model, report) = train(&train_set, 256).expect("trains");
        let text = serde_json::to_string(&model).expect("serialises");
        let loaded = CategoryModel::from_json(&text).expect("loads");
        assert_eq!(report.summary.examples, train_set.len());
        for inc in realistic() {
            let e = signals_from_events(&inc, &s);
            let x = features::features(&e.services, &e.root, e.ctx, loaded.hash_dims);
            let d = loaded.decide_with(Policy::Model, &x, &e.rule, e.structural());
            assert_eq!(d.category, inc.category, "{d:?}");
        }
    }

    #[test]
    fn isotonic_is_monotone_and_bounded() {
        let v = isotonic(&[0.9, 0.2, 0.5, 0.4, 1.0], &[1.0, 1.0, 2.0, 1.0, 1.0]);
        assert_eq!(v.len(), 5);
        assert!(v.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{v:?}");
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    proptest! {
        #[test]
        fn features_are_deterministic_and_bounded(
            msgs in proptest::collection::vec("[a-zA-Z0-9 :./_-]{0,60}", 0..6),
            hints in proptest::collection::vec((0usize..11, 0.0f64..1.0, any::<bool>()), 0..6),
            statuses in proptest::collection::vec((100i32..600, 1i64..50), 0..4),
            count in 0i64..100_000,
            ext in any::<bool>(),
            changed in any::<bool>(),
        ) {
            let mut s = ServiceSignals { count, ..ServiceSignals::default() };
            for m in &msgs {
                features::bump(&mut s.templates, &features::template(m), 1, features::MAX_TEMPLATES);
            }
            for (c, w, own) in &hints {
                let about = if *own { crate::model::About::Itself } else { crate::model::About::Dependency };
                rootcause::add_hint(&mut s, Category::ALL[*c], *w, about);
            }
            for (st, n) in &statuses {
                features::bump(&mut s.statuses, &st.to_string(), *n, features::MAX_VALUES);
                features::bump(&mut s.error_types, &format!("E{st}"), *n, features::MAX_VALUES);
            }
            let mut caller = s.clone();
            caller.upstreams.insert("r".into(), 3);
            let mut m = BTreeMap::new();
            m.insert("r".to_string(), s);
            m.insert("c".to_string(), caller);
            let ctx = Context { external: ext, changed, node_local: false };
            let a = features::features(&m, "r", ctx, 128);
            let b = features::features(&m, "r", ctx, 128);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.len(), features::DENSE + 128);
            prop_assert!(a.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
            // Probabilities of the built-in model sum to 1; calibration is bounded.
            if let Some(model) = builtin() {
                let x = features::features(&m, "r", ctx, model.hash_dims);
                let p = model.probabilities(&x);
                prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
                let mut last = (0.0, 0.0);
                for k in 0..=20 {
                    let q = k as f64 / 20.0;
                    let (ca, cd) = (model.calibrated(q, true), model.calibrated(q, false));
                    prop_assert!((0.0..=1.0).contains(&ca) && (0.0..=1.0).contains(&cd));
                    prop_assert!(ca + 1e-12 >= last.0 && cd + 1e-12 >= last.1, "calibration decreases");
                    last = (ca, cd);
                }
            }
        }
    }
}
