//! Unit and property tests of the anomaly detector on synthetic series.

use super::cli::{parse_timestamp_ms, run_reader};
use super::{AnomalyCliErrorKind, AnomalyConfig, SeriesDetector};
use proptest::prelude::*;

const STEP_MS: i64 = 300_000; // 5 minutes
const T0: i64 = 1_396_310_400_000; // 2014-04-01 00:00:00 UTC

/// Deterministic pseudo-random noise in [-1, 1] (xorshift), no extra crates.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn run(values: &[f64]) -> Vec<f64> {
    let mut d = SeriesDetector::new(&AnomalyConfig::default());
    values
        .iter()
        .enumerate()
        .map(|(i, v)| d.update(T0 + i as i64 * STEP_MS, *v))
        .collect()
}

fn max_in(scores: &[f64], from: usize, to: usize) -> f64 {
    scores[from..to].iter().copied().fold(0.0, f64::max)
}

fn noisy(n: usize, level: f64, amp: f64, seed: u64) -> Vec<f64> {
    let mut r = Noise(seed);
    (0..n).map(|_| level + amp * r.next()).collect()
}

#[test]
fn scores_depend_only_on_the_past() {
    // Changing the future must not change any score before it (no look-ahead).
    let a = noisy(3000, 10.0, 1.0, 7);
    let mut b = a.clone();
    for v in &mut b[2000..] {
        *v += 50.0;
    }
    let (sa, sb) = (run(&a), run(&b));
    assert_eq!(&sa[..2000], &sb[..2000]);
    assert_ne!(&sa[2000..], &sb[2000..]);
}

#[test]
fn flat_noise_has_no_high_scores() {
    let s = run(&noisy(4000, 50.0, 2.0, 7));
    let hits: Vec<(usize, f64)> = s
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, x)| *x >= 0.3)
        .collect();
    assert!(
        max_in(&s, 0, 4000) < 0.5,
        "max {} {:?}",
        max_in(&s, 0, 4000),
        hits
    );
}

#[test]
fn spike_is_flagged_at_once() {
    let mut v = noisy(3000, 50.0, 2.0, 11);
    v[2500] = 80.0;
    let s = run(&v);
    assert!(s[2500] >= 0.5, "spike score {}", s[2500]);
    assert!(max_in(&s, 0, 2500) < 0.5);
}

#[test]
fn dip_is_flagged() {
    let mut v = noisy(3000, 50.0, 2.0, 12);
    v[2500] = 20.0;
    let s = run(&v);
    assert!(s[2500] >= 0.5, "dip score {}", s[2500]);
}

#[test]
fn level_shift_is_flagged_then_learned() {
    let mut v = noisy(6000, 50.0, 2.0, 13);
    for x in v.iter_mut().skip(2500) {
        *x += 15.0;
    }
    let s = run(&v);
    assert!(
        max_in(&s, 2500, 2510) >= 0.5,
        "shift max {}",
        max_in(&s, 2500, 2510)
    );
    assert!(max_in(&s, 0, 2500) < 0.5);
    // the new level is not flagged again and again
    let late_alerts = s[3500..].iter().filter(|x| **x >= 0.5).count();
    assert!(late_alerts < 5, "late alerts {late_alerts}");
}

#[test]
fn seasonal_series_with_one_anomaly() {
    // daily sine (288 points/day) plus noise; one day an out-of-phase bump that
    // stays inside the usual range is not required, but a burst beyond it is.
    let mut r = Noise(17);
    let day = 288.0;
    let mut v: Vec<f64> = (0..288 * 14)
        .map(|i| {
            100.0 + 40.0 * (2.0 * std::f64::consts::PI * i as f64 / day).sin() + 2.0 * r.next()
        })
        .collect();
    let at = 288 * 12 + 100;
    for x in v.iter_mut().skip(at).take(6) {
        *x += 60.0;
    }
    let s = run(&v);
    assert!(
        max_in(&s, at, at + 6) >= 0.5,
        "anomaly max {}",
        max_in(&s, at, at + 6)
    );
    let hits: Vec<(usize, f64)> = s
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, x)| *x >= 0.3)
        .collect();
    assert!(
        max_in(&s, 288 * 3, at) < 0.5,
        "false alarm {} {:?}",
        max_in(&s, 288 * 3, at),
        hits
    );
}

#[test]
fn variance_change_is_flagged() {
    let mut r = Noise(19);
    let v: Vec<f64> = (0..5000)
        .map(|i| 50.0 + if i < 3000 { 1.0 } else { 8.0 } * r.next())
        .collect();
    let s = run(&v);
    assert!(
        max_in(&s, 3000, 3100) >= 0.5,
        "variance max {}",
        max_in(&s, 3000, 3100)
    );
    assert!(max_in(&s, 0, 3000) < 0.5);
}

