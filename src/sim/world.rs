//! The simulated world: the fleet's state over simulated (event) time and
//! the events it publishes.
//!
//! [`World::advance`] moves the clock to a new time and emits every event of
//! the interval: the background of each service (scaled by the daily
//! traffic shape and benign bursts), harmless deploys, config changes and
//! autoscaling, the active faults and their cascades, and the side effects
//! of recovery actions. Events are encoded as producers would (two JSON
//! styles), a configurable share is malformed, and events arrive slightly
//! out of order (by less than the pipeline's allowed lateness), so the
//! released lines are what a real `errors` topic would carry.
//!
//! [`World::apply`] carries out a recovery action: the right action on the
//! root heals its fault when the action completes, some wrong ones make it
//! worse while they run, and the rest change nothing. No wall clock is read;
//! the same seed and the same actions give the same bytes.

use super::faults::{
    self, caller_lines, external_lines, network_lines, platform_lines, root_lines, FaultKind,
    FaultPlan, RootKind, Symptom,
};
use super::fleet::{daily_traffic, Encoding, Fleet, Instance, Lang, Service};
use super::gen::Rng;
use super::noise::{self, Tpl};
use super::production::{self, Chronic, Profile};
use super::text::{fill, k8s_suffix, span_id, trace_id, uuid, Ctx};
use crate::model::{
    ActionStatus, ActionType, ErrorEvent, EventKind, EventTime, RecoveryAction, Severity,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Who ended a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixedBy {
    /// A reflex action (its id and type).
    Reflex {
        action_id: String,
        action: ActionType,
    },
    /// On-call engineers.
    Human,
    /// It ended on its own.
    Itself,
}

/// A fault and what happened to it.
#[derive(Debug, Clone)]
pub struct FaultState {
    pub plan: FaultPlan,
    /// When a matching action completes and heals it.
    pub healed_at: Option<(EventTime, FixedBy)>,
    /// Intervals during which a wrong action makes it worse.
    worse: Vec<(EventTime, EventTime)>,
    /// Services that emitted events because of the fault.
    pub affected: BTreeSet<String>,
    /// One line the root (or first victim) wrote, for the narrative.
    pub sample: Option<String>,
    /// The version the root ran before a bad deploy/config (rollback target).
    pub previous_version: Option<String>,
    change_done: bool,
    pub started: bool,
    pub ended: bool,
}

impl FaultState {
    /// When and how the fault ends, given what is known now.
    pub fn end(&self) -> (EventTime, FixedBy) {
        let mut best = (self.plan.human_fix_at, FixedBy::Human);
        if let Some(n) = self.plan.natural_end {
            if n < best.0 {
                best = (n, FixedBy::Itself);
            }
        }
        if let Some((h, by)) = &self.healed_at {
            if *h < best.0 {
                best = (*h, by.clone());
            }
        }
        best
    }

    fn active(&self, t: EventTime) -> bool {
        t >= self.plan.onset && t < self.end().0
    }

    fn worse_at(&self, t: EventTime) -> bool {
        self.worse.iter().any(|(a, b)| *a <= t && t < *b)
    }
}

/// Something that happened in the world, for the narrative.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    FaultStarted {
        fault: usize,
        at: EventTime,
    },
    FaultEnded {
        fault: usize,
        at: EventTime,
    },
    Deploy {
        service: String,
        version: String,
        at: EventTime,
    },
}

/// The world's settings.
#[derive(Debug, Clone)]
pub struct WorldConfig {
    pub start: EventTime,
    pub end: EventTime,
    /// Share of events published malformed (dead letters).
    pub malformed_rate: f64,
    /// Scales every background rate.
    pub volume: f64,
    /// Which fleet and background ([`Profile::Production`] adds the chronic
    /// background of [`super::production`]).
    pub profile: Profile,
}

/// A harmless change scheduled in advance.
#[derive(Debug, Clone)]
struct Planned {
    at: EventTime,
    service: String,
    what: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ChangeKind {
    Deploy,
    Config,
    ScaleUp,
}

/// A benign traffic burst on one service.
#[derive(Debug, Clone)]
struct Burst {
    start: EventTime,
    end: EventTime,
    service: String,
    factor: f64,
}

/// The simulated fleet over time.
pub struct World {
    pub fleet: Fleet,
    pub faults: Vec<FaultState>,
    pub(super) rng: Rng,
    now: EventTime,
    cfg: WorldConfig,
    planned: Vec<Planned>,
    bursts: Vec<Burst>,
    /// Lines not yet delivered, by (arrival ms, sequence).
    pending: BTreeMap<(i64, u64), Vec<u8>>,
    seq: u64,
    pub notes: Vec<Note>,
    /// Events generated (good and malformed).
    pub generated: u64,
    pub malformed: u64,
    pub(super) buf: Vec<ErrorEvent>,
    /// The chronic background of the production profile.
    pub(super) chronic: Option<Box<Chronic>>,
}

/// How the executor's action went.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub status: ActionStatus,
    pub detail: String,
    pub finished_at: EventTime,
}

