//! The action types of SPEC §3 and the typed parameters of a recovery
//! action (`params` of SPEC §2), with the pure check an executor's gate
//! runs on them before anything is done.
//!
//! Everything that changes what an executor does is a typed field here
//! (replica count, rollback revision and direction, pod, node, drain
//! options, runbook), so it is covered by the action's signature and
//! validated in one place; nothing safety-relevant is read from the
//! free-form `args` map, which only carries a runbook's declared arguments.
//!
//! Guarantees: [`ActionParams::check`] accepts only the parameters the
//! action type uses, each well-formed (Kubernetes object names per RFC 1123,
//! a positive revision number, replicas within [`MAX_REPLICAS`]); a
//! parameter this version does not know is kept on decode (in
//! [`ActionParams::unknown`], never serialised) so the gate refuses the
//! action with its name rather than silently ignoring it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Recovery action types (SPEC §3). New types may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    Restart,
    DeletePod,
    Scale,
    Rollback,
    DrainNode,
    RunRunbook,
}

impl ActionType {
    /// Every action type.
    pub const ALL: [ActionType; 6] = [
        ActionType::Restart,
        ActionType::DeletePod,
        ActionType::Scale,
        ActionType::Rollback,
        ActionType::DrainNode,
        ActionType::RunRunbook,
    ];

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Restart => "restart",
            ActionType::DeletePod => "delete_pod",
            ActionType::Scale => "scale",
            ActionType::Rollback => "rollback",
            ActionType::DrainNode => "drain_node",
            ActionType::RunRunbook => "run_runbook",
        }
    }
}

/// The largest replica count an action may ask for.
pub const MAX_REPLICAS: i64 = 10_000;

/// The longest grace period a drain may give a pod, in seconds (one hour).
pub const MAX_GRACE_PERIOD_SECONDS: i64 = 3_600;

/// Which way a `rollback` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackDirection {
    /// To the revision before the current one (or `to_revision`): the
    /// remedy of a bad deploy. The default when absent.
    Back,
    /// Undoing reflex's own rollback: back to the revision that was current
    /// before it. On Kubernetes this is also "the revision before the
    /// current one" (a rollback makes the restored revision the newest), so
    /// executors act the same way; it is typed so that verification and
    /// the simulator know the action restores the suspect version.
    Forward,
}

/// How a `drain_node` evicts pods (kubectl drain's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainOptions {
    /// Seconds each evicted pod gets to terminate (absent = the pod's own
    /// `terminationGracePeriodSeconds`); 0..=[`MAX_GRACE_PERIOD_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    /// Evict pods that use `emptyDir` volumes (their data is lost). Without
    /// it such a pod makes the drain refuse before the node is cordoned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_emptydir_data: bool,
}

/// Typed action parameters; only the ones an action type uses are set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "RawParams")]
pub struct ActionParams {
    /// `scale`: the desired replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// `rollback`: the revision to return to (absent = the previous one);
    /// a positive integer, as in `kubectl rollout undo --to-revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<String>,
    /// `rollback`: back (default) or forward (undoing reflex's rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<RollbackDirection>,
    /// `delete_pod`: the pod (absent = `target.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `drain_node`: the node (absent = `target.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `drain_node`: eviction options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainOptions>,
    /// `run_runbook`: the allow-listed runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// `run_runbook`: the runbook's declared arguments (validated by the
    /// runbook executor against the runbook's declaration).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Parameter names on the wire that this version does not know; never
    /// serialised (so not signed), always refused by [`ActionParams::check`].
    #[serde(skip)]
    pub unknown: Vec<String>,
}

/// The wire form: the typed fields plus whatever else was there.
#[derive(Deserialize)]
struct RawParams {
    #[serde(default)]
    replicas: Option<i64>,
    #[serde(default)]
    to_revision: Option<String>,
    #[serde(default)]
    direction: Option<RollbackDirection>,
    #[serde(default)]
    pod: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    drain: Option<DrainOptions>,
    #[serde(default)]
    runbook: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

impl From<RawParams> for ActionParams {
    fn from(r: RawParams) -> Self {
        ActionParams {
            replicas: r.replicas,
            to_revision: r.to_revision,
            direction: r.direction,
            pod: r.pod,
            node: r.node,
            drain: r.drain,
            runbook: r.runbook,
            args: r.args,
            unknown: r.unknown.into_keys().collect(),
        }
    }
}

/// Which parameters an action type takes.
fn allowed(t: ActionType) -> &'static [&'static str] {
    match t {
        ActionType::Restart => &[],
        ActionType::DeletePod => &["pod"],
        ActionType::Scale => &["replicas"],
        ActionType::Rollback => &["to_revision", "direction"],
        ActionType::DrainNode => &["node", "drain"],
        ActionType::RunRunbook => &["runbook", "args"],
    }
}

