//! Configuration of the recovery stage (`[recovery]`, with its `guards`,
//! `overrides` and `maintenance` sub-tables) and the action catalog file
//! (`topology/actions.yaml`).
//!
//! Guarantees: unknown keys are rejected (`deny_unknown_fields`), and
//! `validate` reports every semantic problem at once as (key, message), so
//! the loader can name file and key for each.

use crate::model::{ActionType, Category, DurationMs, EventTime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[recovery]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Master switch for automatic healing; off = detection and escalation
    /// only (also `REFLEX_HEALING=off`). The kill switch.
    pub healing: bool,
    /// Emit actions marked as a dry run (executors log, never act); each is
    /// also escalated, since nothing will change.
    pub dry_run: bool,
    /// Risk at or below this (with enough confidence) ⇒ `auto`.
    pub auto_max_risk: f64,
    /// Risk at or below this ⇒ `approval_required` plus an escalation; above ⇒ escalate only.
    pub approval_max_risk: f64,
    /// Diagnosis confidence needed for an `auto` decision.
    pub min_confidence: f64,
    /// How long an action stays valid for executors (from `created_at`).
    pub action_ttl: DurationMs,
    /// No executor result within this (event time, from `created_at`) ⇒
    /// escalate (unless the incident resolved meanwhile). Longer than
    /// `action_ttl`: an executor may start the action until it expires.
    pub result_timeout: DurationMs,
    /// Action catalog; absent = the built-in `topology/actions.yaml`.
    pub actions: Option<PathBuf>,
    /// Where the learned success rates of (category, action) are persisted
    /// and reloaded from (relative to the config file). Absent (the
    /// default) = learn in memory only, so embedded runs stay deterministic.
    pub learning_file: Option<PathBuf>,
    /// `production`, `staging` or `development`; absent = judged per
    /// action from the target namespace (`prod` in it ⇒ production).
    pub environment: Option<Environment>,
    /// Safety guards (all in event time).
    pub guards: GuardsConfig,
    /// Policy thresholds per category and per service (service wins).
    pub overrides: Overrides,
    /// Maintenance windows: no automatic action on the services listed
    /// (all services when the list is empty) inside them.
    pub maintenance: Vec<MaintenanceWindow>,
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
            result_timeout: DurationMs(20 * 60_000),
            actions: None,
            learning_file: None,
            environment: None,
            guards: GuardsConfig::default(),
            overrides: Overrides::default(),
            maintenance: Vec::new(),
        }
    }
}

/// Deployment environment; production is treated more strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

/// `[recovery.guards]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardsConfig {
    /// No new incident's action on a target within this of the last action on it.
    pub cooldown: DurationMs,
    /// The same target failing again within this of a verified fix is flapping: escalate.
    pub flap_window: DurationMs,
    /// Actions in flight (emitted, not yet verified) at most.
    pub max_in_flight: usize,
    /// Share of one service's instances that actions in flight may touch.
    pub max_instance_share: f64,
    /// Services with actions in flight at most.
    pub max_services_in_flight: usize,
    /// Global rate budget: at most `rate_limit` actions per `rate_window`.
    pub rate_limit: usize,
    pub rate_window: DurationMs,
    /// Circuit breaker: trips when `breaker_max_actions` actions are asked
    /// for, or `breaker_max_failures` verifications fail, within
    /// `breaker_window`; then observe-only (escalations) until reset.
    pub breaker_max_actions: usize,
    pub breaker_max_failures: usize,
    pub breaker_window: DurationMs,
    /// Event time after tripping at which the breaker closes again; 0 =
    /// only `RecoveryStage::reset_breaker` (or a restart) closes it.
    pub breaker_reset_after: DurationMs,
}

impl Default for GuardsConfig {
    fn default() -> Self {
        GuardsConfig {
            cooldown: DurationMs(10 * 60_000),
            flap_window: DurationMs(30 * 60_000),
            max_in_flight: 5,
            max_instance_share: 1.0,
            max_services_in_flight: 3,
            rate_limit: 10,
            rate_window: DurationMs(10 * 60_000),
            breaker_max_actions: 20,
            breaker_max_failures: 4,
            breaker_window: DurationMs(30 * 60_000),
            breaker_reset_after: DurationMs(60 * 60_000),
        }
    }
}

/// Policy thresholds that replace the global ones.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverride {
    pub auto_max_risk: Option<f64>,
    pub approval_max_risk: Option<f64>,
    pub min_confidence: Option<f64>,
}

/// `[recovery.overrides]`: `categories.<category>` and `services.<name>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overrides {
    pub categories: BTreeMap<Category, PolicyOverride>,
    pub services: BTreeMap<String, PolicyOverride>,
}

/// One maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub start: EventTime,
    pub end: EventTime,
    /// Services covered; empty = every service.
    #[serde(default)]
    pub services: Vec<String>,
}

impl MaintenanceWindow {
    /// Whether `service` is under maintenance at `t`.
    pub fn covers(&self, service: &str, t: EventTime) -> bool {
        self.start <= t
            && t < self.end
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }
}

/// The effective policy thresholds for one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub auto_max_risk: f64,
    pub approval_max_risk: f64,
    pub min_confidence: f64,
}

