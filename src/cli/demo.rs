//! `reflex demo`: the simulated fleet through the whole loop, narrated,
//! ending in a report.
//!
//! Guarantees: an unknown profile or bad options are usage errors (exit 2)
//! before anything runs; the narration and report go to stdout.

use crate::error::{CliError, Kind};
use crate::report;
use crate::sim::demo::{self, DemoError, DemoOptions, Profile};
use crate::telemetry::board::live::{LiveDemo, LoopObserver};
use crate::telemetry::{logging, Readiness, ReadyCondition};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct DemoArgs {
    pub seed: u64,
    pub faults: Option<usize>,
    pub hours: Option<f64>,
    pub profile: String,
    pub export: Option<PathBuf>,
    /// Serve the ops API and the incident board here while the demo runs.
    pub http: Option<String>,
    /// Simulated seconds per wall-clock second after the warm-up.
    pub speed: Option<f64>,
    /// Keep serving HTTP after the demo until a signal.
    pub hold: bool,
    /// Configuration file (default: the embedded one).
    pub config: Option<PathBuf>,
}

pub fn run(a: DemoArgs) -> Result<(), CliError> {
    let Some(profile) = Profile::parse(&a.profile) else {
        return Err(CliError::usage(format!(
            "unknown --profile {:?} (expected demo or production)",
            a.profile
        )));
    };
    let cfg = super::load_config(a.config.as_deref())?;
    if a.speed.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(CliError::usage(
            "--speed must be a positive number of simulated seconds per second",
        ));
    }
    // Live mode: the ops API and the board watch the loop (the narrative
    // stays on stdout; logs below warnings would drown it).
    let tel = if a.http.is_some() || a.speed.is_some() {
        let format = cfg
            .telemetry
            .effective_log_format(std::env::var("REFLEX_LOG_FORMAT").ok().as_deref());
        let _ = logging::init(format, "warn");
        let readiness = Readiness::embedded();
        let tel = super::telemetry::start(&cfg, a.http.clone(), readiness.clone())?;
        readiness.set(ReadyCondition::Config);
        readiness.set(ReadyCondition::Pipeline);
        Some(tel)
    } else {
        None
    };
    let defaults = DemoOptions::for_profile(profile);
    let opts = DemoOptions {
        seed: a.seed,
        faults: a.faults.unwrap_or(defaults.faults),
        hours: a.hours.unwrap_or(defaults.hours),
        export: a.export.clone(),
        observer: tel.as_ref().map(|t| {
            Arc::new(LiveDemo::new(
                t.telemetry.clone(),
                a.speed,
                demo::START.plus_ms(crate::sim::faults::WARMUP_MIN * 60_000),
            )) as Arc<dyn LoopObserver>
        }),
        ..defaults
    };
    let result = narrate(&cfg, &opts, profile, a.export.as_deref());
    if let Some(t) = tel {
        t.stop(a.hold);
    }
    result
}

/// Runs the loop, then writes the reports (and where the export went).
fn narrate(
    cfg: &crate::config::Config,
    opts: &DemoOptions,
    profile: Profile,
    export: Option<&Path>,
) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    let run = match demo::run(cfg, opts, &mut stdout) {
        Ok(run) => run,
        Err(DemoError::Usage(m)) => return Err(CliError::usage(m)),
        Err(e) => return Err(CliError::from_error(Kind::Internal, &e)),
    };
    writeln!(stdout, "\nreport\n{}", run.report)?;
    if profile == Profile::Production {
        writeln!(stdout, "{}", run.report.hostile_summary())?;
    }
    let value = report::compute(
        &report::Records::from_outputs(&run.outputs, &run.results),
        &report::ReportOptions::default(),
    );
    writeln!(stdout, "\n{}", report::render::text(&value).trim_end())?;
    if let Some(dir) = export {
        writeln!(
            stdout,
            "exported {0}/events.jsonl, {0}/action-results.jsonl, {0}/truth.jsonl and {0}/labelled.jsonl (reflex train --input); replay: reflex run --input {0}/events.jsonl --action-results {0}/action-results.jsonl --output-dir OUT (compare with {0}/demo-out)",
            dir.display()
        )?;
    }
    Ok(())
}
