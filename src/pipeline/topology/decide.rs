//! The decide node of the topology: diagnosis and recovery joined to one
//! sink, with the feedback edges between them.
//!
//! Edges, all inside `Decider::route`, which runs after every input to
//! a fixed point so that one input's consequences are written before the
//! next input is taken:
//! - detections → sink, recovery (it watches them to verify its actions),
//!   diagnosis;
//! - diagnosis → incidents → sink, recovery;
//! - recovery → actions → sink, and back to diagnosis (`acted_on`: an
//!   incident that was acted on keeps its root);
//! - recovery → escalations → sink;
//! - recovery → resolutions (verified fixes) → back to diagnosis
//!   (`resolve`), whose incident records go round again;
//! - executor results → recovery, in event time (at the first watermark ≥
//!   their `finished_at`).
//!
//! Guarantees: the order of the writes to the sink depends only on the
//! order of the calls, never on the wall clock, so a replay given the same
//! inputs and results reproduces a live run record for record.

use crate::config::Config;
use crate::diagnosis::DiagnosisStage;
use crate::model::{ActionResult, DeadLetter, Detection, EventTime, Incident, IncidentStatus};
use crate::recovery::{ApprovalError, RecoveryOutput, RecoveryStage};
use crate::sinks::{Output, Sink, SinkError};
use crate::stage::labels::DetectorName;
use crate::stage::stats::Stats;
use crate::stage::Stage;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The decide stages built from config and not yet connected to a sink
/// (the sink is the runtime's: files, the Kafka producer, the demo loop).
pub struct DecideStages {
    diagnose: DiagnosisStage,
    recover: RecoveryStage,
    /// Executor results known up front, queued on [`Self::connect`].
    results: Vec<ActionResult>,
    stats: Arc<Stats>,
}

impl DecideStages {
    /// Diagnosis and recovery from `cfg`: the only place they are built.
    pub(crate) fn build(cfg: &Config, opts: &DecideOptions, stats: Arc<Stats>) -> Self {
        let catalog = Arc::new(cfg.catalog.clone());
        let mut recover = RecoveryStage::new(
            cfg.recovery.clone(),
            cfg.actions.clone(),
            catalog.clone(),
            opts.signing_key.clone(),
            opts.healing_env_off,
            stats.clone(),
        );
        // Recovery acts only on incidents diagnosis would open.
        recover.set_min_score(cfg.diagnosis.min_open_score);
        DecideStages {
            diagnose: DiagnosisStage::new(cfg.diagnosis.clone(), catalog, stats.clone()),
            recover,
            results: opts.action_results.clone(),
            stats,
        }
    }

    /// Joins the stages to `sink`; the results known up front are queued.
    pub fn connect(self, sink: &mut dyn Sink) -> Decider<'_> {
        let mut d = Decider {
            diagnose: self.diagnose,
            recover: self.recover,
            sink,
            incidents: Vec::new(),
            outputs: Vec::new(),
            results: BTreeMap::new(),
            arrivals: 0,
            stats: self.stats,
        };
        d.queue(&self.results);
        d
    }
}

/// Diagnosis + recovery + sink: everything after detection, shared by the
/// embedded runtime, the Kafka `decide` stage and the demo.
///
/// Executor results are applied in event time: [`Decider::action_result`]
/// queues them and each is handed to the recovery stage at the first
/// watermark ≥ its `finished_at` (ties by `finished_at`, then idempotency
/// key, then arrival), so a replay given the same results
/// (`reflex run --action-results`) reproduces the live run's records.
pub struct Decider<'s> {
    pub diagnose: DiagnosisStage,
    pub recover: RecoveryStage,
    sink: &'s mut dyn Sink,
    incidents: Vec<Incident>,
    outputs: Vec<RecoveryOutput>,
    /// Results waiting for the watermark to reach their `finished_at`.
    results: BTreeMap<(EventTime, String, u64), ActionResult>,
    arrivals: u64,
    stats: Arc<Stats>,
}

