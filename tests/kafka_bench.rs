//! Throughput through the broker, by hand (ignored in the normal suite):
//!
//! ```text
//! REFLEX_TEST_BROKERS=127.0.0.1:PORT cargo test --release --test kafka_bench -- --ignored --nocapture
//! ```
//!
//! Produces `REFLEX_BENCH_EVENTS` (default 300 000) generated events to a
//! 3-partition topic, then measures in the same run (same broker, same
//! consumer settings):
//! 1. a bare rdkafka `BaseConsumer` reading every message (no decoding),
//!    and the same with `StreamConsumer` (pitfall 3 of CRATES.md);
//! 2. `reflex run --stage all` end to end: from process start until the last
//!    message of every partition (a malformed one) is read back from
//!    `reflex.dlq` — i.e. every event decoded, detected, diagnosed and every
//!    earlier output of that partition handed to the idempotent producer.
//!
//! and prints both rates and their ratio.

mod common;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::{Duration, Instant};

#[test]
#[ignore = "benchmark: run by hand with --release --ignored --nocapture"]
fn throughput_reflex_vs_bare_consumer() {
    let Some(b) = brokers() else { return };
    let n: usize = std::env::var("REFLEX_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let parts = 3;
    let prefix = unique("bench");
    create_topics(&b, &prefix, &[("errors", parts)]);
    let topic = format!("{prefix}.errors");
    // Input: the generator's shop with a fault, cycled to n events.
    let hour = 3_600_000;
    let mut g = reflex::sim::gen::GenConfig::shop(3, 6 * hour);
    g.noise_rate = n as f64 / 5.0 / (6.0 * 3600.0);
    let evs = reflex::sim::gen::generate(&g);
    let mut recs: Vec<Out> = evs
        .iter()
        .take(n)
        .map(|e| (None, e.service.clone(), serde_json::to_vec(e).unwrap()))
        .collect();
    let bytes: usize = recs.iter().map(|r| r.2.len()).sum();
    for p in 0..parts {
        recs.push((Some(p), "end".into(), b"{end".to_vec()));
    }
    let total = recs.len();
    let t = Instant::now();
    produce(&producer(&b), &topic, &recs);
    eprintln!(
        "produced {total} messages ({:.0} bytes avg) in {:.2}s",
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );

    // 1. Bare consumer.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", unique("bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    c.subscribe(&[&topic]).unwrap();
    let t = Instant::now();
    let mut got = 0usize;
    let deadline = t + Duration::from_secs(300);
    while got < total && Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
    let bare = t.elapsed().as_secs_f64();
    assert_eq!(got, total);
    drop(c);

    // 1b. StreamConsumer (async), same settings: the alternative runtime design.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stream_secs = rt.block_on(async {
        use rdkafka::consumer::StreamConsumer;
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", unique("stream"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let t = Instant::now();
        let mut got = 0usize;
        while got < total {
            match tokio::time::timeout(Duration::from_secs(30), c.recv()).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(_)) => {}
                Err(_) => panic!("StreamConsumer stalled at {got}"),
            }
        }
        t.elapsed().as_secs_f64()
    });

    // 2. reflex end to end.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(dir.path(), &prefix, "", "");
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    let t = Instant::now();
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let ok = dlq.until(Duration::from_secs(600), |recs| {
        recs.len() >= parts as usize
    });
    let e2e = t.elapsed().as_secs_f64();
    assert!(ok, "reflex did not finish; log:\n{}", r.log_text());
    assert!(r.terminate().success());

    let bare_rate = total as f64 / bare;
    let reflex_rate = total as f64 / e2e;
    eprintln!("bare BaseConsumer : {total} msgs in {bare:.2}s = {bare_rate:.0} msgs/s");
    eprintln!(
        "StreamConsumer    : {total} msgs in {stream_secs:.2}s = {:.0} msgs/s",
        total as f64 / stream_secs
    );
    eprintln!("reflex end to end : {total} msgs in {e2e:.2}s = {reflex_rate:.0} events/s");
    eprintln!("ratio reflex/bare : {:.2}", reflex_rate / bare_rate);
}