/// Average event-time delay between a failure at a dependency and the caller's error.
const CASCADE_DELAY_MS: (i64, i64) = (20, 900);
/// Out-of-orderness of delivery (must stay below the pipeline's allowed lateness).
const MAX_ARRIVAL_JITTER_MS: i64 = 1_500;

impl World {
    /// A world for `plan` (faults) over the fleet.
    pub fn new(fleet: Fleet, plan: Vec<FaultPlan>, cfg: WorldConfig, rng: &mut Rng) -> World {
        let mut rng_plan = rng.fork(1);
        let faults: Vec<FaultState> = plan
            .into_iter()
            .map(|p| FaultState {
                plan: p,
                healed_at: None,
                worse: Vec::new(),
                affected: BTreeSet::new(),
                sample: None,
                previous_version: None,
                change_done: false,
                started: false,
                ended: false,
            })
            .collect();
        // Harmless changes, never on a service shortly before or during its own fault.
        let names: Vec<String> = fleet.services.keys().cloned().collect();
        let mut planned = Vec::new();
        let mut t = cfg.start.plus_ms(rng_plan.int(5, 20) * 60_000);
        while t < cfg.end {
            let service = rng_plan.pick(&names).clone();
            let clash = faults.iter().any(|f| {
                f.plan.root == service
                    && t.millis() >= f.plan.onset.millis() - 30 * 60_000
                    && t <= f.plan.human_fix_at.plus_ms(15 * 60_000)
            });
            if !clash {
                let r = rng_plan.f64();
                let what = if r < 0.7 {
                    ChangeKind::Deploy
                } else if r < 0.85 {
                    ChangeKind::Config
                } else {
                    ChangeKind::ScaleUp
                };
                planned.push(Planned {
                    at: t,
                    service,
                    what,
                });
            }
            t = t.plus_ms(rng_plan.int(12, 40) * 60_000);
        }
        let mut bursts = Vec::new();
        let mut t = cfg.start.plus_ms(rng_plan.int(20, 60) * 60_000);
        while t < cfg.end {
            let len = rng_plan.int(5, 12) * 60_000;
            bursts.push(Burst {
                start: t,
                end: t.plus_ms(len),
                service: rng_plan.pick(&names).clone(),
                factor: rng_plan.range(1.5, 2.5),
            });
            t = t.plus_ms(rng_plan.int(30, 90) * 60_000);
        }
        let mut chronic = None;
        if cfg.profile == Profile::Production {
            // Its own stream, so the demo profile's draws are untouched.
            let mut rng_prod = rng.fork(3);
            let plans: Vec<&FaultPlan> = faults.iter().map(|f| &f.plan).collect();
            for (at, service, what) in
                production::changes(&mut rng_prod, &fleet, &plans, cfg.start, cfg.end)
            {
                let what = match what {
                    "deploy" => ChangeKind::Deploy,
                    "config" => ChangeKind::Config,
                    _ => ChangeKind::ScaleUp,
                };
                planned.push(Planned { at, service, what });
            }
            planned.sort_by_key(|p| p.at);
            chronic = Some(Box::new(Chronic::new(
                &mut rng_prod,
                &fleet,
                cfg.start,
                cfg.end,
                cfg.volume,
            )));
        }
        World {
            fleet,
            faults,
            rng: rng.fork(2),
            now: cfg.start,
            cfg,
            planned,
            bursts,
            pending: BTreeMap::new(),
            seq: 0,
            notes: Vec::new(),
            generated: 0,
            malformed: 0,
            buf: Vec::new(),
            chronic,
        }
    }

    /// The simulated clock.
    pub fn now(&self) -> EventTime {
        self.now
    }

    fn burst_factor(&self, service: &str, t: EventTime) -> f64 {
        self.bursts
            .iter()
            .filter(|b| b.service == service && b.start <= t && t < b.end)
            .map(|b| b.factor)
            .fold(1.0, f64::max)
    }

