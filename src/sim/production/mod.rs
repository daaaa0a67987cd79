//! The `production` profile of `reflex demo`: a fleet as hostile as a real
//! one (project issue 14).
//!
//! The demo profile's background is isolated and steady; a production
//! fleet's is *chronic*. This module adds, on top of the demo machinery:
//!
//! - a bigger fleet ([`fleet`]): 36 services in 7 namespaces (edge,
//!   storefront, orders, payments, identity, platform, data), 9 nodes in 3
//!   zones (`attributes.zone`), 17 external hosts (managed databases and
//!   caches, SaaS APIs), a deep call graph (ingress → gateway → BFFs →
//!   domain services → shared platform services such as auth, config and
//!   ledger), every runtime (Java, Go, Python, Node, ingress-nginx/envoy);
//! - the chronic background ([`Chronic`]): every dependency edge fails a
//!   small, slowly drifting, diurnal share of calls all day, in the very
//!   phrasings callers use during faults (timeouts, 5xx, refused), with
//!   `upstream` set and the upstream's own harmless error on the same trace;
//!   proxies log the 5xx they pass on; short retry storms on one edge;
//!   cron batch jobs that fail loudly for a few minutes at fixed times;
//!   Kubernetes warning events (probe failures, BackOff,
//!   FailedScheduling); three services with high chronic error rates;
//! - harmless deploys, ConfigMap changes and autoscaler events all day,
//!   some right before a fault on *another* service ([`changes`]);
//! - a fault schedule ([`plan`]) with onsets 20-45 minutes apart, some
//!   overlapping (two at once, some on services sharing a caller), some
//!   intermittent, some on noisy services, some whose callers are far
//!   louder than the root;
//! - producers' variety ([`encode_zoned`], [`encode_shipper`]): local-time
//!   offsets, microseconds, epoch milliseconds, runtime severities, log
//!   shipper envelopes with nested unknown fields.
//!
//! Faults stay discoverable: they raise the affected edges' error rates
//! several times above their chronic baseline, and the root's own evidence
//! (OOM lines, x509 errors, parse errors...) is in its logs except for
//! silent roots and external dependencies. Everything is a function of the
//! seed; the demo profile draws nothing from here.
//!
//! The parts: `catalog` (the fleet table and its builder), `schedule`
//! (the fault plan and the harmless changes), `chronic` (the chronic
//! background, planned and emitted), `templates` (its phrasing tables,
//! data only) and `encode` (the producers' encodings). The world calls
//! into this profile; nothing here calls the world (it draws from the
//! world's stream and fleet, lent for one interval).

mod catalog;
mod chronic;
mod encode;
mod schedule;
mod templates;
#[cfg(test)]
mod tests;

pub use catalog::fleet;
pub(in crate::sim) use chronic::proxies_log;
pub use chronic::Chronic;
pub use encode::{decorate, encode_shipper, encode_zoned};
pub use schedule::{changes, max_faults, noisy_services, plan};

/// Which simulated fleet `reflex demo` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The small web shop with isolated, steady background noise (the
    /// default; its output is the project's golden figures).
    #[default]
    Demo,
    /// A production-like fleet with chronic background noise, overlapping
    /// and intermittent faults and varied producers.
    Production,
}

impl Profile {
    /// `demo` or `production`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "demo" => Some(Profile::Demo),
            "production" | "prod" => Some(Profile::Production),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Demo => "demo",
            Profile::Production => "production",
        }
    }

    /// Default simulated hours.
    pub fn default_hours(self) -> f64 {
        match self {
            Profile::Demo => 8.0,
            Profile::Production => 7.0,
        }
    }

    /// Default number of faults.
    pub fn default_faults(self) -> usize {
        match self {
            Profile::Demo => 11,
            Profile::Production => 12,
        }
    }
}
