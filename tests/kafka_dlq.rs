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

/// An invalid JSON line of `len` bytes (an object that never closes).
fn invalid_line(len: usize) -> Vec<u8> {
    let mut v = b"{\"id\": \"".to_vec();
    v.resize(len.max(v.len()), b'x');
    v
}

/// A valid `change` event (one detection each) of about `len` bytes.
fn valid_event(id: &str, t: i64, len: usize) -> Vec<u8> {
    let base = event_json(id, t, "svc", "change");
    let pad = len.saturating_sub(base.len() + 20);
    serde_json::json!({
        "id": id, "time": t, "service": "svc", "severity": "error",
        "message": format!("failure {}", "m".repeat(pad)), "kind": "change", "namespace": "shop"
    })
    .to_string()
    .into_bytes()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A producer that accepts records up to `max` bytes.
fn big_producer(brokers: &str, max: usize) -> rdkafka::producer::BaseProducer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", max.to_string())
        .create()
        .expect("producer")
}

/// Waits until `done(dlq records)` while reflex runs; fails at once, with
/// its log, if reflex exits.
fn until_while_running(
    r: &mut Reflex,
    reader: &mut Reader,
    what: &str,
    mut done: impl FnMut(&[Rec]) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if reader.until(Duration::from_millis(500), &mut done) {
            return;
        }
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!("reflex exited ({st}) before {what}; log:\n{}", r.log_text());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            r.log_text()
        );
    }
}

/// [`until_while_running`] until the detections read so far hold every id
/// in `want`.
fn until_detected(r: &mut Reflex, reader: &mut Reader, what: &str, want: &BTreeSet<String>) {
    until_while_running(r, reader, what, |recs| {
        let ids: BTreeSet<String> = recs
            .iter()
            .filter_map(|r| r.json()["detection_id"].as_str().map(String::from))
            .collect();
        want.is_subset(&ids)
    });
}

/// The issue's poison pill: one 800 KB line of invalid JSON among good
/// events. Its dead letter (raw bytes base64-encoded) used to exceed the
/// producer's message limit and stop reflex with exit 1, uncommitted, on
/// every restart. Now the dead letter is cut, carries the whole input's
/// length and SHA-256, the good events are processed, and a restart goes
/// on too.
#[test]
fn an_800_kb_invalid_line_is_dead_lettered_and_never_stops_reflex() {
    let Some(b) = brokers() else { return };
    let prefix = unique("pill");
    create_topics(&b, &prefix, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");
    let input = format!("{prefix}.errors");
    let t0 = 1_767_225_600_000i64;
    let pill = invalid_line(800_000);
    let mut recs = Vec::new();
    let mut good = BTreeSet::new();
    for i in 0..6i64 {
        if i == 2 {
            recs.push((Some(0), String::new(), pill.clone()));
        }
        let id = format!("pill-{i}");
        good.insert(reflex::util::stable_id("chg-", &[id.as_bytes(), b"svc"]));
        recs.push((
            Some(0),
            String::new(),
            event_json(&id, t0 + i * 1000, "svc", "change"),
        ));
    }
    produce(&producer(&b), &input, &recs);
    let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    until_while_running(&mut r, &mut dlq, "the dead letter", |x| !x.is_empty());
    let v = dlq.records[0].json();
    assert_eq!(v["source_topic"], input.as_str());
    assert_eq!(
        (v["source_partition"].as_i64(), v["source_offset"].as_i64()),
        (Some(0), Some(2))
    );
    // serde reports the unterminated string as a data error of field `id`.
    assert_eq!(v["reason_kind"], "invalid_event", "{}", v["reason"]);
    assert!(
        v["reason"].as_str().unwrap().starts_with("field `id`: EOF"),
        "{}",
        v["reason"]
    );
    assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(v["raw_length"], pill.len());
    assert_eq!(v["raw_sha256"], sha256_hex(&pill).as_str());
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw.len(), 64 * 1024, "cut to the default maximum");
    assert_eq!(raw, &pill[..raw.len()]);
    assert!(dlq.records[0].payload.len() < 100_000);
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    until_detected(&mut r, &mut det, "every good event", &good);
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
    // A restart (the old code died here again, every time) goes on.
    let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex2.log"));
    let one_more = "pill-after".to_string();
    good.insert(reflex::util::stable_id(
        "chg-",
        &[one_more.as_bytes(), b"svc"],
    ));
    produce(
        &producer(&b),
        &input,
        &[(
            Some(0),
            String::new(),
            event_json(&one_more, t0 + 10_000, "svc", "change"),
        )],
    );
    let want = reflex::util::stable_id("chg-", &[one_more.as_bytes(), b"svc"]);
    until_detected(
        &mut r,
        &mut det,
        "the event after the restart",
        &BTreeSet::from([want]),
    );
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
    // At least once: the pill's offset is committed only once the good
    // events around it left their windows, so the restart may replay it —
    // it then gives the same dead letter again and does not stop reflex.
    dlq.poll_some();
    for rec in &dlq.records {
        let v = rec.json();
        assert_eq!(
            (v["source_offset"].as_i64(), v["raw_sha256"].as_str()),
            (Some(2), Some(sha256_hex(&pill).as_str()))
        );
    }
}

