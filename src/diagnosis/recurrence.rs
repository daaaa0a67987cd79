//! Scheduled failures: per service, the episodes of strong detections
//! (a burst of strong evidence, separated from the next by a quiet gap),
//! and whether the current episode repeats an earlier one on an hourly
//! schedule.
//!
//! A batch job that fails loudly for a few minutes every hour (or every few
//! hours) at the same minute looks like a new fault each time it runs; a
//! human on call learns after one run that it is the job's schedule, and so
//! does this: an episode that starts a whole number of hours (1 to 24)
//! after an earlier short episode of the same service, within
//! [`SLACK_MS`], looks like it (at least half of its message templates were
//! in the earlier one) and has not outlasted it, is a recurrence. The
//! likeness keeps a real fault on a service that a job also troubles (its
//! own errors, not the job's) from passing for the job. An episode in which
//! the service was a victim of another service's fault (its failures were
//! explained by an incident rooted elsewhere) is no run of its own: a
//! gateway that fails with every fault behind it, at random minutes all
//! day, would otherwise find one of them a whole number of hours back
//! each time. A real fault that happens to start on the hour on such a
//! service is opened once it lasts longer than the scheduled run did.
//!
//! Pure (no I/O, no clock): event times in milliseconds in, answers out.
//! Memory: at most [`MAX_EPISODES`] episodes per service and
//! [`MAX_SERVICES`] services (the oldest service's history is dropped).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// Strong evidence this far apart belongs to two episodes.
pub const GAP_MS: i64 = 10 * 60_000;
/// How far a repeat may start from the earlier start plus whole hours.
pub const SLACK_MS: i64 = 5 * 60_000;
/// An earlier episode longer than this is a fault, not a scheduled run.
pub const MAX_RUN_MS: i64 = 20 * 60_000;
/// A repeat may outlast the earlier run by this much and still be one.
pub const OUTLAST_MS: i64 = 5 * 60_000;
/// Longest period recognised.
pub const MAX_PERIOD_HOURS: i64 = 24;
/// Episodes kept per service (a day of hourly runs and then some).
pub const MAX_EPISODES: usize = 32;
/// Services whose episodes are kept.
pub const MAX_SERVICES: usize = 65_536;
/// Template fingerprints kept per episode.
pub const MAX_PRINTS: usize = 16;

/// One episode: its first and last evidence and what it looked like.
#[derive(Debug, Clone, PartialEq)]
struct Episode {
    start: i64,
    end: i64,
    /// Hashes of the message templates sampled in it (bounded).
    prints: BTreeSet<u64>,
    /// Its failures were explained by another service's fault.
    victim: bool,
}

/// Episodes of strong evidence per service.
#[derive(Debug, Default, Clone)]
pub struct Episodes {
    by_service: BTreeMap<String, VecDeque<Episode>>,
}

