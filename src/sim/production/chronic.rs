//! The chronic background of a production fleet: every dependency edge
//! failing a small, slowly drifting, diurnal share of calls (with the
//! upstream's own error on the same trace and the 5xx passed up through
//! proxies), short retry storms, cron jobs failing loudly for minutes,
//! repeating Kubernetes warning events, the noisy services' own errors,
//! every service's occasional network errors of its own (a reset or a DNS
//! timeout now and then, from whichever node its pod runs on) and short
//! harmless network blips on one node (seconds of DNS trouble that heal
//! themselves: not a fault).
//! [`Chronic::new`] plans it for the run; [`Chronic::emit`] emits one
//! interval of it.
//!
//! Guarantees: planning draws only from the profile's own stream (so the
//! demo profile's draws are untouched); emission draws only from the
//! world's stream it is lent, in a fixed order, and never touches the
//! world itself.

use super::templates::{CRONS, HOT, K8S_WARN, RETRY, UPSTREAM_OWN};
use crate::model::{ErrorEvent, EventTime};
use crate::sim::emit::{make, pick_dep, pick_instance, uniform_time};
use crate::sim::faults::{caller_lines, external_lines, own_network_error, Symptom};
use crate::sim::fleet::{daily_traffic, Fleet, Instance, Lang};
use crate::sim::gen::Rng;
use crate::sim::noise;
use crate::sim::text::{k8s_suffix, trace_id};

use Lang::{Go, Java, Node, Proxy, Python};

/// One dependency edge and its chronic failure rate.
#[derive(Debug, Clone)]
struct Edge {
    caller: String,
    upstream: String,
    external: bool,
    /// Failures/s at peak traffic.
    base: f64,
    symptom: Symptom,
    /// Slow drift: (amplitude, period ms, phase) pairs.
    drift: [(f64, f64, f64); 2],
}

impl Edge {
    fn rate(&self, t: EventTime, traffic: f64) -> f64 {
        let x = t.millis() as f64;
        let d: f64 = self
            .drift
            .iter()
            .map(|(a, p, ph)| a * (2.0 * std::f64::consts::PI * x / p + ph).sin())
            .sum();
        self.base * traffic * (1.0 + d).max(0.05)
    }
}

/// A short burst of retries on one edge.
#[derive(Debug, Clone)]
struct Storm {
    start: EventTime,
    end: EventTime,
    edge: usize,
    /// Events/s while it lasts.
    rate: f64,
    traces: Vec<String>,
}

/// A window during which a cron job runs and fails loudly.
#[derive(Debug, Clone)]
struct CronRun {
    service: &'static str,
    start: EventTime,
    end: EventTime,
    rate: f64,
    /// A Kubernetes CronJob run logs from a pod of its own, named as the Job
    /// controller names it (`<cronjob>-<scheduled minute>-<5 chars>`); a
    /// scheduled task inside a long-running service logs from that
    /// service's pods (`None`).
    pod: Option<Instance>,
}

/// A Kubernetes warning event repeating on one workload.
#[derive(Debug, Clone)]
struct K8sEpisode {
    service: String,
    start: EventTime,
    end: EventTime,
    /// Mean seconds between repeats.
    every_s: f64,
    reason: usize,
}

/// A few seconds of network trouble on one node that heal by themselves.
#[derive(Debug, Clone)]
struct Blip {
    node: String,
    start: EventTime,
    end: EventTime,
    /// Events/s over the node's pods while it lasts.
    rate: f64,
}

/// The chronic background of a production fleet, planned in advance.
#[derive(Debug, Clone)]
pub struct Chronic {
    edges: Vec<Edge>,
    storms: Vec<Storm>,
    crons: Vec<CronRun>,
    k8s: Vec<K8sEpisode>,
    /// Per service, its own network errors per second at peak traffic.
    resets: Vec<(String, f64)>,
    blips: Vec<Blip>,
    volume: f64,
}

fn lang_index(l: Lang) -> usize {
    match l {
        Java => 0,
        Go => 1,
        Python => 2,
        Node => 3,
        Proxy => 4,
    }
}

fn drift(rng: &mut Rng) -> [(f64, f64, f64); 2] {
    [
        (
            rng.range(0.3, 0.7),
            rng.range(60.0, 240.0) * 60_000.0,
            rng.range(0.0, std::f64::consts::TAU),
        ),
        (
            rng.range(0.15, 0.35),
            rng.range(10.0, 30.0) * 60_000.0,
            rng.range(0.0, std::f64::consts::TAU),
        ),
    ]
}

