//! What the fleet emits in an interval: every service's steady background
//! (scaled by the daily traffic shape and benign bursts), and every active
//! fault's failures at its root (a service, an external host or a node)
//! with the cascade at the callers and their callers, on one trace.
//!
//! Guarantees: a fault emits only while it is active and in an "on" phase;
//! it records the services it affected and one sample line for the
//! narrative; every draw comes from the world's seeded stream.

use super::World;
use crate::model::{ErrorEvent, EventTime};
use crate::sim::emit::{make, pick_dep, pick_instance, uniform_time};
use crate::sim::faults::{
    caller_lines, external_lines, own_network_error, platform_lines, root_lines, FaultKind,
    RootKind, Symptom,
};
use crate::sim::fleet::{daily_traffic, Lang};
use crate::sim::noise;
use crate::sim::production;
use crate::sim::text::trace_id;

/// Average event-time delay between a failure at a dependency and the caller's error.
const CASCADE_DELAY_MS: (i64, i64) = (20, 900);

impl World {
    pub(super) fn background(&mut self, t0: EventTime, t1: EventTime, dt_s: f64) {
        let mid = EventTime((t0.millis() + t1.millis()) / 2);
        let traffic = daily_traffic(mid);
        let names: Vec<String> = self.fleet.services.keys().cloned().collect();
        for name in &names {
            let burst = self.burst_factor(name, mid);
            let Some(svc) = self.fleet.get(name) else {
                continue;
            };
            // Errors grow much less than traffic in a benign burst (most extra
            // requests succeed); warnings and info grow with it.
            let err_rate = svc.noise_rate * svc.error_share * traffic * (1.0 + 0.2 * (burst - 1.0));
            let other_rate = svc.noise_rate * (1.0 - svc.error_share) * traffic * burst;
            let (errs, others) = noise::templates(svc.lang);
            let n_err = self.rng.poisson(err_rate * dt_s);
            let n_other = self.rng.poisson(other_rate * dt_s);
            for k in 0..(n_err + n_other) {
                let tpl = if k < n_err {
                    *self.rng.pick(errs)
                } else if self.rng.chance(0.02) {
                    *self.rng.pick(noise::K8S)
                } else {
                    *self.rng.pick(others)
                };
                let t = uniform_time(&mut self.rng, t0, t1);
                let dep = pick_dep(&mut self.rng, svc);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let inst = pick_instance(&mut self.rng, svc);
                let trace = self.rng.chance(0.6).then(|| trace_id(&mut self.rng));
                let mut ev = make(&mut self.rng, t, svc, inst, &tpl, &dep, &dep_ns, trace);
                if tpl.upstream && !dep.is_empty() {
                    ev.upstream = Some(dep);
                }
                self.buf.push(ev);
            }
        }
    }

