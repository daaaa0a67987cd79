//! Executors: the processes that carry out `reflex.actions` (Kubernetes,
//! runbooks) and deliver `reflex.escalations` (webhooks), each reporting an
//! [`ActionResult`] per input.
//!
//! This module holds the parts every executor shares and that do no I/O:
//! - the [`Gate`]: signature (when a key is configured), dry run (the
//!   decision `dry_run` is never carried out: `skipped_dry_run`), expiry in
//!   event time against an injected [`Clock`], decision (`auto`, or an
//!   `approval_required` action whose key is in the approvals file), and the
//!   operator's allow-lists (namespaces, action types), then the target's
//!   names (RFC 1123: no paths, selectors or queries reach an API path)
//!   and the typed parameters ([`ActionParams::check`](crate::model::ActionParams::check):
//!   only the ones the type takes, each well-formed, none unknown). An action the gate
//!   refuses is never handed to an executor and yields `rejected` with the
//!   reason (`skipped_dry_run` for a dry run).
//! - the idempotency [`Ledger`]: the keys already executed (bounded, FIFO
//!   eviction), rebuilt at start-up from the results an executor published
//!   before. A key in the ledger yields `skipped_duplicate` and no call.
//! - the [`Runner`], which puts gate, ledger and an [`Executor`] together:
//!   one action in, exactly one `ActionResult` out.
//!
//! Guarantees: the runner never panics on input; a key is recorded in the
//! ledger only after the executor attempted it (status `succeeded` or
//! `failed`), so a rejected action can be re-sent once fixed; `--dry-run`
//! passes the gate and ledger but neither touches the target nor records
//! the key.

pub mod config;
pub mod health;
pub mod kafka_loop;
pub mod kube;
pub mod runbook;
pub mod webhook;

use crate::model::{
    params, ActionResult, ActionStatus, ActionType, Decision, EventTime, RecoveryAction,
};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};

pub use config::ExecutorConfig;

/// A source of "now" in event time (epoch ms). Injected so tests control expiry.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> EventTime;
}

impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> EventTime {
        (**self).now()
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EventTime {
        EventTime(chrono::Utc::now().timestamp_millis())
    }
}

/// A clock that only moves when told to (tests, replays).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn at(t: EventTime) -> Self {
        ManualClock(AtomicI64::new(t.millis()))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: EventTime) {
        self.0.store(t.millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> EventTime {
        EventTime(self.0.load(Ordering::SeqCst))
    }
}

/// Carries out one kind of input. `execute` is only called for actions that
/// passed the [`Gate`] and are not in the [`Ledger`]; it returns `succeeded`
/// or `failed` with what it saw.
pub trait Executor: Send + Sync {
    /// The name written into `ActionResult.executor`.
    fn name(&self) -> &str;

    /// One line saying what `execute` would do (used by `--dry-run`).
    fn describe(&self, action: &RecoveryAction) -> String {
        format!(
            "{} {}/{} {}",
            action.action_type.as_str(),
            action.target.namespace.as_deref().unwrap_or("-"),
            action.target.kind,
            action.target.name
        )
    }

    /// Carries the action out.
    fn execute(&self, action: &RecoveryAction) -> impl Future<Output = ActionResult> + Send;
}

/// Why an executor could not be set up (the CLI exits 2 for both kinds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A configuration value or file referenced by it is unusable.
    #[error("{0}")]
    Config(String),
    /// No usable Kubernetes configuration (in-cluster or kubeconfig).
    #[error("{0}")]
    Kubernetes(String),
}

/// Why the gate refused an action (the `rejected` reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unsigned: a signing key is configured and the action carries no signature")]
    Unsigned,
    #[error("bad signature: the signature does not match the action under the configured key")]
    BadSignature,
    #[error("expired at {expires_at} (now {now})")]
    Expired {
        expires_at: EventTime,
        now: EventTime,
    },
    #[error("awaiting approval: decision is approval_required and the key is not approved")]
    NotApproved,
    #[error("namespace {0:?} is not in the executor's allowed namespaces")]
    NamespaceNotAllowed(String),
    #[error("action type {0} is not in the executor's allowed types")]
    TypeNotAllowed(&'static str),
    #[error("target not allowed: {0}")]
    TargetNotAllowed(String),
    #[error("invalid action: {0}")]
    Invalid(String),
    /// Not a fault of the action: reflex ran with `[recovery] dry_run` and
    /// only shows what it would do.
    #[error("dry run: decision is dry_run; nothing was done")]
    DryRun,
}

