//! Rebalances: a second instance joins the group mid-stream, then the first
//! leaves (SIGTERM). On revoke each instance flushes and commits what is
//! done and restarts clean from the committed offsets, so every input event
//! is still accounted for (same accounting as tests/kafka_crash.rs).

mod common;

use common::accounting::*;
use common::*;
use std::time::Duration;

#[test]
fn instances_joining_and_leaving_lose_nothing() {
    let Some(b) = brokers() else { return };
    let prefix = unique("rebal");
    let partitions = 4;
    create_topics(&b, &prefix, &[("errors", partitions)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "\"session.timeout.ms\" = \"6000\"\n");
    let input = build_input(partitions, 8, 3);
    let topic = format!("{prefix}.errors");
    let prod = producer(&b);
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));

    produce(&prod, &topic, &input.chunks[0]);
    let a = Reflex::start(&b, &cfg, "all", dir.path().join("a.log"));
    assert!(
        det.until(Duration::from_secs(60), |r| r.len() > 10),
        "a: no progress\n{}",
        a.log_text()
    );
    let bb = Reflex::start(&b, &cfg, "all", dir.path().join("b.log"));
    produce(&prod, &topic, &input.chunks[1]);
    // Wait for the join: a revokes (and commits) its partitions.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !a.log_text().contains("Partitions revoked") {
        assert!(
            std::time::Instant::now() < deadline,
            "no rebalance\n{}",
            a.log_text()
        );
        det.poll_some();
    }
    let seen = det.records.len();
    assert!(
        det.until(Duration::from_secs(60), |r| r.len() > seen),
        "no progress after join"
    );
    assert!(
        a.terminate().success(),
        "first instance did not exit cleanly"
    );
    produce(&prod, &topic, &input.chunks[2]);
    let total = (input.expected.len(), input.malformed.len());
    let mut last = (0, 0);
    let ok = det.until(Duration::from_secs(120), |recs| {
        dlq.poll_some();
        last = accounted(&input, recs, &dlq.records);
        last == total
    });
    assert!(
        ok,
        "accounted {last:?} of {total:?}; log b:\n{}",
        bb.log_text()
    );
    assert!(bb.log_text().contains("Partitions assigned"));
    assert!(bb.terminate().success());
}
