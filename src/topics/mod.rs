//! Topics as code: `topology/topics.toml` declares every topic of SPEC §2
//! (partitions, replication, retention, cleanup policy) and
//! [`apply`] makes a cluster match it — creating the topics that are
//! missing and reporting, never silently changing, the ones that differ.
//!
//! Topic names in the file are the default names; the real names come from
//! `[kafka]` (`topic_prefix`, `[kafka.topics]` overrides).

use crate::config::kafka::{KafkaConfig, TopicName};
use crate::model::time::parse_duration_ms;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The compiled-in `topology/topics.toml`.
pub const EMBEDDED_TOPICS: &str = include_str!("../../topology/topics.toml");

/// Errors of loading or applying topics.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The file does not parse or breaks a rule (bad usage: exit 2).
    #[error("{file}: {problems}")]
    Invalid { file: String, problems: String },
    /// Talking to the cluster failed (runtime: exit 1).
    #[error("kafka admin: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Defaults {
    replication: Option<i32>,
    retention: Option<String>,
    cleanup_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicEntry {
    partitions: i32,
    replication: Option<i32>,
    retention: Option<String>,
    cleanup_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicsFile {
    #[serde(default)]
    defaults: Defaults,
    topics: BTreeMap<String, TopicEntry>,
}

/// One topic as declared (defaults applied, real name resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The default name (key in the file).
    pub logical: String,
    /// The real name on the cluster.
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// `retention.ms`.
    pub retention_ms: i64,
    /// `cleanup.policy` (`delete`, `compact`, `compact,delete`).
    pub cleanup_policy: String,
}

/// Parses a topics file; every problem is reported at once.
pub fn parse(text: &str, file: &str, kafka: &KafkaConfig) -> Result<Vec<TopicSpec>, TopicsError> {
    let invalid = |problems: Vec<String>| TopicsError::Invalid {
        file: file.to_string(),
        problems: problems.join("; "),
    };
    let f: TopicsFile = toml::from_str(text).map_err(|e| invalid(vec![e.to_string()]))?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (name, t) in &f.topics {
        let Some(topic) = TopicName::parse(name) else {
            problems.push(format!("topics.{name}: not a topic of SPEC §2"));
            continue;
        };
        if t.partitions < 1 {
            problems.push(format!("topics.{name}.partitions: must be at least 1"));
        }
        let replication = t.replication.or(f.defaults.replication).unwrap_or(1);
        if replication < 1 {
            problems.push(format!("topics.{name}.replication: must be at least 1"));
        }
        let retention = t
            .retention
            .clone()
            .or_else(|| f.defaults.retention.clone())
            .unwrap_or_else(|| "7d".into());
        let retention_ms = match retention.as_str() {
            "-1" | "forever" => -1,
            r => match parse_duration_days(r) {
                Some(ms) => ms,
                None => {
                    problems.push(format!("topics.{name}.retention: invalid duration {r:?}"));
                    0
                }
            },
        };
        let cleanup_policy = t
            .cleanup_policy
            .clone()
            .or_else(|| f.defaults.cleanup_policy.clone())
            .unwrap_or_else(|| "delete".into());
        let mut parts: Vec<&str> = cleanup_policy.split(',').map(str::trim).collect();
        parts.sort_unstable();
        if parts.is_empty() || parts.iter().any(|p| *p != "delete" && *p != "compact") {
            problems.push(format!(
                "topics.{name}.cleanup_policy: expected delete, compact or \"compact,delete\""
            ));
        }
        out.push(TopicSpec {
            logical: name.clone(),
            name: kafka.topic(topic),
            partitions: t.partitions,
            replication,
            retention_ms,
            cleanup_policy: parts.join(","),
        });
    }
    for n in TopicName::ALL.map(TopicName::logical) {
        if !f.topics.contains_key(n) {
            problems.push(format!("topics.{n}: missing"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(invalid(problems))
    }
}

/// Durations as in the config, plus days (`7d`).
fn parse_duration_days(s: &str) -> Option<i64> {
    match s.strip_suffix('d') {
        Some(d) => d.trim().parse::<i64>().ok().map(|d| d * 86_400_000),
        None => parse_duration_ms(s),
    }
}

/// What `apply` did or found for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    UpToDate,
    /// Exists but differs; one human line per difference.
    Differs(Vec<String>),
    /// Creation failed.
    Failed(String),
}

/// The result of [`apply`], one line per topic.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub topics: Vec<(String, TopicStatus)>,
}

impl ApplyReport {
    /// Whether every topic now exists (differences are reported, not fatal).
    pub fn ok(&self) -> bool {
        !self
            .topics
            .iter()
            .any(|t| matches!(t.1, TopicStatus::Failed(_)))
    }
}

impl std::fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, st) in &self.topics {
            match st {
                TopicStatus::Created => writeln!(f, "  created     {name}")?,
                TopicStatus::UpToDate => writeln!(f, "  up to date  {name}")?,
                TopicStatus::Differs(d) => writeln!(f, "  DIFFERS     {name}: {}", d.join("; "))?,
                TopicStatus::Failed(e) => writeln!(f, "  FAILED      {name}: {e}")?,
            }
        }
        Ok(())
    }
}