impl<'s> Decider<'s> {
    /// The decide stages of `cfg` alone, connected to `sink` (what
    /// [`Topology::build`](super::Topology::build) builds, for tests and
    /// tools that drive diagnosis and recovery without detection);
    /// `opts.action_results` are queued.
    pub fn new(
        cfg: &Config,
        opts: &DecideOptions,
        sink: &'s mut dyn Sink,
        stats: Arc<Stats>,
    ) -> Self {
        DecideStages::build(cfg, opts, stats).connect(sink)
    }

    /// Replaces every stage with `stages` and forgets the results queued,
    /// keeping the sink: the same decider [`DecideStages::connect`] would
    /// give (the Kafka runtime after a rebalance, whose sink outlives it).
    pub fn reset(&mut self, stages: DecideStages) {
        let DecideStages {
            diagnose,
            recover,
            results,
            stats,
        } = stages;
        self.diagnose = diagnose;
        self.recover = recover;
        self.incidents.clear();
        self.outputs.clear();
        self.results.clear();
        self.arrivals = 0;
        self.stats = stats;
        self.queue(&results);
    }

    fn queue(&mut self, results: &[ActionResult]) {
        for r in results {
            self.action_result(r);
        }
    }

    /// Writes a dead letter.
    pub fn dead_letter(&mut self, d: DeadLetter) -> Result<(), SinkError> {
        self.write(&Output::DeadLetter(d))
    }

    /// Writes one record to the sink and counts it: every output of the
    /// decide node goes through here, so this is the one place outputs are
    /// counted (the run summary and `/metrics` both read [`count_output`]'s
    /// counters).
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        self.sink.write(out)?;
        count_output(&self.stats, out);
        Ok(())
    }

    /// Publishes detections and runs them through diagnosis and recovery
    /// (recovery watches them to verify its actions).
    pub fn detections(&mut self, dets: Vec<Detection>) -> Result<(), SinkError> {
        for d in dets {
            self.write(&Output::Detection(d.clone()))?;
            self.recover.observe(&d);
            self.diagnose.process(d, &mut self.incidents);
        }
        self.route()
    }

    /// An executor reported how an action went (`reflex.action-results`).
    /// Queued and applied at the first watermark ≥ its `finished_at` (a
    /// result older than the watermark already passed is applied at the
    /// next one).
    pub fn action_result(&mut self, r: &ActionResult) {
        Stats::add(&self.stats.action_results, 1);
        self.arrivals += 1;
        self.results.insert(
            (r.finished_at, r.idempotency_key.clone(), self.arrivals),
            r.clone(),
        );
    }

    /// Results queued and not yet applied.
    pub fn queued_results(&self) -> usize {
        self.results.len()
    }

    /// A human approved or rejected a pending `approval_required` action;
    /// the outputs (the re-emitted `auto` action, or an escalation) are
    /// written at once.
    pub fn approval(
        &mut self,
        action_id: &str,
        approve: bool,
        by: &str,
    ) -> Result<Result<(), ApprovalError>, SinkError> {
        let r = self
            .recover
            .approval(action_id, approve, by, &mut self.outputs);
        self.route()?;
        Ok(r)
    }

    /// Closes the recovery circuit breaker.
    pub fn reset_breaker(&mut self) {
        self.recover.reset_breaker();
    }

    /// The decide side of one batch: its dead letters, its detections, then
    /// its watermark (the order every runtime uses).
    pub fn run_batch(
        &mut self,
        dead: Vec<DeadLetter>,
        detections: Vec<Detection>,
        watermark: Option<EventTime>,
    ) -> Result<(), SinkError> {
        for d in dead {
            self.dead_letter(d)?;
        }
        self.detections(detections)?;
        match watermark {
            Some(wm) => self.watermark(wm),
            None => Ok(()),
        }
    }

    /// Advances event time: diagnosis timers, then the results due, then
    /// recovery timers (verification windows, timeouts, expiries).
    pub fn watermark(&mut self, wm: EventTime) -> Result<(), SinkError> {
        self.diagnose.on_watermark(wm, &mut self.incidents);
        self.route()?;
        while let Some(e) = self.results.first_entry() {
            if e.key().0 > wm {
                break;
            }
            let r = e.remove();
            self.recover.on_result(&r, &mut self.outputs);
            self.route()?;
        }
        self.recover.on_watermark(wm, &mut self.outputs);
        self.route()
    }

    /// End of input: flush every stage and the sink. Results whose
    /// `finished_at` the watermark never reached stay unapplied.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        self.diagnose.flush(&mut self.incidents);
        self.route()?;
        self.recover.flush(&mut self.outputs);
        self.route()?;
        self.sink.flush()
    }

    fn route(&mut self) -> Result<(), SinkError> {
        loop {
            for inc in std::mem::take(&mut self.incidents) {
                self.write(&Output::Incident(inc.clone()))?;
                self.recover.process(inc, &mut self.outputs);
            }
            for o in std::mem::take(&mut self.outputs) {
                if let RecoveryOutput::Action(a) = &o {
                    // Acted on: the incident's root cause is now fixed.
                    self.diagnose.acted_on(&a.incident_id);
                }
                self.write(&match o {
                    RecoveryOutput::Action(a) => Output::Action(*a),
                    RecoveryOutput::Escalation(e) => Output::Escalation(e),
                })?;
            }
            let resolved = self.recover.take_resolutions();
            if resolved.is_empty() {
                return Ok(());
            }
            for r in resolved {
                self.diagnose
                    .resolve(&r.incident_id, r.at, &r.evidence, &mut self.incidents);
            }
        }
    }
}

