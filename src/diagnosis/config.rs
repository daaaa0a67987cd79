//! Configuration of the diagnosis stage (`[diagnosis]`).

use super::classify::CategoryModel;
use crate::model::DurationMs;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// `[diagnosis]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosisConfig {
    /// A detection joins an open incident when it starts within this time of
    /// the incident's last activity and is connected to it.
    pub correlation_gap: DurationMs,
    /// An incident resolves when no detection touched it for this long.
    pub resolve_after: DurationMs,
    /// A detection within this time after resolution reopens the incident.
    pub reopen_within: DurationMs,
    /// A `change` of the root-cause service this long before the onset makes
    /// the incident a deploy/config regression.
    pub change_window: DurationMs,
    /// Detections weaker than this never open an incident (they can join one).
    pub min_open_score: f64,
    /// Below this confidence the category is reported as `unknown`.
    pub min_category_weight: f64,
    /// Signature rule file; absent = the built-in `topology/rules/signatures.yaml`.
    pub signatures: Option<PathBuf>,
    /// Service catalog (SPEC §5); absent = the built-in `topology/services.yaml`.
    pub services: Option<PathBuf>,
    /// Category model file written by `reflex train`; absent = the built-in
    /// `topology/models/category.json`.
    pub model: Option<PathBuf>,
    /// Use the learned category classifier (false: signature rules only).
    pub classifier: bool,
    /// The loaded model (filled in by configuration loading; `None` = built-in).
    #[serde(skip)]
    pub category_model: Option<Arc<CategoryModel>>,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        DiagnosisConfig {
            correlation_gap: DurationMs(5 * 60_000),
            resolve_after: DurationMs(10 * 60_000),
            reopen_within: DurationMs(15 * 60_000),
            change_window: DurationMs(15 * 60_000),
            min_open_score: 0.5,
            min_category_weight: 0.25,
            signatures: None,
            services: None,
            model: None,
            classifier: true,
            category_model: None,
        }
    }
}

impl DiagnosisConfig {
    /// Semantic checks; every problem as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        for (k, v) in [
            ("correlation_gap", self.correlation_gap),
            ("resolve_after", self.resolve_after),
        ] {
            if v.0 <= 0 {
                e.push((format!("diagnosis.{k}"), "must be positive".into()));
            }
        }
        if !(0.0..=1.0).contains(&self.min_open_score) {
            e.push((
                "diagnosis.min_open_score".into(),
                "must be in [0, 1]".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_category_weight) {
            e.push((
                "diagnosis.min_category_weight".into(),
                "must be in [0, 1]".into(),
            ));
        }
        e
    }
}
