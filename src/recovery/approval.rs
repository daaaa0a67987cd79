//! Human approval of `approval_required` actions (the HTTP endpoint calls
//! [`RecoveryStage::approval`] through `Decider::approval`).
//!
//! Approve ⇒ the same action (same id and idempotency key, same
//! `expires_at`) is emitted again with decision `auto`, a reason naming the
//! approver, and a fresh signature; then it is verified like any other
//! step. The safety guards still apply: a held approval becomes an
//! escalation naming the guard. Reject ⇒ an escalation saying who rejected
//! it, and a failure of (category, action) is learned.
//!
//! Guarantees: each pending action is decided at most once
//! ([`ApprovalError::AlreadyDecided`] afterwards); expiry is judged against
//! the stage's watermark (event time), never the wall clock.

use super::guards::{self, Guard};
use super::plan;
use super::state::{Event, Phase};
use super::{RecoveryOutput, RecoveryStage};
use crate::model::Decision;

/// Why an approval could not be applied.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("no pending approval with that action id")]
    NotFound,
    #[error("the action was already approved or rejected")]
    AlreadyDecided,
    #[error("the action has expired")]
    Expired,
}

impl RecoveryStage {
    /// A human approved (`approve = true`) or rejected a pending `approval_required` action.
    pub fn approval(
        &mut self,
        action_id: &str,
        approve: bool,
        by: &str,
        out: &mut Vec<RecoveryOutput>,
    ) -> Result<(), ApprovalError> {
        let Some(incident_id) = self.pending.get(action_id).cloned() else {
            return Err(match self.decided.get(action_id) {
                Some(true) => ApprovalError::Expired,
                Some(false) => ApprovalError::AlreadyDecided,
                None => ApprovalError::NotFound,
            });
        };
        let Some(mut ep) = self.episodes.remove(&incident_id) else {
            self.pending.remove(action_id);
            return Err(ApprovalError::NotFound);
        };
        let action = match &ep.action {
            Some(a) if a.action_id == action_id && ep.phase == Phase::AwaitingApproval => a.clone(),
            _ => {
                self.pending.remove(action_id);
                self.episodes.insert(incident_id, ep);
                return Err(ApprovalError::NotFound);
            }
        };
        let now = self.watermark;
        if action.expires_at <= now {
            self.pending.remove(action_id);
            self.decided.insert(action_id.to_string(), true);
            ep.on(Event::Ended { verified: false });
            self.episodes.insert(incident_id, ep);
            return Err(ApprovalError::Expired);
        }
        self.pending.remove(action_id);
        self.decided.insert(action_id.to_string(), false);
        let by = if by.trim().is_empty() {
            "an operator"
        } else {
            by
        };
        let what = format!(
            "{} of {}",
            action.action_type.as_str(),
            action.target.service
        );
        if !approve {
            tracing::info!(
                incident_id = %incident_id,
                action_id,
                by,
                "Pending action rejected."
            );
            self.learn(&ep, false);
            ep.on(Event::Ended { verified: false });
            self.escalate_ep(
                &ep,
                now.max(action.created_at),
                format!("{what} ({action_id}) was rejected by {by}; a human must act"),
                out,
            );
            self.episodes.insert(incident_id, ep);
            return Ok(());
        }
        let at = now.max(action.created_at);
        let root = action.target.service.clone();
        let replicas = self.replicas(&root);
        let req = guards::Request {
            service: &root,
            incident_id: &incident_id,
            touched: plan::touched(action.action_type, replicas, action.params.replicas),
            replicas,
            at,
            undo: false,
        };
        let held = self.guards.check(
            &req,
            guards::Context {
                healing: self.cfg.healing,
                dry_run: self.cfg.dry_run,
                in_maintenance: self.cfg.in_maintenance(&root, at),
            },
        );
        self.breaker_gauge();
        if let Some(g) = held {
            guards::record_hold(&self.stats, g, &root, &incident_id);
            ep.on(Event::Ended { verified: false });
            let note = if g == Guard::DryRun {
                "; dry run: not emitted"
            } else {
                ""
            };
            self.escalate_ep(
                &ep,
                at,
                format!(
                    "{what} approved by {by} but held by guard {}: {}{note}",
                    g.as_str(),
                    g.explain()
                ),
                out,
            );
            self.episodes.insert(incident_id, ep);
            return Ok(());
        }
        let mut a = action;
        a.decision = Decision::Auto;
        a.reason = format!("{}; approved by {by}", a.reason);
        self.sign(&mut a);
        self.guards.admit(&a.idempotency_key, &req);
        ep.on(Event::Approved {
            deadline: at.plus_ms(self.cfg.result_timeout.0),
        });
        ep.action = Some(a.clone());
        tracing::info!(incident_id = %incident_id, action_id, by, "Pending action approved.");
        self.push_action(a, out);
        self.episodes.insert(incident_id, ep);
        Ok(())
    }
}
