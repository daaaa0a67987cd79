//! The per-series detector: experts, channels, rarity and peak hold.

use super::config::AnomalyConfig;

const MS_PER_DAY: i64 = 86_400_000;
const RBINS: usize = 48;
const RBINS_PER_OCTAVE: f64 = 4.0;

/// Exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default)]
struct Ew {
    mean: f64,
    var: f64,
}

impl Ew {
    fn update(&mut self, x: f64, alpha: f64) {
        let d = x - self.mean;
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
    }
}

/// Exponentially decaying histogram of a non-negative statistic on a log scale
/// (4 bins per octave of `1 + s`), answering "how rare is a value at least this
/// large in this series' recent history?". Decay is lazy: each insertion weighs
/// `1 / (1 - alpha)` times more than the previous one, renormalised now and then.
#[derive(Debug, Clone, Copy)]
struct Rarity {
    counts: [f32; RBINS],
    total: f32,
    w: f32,
}

impl Default for Rarity {
    fn default() -> Self {
        Self {
            counts: [0.0; RBINS],
            total: 0.0,
            w: 1.0,
        }
    }
}

impl Rarity {
    fn bin(s: f64) -> usize {
        let b = (s.max(0.0) + 1.0).log2() * RBINS_PER_OCTAVE;
        if b.is_finite() {
            (b as usize).min(RBINS - 1)
        } else {
            RBINS - 1
        }
    }

    /// Smoothed tail probability of a value >= `s` (before `s` is inserted).
    fn tail(&self, s: f64, prior: f64) -> f64 {
        let b = Self::bin(s);
        let mut above = 0.5 * f64::from(self.counts[b]);
        for c in &self.counts[b + 1..] {
            above += f64::from(*c);
        }
        let pw = prior * f64::from(self.w);
        (above + pw) / (f64::from(self.total) + pw)
    }

    fn insert(&mut self, s: f64, alpha: f64) {
        let b = Self::bin(s);
        self.counts[b] += self.w;
        self.total += self.w;
        self.w /= (1.0 - alpha.clamp(0.0, 0.5)) as f32;
        if self.w > 1.0e6 {
            let k = 1.0 / self.w;
            for c in self.counts.iter_mut() {
                *c *= k;
            }
            self.total *= k;
            self.w = 1.0;
        }
    }
}

/// Streaming, unsupervised anomaly detector for one numeric series.
///
/// Feed points in time order with [`SeriesDetector::update`]; each call returns
/// the anomaly score of that point in `[0, 1]`, computed only from the points
/// fed so far. State is a fixed-size block (see [`SeriesDetector::state_bytes`]).
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    cfg: AnomalyConfig,
    n: u64,
    prev_ts: i64,
    /// EWMA of the sampling interval in ms (0 = unknown).
    dt_ms: f64,
    /// Slow baseline of the value (mean, variance).
    level: Ew,
    /// Holt-Winters level and per-slot seasonal offsets.
    hw_level: f64,
    season: Vec<f64>,
    season_seen: Vec<bool>,
    /// Mean squared error of the level and the seasonal expert.
    err: [f64; 2],
    /// Short / long variance of the better expert's residual.
    var_short: f64,
    var_long: f64,
    /// Learned value range (slowly decaying towards the baseline).
    lo: f64,
    hi: f64,
    /// Variance statistic: EWMA and decaying record high.
    vstat_mean: f64,
    vstat_hi: f64,
    rarity: [Rarity; 2],
    /// Held peak of the reported score.
    peak: f64,
}

impl SeriesDetector {
    /// A fresh detector with the given configuration.
    pub fn new(cfg: &AnomalyConfig) -> Self {
        let slots = if cfg.seasonal {
            cfg.season_slots_per_day.clamp(1, 1440) as usize * if cfg.season_weekly { 2 } else { 1 }
        } else {
            0
        };
        Self {
            cfg: cfg.clone(),
            n: 0,
            prev_ts: 0,
            dt_ms: 0.0,
            level: Ew::default(),
            hw_level: 0.0,
            season: vec![0.0; slots],
            season_seen: vec![false; slots],
            err: [0.0; 2],
            var_short: 0.0,
            var_long: 0.0,
            lo: 0.0,
            hi: 0.0,
            vstat_mean: 0.0,
            vstat_hi: 0.0,
            rarity: [Rarity::default(); 2],
            peak: 0.0,
        }
    }