/// Inputs of every size up to what the broker takes, valid and invalid:
/// reflex never stops; each invalid one (and each one above
/// `max_event_bytes`) is on `reflex.dlq` with a reason, its length and hash.
#[test]
fn inputs_of_every_size_valid_and_invalid_never_stop_reflex() {
    let Some(b) = brokers() else { return };
    let prefix = unique("sizes");
    create_topics(&b, &prefix, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");
    let input = format!("{prefix}.errors");
    let t0 = 1_767_225_600_000i64;
    let max_event = 1 << 20;
    let sizes = [
        0usize,
        1,
        100,
        10_000,
        65_536,
        65_537,
        100_000,
        500_000,
        800_000,
        999_000,
        max_event,
        max_event + 1,
        1_500_000,
        3_000_000,
    ];
    let mut recs = Vec::new();
    let mut invalid = Vec::new();
    let mut good = BTreeSet::new();
    for (i, &n) in sizes.iter().enumerate() {
        let bad = invalid_line(n);
        invalid.push(bad.clone());
        recs.push((Some(0), String::new(), bad));
        if n >= 200 {
            let id = format!("size-{i}");
            let ev = valid_event(&id, t0 + i as i64 * 1000, n);
            if ev.len() > max_event {
                invalid.push(ev.clone());
            } else {
                good.insert(reflex::util::stable_id("chg-", &[id.as_bytes(), b"svc"]));
            }
            recs.push((Some(0), String::new(), ev));
        }
    }
    // Over 100 characters of service: an identifier over the limit.
    let long = serde_json::json!({"id": "long", "time": t0, "service": "s".repeat(100_000),
        "severity": "error", "message": "m"})
    .to_string()
    .into_bytes();
    invalid.push(long.clone());
    recs.push((Some(0), String::new(), long));
    produce(&big_producer(&b, 4 << 20), &input, &recs);
    // What the broker took (it may refuse the largest ones).
    let mut taken = Reader::new(&b, &input);
    taken.until(Duration::from_secs(60), |x| x.len() >= recs.len());
    let taken: BTreeSet<Vec<u8>> = taken.records.iter().map(|r| r.payload.clone()).collect();
    invalid.retain(|p| taken.contains(p));
    assert!(
        invalid.iter().any(|p| p.len() > max_event),
        "the broker took nothing above max_event_bytes: {:?}",
        taken.iter().map(Vec::len).max()
    );
    let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    until_while_running(&mut r, &mut dlq, "every dead letter", |x| {
        x.len() >= invalid.len()
    });
    let mut hashes = BTreeSet::new();
    for rec in &dlq.records {
        let v = rec.json();
        assert!(v["reason"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(v["raw_length"].as_u64().is_some(), "{v}");
        hashes.insert((
            v["raw_length"].as_u64().unwrap(),
            v["raw_sha256"].as_str().unwrap().to_string(),
        ));
    }
    for p in &invalid {
        assert!(
            hashes.contains(&(p.len() as u64, sha256_hex(p))),
            "no dead letter for an input of {} bytes",
            p.len()
        );
    }
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    until_detected(&mut r, &mut det, "every valid event", &good);
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
}

/// A dead letter that still cannot be produced (here: raw bytes kept whole
/// by configuration, so the record is larger than the producer's message
/// limit) is counted in `reflex_outputs_skipped_total{topic="reflex.dlq"}`,
/// logged with its source coordinates and skipped past (policy `skip`, the
/// default for dead letters); the good events after it are processed and
/// SIGTERM exits 0. With `dead_letter = "stop"` the same input stops reflex
/// with exit 1, as the operator asked.
#[test]
fn a_dead_letter_that_cannot_be_produced_is_skipped_or_stops_by_policy() {
    let Some(b) = brokers() else { return };
    for stop in [false, true] {
        let prefix = unique(if stop { "pstop" } else { "pskip" });
        create_topics(&b, &prefix, &[]);
        let dir = tempfile::tempdir().unwrap();
        let mut extra = "\n[telemetry]\nhttp_listen = \"127.0.0.1:0\"\n".to_string();
        if stop {
            extra.push_str("\n[kafka.on_permanent_failure]\ndead_letter = \"stop\"\n");
        }
        let cfg = write_config(dir.path(), &prefix, &extra);
        // Raw bytes kept whole: 800 KB of base64 is more than a record may be.
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "[pipeline]\n",
            "[pipeline]\ndead_letter_max_raw_bytes = 2097152\n",
        );
        std::fs::write(&cfg, text).unwrap();
        let input = format!("{prefix}.errors");
        let t0 = 1_767_225_600_000i64;
        let pill = invalid_line(800_000);
        let after = "after-pill".to_string();
        let recs = vec![
            (Some(0), String::new(), pill.clone()),
            (
                Some(0),
                String::new(),
                event_json(&after, t0, "svc", "change"),
            ),
        ];
        produce(&producer(&b), &input, &recs);
        let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
        let log_path = r.log.clone();
        let log = move || std::fs::read_to_string(&log_path).unwrap_or_default();
        if stop {
            let st = within(Duration::from_secs(60), "reflex to stop", &log, || {
                r.child.try_wait().ok().flatten()
            });
            assert_eq!(st.code(), Some(1), "log:\n{}", log());
            assert!(log().contains("MessageSizeTooLarge"), "{}", log());
            continue;
        }
        let addr: std::net::SocketAddr =
            within(Duration::from_secs(60), "the http address", &log, || {
                log()
                    .lines()
                    .find_map(|l| l.strip_prefix("reflex: http listening on "))
                    .and_then(|a| a.trim().parse().ok())
            });
        let want = reflex::util::stable_id("chg-", &[after.as_bytes(), b"svc"]);
        let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
        until_detected(
            &mut r,
            &mut det,
            "the event after the pill",
            &BTreeSet::from([want]),
        );
        let metrics = within(Duration::from_secs(30), "the skip counted", &log, || {
            http(addr, "GET", "/metrics", None)
                .map(|x| x.1)
                .filter(|m| m.contains("reflex_outputs_skipped_total{topic=\"reflex.dlq\"} 1"))
        });
        assert!(metrics.contains("reflex_outputs_skipped_total{topic=\"reflex.actions\"} 0"));
        let text = r.log_text();
        let line = text
            .lines()
            .find(|l| l.contains("skipped by policy"))
            .unwrap_or_else(|| panic!("no skip logged:\n{text}"));
        assert!(
            line.contains(&format!("{input}/0/0")),
            "coordinates: {line}"
        );
        let st = r.terminate();
        assert!(st.success(), "exit {st:?}");
        // The skipped record counted as done: its input was committed, so a
        // restart does not read it again before the next event.
        let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex2.log"));
        let next = "after-restart".to_string();
        let next_id = reflex::util::stable_id("chg-", &[next.as_bytes(), b"svc"]);
        produce(
            &producer(&b),
            &input,
            &[(
                Some(0),
                String::new(),
                event_json(&next, t0 + 1000, "svc", "change"),
            )],
        );
        until_detected(
            &mut r,
            &mut det,
            "the event after the restart",
            &BTreeSet::from([next_id]),
        );
        assert!(
            !r.log_text().contains("skipped by policy"),
            "the pill was read again:\n{}",
            r.log_text()
        );
        let st = r.terminate();
        assert!(st.success(), "exit {st:?}");
    }
}
