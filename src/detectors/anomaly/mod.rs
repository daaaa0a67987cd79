//! Streaming, unsupervised anomaly detection for one numeric series
//! (`reflex anomalies`).
//!
//! [`SeriesDetector::update`]`(timestamp_ms, value)` returns a score in `[0, 1]`
//! per point, computed only from the points fed so far (online, no look-ahead,
//! no training step) with ONE default [`AnomalyConfig`] for every series.
//!
//! # How it works
//! 1. **Experts.** A slow EWMA baseline (level, spread; winsorised updates) and
//!    an additive Holt-Winters model with an hourly time-of-day profile, split
//!    weekday / weekend (an unseen weekend slot starts from the weekday one).
//!    The expert with the lower recent squared error supplies the residual.
//! 2. **Range channel.** Overshoot of the value beyond the learned `[lo, hi]`
//!    range (which decays very slowly towards the baseline), in range units:
//!    catches spikes, dips and level shifts on their first point.
//! 3. **Variance channel.** `ln(short / long residual variance)` above `ln 2`,
//!    overshooting its own decaying record: catches bursts and changes of
//!    spread that stay inside the range, and seasonal-pattern breaks.
//! 4. **Rarity (calibration).** Each channel's overshoot goes through an
//!    exponentially decaying log-scale histogram (memory ~5000 points); the
//!    channel score is `-ln p / ln 5000` where `p` is the smoothed tail
//!    probability of an overshoot at least this large in the series' history.
//!    This makes one threshold meaningful across very different series (it
//!    replaced a Gaussian "anomaly likelihood" over z-scores, which scored 56.5).
//!    The score is the max over channels.
//! 5. **Peak hold.** A score is reported in full only if it exceeds the recent
//!    peak (decaying 1 -> 0 over 1000 points); repeats are damped (x0.2), i.e.
//!    alert de-duplication, so one incident raises one alert.
//!
//! # Guarantees
//! Score always finite and in `[0, 1]` (also for NaN/inf inputs, which are
//! ignored and score 0); deterministic; 0 during the first `warmup_points`;
//! O(1) time per point (~100 flops + a 48-bin scan) and fixed state:
//! [`SeriesDetector::state_bytes`] = **1112 bytes** per key with the default
//! config (about 1.1 GB per million keys). Throughput: ~3.9 M points/s per
//! core for `update` (criterion `benches/anomaly.rs`), ~0.58 M rows/s for the
//! whole CSV path (parse + score + write) over all 365,558 NAB rows.
//!
//! # Measured (NAB v1.1, 58 files, `tools/nab_score.py`, default config)
//! | variant                       | standard | low FP | low FN | @0.5 std |
//! |-------------------------------|---------:|-------:|-------:|---------:|
//! | **default**                   | **70.2** | **65.1** | **74.1** | **70.2** |
//! | without variance channel      | 56.7 | 54.3 | 59.1 | 56.7 |
//! | without range channel         | 42.3 | 39.6 | 44.9 | 42.3 |
//! | without peak hold             | 66.6 | 57.9 | 71.7 | 66.0 |
//! | without seasonal expert       | 66.4 | 61.5 | 69.8 | 66.2 |
//! | variance floor 0 (not ln 2)   | 70.5 | 64.0 | 74.9 | 70.5 |
//! | + persistence expert          | 65.9 | 59.5 | 70.1 | 65.7 |
//!
//! Best single threshold per profile (0.52-0.54); "@0.5" is the standard score
//! at the threshold 0.5 fixed in advance. Published: ARTime 74.9 / 65.2 / 80.4,
//! Numenta HTM 70.1 / 63.1 / 74.3, CAD OSE 69.9 / 67.0 / 73.2.
//! No learned model (ndarray / linfa) is used: none was measured to pay for
//! itself against these O(1) statistics within the per-key memory budget.

pub mod cli;
pub mod config;
pub mod detector;
pub mod stream;

pub use cli::{run_csv, AnomalyCliError, AnomalyCliErrorKind, CsvSummary};
pub use config::AnomalyConfig;
pub use detector::SeriesDetector;
pub use stream::{AnomalyStream, AnomalyStreamConfig};

#[cfg(test)]
mod tests;
