//! LABELLED.jsonl, the input of `reflex train`: one labelled incident per
//! line (`category`, `root_cause_service`, `events`), its writer (used by
//! `reflex demo --export`) and a reader whose every error names the file
//! and line.

use crate::model::{Category, ErrorEvent};
use serde::Serialize;
use std::path::Path;

/// One labelled incident (a line of LABELLED.jsonl).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledIncident {
    pub category: Category,
    pub root_cause_service: String,
    pub events: Vec<ErrorEvent>,
}

#[derive(Serialize)]
struct LabelledOut<'a> {
    category: Category,
    root_cause_service: &'a str,
    events: &'a [ErrorEvent],
}

/// Serialises one labelled incident as a LABELLED.jsonl line (no newline).
pub fn labelled_line(inc: &LabelledIncident) -> Result<String, serde_json::Error> {
    serde_json::to_string(&LabelledOut {
        category: inc.category,
        root_cause_service: &inc.root_cause_service,
        events: &inc.events,
    })
}

/// Why `reflex train` cannot proceed (exit 2 unless `Fit`).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Input {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Data(String),
    #[error("fitting the model: {0}")]
    Fit(String),
}

/// Reads LABELLED.jsonl; every error names the file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<LabelledIncident>, TrainError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: p.clone(),
        source,
    })?;
    parse_labelled(&text, &p)
}

/// Parses LABELLED.jsonl text (`name` is used in error messages).
pub fn parse_labelled(text: &str, name: &str) -> Result<Vec<LabelledIncident>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| TrainError::Input {
            path: name.to_string(),
            line: i + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let cat = obj
            .get("category")
            .and_then(|c| c.as_str())
            .ok_or_else(|| err("missing string field `category`".into()))?;
        let category = Category::parse(cat).ok_or_else(|| {
            err(format!(
                "unknown category `{cat}` (expected one of: {})",
                Category::ALL.map(|c| c.as_str()).join(", ")
            ))
        })?;
        let root = obj
            .get("root_cause_service")
            .and_then(|c| c.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("missing string field `root_cause_service`".into()))?;
        let evs = obj
            .get("events")
            .and_then(|e| e.as_array())
            .ok_or_else(|| err("missing array field `events`".into()))?;
        let mut events = Vec::with_capacity(evs.len());
        for (j, e) in evs.iter().enumerate() {
            let bytes = serde_json::to_vec(e).map_err(|x| err(format!("events[{j}]: {x}")))?;
            let ev = crate::codec::json::decode_event(&bytes)
                .map_err(|x| err(format!("events[{j}]: {}", x.reason)))?;
            events.push(ev);
        }
        out.push(LabelledIncident {
            category,
            root_cause_service: root.to_string(),
            events,
        });
    }
    Ok(out)
}
