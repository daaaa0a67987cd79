//! `run_runbook` actions: only runbooks named in the executor's config, with
//! typed, validated parameters, run without a shell.
//!
//! Guarantees:
//! - the program is the configured absolute path; the argument vector is the
//!   configured template with each `{param}` replaced *inside one element*,
//!   so a value can never add, split or remove arguments, and no shell ever
//!   sees it;
//! - every parameter is typed (`int` with bounds, `enum`, `string` with a
//!   full-match regex); an unknown, missing or invalid parameter rejects the
//!   action before anything runs; string/enum values may not start with `-`
//!   unless the regex explicitly allows it (no option injection);
//! - the process runs with a cleared environment (plus the configured
//!   `env`), stdin closed, a timeout (killed when exceeded), and its exit
//!   status and the tail of stdout/stderr go into the `ActionResult`.

use crate::model::{DurationMs, RecoveryAction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

/// Bytes of stdout/stderr kept (each, the tail) in the result detail.
pub const OUTPUT_TAIL: usize = 2048;

/// One allow-listed runbook (`[[executor.runbooks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookConfig {
    /// The name actions use in `params.runbook`.
    pub name: String,
    /// Absolute path of the program (no `PATH` lookup, no shell).
    pub command: String,
    /// Argument template: literal strings with `{param}` placeholders. The
    /// target's `{service}`, `{namespace}` and `{name}` are always available.
    #[serde(default)]
    pub args: Vec<String>,
    /// Declared parameters (the action's `params.args`).
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Kill the process after this long.
    #[serde(default = "default_timeout")]
    pub timeout: DurationMs,
    /// Environment of the process (it starts empty).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> DurationMs {
    DurationMs(60_000)
}

/// A parameter's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ParamSpec {
    /// An integer within `[min, max]`.
    Int {
        #[serde(default)]
        min: Option<i64>,
        #[serde(default)]
        max: Option<i64>,
    },
    /// One of a fixed set of strings.
    Enum { values: Vec<String> },
    /// A string fully matching `pattern`.
    String { pattern: String },
}

/// The pattern target fields (service, namespace, name) must match.
const TARGET_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

impl ParamSpec {
    /// Checks one value; `Err` says why it is refused.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        match self {
            ParamSpec::Int { min, max } => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an integer"))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(format!("{n} is outside [{min:?}, {max:?}]"));
                }
                Ok(())
            }
            ParamSpec::Enum { values } => {
                if value.starts_with('-') {
                    return Err(format!("{value:?} starts with '-'"));
                }
                if values.iter().any(|v| v == value) {
                    Ok(())
                } else {
                    Err(format!("{value:?} is not one of {values:?}"))
                }
            }
            ParamSpec::String { pattern } => {
                let re = anchored(pattern).map_err(|e| format!("bad pattern: {e}"))?;
                if value.starts_with('-') && !pattern.trim_start_matches('^').starts_with('-') {
                    return Err(format!("{value:?} starts with '-'"));
                }
                if re.is_match(value) {
                    Ok(())
                } else {
                    Err(format!("{value:?} does not match {pattern:?}"))
                }
            }
        }
    }
}

fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!(
        "^(?:{})$",
        pattern.trim_start_matches('^').trim_end_matches('$')
    ))
}

/// Splits a template element into literal and `{param}` parts.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

const BUILTINS: [&str; 3] = ["service", "namespace", "name"];

