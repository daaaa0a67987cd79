//! Configuration of the recovery stage (`[recovery]`) and the action catalog
//! file (`topology/actions.yaml`).

use crate::model::{ActionType, Category, DurationMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[recovery]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Master switch for automatic healing; off = detection and escalation
    /// only (also `REFLEX_HEALING=off`).
    pub healing: bool,
    /// Emit actions marked as a dry run (executors log, never act).
    pub dry_run: bool,
    /// Risk at or below this (with enough confidence) ⇒ `auto`.
    pub auto_max_risk: f64,
    /// Risk at or below this ⇒ `approval_required` plus an escalation; above ⇒ escalate only.
    pub approval_max_risk: f64,
    /// Diagnosis confidence needed for an `auto` decision.
    pub min_confidence: f64,
    /// How long an action stays valid for executors (from `created_at`).
    pub action_ttl: DurationMs,
    /// Action catalog; absent = the built-in `topology/actions.yaml`.
    pub actions: Option<PathBuf>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            healing: true,
            dry_run: false,
            auto_max_risk: 0.5,
            approval_max_risk: 0.8,
            min_confidence: 0.6,
            action_ttl: DurationMs(15 * 60_000),
            actions: None,
        }
    }
}

impl RecoveryConfig {
    /// Semantic checks; every problem as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        for (k, v) in [
            ("auto_max_risk", self.auto_max_risk),
            ("approval_max_risk", self.approval_max_risk),
            ("min_confidence", self.min_confidence),
        ] {
            if !(0.0..=1.0).contains(&v) {
                e.push((format!("recovery.{k}"), "must be in [0, 1]".into()));
            }
        }
        if self.auto_max_risk > self.approval_max_risk {
            e.push((
                "recovery.auto_max_risk".into(),
                "must not exceed recovery.approval_max_risk".into(),
            ));
        }
        if self.action_ttl.0 <= 0 {
            e.push(("recovery.action_ttl".into(), "must be positive".into()));
        }
        e
    }
}

/// One step of a category's remedy ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionStep {
    /// The action type.
    pub action: ActionType,
    /// Inherent risk of the action in [0, 1] before context is considered.
    pub base_risk: f64,
    /// `scale`: replicas to add to the current count (or to set from zero).
    #[serde(default)]
    pub scale_by: Option<i64>,
    /// `run_runbook`: the runbook name.
    #[serde(default)]
    pub runbook: Option<String>,
}

/// The remedy of one category.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategoryRemedy {
    /// The ladder, tried in order; empty ⇒ always escalate.
    pub steps: Vec<ActionStep>,
    /// What a human is told to consider (escalations' `suggested_actions`).
    pub suggestions: Vec<String>,
}

/// The action catalog file: a remedy per category.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionCatalog {
    pub categories: BTreeMap<Category, CategoryRemedy>,
}

impl ActionCatalog {
    /// Semantic checks; every problem as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        for (c, r) in &self.categories {
            for (i, s) in r.steps.iter().enumerate() {
                let k = |f: &str| format!("categories.{c}.steps[{i}].{f}");
                if !(0.0..=1.0).contains(&s.base_risk) {
                    e.push((k("base_risk"), "must be in [0, 1]".into()));
                }
                if s.action == ActionType::RunRunbook && s.runbook.is_none() {
                    e.push((k("runbook"), "run_runbook needs a runbook name".into()));
                }
            }
        }
        e
    }
}
