//! The simulated executor: consumes reflex's actions like `reflex executor`
//! would, applies them to the simulated [`World`] and reports
//! [`ActionResult`]s when they complete (in simulated time).
//!
//! Guarantees: only `auto` actions are carried out (`approval_required`
//! waits for a human, who in the demo does not approve); a `dry_run` action
//! is never applied and reported `skipped_dry_run`, like the real
//! executors' gate does; an idempotency key is applied at most once (a
//! repeat is `skipped_duplicate`); an expired action is `rejected`; results
//! are released in completion order.

use super::world::World;
use crate::model::{ActionResult, ActionStatus, Decision, EventTime, RecoveryAction};
use std::collections::BTreeSet;

/// Simulated time between an action's creation and the executor picking it up.
pub const PICKUP_MS: i64 = 5_000;

/// The executor's state.
#[derive(Debug, Default)]
pub struct Executor {
    applied: BTreeSet<String>,
    /// Results not yet released, with their completion time.
    running: Vec<ActionResult>,
    /// Results decided since the last [`Executor::take_decided`].
    decided: Vec<ActionResult>,
}

impl Executor {
    /// Takes one action. Returns false when it is not carried out
    /// automatically (it needs approval, or it is a dry run).
    pub fn submit(&mut self, a: &RecoveryAction, world: &mut World) -> bool {
        if a.decision == Decision::ApprovalRequired {
            return false;
        }
        let start = a.created_at.plus_ms(PICKUP_MS).max(world.now());
        let result = |status, detail: String, finished_at| ActionResult {
            action_id: a.action_id.clone(),
            idempotency_key: a.idempotency_key.clone(),
            status,
            detail,
            finished_at,
            executor: "sim".into(),
        };
        if a.decision == Decision::DryRun {
            // Checked before the ledger: a dry run is never an applied key.
            let r = result(
                ActionStatus::SkippedDryRun,
                "dry run: decision is dry_run; nothing was done".into(),
                start,
            );
            self.decided.push(r.clone());
            self.running.push(r);
            return false;
        }
        let r = if !self.applied.insert(a.idempotency_key.clone()) {
            result(
                ActionStatus::SkippedDuplicate,
                "idempotency key already applied".into(),
                start,
            )
        } else if start > a.expires_at {
            result(ActionStatus::Rejected, "action expired".into(), start)
        } else {
            let ap = world.apply(a, start);
            result(ap.status, ap.detail, ap.finished_at)
        };
        self.decided.push(r.clone());
        self.running.push(r);
        true
    }

    /// Results decided (not necessarily completed) since the last call, in
    /// submission order. The demo hands them to reflex at once: reflex
    /// applies each only when event time reaches its `finished_at`, so the
    /// outcome does not depend on when they were handed over.
    pub fn take_decided(&mut self) -> Vec<ActionResult> {
        std::mem::take(&mut self.decided)
    }

    /// Results of actions completed by `now`, oldest first.
    pub fn completed(&mut self, now: EventTime) -> Vec<ActionResult> {
        let (mut done, rest): (Vec<_>, Vec<_>) =
            self.running.drain(..).partition(|r| r.finished_at <= now);
        self.running = rest;
        done.sort_by(|a, b| {
            a.finished_at
                .cmp(&b.finished_at)
                .then_with(|| a.action_id.cmp(&b.action_id))
        });
        done
    }

    /// Everything still running (end of the run).
    pub fn remaining(&mut self) -> Vec<ActionResult> {
        self.completed(EventTime(i64::MAX))
    }
}
