//! The offline tools: `validate`, `train`, `anomalies`, `templates` and
//! `generate`.
//!
//! Guarantees: a missing or malformed input file and bad configuration are
//! usage errors (exit 2) naming the file; `validate` reports every problem
//! at once with file and key.

use crate::config::Config;
use crate::error::{CliError, Kind};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `reflex validate`: one summary line, or every problem (exit 2).
pub fn validate(config: Option<PathBuf>) -> Result<(), CliError> {
    let cfg: Config = super::load_config(config.as_deref())?;
    println!(
        "{}: ok ({} threshold rule(s), {} signature rule(s), {} catalogued service(s), {} action categories, 7 Avro schemas, {})",
        cfg.source,
        cfg.detectors.threshold.rules.len(),
        cfg.signatures.rules().len(),
        cfg.catalog.services.len(),
        cfg.actions.categories.len(),
        match (&cfg.diagnosis.category_model, cfg.diagnosis.classifier) {
            (_, false) => "category classifier off".to_string(),
            (Some(m), true) => format!(
                "category model {} ({} categories, policy {})",
                cfg.diagnosis
                    .model
                    .as_ref()
                    .map_or("built-in".to_string(), |p| p.display().to_string()),
                m.categories.len(),
                m.policy.as_str()
            ),
            (None, true) => "category model missing: rules only".to_string(),
        }
    );
    Ok(())
}

/// `reflex train`: fits the category classifier and writes the model file.
pub fn train(input: PathBuf, output: PathBuf, config: Option<PathBuf>) -> Result<(), CliError> {
    use crate::diagnosis::classify::{self, TrainError};
    let cfg = super::load_config(config.as_deref())?;
    let started = std::time::Instant::now();
    let labelled = classify::read_labelled(&input).map_err(|e| CliError::usage(e.to_string()))?;
    let examples: Vec<_> = labelled
        .iter()
        .flat_map(|l| classify::examples_from_labelled(l, &cfg.signatures))
        .collect();
    let (model, report) = match classify::train(&examples, classify::DEFAULT_HASH_DIMS) {
        Ok(m) => m,
        Err(e @ (TrainError::Data(_) | TrainError::Input { .. } | TrainError::Io { .. })) => {
            return Err(CliError::usage(format!("{}: {e}", input.display())));
        }
        Err(e) => return Err(CliError::from_error(Kind::Internal, &e)),
    };
    let json =
        serde_json::to_string(&model).map_err(|e| CliError::from_error(Kind::Internal, &e))?;
    std::fs::write(&output, json.as_bytes()).map_err(|e| {
        CliError::with_context(Kind::Internal, format!("writing {}", output.display()), &e)
    })?;
    let s = &report.summary;
    println!(
        "reflex train: {} labelled incidents, {} categories, alpha {}, {:.1}s",
        s.examples,
        s.per_category.len(),
        s.alpha,
        started.elapsed().as_secs_f64()
    );
    for (c, n) in &s.per_category {
        println!("  {c:<20} {n}");
    }
    println!("held-out (5-fold) category accuracy per policy:");
    for (p, a) in &s.held_out_accuracy {
        println!(
            "  {p:<24} {:.3}{}",
            a,
            if *p == report.policy.as_str() {
                "  <- chosen"
            } else {
                ""
            }
        );
    }
    println!("reliability of the chosen answers the rules agree with (bin: n, mean p, accuracy):");
    for (b, n, p, a) in &report.reliability {
        println!(
            "  {:.1}-{:.1}: {n:>4}  {p:.3}  {a:.3}",
            *b as f64 / 10.0,
            (*b + 1) as f64 / 10.0
        );
    }
    println!(
        "calibration agree    {:?}\ncalibration disagree {:?}\nBrier score {:.4}",
        model.calibration.agree, model.calibration.disagree, s.brier
    );
    println!("wrote {} ({} bytes)", output.display(), json.len());
    Ok(())
}

/// `reflex generate`: a small fleet's events with one OOM fault.
pub fn generate(events: u64, seed: u64, output: Option<PathBuf>) -> Result<(), CliError> {
    use crate::sim::gen::{generate, to_jsonl, Fault, GenConfig};
    // Background noise of 5 services at `rate` ev/s over `duration` ≈ events.
    let duration_ms: i64 = 6 * 3_600_000;
    let mut cfg = GenConfig::shop(seed, duration_ms);
    cfg.noise_rate = (events as f64 / 5.0) / (duration_ms as f64 / 1000.0);
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(2 * 3_600_000),
        duration_ms: 10 * 60_000,
        rate: (cfg.noise_rate * 20.0).max(2.0),
        message: "java.lang.OutOfMemoryError: Java heap space at {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    let evs = generate(&cfg);
    let bytes = to_jsonl(&evs);
    match output {
        Some(p) => std::fs::write(&p, bytes).map_err(|e| {
            CliError::with_context(Kind::Internal, format!("writing {}", p.display()), &e)
        })?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

/// A named input file that is not there (`-` is stdin).
fn check_input(input: &Path) -> Result<(), CliError> {
    if input.as_os_str() != "-" && !input.exists() {
        return Err(CliError::usage(format!(
            "input {} does not exist",
            input.display()
        )));
    }
    Ok(())
}

/// `reflex anomalies`: the streaming anomaly detector over one series.
pub fn anomalies(input: PathBuf, output: Option<PathBuf>) -> Result<(), CliError> {
    use crate::detectors::anomaly::cli::{run_csv, AnomalyCliErrorKind};
    use crate::detectors::anomaly::AnomalyConfig;
    check_input(&input)?;
    let started = std::time::Instant::now();
    match run_csv(&input, output.as_deref(), &AnomalyConfig::default()) {
        Ok(s) => {
            eprintln!(
                "reflex anomalies: {} rows, {} at or above the alert level, {:.0} rows/s",
                s.rows,
                s.alerts,
                s.rows as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
            Ok(())
        }
        Err(e) if e.kind() == AnomalyCliErrorKind::BadInput => Err(CliError::usage(e.to_string())),
        Err(e) => Err(CliError::from_error(Kind::Internal, &e)),
    }
}

/// `reflex templates`: the streaming template miner over one file.
pub fn templates(input: PathBuf, output: Option<PathBuf>) -> Result<(), CliError> {
    use crate::detectors::pattern::cli::{run_file, TemplatesCliErrorKind};
    use crate::detectors::pattern::config::MinerConfig;
    check_input(&input)?;
    let started = std::time::Instant::now();
    match run_file(&input, output.as_deref(), &MinerConfig::default()) {
        Ok(s) => {
            eprintln!(
                "reflex templates: {} lines, {} templates, {:.0} lines/s",
                s.lines,
                s.templates,
                s.lines as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
            Ok(())
        }
        Err(e) if e.kind() == TemplatesCliErrorKind::Input => Err(CliError::usage(e.to_string())),
        Err(e) => Err(CliError::from_error(Kind::Internal, &e)),
    }
}