impl ActionParams {
    /// The names of the parameters that are set.
    fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("replicas", self.replicas.is_some()),
            ("to_revision", self.to_revision.is_some()),
            ("direction", self.direction.is_some()),
            ("pod", self.pod.is_some()),
            ("node", self.node.is_some()),
            ("drain", self.drain.is_some()),
            ("runbook", self.runbook.is_some()),
            ("args", !self.args.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
    }

    /// Whether these parameters are well-formed for an action of type `t`;
    /// the error names the parameter and what is wrong with it.
    pub fn check(&self, t: ActionType) -> Result<(), String> {
        if let Some(name) = self.unknown.first() {
            return Err(format!("params.{name} is not a known parameter"));
        }
        let allowed = allowed(t);
        if let Some(name) = self.present().find(|p| !allowed.contains(p)) {
            if name == "args" && self.args.contains_key("dry_run") {
                return Err(
                    "params.args.dry_run is not honoured: a dry run is the decision dry_run".into(),
                );
            }
            return Err(format!(
                "params.{name} is not a parameter of {}",
                t.as_str()
            ));
        }
        match t {
            ActionType::Scale => match self.replicas {
                None => return Err("params.replicas is required for scale".into()),
                Some(r) if !(0..=MAX_REPLICAS).contains(&r) => {
                    return Err(format!("params.replicas {r} is outside 0..={MAX_REPLICAS}"))
                }
                Some(_) => {}
            },
            ActionType::Rollback => {
                if let Some(rev) = &self.to_revision {
                    if !is_revision(rev) {
                        return Err(format!(
                            "params.to_revision {:?} is not a positive revision number",
                            shorten(rev)
                        ));
                    }
                    if self.direction == Some(RollbackDirection::Forward) {
                        return Err(
                            "params.to_revision and params.direction=forward contradict each other"
                                .into(),
                        );
                    }
                }
            }
            ActionType::DeletePod => check_name("params.pod", self.pod.as_deref())?,
            ActionType::DrainNode => {
                check_name("params.node", self.node.as_deref())?;
                if let Some(g) = self.drain.and_then(|d| d.grace_period_seconds) {
                    if !(0..=MAX_GRACE_PERIOD_SECONDS).contains(&g) {
                        return Err(format!(
                            "params.drain.grace_period_seconds {g} is outside 0..={MAX_GRACE_PERIOD_SECONDS}"
                        ));
                    }
                }
            }
            ActionType::RunRunbook => match self.runbook.as_deref() {
                None | Some("") => return Err("params.runbook is required for run_runbook".into()),
                Some(r) if !is_dns_subdomain(r) && !is_identifier(r) => {
                    return Err(format!(
                        "params.runbook {:?} is not a runbook name",
                        shorten(r)
                    ))
                }
                Some(_) => {}
            },
            ActionType::Restart => {}
        }
        Ok(())
    }
}

fn check_name(what: &str, name: Option<&str>) -> Result<(), String> {
    match name {
        Some(n) if !is_dns_subdomain(n) => Err(format!(
            "{what} {:?} is not a Kubernetes object name (RFC 1123)",
            shorten(n)
        )),
        _ => Ok(()),
    }
}