impl Chronic {
    /// Plans the chronic background of `fleet` over `[start, end)`.
    pub fn new(
        rng: &mut Rng,
        fleet: &Fleet,
        start: EventTime,
        end: EventTime,
        volume: f64,
    ) -> Chronic {
        let mut edges = Vec::new();
        for s in fleet.services.values() {
            let deps = s
                .calls
                .iter()
                .map(|c| (c, false))
                .chain(s.externals.iter().map(|e| (e, true)));
            for (u, external) in deps {
                let base = if external {
                    (rng.range(0.003f64.ln(), 0.02f64.ln())).exp()
                } else if rng.chance(0.1) {
                    rng.range(0.05, 0.12)
                } else {
                    (rng.range(0.002f64.ln(), 0.03f64.ln())).exp()
                };
                let r = rng.f64();
                let symptom = if r < 0.45 {
                    Symptom::Timeout
                } else if r < 0.8 {
                    Symptom::ServerError
                } else if r < 0.92 {
                    Symptom::Refused
                } else {
                    Symptom::NoHealthy
                };
                edges.push(Edge {
                    caller: s.name.clone(),
                    upstream: u.clone(),
                    external,
                    base,
                    symptom,
                    drift: drift(rng),
                });
            }
        }
        let mut storms = Vec::new();
        let mut t = start.plus_ms(rng.int(5, 20) * 60_000);
        while t < end && !edges.is_empty() {
            let len = rng.int(5, 60) * 1000;
            let count = rng.int(20, 100) as f64;
            let traces = (0..rng.int(3, 8)).map(|_| trace_id(rng)).collect();
            storms.push(Storm {
                start: t,
                end: t.plus_ms(len),
                edge: rng.below(edges.len() as u64) as usize,
                rate: count / (len as f64 / 1000.0),
                traces,
            });
            t = t.plus_ms(rng.int(8, 30) * 60_000 + rng.int(0, 59_000));
        }
        let mut crons = Vec::new();
        let hour_ms = 3_600_000;
        let first_hour = start.millis().div_euclid(hour_ms) * hour_ms;
        for &(service, every, minute, (lo, hi), rate, _, cronjob) in CRONS {
            let Some(svc) = fleet.get(service) else {
                continue;
            };
            let mut h = first_hour;
            while h < end.millis() {
                let hour_of_day = h.rem_euclid(86_400_000) / hour_ms;
                if hour_of_day % every == 0 {
                    let scheduled = h + minute * 60_000;
                    let s = EventTime(scheduled + rng.int(0, 20_000));
                    if s >= start && s < end {
                        let pod = (cronjob && !svc.instances.is_empty()).then(|| Instance {
                            pod: format!("{service}-{}-{}", scheduled / 60_000, k8s_suffix(rng, 5)),
                            node: rng.pick(&svc.instances).node.clone(),
                        });
                        crons.push(CronRun {
                            service,
                            start: s,
                            end: s.plus_ms(rng.int(lo * 60, hi * 60) * 1000),
                            rate: rate * rng.range(0.7, 1.3),
                            pod,
                        });
                    }
                }
                h += hour_ms;
            }
        }
        let mut k8s = Vec::new();
        for s in fleet.services.values() {
            let mut t = start.plus_ms(rng.int(0, 90) * 60_000);
            while t < end {
                let len = rng.int(1, 10) * 60_000;
                k8s.push(K8sEpisode {
                    service: s.name.clone(),
                    start: t,
                    end: t.plus_ms(len),
                    every_s: rng.range(20.0, 90.0),
                    reason: rng.below(K8S_WARN.len() as u64) as usize,
                });
                t = t.plus_ms(rng.int(30, 120) * 60_000);
            }
        }
        // Every service loses a connection or a DNS lookup now and then
        // (a few to tens an hour, some much more), on the node its pod is on.
        let resets = fleet
            .services
            .values()
            .map(|s| {
                let r = if rng.chance(0.1) {
                    rng.range(0.02, 0.06)
                } else {
                    (rng.range(0.001f64.ln(), 0.015f64.ln())).exp()
                };
                (s.name.clone(), r)
            })
            .collect();
        let mut blips = Vec::new();
        let mut t = start.plus_ms(rng.int(10, 60) * 60_000);
        while t < end && !fleet.nodes.is_empty() {
            let len = rng.int(3, 15) * 1000;
            blips.push(Blip {
                node: rng.pick(&fleet.nodes).clone(),
                start: t,
                end: t.plus_ms(len),
                rate: rng.range(0.3, 1.0),
            });
            t = t.plus_ms(rng.int(30, 120) * 60_000 + rng.int(0, 59_000));
        }
        Chronic {
            edges,
            storms,
            crons,
            k8s,
            resets,
            blips,
            volume,
        }
    }
}

