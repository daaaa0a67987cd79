//! `reflex topics apply`: creates the missing topics (with the configured
//! prefix), reports the ones that differ, is idempotent, and rejects a bad
//! topics file with exit code 2.

mod common;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::process::Command;

fn apply(b: &str, cfg: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args([
            "topics",
            "apply",
            "--brokers",
            b,
            "--replication",
            "1",
            "--config",
        ])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn topics_apply_creates_reports_and_is_idempotent() {
    let Some(b) = brokers() else { return };
    let prefix = unique("topics");
    // One topic exists already, with the wrong partition count.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .create()
        .unwrap();
    let dlq = format!("{prefix}.reflex.dlq");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(admin.create_topics(
            [&NewTopic::new(&dlq, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");

    let (code, out) = apply(&b, &cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("  created").count(), 6, "{out}");
    assert!(
        out.contains(&format!("created     {prefix}.errors")),
        "{out}"
    );
    assert!(
        out.contains(&format!("DIFFERS     {dlq}: partitions 1, declared 3")),
        "{out}"
    );

    let (code, out) = apply(&b, &cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("  created").count(), 0, "{out}");
    assert_eq!(out.matches("up to date").count(), 6, "{out}");

    let bad = dir.path().join("topics.toml");
    std::fs::write(&bad, "[topics.errors]\npartitions = 0\n").unwrap();
    let (code, out) = apply(&b, &cfg, &["--topics", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("partitions: must be at least 1"), "{out}");
}
