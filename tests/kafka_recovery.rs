//! Kafka mode closes the loop: an executor's result published on
//! `reflex.action-results` reaches the decide stage, which verifies the
//! action against the events that follow and climbs the remedy ladder when
//! the fault outlives it.

mod common;

use common::*;
use reflex::sim::gen::generate;
use std::time::Duration;

#[test]
fn results_on_kafka_drive_verification_and_the_ladder() {
    let Some(b) = brokers() else { return };
    let prefix = unique("recovery");
    create_topics(&b, &prefix, &[("reflex.action-results", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(dir.path(), &prefix, "", "");
    let g = inventory_oom_hour();
    let split = g.start.plus_ms(26 * 60_000);
    let evs = generate(&g);
    let (first, rest): (Vec<_>, Vec<_>) = evs.iter().partition(|e| e.time < split);
    let recs = |v: &[&reflex::model::ErrorEvent]| -> Vec<Out> {
        v.iter()
            .map(|e| (Some(0), String::new(), serde_json::to_vec(e).unwrap()))
            .collect()
    };
    let p = producer(&b);
    produce(&p, &format!("{prefix}.errors"), &recs(&first));
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("all.log"));
    let mut acts = Reader::new(&b, &format!("{prefix}.reflex.actions"));
    let auto = |recs: &[Rec]| {
        recs.iter()
            .filter(|r| r.json()["decision"] == "auto")
            .count()
    };
    assert!(
        acts.until(Duration::from_secs(90), |x| auto(x) >= 1),
        "no automatic action; log:\n{}",
        r.log_text()
    );
    let a = acts
        .records
        .iter()
        .map(Rec::json)
        .find(|a| a["decision"] == "auto")
        .unwrap();
    assert_eq!(a["type"], "restart", "{a}");
    let created =
        reflex::model::EventTime::parse_rfc3339(a["created_at"].as_str().unwrap()).unwrap();
    let result = serde_json::json!({
        "action_id": a["action_id"],
        "idempotency_key": a["idempotency_key"],
        "status": "succeeded",
        "detail": "restarted",
        "finished_at": created.plus_ms(60_000).to_rfc3339(),
        "executor": "test",
    });
    produce(
        &p,
        &format!("{prefix}.reflex.action-results"),
        &[(Some(0), String::new(), result.to_string().into_bytes())],
    );
    std::thread::sleep(Duration::from_secs(2));
    // The fault goes on after the restart: verification fails, step 2 follows.
    produce(&p, &format!("{prefix}.errors"), &recs(&rest));
    let ok = acts.until(Duration::from_secs(90), |x| auto(x) >= 2);
    assert!(ok, "no second ladder step; log:\n{}", r.log_text());
    let second = acts
        .records
        .iter()
        .map(Rec::json)
        .filter(|a| a["decision"] == "auto")
        .nth(1)
        .unwrap();
    assert_eq!(second["type"], "scale", "{second}");
    assert!(
        second["reason"].as_str().unwrap().contains("remedy step 2"),
        "{second}"
    );
    assert!(r.terminate().success());
}
