//! How the classifier's answer and the rule-based verdict are combined into
//! the incident's category and confidence ([`CategoryModel::refine`]): when
//! the rules decide instead of the model (an unsure model overruling the
//! signature rules, `bad_deploy` without a deploy of the root), and the caps
//! on the confidence (the root-cause ranking's, hearsay, a model overruling
//! thin rules).
//!
//! Guarantees: only the verdict's category, confidence and evidence change;
//! the confidence stays in [0, 1].

use super::super::features::{self, Context};
use super::super::rootcause::{self, ServiceSignals, Verdict};
use super::model::{CategoryModel, Policy};
use crate::model::Category;
use std::collections::BTreeMap;

/// Below this probability for its own answer the model defers to a
/// category the signature rules found.
pub const UNSURE_MODEL: f64 = 0.5;

impl CategoryModel {
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
        // exception, with nothing to roll back), or when the rules' category
        // is structural (a silent root's config change or deploy).
        let unsure = d.category != v.rule.category
            && v.rule.category != Category::Unknown
            && d.model_probability < UNSURE_MODEL;
        let no_deploy = d.category == Category::BadDeploy && !v.root_changed;
        let deferred = !d.by_rules && (unsure || no_deploy || v.rule.structural);
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
