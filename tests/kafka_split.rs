//! `--stage detect` + `--stage decide` in two processes give the same
//! incidents as `--stage all` on the same input.

mod common;

use common::*;
use reflex::sim::gen::{generate, Fault, GenConfig};
use std::collections::BTreeMap;
use std::time::Duration;

fn input() -> Vec<Vec<u8>> {
    let hour = 3_600_000;
    let mut g = GenConfig::shop(11, hour);
    g.noise_rate = 0.2;
    g.faults.push(Fault {
        service: "payments".into(),
        start: g.start.plus_ms(20 * 60_000),
        duration_ms: 8 * 60_000,
        rate: 4.0,
        message: "java.lang.OutOfMemoryError: Java heap space at {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    g.faults.push(Fault {
        service: "catalog".into(),
        start: g.start.plus_ms(40 * 60_000),
        duration_ms: 6 * 60_000,
        rate: 3.0,
        message: "NullPointerException in ItemController.get {id}".into(),
        error_type: Some("java.lang.NullPointerException".into()),
        with_deploy: true,
    });
    let evs = generate(&g);
    let mut out: Vec<Vec<u8>> = evs.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
    // A much later event closes every window and resolves every incident.
    out.push(event_json(
        "sentinel",
        g.start.millis() + 3 * hour,
        "sentinel",
        "change",
    ));
    out
}

/// Incident records per incident id, in publication order.
fn incidents(recs: &[Rec]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in recs {
        let v = r.json();
        if let Some(id) = v["incident_id"].as_str() {
            m.entry(id.to_string()).or_default().push(v);
        }
    }
    m
}

/// Both injected faults have an incident and every incident has resolved.
/// Waiting for one resolved incident alone races the second fault: the first
/// incident resolves (in event time) before the second one opens.
fn all_resolved(recs: &[Rec]) -> bool {
    let m = incidents(recs);
    m.len() >= 2
        && m.values()
            .all(|v| v.last().is_some_and(|r| r["status"] == "resolved"))
}

#[test]
fn split_stages_give_the_same_incidents_as_all() {
    let Some(b) = brokers() else { return };
    let events = input();
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for mode in ["all", "split"] {
        let prefix = unique(&format!("split-{mode}"));
        create_topics(&b, &prefix, &[("reflex.detections", 3)]);
        let cfg = write_config_with(dir.path(), &prefix, "", "");
        let recs: Vec<(Option<i32>, String, Vec<u8>)> = events
            .iter()
            .map(|e| (Some(0), String::new(), e.clone()))
            .collect();
        produce(&producer(&b), &format!("{prefix}.errors"), &recs);
        let log = dir.path().join(format!("{mode}.log"));
        let procs = if mode == "all" {
            vec![Reflex::start(&b, &cfg, "all", log)]
        } else {
            vec![
                Reflex::start(&b, &cfg, "detect", log.clone()),
                Reflex::start(&b, &cfg, "decide", log),
            ]
        };
        let mut inc = Reader::new(&b, &format!("{prefix}.reflex.incidents"));
        let ok = inc.until(Duration::from_secs(120), all_resolved);
        assert!(
            ok,
            "{mode}: incidents not all resolved: {:?}; log:\n{}",
            incidents(&inc.records).keys().collect::<Vec<_>>(),
            procs[0].log_text()
        );
        for p in procs {
            assert!(p.terminate().success());
        }
        results.push(incidents(&inc.records));
    }
    assert!(
        results[0].len() >= 2,
        "expected the two injected faults: {:?}",
        results[0].keys()
    );
    let n: usize = results[0].values().map(Vec::len).sum();
    eprintln!("{} incidents, {n} incident records", results[0].len());
    assert_eq!(
        results[0], results[1],
        "split deployment differs from --stage all"
    );
}

/// Avro outputs (Confluent framing, configured schema ids) through a split
/// deployment: the decide stage reads Avro detections, and incidents come
/// out framed with their id and decodable with `schemas/incident.avsc`.
#[test]
fn split_stages_with_avro_outputs() {
    let Some(b) = brokers() else { return };
    let prefix = unique("split-avro");
    create_topics(&b, &prefix, &[("reflex.detections", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(
        dir.path(),
        &prefix,
        "",
        "[kafka.schema_ids]\ndetection = 101\nincident = 102\nrecovery_action = 103\nescalation = 104\ndead_letter = 105\n",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[kafka]\n", "[kafka]\noutput_format = \"avro\"\n");
    std::fs::write(&cfg, text).unwrap();
    let recs: Vec<Out> = input()
        .into_iter()
        .map(|e| (Some(0), String::new(), e))
        .collect();
    produce(&producer(&b), &format!("{prefix}.errors"), &recs);
    let d = Reflex::start(&b, &cfg, "detect", dir.path().join("d.log"));
    let c = Reflex::start(&b, &cfg, "decide", dir.path().join("c.log"));
    let mut inc = Reader::new(&b, &format!("{prefix}.reflex.incidents"));
    let decode = |r: &Rec| {
        let (id, body) = reflex::codec::wire::unframe(&r.payload)?;
        assert_eq!(id, 102);
        reflex::codec::avro::decode::<reflex::model::Incident>(
            reflex::codec::avro::RecordType::Incident,
            body,
        )
        .ok()
    };
    let ok = inc.until(Duration::from_secs(120), |recs| {
        recs.iter()
            .filter_map(decode)
            .any(|i| i.status == reflex::model::IncidentStatus::Resolved)
    });
    assert!(ok, "no Avro incidents; decide log:\n{}", c.log_text());
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    assert!(det.until(Duration::from_secs(10), |r| r
        .iter()
        .any(|r| !r.is_marker())));
    for r in det.records.iter().filter(|r| !r.is_marker()) {
        let (id, _) = reflex::codec::wire::unframe(&r.payload).expect("framed");
        assert_eq!(id, 101);
    }
    assert!(d.terminate().success());
    assert!(c.terminate().success());
}
