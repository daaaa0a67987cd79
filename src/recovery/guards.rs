//! Safety guards: whether an action the policy allows may go out now.
//!
//! Guards (checked in this order; the first that holds wins):
//! `kill_switch` (healing off), `circuit_breaker` (observe-only after too
//! many actions or failed verifications in a window), `maintenance`
//! (the target is under maintenance), `flap` (the target fails again soon
//! after a verified fix), `cooldown` (another incident acted on the target
//! recently), `max_in_flight`, `disruption_budget` (share of a service's
//! instances, or number of services, with actions in flight), `rate_budget`
//! (actions per window), `dry_run` (the action goes out with the decision
//! `dry_run`, which every executor refuses, and is escalated because
//! nothing will change).
//!
//! Guarantees: every decision is a function of event time and the stage's
//! history (no wall clock); windows are pruned, so state is bounded by the
//! configured budgets; each hold bumps `reflex_guard_holds_total{guard}` and
//! logs a structured `warn!` naming guard, target and incident. Undo actions
//! (reverting reflex's own change) bypass the budget guards (cooldown,
//! flap, in-flight, disruption, rate) but never the kill switch, the
//! breaker, maintenance or dry run.

use super::config::GuardsConfig;
use crate::model::EventTime;
use crate::stage::stats::Stats;
use std::collections::{BTreeMap, VecDeque};

// The label set is the stage layer's vocabulary (counted in `Stats`); what
// each guard means for an escalation is recovery's.
pub use crate::stage::stats::Guard;

impl Guard {
    /// Why it held, for the escalation.
    pub fn explain(self) -> &'static str {
        match self {
            Guard::KillSwitch => "automatic healing is switched off",
            Guard::CircuitBreaker => {
                "the circuit breaker is open (too many actions or failed verifications): observe-only"
            }
            Guard::Maintenance => "the target is in a maintenance window",
            Guard::Flap => "the target failed again soon after a verified fix (flapping)",
            Guard::Cooldown => "another action hit the same target recently (cooldown)",
            Guard::MaxInFlight => "too many actions are in flight",
            Guard::DisruptionBudget => {
                "the disruption budget (instances or services with actions in flight) is spent"
            }
            Guard::RateBudget => "the global action rate budget is spent",
            Guard::DryRun => "dry run: executors refuse the action and report skipped_dry_run",
        }
    }
}

/// One action the stage wants to emit.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub service: &'a str,
    pub incident_id: &'a str,
    /// Instances the action touches (disruption budget).
    pub touched: f64,
    /// The service's instance count.
    pub replicas: i64,
    pub at: EventTime,
    /// Reverts reflex's own previous action.
    pub undo: bool,
}

/// Environment of a check that is not guard state.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub healing: bool,
    pub dry_run: bool,
    pub in_maintenance: bool,
}

#[derive(Debug, Clone)]
struct InFlight {
    service: String,
    touched: f64,
}

/// Guard state.
#[derive(Debug, Clone)]
pub struct Guards {
    cfg: GuardsConfig,
    in_flight: BTreeMap<String, InFlight>,
    /// Last action per service: (when, incident).
    last_action: BTreeMap<String, (EventTime, String)>,
    /// Last verified fix per service.
    verified_fix: BTreeMap<String, EventTime>,
    emitted: VecDeque<EventTime>,
    requests: VecDeque<EventTime>,
    failures: VecDeque<EventTime>,
    breaker_since: Option<EventTime>,
}

fn prune(q: &mut VecDeque<EventTime>, now: EventTime, window: i64) {
    while q
        .front()
        .is_some_and(|t| now.millis() - t.millis() >= window)
    {
        q.pop_front();
    }
}

impl Guards {
    pub fn new(cfg: GuardsConfig) -> Self {
        Guards {
            cfg,
            in_flight: BTreeMap::new(),
            last_action: BTreeMap::new(),
            verified_fix: BTreeMap::new(),
            emitted: VecDeque::new(),
            requests: VecDeque::new(),
            failures: VecDeque::new(),
            breaker_since: None,
        }
    }

    /// Whether the circuit breaker is open (observe-only).
    pub fn breaker_open(&self) -> bool {
        self.breaker_since.is_some()
    }

    /// Closes the breaker and forgets the windows that tripped it.
    pub fn reset_breaker(&mut self) {
        self.breaker_since = None;
        self.requests.clear();
        self.failures.clear();
    }

    fn trip(&mut self, at: EventTime) {
        if self.breaker_since.is_none() {
            self.breaker_since = Some(at);
            tracing::warn!(
                guard = "circuit_breaker",
                at = %at,
                "Circuit breaker tripped: observe-only until reset."
            );
        }
    }

    /// Event time advanced: time-based breaker reset.
    pub fn on_watermark(&mut self, wm: EventTime) {
        let horizon = wm.millis() - self.cfg.flap_window.0.max(self.cfg.cooldown.0);
        self.verified_fix.retain(|_, t| t.millis() >= horizon);
        self.last_action.retain(|_, (t, _)| t.millis() >= horizon);
        let reset = self.cfg.breaker_reset_after.0;
        if let Some(since) = self.breaker_since {
            if reset > 0 && wm.millis() >= since.millis() + reset {
                tracing::info!(
                    guard = "circuit_breaker",
                    "Circuit breaker reset after its timeout."
                );
                self.reset_breaker();
            }
        }
    }

