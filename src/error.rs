//! The error a command returns to `main`: a [`Kind`] to branch on (the exit
//! code is chosen from it, in one place) and the message to show.
//!
//! Guarantees: the message is complete as printed after `reflex: ` (a
//! context followed by its causes, `a: b: c`); multi-line reports such as
//! every configuration problem at once are printed as they are. An empty
//! message means the command already reported the problem itself.

use std::fmt::Write;

/// What went wrong, for the exit code (SPEC §4: 2 bad usage/config, 1
/// runtime failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad arguments, configuration or input files: the user must fix them.
    Usage,
    /// A broker, cluster or other system outside reflex failed; running
    /// again later may work.
    External,
    /// reflex itself failed (I/O on its own outputs, a bug).
    Internal,
}

/// A command's failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    kind: Kind,
    message: String,
    /// The message is a whole report, line breaks included (printed as is).
    report: bool,
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            report: false,
        }
    }

    /// A usage error whose message is a whole report ending in its own
    /// line break (every configuration problem with file and key).
    pub fn usage_report(report: impl Into<String>) -> Self {
        CliError {
            report: true,
            ..Self::usage(report)
        }
    }

    /// Bad usage or configuration; `message` names the problem.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    /// A failure already reported to the user (only the exit code is left).
    pub fn reported(kind: Kind) -> Self {
        Self::new(kind, String::new())
    }

    /// `context: error: its causes…` of kind `kind`.
    pub fn with_context(
        kind: Kind,
        context: impl std::fmt::Display,
        e: &(dyn std::error::Error + 'static),
    ) -> Self {
        Self::new(kind, format!("{context}: {}", chain(e)))
    }

    /// The error and its causes, `a: b: c`, of kind `kind`.
    pub fn from_error(kind: Kind, e: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(kind, chain(e))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prints the message on stderr as `reflex: …` (nothing when already
    /// reported).
    pub fn eprint(&self) {
        if self.message.is_empty() {
            return;
        }
        if self.report {
            eprint!("reflex: {}", self.message);
        } else {
            eprintln!("reflex: {}", self.message);
        }
    }
}

/// An error and its sources joined by `: ` (as `anyhow`'s `{:#}` shows
/// them, so messages read as they always have).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let _ = write!(out, ": {s}");
        cur = s.source();
    }
    out
}

/// I/O on reflex's own outputs (stdout, files it writes) is an internal failure.
impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::from_error(Kind::Internal, &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_lists_every_cause() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "outer: disk full");
        let c = CliError::with_context(Kind::Internal, "writing out", &e);
        assert_eq!(c.message(), "writing out: outer: disk full");
        assert_eq!(c.kind(), Kind::Internal);
        assert!(CliError::reported(Kind::External).message().is_empty());
    }
}
