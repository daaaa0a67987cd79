//! `reflex demo`: the simulated fleet, the real pipeline and the simulated
//! executor in one closed loop, narrated as it happens, ending in a report.
//!
//! The loop advances simulated time in steps of [`STEP_MS`]. Each step the
//! [`World`] emits the lines that arrived in it; lines are handed to the
//! pipeline in chunks of exactly `pipeline.batch_size` lines, cut into
//! batches by the same [`Batcher`] as the embedded runtime, decoded,
//! detected, and passed through the [`Decider`] with each batch's watermark —
//! the same batching and the same stage calls as the embedded runtime
//! (`reflex run`) reading the exported file, so a replay of
//! `events.jsonl` reproduces the incidents, actions and escalations record
//! for record. The executor's results go back through
//! [`Decider::action_result`] as soon as the executor has decided them;
//! reflex applies each at the first watermark that reaches its
//! `finished_at` (verification, ladders, undo), so exporting them
//! (`action-results.jsonl`) and replaying with `reflex run
//! --action-results` reproduces the live run record for record.
//!
//! No wall clock is read except to report throughput.

use super::executor::Executor;
use super::faults::{self, FaultKind, RootKind};
use super::fleet::Fleet;
use super::gen::Rng;
pub use super::production::Profile;
use super::report::{self, Report};
use super::truth::TruthRecord;
use super::world::{FixedBy, Note, World, WorldConfig};
use crate::config::Config;
use crate::detectors::DetectStage;
use crate::model::DetectorKind;
use crate::model::{
    ActionResult, ActionStatus, Decision, Detection, EventTime, Incident, IncidentStatus,
};
use crate::pipeline::batcher::Batcher;
use crate::pipeline::stats::Stats;
use crate::pipeline::topology::{DecideOptions, Decider, Topology, TopologyError};
use crate::pipeline::Stage;
use crate::sinks::file::FileSink;
use crate::sinks::{Output, Sink, SinkError};
use crate::telemetry::board::live::LoopObserver;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

/// Simulated time per loop step.
pub const STEP_MS: i64 = 5_000;
/// Where simulated time starts: 2026-03-02T06:00:00Z (a Monday morning).
pub const START: EventTime = EventTime(1_772_431_200_000);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seed: u64,
    /// Faults to inject (categories cycle through the whole taxonomy).
    pub faults: usize,
    /// Simulated hours.
    pub hours: f64,
    /// Write `events.jsonl`, `truth.jsonl` and reflex's outputs here.
    pub export: Option<PathBuf>,
    /// Share of events published malformed.
    pub malformed_rate: f64,
    /// Scales the background volume (1.0 ≈ 20 events/s fleet-wide at peak traffic).
    pub volume: f64,
    /// Print the narrative (the report is always returned).
    pub narrate: bool,
    /// Inject only these categories, cycling in this order (empty: all, seeded order).
    pub categories: Vec<crate::model::Category>,
    /// Which fleet and background (see [`Profile`]).
    pub profile: Profile,
    /// Watches the loop live (`reflex demo --http`); `None`: nothing is told.
    pub observer: Option<Arc<dyn LoopObserver>>,
}

impl DemoOptions {
    /// The defaults of `profile` (its hours and number of faults).
    pub fn for_profile(profile: Profile) -> DemoOptions {
        DemoOptions {
            faults: profile.default_faults(),
            hours: profile.default_hours(),
            profile,
            ..DemoOptions::default()
        }
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            seed: 1,
            faults: 11,
            hours: 8.0,
            export: None,
            malformed_rate: 0.0005,
            volume: 1.0,
            narrate: true,
            categories: Vec::new(),
            profile: Profile::Demo,
            observer: None,
        }
    }
}

/// Why a demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Bad options (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Everything a run produced.
#[derive(Debug)]
pub struct DemoRun {
    pub report: Report,
    /// reflex's records in emission order (detections, incidents, actions, escalations, dead letters).
    pub outputs: Vec<Output>,
    pub truth: Vec<TruthRecord>,
    pub results: Vec<ActionResult>,
}

