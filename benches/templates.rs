//! Throughput of the streaming template miner over generated log lines.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use reflex::detectors::pattern::config::MinerConfig;
use reflex::detectors::pattern::miner::TemplateMiner;

/// Deterministic pseudo-random lines in a dozen shapes (no external data).
fn lines(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let users = ["root", "admin", "guest", "oracle", "test", "git", "ftp"];
    (0..n)
        .map(|_| {
            let r = next();
            let a = next() % 100_000;
            match r % 12 {
                0 => format!("Received block blk_{a} of size {} from /10.0.{}.{}", a * 7, a % 255, r % 255),
                1 => format!("PacketResponder {} for block blk_-{a} terminating", r % 3),
                2 => format!("Failed password for {} from 10.{}.{}.{} port {a} ssh2", users[(r % 7) as usize], a % 255, r % 250, a % 200),
                3 => format!("session opened for user {} by (uid={})", users[(a % 7) as usize], a % 1000),
                4 => format!("[instance: {:08x}-1a2b-4c3d-8e9f-{:012x}] VM Started (Lifecycle Event)", a, r & 0xffff_ffff),
                5 => format!("[instance: {:08x}-1a2b-4c3d-8e9f-{:012x}] VM Paused (Lifecycle Event)", a, r & 0xffff_ffff),
                6 => format!("proxy.example.com:{} close, {a} bytes sent, {} bytes received, lifetime 00:{:02}", r % 9000, a / 3, a % 60),
                7 => format!("connection from 192.168.{}.{} () at Fri Jun 17 07:{:02}:00 2005", a % 255, r % 255, a % 60),
                8 => format!("10.11.10.1 \"GET /v2/{a:x}/servers/detail HTTP/1.1\" status: 200 len: {} time: 0.{a}", r % 4000),
                9 => format!("jk2_init() Found child {a} in scoreboard slot {}", r % 20),
                10 => format!("getTodayTotalDetailSteps = {a}##{}##548365##8661##12266##27164404", r % 9999),
                _ => format!("Interrupted while waiting for message on queue {}", ["a", "b"][(r % 2) as usize]),
            }
        })
        .collect()
}

fn bench_observe(c: &mut Criterion) {
    let input = lines(20_000);
    let cfg = MinerConfig::default();
    let mut g = c.benchmark_group("templates");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("observe_20k_lines", |b| {
        b.iter(|| {
            let mut m = TemplateMiner::new(&cfg);
            for l in &input {
                black_box(m.observe(black_box(l)));
            }
            black_box(m.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_observe);
criterion_main!(benches);
