//! The category model file: its format (JSON, version [`FORMAT`]), the
//! policy and calibration types it stores, loading with every field checked
//! (a bad file is an error, never a panic) and the compiled-in model.
//!
//! Guarantees: a [`CategoryModel`] that exists has passed [`CategoryModel::check`]
//! (dense size equal to [`features::DENSE`], finite weights, indices in
//! range, calibration tables of [`BINS`] values in [0, 1]).

use super::super::features;
use crate::model::Category;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The model file format version this build reads and writes.
pub const FORMAT: u32 = 1;
/// Hashed feature dimensions of models `reflex train` fits.
pub const DEFAULT_HASH_DIMS: usize = 1024;
/// The built-in model, trained on `reflex demo` seeds 1001–1040 (never on the
/// evaluation seeds 1–20).
pub const BUILTIN_MODEL: &str = include_str!("../../../topology/models/category.json");
/// No calibrated confidence exceeds this: a few hundred held-out incidents
/// from one simulated fleet cannot vouch for more.
pub const MAX_CONFIDENCE: f64 = 0.99;
/// Probability bins of the calibration table.
pub const BINS: usize = 10;

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

/// The compiled-in model (parsed once; `None` if it does not load, which the
/// test suite rules out).
pub fn builtin() -> Option<&'static CategoryModel> {
    static MODEL: OnceLock<Option<CategoryModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| CategoryModel::from_json(BUILTIN_MODEL).ok())
        .as_ref()
}

/// The calibration bin of probability `p`.
pub(super) fn bin(p: f64) -> usize {
    ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)
}

impl CategoryModel {
    /// Parses and checks a model file.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let m: CategoryModel = serde_json::from_str(text)?;
        m.check()?;
        Ok(m)
    }

    pub(super) fn check(&self) -> Result<(), ModelError> {
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
}