    /// Which guard, if any, holds `r` back. Counts the request towards the
    /// breaker (undo actions excepted). `DryRun` means "emit with the decision `dry_run`".
    pub fn check(&mut self, r: &Request<'_>, ctx: Context) -> Option<Guard> {
        if !ctx.healing {
            return Some(Guard::KillSwitch);
        }
        if !r.undo {
            prune(&mut self.requests, r.at, self.cfg.breaker_window.0);
            self.requests.push_back(r.at);
            if self.requests.len() >= self.cfg.breaker_max_actions {
                self.trip(r.at);
            }
        }
        if self.breaker_open() {
            return Some(Guard::CircuitBreaker);
        }
        if ctx.in_maintenance {
            return Some(Guard::Maintenance);
        }
        if !r.undo {
            if let Some(g) = self.budget(r) {
                return Some(g);
            }
        }
        if ctx.dry_run {
            return Some(Guard::DryRun);
        }
        None
    }

    fn budget(&mut self, r: &Request<'_>) -> Option<Guard> {
        let now = r.at.millis();
        if self
            .verified_fix
            .get(r.service)
            .is_some_and(|t| now - t.millis() < self.cfg.flap_window.0)
        {
            return Some(Guard::Flap);
        }
        if self
            .last_action
            .get(r.service)
            .is_some_and(|(t, inc)| now - t.millis() < self.cfg.cooldown.0 && inc != r.incident_id)
        {
            return Some(Guard::Cooldown);
        }
        if self.in_flight.len() >= self.cfg.max_in_flight {
            return Some(Guard::MaxInFlight);
        }
        let touched: f64 = self
            .in_flight
            .values()
            .filter(|f| f.service == r.service)
            .map(|f| f.touched)
            .sum::<f64>()
            + r.touched;
        let replicas = r.replicas.max(1) as f64;
        let mut services: Vec<&str> = self
            .in_flight
            .values()
            .map(|f| f.service.as_str())
            .collect();
        services.sort_unstable();
        services.dedup();
        let other_services = services.iter().filter(|s| **s != r.service).count();
        if touched / replicas > self.cfg.max_instance_share + 1e-9
            || other_services >= self.cfg.max_services_in_flight
        {
            return Some(Guard::DisruptionBudget);
        }
        prune(&mut self.emitted, r.at, self.cfg.rate_window.0);
        if self.emitted.len() >= self.cfg.rate_limit {
            return Some(Guard::RateBudget);
        }
        None
    }

    /// The action keyed `key` went out (auto): it is in flight.
    pub fn admit(&mut self, key: &str, r: &Request<'_>) {
        self.in_flight.insert(
            key.to_string(),
            InFlight {
                service: r.service.to_string(),
                touched: r.touched,
            },
        );
        self.last_action
            .insert(r.service.to_string(), (r.at, r.incident_id.to_string()));
        if !r.undo {
            self.emitted.push_back(r.at);
        }
    }

    /// The action keyed `key` is no longer in flight.
    pub fn release(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    /// Actions in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A fix on `service` was verified at `at` (flap detection).
    pub fn verified(&mut self, service: &str, at: EventTime) {
        self.verified_fix.insert(service.to_string(), at);
        let horizon = at.millis() - self.cfg.flap_window.0.max(self.cfg.cooldown.0);
        self.verified_fix.retain(|_, t| t.millis() >= horizon);
        self.last_action.retain(|_, (t, _)| t.millis() >= horizon);
    }

    /// A verification failed (or an action failed) at `at`.
    pub fn failed(&mut self, at: EventTime) {
        prune(&mut self.failures, at, self.cfg.breaker_window.0);
        self.failures.push_back(at);
        if self.failures.len() >= self.cfg.breaker_max_failures {
            self.trip(at);
        }
    }
}

/// Counts and logs one hold.
pub fn record_hold(stats: &Stats, g: Guard, target: &str, incident_id: &str) {
    if let Some(i) = Guard::ALL.iter().position(|&x| x == g) {
        Stats::add(&stats.guard_holds[i], 1);
    }
    tracing::warn!(guard = g.as_str(), target, incident_id, "Action held back.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(service: &str, at: i64) -> Request<'_> {
        Request {
            service,
            incident_id: "i",
            touched: 1.0,
            replicas: 4,
            at: EventTime(at),
            undo: false,
        }
    }

    const ON: Context = Context {
        healing: true,
        dry_run: false,
        in_maintenance: false,
    };

    #[test]
    fn breaker_trips_on_failures_and_resets_by_time_or_call() {
        let mut g = Guards::new(GuardsConfig {
            breaker_max_failures: 2,
            breaker_reset_after: crate::model::DurationMs(60_000),
            ..GuardsConfig::default()
        });
        g.failed(EventTime(0));
        assert!(!g.breaker_open());
        g.failed(EventTime(1000));
        assert!(g.breaker_open());
        assert_eq!(g.check(&req("a", 2000), ON), Some(Guard::CircuitBreaker));
        g.on_watermark(EventTime(30_000));
        assert!(g.breaker_open());
        g.on_watermark(EventTime(61_000));
        assert!(!g.breaker_open());
        g.failed(EventTime(70_000));
        g.failed(EventTime(71_000));
        assert!(g.breaker_open());
        g.reset_breaker();
        assert_eq!(g.check(&req("a", 72_000), ON), None);
    }
}
