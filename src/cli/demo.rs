//! `reflex demo`: the simulated fleet through the whole loop, narrated,
//! ending in a report.
//!
//! Guarantees: an unknown profile or bad options are usage errors (exit 2)
//! before anything runs; the narration and report go to stdout.

use crate::error::{CliError, Kind};
use crate::sim::demo::{self, DemoError, DemoOptions, Profile};
use std::io::Write;
use std::path::PathBuf;

pub struct DemoArgs {
    pub seed: u64,
    pub faults: Option<usize>,
    pub hours: Option<f64>,
    pub profile: String,
    pub export: Option<PathBuf>,
}

pub fn run(a: DemoArgs) -> Result<(), CliError> {
    let Some(profile) = Profile::parse(&a.profile) else {
        return Err(CliError::usage(format!(
            "unknown --profile {:?} (expected demo or production)",
            a.profile
        )));
    };
    let cfg = super::load_config(None)?;
    let defaults = DemoOptions::for_profile(profile);
    let opts = DemoOptions {
        seed: a.seed,
        faults: a.faults.unwrap_or(defaults.faults),
        hours: a.hours.unwrap_or(defaults.hours),
        export: a.export.clone(),
        ..defaults
    };
    let mut stdout = std::io::stdout().lock();
    let run = match demo::run(&cfg, &opts, &mut stdout) {
        Ok(run) => run,
        Err(DemoError::Usage(m)) => return Err(CliError::usage(m)),
        Err(e) => return Err(CliError::from_error(Kind::Internal, &e)),
    };
    writeln!(stdout, "\nreport\n{}", run.report)?;
    if profile == Profile::Production {
        writeln!(stdout, "{}", run.report.hostile_summary())?;
    }
    if let Some(dir) = a.export {
        writeln!(
            stdout,
            "exported {0}/events.jsonl, {0}/action-results.jsonl, {0}/truth.jsonl and {0}/labelled.jsonl (reflex train --input); replay: reflex run --input {0}/events.jsonl --action-results {0}/action-results.jsonl --output-dir OUT (compare with {0}/demo-out)",
            dir.display()
        )?;
    }
    Ok(())
}
