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
use reflex::sim::gen::{generate, Fault};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Partitions of the input topic: one per shop service (5), one for the
/// lone record, two that stay empty.
const PARTITIONS: i32 = 8;
const LONE_PARTITION: i32 = 5;

/// One event of the recording: (event time, service, JSON).
type Ev = (i64, String, Vec<u8>);

/// The recording: an hour of the shop with inventory out of memory and a bad
/// catalog deploy, plus one event of a service seen nowhere else (the
/// partition holding a single record). Time-ordered, as a recording is.
fn recording() -> Vec<Ev> {
    let mut g = inventory_oom_hour();
    g.faults.push(Fault {
        service: "catalog".into(),
        start: g.start.plus_ms(40 * 60_000),
        duration_ms: 6 * 60_000,
        rate: 3.0,
        message: "NullPointerException in ItemController.get {id}".into(),
        error_type: Some("java.lang.NullPointerException".into()),
        with_deploy: true,
    });
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
    // Idle detection in 200 ms so the test runs fast; the default detectors.
    let cfg = write_config_with(dir.path(), &prefix, "", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "idle_partition_timeout = \"2s\"",
        "idle_partition_timeout = \"200ms\"",
    );
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

#[test]
fn backlog_through_split_stages() {
    backlog_gives_the_embedded_incidents(true);
}
