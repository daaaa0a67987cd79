//! Reading the records of an embedded run for the report: the JSON Lines
//! files `reflex run --output-dir DIR` writes (`DIR/incidents.jsonl`,
//! `actions.jsonl`, `escalations.jsonl`), or a `reflex demo --export DIR`
//! (the same files under `DIR/demo-out/`, results in
//! `DIR/action-results.jsonl`).
//!
//! Guarantees: every line is decoded or reported as `FILE:LINE: reason`
//! (nothing is skipped silently, except blank lines); a missing results
//! file is no error (the report then cannot tell execution failures apart).

use super::Records;
use crate::model::{ActionResult, Escalation, Incident, RecoveryAction};
use std::path::{Path, PathBuf};

/// What went wrong while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// No `incidents.jsonl` in the directory nor in `demo-out/`.
    NotAnOutputDir,
    /// A file could not be read.
    Io,
    /// A line is not the record it should be.
    BadRecord,
}

/// A loading failure, with the kind to branch on.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub message: String,
}

/// Where the output files of `dir` are (itself or its `demo-out/`).
pub fn output_dir(dir: &Path) -> Result<PathBuf, LoadError> {
    for d in [dir.to_path_buf(), dir.join("demo-out")] {
        if d.join("incidents.jsonl").is_file() {
            return Ok(d);
        }
    }
    Err(LoadError {
        kind: LoadErrorKind::NotAnOutputDir,
        message: format!(
            "{}: no incidents.jsonl here or in demo-out/ (expected the output of `reflex run --output-dir` or `reflex demo --export`)",
            dir.display()
        ),
    })
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        kind: LoadErrorKind::Io,
        message: format!("{}: {e}", path.display()),
    })?;
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        v.push(serde_json::from_str(line).map_err(|e| LoadError {
            kind: LoadErrorKind::BadRecord,
            message: format!("{}:{}: {e}", path.display(), n + 1),
        })?);
    }
    Ok(v)
}

fn optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadError> {
    if path.is_file() {
        read_lines(path)
    } else {
        Ok(Vec::new())
    }
}

/// Loads the records of `dir`; results from `results` when given, else
/// from `action-results.jsonl` in `dir` or the output directory.
pub fn load_dir(dir: &Path, results: Option<&Path>) -> Result<Records, LoadError> {
    let out = output_dir(dir)?;
    let incidents: Vec<Incident> = read_lines(&out.join("incidents.jsonl"))?;
    let actions: Vec<RecoveryAction> = optional(&out.join("actions.jsonl"))?;
    let escalations: Vec<Escalation> = optional(&out.join("escalations.jsonl"))?;
    let results: Vec<ActionResult> = match results {
        Some(p) => read_lines(p)?,
        None => {
            let here = dir.join("action-results.jsonl");
            if here.is_file() {
                read_lines(&here)?
            } else {
                optional(&out.join("action-results.jsonl"))?
            }
        }
    };
    Ok(Records {
        incidents,
        actions,
        escalations,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_demo_exports_and_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_dir(dir.path(), None).unwrap_err();
        assert_eq!(missing.kind, LoadErrorKind::NotAnOutputDir);
        let out = dir.path().join("demo-out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("incidents.jsonl"), "\n").unwrap();
        let r = load_dir(dir.path(), None).unwrap();
        assert!(r.incidents.is_empty() && r.results.is_empty());
        std::fs::write(out.join("actions.jsonl"), "\n{\"nope\": 1}\n").unwrap();
        let bad = load_dir(dir.path(), None).unwrap_err();
        assert_eq!(bad.kind, LoadErrorKind::BadRecord);
        assert!(bad.message.contains("actions.jsonl:2:"), "{}", bad.message);
    }
}