    /// Emits everything in `[now, until)` and appends the lines that have
    /// arrived by `until` to `out`, in arrival order.
    pub fn advance(&mut self, until: EventTime, out: &mut Vec<Vec<u8>>) {
        let (t0, t1) = (self.now, until);
        if t1 <= t0 {
            return;
        }
        let dt_s = (t1.millis() - t0.millis()) as f64 / 1000.0;
        self.lifecycle(t0, t1);
        self.background(t0, t1, dt_s);
        if self.chronic.is_some() {
            self.chronic_background(t0, t1, dt_s);
        }
        self.fault_events(t0, t1, dt_s);
        let evs = std::mem::take(&mut self.buf);
        for ev in evs {
            self.publish(ev);
        }
        self.now = t1;
        while let Some(e) = self.pending.first_entry() {
            if e.key().0 >= t1.millis() {
                break;
            }
            out.push(e.remove());
        }
    }

    /// Delivers everything still in flight (end of the run).
    pub fn drain(&mut self, out: &mut Vec<Vec<u8>>) {
        while let Some((_, line)) = self.pending.pop_first() {
            out.push(line);
        }
    }

    /// Onsets, ends, planned changes.
    fn lifecycle(&mut self, t0: EventTime, t1: EventTime) {
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
    fn change_event(&mut self, service: &str, what: &str, at: EventTime, to: Option<String>) {
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
    fn rollout_blip(&mut self, service: &str, at: EventTime) {
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

    fn background(&mut self, t0: EventTime, t1: EventTime, dt_s: f64) {
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

    fn fault_events(&mut self, t0: EventTime, t1: EventTime, dt_s: f64) {
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
                let on_node: Vec<(&Service, &Instance)> = self
                    .fleet
                    .services
                    .values()
                    .flat_map(|s| {
                        s.instances
                            .iter()
                            .filter(|x| x.node == plan.root)
                            .map(move |x| (s, x))
                    })
                    .collect();
                if on_node.is_empty() {
                    return;
                }
                let (s, inst) = *self.rng.pick(&on_node);
                let tpl = *self.rng.pick(network_lines(s.lang));
                let dep = pick_dep(&mut self.rng, s);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let mut ev = make(
                    &mut self.rng,
                    t,
                    s,
                    Some(inst),
                    &tpl,
                    &dep,
                    &dep_ns,
                    Some(trace.clone()),
                );
                if !dep.is_empty() && self.rng.chance(0.7) {
                    ev.upstream = Some(dep);
                }
                evs.push(ev);
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
                    self.proxies_log(g, tg, trace, 0.8, out);
                }
            }
        }
    }

    /// Encodes `ev` (maybe malformed) and queues it for delivery.
    fn publish(&mut self, mut ev: ErrorEvent) {
        self.generated += 1;
        if self.chronic.is_some() {
            production::decorate(&mut ev, &self.fleet);
        }
        let enc = self
            .fleet
            .get(&ev.service)
            .map_or(Encoding::Canonical, |s| s.encoding);
        let line = if self.rng.chance(self.cfg.malformed_rate) {
            self.malformed += 1;
            malformed(&mut self.rng, &ev)
        } else {
            encode(&ev, enc, &mut self.rng)
        };
        let arrival = ev.time.millis() + self.rng.int(0, MAX_ARRIVAL_JITTER_MS);
        self.seq += 1;
        self.pending.insert((arrival, self.seq), line);
    }

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
            let forward = a
                .params
                .args
                .get("direction")
                .is_some_and(|d| d == "forward");
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

pub(super) fn uniform_time(rng: &mut Rng, t0: EventTime, t1: EventTime) -> EventTime {
    EventTime(t0.millis() + rng.below((t1.millis() - t0.millis()).max(1) as u64) as i64)
}

fn bump(v: &str, rng: &mut Rng) -> String {
    match v.rsplit_once('.') {
        Some((head, last)) if last.parse::<u32>().is_ok() => {
            format!("{head}.{}", last.parse::<u32>().unwrap_or(0) + 1)
        }
        _ => format!("{}{}", &v[..v.len().min(4)], k8s_suffix(rng, 7)),
    }
}

pub(super) fn pick_instance<'a>(rng: &mut Rng, s: &'a Service) -> Option<&'a Instance> {
    if s.instances.is_empty() {
        None
    } else {
        Some(rng.pick(&s.instances))
    }
}

/// A dependency of `s` (internal or external), or `""` when it has none.
pub(super) fn pick_dep(rng: &mut Rng, s: &Service) -> String {
    let n = s.calls.len() + s.externals.len();
    if n == 0 {
        return String::new();
    }
    let i = rng.below(n as u64) as usize;
    if i < s.calls.len() {
        s.calls[i].clone()
    } else {
        s.externals[i - s.calls.len()].clone()
    }
}

