//! Readiness of the process (`/ready`): a set of conditions the runtimes
//! set and clear as they start, get partitions and lose them.
//!
//! Guarantee: ready exactly when every required condition is set; setting
//! and clearing are lock-free and may come from any thread.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// One condition of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyCondition {
    /// Configuration loaded and valid.
    Config = 1,
    /// The pipeline's stages run and the source delivers input (embedded:
    /// first batch read or end of input reached).
    Pipeline = 2,
    /// Kafka: the consumer has partitions assigned.
    Partitions = 4,
    /// State for the assigned partitions is loaded.
    State = 8,
}

impl ReadyCondition {
    const ALL: [ReadyCondition; 4] = [
        ReadyCondition::Config,
        ReadyCondition::Pipeline,
        ReadyCondition::Partitions,
        ReadyCondition::State,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ReadyCondition::Config => "config",
            ReadyCondition::Pipeline => "pipeline",
            ReadyCondition::Partitions => "partitions",
            ReadyCondition::State => "state",
        }
    }
}

/// A shared readiness flag: ready exactly when every *required* condition is
/// set. Conditions can be cleared again (Kafka: partitions revoked during a
/// rebalance), which makes `/ready` fail until they are set again. Cloning
/// shares the flag.
#[derive(Debug, Clone)]
pub struct Readiness {
    required: u8,
    set: Arc<AtomicU8>,
}

impl Readiness {
    /// Requires the given conditions.
    pub fn new(required: &[ReadyCondition]) -> Self {
        Readiness {
            required: required.iter().fold(0, |m, c| m | *c as u8),
            set: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Embedded mode: config loaded and pipeline started.
    pub fn embedded() -> Self {
        Self::new(&[ReadyCondition::Config, ReadyCondition::Pipeline])
    }

    /// Kafka mode: config, pipeline, partitions assigned, state loaded.
    pub fn kafka() -> Self {
        Self::new(&ReadyCondition::ALL)
    }

    /// Marks a condition met.
    pub fn set(&self, c: ReadyCondition) {
        self.set.fetch_or(c as u8, Ordering::SeqCst);
    }

    /// Marks a condition unmet again.
    pub fn clear(&self, c: ReadyCondition) {
        self.set.fetch_and(!(c as u8), Ordering::SeqCst);
    }

    /// Every required condition is met.
    pub fn is_ready(&self) -> bool {
        self.set.load(Ordering::SeqCst) & self.required == self.required
    }

    /// The required conditions not met yet.
    pub fn missing(&self) -> Vec<&'static str> {
        let s = self.set.load(Ordering::SeqCst);
        ReadyCondition::ALL
            .iter()
            .filter(|c| self.required & **c as u8 != 0 && s & **c as u8 == 0)
            .map(|c| c.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_required_condition_and_can_be_revoked() {
        let r = Readiness::kafka();
        r.set(ReadyCondition::Config);
        r.set(ReadyCondition::Pipeline);
        assert!(!r.is_ready());
        assert_eq!(r.missing(), vec!["partitions", "state"]);
        r.set(ReadyCondition::Partitions);
        r.set(ReadyCondition::State);
        assert!(r.is_ready());
        r.clear(ReadyCondition::Partitions);
        assert!(!r.is_ready());
        let e = Readiness::embedded();
        e.set(ReadyCondition::Config);
        e.set(ReadyCondition::Pipeline);
        assert!(e.is_ready());
    }
}
