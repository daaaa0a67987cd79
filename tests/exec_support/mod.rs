//! Helpers for the executor integration tests (fake Kubernetes API, broker access).

pub mod fake_kube;

use fake_kube::FakeKube;
use reflex::executors::kube::{KubeExecutor, KubeSettings, Selector};
use reflex::executors::runbook::Runbooks;
use reflex::executors::{Gate, Ledger, ManualClock, Runner};
use reflex::model::ActionType;
use std::sync::Arc;
use std::time::Duration;

/// A kube executor against `f` for the broker end-to-end tests: namespace
/// `shop`, workloads labelled `reflex.io/managed=true`, restart / scale /
/// rollback allowed, signatures required when `key` is set, short timeouts.
#[allow(dead_code)]
pub fn kube_runner(
    f: &FakeKube,
    clock: Arc<ManualClock>,
    key: Option<&[u8]>,
) -> Runner<KubeExecutor, Arc<ManualClock>> {
    let settings = KubeSettings {
        name: "kube-e2e".into(),
        workload_selector: Selector::parse("reflex.io/managed=true").expect("selector"),
        node_selector: Selector::default(),
        api_timeout: Duration::from_secs(5),
        rollout_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
    };
    Runner {
        gate: Gate {
            key: key.map(<[u8]>::to_vec),
            namespaces: vec!["shop".into()],
            types: vec![ActionType::Restart, ActionType::Scale, ActionType::Rollback],
            ..Default::default()
        },
        ledger: Ledger::new(1000),
        executor: KubeExecutor::new(f.client(), settings, clock.clone(), Runbooks::default()),
        clock,
        dry_run: false,
    }
}
