//! The demo profile's fault schedule: one fault per slot after the
//! warm-up, categories in a seeded order (or the requested ones), roots
//! chosen by kind (a called service, an external host, a node, a consumer).
//!
//! Guarantees: slots are equal and leave the warm-up and the tail
//! fault-free; two consecutive faults never share a root.

use super::{FaultKind, FaultPlan, RootKind, Shape};
use crate::model::{Category, EventTime};
use crate::sim::fleet::Fleet;
use crate::sim::gen::Rng;

/// Minutes of fault-free warm-up before the first fault (baselines learn).
pub const WARMUP_MIN: i64 = 45;
/// Minutes kept fault-free after the last fault's slot.
pub const TAIL_MIN: i64 = 30;
/// The shortest spacing between two onsets, in minutes.
pub const MIN_SLOT_MIN: i64 = 36;

/// Services with at least one synchronous caller (so a fault cascades).
fn called(fleet: &Fleet) -> Vec<String> {
    fleet
        .services
        .keys()
        .filter(|s| !fleet.callers(s).is_empty())
        .cloned()
        .collect()
}

/// Plans `n` faults over `[start, start + hours)`. Categories cycle through
/// `only` in order when it is not empty, else through the whole taxonomy in
/// a seeded order (so 11 faults cover all of it).
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
    let total_min = (hours * 60.0) as i64;
    let slot = if n == 0 {
        0
    } else {
        (total_min - WARMUP_MIN - TAIL_MIN) / n as i64
    };
    let called = called(fleet);
    let all: Vec<String> = fleet.services.keys().cloned().collect();
    let consumers: Vec<String> = fleet
        .services
        .values()
        .filter(|s| s.consumer)
        .map(|s| s.name.clone())
        .collect();
    let externals: Vec<String> = fleet.externals.keys().cloned().collect();
    let mut out: Vec<FaultPlan> = Vec::with_capacity(n);
    let mut last_root = String::new();
    for i in 0..n {
        let cat = cats[i % cats.len()];
        let kind = *rng.pick(FaultKind::of(cat));
        let jitter = rng.int(0, (slot / 10).max(0));
        let onset = start.plus_ms((WARMUP_MIN + i as i64 * slot + jitter) * 60_000);
        let (root, root_kind) = loop {
            let (r, k) = match kind {
                FaultKind::ExternalDown => (rng.pick(&externals).clone(), RootKind::External),
                FaultKind::NodeNetwork => (rng.pick(&fleet.nodes).clone(), RootKind::Node),
                FaultKind::PoisonMessages => (rng.pick(&consumers).clone(), RootKind::Service),
                FaultKind::Opaque => (rng.pick(&all).clone(), RootKind::Service),
                _ => (rng.pick(&called).clone(), RootKind::Service),
            };
            if r != last_root {
                break (r, k);
            }
        };
        last_root.clone_from(&root);
        let natural_end = kind
            .self_ending()
            .then(|| onset.plus_ms(rng.int(7 * 60, 14 * 60) * 1000));
        let human_fix_at = onset.plus_ms(rng.int(12 * 60, 18 * 60) * 1000);
        out.push(FaultPlan {
            id: format!("F{:02}", i + 1),
            kind,
            root,
            root_kind,
            onset,
            natural_end,
            human_fix_at,
            rate: rng.range(1.2, 2.5),
            shape: Shape::default(),
        });
    }
    out
}
