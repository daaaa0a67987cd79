//! `reflex report --input DIR`: loads an embedded run's records, computes
//! the value report and writes it as text, JSON or HTML.
//!
//! Guarantees: the same function as `GET /api/report` and `reflex demo`
//! ([`crate::report::compute`]); a usage problem (no output directory, a
//! bad `--since`, a bad format or number) is a [`Kind::Usage`] (exit 2), a
//! file that cannot be read or written is [`Kind::Internal`] (exit 1).

use crate::error::{CliError, Kind};
use crate::report::load::{self, LoadErrorKind};
use crate::report::{compute, latest_time, parse_since, render, ReportOptions};
use std::path::PathBuf;

/// Which form to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// A self-contained page with inline SVG charts.
    Html,
}

/// The command's arguments (parsed by clap in `main.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct ReportCommand {
    /// The output directory (or a demo export, whose records are in demo-out/).
    #[arg(long)]
    pub input: PathBuf,
    /// Executor results (default: action-results.jsonl in the directory, if any).
    #[arg(long, value_name = "FILE")]
    pub action_results: Option<PathBuf>,
    /// Only incidents from this event time (RFC 3339, epoch ms, or e.g. `24h` before the last record).
    #[arg(long)]
    pub since: Option<String>,
    /// `text`, `json` or `html` (a self-contained page with inline SVG charts).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Human minutes one manual fix takes (for minutes saved).
    #[arg(long, default_value_t = 30.0)]
    pub minutes_per_fix: f64,
    /// Human minutes an approval still takes.
    #[arg(long, default_value_t = 5.0)]
    pub minutes_per_approval: f64,
    /// Held-back incidents stated below this confidence count as low confidence.
    #[arg(long, default_value_t = 0.7)]
    pub low_confidence: f64,
}

fn usage(message: String) -> CliError {
    CliError::usage(message)
}

/// Runs the command; returns the rendered report (also written to `output`
/// or printed).
pub fn run(cmd: &ReportCommand) -> Result<String, CliError> {
    for (name, v) in [
        ("--minutes-per-fix", cmd.minutes_per_fix),
        ("--minutes-per-approval", cmd.minutes_per_approval),
        ("--low-confidence", cmd.low_confidence),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(usage(format!(
                "{name} must be a non-negative number (got {v})"
            )));
        }
    }
    let records = load::load_dir(&cmd.input, cmd.action_results.as_deref()).map_err(|e| {
        let kind = if e.kind == LoadErrorKind::NotAnOutputDir {
            Kind::Usage
        } else {
            Kind::Internal
        };
        CliError::new(kind, e.message)
    })?;
    let since = match cmd.since.as_deref() {
        None => None,
        Some(s) => Some(parse_since(s, latest_time(&records)).ok_or_else(|| {
            usage(format!(
                "--since {s:?}: expected RFC 3339, epoch milliseconds or a duration like 24h"
            ))
        })?),
    };
    let opts = ReportOptions {
        since,
        minutes_per_fix: cmd.minutes_per_fix,
        minutes_per_approval: cmd.minutes_per_approval,
        low_confidence: cmd.low_confidence,
    };
    let rep = compute(&records, &opts);
    let text = match cmd.format {
        Format::Text => render::text(&rep),
        Format::Json => render::json(&rep) + "\n",
        Format::Html => render::html(&rep),
    };
    match &cmd.output {
        Some(p) => std::fs::write(p, &text).map_err(|e| {
            CliError::with_context(Kind::Internal, format!("writing {}", p.display()), &e)
        })?,
        None => print!("{text}"),
    }
    Ok(text)
}