impl Episodes {
    /// Records strong evidence about `service` from `start` to `end` (event
    /// time, ms): extends the current episode, or starts a new one after a
    /// quiet gap of [`GAP_MS`]. `prints` are hashes of the message
    /// templates the evidence sampled.
    pub fn observe(
        &mut self,
        service: &str,
        start: i64,
        end: i64,
        prints: impl IntoIterator<Item = u64>,
    ) {
        let end = end.max(start);
        if !self.by_service.contains_key(service) && self.by_service.len() >= MAX_SERVICES {
            // Keep memory bounded: forget the service seen least recently.
            let oldest = self
                .by_service
                .iter()
                .min_by_key(|(_, e)| e.back().map_or(i64::MIN, |x| x.end))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.by_service.remove(&k);
            }
        }
        let eps = self.by_service.entry(service.to_string()).or_default();
        let ep = match eps.back_mut() {
            Some(last) if start <= last.end + GAP_MS => {
                last.start = last.start.min(start);
                last.end = last.end.max(end);
                last
            }
            _ => {
                if eps.len() >= MAX_EPISODES {
                    eps.pop_front();
                }
                eps.push_back(Episode {
                    start,
                    end,
                    prints: BTreeSet::new(),
                    victim: false,
                });
                let Some(last) = eps.back_mut() else {
                    return;
                };
                last
            }
        };
        for p in prints {
            if ep.prints.len() >= MAX_PRINTS {
                break;
            }
            ep.prints.insert(p);
        }
    }

    /// Marks the current episode of `service` as a victim's: its failures
    /// were explained by another service's fault, so it is no scheduled
    /// run to compare later episodes with.
    pub fn victim(&mut self, service: &str) {
        if let Some(ep) = self.by_service.get_mut(service).and_then(|e| e.back_mut()) {
            ep.victim = true;
        }
    }

    /// Whether the current episode of `service` repeats an earlier short
    /// one a whole number of hours later (see the module doc).
    pub fn recurs(&self, service: &str) -> bool {
        let Some(eps) = self.by_service.get(service) else {
            return false;
        };
        let Some(cur) = eps.back() else {
            return false;
        };
        eps.iter().rev().skip(1).any(|e| {
            let run = e.end - e.start;
            let d = cur.start - e.start;
            let k = (d + HOUR_MS / 2).div_euclid(HOUR_MS);
            let alike = cur.prints.intersection(&e.prints).count();
            !e.victim
                && (1..=MAX_PERIOD_HOURS).contains(&k)
                && (d - k * HOUR_MS).abs() <= SLACK_MS
                && run <= MAX_RUN_MS
                && cur.end - cur.start <= run + OUTLAST_MS
                && 2 * alike >= cur.prints.len()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn run(e: &mut Episodes, s: &str, start: i64, minutes: i64) {
        run_like(e, s, start, minutes, &[1, 2]);
    }

    fn run_like(e: &mut Episodes, s: &str, start: i64, minutes: i64, prints: &[u64]) {
        for m in 0..minutes {
            e.observe(
                s,
                start + m * MIN,
                start + (m + 1) * MIN,
                prints.iter().copied(),
            );
        }
    }

    #[test]
    fn an_hourly_job_recurs_from_its_second_run() {
        let mut e = Episodes::default();
        run(&mut e, "batch", 5 * MIN, 5);
        assert!(!e.recurs("batch"), "the first run is new");
        run(&mut e, "batch", HOUR_MS + 7 * MIN, 4);
        assert!(e.recurs("batch"), "two minutes off the hour still recurs");
        run(&mut e, "batch", 3 * HOUR_MS + 3 * MIN, 5);
        assert!(e.recurs("batch"), "a skipped run: two hours later");
    }

    #[test]
    fn a_victims_episode_is_no_schedule_to_repeat() {
        let mut e = Episodes::default();
        // A gateway failing with a fault behind it.
        run(&mut e, "gateway", 0, 4);
        e.victim("gateway");
        run(&mut e, "gateway", 4 * HOUR_MS + 2 * MIN, 4);
        assert!(!e.recurs("gateway"), "four hours after another fault");
        // Its own short failure is one.
        run(&mut e, "gateway", 5 * HOUR_MS + 3 * MIN, 4);
        assert!(e.recurs("gateway"));
    }

    #[test]
    fn off_schedule_long_or_outlasting_episodes_do_not_recur() {
        let mut e = Episodes::default();
        run(&mut e, "a", 0, 5);
        run(&mut e, "a", HOUR_MS + 20 * MIN, 5);
        assert!(!e.recurs("a"), "20 minutes off the hour");

        let mut e = Episodes::default();
        run(&mut e, "b", 0, 30);
        run(&mut e, "b", 2 * HOUR_MS, 5);
        assert!(!e.recurs("b"), "the earlier episode was a 30-minute fault");

        let mut e = Episodes::default();
        run(&mut e, "c", 0, 5);
        run(&mut e, "c", HOUR_MS, 5);
        assert!(e.recurs("c"));
        run(&mut e, "c", HOUR_MS + 5 * MIN, 6);
        assert!(
            !e.recurs("c"),
            "it has outlasted the scheduled run: a fault"
        );

        let mut e = Episodes::default();
        run(&mut e, "d", 0, 5);
        run(&mut e, "other", HOUR_MS, 5);
        assert!(!e.recurs("other"), "another service's schedule");

        let mut e = Episodes::default();
        run_like(&mut e, "f", 0, 5, &[1, 2]);
        run_like(&mut e, "f", HOUR_MS, 3, &[7, 8, 1]);
        assert!(!e.recurs("f"), "on the hour, but failing differently");
    }

    #[test]
    fn memory_is_bounded() {
        let mut e = Episodes::default();
        for i in 0..(MAX_EPISODES as i64 * 3) {
            e.observe("x", i * HOUR_MS, i * HOUR_MS + MIN, [i as u64 % 2]);
        }
        assert_eq!(e.by_service["x"].len(), MAX_EPISODES);
        assert!(e.recurs("x"));
    }

    proptest! {
        /// Whatever the history, an episode recurs only when an earlier
        /// short one started a whole number of hours (within the slack)
        /// before it.
        #[test]
        fn recurrence_needs_an_aligned_earlier_short_episode(
            starts in proptest::collection::vec((0i64..48 * 60, 1i64..40), 1..12),
        ) {
            let mut e = Episodes::default();
            let mut t = 0i64;
            for (gap, len) in &starts {
                t += (gap + 11) * MIN; // always a new episode
                run(&mut e, "s", t, *len);
                t += len * MIN;
            }
            let eps = &e.by_service["s"];
            let cur = eps.back().unwrap();
            let (cs, ce) = (cur.start, cur.end);
            let expected = eps.iter().rev().skip(1).any(|x| {
                let d = cs - x.start;
                (1..=MAX_PERIOD_HOURS).any(|k| (d - k * HOUR_MS).abs() <= SLACK_MS)
                    && x.end - x.start <= MAX_RUN_MS
                    && ce - cs <= x.end - x.start + OUTLAST_MS
            });
            prop_assert_eq!(e.recurs("s"), expected);
        }
    }
}
