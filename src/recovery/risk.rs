//! The risk of a recovery action, in [0, 1]. Pure and deterministic.
//!
//! Formula: each factor is a *safety* multiplier in (0, 1]; risk is one
//! minus the product of the safeties:
//!
//! ```text
//! risk = 1 − (1 − base_risk)                       // the catalog's inherent risk
//!          × (0.5 + 0.5 · confidence)              // a shaky diagnosis doubles doubt
//!          × criticality_safety                    // low 1.0, medium 0.95, high 0.85, critical 0.7
//!          × (1 − 0.1 · blast_radius)              // share of the service's instances disrupted at once
//!          × min(1, (0.7 + 0.3 · success_rate) / 0.94)  // learned P(success) of (category, action)
//!          × 0.8^recent_attempts                   // repeated tries on one target
//!          × (0.75 if in a change-freeze/maintenance window else 1.0)
//!          × environment_safety                    // development, staging, unknown 1.0; production 0.95
//! ```
//!
//! `success_rate` is the posterior mean of a Beta distribution over the
//! action's success for that category, learned from verification outcomes
//! (see [`super::learn`]); with no data it is the prior mean 0.8, where the
//! factor is exactly 1: failures raise the risk, successes bring it back
//! (never below the catalog's judgement).
//!
//! So risk is monotone: non-decreasing in base risk, criticality, blast
//! radius, recent attempts, windows and environment strictness;
//! non-increasing in confidence and learned success rate; always within
//! [0, 1] (property-tested). Rounded to 3 decimals so records are stable.

use crate::diagnosis::catalog::Criticality;

/// Where the target runs, strictest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Env {
    Development,
    Staging,
    Unknown,
    Production,
}

/// Everything the risk of one action depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskInputs {
    /// The action's inherent risk from the catalog.
    pub base_risk: f64,
    /// Diagnosis confidence in [0, 1].
    pub confidence: f64,
    pub criticality: Criticality,
    /// Share of the service's instances the action touches, in [0, 1].
    pub blast_radius: f64,
    /// Learned success rate of (category, action), in [0, 1].
    pub success_rate: f64,
    pub env: Env,
    /// Actions already taken on the same target recently.
    pub recent_attempts: u32,
    /// A change freeze or maintenance window covers the target now.
    pub in_window: bool,
}

/// How safe acting on a service of this criticality is.
pub fn criticality_safety(c: Criticality) -> f64 {
    match c {
        Criticality::Low => 1.0,
        Criticality::Medium => 0.95,
        Criticality::High => 0.85,
        Criticality::Critical => 0.7,
    }
}

/// How safe acting in this environment is.
pub fn env_safety(e: Env) -> f64 {
    match e {
        Env::Development | Env::Staging | Env::Unknown => 1.0,
        Env::Production => 0.95,
    }
}

/// The risk score in [0, 1].
pub fn risk(i: &RiskInputs) -> f64 {
    let clamp01 = |x: f64, nan: f64| if x.is_nan() { nan } else { x.clamp(0.0, 1.0) };
    let safety = (1.0 - clamp01(i.base_risk, 1.0))
        * (0.5 + 0.5 * clamp01(i.confidence, 0.0))
        * criticality_safety(i.criticality)
        * (1.0 - 0.1 * clamp01(i.blast_radius, 1.0))
        * ((0.7 + 0.3 * clamp01(i.success_rate, 0.0)) / 0.94).min(1.0)
        * 0.8f64.powi(i.recent_attempts.min(64) as i32)
        * if i.in_window { 0.75 } else { 1.0 }
        * env_safety(i.env);
    let r = clamp01(1.0 - safety, 1.0);
    (r * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn crit(i: u8) -> Criticality {
        [
            Criticality::Low,
            Criticality::Medium,
            Criticality::High,
            Criticality::Critical,
        ][(i % 4) as usize]
    }

    fn env(i: u8) -> Env {
        [
            Env::Development,
            Env::Staging,
            Env::Unknown,
            Env::Production,
        ][(i % 4) as usize]
    }

    prop_compose! {
        fn inputs()(b in 0.0f64..1.0, c in 0.0f64..1.0, k in 0u8..4, br in 0.0f64..1.0,
                    s in 0.0f64..1.0, e in 0u8..4, a in 0u32..10, w: bool) -> RiskInputs {
            RiskInputs { base_risk: b, confidence: c, criticality: crit(k), blast_radius: br,
                         success_rate: s, env: env(e), recent_attempts: a, in_window: w }
        }
    }

    proptest! {
        #[test]
        fn bounded_and_deterministic(b in -1.0f64..2.0, c in -1.0f64..2.0, k in 0u8..4, br in -1.0f64..2.0,
                                     s in -1.0f64..2.0, e in 0u8..4, a in 0u32..100, w: bool) {
            let i = RiskInputs { base_risk: b, confidence: c, criticality: crit(k), blast_radius: br,
                                 success_rate: s, env: env(e), recent_attempts: a, in_window: w };
            let r = risk(&i);
            prop_assert!((0.0..=1.0).contains(&r));
            prop_assert_eq!(r, risk(&i));
            prop_assert_eq!(r, risk(&i.clone()));
        }

        #[test]
        fn monotone_in_each_factor(i in inputs(), d in 0.0f64..0.5) {
            let r = risk(&i);
            let up = |x: f64| (x + d).min(1.0);
            let stricter_crit = match i.criticality {
                Criticality::Low => Criticality::Medium,
                Criticality::Medium => Criticality::High,
                _ => Criticality::Critical,
            };
            let stricter_env = match i.env {
                Env::Development => Env::Staging,
                Env::Staging => Env::Unknown,
                _ => Env::Production,
            };
            let more_base = risk(&RiskInputs { base_risk: up(i.base_risk), ..i });
            let more_conf = risk(&RiskInputs { confidence: up(i.confidence), ..i });
            let more_blast = risk(&RiskInputs { blast_radius: up(i.blast_radius), ..i });
            let more_success = risk(&RiskInputs { success_rate: up(i.success_rate), ..i });
            let retried = risk(&RiskInputs { recent_attempts: i.recent_attempts + 1, ..i });
            let windowed = risk(&RiskInputs { in_window: true, ..i });
            let more_crit = risk(&RiskInputs { criticality: stricter_crit, ..i });
            let stricter = risk(&RiskInputs { env: stricter_env, ..i });
            prop_assert!(more_base >= r);
            prop_assert!(more_conf <= r);
            prop_assert!(more_blast >= r);
            prop_assert!(more_success <= r);
            prop_assert!(retried >= r);
            prop_assert!(windowed >= r);
            prop_assert!(more_crit >= r);
            prop_assert!(stricter >= r);
        }
    }

    #[test]
    fn examples() {
        let i = RiskInputs {
            base_risk: 0.2,
            confidence: 1.0,
            criticality: Criticality::Low,
            blast_radius: 0.0,
            success_rate: 1.0,
            env: Env::Development,
            recent_attempts: 0,
            in_window: false,
        };
        assert!((risk(&i) - 0.2).abs() < 1e-9);
        assert!(
            risk(&RiskInputs {
                confidence: 0.0,
                ..i
            }) > 0.5
        );
        assert!(
            risk(&RiskInputs {
                env: Env::Production,
                ..i
            }) > risk(&i)
        );
    }
}
