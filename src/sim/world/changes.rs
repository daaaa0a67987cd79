//! Fault lifecycles and harmless changes: a fault's onset and end (with the
//! bad deploy/config/scale-down that causes it and the on-call rollback or
//! scale-up that ends it), the planned deploys, ConfigMap changes and
//! autoscaling, each published as a `kind: change` event, and the pod
//! restarts of a rollout.
//!
//! Guarantees: changes are published in schedule order at their planned
//! time (or the interval's start), and every draw comes from the world's
//! seeded stream, so the same seed gives the same events.

use super::{ChangeKind, FixedBy, Note, World};
use crate::model::{ErrorEvent, EventKind, EventTime, Severity};
use crate::sim::emit::{make, pick_instance};
use crate::sim::faults::{caller_lines, FaultKind, Symptom};
use crate::sim::gen::Rng;
use crate::sim::noise;
use crate::sim::text::{k8s_suffix, uuid};

impl World {
    /// Onsets, ends, planned changes.
    pub(super) fn lifecycle(&mut self, t0: EventTime, t1: EventTime) {
        for i in 0..self.faults.len() {
            let (kind, onset, root) = {
                let f = &self.faults[i].plan;
                (f.kind, f.onset, f.root.clone())
            };
            let lead = 90_000 + (i as i64 % 3) * 40_000;
            let change_at = onset.plus_ms(-lead);
            if !self.faults[i].change_done && change_at < t1 {
                self.faults[i].change_done = true;
                let what = match kind {
                    FaultKind::BadDeploy => Some("deploy"),
                    FaultKind::BadConfig => Some("config"),
                    FaultKind::ScaledToZero => Some("scale"),
                    _ => None,
                };
                if let Some(what) = what {
                    let at = change_at.max(t0);
                    let prev = self.fleet.get(&root).map(|s| s.version.clone());
                    self.faults[i].previous_version = prev;
                    self.change_event(&root, what, at, None);
                }
            }
            if !self.faults[i].started && onset < t1 {
                self.faults[i].started = true;
                self.notes.push(Note::FaultStarted {
                    fault: i,
                    at: onset,
                });
            }
            let (end, by) = self.faults[i].end();
            if self.faults[i].started && !self.faults[i].ended && end < t1 {
                self.faults[i].ended = true;
                self.notes.push(Note::FaultEnded { fault: i, at: end });
                if by == FixedBy::Human
                    && matches!(kind, FaultKind::BadDeploy | FaultKind::BadConfig)
                {
                    let v = self.faults[i].previous_version.clone();
                    self.change_event(&root, "rollback", end.max(t0), v);
                }
                if by == FixedBy::Human && kind == FaultKind::ScaledToZero {
                    self.change_event(&root, "scale", end.max(t0), None);
                }
            }
        }
        while let Some(p) = self.planned.first() {
            if p.at >= t1 {
                break;
            }
            let p = self.planned.remove(0);
            let at = p.at.max(t0);
            match p.what {
                ChangeKind::Deploy => {
                    self.change_event(&p.service, "deploy", at, None);
                    self.rollout_blip(&p.service, at);
                }
                ChangeKind::Config => self.change_event(&p.service, "config", at, None),
                ChangeKind::ScaleUp => self.change_event(&p.service, "scale", at, None),
            }
        }
    }

    /// Publishes a change event (`kind: change`) for `service` and updates its state.
    pub(super) fn change_event(
        &mut self,
        service: &str,
        what: &str,
        at: EventTime,
        to: Option<String>,
    ) {
        let Some(svc) = self.fleet.services.get_mut(service) else {
            return;
        };
        let rng = &mut self.rng;
        let (message, version) = match what {
            "deploy" => {
                let v = bump(&svc.version, rng);
                svc.version.clone_from(&v);
                (
                    format!(
                        "Deployment {}/{} rolled out {v} (image registry.example.com/shop/{}:{v})",
                        svc.namespace, svc.name, svc.name
                    ),
                    Some(v),
                )
            }
            "config" => (
                format!(
                    "ConfigMap {}/{}-config updated (resourceVersion {})",
                    svc.namespace,
                    svc.name,
                    rng.int(100_000, 999_999)
                ),
                None,
            ),
            "rollback" => {
                let v = to.unwrap_or_else(|| svc.version.clone());
                svc.version.clone_from(&v);
                (
                    format!(
                        "Deployment {}/{} rolled back to {v} by on-call",
                        svc.namespace, svc.name
                    ),
                    Some(v),
                )
            }
            "scale" => {
                let r = svc.replicas + 1;
                (
                    format!(
                        "Scaled deployment {}/{} from {} to {r} replicas (autoscaler {}-hpa)",
                        svc.namespace, svc.name, svc.replicas, svc.name
                    ),
                    None,
                )
            }
            _ => (format!("{what} of {}", svc.name), None),
        };
        let mut ev = ErrorEvent::new(uuid(rng), at, service, Severity::Info, message);
        ev.kind = EventKind::Change;
        ev.namespace = Some(svc.namespace.clone());
        ev.version = version.clone();
        ev.attributes.insert("change_type".into(), what.to_string());
        ev.attributes.insert("source".into(), "argo-cd".into());
        if let Some(v) = version {
            if what == "deploy" {
                self.notes.push(Note::Deploy {
                    service: service.to_string(),
                    version: v,
                    at,
                });
            }
        }
        self.buf.push(ev);
    }

    /// A rolling update: pods restart; a caller may see a refused connection or two.
    pub(super) fn rollout_blip(&mut self, service: &str, at: EventTime) {
        let Some(svc) = self.fleet.get(service) else {
            return;
        };
        let mut evs = Vec::new();
        for inst in &svc.instances {
            for tpl in [
                noise::t(Severity::Info, "Killing container {svc} in pod {pod}"),
                noise::t(Severity::Info, "Started container {svc} in pod {pod}"),
            ] {
                let t = at.plus_ms(self.rng.int(0, 90_000));
                evs.push(make(&mut self.rng, t, svc, Some(inst), &tpl, "", "", None));
            }
        }
        let callers = self.fleet.callers(service);
        if !callers.is_empty() && self.rng.chance(0.5) {
            for _ in 0..self.rng.int(1, 2) {
                let c = *self.rng.pick(&callers);
                let tpl = *self.rng.pick(caller_lines(Symptom::Refused, c.lang));
                let t = at.plus_ms(self.rng.int(0, 90_000));
                let inst = pick_instance(&mut self.rng, c);
                let mut ev = make(
                    &mut self.rng,
                    t,
                    c,
                    inst,
                    &tpl,
                    service,
                    &svc.namespace,
                    None,
                );
                ev.upstream = Some(service.to_string());
                evs.push(ev);
            }
        }
        self.buf.extend(evs);
    }
}

fn bump(v: &str, rng: &mut Rng) -> String {
    match v.rsplit_once('.') {
        Some((head, last)) if last.parse::<u32>().is_ok() => {
            format!("{head}.{}", last.parse::<u32>().unwrap_or(0) + 1)
        }
        _ => format!("{}{}", &v[..v.len().min(4)], k8s_suffix(rng, 7)),
    }
}
