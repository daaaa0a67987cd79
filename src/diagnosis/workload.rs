//! Which kind of workload an error came from, told by its pod name: a run
//! of a Kubernetes CronJob, or a long-running service.
//!
//! A batch job that fails for a few minutes while it runs is the job's
//! outcome (its Job controller retries it, its owner reads its report), not
//! an outage of a service that others call. Kubernetes names the pods of a
//! CronJob run `<cronjob>-<scheduled time in minutes since the epoch>-<5
//! characters>`: the Job gets the scheduled minute as its suffix and the
//! Job controller adds the pod suffix from the same alphabet as every
//! generated name (`bcdfghjklmnpqrstvwxz2456789`, no vowels, no 0, 1 or 3).
//! A Deployment's pods are `<name>-<pod-template-hash>-<5 characters>`,
//! whose hash uses that alphabet too and so is all digits only by a rare
//! chance; requiring the digits to be a minute shortly before the event
//! (the run started at most [`MAX_RUN_AGE_MS`] earlier) makes a mistaken
//! match practically impossible.
//!
//! Pure (no I/O, no clock).

/// A CronJob run older than this (from its scheduled minute to the event) is
/// not taken for one: jobs that run for more than a day are services.
pub const MAX_RUN_AGE_MS: i64 = 24 * 3_600_000;
/// Clock skew allowed between the scheduler and the event's timestamp.
pub const SKEW_MS: i64 = 10 * 60_000;

/// The alphabet of Kubernetes generated name suffixes.
fn generated(c: u8) -> bool {
    b"bcdfghjklmnpqrstvwxz2456789".contains(&c)
}

/// `pod` is named as a pod of a CronJob run scheduled at most
/// [`MAX_RUN_AGE_MS`] before `at_ms` (event time, ms since the epoch).
pub fn cronjob_pod(pod: &str, at_ms: i64) -> bool {
    let mut parts = pod.rsplitn(3, '-');
    let (Some(suffix), Some(minute), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if name.is_empty() || suffix.len() != 5 || !suffix.bytes().all(generated) {
        return false;
    }
    // Minutes since the epoch: 8 digits from 1989 to 2160.
    if !(8..=9).contains(&minute.len()) || !minute.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(minute) = minute.parse::<i64>() else {
        return false;
    };
    let scheduled = minute.saturating_mul(60_000);
    scheduled <= at_ms.saturating_add(SKEW_MS) && at_ms - scheduled <= MAX_RUN_AGE_MS
}

/// Most of `instances` (pod name, event count) are pods of CronJob runs.
pub fn mostly_cronjob_runs<'a>(
    instances: impl IntoIterator<Item = (&'a str, i64)>,
    at_ms: i64,
) -> bool {
    let (mut runs, mut all) = (0i64, 0i64);
    for (pod, n) in instances {
        all += n;
        if cronjob_pod(pod, at_ms) {
            runs += n;
        }
    }
    all > 0 && 2 * runs > all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-03-02T06:05:00Z in ms.
    const AT: i64 = 1_772_431_500_000;

    #[test]
    fn a_cronjob_run_pod_is_told_from_deployment_pods() {
        let minute = AT / 60_000;
        assert!(cronjob_pod(
            &format!("reporting-batch-{minute}-x7kq2"),
            AT + 120_000
        ));
        assert!(cronjob_pod(&format!("ledger-reconcile-{minute}-b2c4d"), AT));
        // Deployment and StatefulSet pods.
        assert!(!cronjob_pod("orders-api-7d9f8c6b5-x7kq2", AT));
        assert!(!cronjob_pod("orders-api-5789964d4-x7kq2", AT));
        assert!(!cronjob_pod("ledger-db-0", AT));
        assert!(!cronjob_pod("x7kq2", AT));
        // Vowels and 0/1/3 never appear in a generated suffix.
        assert!(!cronjob_pod(&format!("job-{minute}-abcde"), AT));
        // A scheduled minute far from the event: an all-digit hash by chance.
        assert!(!cronjob_pod("web-25578964-x7kq2", AT));
        assert!(!cronjob_pod(&format!("job-{}-x7kq2", minute + 60), AT));
    }

    #[test]
    fn most_events_decide() {
        let minute = AT / 60_000;
        let run = format!("reporting-batch-{minute}-x7kq2");
        assert!(mostly_cronjob_runs(
            [(run.as_str(), 9), ("reporting-batch-7d9f8c6b5-b2c4d", 2)],
            AT
        ));
        assert!(!mostly_cronjob_runs(
            [(run.as_str(), 2), ("reporting-batch-7d9f8c6b5-b2c4d", 9)],
            AT
        ));
        assert!(!mostly_cronjob_runs(std::iter::empty(), AT));
    }

    proptest! {
        /// A pod of a run scheduled within the day before the event is one,
        /// whatever the job is called.
        #[test]
        fn every_recent_run_is_recognised(
            name in "[a-z][a-z0-9-]{0,40}[a-z0-9]",
            suffix in "[bcdfghjklmnpqrstvwxz2456789]{5}",
            age_min in 0i64..(24 * 60),
        ) {
            let minute = AT / 60_000 - age_min;
            let pod = format!("{name}-{minute}-{suffix}");
            prop_assert!(cronjob_pod(&pod, AT), "{}", pod);
        }

        /// A Deployment pod (hash with at least one letter) never is.
        #[test]
        fn deployment_pods_never_are(
            name in "[a-z][a-z0-9-]{0,40}[a-z0-9]",
            hash in "[bcdfghjklmnpqrstvwxz2456789]{5,9}[bcdfghjklmnpqrstvwxz][bcdfghjklmnpqrstvwxz2456789]{0,1}",
            suffix in "[bcdfghjklmnpqrstvwxz2456789]{5}",
        ) {
            let pod = format!("{name}-{hash}-{suffix}");
            prop_assert!(!cronjob_pod(&pod, AT), "{}", pod);
        }
    }
}