/// Creates the missing topics and compares the existing ones.
pub async fn apply(
    brokers: &str,
    specs: &[TopicSpec],
    extra: &BTreeMap<String, String>,
) -> Result<ApplyReport, TopicsError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    for (k, v) in extra {
        cc.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = cc.create()?;
    let timeout = Duration::from_secs(15);
    let md = admin.inner().fetch_metadata(None, timeout)?;
    // name → (partitions, replication of the first partition)
    let existing: BTreeMap<String, (i32, i32)> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let repl = t
                .partitions()
                .first()
                .map_or(0, |p| p.replicas().len() as i32);
            (t.name().to_string(), (t.partitions().len() as i32, repl))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let mut report = ApplyReport::default();
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let missing: Vec<(usize, &TopicSpec)> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| !existing.contains_key(&s.name))
        .collect();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(i, s)| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
            .set("retention.ms", &retention[*i])
            .set("cleanup.policy", &s.cleanup_policy)
        })
        .collect();
    let mut created = BTreeMap::new();
    if !new.is_empty() {
        for r in admin.create_topics(new.iter(), &opts).await? {
            match r {
                Ok(name) => {
                    created.insert(name, TopicStatus::Created);
                }
                Err((name, code)) => {
                    created.insert(name, TopicStatus::Failed(code.to_string()));
                }
            }
        }
    }
    for s in specs {
        if let Some(st) = created.remove(&s.name) {
            report.topics.push((s.name.clone(), st));
            continue;
        }
        let Some(&(parts, repl)) = existing.get(&s.name) else {
            report.topics.push((
                s.name.clone(),
                TopicStatus::Failed("not created and not reported".into()),
            ));
            continue;
        };
        let mut diffs = Vec::new();
        if parts != s.partitions {
            diffs.push(format!("partitions {parts}, declared {}", s.partitions));
        }
        if repl != s.replication {
            diffs.push(format!("replication {repl}, declared {}", s.replication));
        }
        let spec = [ResourceSpecifier::Topic(&s.name)];
        match admin.describe_configs(spec.iter(), &opts).await {
            Ok(rs) => match rs.into_iter().next() {
                Some(Ok(res)) => {
                    let get = |k: &str| res.get(k).and_then(|e| e.value.clone());
                    if let Some(v) = get("retention.ms") {
                        if v != s.retention_ms.to_string() {
                            diffs.push(format!("retention.ms {v}, declared {}", s.retention_ms));
                        }
                    }
                    if let Some(v) = get("cleanup.policy") {
                        let mut p: Vec<&str> = v.split(',').map(str::trim).collect();
                        p.sort_unstable();
                        if p.join(",") != s.cleanup_policy {
                            diffs
                                .push(format!("cleanup.policy {v}, declared {}", s.cleanup_policy));
                        }
                    }
                }
                Some(Err(code)) => diffs.push(format!("configs not readable: {code}")),
                None => diffs.push("configs not readable".into()),
            },
            Err(e) => diffs.push(format!("configs not readable: {e}")),
        }
        report.topics.push((
            s.name.clone(),
            if diffs.is_empty() {
                TopicStatus::UpToDate
            } else {
                TopicStatus::Differs(diffs)
            },
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_declares_every_topic() {
        let k = KafkaConfig {
            topic_prefix: "t.".into(),
            ..KafkaConfig::default()
        };
        let specs = parse(EMBEDDED_TOPICS, "topics.toml", &k).unwrap();
        assert_eq!(specs.len(), TopicName::ALL.len());
        let inc = specs
            .iter()
            .find(|s| s.logical == "reflex.incidents")
            .unwrap();
        assert_eq!(inc.name, "t.reflex.incidents");
        assert_eq!(inc.cleanup_policy, "compact,delete");
        let dlq = specs.iter().find(|s| s.logical == "reflex.dlq").unwrap();
        assert_eq!(dlq.retention_ms, 30 * 86_400_000);
    }

    #[test]
    fn every_problem_reported() {
        let text = "[topics.errors]\npartitions = 0\ncleanup_policy = \"shred\"\n[topics.bogus]\npartitions = 1\n";
        let err = parse(text, "t.toml", &KafkaConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("topics.errors.partitions"), "{err}");
        assert!(err.contains("cleanup_policy"), "{err}");
        assert!(err.contains("topics.bogus"), "{err}");
        assert!(err.contains("topics.reflex.dlq: missing"), "{err}");
    }
}
