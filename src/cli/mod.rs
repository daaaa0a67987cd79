//! The subcommands behind the `reflex` binary (SPEC §4), one file per
//! subcommand or group; `main.rs` only parses arguments, dispatches here
//! and maps the returned [`CliError`]'s kind to the exit code.
//!
//! Guarantees: every function returns `Ok(())` for exit 0 or a
//! [`CliError`] whose [`Kind`] decides the exit code (usage/config 2,
//! otherwise 1) and whose message names the problem; configuration errors
//! carry every problem at once with file and key.

pub mod demo;
pub mod executor;
pub mod report;
pub mod run;
pub mod telemetry;
pub mod tools;
pub mod topics;

pub use crate::error::{CliError, Kind};

use crate::config::Config;
use std::path::Path;

/// The configuration (default: the embedded one); problems are usage errors.
pub fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Config::load(path).map_err(|e| CliError::usage_report(e.to_string()))
}
