//! Batch jobs and recurring failures: a job's run failing on its own is
//! its Job controller's business, a failure that repeats on a schedule is
//! not a new fault.
//!
//! Keying: per service (bounded by `MAX_BATCH_RUNS`).

use super::*;

impl DiagnosisStage {
    /// Remembers when `d` (strong) came from a batch job's run: a Job or
    /// CronJob in the catalog, or mostly from pods named as CronJob runs
    /// are (see [`workload`]).
    pub(super) fn note_batch_run(&mut self, d: &Detection) {
        let declared = self
            .catalog
            .services
            .get(&d.service)
            .and_then(|e| e.kind.as_deref())
            .is_some_and(|k| k.eq_ignore_ascii_case("cronjob") || k.eq_ignore_ascii_case("job"));
        let runs = workload::mostly_cronjob_runs(
            d.instances.iter().map(|i| (i.value.as_str(), i.count)),
            d.window.end.millis(),
        );
        if !(declared || runs) {
            return;
        }
        if self.batch_runs.len() >= MAX_BATCH_RUNS && !self.batch_runs.contains_key(&d.service) {
            return;
        }
        let at = self.batch_runs.entry(d.service.clone()).or_insert(i64::MIN);
        *at = (*at).max(d.window.end.millis());
    }

    /// Every service failing in a settling incident is a batch job's run
    /// (failing during the incident): a job failing on its own, which its
    /// Job controller retries and its owner reads about in the job's
    /// report. Were a service it calls down, that service's other callers
    /// would fail too and open an incident rooted there.
    pub(super) fn batch_only(&self, t: &Tracked) -> bool {
        let since = t.opened_at.millis() - SETTLE_MS;
        !t.seen.is_empty()
            && t.seen
                .keys()
                .all(|s| self.batch_runs.get(s).is_some_and(|at| *at >= since))
    }

    /// Why `t` is a job's doing rather than a fault: a batch job's run
    /// failing on its own, or a failure recurring on its schedule.
    pub(super) fn job_not_fault(&self, t: &Tracked) -> Option<&'static str> {
        if self.batch_only(t) {
            Some("a batch job's run failing on its own")
        } else if self.recurring(t) {
            Some("a failure recurring on an hourly schedule")
        } else {
            None
        }
    }

    /// A settling incident is a scheduled failure recurring: every service
    /// failing in it is in an episode that repeats an earlier short one of
    /// its own a whole number of hours later (see [`recurrence`]).
    pub(super) fn recurring(&self, t: &Tracked) -> bool {
        !t.seen.is_empty() && t.seen.keys().all(|s| self.episodes.recurs(s))
    }
}