/// Builds one event from a template.
#[allow(clippy::too_many_arguments)]
pub(super) fn make(
    rng: &mut Rng,
    t: EventTime,
    s: &Service,
    inst: Option<&Instance>,
    tpl: &Tpl,
    dep: &str,
    dep_ns: &str,
    trace: Option<String>,
) -> ErrorEvent {
    let pod = inst.map_or("", |i| i.pod.as_str());
    let node = inst.map_or("", |i| i.node.as_str());
    let ctx = Ctx {
        svc: &s.name,
        ns: &s.namespace,
        dep,
        dep_ns,
        pod,
        node,
        now: t,
    };
    let msg = fill(tpl.msg, rng, &ctx);
    let mut ev = ErrorEvent::new(uuid(rng), t, &s.name, tpl.sev, msg);
    ev.namespace = Some(s.namespace.clone());
    ev.cluster = Some("prod-eu-west-1".into());
    ev.environment = Some("production".into());
    ev.instance = inst.map(|i| i.pod.clone());
    ev.node = inst.map(|i| i.node.clone());
    ev.version = Some(s.version.clone());
    ev.error_type = tpl.error_type.map(str::to_string);
    ev.http_status = tpl.status;
    if let Some(st) = tpl.stack {
        ev.stack_trace = Some(fill(st, rng, &ctx));
    }
    if trace.is_some() {
        ev.span_id = Some(span_id(rng));
    }
    ev.trace_id = trace;
    if s.lang == Lang::Proxy {
        ev.latency_ms = Some(rng.int(1, 900) as f64);
    }
    ev
}

#[derive(Serialize)]
struct Legacy<'a> {
    id: &'a str,
    time: i64,
    service: &'a str,
    severity: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack_trace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    logger: &'static str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    attributes: &'a BTreeMap<String, String>,
}

/// Encodes an event in one of the two producer styles.
fn encode(ev: &ErrorEvent, enc: Encoding, rng: &mut Rng) -> Vec<u8> {
    let r = match enc {
        Encoding::Canonical => serde_json::to_vec(ev),
        Encoding::Legacy => serde_json::to_vec(&Legacy {
            id: &ev.id,
            time: ev.time.millis(),
            service: &ev.service,
            severity: match ev.severity {
                Severity::Debug => "DEBUG",
                Severity::Info => "INFO",
                Severity::Warning => "WARN",
                Severity::Error => "ERROR",
                Severity::Critical => "FATAL",
            },
            message: &ev.message,
            kind: (ev.kind == EventKind::Change).then_some("change"),
            namespace: ev.namespace.as_deref(),
            instance: ev.instance.as_deref(),
            node: ev.node.as_deref(),
            version: ev.version.as_deref(),
            error_type: ev.error_type.as_deref(),
            stack_trace: ev.stack_trace.as_deref(),
            http_status: ev.http_status,
            latency_ms: ev.latency_ms,
            upstream: ev.upstream.as_deref(),
            trace_id: ev.trace_id.as_deref(),
            logger: if rng.chance(0.5) { "app" } else { "root" },
            attributes: &ev.attributes,
        }),
        Encoding::Zoned => production::encode_zoned(ev),
        Encoding::Shipper => production::encode_shipper(ev, rng),
    };
    r.unwrap_or_default()
}

/// A broken rendering of `ev`: what buggy producers publish.
fn malformed(rng: &mut Rng, ev: &ErrorEvent) -> Vec<u8> {
    let good = serde_json::to_vec(ev).unwrap_or_default();
    match rng.below(5) {
        0 => {
            let cut = (good.len() / 2).max(1);
            good[..cut.min(good.len())].to_vec()
        }
        1 => format!(
            "{{\"id\":\"{}\",\"time\":\"{}\",\"severity\":\"error\",\"message\":{}}}",
            ev.id,
            ev.time,
            serde_json::to_string(&ev.message).unwrap_or_default()
        )
        .into_bytes(),
        2 => format!(
            "{{\"id\":\"{}\",\"time\":\"{}\",\"service\":\"{}\",\"severity\":3,\"message\":\"x\"}}",
            ev.id, ev.time, ev.service
        )
        .into_bytes(),
        3 => format!(
            "{} ERROR [{}] {}",
            ev.time,
            ev.service,
            ev.message.lines().next().unwrap_or("")
        )
        .into_bytes(),
        _ => {
            let mut b = good;
            let at = b.len() / 3;
            b.insert(at, 0xff);
            b.insert(at, 0xfe);
            b
        }
    }
}

/// The category of fault a plan injects (shorthand for reports).
pub fn category_of(f: &FaultPlan) -> crate::model::Category {
    f.kind.category()
}

/// Re-exported for reports.
pub use faults::expected_action;