impl RunbookConfig {
    /// Semantic checks of the runbook definition: `(key, message)`.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !std::path::Path::new(&self.command).is_absolute() {
            out.push(("command".into(), "must be an absolute path".into()));
        }
        if self.timeout.0 <= 0 {
            out.push(("timeout".into(), "must be positive".into()));
        }
        for (i, a) in self.args.iter().enumerate() {
            for p in placeholders(a) {
                if !self.params.contains_key(p) && !BUILTINS.contains(&p) {
                    out.push((
                        format!("args[{i}]"),
                        format!("placeholder {{{p}}} names no declared parameter"),
                    ));
                }
            }
        }
        for (name, spec) in &self.params {
            if BUILTINS.contains(&name.as_str()) {
                out.push((
                    format!("params.{name}"),
                    "reserved: filled from the action's target".into(),
                ));
            }
            if let ParamSpec::String { pattern } = spec {
                if let Err(e) = anchored(pattern) {
                    out.push((format!("params.{name}.pattern"), e.to_string()));
                }
            }
        }
        out
    }

    /// The argument vector for `action`, or why the action is refused.
    pub fn argv(&self, action: &RecoveryAction) -> Result<Vec<String>, String> {
        let target_re = anchored(TARGET_PATTERN).map_err(|e| e.to_string())?;
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in [
            ("service", action.target.service.as_str()),
            (
                "namespace",
                action.target.namespace.as_deref().unwrap_or(""),
            ),
            ("name", action.target.name.as_str()),
        ] {
            if !v.is_empty() && !target_re.is_match(v) {
                return Err(format!("target {k} {v:?} is not a valid name"));
            }
            values.insert(k, v);
        }
        for (k, v) in &action.params.args {
            let spec = self
                .params
                .get(k)
                .ok_or_else(|| format!("unknown parameter {k:?}"))?;
            spec.validate(v)
                .map_err(|e| format!("parameter {k}: {e}"))?;
            values.insert(k.as_str(), v.as_str());
        }
        for k in self.params.keys() {
            if !action.params.args.contains_key(k) {
                return Err(format!("missing parameter {k:?}"));
            }
        }
        let mut argv = Vec::with_capacity(self.args.len());
        for template in &self.args {
            let mut arg = String::new();
            let mut rest = template.as_str();
            while let Some(start) = rest.find('{') {
                let Some(len) = rest[start..].find('}') else {
                    break;
                };
                arg.push_str(&rest[..start]);
                let key = &rest[start + 1..start + len];
                let v = values
                    .get(key)
                    .ok_or_else(|| format!("placeholder {{{key}}} has no value"))?;
                arg.push_str(v);
                rest = &rest[start + len + 1..];
            }
            arg.push_str(rest);
            argv.push(arg);
        }
        Ok(argv)
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// Exit code (`None` when killed by a signal or the timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Whether the runbook succeeded (exit 0 within the timeout).
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// One detail line for the ActionResult.
    pub fn detail(&self, name: &str) -> String {
        let how = if self.timed_out {
            "timed out".to_string()
        } else {
            match self.code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".to_string(),
            }
        };
        format!(
            "runbook {name}: {how}; stdout: {:?}; stderr: {:?}",
            self.stdout, self.stderr
        )
    }
}