/// Forwards records to the demo loop and, when exporting, to files.
struct DemoSink {
    tx: Sender<Output>,
    files: Option<FileSink>,
    observer: Option<Arc<dyn LoopObserver>>,
}

impl Sink for DemoSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        if let Some(f) = &mut self.files {
            f.write(out)?;
        }
        if let Some(o) = &self.observer {
            o.output(out);
        }
        // The receiver lives as long as the loop; a send cannot fail before.
        let _ = self.tx.send(out.clone());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        match &mut self.files {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn clock(t: EventTime) -> String {
    let s = t.millis().rem_euclid(86_400_000) / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn dur(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A one-line description of a fault kind for the narrative.
pub fn describe(k: FaultKind) -> &'static str {
    match k {
        FaultKind::BadDeploy => "a new version that throws",
        FaultKind::BadConfig => "a configuration change that breaks start-up",
        FaultKind::MemoryLeak => "a memory leak ending in OOM kills",
        FaultKind::PoolExhausted => "connection pool / file descriptor exhaustion",
        FaultKind::Overload => "a traffic spike beyond capacity",
        FaultKind::ScaledToZero => "scaled to zero by a bad autoscaler decision",
        FaultKind::StuckPods => "pods stuck failing their probes",
        FaultKind::CertExpired => "its serving certificate expired",
        FaultKind::ExternalDown => "external dependency down",
        FaultKind::NodeNetwork => "DNS/network trouble on one node",
        FaultKind::PoisonMessages => "poison messages failing validation",
        FaultKind::Opaque => "an opaque failure nothing recognises",
    }
}

/// The pipeline, driven exactly as the embedded runtime drives it.
struct Driver<'s> {
    batcher: Batcher,
    detect: DetectStage,
    decider: Decider<'s>,
    line_no: u64,
}

const SOURCE: &str = "demo";

impl Driver<'_> {
    fn batch(&mut self, lines: &[Vec<u8>]) -> Result<(), SinkError> {
        let first = self.line_no;
        self.line_no += lines.len() as u64;
        let mut batches = Vec::new();
        self.batcher.feed(
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| ((first + i as u64 + 1) as i64, l.as_slice())),
            SOURCE,
            &mut |b| {
                batches.push(b);
                true
            },
        );
        for b in batches {
            let watermark = b.watermark;
            let (detections, dead) = self.detect.run_batch(b);
            self.decider.run_batch(dead, detections, watermark)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let mut detections = Vec::new();
        self.detect.flush(&mut detections);
        self.decider.detections(detections)?;
        self.decider.finish()
    }
}

/// What the narrator remembers.
#[derive(Default)]
struct Story {
    incidents: BTreeMap<String, Incident>,
    /// (fault index, service) already narrated as detected.
    told: BTreeSet<(usize, String)>,
    per_fault: BTreeMap<usize, usize>,
    stray_detections: usize,
    /// incident → (action description, succeeded at).
    fixed: BTreeMap<String, (String, EventTime)>,
    action_incident: BTreeMap<String, (String, String)>,
}

/// The simulated world of `opts` (fleet, fault plan, background) before
/// the first step: what [`run`] drives, usable alone to inspect the events
/// a profile produces without running the pipeline.
pub fn world(opts: &DemoOptions) -> World {
    let mut rng = Rng::new(opts.seed ^ 0x5eed_0f4e_71e7);
    let fleet = match opts.profile {
        Profile::Demo => Fleet::new(&mut rng.fork(10), opts.volume),
        Profile::Production => super::production::fleet(&mut rng.fork(10), opts.volume),
    };
    let plan = match opts.profile {
        Profile::Demo => faults::plan(
            &mut rng.fork(11),
            &fleet,
            START,
            opts.hours,
            opts.faults,
            &opts.categories,
        ),
        Profile::Production => super::production::plan(
            &mut rng.fork(11),
            &fleet,
            START,
            opts.hours,
            opts.faults,
            &opts.categories,
        ),
    };
    World::new(
        fleet,
        plan,
        WorldConfig {
            start: START,
            end: START.plus_ms((opts.hours * 3_600_000.0) as i64),
            malformed_rate: opts.malformed_rate,
            volume: opts.volume,
            profile: opts.profile,
        },
        &mut rng.fork(12),
    )
}

