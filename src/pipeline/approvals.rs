//! Human approvals arriving over HTTP (`POST /api/actions/{id}/approve` and
//! `.../reject`), handed to the pipeline thread that owns the recovery stage.
//!
//! The HTTP handler only enqueues a [`ApprovalCommand`] and waits (bounded)
//! for the answer; the runtime drains the queue between batches with
//! [`ApprovalQueue::drain`] and answers each command, so recovery state is
//! only ever touched by its own thread. Nobody draining (e.g. a `detect`-only
//! process) is reported to the caller as "unavailable", never as success.
//!
//! The HTTP side (tokens, routes) is [`crate::telemetry`]'s; this is only the
//! queue both sides share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Commands waiting beyond this are refused (the pipeline is not draining).
pub const MAX_QUEUED: usize = 256;

/// What a human decided about one pending action.
#[derive(Debug)]
pub struct ApprovalCommand {
    pub action_id: String,
    /// `true` approve, `false` reject.
    pub approve: bool,
    /// Who decided (free text from the request, for the record).
    pub by: String,
    pub reply: oneshot::Sender<ApprovalOutcome>,
}

/// How a command went; the HTTP status follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Approved (the action is emitted again as `auto`) or rejected (recorded).
    Done,
    NotFound,
    AlreadyDecided,
    Expired,
    /// The pipeline could not write the resulting records.
    Failed(String),
}

/// The queue between the HTTP server and the pipeline thread.
#[derive(Debug, Default)]
pub struct ApprovalQueue {
    queue: Mutex<VecDeque<ApprovalCommand>>,
    /// Set by a runtime that drains this queue.
    consumer: AtomicBool,
}

impl ApprovalQueue {
    /// Marks that a pipeline thread drains this queue.
    pub fn attach(&self) {
        self.consumer.store(true, Ordering::SeqCst);
    }

    /// Marks that no pipeline thread drains this queue any more (its loop ended).
    pub fn detach(&self) {
        self.consumer.store(false, Ordering::SeqCst);
    }

    /// Whether a pipeline thread drains this queue.
    pub fn attached(&self) -> bool {
        self.consumer.load(Ordering::SeqCst)
    }

    /// Enqueues a command; gives it back when nobody drains or the queue is full.
    pub fn submit(&self, cmd: ApprovalCommand) -> Result<(), ApprovalCommand> {
        if !self.attached() {
            return Err(cmd);
        }
        let mut q = match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if q.len() >= MAX_QUEUED {
            return Err(cmd);
        }
        q.push_back(cmd);
        Ok(())
    }

    /// Takes every waiting command (the runtime answers each).
    pub fn drain(&self) -> Vec<ApprovalCommand> {
        let mut q = match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        q.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_queued_without_a_consumer() {
        let q = ApprovalQueue::default();
        let (tx, _rx) = oneshot::channel();
        let cmd = ApprovalCommand {
            action_id: "a".into(),
            approve: true,
            by: "x".into(),
            reply: tx,
        };
        let cmd = q.submit(cmd).expect_err("no consumer");
        q.attach();
        assert!(q.submit(cmd).is_ok());
        assert_eq!(q.drain().len(), 1);
        assert!(q.drain().is_empty());
    }
}
