//! Inference: class probabilities of a feature vector (a sparse dot product
//! and a softmax; no linfa at run time), the calibrated confidence of an
//! answer, and the decision of a [`Policy`] between the model and the rules.
//!
//! Guarantees: pure and deterministic; probabilities sum to 1 (uniform when
//! the scores are not finite); confidences lie in [0, 1].

use super::super::rootcause::RuleCategory;
use super::model::{bin, CategoryModel, Policy};
use crate::model::Category;

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

impl CategoryModel {
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

    pub(super) fn prob_of(&self, probs: &[f64], c: Category) -> f64 {
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
}
