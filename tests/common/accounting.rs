//! The accounting of the crash and rebalance tests (see tests/kafka_crash.rs).

use super::{event_json, Out, Rec};
use std::collections::{BTreeMap, BTreeSet};

const WINDOW: i64 = 10_000;

/// A generated input and what it must produce.
pub struct Input {
    /// Per chunk: (partition, key, payload).
    pub chunks: Vec<Vec<Out>>,
    /// (rule key, window start) → expected count.
    pub expected: BTreeMap<(String, i64), i64>,
    /// (partition, offset) of malformed inputs.
    pub malformed: BTreeSet<(i64, i64)>,
}

/// `services` services (service s on partition s % partitions), `chunks`
/// chunks of 2 minutes of event time, ~1 in 97 messages malformed, and a
/// far-later sentinel change event on every partition at the end.
pub fn build_input(partitions: i32, services: usize, nchunks: i64) -> Input {
    let t0 = 1_767_225_600_000i64;
    let mut rng = reflex::sim::gen::Rng::new(7);
    let mut offsets = vec![0i64; partitions as usize];
    let mut expected = BTreeMap::new();
    let mut malformed = BTreeSet::new();
    let mut chunks = Vec::new();
    let chunk_ms = 120_000;
    let mut n = 0u64;
    for c in 0..nchunks {
        let mut evs: Vec<(i64, usize)> = Vec::new();
        for s in 0..services {
            let mut t = t0 + c * chunk_ms + rng.below(500) as i64;
            while t < t0 + (c + 1) * chunk_ms {
                evs.push((t, s));
                t += 50 + rng.below(400) as i64;
            }
        }
        evs.sort();
        let mut chunk = Vec::new();
        for (t, s) in evs {
            let p = (s as i32) % partitions;
            let off = offsets[p as usize];
            offsets[p as usize] += 1;
            n += 1;
            let service = format!("svc{s}");
            if n % 97 == 0 {
                malformed.insert((p as i64, off));
                chunk.push((Some(p), service, b"\x00\x00\x00\x00\x01garbage".to_vec()));
                continue;
            }
            let start = t.div_euclid(WINDOW) * WINDOW;
            let key = format!("service={service}");
            *expected.entry((key, start)).or_insert(0) += 1;
            let payload = event_json(&format!("e{n}"), t, &service, "error");
            chunk.push((Some(p), service, payload));
        }
        chunks.push(chunk);
    }
    // Sentinels: a far-later change event on every partition closes all windows.
    let end = t0 + nchunks * chunk_ms + 3_600_000;
    let last = chunks.len() - 1;
    for p in 0..partitions {
        chunks[last].push((
            Some(p),
            format!("sentinel{p}"),
            event_json(
                &format!("sentinel{p}"),
                end,
                &format!("sentinel{p}"),
                "change",
            ),
        ));
    }
    Input {
        chunks,
        expected,
        malformed,
    }
}

/// (key, window start) of an `every_window` detection, with its count and id.
pub fn window_of(r: &Rec) -> Option<((String, i64), i64, String)> {
    let v = r.json();
    if v["rule"] != "every_window" {
        return None;
    }
    let w: reflex::model::Window = serde_json::from_value(v["window"].clone()).ok()?;
    Some((
        (v["key"].as_str()?.to_string(), w.start.millis()),
        v["count"].as_i64()?,
        v["detection_id"].as_str()?.to_string(),
    ))
}

pub fn accounted(input: &Input, det: &[Rec], dlq: &[Rec]) -> (usize, usize) {
    let mut best: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in det {
        if let Some((w, c, _)) = window_of(r) {
            let e = best.entry(w).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let windows_ok = input
        .expected
        .iter()
        .filter(|(id, n)| best.get(*id) == Some(n))
        .count();
    let coords: BTreeSet<(i64, i64)> = dlq
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["source_partition"].as_i64().unwrap_or(-1),
                v["source_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let dlq_ok = input
        .malformed
        .iter()
        .filter(|c| coords.contains(c))
        .count();
    (windows_ok, dlq_ok)
}
