//! Watching an in-process loop live: the hook `reflex demo --http` plugs
//! into the demo so that its records reach the ops API (board, stream,
//! report, metrics), humans can approve its pending actions, and `--speed`
//! paces simulated time to the wall clock.
//!
//! Guarantees: without an observer the demo runs exactly as before (the
//! hook is optional and only reads); pacing never changes what is computed,
//! only when (the demo stays a function of its seed); approvals are
//! answered between loop steps by the thread that owns the pipeline, like
//! in the Kafka runtime.

use crate::model::{ActionResult, EventTime};
use crate::pipeline::stats::Stats;
use crate::pipeline::topology::Decider;
use crate::sinks::{Output, SinkError};
use crate::telemetry::Telemetry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an in-process loop tells its observer.
pub trait LoopObserver: Send + Sync + std::fmt::Debug {
    /// The counters the loop's pipeline should share (so `/metrics` and the
    /// board see guard holds and the breaker); `None`: the loop's own.
    fn stats(&self) -> Option<Arc<Stats>> {
        None
    }
    /// A record the pipeline wrote.
    fn output(&self, out: &Output);
    /// A result the executor reported.
    fn result(&self, r: &ActionResult);
    /// Between loop steps, simulated time `now`: pace, answer approvals.
    fn step(&self, now: EventTime, decider: &mut Decider<'_>) -> Result<(), SinkError>;
    /// The loop ended: nothing answers approvals any more.
    fn finish(&self) {}
}

/// The observer of `reflex demo --http`: feeds a [`Telemetry`] hub.
pub struct LiveDemo {
    telemetry: Arc<Telemetry>,
    /// Simulated seconds per wall-clock second (`None`: as fast as possible).
    speed: Option<f64>,
    /// Pacing starts here (the warm-up before the first fault runs at full speed).
    pace_from: EventTime,
    /// (wall, simulated) when pacing started.
    anchor: Mutex<Option<(Instant, EventTime)>>,
}

impl std::fmt::Debug for LiveDemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDemo")
            .field("speed", &self.speed)
            .field("pace_from", &self.pace_from)
            .finish_non_exhaustive()
    }
}

/// Longest one sleep lasts, so that approvals are answered promptly.
const SLICE: Duration = Duration::from_millis(50);

impl LiveDemo {
    /// Observes into `telemetry`; takes approvals from its queue.
    pub fn new(telemetry: Arc<Telemetry>, speed: Option<f64>, pace_from: EventTime) -> Self {
        telemetry.approvals.attach();
        LiveDemo {
            telemetry,
            speed: speed.filter(|s| s.is_finite() && *s > 0.0),
            pace_from,
            anchor: Mutex::new(None),
        }
    }

    /// How long to wait before simulated time `now` is due (pure).
    pub fn due_in(
        anchor: (Instant, EventTime),
        now: EventTime,
        speed: f64,
        wall: Instant,
    ) -> Duration {
        let sim_ms = (now.millis() - anchor.1.millis()).max(0) as f64;
        let due = anchor.0 + Duration::from_secs_f64(sim_ms / 1000.0 / speed);
        due.saturating_duration_since(wall)
    }
}

impl LoopObserver for LiveDemo {
    fn stats(&self) -> Option<Arc<Stats>> {
        Some(self.telemetry.stats.clone())
    }

    fn output(&self, out: &Output) {
        self.telemetry.observe(out);
    }

    fn result(&self, r: &ActionResult) {
        self.telemetry.observe_result(r);
    }

    fn step(&self, now: EventTime, decider: &mut Decider<'_>) -> Result<(), SinkError> {
        crate::pipeline::feedback::answer_approvals(&self.telemetry.approvals, decider)?;
        let Some(speed) = self.speed else {
            return Ok(());
        };
        if now < self.pace_from {
            return Ok(());
        }
        let anchor = {
            let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
            *a.get_or_insert((Instant::now(), now))
        };
        loop {
            let wait = Self::due_in(anchor, now, speed, Instant::now());
            if wait.is_zero() {
                return Ok(());
            }
            std::thread::sleep(wait.min(SLICE));
            crate::pipeline::feedback::answer_approvals(&self.telemetry.approvals, decider)?;
        }
    }

    fn finish(&self) {
        self.telemetry.approvals.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_maps_simulated_time_to_wall_time_by_speed() {
        let t0 = Instant::now();
        let a = (t0, EventTime(0));
        // 60 simulated seconds at speed 30 are due 2 s after the anchor.
        assert_eq!(
            LiveDemo::due_in(a, EventTime(60_000), 30.0, t0),
            Duration::from_secs(2)
        );
        assert_eq!(
            LiveDemo::due_in(a, EventTime(60_000), 30.0, t0 + Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert!(
            LiveDemo::due_in(a, EventTime(60_000), 30.0, t0 + Duration::from_secs(3)).is_zero()
        );
        assert!(LiveDemo::due_in(a, EventTime(-5), 1.0, t0).is_zero());
    }
}