fn overlap(a0: EventTime, a1: EventTime, b0: EventTime, b1: EventTime) -> f64 {
    let lo = a0.max(b0).millis();
    let hi = a1.min(b1).millis();
    ((hi - lo).max(0)) as f64 / 1000.0
}

fn random_symptom(rng: &mut Rng) -> Symptom {
    *rng.pick(&[
        Symptom::Timeout,
        Symptom::ServerError,
        Symptom::Refused,
        Symptom::Timeout,
        Symptom::ServerError,
    ])
}

/// The world's seeded stream and fleet, lent for one interval: what the
/// chronic background draws from and describes.
struct Emitter<'a> {
    rng: &'a mut Rng,
    fleet: &'a Fleet,
}

impl Chronic {
    /// The chronic background of `[t0, t1)`, drawn from the world's stream
    /// `rng` (the world queues it after its own background).
    pub(in crate::sim) fn emit(
        &self,
        rng: &mut Rng,
        fleet: &Fleet,
        t0: EventTime,
        t1: EventTime,
        dt_s: f64,
    ) -> Vec<ErrorEvent> {
        Emitter { rng, fleet }.chronic_background(self, t0, t1, dt_s)
    }
}

/// Proxies in front of `svc` log the 5xx it returned (each with
/// probability `p`), and proxies in front of them in turn (the world's
/// cascades, production profile).
pub(in crate::sim) fn proxies_log(
    rng: &mut Rng,
    fleet: &Fleet,
    svc: &str,
    t: EventTime,
    trace: &str,
    p: f64,
    out: &mut Vec<ErrorEvent>,
) {
    Emitter { rng, fleet }.proxies_log(svc, t, trace, p, out);
}

