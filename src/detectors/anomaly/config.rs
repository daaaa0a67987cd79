//! Configuration of the streaming anomaly detector: one default for every series.

/// Knobs of [`super::SeriesDetector`]. The defaults are the single configuration
/// used for every series (and for the NAB numbers quoted in the module docs).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Points seen before any non-zero score is emitted (the models still learn).
    pub warmup_points: u32,
    /// EWMA weight of the slow level/spread baseline (memory about 1/alpha points);
    /// the Holt-Winters level uses four times this weight.
    pub level_alpha: f64,
    /// Enable the time-of-day / weekday seasonal (Holt-Winters) expert.
    pub seasonal: bool,
    /// Slots per day of the seasonal profile (24 = hourly, by UTC time of day).
    pub season_slots_per_day: u32,
    /// Keep separate seasonal profiles for weekdays and weekends.
    pub season_weekly: bool,
    /// Weight of one day's evidence in a seasonal slot (scaled down by the
    /// number of points that fall into a slot per day).
    pub season_alpha: f64,
    /// EWMA weight of the squared-error trackers used to pick the better expert.
    pub select_alpha: f64,
    /// Winsorisation: model updates clip residuals to this many spreads.
    pub winsor_z: f64,
    /// EWMA weight of the short-term residual variance (the long-term one uses
    /// `level_alpha`); their log ratio is the variance-change statistic.
    pub var_short_alpha: f64,
    /// Log variance ratio that is still considered normal noise; only the excess
    /// over it feeds the variance-change channel.
    pub variance_floor: f64,
    /// Per-point decay of the learned value range (and of the record high of the
    /// variance statistic) towards the baseline; memory about 1/decay points.
    pub range_decay: f64,
    /// Decay of the rarity histograms (memory about 1/alpha points).
    pub rarity_alpha: f64,
    /// Pseudo-count (in points) smoothing the rarity tail probabilities.
    pub rarity_prior: f64,
    /// Multiplier of overshoots (in units of the learned range) before binning.
    pub overshoot_scale: f64,
    /// Enable the range-breakout channel (value beyond the learned range).
    pub range_channel: bool,
    /// Enable the variance-change channel (residual variance beyond its record).
    pub variance_channel: bool,
    /// Peak hold: a score is reported in full only when it exceeds the recent
    /// peak, which decays linearly from 1 to 0 over this many points (0 = off).
    pub peak_hold_points: u32,
    /// Multiplier applied to scores that do not exceed the held peak.
    pub repeat_factor: f64,
    /// Score from which a point counts as an alert (fixed in advance: 0.5).
    pub alert_level: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            warmup_points: 100,
            level_alpha: 0.005,
            seasonal: true,
            season_slots_per_day: 24,
            season_weekly: true,
            season_alpha: 0.1,
            select_alpha: 0.01,
            winsor_z: 4.0,
            var_short_alpha: 0.05,
            variance_floor: 0.7,
            range_decay: 0.00003,
            rarity_alpha: 0.0002,
            rarity_prior: 1.0,
            overshoot_scale: 10.0,
            range_channel: true,
            variance_channel: true,
            peak_hold_points: 1000,
            repeat_factor: 0.2,
            alert_level: 0.5,
        }
    }
}
