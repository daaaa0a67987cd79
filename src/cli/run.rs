//! `reflex run`: embedded mode (JSON Lines in, one file per topic out) and
//! Kafka mode (`--brokers`, until SIGTERM).
//!
//! Guarantees: bad options, configuration, `--action-results` or an
//! unopenable input are usage errors (exit 2) reported before anything is
//! written; a failed run is a runtime failure (exit 1), its message shown
//! before `--hold` keeps serving.

use super::telemetry;
use crate::error::{CliError, Kind};
use crate::pipeline::embedded::{self, DecideOptions, RunHooks};
use crate::pipeline::kafka::{self, KafkaOptions, StageSel};
use crate::shutdown::Shutdown;
use crate::sinks::file::FileSink;
use crate::sources::file::LineReader;
use crate::telemetry::{Readiness, ReadyCondition, TapSink};
use std::path::PathBuf;

/// `reflex run` without `--brokers`.
pub struct EmbeddedArgs {
    pub config: Option<PathBuf>,
    pub input: PathBuf,
    pub output_dir: PathBuf,
    pub http: Option<String>,
    pub hold: bool,
    pub action_results: Option<PathBuf>,
}

/// `reflex run --brokers`.
pub struct KafkaArgs {
    pub config: Option<PathBuf>,
    pub brokers: String,
    pub stage: String,
    pub http: Option<String>,
}

/// Signing key and kill switch from the environment.
pub fn decide_options() -> DecideOptions {
    DecideOptions {
        signing_key: std::env::var("REFLEX_ACTION_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes),
        healing_env_off: std::env::var("REFLEX_HEALING").is_ok_and(|v| {
            v.eq_ignore_ascii_case("off") || v == "0" || v.eq_ignore_ascii_case("false")
        }),
        action_results: Vec::new(),
    }
}

pub fn embedded(a: EmbeddedArgs) -> Result<(), CliError> {
    let cfg = super::load_config(a.config.as_deref())?;
    let readiness = Readiness::embedded();
    let tel = telemetry::start(&cfg, a.http, readiness.clone())?;
    let mut opts = decide_options();
    if let Some(p) = &a.action_results {
        match embedded::load_action_results(p) {
            Ok(v) => opts.action_results = v,
            Err(e) => {
                tel.stop(false);
                return Err(CliError::usage(format!("--action-results: {e}")));
            }
        }
    }
    let reader = match LineReader::open(&a.input) {
        Ok(r) => r,
        Err(e) => {
            tel.stop(false);
            return Err(CliError::usage(format!(
                "cannot open input {}: {e}",
                a.input.display()
            )));
        }
    };
    let mut sink = FileSink::create(&a.output_dir).map_err(|e| {
        CliError::with_context(
            Kind::Internal,
            format!("creating outputs in {}", a.output_dir.display()),
            &e,
        )
    })?;
    let name = a.input.display().to_string();
    readiness.set(ReadyCondition::Config);
    let hooks = RunHooks {
        stats: tel.telemetry.stats.clone(),
        readiness: Some(readiness),
    };
    let mut tap = TapSink::new(&mut sink, tel.telemetry.clone());
    let result = embedded::run_with(&cfg, &opts, reader, &name, &mut tap, hooks);
    let result = match result {
        Ok(summary) => {
            println!("{summary}");
            println!("  outputs          {}", a.output_dir.display());
            Ok(())
        }
        Err(e) => {
            // Shown now: `--hold` may keep serving for a long time.
            CliError::from_error(Kind::Internal, &e).eprint();
            Err(CliError::reported(Kind::Internal))
        }
    };
    tel.stop(a.hold);
    result
}

pub fn kafka(a: KafkaArgs) -> Result<(), CliError> {
    let stage: StageSel = a
        .stage
        .parse()
        .map_err(|e| CliError::usage(format!("--stage: {e}")))?;
    let cfg = super::load_config(a.config.as_deref())?;
    let readiness = Readiness::kafka();
    let tel = telemetry::start(&cfg, a.http, readiness.clone())?;
    readiness.set(ReadyCondition::Config);
    let opts = KafkaOptions {
        stage,
        brokers: a.brokers,
        decide: decide_options(),
        telemetry: Some(tel.telemetry.clone()),
    };
    let shutdown = Shutdown::on_signals().map_err(|e| CliError::from_error(Kind::Internal, &e))?;
    let result = kafka::run(&cfg, &opts, &shutdown);
    tel.stop(false);
    let summary = result.map_err(|e| CliError::from_error(Kind::External, &e))?;
    println!("{summary}");
    Ok(())
}