impl RecoveryConfig {
    /// Thresholds for `category` on `service`: global, then the category
    /// override, then the service override (each key separately).
    pub fn policy(&self, category: Category, service: &str) -> Policy {
        let mut p = Policy {
            auto_max_risk: self.auto_max_risk,
            approval_max_risk: self.approval_max_risk,
            min_confidence: self.min_confidence,
        };
        for o in [
            self.overrides.categories.get(&category),
            self.overrides.services.get(service),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(v) = o.auto_max_risk {
                p.auto_max_risk = v;
            }
            if let Some(v) = o.approval_max_risk {
                p.approval_max_risk = v;
            }
            if let Some(v) = o.min_confidence {
                p.min_confidence = v;
            }
        }
        p
    }

    /// Whether `service` is under maintenance at `t`.
    pub fn in_maintenance(&self, service: &str, t: EventTime) -> bool {
        self.maintenance.iter().any(|w| w.covers(service, t))
    }

    /// Semantic checks; every problem as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        for (k, v) in [
            ("auto_max_risk", self.auto_max_risk),
            ("approval_max_risk", self.approval_max_risk),
            ("min_confidence", self.min_confidence),
            ("guards.max_instance_share", self.guards.max_instance_share),
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
        for (k, v) in [
            ("action_ttl", self.action_ttl),
            ("result_timeout", self.result_timeout),
            ("guards.rate_window", self.guards.rate_window),
            ("guards.breaker_window", self.guards.breaker_window),
        ] {
            if v.0 <= 0 {
                e.push((format!("recovery.{k}"), "must be positive".into()));
            }
        }
        for (k, v) in [
            ("guards.cooldown", self.guards.cooldown),
            ("guards.flap_window", self.guards.flap_window),
            (
                "guards.breaker_reset_after",
                self.guards.breaker_reset_after,
            ),
        ] {
            if v.0 < 0 {
                e.push((format!("recovery.{k}"), "must not be negative".into()));
            }
        }
        for (k, v) in [
            ("guards.max_in_flight", self.guards.max_in_flight),
            (
                "guards.max_services_in_flight",
                self.guards.max_services_in_flight,
            ),
            ("guards.rate_limit", self.guards.rate_limit),
            (
                "guards.breaker_max_actions",
                self.guards.breaker_max_actions,
            ),
            (
                "guards.breaker_max_failures",
                self.guards.breaker_max_failures,
            ),
        ] {
            if v == 0 {
                e.push((format!("recovery.{k}"), "must be at least 1".into()));
            }
        }
        let mut check = |key: String, o: &PolicyOverride| {
            for (k, v) in [
                ("auto_max_risk", o.auto_max_risk),
                ("approval_max_risk", o.approval_max_risk),
                ("min_confidence", o.min_confidence),
            ] {
                if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                    e.push((format!("{key}.{k}"), "must be in [0, 1]".into()));
                }
            }
        };
        for (c, o) in &self.overrides.categories {
            check(format!("recovery.overrides.categories.{c}"), o);
        }
        for (s, o) in &self.overrides.services {
            check(format!("recovery.overrides.services.{s}"), o);
        }
        for (i, w) in self.maintenance.iter().enumerate() {
            if w.end <= w.start {
                e.push((
                    format!("recovery.maintenance[{i}].end"),
                    "must be after start".into(),
                ));
            }
        }
        e
    }
}

/// What must hold for a ladder step to be tried; a step whose
/// preconditions fail is skipped (the ladder moves on).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preconditions {
    /// Diagnosis confidence at least this.
    pub min_confidence: Option<f64>,
    /// `scale`: the new replica count may not exceed this.
    pub max_replicas: Option<i64>,
    /// Only when the diagnosis ties the fault to a change (`bad_deploy`,
    /// `config_error` evidence naming a change/version).
    pub recent_change: bool,
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
    /// What the step is expected to achieve (told to humans).
    #[serde(default)]
    pub expected_effect: Option<String>,
    #[serde(default)]
    pub preconditions: Preconditions,
    /// After the executor reports success, signals are ignored for this
    /// long (the action's own rollout blip) ...
    #[serde(default = "default_grace")]
    pub grace: DurationMs,
    /// ... and then watched until `verify_for` after success: quiet ⇒
    /// recovered, still failing ⇒ next step.
    #[serde(default = "default_verify_for")]
    pub verify_for: DurationMs,
}

fn default_grace() -> DurationMs {
    DurationMs(60_000)
}

fn default_verify_for() -> DurationMs {
    DurationMs(4 * 60_000)
}

/// The remedy of one category.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategoryRemedy {
    /// The ladder, tried in order, each step verified before the next;
    /// empty ⇒ always escalate. When the ladder is exhausted, escalate.
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
                if s.grace.0 < 0 {
                    e.push((k("grace"), "must not be negative".into()));
                }
                if s.verify_for.0 <= s.grace.0 {
                    e.push((k("verify_for"), "must be longer than grace".into()));
                }
                if s.preconditions
                    .min_confidence
                    .is_some_and(|v| !(0.0..=1.0).contains(&v))
                {
                    e.push((
                        k("preconditions.min_confidence"),
                        "must be in [0, 1]".into(),
                    ));
                }
                if s.preconditions.max_replicas.is_some_and(|v| v < 1) {
                    e.push((k("preconditions.max_replicas"), "must be at least 1".into()));
                }
            }
        }
        e
    }
}