/// Counts one record written to the outputs, by what it is about (its
/// labels): every incident record, and `open` and `resolved` ones by
/// category.
pub fn count_output(stats: &Stats, out: &Output) {
    match out {
        Output::DeadLetter(d) => stats.dead_letters.add(d.reason_kind, 1),
        Output::Detection(d) => stats.detections.add(DetectorName::of(d.detector), 1),
        Output::Incident(i) => {
            Stats::add(&stats.incident_records, 1);
            match i.status {
                IncidentStatus::Open => stats.opened_by_category.add(i.category, 1),
                IncidentStatus::Resolved => stats.resolved_by_category.add(i.category, 1),
                IncidentStatus::Updated => {}
            }
        }
        Output::Action(a) => stats.actions.add(a.action_type, a.decision, 1),
        Output::Escalation(_) => Stats::add(&stats.escalations, 1),
    }
}

/// Settings of the decide stages that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct DecideOptions {
    /// HMAC key for action signatures (`REFLEX_ACTION_KEY`).
    pub signing_key: Option<Vec<u8>>,
    /// `REFLEX_HEALING=off`.
    pub healing_env_off: bool,
    /// Executor results known up front (`reflex run --action-results`),
    /// applied in event time like live ones.
    pub action_results: Vec<ActionResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::topology::Topology;
    use crate::sinks::MemorySink;

    /// The sample's decide inputs: per batch its dead letters, detections
    /// and watermark, as the embedded runtime hands them over.
    type Step = (Vec<DeadLetter>, Vec<Detection>, Option<EventTime>);

    fn sample_steps(cfg: &Config) -> Vec<Step> {
        let text = include_str!("../../../examples/sample.jsonl");
        let t = Topology::build(cfg, &DecideOptions::default(), Arc::default()).expect("build");
        let (mut batcher, mut detect) = (t.decode.into_batcher(), t.detect);
        let mut steps = Vec::new();
        for (i, chunk) in text.lines().collect::<Vec<_>>().chunks(64).enumerate() {
            let lines = chunk
                .iter()
                .enumerate()
                .map(|(j, l)| ((i * 64 + j) as i64, l.as_bytes()));
            batcher.feed(lines, "sample", &mut |b| {
                let wm = b.watermark;
                let (dets, dead) = detect.run_batch(b);
                steps.push((dead, dets, wm));
                true
            });
        }
        steps
    }

    fn drive(d: &mut Decider<'_>, steps: &[Step]) {
        for (dead, dets, wm) in steps {
            d.run_batch(dead.clone(), dets.clone(), *wm).expect("batch");
        }
        d.finish().expect("finish");
    }

    #[test]
    fn a_reset_decider_is_a_fresh_one() {
        let cfg = Config::embedded().expect("embedded config");
        let steps = sample_steps(&cfg);
        assert!(steps.iter().any(|s| !s.1.is_empty()), "the sample detects");
        let opts = DecideOptions::default();
        let mut fresh_sink = MemorySink::default();
        drive(
            &mut DecideStages::build(&cfg, &opts, Arc::default()).connect(&mut fresh_sink),
            &steps,
        );
        // A decider that has seen (part of) another run, reset, then the run.
        let mut sink = MemorySink::default();
        let mut d = DecideStages::build(&cfg, &opts, Arc::default()).connect(&mut sink);
        drive(&mut d, &steps[..steps.len() / 2]);
        d.action_result(&ActionResult {
            action_id: "act-x".into(),
            idempotency_key: "idem-x".into(),
            status: crate::model::ActionStatus::Succeeded,
            detail: String::new(),
            finished_at: EventTime(i64::MAX),
            executor: "test".into(),
        });
        d.reset(DecideStages::build(&cfg, &opts, Arc::default()));
        assert_eq!(d.queued_results(), 0);
        drive(&mut d, &steps);
        drop(d);
        let before = sink.records.len() - fresh_sink.records.len();
        assert!(fresh_sink
            .records
            .iter()
            .any(|o| matches!(o, Output::Incident(_))));
        assert!(sink.records[before..] == fresh_sink.records[..]);
    }

    #[test]
    fn the_decide_node_counts_exactly_what_it_writes() {
        use crate::model::IncidentStatus;
        use crate::stage::labels::Total;
        let cfg = Config::embedded().expect("embedded config");
        let steps = sample_steps(&cfg);
        let stats = Arc::new(Stats::default());
        let mut sink = MemorySink::default();
        drive(
            &mut DecideStages::build(&cfg, &DecideOptions::default(), stats.clone())
                .connect(&mut sink),
            &steps,
        );
        let recs = &sink.records;
        let n = |f: fn(&Output) -> bool| recs.iter().filter(|o| f(o)).count() as u64;
        let dead = n(|o| matches!(o, Output::DeadLetter(_)));
        let dets = n(|o| matches!(o, Output::Detection(_)));
        let incidents = n(|o| matches!(o, Output::Incident(_)));
        let opened = n(|o| matches!(o, Output::Incident(i) if i.status == IncidentStatus::Open));
        let resolved =
            n(|o| matches!(o, Output::Incident(i) if i.status == IncidentStatus::Resolved));
        let actions = n(|o| matches!(o, Output::Action(_)));
        let escalations = n(|o| matches!(o, Output::Escalation(_)));
        // The sample has some of each (else the equalities below prove little).
        assert!(
            dead > 0 && dets > 0 && opened > 0 && actions > 0,
            "{recs:?}"
        );
        assert_eq!(stats.dead_letters.total(), dead);
        assert_eq!(stats.detections.total(), dets);
        assert_eq!(Stats::get(&stats.incident_records), incidents);
        assert_eq!(stats.opened_by_category.total(), opened);
        assert_eq!(stats.resolved_by_category.total(), resolved);
        assert_eq!(stats.actions.total(), actions);
        assert_eq!(Stats::get(&stats.escalations), escalations);
        // And by label: each detection under its own detector.
        let pattern = n(
            |o| matches!(o, Output::Detection(d) if d.detector == crate::model::DetectorKind::Pattern),
        );
        assert_eq!(stats.detections.get(DetectorName::Pattern), pattern);
    }
}