    pub(super) fn fault_events(&mut self, t0: EventTime, t1: EventTime, dt_s: f64) {
        let mid = EventTime((t0.millis() + t1.millis()) / 2);
        let traffic = daily_traffic(mid).max(0.5);
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            if !f.started || f.plan.onset >= t1 || f.end().0 <= t0 {
                continue;
            }
            let spike = if f.plan.kind == FaultKind::Overload {
                1.5
            } else {
                1.0
            };
            let worse = if f.worse_at(mid) { 1.8 } else { 1.0 };
            // Onset ramps up over the first half minute.
            let n = self
                .rng
                .poisson(f.plan.rate * traffic * spike * worse * dt_s);
            for _ in 0..n {
                let t = uniform_time(&mut self.rng, t0, t1);
                if !self.faults[i].active(t) || !self.faults[i].plan.on_at(t) {
                    continue;
                }
                self.one_failure(i, t);
            }
        }
    }

    /// One failure of fault `i` at `t`, with its cascade.
    fn one_failure(&mut self, i: usize, t: EventTime) {
        let plan = self.faults[i].plan.clone();
        let trace = trace_id(&mut self.rng);
        let mut evs: Vec<ErrorEvent> = Vec::new();
        match plan.root_kind {
            RootKind::External => {
                let callers = self.fleet.external_callers(&plan.root);
                if callers.is_empty() {
                    return;
                }
                let c = *self.rng.pick(&callers);
                let tpl = *self.rng.pick(external_lines(&plan.root, c.lang));
                let inst = pick_instance(&mut self.rng, c);
                let mut ev = make(
                    &mut self.rng,
                    t,
                    c,
                    inst,
                    &tpl,
                    &plan.root,
                    "",
                    Some(trace.clone()),
                );
                ev.upstream = Some(plan.root.clone());
                evs.push(ev);
                let cname = c.name.clone();
                let repeat = plan.shape.caller_repeat;
                self.cascade(
                    &cname,
                    Symptom::ServerError,
                    t,
                    &trace,
                    0.6,
                    repeat,
                    &mut evs,
                );
            }
            RootKind::Node => {
                let on_node = self.fleet.pods_on(&plan.root);
                if on_node.is_empty() {
                    return;
                }
                let (s, inst) = *self.rng.pick(&on_node);
                let trace = Some(trace.clone());
                evs.push(own_network_error(
                    &mut self.rng,
                    &self.fleet,
                    s,
                    Some(inst),
                    t,
                    |_| trace,
                ));
            }
            RootKind::Service => {
                let Some(root) = self.fleet.get(&plan.root) else {
                    return;
                };
                let logs = plan.shape.root_share >= 1.0 || self.rng.chance(plan.shape.root_share);
                if !plan.kind.silent_root() && logs {
                    let lines = if self.rng.chance(0.25) && !platform_lines(plan.kind).is_empty() {
                        platform_lines(plan.kind)
                    } else {
                        root_lines(plan.kind, root.lang)
                    };
                    if !lines.is_empty() {
                        let tpl = *self.rng.pick(lines);
                        let inst = pick_instance(&mut self.rng, root);
                        let dep = pick_dep(&mut self.rng, root);
                        let dep_ns = self.fleet.namespace_of(&dep).to_string();
                        let mut ev = make(
                            &mut self.rng,
                            t,
                            root,
                            inst,
                            &tpl,
                            &dep,
                            &dep_ns,
                            Some(trace.clone()),
                        );
                        if plan.kind == FaultKind::Overload {
                            ev.latency_ms = Some(self.rng.int(2_000, 12_000) as f64);
                        }
                        evs.push(ev);
                    }
                }
                if plan.kind != FaultKind::PoisonMessages {
                    let (sym, repeat) = (plan.kind.symptom(), plan.shape.caller_repeat);
                    self.cascade(&plan.root, sym, t, &trace, 0.75, repeat, &mut evs);
                }
            }
        }
        let f = &mut self.faults[i];
        for ev in &evs {
            f.affected.insert(ev.service.clone());
        }
        if f.sample.is_none() {
            f.sample = evs.first().map(|e| e.message.clone());
        }
        self.buf.extend(evs);
    }

    /// Errors at the callers of `failed` (and at their callers) for one
    /// failure; each direct caller logs `repeat` lines (its retries). In the
    /// production profile proxies log every 5xx they pass on.
    #[allow(clippy::too_many_arguments)]
    fn cascade(
        &mut self,
        failed: &str,
        symptom: Symptom,
        t: EventTime,
        trace: &str,
        p: f64,
        repeat: u32,
        out: &mut Vec<ErrorEvent>,
    ) {
        let prod = self.chronic.is_some();
        let failed_ns = self.fleet.namespace_of(failed).to_string();
        let callers: Vec<String> = self
            .fleet
            .callers(failed)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        for c in &callers {
            if !self.rng.chance(p) {
                continue;
            }
            let Some(cs) = self.fleet.get(c) else {
                continue;
            };
            let tc = t.plus_ms(self.rng.int(CASCADE_DELAY_MS.0, CASCADE_DELAY_MS.1));
            let tpl = *self.rng.pick(caller_lines(symptom, cs.lang));
            let inst = pick_instance(&mut self.rng, cs);
            let mut ev = make(
                &mut self.rng,
                tc,
                cs,
                inst,
                &tpl,
                failed,
                &failed_ns,
                Some(trace.to_string()),
            );
            if self.rng.chance(0.85) {
                ev.upstream = Some(failed.to_string());
            }
            out.push(ev);
            for _ in 1..repeat {
                let tr = tc.plus_ms(self.rng.int(200, 4_000));
                let tpl = *self.rng.pick(caller_lines(symptom, cs.lang));
                let inst = pick_instance(&mut self.rng, cs);
                let mut ev = make(
                    &mut self.rng,
                    tr,
                    cs,
                    inst,
                    &tpl,
                    failed,
                    &failed_ns,
                    Some(trace.to_string()),
                );
                ev.upstream = Some(failed.to_string());
                out.push(ev);
            }
            // Second hop: the caller's callers see it fail (5xx), less often.
            let c_ns = cs.namespace.clone();
            let grand: Vec<String> = self
                .fleet
                .callers(c)
                .iter()
                .map(|s| s.name.clone())
                .collect();
            for g in &grand {
                let proxy = prod && self.fleet.get(g).is_some_and(|s| s.lang == Lang::Proxy);
                if !proxy && !self.rng.chance(p * 0.5) {
                    continue;
                }
                let Some(gs) = self.fleet.get(g) else {
                    continue;
                };
                let tg = tc.plus_ms(self.rng.int(CASCADE_DELAY_MS.0, CASCADE_DELAY_MS.1));
                let tpl = *self.rng.pick(caller_lines(Symptom::ServerError, gs.lang));
                let inst = pick_instance(&mut self.rng, gs);
                let mut ev = make(
                    &mut self.rng,
                    tg,
                    gs,
                    inst,
                    &tpl,
                    c,
                    &c_ns,
                    Some(trace.to_string()),
                );
                if self.rng.chance(0.85) {
                    ev.upstream = Some(c.clone());
                }
                out.push(ev);
                if prod {
                    production::proxies_log(&mut self.rng, &self.fleet, g, tg, trace, 0.8, out);
                }
            }
        }
    }
}
