//! Verification: did an action fix the incident?
//!
//! After an executor reports an action `succeeded` at `finished_at`, the
//! incident's services (root cause and affected) are watched in event time:
//! detections in the *grace* period `(finished_at, finished_at + grace]`
//! are ignored (the action's own rollout blip); the *verification window*
//! is `(finished_at + grace, finished_at + verify_for]`. When the watermark
//! passes its end the outcome is judged ([`judge`]):
//!
//! - **recovered**: no detection with score ≥ the diagnosis' `min_open_score`
//!   on those services in the window (or diagnosis already resolved the
//!   incident);
//! - **worse**: clearly above the pre-action level — at least `2·pre + 2`
//!   strong detections, or at least two more services failing than in the
//!   equally long window before the action was created;
//! - **not recovered**: anything else.
//!
//! A detection belongs to the window its `window.end` falls in. Results
//! that never come are a **timeout** (judged by the stage). Signals are
//! kept per service for [`KEEP_MS`] of event time (bounded state).
//!
//! Guarantees: pure functions of the detections observed and event time.

use crate::model::DetectorKind;
use crate::model::{Detection, EventTime};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How long observed detections are remembered.
pub const KEEP_MS: i64 = 2 * 3_600_000;
/// At most this many detections remembered per service.
const MAX_PER_SERVICE: usize = 4096;
/// Services remembered at most.
const MAX_SERVICES: usize = 65_536;

pub use crate::stage::stats::Outcome;

/// Strong detections seen in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub detections: usize,
    pub services: BTreeSet<String>,
}

/// Recent detections per service.
#[derive(Debug, Default)]
pub struct Signals {
    per_service: BTreeMap<String, VecDeque<(EventTime, f64)>>,
}

impl Signals {
    /// Remembers one detection (change records are not trouble).
    pub fn observe(&mut self, d: &Detection) {
        if d.detector == DetectorKind::Change {
            return;
        }
        if self.per_service.len() >= MAX_SERVICES && !self.per_service.contains_key(&d.service) {
            return;
        }
        let q = self.per_service.entry(d.service.clone()).or_default();
        if q.len() >= MAX_PER_SERVICE {
            q.pop_front();
        }
        q.push_back((d.window.end, d.score));
    }

    /// Forgets what is older than [`KEEP_MS`] before `wm`.
    pub fn prune(&mut self, wm: EventTime) {
        let horizon = wm.millis().saturating_sub(KEEP_MS);
        self.per_service.retain(|_, q| {
            while q.front().is_some_and(|(t, _)| t.millis() < horizon) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// Detections with score ≥ `min_score` on `services` whose window ends in `(from, to]`.
    pub fn activity(
        &self,
        services: &[String],
        from: EventTime,
        to: EventTime,
        min_score: f64,
    ) -> Activity {
        let mut a = Activity::default();
        for s in services {
            let Some(q) = self.per_service.get(s) else {
                continue;
            };
            let n = q
                .iter()
                .filter(|(t, sc)| *t > from && *t <= to && *sc >= min_score)
                .count();
            if n > 0 {
                a.detections += n;
                a.services.insert(s.clone());
            }
        }
        a
    }
}

/// The outcome of a verification window given the activity before the
/// action (`pre`) and in the window (`post`), both over equally long spans.
pub fn judge(pre: &Activity, post: &Activity) -> Outcome {
    if post.detections == 0 {
        Outcome::Recovered
    } else if post.detections >= 2 * pre.detections + 2
        || post.services.len() >= pre.services.len() + 2
    {
        Outcome::Worse
    } else {
        Outcome::NotRecovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(n: usize, svcs: &[&str]) -> Activity {
        Activity {
            detections: n,
            services: svcs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn judgement() {
        assert_eq!(judge(&act(5, &["a"]), &act(0, &[])), Outcome::Recovered);
        assert_eq!(
            judge(&act(5, &["a"]), &act(4, &["a"])),
            Outcome::NotRecovered
        );
        assert_eq!(judge(&act(5, &["a"]), &act(12, &["a"])), Outcome::Worse);
        assert_eq!(
            judge(&act(5, &["a"]), &act(6, &["a", "b", "c"])),
            Outcome::Worse
        );
    }
}
