//! The production profile's schedule: the fault plan (onsets 20-45
//! minutes apart, every fourth overlapping the one before, intermittent
//! faults, faults on noisy services, quiet roots with loud callers) and
//! the harmless deploys, ConfigMap changes and autoscaler events all day.
//!
//! Guarantees: the plan fits the run (gaps are compressed when needed,
//! onsets leave the tail); no harmless change lands on a fault's root from
//! 30 minutes before its onset to 15 minutes after its fix.

use super::templates::HOT;
use crate::model::{Category, EventTime};
use crate::sim::faults::{self, FaultKind, FaultPlan, RootKind, Shape};
use crate::sim::fleet::{Fleet, Service};
use crate::sim::gen::Rng;

/// Minutes kept after the last onset (the last fault runs and settles).
const TAIL_MIN: i64 = 40;
/// Onset spacing of faults that do not overlap, in minutes.
const GAP_MIN: (i64, i64) = (20, 45);

/// The most faults that fit in `hours` of the production profile.
pub fn max_faults(hours: f64) -> usize {
    let usable = hours * 60.0 - (faults::WARMUP_MIN + TAIL_MIN) as f64;
    // Three in four faults take at least GAP_MIN.0 (less when compressed, 15).
    ((usable / 12.0).floor().max(0.0) as usize).saturating_add(1)
}

/// The services with a high chronic error rate (noisy baselines).
pub fn noisy_services() -> impl Iterator<Item = &'static str> {
    HOT.iter().map(|h| h.0)
}

fn is_overlap(i: usize) -> bool {
    i % 4 == 2
}

/// Plans `n` faults over `[start, start + hours)`: categories cycle through
/// the taxonomy in a seeded order (or through `only`), onsets 20-45 minutes
/// apart except that every fourth fault starts 2-8 minutes after the one
/// before (overlapping; every other such pair on services sharing a
/// caller). Some faults are intermittent, some sit on a noisy service,
/// some have a quiet root with loud callers.
pub fn plan(
    rng: &mut Rng,
    fleet: &Fleet,
    start: EventTime,
    hours: f64,
    n: usize,
    only: &[Category],
) -> Vec<FaultPlan> {
    let mut cats: Vec<Category> = Category::ALL.to_vec();
    for i in (1..cats.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        cats.swap(i, j);
    }
    if !only.is_empty() {
        cats = only.to_vec();
    }
    // Onsets.
    let mut gaps: Vec<i64> = (0..n)
        .map(|i| match i {
            0 => 0,
            _ if is_overlap(i) => rng.int(2, 8),
            _ => rng.int(GAP_MIN.0, GAP_MIN.1),
        })
        .collect();
    let avail = (hours * 60.0) as i64 - faults::WARMUP_MIN - TAIL_MIN;
    let total: i64 = gaps.iter().sum();
    if total > avail && total > 0 {
        let long: i64 = (0..n)
            .filter(|&i| i > 0 && !is_overlap(i))
            .map(|i| gaps[i])
            .sum();
        let short = total - long;
        let scale = (avail - short).max(0) as f64 / long.max(1) as f64;
        for (i, g) in gaps.iter_mut().enumerate() {
            if i > 0 && !is_overlap(i) {
                *g = ((*g as f64 * scale) as i64).max(10);
            }
        }
    }
    let called: Vec<String> = fleet
        .services
        .keys()
        .filter(|s| !fleet.callers(s).is_empty())
        .cloned()
        .collect();
    let all: Vec<String> = fleet.services.keys().cloned().collect();
    let consumers: Vec<String> = fleet
        .services
        .values()
        .filter(|s| s.consumer)
        .map(|s| s.name.clone())
        .collect();
    let externals: Vec<String> = fleet.externals.keys().cloned().collect();
    // Noisy roots: the called services erring up to twice a second all day
    // (a fault there runs at 3-4 times that).
    let hot: Vec<String> = HOT
        .iter()
        .filter(|h| h.1 <= 2.0 && called.iter().any(|c| c == h.0))
        .map(|h| h.0.to_string())
        .collect();
    let mut out: Vec<FaultPlan> = Vec::with_capacity(n);
    let mut onset_min = faults::WARMUP_MIN;
    for (i, gap) in gaps.iter().enumerate() {
        onset_min += gap;
        let cat = cats[i % cats.len()];
        let kind = *rng.pick(FaultKind::of(cat));
        let onset = start.plus_ms(onset_min * 60_000 + rng.int(0, 59_000));
        let busy: Vec<String> = out
            .iter()
            .filter(|f| f.human_fix_at.plus_ms(30 * 60_000) > onset)
            .map(|f| f.root.clone())
            .collect();
        let service_root = !matches!(
            kind,
            FaultKind::ExternalDown | FaultKind::NodeNetwork | FaultKind::PoisonMessages
        );
        // A sibling of the previous root: both called by one service.
        let sibling = if is_overlap(i) && i % 8 == 2 && service_root {
            out.last().and_then(|prev| {
                let shared: Vec<&Service> = fleet.callers(&prev.root);
                let mut cands: Vec<String> = shared
                    .iter()
                    .flat_map(|c| c.calls.iter())
                    .filter(|s| **s != prev.root && !busy.contains(s))
                    .cloned()
                    .collect();
                cands.sort();
                cands.dedup();
                (!cands.is_empty()).then(|| rng.pick(&cands).clone())
            })
        } else {
            None
        };
        let noisy = (i % 5 == 3) && service_root && kind != FaultKind::ScaledToZero;
        let (root, root_kind) = match sibling {
            Some(s) => (s, RootKind::Service),
            None => {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let (r, k) = match kind {
                        FaultKind::ExternalDown => {
                            (rng.pick(&externals).clone(), RootKind::External)
                        }
                        FaultKind::NodeNetwork => (rng.pick(&fleet.nodes).clone(), RootKind::Node),
                        FaultKind::PoisonMessages => {
                            (rng.pick(&consumers).clone(), RootKind::Service)
                        }
                        _ if noisy && !hot.is_empty() => {
                            (rng.pick(&hot).clone(), RootKind::Service)
                        }
                        FaultKind::Opaque => (rng.pick(&all).clone(), RootKind::Service),
                        _ => (rng.pick(&called).clone(), RootKind::Service),
                    };
                    if !busy.contains(&r) || tries > 50 {
                        break (r, k);
                    }
                }
            }
        };
        let intermittent = (i % 3 == 1).then(|| (rng.int(60, 180) * 1000, rng.int(60, 240) * 1000));
        let mut shape = Shape {
            intermittent,
            ..Shape::default()
        };
        let on_noisy = noisy_services().any(|h| h == root);
        if i % 4 == 1 && !on_noisy && root_kind == RootKind::Service {
            shape.root_share = rng.range(0.1, 0.3);
            shape.caller_repeat = rng.int(3, 5) as u32;
        }
        let long = if shape.intermittent.is_some() { 2 } else { 1 };
        let natural_end = kind
            .self_ending()
            .then(|| onset.plus_ms(rng.int(8 * 60, 20 * 60) * 1000 * long));
        let human_fix_at = onset.plus_ms(rng.int(14 * 60, 30 * 60) * 1000 * long);
        let mut rate = rng.range(1.0, 2.5);
        if on_noisy {
            // Several times the noisy service's own chronic error rate.
            let base = HOT.iter().find(|h| h.0 == root).map_or(1.0, |h| h.1);
            rate = rate.max(base * rng.range(3.0, 4.0));
        }
        out.push(FaultPlan {
            id: format!("F{:02}", i + 1),
            kind,
            root,
            root_kind,
            onset,
            natural_end,
            human_fix_at,
            rate,
            shape,
        });
    }
    out
}

