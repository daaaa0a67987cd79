//! The state of one incident's recovery (an *episode*) and its phase
//! transitions, as one pure function ([`next`]).
//!
//! Phases: a planned step either awaits the executor's result (`auto`),
//! awaits a human (`approval_required`) or is over (escalated, held, dry
//! run); a reported success starts verification; verification, expiry,
//! rejection or a resolved incident end the episode.
//!
//! Guarantees (unit-tested): a result is accepted only while one is
//! awaited and an approval only while one is pending (any other phase is
//! left as it is); a dry run or a held or escalated step never awaits a
//! result, so nothing waits on an action that will not be carried out.

use super::plan::Verdict;
use super::verify::Activity;
use crate::model::{EventTime, Incident, RecoveryAction};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    AwaitingApproval,
    AwaitingResult {
        deadline: EventTime,
    },
    Verifying {
        finished: EventTime,
        grace_end: EventTime,
        end: EventTime,
        pre: Activity,
    },
    /// Over; `verified` when it ended with a verified fix.
    Done {
        verified: bool,
    },
}

/// What happens to an episode.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Event {
    /// A step (or undo) was planned: `verdict` is how its action went out,
    /// `None` when none did; `deadline` is when a result is due.
    Planned {
        verdict: Option<Verdict>,
        deadline: EventTime,
    },
    /// A human approved the pending action.
    Approved { deadline: EventTime },
    /// The executor reported success: verify over `grace_end..end`.
    Succeeded {
        finished: EventTime,
        grace_end: EventTime,
        end: EventTime,
        pre: Activity,
    },
    /// Verified, failed for good, expired, rejected or resolved.
    Ended { verified: bool },
}

/// The phase after `ev`.
pub(super) fn next(phase: &Phase, ev: Event) -> Phase {
    match ev {
        Event::Planned { verdict, deadline } => match verdict {
            Some(Verdict::Auto) => Phase::AwaitingResult { deadline },
            Some(Verdict::ApprovalRequired) => Phase::AwaitingApproval,
            Some(Verdict::DryRun { .. }) | None => Phase::Done { verified: false },
        },
        Event::Approved { deadline } => match phase {
            Phase::AwaitingApproval => Phase::AwaitingResult { deadline },
            other => other.clone(),
        },
        Event::Succeeded {
            finished,
            grace_end,
            end,
            pre,
        } => match phase {
            Phase::AwaitingResult { .. } => Phase::Verifying {
                finished,
                grace_end,
                end,
                pre,
            },
            other => other.clone(),
        },
        Event::Ended { verified } => Phase::Done { verified },
    }
}

#[derive(Debug, Clone)]
pub(super) struct Episode {
    pub(super) inc: Incident,
    /// Index of the current ladder step.
    pub(super) step: usize,
    /// What was tried, for escalations ("restart payments").
    pub(super) tried: Vec<String>,
    pub(super) phase: Phase,
    pub(super) action: Option<RecoveryAction>,
    /// The current action reverts an earlier one.
    pub(super) undo: bool,
    /// Replica count before the current action (scale undo).
    pub(super) previous_replicas: Option<i64>,
    /// Activity before the current action was created.
    pub(super) pre: Activity,
    /// A new category for the same root arrived while an action was being
    /// carried out or verified (its own blip can change the diagnosis): the
    /// verification decides first; if it fails, the ladder continues with
    /// this diagnosis.
    pub(super) rediagnosed: Option<Incident>,
}

impl Episode {
    /// A fresh episode for `inc`, at the ladder's first step.
    pub(super) fn new(inc: Incident, tried: Vec<String>) -> Self {
        Episode {
            inc,
            step: 0,
            tried,
            phase: Phase::Done { verified: false },
            action: None,
            undo: false,
            previous_replicas: None,
            pre: Activity::default(),
            rediagnosed: None,
        }
    }

    /// Applies `ev` to the phase.
    pub(super) fn on(&mut self, ev: Event) {
        self.phase = next(&self.phase, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    const T: EventTime = EventTime(1_000);

    fn phases() -> Vec<Phase> {
        vec![
            Phase::AwaitingApproval,
            Phase::AwaitingResult { deadline: T },
            Phase::Verifying {
                finished: T,
                grace_end: T,
                end: T,
                pre: Activity::default(),
            },
            Phase::Done { verified: false },
            Phase::Done { verified: true },
        ]
    }

    #[test]
    fn only_auto_awaits_a_result() {
        let due = EventTime(5_000);
        for p in phases() {
            let planned = |verdict| {
                next(
                    &p,
                    Event::Planned {
                        verdict,
                        deadline: due,
                    },
                )
            };
            assert_eq!(
                planned(Some(Verdict::Auto)),
                Phase::AwaitingResult { deadline: due }
            );
            assert_eq!(
                planned(Some(Verdict::ApprovalRequired)),
                Phase::AwaitingApproval
            );
            for v in [
                None,
                Some(Verdict::DryRun {
                    policy: Decision::Auto,
                }),
                Some(Verdict::DryRun {
                    policy: Decision::ApprovalRequired,
                }),
            ] {
                assert_eq!(planned(v), Phase::Done { verified: false });
            }
        }
    }

    #[test]
    fn results_and_approvals_only_in_their_phase() {
        let ok = Event::Succeeded {
            finished: EventTime(2_000),
            grace_end: EventTime(3_000),
            end: EventTime(4_000),
            pre: Activity::default(),
        };
        let approved = Event::Approved {
            deadline: EventTime(9_000),
        };
        for p in phases() {
            let after_ok = next(&p, ok.clone());
            let after_approval = next(&p, approved.clone());
            match p {
                Phase::AwaitingResult { .. } => {
                    assert!(
                        matches!(after_ok, Phase::Verifying { end, .. } if end == EventTime(4_000))
                    );
                    assert_eq!(after_approval, p);
                }
                Phase::AwaitingApproval => {
                    assert_eq!(after_ok, p);
                    assert_eq!(
                        after_approval,
                        Phase::AwaitingResult {
                            deadline: EventTime(9_000)
                        }
                    );
                }
                _ => {
                    assert_eq!(after_ok, p);
                    assert_eq!(after_approval, p);
                }
            }
        }
    }

    #[test]
    fn ended_is_done_with_its_verdict() {
        for p in phases() {
            assert_eq!(
                next(&p, Event::Ended { verified: true }),
                Phase::Done { verified: true }
            );
            assert_eq!(
                next(&p, Event::Ended { verified: false }),
                Phase::Done { verified: false }
            );
        }
    }
}
