//! `reflex topics apply`: creates the missing topics of the topics file,
//! reports the ones that differ (it never alters an existing topic).
//!
//! Guarantees: an unreadable or invalid topics file, bad configuration or
//! `--replication` below 1 are usage errors (exit 2) reported before the
//! broker is contacted; a topic that differs is a runtime failure (exit 1)
//! after the whole report is printed.

use crate::error::{CliError, Kind};
use crate::telemetry::logging;
use std::path::PathBuf;

pub struct ApplyArgs {
    pub brokers: String,
    pub config: Option<PathBuf>,
    pub topics: Option<PathBuf>,
    pub replication: Option<i32>,
}

pub fn apply(a: ApplyArgs) -> Result<(), CliError> {
    let cfg = super::load_config(a.config.as_deref())?;
    let format = cfg
        .telemetry
        .effective_log_format(std::env::var("REFLEX_LOG_FORMAT").ok().as_deref());
    let _ = logging::init(format, "info,rdkafka=warn");
    let (name, text) = match &a.topics {
        None => (
            "<embedded>/topics.toml".to_string(),
            crate::topics::EMBEDDED_TOPICS.to_string(),
        ),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => return Err(CliError::usage(format!("cannot read {}: {e}", p.display()))),
        },
    };
    let mut specs = crate::topics::parse(&text, &name, &cfg.kafka)
        .map_err(|e| CliError::usage(e.to_string()))?;
    if let Some(r) = a.replication {
        if r < 1 {
            return Err(CliError::usage("--replication must be at least 1"));
        }
        for s in &mut specs {
            s.replication = r;
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt
        .block_on(crate::topics::apply(
            &a.brokers,
            &specs,
            &cfg.kafka.consumer,
        ))
        .map_err(|e| CliError::from_error(Kind::External, &e))?;
    print!("{report}");
    if report.ok() {
        Ok(())
    } else {
        Err(CliError::reported(Kind::External))
    }
}
