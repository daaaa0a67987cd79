//! The risk of a recovery action, in [0, 1]. Pure and deterministic.
//!
//! Formula: each factor is a *safety* multiplier in (0, 1]; risk is one
//! minus the product of the safeties:
//!
//! ```text
//! risk = 1 − (1 − base_risk)
//!          × (0.5 + 0.5 · confidence)        // a shaky diagnosis doubles doubt
//!          × criticality_safety               // low 1.0, medium 0.95, high 0.85, critical 0.7
//!          × (0.95 if production else 1.0)
//!          × 0.8^recent_attempts              // repeated tries on one target
//! ```
//!
//! So risk is monotone: non-decreasing in base risk, criticality and recent
//! attempts, non-increasing in confidence, always within [0, 1]
//! (property-tested).

use crate::diagnosis::catalog::Criticality;

/// Everything the risk of one action depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskInputs {
    /// The action's inherent risk from the catalog.
    pub base_risk: f64,
    /// Diagnosis confidence in [0, 1].
    pub confidence: f64,
    pub criticality: Criticality,
    pub production: bool,
    /// Actions already taken on the same target recently.
    pub recent_attempts: u32,
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

/// The risk score in [0, 1].
pub fn risk(i: &RiskInputs) -> f64 {
    let clamp01 = |x: f64| if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) };
    let safety = (1.0 - clamp01(i.base_risk))
        * (0.5 + 0.5 * clamp01(i.confidence))
        * criticality_safety(i.criticality)
        * if i.production { 0.95 } else { 1.0 }
        * 0.8f64.powi(i.recent_attempts.min(64) as i32);
    let r = clamp01(1.0 - safety);
    // Rounded so the rendered record is stable across platforms.
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

    proptest! {
        #[test]
        fn bounded_and_deterministic(b in -1.0f64..2.0, c in -1.0f64..2.0, k in 0u8..4, p: bool, a in 0u32..100) {
            let i = RiskInputs { base_risk: b, confidence: c, criticality: crit(k), production: p, recent_attempts: a };
            let r = risk(&i);
            prop_assert!((0.0..=1.0).contains(&r));
            prop_assert_eq!(r, risk(&i));
        }

        #[test]
        fn monotone_in_each_factor(b in 0.0f64..1.0, db in 0.0f64..0.5, c in 0.0f64..1.0, dc in 0.0f64..0.5,
                                   k in 0u8..3, a in 0u32..10) {
            let base = RiskInputs { base_risk: b, confidence: c, criticality: crit(k), production: false, recent_attempts: a };
            let r = risk(&base);
            let more_base = risk(&RiskInputs { base_risk: (b + db).min(1.0), ..base });
            let more_conf = risk(&RiskInputs { confidence: (c + dc).min(1.0), ..base });
            let more_crit = risk(&RiskInputs { criticality: crit(k + 1), ..base });
            let prod = risk(&RiskInputs { production: true, ..base });
            let retried = risk(&RiskInputs { recent_attempts: a + 1, ..base });
            prop_assert!(more_base >= r);
            prop_assert!(more_conf <= r);
            prop_assert!(more_crit >= r);
            prop_assert!(prod >= r);
            prop_assert!(retried >= r);
        }
    }

    #[test]
    fn examples() {
        let i = RiskInputs {
            base_risk: 0.2,
            confidence: 1.0,
            criticality: Criticality::Low,
            production: false,
            recent_attempts: 0,
        };
        assert!((risk(&i) - 0.2).abs() < 1e-9);
        assert!(
            risk(&RiskInputs {
                confidence: 0.0,
                ..i
            }) > 0.5
        );
    }
}