    /// Approximate bytes of state held by this detector (inline + heap).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.season.capacity() * std::mem::size_of::<f64>()
            + self.season_seen.capacity()
    }

    /// Points fed so far (non-finite values are not counted).
    pub fn points(&self) -> u64 {
        self.n
    }

    /// Learned baseline `(mean, spread)` of the series once past warm-up, for
    /// evidence text ("value 93.1, baseline 41.2 ± 3.5").
    pub fn baseline(&self) -> Option<(f64, f64)> {
        if self.n <= u64::from(self.cfg.warmup_points.max(2)) {
            return None;
        }
        Some((self.level.mean, self.level.var.max(0.0).sqrt()))
    }

    fn slot(&self, ts: i64) -> Option<usize> {
        if self.season.is_empty() {
            return None;
        }
        let per_day = i64::from(self.cfg.season_slots_per_day.clamp(1, 1440));
        let slot_ms = MS_PER_DAY / per_day;
        let mut s = (ts.rem_euclid(MS_PER_DAY) / slot_ms).clamp(0, per_day - 1) as usize;
        if self.cfg.season_weekly {
            // 1970-01-01 was a Thursday; Monday = 0, Saturday = 5.
            let dow = (ts.div_euclid(MS_PER_DAY) + 3).rem_euclid(7);
            if dow >= 5 {
                s += per_day as usize;
            }
        }
        Some(s)
    }

    /// Feeds one point and returns its anomaly score in `[0, 1]`.
    ///
    /// Non-finite values are ignored (score 0, state untouched).
    pub fn update(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let score = self.step(timestamp_ms, value);
        if !(self.level.mean.is_finite()
            && self.level.var.is_finite()
            && self.hw_level.is_finite()
            && self.err.iter().all(|e| e.is_finite())
            && self.var_long.is_finite()
            && self.vstat_hi.is_finite())
        {
            // Only reachable with values near f64::MAX: start over rather than
            // carry poisoned state.
            *self = Self::new(&self.cfg);
            return 0.0;
        }
        if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn step(&mut self, ts: i64, x: f64) -> f64 {
        let cfg = &self.cfg;
        if self.n == 0 {
            self.n = 1;
            self.prev_ts = ts;
            self.level = Ew { mean: x, var: 0.0 };
            self.hw_level = x;
            self.lo = x;
            self.hi = x;
            return 0.0;
        }
        self.n += 1;
        let n = self.n;
        let warmup = u64::from(cfg.warmup_points);
        let dt = ts as f64 - self.prev_ts as f64;
        if dt > 0.0 {
            self.dt_ms = if self.dt_ms == 0.0 {
                dt
            } else {
                self.dt_ms + 0.01 * (dt - self.dt_ms)
            };
        }

        // ---- experts: residual of the level and the seasonal model ----------
        let slot = self.slot(ts);
        let e_level = x - self.level.mean;
        // An unseen weekend (weekday) slot borrows the weekday (weekend) profile.
        if let Some(s) = slot {
            let per_day = self.season.len() / if cfg.season_weekly { 2 } else { 1 };
            let twin = if s >= per_day {
                s - per_day
            } else {
                s + per_day
            };
            if !self.season_seen[s] && cfg.season_weekly && self.season_seen[twin] {
                self.season[s] = self.season[twin];
                self.season_seen[s] = true;
            }
        }
        let e_season = match slot {
            Some(s) if self.season_seen[s] => x - self.hw_level - self.season[s],
            _ => e_level,
        };
        let errs = [e_level, e_season];
        let tiny = 1e-12 + 1e-9 * self.level.mean.abs();
        let sd = |v: f64| v.max(0.0).sqrt().max(tiny);
        let best = usize::from(cfg.seasonal && self.err[1] < self.err[0]);

        // ---- channel statistics ------------------------------------------
        // A flat history has a zero-width range; flooring it relative to the
        // level makes the first departure from a constant series (an error
        // rate that was steady, a gauge that never moved) an overshoot
        // instead of invisible.
        let range = (self.hi - self.lo).max(1e-9 + 1e-3 * self.level.mean.abs());
        let v_over = if n > 2 {
            ((x - self.hi).max(self.lo - x) / range).max(0.0)
        } else {
            0.0
        };
        let v_stat = if self.var_long > 0.0 {
            ((self.var_short.max(tiny * tiny) / self.var_long.max(tiny * tiny)).ln()
                - cfg.variance_floor)
                .max(0.0)
        } else {
            0.0
        };
        let past_warmup = n > warmup;
        if !past_warmup || n == warmup + 1 {
            self.vstat_mean = v_stat;
            self.vstat_hi = v_stat;
        }
        let vspan = (self.vstat_hi - self.vstat_mean).max(tiny);
        let vs_over = ((v_stat - self.vstat_hi) / vspan).max(0.0);

        let mut score: f64 = 0.0;
        let rwarm = 1.0 / (n.saturating_sub(warmup).max(1)) as f64;
        let ra = cfg.rarity_alpha.max(rwarm);
        let lnf = (1.0 / cfg.rarity_alpha.clamp(1e-12, 0.5)).ln();
        let channels = [(cfg.range_channel, v_over), (cfg.variance_channel, vs_over)];
        for (k, (on, over)) in channels.into_iter().enumerate() {
            let o = over * cfg.overshoot_scale;
            if on {
                let p = self.rarity[k].tail(o, cfg.rarity_prior);
                score = score.max((-p.ln() / lnf).clamp(0.0, 1.0));
            }
            self.rarity[k].insert(o, ra);
        }
        self.vstat_mean += cfg.level_alpha.max(rwarm) * (v_stat - self.vstat_mean);
        self.vstat_hi = self.vstat_hi.max(v_stat);
        self.vstat_hi -= cfg.range_decay * (self.vstat_hi - self.vstat_mean).max(0.0);

        // ---- learn ----------------------------------------------------------
        let w = cfg.winsor_z;
        let clip = |e: f64, v: f64| {
            if v > 0.0 {
                let s = sd(v);
                e.clamp(-w * s, w * s)
            } else {
                e
            }
        };
        let warm = 1.0 / n as f64;
        let la = cfg.level_alpha.max(warm);
        let el = clip(e_level, self.level.var);
        self.level.update(self.level.mean + el, la);
        let sa = cfg.select_alpha.max(warm);
        for (m, e) in errs.iter().enumerate() {
            let e = clip(*e, self.err[m]);
            self.err[m] += sa * (e * e - self.err[m]);
        }
        if let Some(s) = slot {
            let slot_ms = (MS_PER_DAY / i64::from(cfg.season_slots_per_day.clamp(1, 1440))) as f64;
            let visits = if self.dt_ms > 0.0 {
                (slot_ms / self.dt_ms).max(1.0)
            } else {
                1.0
            };
            let g = cfg.season_alpha / visits;
            if self.season_seen[s] {
                let xs = self.hw_level + self.season[s] + clip(e_season, self.err[1]);
                self.hw_level += (4.0 * la).min(1.0) * (xs - self.season[s] - self.hw_level);
                self.season[s] += g * (xs - self.hw_level - self.season[s]);
            } else {
                self.season_seen[s] = true;
                self.season[s] = x - self.hw_level;
            }
        }
        let eb = clip(errs[best], self.err[best]);
        self.var_short += cfg.var_short_alpha.max(warm) * (eb * eb - self.var_short);
        self.var_long += la * (eb * eb - self.var_long);
        self.hi = self.hi.max(x);
        self.lo = self.lo.min(x);
        let lvl = self.level.mean;
        self.hi -= cfg.range_decay * (self.hi - lvl).max(0.0);
        self.lo += cfg.range_decay * (lvl - self.lo).max(0.0);
        self.prev_ts = ts;

        if !past_warmup {
            return 0.0;
        }
        // ---- peak hold: repeats of an already reported level are damped -----
        if cfg.peak_hold_points > 0 {
            let out = if score > self.peak {
                score
            } else {
                score * cfg.repeat_factor
            };
            self.peak = (self.peak.max(score) - 1.0 / f64::from(cfg.peak_hold_points)).max(0.0);
            score = out;
        }
        score
    }
}