impl Rejection {
    /// The status an action refused for this reason is reported with.
    pub fn status(&self) -> ActionStatus {
        match self {
            Rejection::DryRun => ActionStatus::SkippedDryRun,
            _ => ActionStatus::Rejected,
        }
    }
}

/// The operator's policy for which actions may run.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// HMAC key; when set, every action must carry a valid signature.
    pub key: Option<Vec<u8>>,
    /// Namespaces actions may target; `*` allows all.
    pub namespaces: Vec<String>,
    /// Action types that may run.
    pub types: Vec<ActionType>,
    /// Idempotency keys a human approved (for `approval_required` actions).
    pub approved: HashSet<String>,
    /// A file of approved idempotency keys (one per line, `#` comments),
    /// re-read whenever an `approval_required` action arrives.
    pub approvals_file: Option<std::path::PathBuf>,
}

impl Gate {
    /// Re-reads `approvals_file` (when set) into `approved`; on error the
    /// previous set is kept and the error returned.
    pub fn refresh_approvals(&mut self) -> Result<(), String> {
        let Some(path) = &self.approvals_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("approvals file {}: {e}", path.display()))?;
        self.approved = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        Ok(())
    }

    /// Checks an action in the fixed order signature → dry run → expiry →
    /// decision → type → namespace → target names → typed parameters; the
    /// first failure is the reason. A dry
    /// run is told apart right after the signature, so a genuine dry run is
    /// always reported as one (expired or not) and a forged one is not.
    pub fn check(&self, action: &RecoveryAction, now: EventTime) -> Result<(), Rejection> {
        if let Some(key) = &self.key {
            if action.signature.is_none() {
                return Err(Rejection::Unsigned);
            }
            if !crate::model::sign::verify(action, key) {
                return Err(Rejection::BadSignature);
            }
        }
        if action.decision == Decision::DryRun {
            return Err(Rejection::DryRun);
        }
        if now >= action.expires_at {
            return Err(Rejection::Expired {
                expires_at: action.expires_at,
                now,
            });
        }
        if action.decision == Decision::ApprovalRequired
            && !self.approved.contains(&action.idempotency_key)
        {
            return Err(Rejection::NotApproved);
        }
        if !self.types.contains(&action.action_type) {
            return Err(Rejection::TypeNotAllowed(action.action_type.as_str()));
        }
        // Node-scoped actions carry no namespace; the rest must name one.
        if action.action_type != ActionType::DrainNode {
            let ns = action.target.namespace.as_deref().unwrap_or("");
            if ns.is_empty() {
                return Err(Rejection::Invalid("target.namespace is missing".into()));
            }
            if !self.namespaces.iter().any(|n| n == "*" || n == ns) {
                return Err(Rejection::NamespaceNotAllowed(ns.to_string()));
            }
            if !params::is_dns_label(ns) {
                return Err(Rejection::Invalid(
                    "target.namespace is not a Kubernetes namespace name (RFC 1123)".into(),
                ));
            }
        }
        // Executors put these into API paths: a name is a name, never a
        // path, a selector or a query.
        if !params::is_dns_subdomain(&action.target.name) {
            return Err(Rejection::Invalid(
                "target.name is not a Kubernetes object name (RFC 1123)".into(),
            ));
        }
        let kind = &action.target.kind;
        if kind.is_empty()
            || kind.len() > 63
            || !kind.starts_with(|c: char| c.is_ascii_uppercase())
            || !kind.bytes().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(Rejection::Invalid(
                "target.kind is not a Kubernetes kind".into(),
            ));
        }
        action
            .params
            .check(action.action_type)
            .map_err(Rejection::Invalid)
    }
}

