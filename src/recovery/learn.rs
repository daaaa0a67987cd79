//! Learned success rates of (category, action): a Beta posterior per pair,
//! updated from executor results and verification outcomes, optionally
//! persisted to a JSON file and reloaded at start.
//!
//! Model: prior Beta([`PRIOR_SUCCESSES`], [`PRIOR_FAILURES`]) (mean 0.8: the
//! catalog's remedies are expected to work); each observed success adds 1 to
//! α, each failure 1 to β; the success rate used in risk is the posterior
//! mean α / (α + β).
//!
//! Guarantees: updates and reads are deterministic; the file is written
//! whole to a temporary file then renamed (never left half-written);
//! entries are sorted, so the same history gives the same bytes.

use crate::model::{ActionType, Category};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Prior pseudo-count of successes.
pub const PRIOR_SUCCESSES: f64 = 4.0;
/// Prior pseudo-count of failures.
pub const PRIOR_FAILURES: f64 = 1.0;

/// Observed outcomes of one (category, action).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub successes: u64,
    pub failures: u64,
}

impl Counts {
    /// Posterior mean success rate.
    pub fn mean(&self) -> f64 {
        let a = PRIOR_SUCCESSES + self.successes as f64;
        let b = PRIOR_FAILURES + self.failures as f64;
        a / (a + b)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    category: Category,
    action: ActionType,
    successes: u64,
    failures: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

/// Why the learning file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a learning file: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The learned posteriors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Learned {
    counts: BTreeMap<(Category, ActionType), Counts>,
    path: Option<PathBuf>,
}

impl Learned {
    /// In memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Backed by `path`: loads it if it exists (a missing file is an empty history).
    pub fn open(path: &Path) -> Result<Self, LearnError> {
        let mut l = Learned {
            counts: BTreeMap::new(),
            path: Some(path.to_path_buf()),
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(l),
            Err(source) => {
                return Err(LearnError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let f: File = serde_json::from_slice(&text).map_err(|source| LearnError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        for e in f.entries {
            l.counts.insert(
                (e.category, e.action),
                Counts {
                    successes: e.successes,
                    failures: e.failures,
                },
            );
        }
        Ok(l)
    }

    /// Observed outcomes of (category, action).
    pub fn counts(&self, c: Category, a: ActionType) -> Counts {
        self.counts.get(&(c, a)).copied().unwrap_or_default()
    }

    /// Posterior mean success rate of (category, action).
    pub fn success_rate(&self, c: Category, a: ActionType) -> f64 {
        self.counts(c, a).mean()
    }

    /// Records one outcome and persists (when file-backed).
    pub fn record(&mut self, c: Category, a: ActionType, success: bool) -> Result<(), LearnError> {
        let e = self.counts.entry((c, a)).or_default();
        if success {
            e.successes += 1;
        } else {
            e.failures += 1;
        }
        self.save()
    }

    /// Writes the file (when file-backed).
    pub fn save(&self) -> Result<(), LearnError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let f = File {
            version: 1,
            entries: self
                .counts
                .iter()
                .map(|(&(category, action), c)| Entry {
                    category,
                    action,
                    successes: c.successes,
                    failures: c.failures,
                })
                .collect(),
        };
        let err = |source| LearnError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(&f).map_err(|e| err(e.into()))?;
        bytes.push(b'\n');
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posterior_moves_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("learned.json");
        let mut l = Learned::open(&p).expect("missing file is empty");
        let prior = l.success_rate(Category::Overload, ActionType::Scale);
        assert!((prior - 0.8).abs() < 1e-9);
        l.record(Category::Overload, ActionType::Scale, false)
            .expect("saved");
        l.record(Category::Overload, ActionType::Scale, false)
            .expect("saved");
        let after = l.success_rate(Category::Overload, ActionType::Scale);
        assert!(after < prior);
        let back = Learned::open(&p).expect("reloads");
        assert_eq!(
            back.success_rate(Category::Overload, ActionType::Scale),
            after
        );
        std::fs::write(&p, "nonsense").expect("write");
        assert!(matches!(Learned::open(&p), Err(LearnError::Parse { .. })));
    }
}
