//! Recovery actions in the simulated world: [`World::apply`] checks the
//! target exists, heals the faults an acceptable action on their root
//! heals (when the action completes), marks the ones a wrong action makes
//! worse (while it runs), and publishes the action's side effects (a
//! rollback or restart rollout, new replicas).
//!
//! Guarantees: an action on a missing target fails without touching any
//! fault; a fault is healed at most once; rolling forward heals nothing.

use super::{Applied, FixedBy, World};
use crate::model::{ActionStatus, ActionType, EventTime, RecoveryAction, RollbackDirection};
use crate::sim::faults::RootKind;
use crate::sim::fleet::Instance;
use crate::sim::text::k8s_suffix;

impl World {
    /// Carries out `a` starting at `start`. Heals, worsens or does nothing to
    /// the faults, publishes the action's side effects, and says how it went.
    pub fn apply(&mut self, a: &RecoveryAction, start: EventTime) -> Applied {
        let start = start.max(self.now);
        let target = a.target.service.clone();
        let node = a.params.node.clone();
        let duration = match a.action_type {
            ActionType::Restart => 75_000,
            ActionType::Scale => 40_000,
            ActionType::Rollback => 90_000,
            ActionType::DrainNode => 120_000,
            ActionType::DeletePod => 20_000,
            ActionType::RunRunbook => 60_000,
        };
        let finished_at = start.plus_ms(duration);
        if a.action_type == ActionType::DrainNode {
            let n = node.unwrap_or_else(|| target.clone());
            if !self.fleet.nodes.contains(&n) {
                return Applied {
                    status: ActionStatus::Failed,
                    detail: format!("node {n} not found"),
                    finished_at: start,
                };
            }
        } else if self.fleet.get(&target).is_none_or(|s| {
            a.target
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != s.namespace)
        }) {
            return Applied {
                status: ActionStatus::Failed,
                detail: format!(
                    "{} {}/{} not found",
                    a.target.kind,
                    a.target.namespace.as_deref().unwrap_or("default"),
                    a.target.name
                ),
                finished_at: start,
            };
        }
        let mut healed = Vec::new();
        for (i, f) in self.faults.iter_mut().enumerate() {
            if !f.active(start) && !f.active(finished_at) {
                continue;
            }
            let on_root = match a.action_type {
                ActionType::DrainNode => {
                    f.plan.root_kind == RootKind::Node
                        && a.params.node.as_deref().unwrap_or(&target) == f.plan.root
                }
                _ => f.plan.root == target,
            };
            if !on_root {
                continue;
            }
            // Rolling forward (reflex undoing its own rollback) heals nothing.
            let forward = a.params.direction == Some(RollbackDirection::Forward);
            if f.plan.kind.heals().contains(&a.action_type) && !forward {
                if f.healed_at.is_none() {
                    f.healed_at = Some((
                        finished_at,
                        FixedBy::Reflex {
                            action_id: a.action_id.clone(),
                            action: a.action_type,
                        },
                    ));
                    healed.push(i);
                }
            } else if f.plan.kind.worsens().contains(&a.action_type) {
                f.worse.push((start, finished_at));
            }
        }
        // Side effects that producers publish.
        match a.action_type {
            ActionType::Rollback => {
                let prev = healed
                    .iter()
                    .find_map(|&i| self.faults[i].previous_version.clone());
                self.change_event(&target, "rollback", start, prev);
                self.rollout_blip(&target, start);
            }
            ActionType::Restart => {
                self.change_event(&target, "restart", start, None);
                self.rollout_blip(&target, start);
            }
            ActionType::Scale => {
                let to = a.params.replicas.unwrap_or(1);
                if let Some(s) = self.fleet.services.get_mut(&target) {
                    while (s.instances.len() as i64) < to {
                        let pod = format!("{}-{}", s.name, k8s_suffix(&mut self.rng, 5));
                        let node = self.rng.pick(&self.fleet.nodes).clone();
                        s.instances.push(Instance { pod, node });
                    }
                    s.replicas = to;
                }
                self.change_event(&target, "scale", start, None);
            }
            _ => {}
        }
        let detail = if healed.is_empty() {
            format!("{} of {target} completed", a.action_type.as_str())
        } else {
            format!(
                "{} of {target} completed; workload healthy",
                a.action_type.as_str()
            )
        };
        Applied {
            status: ActionStatus::Succeeded,
            detail,
            finished_at,
        }
    }
}
