//! Kafka mode serves the ops API too: `/ready` turns ready once the
//! consumer group has assigned partitions, and `/metrics` counts the events
//! consumed from the broker.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http(addr, "GET", path, None)
}

#[test]
fn kafka_mode_serves_ready_and_metrics() {
    let Some(b) = brokers() else { return };
    let prefix = unique("tel");
    create_topics(&b, &prefix, &[("errors", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &prefix,
        "\n[telemetry]\nhttp_listen = \"127.0.0.1:0\"\n",
    );
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let log = || r.log_text();
    let addr: SocketAddr = within(Duration::from_secs(60), "the http address", &log, || {
        r.log_text()
            .lines()
            .find_map(|l| l.strip_prefix("reflex: http listening on "))
            .and_then(|a| a.trim().parse().ok())
    });
    assert_eq!(get(addr, "/health").map(|x| x.0), Some(200));
    // Ready only once the group assigned partitions (the body names what is missing until then).
    let first = get(addr, "/ready").expect("ready answers");
    if first.0 != 200 {
        assert_eq!(first.0, 503);
        assert!(first.1.contains("waiting for"), "{}", first.1);
    }
    within(Duration::from_secs(60), "/ready = 200", &log, || {
        get(addr, "/ready").filter(|x| x.0 == 200)
    });
    let t0 = 1_767_225_600_000i64;
    let recs: Vec<_> = (0..30i64)
        .map(|i| {
            (
                Some((i % 2) as i32),
                format!("k{i}"),
                event_json(&format!("e{i}"), t0 + i * 100, "svc", "error"),
            )
        })
        .chain(std::iter::once((
            Some(0),
            "bad".to_string(),
            b"{oops".to_vec(),
        )))
        .collect();
    produce(&producer(&b), &format!("{prefix}.errors"), &recs);
    let metrics = within(
        Duration::from_secs(60),
        "31 input records counted",
        &log,
        || {
            get(addr, "/metrics")
                .map(|x| x.1)
                .filter(|m| counter(m, "reflex_events_in_total") >= 31.0)
        },
    );
    // Input records received: 30 events + 1 dead letter.
    assert_eq!(counter(&metrics, "reflex_events_in_total"), 31.0);
    assert_eq!(counter(&metrics, "reflex_dead_letters_total"), 1.0);
    assert_eq!(counter(&metrics, "reflex_ready"), 1.0);
    // Kafka client trouble is exported (a healthy run has none).
    assert!(
        metrics.contains("reflex_kafka_errors_total{kind=\"delivery\"} 0"),
        "{metrics}"
    );
    assert!(r.terminate().success());
}