#[test]
fn warmup_scores_zero_and_baseline_appears() {
    let mut d = SeriesDetector::new(&AnomalyConfig::default());
    for i in 0..100 {
        assert_eq!(
            d.update(T0 + i * STEP_MS, if i == 50 { 1e6 } else { 1.0 }),
            0.0
        );
    }
    assert!(d.baseline().is_none());
    for i in 100..300 {
        d.update(T0 + i * STEP_MS, 10.0 + (i % 3) as f64);
    }
    let (m, s) = d.baseline().unwrap_or((f64::NAN, f64::NAN));
    assert!(m.is_finite() && s.is_finite());
    assert!(d.state_bytes() < 4096, "state {}", d.state_bytes());
}

#[test]
fn non_finite_values_are_ignored() {
    let mut d = SeriesDetector::new(&AnomalyConfig::default());
    assert_eq!(d.update(T0, f64::NAN), 0.0);
    assert_eq!(d.update(T0, f64::INFINITY), 0.0);
    assert_eq!(d.points(), 0);
}

#[test]
fn config_defaults_roundtrip_and_reject_unknown() {
    let cfg: AnomalyConfig = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg, AnomalyConfig::default());
    assert!(serde_json::from_str::<AnomalyConfig>(r#"{"nope": 1}"#).is_err());
}

#[test]
fn timestamps_parse() {
    assert_eq!(parse_timestamp_ms("2014-04-01 00:00:00"), Some(T0));
    assert_eq!(parse_timestamp_ms("2014-04-01T00:00:00Z"), Some(T0));
    assert_eq!(parse_timestamp_ms("2014-04-01T02:00:00+02:00"), Some(T0));
    assert_eq!(parse_timestamp_ms("2014-04-01 00:00:00.5"), Some(T0 + 500));
    assert_eq!(parse_timestamp_ms("1396310400000"), Some(T0));
    assert_eq!(parse_timestamp_ms("yesterday"), None);
}

#[test]
fn csv_roundtrip_and_errors() {
    let input = "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2.5\n";
    let mut out = Vec::new();
    let sum = run_reader(
        input.as_bytes(),
        "in",
        &mut out,
        "out",
        &AnomalyConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sum.rows, 2);
    let text = String::from_utf8(out).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score");
    assert_eq!(lines[1], "2014-04-01 00:00:00,1,0");
    assert_eq!(lines.len(), 3);

    let bad = "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n";
    let err = run_reader(
        bad.as_bytes(),
        "in",
        Vec::new(),
        "out",
        &AnomalyConfig::default(),
    )
    .err()
    .unwrap_or_else(|| panic!("expected error"));
    assert_eq!(err.kind(), AnomalyCliErrorKind::BadInput);
    assert!(err.to_string().contains("in:3"), "{err}");

    let bad_ts = "timestamp,value\nnot-a-time,1\n";
    let err = run_reader(
        bad_ts.as_bytes(),
        "in",
        Vec::new(),
        "out",
        &AnomalyConfig::default(),
    )
    .err()
    .unwrap_or_else(|| panic!("expected error"));
    assert!(err.to_string().contains("in:2"), "{err}");

    let bad_header = "time,val\n1,2\n";
    let err = run_reader(
        bad_header.as_bytes(),
        "in",
        Vec::new(),
        "out",
        &AnomalyConfig::default(),
    )
    .err()
    .unwrap_or_else(|| panic!("expected error"));
    assert_eq!(err.kind(), AnomalyCliErrorKind::BadInput);
}

#[test]
fn run_csv_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inp = dir.path().join("in.csv");
    let outp = dir.path().join("out.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..500 {
        text.push_str(&format!("{},{}\n", T0 + i * STEP_MS, (i % 7) as f64));
    }
    std::fs::write(&inp, text).unwrap_or_else(|e| panic!("{e}"));
    let sum = super::run_csv(&inp, Some(&outp), &AnomalyConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sum.rows, 500);
    let out = std::fs::read_to_string(&outp).unwrap_or_default();
    assert_eq!(out.lines().count(), 501);
    let missing = super::run_csv(
        &dir.path().join("nope.csv"),
        None,
        &AnomalyConfig::default(),
    );
    assert_eq!(
        missing.err().map(|e| e.kind()),
        Some(AnomalyCliErrorKind::Io)
    );
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1.0e6f64..1.0e6,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::MAX),
        1 => Just(0.0),
    ]
}

proptest! {
    #[test]
    fn scores_in_unit_interval_and_deterministic(
        pts in proptest::collection::vec((any::<i64>(), any_value()), 0..400),
        regular in any::<bool>(),
    ) {
        let cfg = AnomalyConfig::default();
        let mut a = SeriesDetector::new(&cfg);
        let mut b = SeriesDetector::new(&cfg);
        for (i, (ts, v)) in pts.iter().enumerate() {
            let ts = if regular { T0 + i as i64 * STEP_MS } else { *ts };
            let sa = a.update(ts, *v);
            let sb = b.update(ts, *v);
            prop_assert!(sa.is_finite() && (0.0..=1.0).contains(&sa), "score {}", sa);
            prop_assert_eq!(sa.to_bits(), sb.to_bits());
        }
    }
}
