//! Decode + detect throughput (the per-event hot path), and the whole
//! embedded pipeline on an in-memory stream.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::codec::InputCodec;
use reflex::config::Config;
use reflex::pipeline::embedded::{run, DecideOptions};
use reflex::pipeline::topology::Topology;
use reflex::pipeline::Stage;
use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
use reflex::sinks::MemorySink;
use reflex::sources::file::LineReader;
use std::hint::black_box;
use std::sync::Arc;

fn stream() -> Vec<u8> {
    let mut cfg = GenConfig::shop(1, 3_600_000);
    cfg.noise_rate = 10.0; // ~180k events
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(1_800_000),
        duration_ms: 300_000,
        rate: 50.0,
        message: "java.lang.OutOfMemoryError: Java heap space {id}".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    to_jsonl(&generate(&cfg))
}

fn bench(c: &mut Criterion) {
    let data = stream();
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let cfg = match Config::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded config: {e}"),
    };
    let codec = InputCodec::default();

    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(10);
    g.bench_function("decode", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(codec.decode(l));
            }
        })
    });
    let events: Vec<_> = lines.iter().filter_map(|l| codec.decode(l).ok()).collect();
    g.bench_function("decode_and_detect", |b| {
        b.iter(|| {
            let stats = Arc::new(Default::default());
            let mut stage = Topology::detect_stage(&cfg, stats);
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                if let Ok(ev) = codec.decode(l) {
                    let t = ev.time;
                    stage.process(ev, &mut out);
                    if i % 1024 == 0 {
                        stage.on_watermark(t.plus_ms(-10_000), &mut out);
                    }
                }
            }
            stage.flush(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("detect_only", |b| {
        b.iter(|| {
            let stats = Arc::new(Default::default());
            let mut stage = Topology::detect_stage(&cfg, stats);
            let mut out = Vec::new();
            for (i, ev) in events.iter().enumerate() {
                let t = ev.time;
                stage.process(ev.clone(), &mut out);
                if i % 1024 == 0 {
                    stage.on_watermark(t.plus_ms(-10_000), &mut out);
                }
            }
            stage.flush(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("embedded_pipeline", |b| {
        b.iter(|| {
            let reader = LineReader::from_reader(Box::new(std::io::Cursor::new(data.clone())));
            let mut sink = MemorySink::default();
            let s = run(&cfg, &DecideOptions::default(), reader, "bench", &mut sink);
            black_box(s.map(|s| s.events).unwrap_or(0))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