/// The idempotency keys already executed: a bounded set with FIFO eviction.
#[derive(Debug, Clone)]
pub struct Ledger {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Ledger {
    /// An empty ledger holding at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Ledger {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` was executed.
    pub fn contains(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `key`; the oldest key is evicted beyond capacity.
    pub fn insert(&mut self, key: &str) {
        if self.seen.insert(key.to_string()) {
            self.order.push_back(key.to_string());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Records a published result: keys that were attempted (`succeeded` or
    /// `failed`) count as executed. Use it to rebuild the ledger from
    /// `reflex.action-results` at start-up, oldest first.
    pub fn observe(&mut self, result: &ActionResult) {
        if matches!(
            result.status,
            ActionStatus::Succeeded | ActionStatus::Failed
        ) {
            self.insert(&result.idempotency_key);
        }
    }
}

/// Builds an `ActionResult` for `action`.
pub fn result(
    action: &RecoveryAction,
    status: ActionStatus,
    detail: impl Into<String>,
    finished_at: EventTime,
    executor: &str,
) -> ActionResult {
    ActionResult {
        action_id: action.action_id.clone(),
        idempotency_key: action.idempotency_key.clone(),
        status,
        detail: detail.into(),
        finished_at,
        executor: executor.to_string(),
    }
}

/// Gate + ledger + executor: one action in, one result out.
pub struct Runner<E, C> {
    pub gate: Gate,
    pub ledger: Ledger,
    pub executor: E,
    pub clock: C,
    /// Log and report without touching the target.
    pub dry_run: bool,
}

impl<E: Executor, C: Clock> Runner<E, C> {
    /// Processes one action and returns its result.
    pub async fn process(&mut self, action: &RecoveryAction) -> ActionResult {
        let name = self.executor.name().to_string();
        let now = self.clock.now();
        if action.decision == Decision::ApprovalRequired {
            if let Err(e) = self.gate.refresh_approvals() {
                tracing::warn!(error = %e, "cannot read approvals; keeping the previous set");
            }
        }
        if let Err(r) = self.gate.check(action, now) {
            if r == Rejection::DryRun {
                tracing::info!(action_id = %action.action_id, key = %action.idempotency_key, what = %self.executor.describe(action), "Dry-run action skipped.");
            } else {
                tracing::warn!(action_id = %action.action_id, key = %action.idempotency_key, reason = %r, "action rejected");
            }
            return result(action, r.status(), r.to_string(), now, &name);
        }
        if self.ledger.contains(&action.idempotency_key) {
            tracing::info!(action_id = %action.action_id, key = %action.idempotency_key, "duplicate key skipped");
            return result(
                action,
                ActionStatus::SkippedDuplicate,
                format!(
                    "idempotency key {} was already executed",
                    action.idempotency_key
                ),
                now,
                &name,
            );
        }
        if self.dry_run {
            let what = self.executor.describe(action);
            tracing::info!(action_id = %action.action_id, what = %what, "dry run");
            return result(
                action,
                ActionStatus::Succeeded,
                format!("dry run: would {what}"),
                now,
                &name,
            );
        }
        tracing::info!(action_id = %action.action_id, key = %action.idempotency_key, kind = action.action_type.as_str(), "executing");
        let res = self.executor.execute(action).await;
        self.ledger.observe(&res);
        tracing::info!(action_id = %action.action_id, status = ?res.status, detail = %res.detail, "executed");
        res
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{ActionParams, Target};

    pub(crate) fn action(key: &str) -> RecoveryAction {
        RecoveryAction {
            action_id: format!("act-{key}"),
            incident_id: "inc-1".into(),
            created_at: EventTime(1_000_000),
            action_type: ActionType::Restart,
            target: Target {
                service: "checkout".into(),
                namespace: Some("shop".into()),
                kind: "Deployment".into(),
                name: "checkout".into(),
            },
            params: ActionParams::default(),
            risk: 0.2,
            decision: Decision::Auto,
            idempotency_key: key.into(),
            reason: "test".into(),
            expires_at: EventTime(2_000_000),
            signature: None,
        }
    }

    fn gate(key: Option<&[u8]>) -> Gate {
        Gate {
            key: key.map(<[u8]>::to_vec),
            namespaces: vec!["shop".into()],
            types: vec![
                ActionType::Restart,
                ActionType::Scale,
                ActionType::DrainNode,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn gate_accepts_a_valid_signed_action() {
        let mut a = action("k1");
        a.signature = Some(crate::model::sign::sign(&a, b"secret"));
        assert_eq!(
            gate(Some(b"secret")).check(&a, EventTime(1_500_000)),
            Ok(())
        );
    }

    #[test]
    fn gate_rejects_unsigned_forged_and_tampered() {
        let g = gate(Some(b"secret"));
        let a = action("k1");
        assert_eq!(g.check(&a, EventTime(1_500_000)), Err(Rejection::Unsigned));
        let mut forged = a.clone();
        forged.signature = Some(crate::model::sign::sign(&a, b"other"));
        assert_eq!(
            g.check(&forged, EventTime(1_500_000)),
            Err(Rejection::BadSignature)
        );
        let mut tampered = a.clone();
        tampered.signature = Some(crate::model::sign::sign(&a, b"secret"));
        tampered.target.name = "payments".into();
        assert_eq!(
            g.check(&tampered, EventTime(1_500_000)),
            Err(Rejection::BadSignature)
        );
        // Without a key, unsigned actions pass.
        assert_eq!(gate(None).check(&a, EventTime(1_500_000)), Ok(()));
    }

    #[test]
    fn gate_expiry_is_in_event_time_and_exclusive() {
        let g = gate(None);
        let a = action("k1");
        assert!(g.check(&a, EventTime(1_999_999)).is_ok());
        assert!(matches!(
            g.check(&a, EventTime(2_000_000)),
            Err(Rejection::Expired { .. })
        ));
    }

    #[test]
    fn gate_decision_and_allow_lists() {
        let mut g = gate(None);
        let now = EventTime(1_500_000);
        let mut a = action("k1");
        a.decision = Decision::ApprovalRequired;
        assert_eq!(g.check(&a, now), Err(Rejection::NotApproved));
        g.approved.insert("k1".into());
        assert_eq!(g.check(&a, now), Ok(()));

        let mut b = action("k2");
        b.target.namespace = Some("kube-system".into());
        assert_eq!(
            g.check(&b, now),
            Err(Rejection::NamespaceNotAllowed("kube-system".into()))
        );
        let mut c = action("k3");
        c.action_type = ActionType::DeletePod;
        assert_eq!(
            g.check(&c, now),
            Err(Rejection::TypeNotAllowed("delete_pod"))
        );
        let mut d = action("k4");
        d.target.namespace = None;
        assert!(matches!(g.check(&d, now), Err(Rejection::Invalid(_))));
        g.namespaces = vec!["*".into()];
        assert_eq!(g.check(&b, now), Ok(()));
    }

    #[test]
    fn approvals_are_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approved");
        let mut g = gate(None);
        g.approvals_file = Some(path.clone());
        assert!(g.refresh_approvals().is_err());
        std::fs::write(&path, "# approved by alice\nk1\n  k2  # bob\n\n").unwrap();
        g.refresh_approvals().unwrap();
        assert!(g.approved.contains("k1") && g.approved.contains("k2"));
        assert_eq!(g.approved.len(), 2);
    }

    #[tokio::test]
    async fn runner_rereads_approvals_for_approval_required_actions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approved");
        std::fs::write(&path, "").unwrap();
        let mut r = runner(false);
        r.gate.approvals_file = Some(path.clone());
        let mut a = action("k9");
        a.decision = Decision::ApprovalRequired;
        assert_eq!(r.process(&a).await.status, ActionStatus::Rejected);
        std::fs::write(&path, "k9\n").unwrap();
        assert_eq!(r.process(&a).await.status, ActionStatus::Succeeded);
    }

    #[test]
    fn ledger_is_bounded_and_rebuilt_from_results() {
        let mut l = Ledger::new(2);
        l.insert("a");
        l.insert("b");
        l.insert("a");
        l.insert("c");
        assert!(!l.contains("a"));
        assert!(l.contains("b") && l.contains("c"));
        assert_eq!(l.len(), 2);

        let mut l = Ledger::new(10);
        let a = action("x");
        for (key, status) in [
            ("ok", ActionStatus::Succeeded),
            ("bad", ActionStatus::Failed),
            ("rej", ActionStatus::Rejected),
            ("dup", ActionStatus::SkippedDuplicate),
            ("dry", ActionStatus::SkippedDryRun),
        ] {
            let mut r = result(&a, status, "", EventTime(0), "t");
            r.idempotency_key = key.into();
            l.observe(&r);
        }
        assert!(l.contains("ok") && l.contains("bad"));
        assert!(!l.contains("rej") && !l.contains("dup") && !l.contains("dry"));
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    impl Executor for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        async fn execute(&self, action: &RecoveryAction) -> ActionResult {
            self.0.fetch_add(1, Ordering::SeqCst);
            result(
                action,
                ActionStatus::Succeeded,
                "done",
                EventTime(0),
                "counting",
            )
        }
    }

    fn runner(dry_run: bool) -> Runner<Counting, ManualClock> {
        Runner {
            gate: gate(None),
            ledger: Ledger::new(100),
            executor: Counting(Default::default()),
            clock: ManualClock::at(EventTime(1_500_000)),
            dry_run,
        }
    }

    #[tokio::test]
    async fn runner_executes_a_key_once() {
        let mut r = runner(false);
        let a = action("k1");
        assert_eq!(r.process(&a).await.status, ActionStatus::Succeeded);
        let second = r.process(&a).await;
        assert_eq!(second.status, ActionStatus::SkippedDuplicate);
        assert_eq!(r.executor.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn runner_dry_run_does_not_execute_or_record() {
        let mut r = runner(true);
        let a = action("k1");
        let res = r.process(&a).await;
        assert_eq!(res.status, ActionStatus::Succeeded);
        assert!(res
            .detail
            .starts_with("dry run: would restart shop/Deployment checkout"));
        assert_eq!(r.executor.0.load(Ordering::SeqCst), 0);
        assert!(r.ledger.is_empty());
    }

    #[test]
    fn gate_refuses_a_dry_run_as_a_skip_after_the_signature() {
        let g = gate(Some(b"secret"));
        let now = EventTime(1_500_000);
        let mut a = action("k1");
        a.decision = Decision::DryRun;
        a.signature = Some(crate::model::sign::sign(&a, b"secret"));
        assert_eq!(g.check(&a, now), Err(Rejection::DryRun));
        assert_eq!(Rejection::DryRun.status(), ActionStatus::SkippedDryRun);
        // Expired, approved or not, allowed or not: still a dry run.
        assert_eq!(g.check(&a, EventTime(3_000_000)), Err(Rejection::DryRun));
        let mut open = gate(None);
        open.approved.insert("k1".into());
        open.namespaces = vec!["*".into()];
        assert_eq!(open.check(&a, now), Err(Rejection::DryRun));
        // The decision is signed: turning a dry run into `auto` (or back)
        // breaks the signature.
        let mut promoted = a.clone();
        promoted.decision = Decision::Auto;
        assert_eq!(g.check(&promoted, now), Err(Rejection::BadSignature));
        // A forged dry run is reported as forged, not as a dry run.
        let mut forged = a.clone();
        forged.signature = Some(crate::model::sign::sign(&a, b"other"));
        assert_eq!(g.check(&forged, now), Err(Rejection::BadSignature));
    }

    #[tokio::test]
    async fn runner_skips_a_dry_run_without_executing_or_recording() {
        for cli_dry_run in [false, true] {
            let mut r = runner(cli_dry_run);
            let mut a = action("k1");
            a.decision = Decision::DryRun;
            let res = r.process(&a).await;
            assert_eq!(res.status, ActionStatus::SkippedDryRun);
            assert!(res.detail.starts_with("dry run"), "{}", res.detail);
            assert_eq!(r.executor.0.load(Ordering::SeqCst), 0);
            assert!(r.ledger.is_empty(), "a dry run is not a done key");
            // The same key as `auto` later (a real run) is still carried
            // out (or, under the CLI's `--dry-run`, only described).
            a.decision = Decision::Auto;
            assert_eq!(r.process(&a).await.status, ActionStatus::Succeeded);
            assert_eq!(
                r.executor.0.load(Ordering::SeqCst),
                usize::from(!cli_dry_run)
            );
        }
    }

    #[tokio::test]
    async fn runner_rejects_before_the_ledger() {
        let mut r = runner(false);
        r.clock.set(EventTime(3_000_000));
        let res = r.process(&action("k1")).await;
        assert_eq!(res.status, ActionStatus::Rejected);
        assert!(res.detail.starts_with("expired"), "{}", res.detail);
        assert_eq!(r.executor.0.load(Ordering::SeqCst), 0);
    }
}
