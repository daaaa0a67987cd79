//! Building events from templates, shared by the world (background,
//! faults, changes) and the production profile's chronic background: a
//! uniform time in an interval, a random pod of a service, a random
//! dependency, and [`make`], which fills a template into an [`ErrorEvent`]
//! with the service's namespace, pod, node, version and trace.
//!
//! Guarantees: pure functions of their arguments and the seeded stream
//! passed in; nothing here knows about the world or a profile, so both
//! can depend on it without depending on each other.

use super::fleet::{Instance, Lang, Service};
use super::gen::Rng;
use super::noise::Tpl;
use super::text::{fill, span_id, uuid, Ctx};
use crate::model::{ErrorEvent, EventTime};

pub(super) fn uniform_time(rng: &mut Rng, t0: EventTime, t1: EventTime) -> EventTime {
    EventTime(t0.millis() + rng.below((t1.millis() - t0.millis()).max(1) as u64) as i64)
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
