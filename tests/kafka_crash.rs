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

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SERVICES: usize = 6;
const PARTITIONS: i32 = 3;
const WINDOW: i64 = 10_000;

struct Input {
    /// Per chunk: (partition, key, payload).
    chunks: Vec<Vec<Out>>,
    /// (rule key, window start) → expected count.
    expected: BTreeMap<(String, i64), i64>,
    /// (partition, offset) of malformed inputs.
    malformed: BTreeSet<(i64, i64)>,
}

fn build_input() -> Input {
    let t0 = 1_767_225_600_000i64;
    let mut rng = reflex::sim::gen::Rng::new(7);
    let mut offsets = [0i64; PARTITIONS as usize];
    let mut expected = BTreeMap::new();
    let mut malformed = BTreeSet::new();
    let mut chunks = Vec::new();
    let chunk_ms = 120_000;
    let mut n = 0u64;
    for c in 0..4i64 {
        let mut evs: Vec<(i64, usize)> = Vec::new();
        for s in 0..SERVICES {
            let mut t = t0 + c * chunk_ms + rng.below(500) as i64;
            while t < t0 + (c + 1) * chunk_ms {
                evs.push((t, s));
                t += 50 + rng.below(400) as i64;
            }
        }
        evs.sort();
        let mut chunk = Vec::new();
        for (t, s) in evs {
            let p = (s as i32) % PARTITIONS;
            let off = offsets[p as usize];
            offsets[p as usize] += 1;
            n += 1;
            let service = format!("svc{s}");
            if n % 97 == 0 {
                malformed.insert((p as i64, off));
                chunk.push((Some(p), service, b"\x00\x00\x00\x00\x01garbage".to_vec()));
                continue;
            }
            let start = t.div_euclid(WINDOW) * WINDOW;
            let key = format!("service={service}");
            *expected.entry((key, start)).or_insert(0) += 1;
            let payload = event_json(&format!("e{n}"), t, &service, "error");
            chunk.push((Some(p), service, payload));
        }
        chunks.push(chunk);
    }
    // Sentinels: a far-later change event on every partition closes all windows.
    let end = t0 + 4 * chunk_ms + 3_600_000;
    let last = chunks.len() - 1;
    for p in 0..PARTITIONS {
        chunks[last].push((
            Some(p),
            format!("sentinel{p}"),
            event_json(
                &format!("sentinel{p}"),
                end,
                &format!("sentinel{p}"),
                "change",
            ),
        ));
    }
    Input {
        chunks,
        expected,
        malformed,
    }
}

/// (key, window start) of an `every_window` detection, with its count and id.
fn window_of(r: &Rec) -> Option<((String, i64), i64, String)> {
    let v = r.json();
    if v["rule"] != "every_window" {
        return None;
    }
    let w: reflex::model::Window = serde_json::from_value(v["window"].clone()).ok()?;
    Some((
        (v["key"].as_str()?.to_string(), w.start.millis()),
        v["count"].as_i64()?,
        v["detection_id"].as_str()?.to_string(),
    ))
}

fn accounted(input: &Input, det: &[Rec], dlq: &[Rec]) -> (usize, usize) {
    let mut best: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in det {
        if let Some((w, c, _)) = window_of(r) {
            let e = best.entry(w).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let windows_ok = input
        .expected
        .iter()
        .filter(|(id, n)| best.get(*id) == Some(n))
        .count();
    let coords: BTreeSet<(i64, i64)> = dlq
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["source_partition"].as_i64().unwrap_or(-1),
                v["source_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let dlq_ok = input
        .malformed
        .iter()
        .filter(|c| coords.contains(c))
        .count();
    (windows_ok, dlq_ok)
}

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
    let input = build_input();
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
