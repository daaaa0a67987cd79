//! The fault library and the fault schedule.
//!
//! Every category of SPEC §3 has at least one fault kind, each with several
//! phrasings per language. A fault has a root (a service, an external host
//! or a node), an onset, a symptom its callers see (refused connections,
//! timeouts, 5xx, TLS failures...), which actions heal it, which make it
//! worse, and whether it ends on its own. Faults cascade: a failure at the
//! root surfaces at its callers tens to hundreds of milliseconds later and
//! at their callers after that, sharing the trace id.
//!
//! The schedule spaces faults so that each incident can resolve before the
//! next fault starts, leaving fault-free stretches in between (where any
//! incident is a false one).
//!
//! The parts: this file (the kinds, their categories, remedies, symptoms
//! and a planned fault's shape), `root` (the lines a failing root and
//! its platform write), `callers` (the lines callers of a failing
//! service, external host or node write) and `schedule` (the demo
//! profile's fault plan). The phrasing files are tables with a lookup
//! each.

mod callers;
mod root;
mod schedule;

pub use callers::{caller_lines, external_lines, network_lines, own_network_error};
pub use root::{platform_lines, root_lines};
pub use schedule::{plan, MIN_SLOT_MIN, TAIL_MIN, WARMUP_MIN};

use crate::model::{ActionType, Category, EventTime};
use serde::{Deserialize, Serialize};

/// The kinds of fault the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A new version that throws (rollback heals).
    BadDeploy,
    /// A configuration change that breaks start-up (rollback heals).
    BadConfig,
    /// A memory leak ending in OOM kills (restart heals).
    MemoryLeak,
    /// Connection pool / file descriptor / disk exhaustion (restart heals).
    PoolExhausted,
    /// A traffic spike beyond capacity (scale heals, restart worsens; ends when the spike does).
    Overload,
    /// Scaled to zero by a bad autoscaler decision (scale heals).
    ScaledToZero,
    /// Pods stuck failing their probes (restart or scale heals).
    StuckPods,
    /// The service's serving certificate expired (humans rotate it).
    CertExpired,
    /// An external dependency is down (ends on its own or humans act).
    ExternalDown,
    /// DNS/network trouble on one node (drain heals; often ends on its own).
    NodeNetwork,
    /// Poison messages failing validation (ends when the bad batch is drained).
    PoisonMessages,
    /// An opaque failure nothing recognises (humans act).
    Opaque,
}

/// Where a fault's root cause lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    Service,
    External,
    Node,
}

/// How callers experience a failing dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symptom {
    Refused,
    Timeout,
    ServerError,
    Tls,
    NoHealthy,
}

impl FaultKind {
    /// The category the fault belongs to (the ground truth).
    pub fn category(self) -> Category {
        match self {
            FaultKind::BadDeploy => Category::BadDeploy,
            FaultKind::BadConfig => Category::ConfigError,
            FaultKind::MemoryLeak => Category::MemoryExhaustion,
            FaultKind::PoolExhausted => Category::ResourceExhaustion,
            FaultKind::Overload => Category::Overload,
            FaultKind::ScaledToZero | FaultKind::StuckPods => Category::Unavailable,
            FaultKind::CertExpired => Category::CertificateExpired,
            FaultKind::ExternalDown => Category::DependencyFailure,
            FaultKind::NodeNetwork => Category::Network,
            FaultKind::PoisonMessages => Category::DataError,
            FaultKind::Opaque => Category::Unknown,
        }
    }

