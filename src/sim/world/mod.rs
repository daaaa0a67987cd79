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
//!
//! The parts:
//!
//! - this file: the world's state ([`World`], [`FaultState`], [`Note`],
//!   [`WorldConfig`]), the plan of harmless changes and bursts made at
//!   construction, the clock ([`World::advance`]) and delivery (encoding,
//!   malformed share, arrival jitter);
//! - `changes`: fault lifecycles (onsets, ends, the fault's own change
//!   event), planned deploys/config/scale events and rollout blips;
//! - `events`: the steady background and every fault's failures with
//!   their cascades;
//! - `apply`: recovery actions and their effect on the faults;
//! - `encode`: the legacy producer style and the malformed renderings.
//!
//! Event builders shared with the production profile live in
//! `sim::emit`; the production profile's chronic background is called
//! from here and never calls back (no module cycle).

mod apply;
mod changes;
mod encode;
mod events;

use super::faults::{self, FaultPlan};
use super::fleet::{Encoding, Fleet};
use super::gen::Rng;
use super::production::{self, Chronic, Profile};
use crate::model::{ActionStatus, ActionType, ErrorEvent, EventTime};
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
    rng: Rng,
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
    buf: Vec<ErrorEvent>,
    /// The chronic background of the production profile.
    chronic: Option<Box<Chronic>>,
}

/// How the executor's action went.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub status: ActionStatus,
    pub detail: String,
    pub finished_at: EventTime,
}

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
        if let Some(ch) = &self.chronic {
            let evs = ch.emit(&mut self.rng, &self.fleet, t0, t1, dt_s);
            self.buf.extend(evs);
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
            encode::malformed(&mut self.rng, &ev)
        } else {
            encode::encode(&ev, enc, &mut self.rng)
        };
        let arrival = ev.time.millis() + self.rng.int(0, MAX_ARRIVAL_JITTER_MS);
        self.seq += 1;
        self.pending.insert((arrival, self.seq), line);
    }
}

/// The category of fault a plan injects (shorthand for reports).
pub fn category_of(f: &FaultPlan) -> crate::model::Category {
    f.kind.category()
}

/// Re-exported for reports.
pub use faults::expected_action;