/// A positive decimal integer without sign or leading zero.
fn is_revision(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// An RFC 1123 DNS subdomain: the names of pods, nodes and Deployments.
/// At most 253 characters, dot-separated labels of lowercase letters,
/// digits and `-`, each starting and ending with a letter or digit. This
/// rules out paths (`/`, `..`), selectors (`=`, `,`, `!`), whitespace and
/// URL syntax in anything an executor puts into an API path.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An RFC 1123 DNS label: the names of namespaces. At most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A runbook name in the catalog's style (`restart_cache`): letters,
/// digits, `_` and `-`, at most 63 characters.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A value cut for an error message, so a huge parameter cannot blow up
/// the result record.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_parameters_are_kept_for_the_gate_and_not_serialised() {
        let p: ActionParams =
            serde_json::from_str(r#"{"replicas":3,"force":true,"grace":"0"}"#).unwrap();
        assert_eq!(p.replicas, Some(3));
        assert_eq!(p.unknown, vec!["force".to_string(), "grace".to_string()]);
        assert_eq!(
            p.check(ActionType::Scale).unwrap_err(),
            "params.force is not a known parameter"
        );
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"replicas":3}"#);
    }

    #[test]
    fn old_params_without_the_typed_fields_decode() {
        let p: ActionParams = serde_json::from_str(r#"{"replicas":2}"#).unwrap();
        assert_eq!(p.direction, None);
        assert_eq!(p.drain, None);
        assert!(p.check(ActionType::Scale).is_ok());
        let p: ActionParams = serde_json::from_str("{}").unwrap();
        assert_eq!(p, ActionParams::default());
    }

    #[test]
    fn each_type_takes_only_its_parameters() {
        let p = ActionParams {
            replicas: Some(2),
            ..Default::default()
        };
        assert_eq!(
            p.check(ActionType::Restart).unwrap_err(),
            "params.replicas is not a parameter of restart"
        );
        let p = ActionParams {
            direction: Some(RollbackDirection::Forward),
            ..Default::default()
        };
        assert!(p.check(ActionType::Rollback).is_ok());
        assert!(p.check(ActionType::Scale).is_err());
        let mut p = ActionParams::default();
        p.args.insert("dry_run".into(), "true".into());
        assert!(p
            .check(ActionType::Restart)
            .unwrap_err()
            .contains("decision dry_run"));
    }

    #[test]
    fn malformed_values_are_refused_with_the_parameter_named() {
        let scale = |r| ActionParams {
            replicas: Some(r),
            ..Default::default()
        };
        assert!(scale(0).check(ActionType::Scale).is_ok());
        assert!(scale(MAX_REPLICAS).check(ActionType::Scale).is_ok());
        assert!(scale(-1).check(ActionType::Scale).is_err());
        assert!(scale(MAX_REPLICAS + 1).check(ActionType::Scale).is_err());
        assert!(ActionParams::default().check(ActionType::Scale).is_err());
        for rev in ["0", "-1", "01", "3a", "", "1 OR 1", "../2"] {
            let p = ActionParams {
                to_revision: Some(rev.into()),
                ..Default::default()
            };
            assert!(p.check(ActionType::Rollback).is_err(), "{rev:?}");
        }
        let p = ActionParams {
            to_revision: Some("7".into()),
            direction: Some(RollbackDirection::Forward),
            ..Default::default()
        };
        assert!(p.check(ActionType::Rollback).is_err());
        let p = ActionParams {
            drain: Some(DrainOptions {
                grace_period_seconds: Some(MAX_GRACE_PERIOD_SECONDS + 1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(p
            .check(ActionType::DrainNode)
            .unwrap_err()
            .contains("grace_period_seconds"));
    }

    #[test]
    fn names_with_paths_or_selectors_are_not_object_names() {
        for bad in [
            "../kube-system/pods/x",
            "a/b",
            "app=web",
            "web,db",
            "Web",
            "web ",
            "-web",
            "web-",
            "web..db",
            "%2e%2e",
            "web?watch=true",
            "",
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
        for good in ["web", "web-1", "ip-10-0-0-1.ec2.internal", "a"] {
            assert!(is_dns_subdomain(good), "{good:?}");
        }
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain(
            &["a".repeat(63), "b".repeat(63)].join(".")
        ));
    }

    proptest! {
        #[test]
        fn a_valid_name_never_contains_path_or_selector_syntax(s in "\\PC{0,40}") {
            if is_dns_subdomain(&s) {
                prop_assert!(!s.contains(['/', '=', ',', '!', ' ', '?', '%', '&', '#']));
                prop_assert!(!s.contains(".."));
            }
        }

        #[test]
        fn the_check_never_panics(
            replicas in proptest::option::of(any::<i64>()),
            rev in proptest::option::of("\\PC{0,30}"),
            pod in proptest::option::of("\\PC{0,30}"),
            grace in proptest::option::of(any::<i64>()),
        ) {
            let p = ActionParams {
                replicas,
                to_revision: rev,
                pod,
                drain: grace.map(|g| DrainOptions { grace_period_seconds: Some(g), ..Default::default() }),
                ..Default::default()
            };
            for t in ActionType::ALL {
                let _ = p.check(t);
            }
        }
    }
}
