//! Crash test: SIGKILL reflex at several points mid-stream, restart it, and
//! check that every input event is accounted for.
//!
//! Accounting: the test config's threshold rule fires on every non-empty
//! 10 s window per service, and a detection's `count` is the number of
//! events in its window. Events of one service go to one partition in
//! event-time order, so no event is late and each belongs to exactly one
//! window. For every (service, window) of the input, the largest `count`
//! among the detections with that window's `detection_id` must equal the
//! number of input events in it; every malformed input must be in the DLQ
//! with its partition and offset. Duplicates (a window re-emitted after a
//! replay, same `detection_id`) are allowed; a loss is not. An
//! implementation that committed an offset before the window holding that
//! event was emitted and acknowledged would, after the kill, emit that
//! window without the event (a smaller count) or not at all.

mod common;

use common::accounting::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};

const PARTITIONS: i32 = 3;
use std::time::Duration;

#[test]
fn sigkill_mid_stream_loses_nothing() {
    let Some(b) = brokers() else { return };
    let prefix = unique("crash");
    create_topics(
        &b,
        &prefix,
        &[("errors", PARTITIONS), ("reflex.detections", 3)],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &prefix,
        "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
    );
    let input = build_input(PARTITIONS, 6, 4);
    let topic = format!("{prefix}.errors");
    let prod = producer(&b);
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    let log = dir.path().join("reflex.log");
    let mut kills = 0;
    for (i, chunk) in input.chunks.iter().enumerate() {
        produce(&prod, &topic, chunk);
        if i == input.chunks.len() - 1 {
            break;
        }
        let r = Reflex::start(&b, &cfg, "all", log.clone());
        // Kill as soon as this run has emitted something new: mid-stream.
        let seen = det.records.len();
        assert!(
            det.until(Duration::from_secs(60), |recs| recs.len() > seen + 5),
            "no progress before kill {i}; log:\n{}",
            r.log_text()
        );
        r.crash();
        kills += 1;
    }
    assert_eq!(kills, 3);
    let r = Reflex::start(&b, &cfg, "all", log.clone());
    let total = (input.expected.len(), input.malformed.len());
    let mut last = (0, 0);
    let ok = det.until(Duration::from_secs(120), |recs| {
        dlq.poll_some();
        last = accounted(&input, recs, &dlq.records);
        last == total
    });
    assert!(
        ok,
        "accounted windows/dlq {last:?} of {total:?}; log:\n{}",
        r.log_text()
    );
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
    // Duplicates only as the same detection (same id for the same window),
    // and no window that the input does not have.
    let mut ids: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for r in &det.records {
        if let Some((w, _, id)) = window_of(r) {
            ids.entry(w).or_default().insert(id);
        }
    }
    assert!(ids.keys().all(|w| input.expected.contains_key(w)));
    assert!(
        ids.values().all(|s| s.len() == 1),
        "a window re-emitted under another id"
    );
}
