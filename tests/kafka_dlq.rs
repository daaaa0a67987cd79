//! Malformed messages land in `reflex.dlq` with their coordinates; the good
//! ones around them are processed; SIGTERM drains, commits and exits 0.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn malformed_messages_go_to_dlq_with_coordinates() {
    let Some(b) = brokers() else { return };
    let prefix = unique("dlq");
    create_topics(&b, &prefix, &[("errors", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");
    let input = format!("{prefix}.errors");
    let t0 = 1_767_225_600_000i64;
    // Change events become detections at once, one per event (id-derived
    // detection_id): a precise witness that each good event was processed.
    let mut recs = Vec::new();
    let mut good = BTreeSet::new();
    let mut bad = 0;
    for i in 0..40i64 {
        let part = (i % 2) as i32;
        let payload = match i % 5 {
            1 => b"{not json".to_vec(),
            3 => br#"{"id":"x","time":1,"service":"","severity":"error","message":"m"}"#.to_vec(),
            _ => {
                let id = format!("ev-{i}");
                good.insert(reflex::util::stable_id("chg-", &[id.as_bytes(), b"svc"]));
                event_json(&id, t0 + i * 1000, "svc", "change")
            }
        };
        if i % 5 == 1 || i % 5 == 3 {
            bad += 1;
        }
        recs.push((Some(part), format!("k{i}"), payload));
    }
    produce(&producer(&b), &input, &recs);
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    assert!(
        dlq.until(Duration::from_secs(60), |r| r.len() >= bad),
        "dlq: {} of {bad}; log:\n{}",
        dlq.records.len(),
        r.log_text()
    );
    assert!(
        det.until(Duration::from_secs(60), |recs| {
            let ids: BTreeSet<String> = recs
                .iter()
                .filter_map(|r| r.json()["detection_id"].as_str().map(String::from))
                .collect();
            good.is_subset(&ids)
        }),
        "not every good event was processed; log:\n{}",
        r.log_text()
    );
    // Coordinates: source topic, partition and offset of each bad message.
    let mut coords = BTreeSet::new();
    for rec in &dlq.records {
        let v = rec.json();
        assert_eq!(v["source_topic"], input.as_str());
        let p = v["source_partition"].as_i64().unwrap();
        let o = v["source_offset"].as_i64().unwrap();
        assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(v["raw"].as_str().is_some());
        coords.insert((p, o));
    }
    // Partition p holds messages i ≡ p (mod 2) in order: offset = i / 2.
    let expected: BTreeSet<(i64, i64)> = (0..40i64)
        .filter(|i| i % 5 == 1 || i % 5 == 3)
        .map(|i| (i % 2, i / 2))
        .collect();
    assert_eq!(coords, expected);
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
}

/// Backpressure: with at most 2 outputs awaiting acks the consumer pauses
/// and resumes constantly; every event is still processed.
#[test]
fn tiny_in_flight_bound_still_processes_everything() {
    let Some(b) = brokers() else { return };
    let prefix = unique("bp");
    create_topics(&b, &prefix, &[("errors", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[kafka]\n", "[kafka]\nmax_in_flight = 2\n");
    std::fs::write(&cfg, text).unwrap();
    let t0 = 1_767_225_600_000i64;
    let mut recs = Vec::new();
    let mut good = BTreeSet::new();
    for i in 0..500i64 {
        let id = format!("bp-{i}");
        good.insert(reflex::util::stable_id("chg-", &[id.as_bytes(), b"svc"]));
        recs.push((
            Some((i % 2) as i32),
            String::new(),
            event_json(&id, t0 + i, "svc", "change"),
        ));
    }
    produce(&producer(&b), &format!("{prefix}.errors"), &recs);
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    assert!(
        det.until(Duration::from_secs(60), |recs| {
            let ids: BTreeSet<String> = recs
                .iter()
                .filter_map(|r| r.json()["detection_id"].as_str().map(String::from))
                .collect();
            good.is_subset(&ids)
        }),
        "{} detections; log:\n{}",
        det.records.len(),
        r.log_text()
    );
    assert!(r.terminate().success());
}