/// Why a runbook did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("runbook {0:?} is not allow-listed")]
    NotAllowed(String),
    #[error("run_runbook action has no params.runbook")]
    NoName,
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("cannot start {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

impl RunbookError {
    /// Whether the action should be `rejected` (the input is at fault) rather than `failed`.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, RunbookError::Spawn { .. })
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The allow-listed runbooks.
#[derive(Debug, Clone, Default)]
pub struct Runbooks {
    pub books: Vec<RunbookConfig>,
}

impl Runbooks {
    /// Resolves, validates and runs the runbook an action names.
    pub async fn run(&self, action: &RecoveryAction) -> Result<(String, RunOutput), RunbookError> {
        let name = action
            .params
            .runbook
            .as_deref()
            .ok_or(RunbookError::NoName)?;
        let book = self
            .books
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| RunbookError::NotAllowed(name.to_string()))?;
        let argv = book.argv(action).map_err(RunbookError::InvalidArgs)?;
        tracing::info!(runbook = name, command = %book.command, ?argv, "running runbook");
        let mut cmd = tokio::process::Command::new(&book.command);
        cmd.args(&argv)
            .env_clear()
            .envs(&book.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| RunbookError::Spawn {
            command: book.command.clone(),
            source,
        })?;
        let limit = Duration::from_millis(book.timeout.0.max(1) as u64);
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(o)) => RunOutput {
                code: o.status.code(),
                timed_out: false,
                stdout: tail(&o.stdout),
                stderr: tail(&o.stderr),
            },
            Ok(Err(e)) => RunOutput {
                code: None,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("waiting for the process failed: {e}"),
            },
            // Dropping the future drops the child: kill_on_drop kills it.
            Err(_) => RunOutput {
                code: None,
                timed_out: true,
                stdout: String::new(),
                stderr: String::new(),
            },
        };
        Ok((name.to_string(), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executors::tests::action;
    use crate::model::ActionType;

    fn echo_book() -> RunbookConfig {
        let mut params = BTreeMap::new();
        params.insert(
            "mode".to_string(),
            ParamSpec::Enum {
                values: vec!["soft".into(), "hard".into()],
            },
        );
        params.insert(
            "ttl".to_string(),
            ParamSpec::Int {
                min: Some(1),
                max: Some(3600),
            },
        );
        params.insert(
            "note".to_string(),
            ParamSpec::String {
                pattern: ".*".into(),
            },
        );
        RunbookConfig {
            name: "echo".into(),
            command: "/bin/echo".into(),
            args: vec![
                "--service".into(),
                "{service}".into(),
                "--mode={mode}".into(),
                "{ttl}".into(),
                "{note}".into(),
            ],
            params,
            timeout: DurationMs(5_000),
            env: BTreeMap::new(),
        }
    }

    fn rb_action(args: &[(&str, &str)]) -> RecoveryAction {
        let mut a = action("rb");
        a.action_type = ActionType::RunRunbook;
        a.params.runbook = Some("echo".into());
        for (k, v) in args {
            a.params.args.insert((*k).into(), (*v).into());
        }
        a
    }

    #[test]
    fn definition_checks() {
        let mut b = echo_book();
        assert!(b.check().is_empty(), "{:?}", b.check());
        b.command = "echo".into();
        b.args.push("{nope}".into());
        let keys: Vec<String> = b.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["command", "args[5]"]);
    }

    #[test]
    fn values_cannot_inject_arguments() {
        let b = echo_book();
        // A shell metacharacter value stays one literal argument.
        let argv = b
            .argv(&rb_action(&[
                ("mode", "soft"),
                ("ttl", "5"),
                ("note", "x; rm -rf /"),
            ]))
            .unwrap();
        assert_eq!(
            argv,
            ["--service", "checkout", "--mode=soft", "5", "x; rm -rf /"]
        );
        // Option-looking values are refused.
        let e = b
            .argv(&rb_action(&[
                ("mode", "soft"),
                ("ttl", "5"),
                ("note", "--force"),
            ]))
            .unwrap_err();
        assert!(e.contains("starts with '-'"), "{e}");
        // Typed checks.
        for bad in [
            [("mode", "soft --force"), ("ttl", "5"), ("note", "a")],
            [("mode", "soft"), ("ttl", "5 6"), ("note", "a")],
            [("mode", "soft"), ("ttl", "99999"), ("note", "a")],
            [("mode", "soft"), ("ttl", "-1"), ("note", "a")],
        ] {
            assert!(b.argv(&rb_action(&bad)).is_err(), "{bad:?}");
        }
        // Unknown and missing parameters.
        assert!(b
            .argv(&rb_action(&[
                ("mode", "soft"),
                ("ttl", "5"),
                ("note", "a"),
                ("extra", "1")
            ]))
            .unwrap_err()
            .contains("unknown parameter"));
        assert!(b
            .argv(&rb_action(&[("mode", "soft"), ("ttl", "5")]))
            .unwrap_err()
            .contains("missing parameter"));
        // Target fields are validated too.
        let mut a = rb_action(&[("mode", "soft"), ("ttl", "5"), ("note", "a")]);
        a.target.service = "x;id".into();
        assert!(b.argv(&a).is_err());
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_captures_output() {
        let books = Runbooks {
            books: vec![echo_book()],
        };
        let a = rb_action(&[
            ("mode", "hard"),
            ("ttl", "7"),
            ("note", "$(id) `id` ; | &&"),
        ]);
        let (name, out) = books.run(&a).await.unwrap();
        assert_eq!(name, "echo");
        assert!(out.success());
        assert_eq!(
            out.stdout,
            "--service checkout --mode=hard 7 $(id) `id` ; | &&\n"
        );
        let mut other = a.clone();
        other.params.runbook = Some("rm".into());
        assert!(matches!(
            books.run(&other).await,
            Err(RunbookError::NotAllowed(_))
        ));
    }

    #[tokio::test]
    async fn a_slow_runbook_times_out() {
        let book = RunbookConfig {
            name: "echo".into(),
            command: "/bin/sleep".into(),
            args: vec!["30".into()],
            params: BTreeMap::new(),
            timeout: DurationMs(100),
            env: BTreeMap::new(),
        };
        let books = Runbooks { books: vec![book] };
        let (_, out) = books.run(&rb_action(&[])).await.unwrap();
        assert!(out.timed_out && !out.success());
    }
}
