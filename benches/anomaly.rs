//! Throughput of `SeriesDetector::update` (points per second, one core).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::detectors::anomaly::{AnomalyConfig, SeriesDetector};
use std::hint::black_box;

fn series(n: usize) -> Vec<(i64, f64)> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64;
            let day = (i as f64 / 288.0 * std::f64::consts::TAU).sin();
            let spike = if i % 5000 == 4999 { 50.0 } else { 0.0 };
            (
                1_396_310_400_000 + i as i64 * 300_000,
                100.0 + 20.0 * day + 5.0 * noise + spike,
            )
        })
        .collect()
}

fn bench_update(c: &mut Criterion) {
    let data = series(20_000);
    let cfg = AnomalyConfig::default();
    let mut g = c.benchmark_group("anomaly");
    g.throughput(Throughput::Elements(data.len() as u64));
    g.bench_function("update_20k_points", |b| {
        b.iter(|| {
            let mut d = SeriesDetector::new(&cfg);
            let mut acc = 0.0;
            for (ts, v) in &data {
                acc += d.update(black_box(*ts), black_box(*v));
            }
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_update);
criterion_main!(benches);