    /// The kinds of a category (the first is the most common).
    pub fn of(c: Category) -> &'static [FaultKind] {
        match c {
            Category::BadDeploy => &[FaultKind::BadDeploy],
            Category::ConfigError => &[FaultKind::BadConfig],
            Category::MemoryExhaustion => &[FaultKind::MemoryLeak],
            Category::ResourceExhaustion => &[FaultKind::PoolExhausted],
            Category::Overload => &[FaultKind::Overload],
            Category::Unavailable => &[FaultKind::ScaledToZero, FaultKind::StuckPods],
            Category::CertificateExpired => &[FaultKind::CertExpired],
            Category::DependencyFailure => &[FaultKind::ExternalDown],
            Category::Network => &[FaultKind::NodeNetwork],
            Category::DataError => &[FaultKind::PoisonMessages],
            Category::Unknown => &[FaultKind::Opaque],
        }
    }

    /// Actions that heal the fault when applied to its root.
    pub fn heals(self) -> &'static [ActionType] {
        use ActionType::*;
        match self {
            FaultKind::BadDeploy | FaultKind::BadConfig => &[Rollback],
            FaultKind::MemoryLeak => &[Restart, Scale, DeletePod],
            FaultKind::PoolExhausted => &[Restart, Scale],
            FaultKind::Overload | FaultKind::ScaledToZero => &[Scale],
            FaultKind::StuckPods => &[Restart, Scale],
            FaultKind::NodeNetwork => &[DrainNode],
            FaultKind::CertExpired
            | FaultKind::ExternalDown
            | FaultKind::PoisonMessages
            | FaultKind::Opaque => &[],
        }
    }

    /// Actions on the root that make the fault worse while they run.
    pub fn worsens(self) -> &'static [ActionType] {
        match self {
            // A rolling restart removes capacity from an overloaded service.
            FaultKind::Overload => &[ActionType::Restart],
            // Restarting pods that fail to start only adds crash loops.
            FaultKind::BadConfig | FaultKind::BadDeploy => &[ActionType::Restart],
            _ => &[],
        }
    }

    /// Whether the fault ends by itself (after a while) when nobody acts.
    pub fn self_ending(self) -> bool {
        matches!(
            self,
            FaultKind::Overload
                | FaultKind::ExternalDown
                | FaultKind::NodeNetwork
                | FaultKind::PoisonMessages
        )
    }

    /// The root emits nothing (it has no running pods).
    pub fn silent_root(self) -> bool {
        matches!(self, FaultKind::ScaledToZero)
    }

    /// What the root's callers see.
    pub fn symptom(self) -> Symptom {
        match self {
            FaultKind::BadDeploy | FaultKind::Opaque => Symptom::ServerError,
            FaultKind::BadConfig | FaultKind::MemoryLeak | FaultKind::StuckPods => Symptom::Refused,
            FaultKind::PoolExhausted | FaultKind::Overload => Symptom::Timeout,
            FaultKind::ScaledToZero => Symptom::NoHealthy,
            FaultKind::CertExpired => Symptom::Tls,
            FaultKind::ExternalDown | FaultKind::NodeNetwork | FaultKind::PoisonMessages => {
                Symptom::ServerError
            }
        }
    }
}

/// Actions that are an acceptable remedy for a category (SPEC §3). Anything
/// else done automatically is a wrong action; an empty list means "escalate".
pub fn acceptable(c: Category) -> &'static [ActionType] {
    use ActionType::*;
    match c {
        Category::BadDeploy | Category::ConfigError => &[Rollback],
        Category::MemoryExhaustion | Category::ResourceExhaustion => &[Restart, Scale, DeletePod],
        Category::Overload => &[Scale],
        Category::Unavailable => &[Scale, Restart],
        Category::Network => &[DrainNode],
        Category::CertificateExpired
        | Category::DependencyFailure
        | Category::DataError
        | Category::Unknown => &[],
    }
}

/// The usual remedy, as reported (`rollback`, `restart`, `scale`, `escalate`).
pub fn expected_action(c: Category) -> &'static str {
    match c {
        Category::BadDeploy | Category::ConfigError => "rollback",
        Category::MemoryExhaustion | Category::ResourceExhaustion => "restart",
        Category::Overload | Category::Unavailable => "scale",
        _ => "escalate",
    }
}

/// One planned fault.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub id: String,
    pub kind: FaultKind,
    pub root: String,
    pub root_kind: RootKind,
    pub onset: EventTime,
    /// When it ends by itself (self-ending kinds).
    pub natural_end: Option<EventTime>,
    /// When on-call engineers fix it if nothing else has.
    pub human_fix_at: EventTime,
    /// Root failures per second at full traffic.
    pub rate: f64,
    /// How it presents (the demo profile uses the default throughout).
    pub shape: Shape,
}

/// How a fault presents beyond its kind: intermittency, how much the root
/// itself logs, how loudly the callers retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// On/off phases (ms on, ms off) from the onset; `None`: continuous.
    pub intermittent: Option<(i64, i64)>,
    /// Share of the root's failures the root itself logs (1.0: all).
    pub root_share: f64,
    /// Lines each direct caller logs per failed call (retries), at least 1.
    pub caller_repeat: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            intermittent: None,
            root_share: 1.0,
            caller_repeat: 1,
        }
    }
}

impl FaultPlan {
    /// Whether the fault is in an "on" phase at `t` (always, unless intermittent).
    pub fn on_at(&self, t: EventTime) -> bool {
        match self.shape.intermittent {
            None => true,
            Some((on, off)) => {
                (t.millis() - self.onset.millis()).rem_euclid((on + off).max(1)) < on
            }
        }
    }
}
