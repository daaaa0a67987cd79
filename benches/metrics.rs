//! What telemetry costs the pipeline: counting one output record
//! (`count_output`, the decide node's one count of what it writes),
//! observing it (`Telemetry::observe`: incident store, journal, live
//! stream), and encoding one `/metrics` scrape through prometheus-client.
//! The outputs are those of the embedded pipeline over a generated hour of
//! a small fleet. Per input event the pipeline only bumps relaxed atomics
//! in `Stats` (unchanged by how metrics are encoded).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::config::Config;
use reflex::pipeline::embedded::{run, DecideOptions};
use reflex::pipeline::topology::count_output;
use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
use reflex::sinks::MemorySink;
use reflex::sources::file::LineReader;
use reflex::telemetry::config::TelemetryConfig;
use reflex::telemetry::{Readiness, Telemetry};
use std::hint::black_box;
use std::sync::Arc;

fn outputs() -> (u64, MemorySink) {
    let mut cfg = GenConfig::shop(1, 3_600_000);
    cfg.noise_rate = 10.0;
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(1_800_000),
        duration_ms: 300_000,
        rate: 50.0,
        message: "java.lang.OutOfMemoryError: Java heap space {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    let data = to_jsonl(&generate(&cfg));
    let config = match Config::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded config: {e}"),
    };
    let reader = LineReader::from_reader(Box::new(std::io::Cursor::new(data)));
    let mut sink = MemorySink::default();
    let events = match run(
        &config,
        &DecideOptions::default(),
        reader,
        "bench",
        &mut sink,
    ) {
        Ok(s) => s.events,
        Err(e) => panic!("pipeline: {e}"),
    };
    (events, sink)
}

/// Output records observed per iteration (the run's outputs, cycled).
const OBSERVED: usize = 10_000;

fn bench(c: &mut Criterion) {
    let (events, sink) = outputs();
    let outs = sink.records;
    eprintln!(
        "metrics bench: {events} input events, {} output records",
        outs.len()
    );
    let mut g = c.benchmark_group("telemetry");
    g.sample_size(20);
    let t = Telemetry::new(
        Arc::default(),
        Readiness::embedded(),
        &TelemetryConfig::default(),
    );
    g.throughput(Throughput::Elements(OBSERVED as u64));
    g.bench_function("observe_output", |b| {
        b.iter(|| {
            for o in outs.iter().cycle().take(OBSERVED) {
                t.observe(black_box(o));
            }
        })
    });
    g.bench_function("count_output", |b| {
        b.iter(|| {
            for o in outs.iter().cycle().take(OBSERVED) {
                count_output(&t.stats, black_box(o));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("render_scrape", |b| {
        b.iter(|| black_box(t.render_metrics().map(|s| s.len())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