impl Emitter<'_> {
    /// Emits the chronic background of `[t0, t1)` (production profile).
    fn chronic_background(
        &mut self,
        ch: &Chronic,
        t0: EventTime,
        t1: EventTime,
        dt_s: f64,
    ) -> Vec<ErrorEvent> {
        let mid = EventTime((t0.millis() + t1.millis()) / 2);
        let traffic = daily_traffic(mid);
        let mut out = Vec::new();
        for e in &ch.edges {
            let n = self.rng.poisson(e.rate(mid, traffic) * ch.volume * dt_s);
            for _ in 0..n {
                let t = uniform_time(self.rng, t0, t1);
                let sym = if self.rng.chance(0.7) {
                    e.symptom
                } else {
                    random_symptom(self.rng)
                };
                let trace = trace_id(self.rng);
                self.edge_failure(e, sym, t, &trace, false, &mut out);
            }
        }
        for s in &ch.storms {
            let secs = overlap(s.start, s.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let Some(e) = ch.edges.get(s.edge) else {
                continue;
            };
            let (a, b) = (s.start.max(t0), s.end.min(t1));
            for _ in 0..self.rng.poisson(s.rate * secs) {
                let t = uniform_time(self.rng, a, b);
                let trace = self.rng.pick(&s.traces).clone();
                let sym = if self.rng.chance(0.6) {
                    Symptom::Timeout
                } else {
                    e.symptom
                };
                self.edge_failure(e, sym, t, &trace, true, &mut out);
            }
        }
        for c in &ch.crons {
            let secs = overlap(c.start, c.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let lines = CRONS
                .iter()
                .find(|x| x.0 == c.service)
                .map_or(&[][..], |x| x.5);
            let Some(svc) = self.fleet.get(c.service) else {
                continue;
            };
            if lines.is_empty() {
                continue;
            }
            let (a, b) = (c.start.max(t0), c.end.min(t1));
            for _ in 0..self.rng.poisson(c.rate * secs * ch.volume) {
                let t = uniform_time(self.rng, a, b);
                let tpl = *self.rng.pick(lines);
                let dep = pick_dep(self.rng, svc);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let inst = match &c.pod {
                    Some(pod) => Some(pod),
                    None => pick_instance(self.rng, svc),
                };
                let trace = trace_id(self.rng);
                let mut ev = make(
                    self.rng,
                    t,
                    svc,
                    inst,
                    &tpl,
                    &dep,
                    &dep_ns,
                    Some(trace.clone()),
                );
                if tpl.upstream && !dep.is_empty() {
                    ev.upstream = Some(dep.clone());
                    // The called service logs the slow request too.
                    if let Some(us) = self.fleet.get(&dep) {
                        if self.rng.chance(0.4) {
                            let own = *self.rng.pick(UPSTREAM_OWN[lang_index(us.lang)]);
                            let inst = pick_instance(self.rng, us);
                            let tu = t.plus_ms(-self.rng.int(5, 400));
                            out.push(make(self.rng, tu, us, inst, &own, "", "", Some(trace)));
                        }
                    }
                }
                ev.attributes
                    .insert("job".into(), format!("{}-cron", c.service));
                out.push(ev);
            }
        }
        for k in &ch.k8s {
            let secs = overlap(k.start, k.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let Some(svc) = self.fleet.get(&k.service) else {
                continue;
            };
            let (reason, tpl) = K8S_WARN[k.reason % K8S_WARN.len()];
            let (a, b) = (k.start.max(t0), k.end.min(t1));
            for _ in 0..self.rng.poisson(secs / k.every_s) {
                let t = uniform_time(self.rng, a, b);
                let inst = pick_instance(self.rng, svc);
                let mut ev = make(self.rng, t, svc, inst, &tpl, "", "", None);
                if reason == "FailedScheduling" {
                    ev.instance = None;
                    ev.node = None;
                }
                ev.version = None;
                ev.attributes.insert("reason".into(), reason.into());
                ev.attributes
                    .insert("source".into(), "kubernetes-event-exporter".into());
                ev.attributes.insert("involved_object".into(), "Pod".into());
                out.push(ev);
            }
        }
        for (name, rate) in &ch.resets {
            let Some(svc) = self.fleet.get(name) else {
                continue;
            };
            for _ in 0..self.rng.poisson(rate * traffic * ch.volume * dt_s) {
                let t = uniform_time(self.rng, t0, t1);
                let inst = pick_instance(self.rng, svc);
                out.push(own_network_error(self.rng, self.fleet, svc, inst, t, |r| {
                    Some(trace_id(r))
                }));
            }
        }
        for b in &ch.blips {
            let secs = overlap(b.start, b.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let on_node = self.fleet.pods_on(&b.node);
            if on_node.is_empty() {
                continue;
            }
            let (a, z) = (b.start.max(t0), b.end.min(t1));
            for _ in 0..self.rng.poisson(b.rate * secs) {
                let t = uniform_time(self.rng, a, z);
                let (svc, inst) = *self.rng.pick(&on_node);
                out.push(own_network_error(
                    self.rng,
                    self.fleet,
                    svc,
                    Some(inst),
                    t,
                    |r| Some(trace_id(r)),
                ));
            }
        }
        for &(name, rate, diurnal, lines) in HOT {
            let Some(svc) = self.fleet.get(name) else {
                continue;
            };
            let shape = if diurnal {
                traffic
            } else {
                0.8 + 0.2 * traffic
            };
            for _ in 0..self.rng.poisson(rate * shape * ch.volume * dt_s) {
                let t = uniform_time(self.rng, t0, t1);
                let tpl = *self.rng.pick(lines);
                let dep = pick_dep(self.rng, svc);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let inst = pick_instance(self.rng, svc);
                let trace = self.rng.chance(0.5).then(|| trace_id(self.rng));
                let mut ev = make(self.rng, t, svc, inst, &tpl, &dep, &dep_ns, trace);
                if tpl.upstream && !dep.is_empty() {
                    ev.upstream = Some(dep);
                }
                out.push(ev);
            }
        }
        out
    }

    /// One failed call on edge `e`: the upstream's own harmless error, the
    /// caller's error naming the upstream, and the 5xx passed further up.
    fn edge_failure(
        &mut self,
        e: &Edge,
        sym: Symptom,
        t: EventTime,
        trace: &str,
        storm: bool,
        out: &mut Vec<ErrorEvent>,
    ) {
        let Some(cs) = self.fleet.get(&e.caller) else {
            return;
        };
        let dep_ns = self.fleet.namespace_of(&e.upstream).to_string();
        if !e.external && !storm {
            let p_own = match sym {
                Symptom::ServerError => 0.6,
                Symptom::Timeout => 0.4,
                _ => 0.1,
            };
            if let Some(us) = self.fleet.get(&e.upstream) {
                if self.rng.chance(p_own) {
                    let tpl = if self.rng.chance(0.6) {
                        *self.rng.pick(UPSTREAM_OWN[lang_index(us.lang)])
                    } else {
                        *self.rng.pick(noise::templates(us.lang).0)
                    };
                    let dep = pick_dep(self.rng, us);
                    let dns = self.fleet.namespace_of(&dep).to_string();
                    let inst = pick_instance(self.rng, us);
                    let tu = t.plus_ms(-self.rng.int(5, 600));
                    let mut ev = make(
                        self.rng,
                        tu,
                        us,
                        inst,
                        &tpl,
                        &dep,
                        &dns,
                        Some(trace.to_string()),
                    );
                    if tpl.upstream && !dep.is_empty() {
                        ev.upstream = Some(dep);
                    }
                    out.push(ev);
                }
            }
        }
        let tpl = if storm && self.rng.chance(0.3) {
            *self.rng.pick(RETRY[lang_index(cs.lang)])
        } else if e.external {
            *self.rng.pick(external_lines(&e.upstream, cs.lang))
        } else {
            *self.rng.pick(caller_lines(sym, cs.lang))
        };
        let inst = pick_instance(self.rng, cs);
        let mut ev = make(
            self.rng,
            t,
            cs,
            inst,
            &tpl,
            &e.upstream,
            &dep_ns,
            Some(trace.to_string()),
        );
        if self.rng.chance(0.92) {
            ev.upstream = Some(e.upstream.clone());
        }
        out.push(ev);
        if !storm && self.rng.chance(0.35) {
            self.propagate(&e.caller, t, trace, out);
        }
    }

    /// A failure at `failed` surfaces as a 5xx at its callers, hop by hop;
    /// a proxy logs every one it passes on.
    fn propagate(&mut self, failed: &str, t: EventTime, trace: &str, out: &mut Vec<ErrorEvent>) {
        let mut failed = failed.to_string();
        let mut t = t;
        for _ in 0..3 {
            let callers: Vec<String> = self
                .fleet
                .callers(&failed)
                .iter()
                .map(|s| s.name.clone())
                .collect();
            if callers.is_empty() {
                return;
            }
            let g = self.rng.pick(&callers).clone();
            let Some(gs) = self.fleet.get(&g) else {
                return;
            };
            t = t.plus_ms(self.rng.int(5, 300));
            let proxy = gs.lang == Proxy;
            if proxy || self.rng.chance(0.5) {
                let tpl = *self.rng.pick(caller_lines(Symptom::ServerError, gs.lang));
                let ns = self.fleet.namespace_of(&failed).to_string();
                let inst = pick_instance(self.rng, gs);
                let mut ev = make(
                    self.rng,
                    t,
                    gs,
                    inst,
                    &tpl,
                    &failed,
                    &ns,
                    Some(trace.to_string()),
                );
                ev.upstream = Some(failed.clone());
                out.push(ev);
            }
            if !proxy && !self.rng.chance(0.5) {
                return;
            }
            failed = g;
        }
    }

    /// Proxies in front of `svc` log the 5xx it returned (each with
    /// probability `p`), and proxies in front of them in turn.
    fn proxies_log(
        &mut self,
        svc: &str,
        t: EventTime,
        trace: &str,
        p: f64,
        out: &mut Vec<ErrorEvent>,
    ) {
        let mut front = vec![(svc.to_string(), t)];
        for _ in 0..2 {
            let mut next = Vec::new();
            for (s, ts) in &front {
                let proxies: Vec<String> = self
                    .fleet
                    .callers(s)
                    .iter()
                    .filter(|c| c.lang == Proxy)
                    .map(|c| c.name.clone())
                    .collect();
                for px in proxies {
                    if !self.rng.chance(p) {
                        continue;
                    }
                    let Some(ps) = self.fleet.get(&px) else {
                        continue;
                    };
                    let tp = ts.plus_ms(self.rng.int(5, 200));
                    let tpl = *self.rng.pick(caller_lines(Symptom::ServerError, Proxy));
                    let ns = self.fleet.namespace_of(s).to_string();
                    let inst = pick_instance(self.rng, ps);
                    let mut ev = make(
                        self.rng,
                        tp,
                        ps,
                        inst,
                        &tpl,
                        s,
                        &ns,
                        Some(trace.to_string()),
                    );
                    ev.upstream = Some(s.clone());
                    out.push(ev);
                    next.push((px, tp));
                }
            }
            front = next;
        }
    }
}