/// Harmless changes all day: deploys, ConfigMap changes and autoscaler
/// events every 5-15 minutes, plus a change on a neighbour of every other
/// fault's root 1-5 minutes before its onset. Never on a fault's root from
/// 30 minutes before its onset to 15 minutes after its fix (so a change on
/// the root before its fault is the fault's own change).
pub fn changes(
    rng: &mut Rng,
    fleet: &Fleet,
    plans: &[&FaultPlan],
    start: EventTime,
    end: EventTime,
) -> Vec<(EventTime, String, &'static str)> {
    let names: Vec<String> = fleet.services.keys().cloned().collect();
    let clash = |s: &str, t: EventTime| {
        plans.iter().any(|f| {
            f.root == s
                && t.millis() >= f.onset.millis() - 30 * 60_000
                && t <= f.human_fix_at.plus_ms(15 * 60_000)
        })
    };
    let mut out = Vec::new();
    let mut t = start.plus_ms(rng.int(3, 10) * 60_000);
    while t < end {
        let s = rng.pick(&names).clone();
        let r = rng.f64();
        let what = if r < 0.55 {
            "deploy"
        } else if r < 0.8 {
            "config"
        } else {
            "scale"
        };
        if !clash(&s, t) {
            out.push((t, s, what));
        }
        t = t.plus_ms(rng.int(5, 15) * 60_000 + rng.int(0, 59_000));
    }
    for (i, f) in plans.iter().enumerate() {
        if i % 2 == 1 {
            continue;
        }
        let mut near: Vec<String> = match f.root_kind {
            RootKind::Service => fleet
                .callers(&f.root)
                .iter()
                .map(|s| s.name.clone())
                .chain(fleet.get(&f.root).into_iter().flat_map(|s| s.calls.clone()))
                .collect(),
            RootKind::External => fleet
                .external_callers(&f.root)
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            RootKind::Node => Vec::new(),
        };
        if near.is_empty() {
            near = names.clone();
        }
        let at = f.onset.plus_ms(-rng.int(60, 300) * 1000);
        let s = rng.pick(&near).clone();
        if s != f.root && !clash(&s, at) {
            out.push((at, s, if rng.chance(0.6) { "deploy" } else { "config" }));
        }
    }
    out
}