/// Runs the demo. The narrative goes to `out` (when `opts.narrate`).
pub fn run(cfg: &Config, opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoRun, DemoError> {
    if !(opts.hours.is_finite() && opts.hours >= 1.0 && opts.hours <= 72.0) {
        return Err(DemoError::Usage(format!(
            "--hours must be between 1 and 72 (got {})",
            opts.hours
        )));
    }
    let usable_min = opts.hours * 60.0 - (faults::WARMUP_MIN + faults::TAIL_MIN) as f64;
    let max_faults = match opts.profile {
        Profile::Demo => (usable_min / faults::MIN_SLOT_MIN as f64).floor().max(0.0) as usize,
        Profile::Production => super::production::max_faults(opts.hours),
    };
    if opts.faults > max_faults && opts.profile == Profile::Production {
        return Err(DemoError::Usage(format!(
            "--faults {} does not fit in --hours {} of the production profile: at most {max_faults}",
            opts.faults, opts.hours
        )));
    }
    if opts.faults > max_faults {
        return Err(DemoError::Usage(format!(
            "--faults {} does not fit in --hours {}: at most {max_faults} (each fault needs {} simulated minutes, plus {} of warm-up and {} at the end)",
            opts.faults,
            opts.hours,
            faults::MIN_SLOT_MIN,
            faults::WARMUP_MIN,
            faults::TAIL_MIN
        )));
    }
    if !(0.0..=0.5).contains(&opts.malformed_rate) {
        return Err(DemoError::Usage(
            "the malformed-event rate must be in [0, 0.5]".into(),
        ));
    }
    let wall = Instant::now();
    let end = START.plus_ms((opts.hours * 3_600_000.0) as i64);
    let mut world = world(opts);

    let mut events_file = None;
    let mut files = None;
    if let Some(dir) = &opts.export {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let p = dir.join("events.jsonl");
        let f = std::fs::File::create(&p).map_err(io_err(&p))?;
        events_file = Some((p, std::io::BufWriter::with_capacity(1 << 20, f)));
        files = Some(FileSink::create(&dir.join("demo-out"))?);
    }

    let (tx, rx): (Sender<Output>, Receiver<Output>) = channel();
    let observer = opts.observer.clone();
    let mut sink = DemoSink {
        tx,
        files,
        observer: observer.clone(),
    };
    let stats = observer
        .as_ref()
        .and_then(|o| o.stats())
        .unwrap_or_default();
    let topology = Topology::build(cfg, &DecideOptions::default(), stats.clone())?;
    let mut driver = Driver {
        batcher: topology.decode.into_batcher(),
        detect: topology.detect,
        decider: topology.decide.connect(&mut sink),
        line_no: 0,
    };
    let mut executor = Executor::default();
    let mut story = Story::default();
    let mut outputs: Vec<Output> = Vec::new();
    let mut results: Vec<ActionResult> = Vec::new();
    // Every result in the order reflex was given it (exported for replays).
    let mut fed: Vec<ActionResult> = Vec::new();
    let narrate = opts.narrate;
    let say = |out: &mut dyn Write, line: String| -> Result<(), DemoError> {
        if narrate {
            writeln!(out, "{line}").map_err(|source| DemoError::Io {
                path: "<output>".into(),
                source,
            })?;
        }
        Ok(())
    };

    let services = world.fleet.services.len();
    let namespaces: BTreeSet<&str> = world
        .fleet
        .services
        .values()
        .map(|s| s.namespace.as_str())
        .collect();
    say(
        out,
        format!(
            "reflex demo (seed {}): {} services in {} namespaces on {} nodes, {} external dependencies; {:.1} simulated hours from {}; {} faults",
            opts.seed,
            services,
            namespaces.len(),
            world.fleet.nodes.len(),
            world.fleet.externals.len(),
            opts.hours,
            START,
            opts.faults
        ),
    )?;
    if opts.profile == Profile::Production {
        let zones: BTreeSet<&String> = world.fleet.zones.values().collect();
        say(
            out,
            format!(
                "profile production: {} zones; chronic background on every dependency edge, proxies logging upstream 5xx, retry storms, cron batch jobs, Kubernetes warnings, noisy services ({}); overlapping and intermittent faults",
                zones.len(),
                super::production::noisy_services().collect::<Vec<_>>().join(", ")
            ),
        )?;
    }
    say(
        out,
        format!(
            "[{}] background traffic and harmless errors only for {} minutes: reflex learns each service's normal",
            clock(START),
            faults::WARMUP_MIN
        ),
    )?;

    let batch = cfg.pipeline.batch_size.max(1);
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut arrived: Vec<Vec<u8>> = Vec::new();
    let mut t = START;
    let mut done = false;
    while !done {
        if t < end {
            let next = t.plus_ms(STEP_MS).min(end);
            world.advance(next, &mut arrived);
            t = next;
        } else {
            world.drain(&mut arrived);
            done = true;
        }
        for n in std::mem::take(&mut world.notes) {
            narrate_note(&world, &n, &mut |l| say(out, l))?;
        }
        if let Some((p, w)) = &mut events_file {
            for l in &arrived {
                w.write_all(l).map_err(io_err(p))?;
                w.write_all(b"\n").map_err(io_err(p))?;
            }
        }
        pending.append(&mut arrived);
        let mut start = 0;
        while pending.len() - start >= batch || (done && start < pending.len()) {
            let stop = (start + batch).min(pending.len());
            driver.batch(&pending[start..stop])?;
            start = stop;
            handle(
                &rx,
                &mut outputs,
                &mut story,
                &mut executor,
                &mut world,
                &mut |l| say(out, l),
            )?;
            for r in executor.take_decided() {
                driver.decider.action_result(&r);
                fed.push(r);
            }
        }
        pending.drain(..start);
        let now = if done {
            EventTime(i64::MAX)
        } else {
            world.now()
        };
        for r in executor.completed(now) {
            narrate_result(&mut story, &r, &mut |l| say(out, l))?;
            observer.iter().for_each(|o| o.result(&r));
            results.push(r);
        }
        if let Some(o) = &observer {
            o.step(t, &mut driver.decider)?;
        }
    }
    driver.finish()?;
    handle(
        &rx,
        &mut outputs,
        &mut story,
        &mut executor,
        &mut world,
        &mut |l| say(out, l),
    )?;
    for r in executor.take_decided() {
        driver.decider.action_result(&r);
        fed.push(r);
    }
    for r in executor.remaining() {
        observer.iter().for_each(|o| o.result(&r));
        results.push(r);
    }
    drop(driver);
    observer.iter().for_each(|o| o.finish());
    if let Some((p, mut w)) = events_file {
        w.flush().map_err(io_err(&p))?;
    }

    let truth: Vec<TruthRecord> = world
        .faults
        .iter()
        .map(|f| {
            let ns = world.fleet.get(&f.plan.root).map(|s| s.namespace.clone());
            TruthRecord::of(f, ns)
        })
        .collect();
    if let Some(dir) = &opts.export {
        let p = dir.join("action-results.jsonl");
        let mut buf = Vec::new();
        for r in &fed {
            serde_json::to_writer(&mut buf, r).map_err(|e| DemoError::Io {
                path: p.display().to_string(),
                source: e.into(),
            })?;
            buf.push(b'\n');
        }
        std::fs::write(&p, buf).map_err(io_err(&p))?;
    }
    if let Some(dir) = &opts.export {
        let p = dir.join("truth.jsonl");
        let mut buf = Vec::new();
        for r in &truth {
            serde_json::to_writer(&mut buf, r).map_err(|e| DemoError::Io {
                path: p.display().to_string(),
                source: e.into(),
            })?;
            buf.push(b'\n');
        }
        std::fs::write(&p, buf).map_err(io_err(&p))?;
        write_labelled(dir, &truth)?;
    }
    let mut report = report::score_until(&truth, &outputs, &results, Some(end));
    report.events = Stats::get(&stats.events_in);
    report.dead_letters = Stats::get(&stats.dead_letters);
    report.wall_secs = wall.elapsed().as_secs_f64();
    report.sim_hours = opts.hours;
    Ok(DemoRun {
        report,
        outputs,
        truth,
        results,
    })
}

/// Writes `DIR/labelled.jsonl` (training input of `reflex train`) from the
/// exported events and the truth.
fn write_labelled(dir: &Path, truth: &[TruthRecord]) -> Result<(), DemoError> {
    let src = dir.join("events.jsonl");
    let text = std::fs::read(&src).map_err(io_err(&src))?;
    let events: Vec<crate::model::ErrorEvent> = text
        .split(|b| *b == b'\n')
        .filter_map(|l| crate::codec::json::decode_event(l).ok())
        .collect();
    let p = dir.join("labelled.jsonl");
    let mut buf = Vec::new();
    for inc in super::truth::labelled(truth, &events) {
        let line = crate::diagnosis::classify::labelled_line(&inc).map_err(|e| DemoError::Io {
            path: p.display().to_string(),
            source: e.into(),
        })?;
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    std::fs::write(&p, buf).map_err(io_err(&p))
}

type Say<'a> = dyn FnMut(String) -> Result<(), DemoError> + 'a;

fn narrate_note(world: &World, n: &Note, say: &mut Say<'_>) -> Result<(), DemoError> {
    match n {
        Note::FaultStarted { fault, at } => {
            let Some(f) = world.faults.get(*fault) else {
                return Ok(());
            };
            let p = &f.plan;
            let where_ = match p.root_kind {
                RootKind::Service => {
                    format!("service {}/{}", world.fleet.namespace_of(&p.root), p.root)
                }
                RootKind::External => format!("external dependency {}", p.root),
                RootKind::Node => format!("node {}", p.root),
            };
            say(String::new())?;
            say(format!(
                "[{}] >>> fault {} injected: {} on {where_} ({}; {})",
                clock(*at),
                p.id,
                p.kind.category(),
                describe(p.kind),
                if p.kind.self_ending() {
                    "would end on its own"
                } else {
                    "ends only when fixed"
                }
            ))
        }
        Note::FaultEnded { fault, at } => {
            let Some(f) = world.faults.get(*fault) else {
                return Ok(());
            };
            let by = match f.end().1 {
                FixedBy::Reflex { action, .. } => format!("fixed by reflex ({})", action.as_str()),
                FixedBy::Human => "fixed by on-call engineers".into(),
                FixedBy::Itself => "ended on its own".into(),
            };
            say(format!(
                "[{}] <<< fault {} over after {}: {by}",
                clock(*at),
                f.plan.id,
                dur(at.millis() - f.plan.onset.millis())
            ))
        }
        Note::Deploy {
            service,
            version,
            at,
        } => say(format!(
            "[{}]     harmless deploy: {service} {version}",
            clock(*at)
        )),
    }
}

fn fault_for_detection(world: &World, d: &Detection) -> Option<usize> {
    world.faults.iter().position(|f| {
        f.started
            && d.first_seen.millis() >= f.plan.onset.millis() - 60_000
            && d.first_seen.millis() <= f.end().0.millis() + 60_000
            && (f.affected.contains(&d.service) || f.plan.root == d.service)
    })
}

fn handle(
    rx: &Receiver<Output>,
    outputs: &mut Vec<Output>,
    story: &mut Story,
    executor: &mut Executor,
    world: &mut World,
    say: &mut Say<'_>,
) -> Result<(), DemoError> {
    while let Ok(o) = rx.try_recv() {
        match &o {
            Output::Detection(d) if d.detector != DetectorKind::Change => {
                match fault_for_detection(world, d) {
                    Some(i) => {
                        let n = story.per_fault.entry(i).or_default();
                        if *n < 3 && story.told.insert((i, d.service.clone())) {
                            *n += 1;
                            say(format!(
                                "[{}]     detection ({} {}): {}",
                                clock(d.window.end),
                                d.detector,
                                d.rule,
                                d.evidence
                            ))?;
                        }
                    }
                    None => {
                        story.stray_detections += 1;
                        if story.stray_detections <= 10 {
                            say(format!(
                                "[{}]     detection outside any fault ({} {}): {}",
                                clock(d.window.end),
                                d.detector,
                                d.rule,
                                d.evidence
                            ))?;
                        }
                    }
                }
            }
            Output::Incident(i) => narrate_incident(story, i, say)?,
            Output::Action(a) => {
                story.action_incident.insert(
                    a.action_id.clone(),
                    (
                        a.incident_id.clone(),
                        format!("{} {}", a.action_type.as_str(), a.target.service),
                    ),
                );
                let auto = executor.submit(a, world);
                say(format!(
                    "[{}]     decision: {} {} ({} {}/{}{}) risk {:.2} -> {}",
                    clock(a.created_at),
                    a.action_type.as_str(),
                    a.target.service,
                    a.target.kind,
                    a.target.namespace.as_deref().unwrap_or("default"),
                    a.target.name,
                    a.params
                        .replicas
                        .map_or(String::new(), |r| format!(", replicas={r}")),
                    a.risk,
                    if auto {
                        "auto: sent to the executor"
                    } else if a.decision == Decision::ApprovalRequired {
                        "approval required"
                    } else if a.decision == Decision::DryRun {
                        "dry run: the executor will skip it"
                    } else {
                        "not executed"
                    }
                ))?;
            }
            Output::Escalation(e) => say(format!(
                "[{}]     escalation{}: {}",
                clock(e.created_at),
                e.team
                    .as_deref()
                    .map_or(String::new(), |t| format!(" to team {t}")),
                e.reason
            ))?,
            _ => {}
        }
        outputs.push(o);
    }
    Ok(())
}

fn narrate_incident(story: &mut Story, i: &Incident, say: &mut Say<'_>) -> Result<(), DemoError> {
    let prev = story.incidents.insert(i.incident_id.clone(), i.clone());
    let at = clock(i.updated_at);
    match (i.status, prev) {
        (IncidentStatus::Resolved, _) if i.evidence.first().is_some_and(|e| e.starts_with("verified:")) => {
            say(format!(
                "[{at}]     incident {} resolved -> VERIFIED by reflex ({})",
                i.incident_id,
                i.evidence.first().map(String::as_str).unwrap_or_default()
            ))
        }
        (IncidentStatus::Resolved, _) => {
            let verified = story.fixed.get(&i.incident_id);
            say(format!(
                "[{at}]     incident {} resolved (quiet for the resolve window){}",
                i.incident_id,
                match verified {
                    Some((what, t)) => format!(
                        " -> VERIFIED: errors stopped after {what} completed at {}",
                        clock(*t)
                    ),
                    None => String::new(),
                }
            ))
        }
        (IncidentStatus::Open, Some(p)) if p.status == IncidentStatus::Resolved => say(format!(
            "[{at}]     incident {} REOPENED (relapse): root cause {} ({})",
            i.incident_id, i.root_cause_service, i.category
        )),
        (_, Some(p)) if p.root_cause_service == i.root_cause_service && p.category == i.category => {
            Ok(())
        }
        (_, Some(_)) => say(format!(
            "[{at}]     incident {} updated: root cause now {} ({}, confidence {:.2}); services: {}",
            i.incident_id,
            i.root_cause_service,
            i.category,
            i.confidence,
            i.services.join(", ")
        )),
        (_, None) => {
            say(format!(
                "[{at}]     INCIDENT {}: root cause {} ({}, confidence {:.2}); services: {}",
                i.incident_id,
                i.root_cause_service,
                i.category,
                i.confidence,
                i.services.join(", ")
            ))?;
            for e in i.evidence.iter().take(3) {
                say(format!("                evidence: {e}"))?;
            }
            Ok(())
        }
    }
}

fn narrate_result(story: &mut Story, r: &ActionResult, say: &mut Say<'_>) -> Result<(), DemoError> {
    let (inc, what) = story
        .action_incident
        .get(&r.action_id)
        .cloned()
        .unwrap_or_default();
    if r.status == ActionStatus::Succeeded {
        story.fixed.insert(inc, (what.clone(), r.finished_at));
    }
    say(format!(
        "[{}]     executor: {what} {} ({})",
        clock(r.finished_at),
        match r.status {
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "FAILED",
            ActionStatus::Rejected => "rejected",
            ActionStatus::SkippedDuplicate => "skipped (duplicate)",
            ActionStatus::SkippedDryRun => "skipped (dry run)",
        },
        r.detail
    ))
}
