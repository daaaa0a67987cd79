//! The signature rule file (`topology/rules/signatures.yaml`): regular
//! expressions over an event's text fields, each voting for a category.

use crate::model::{About, Category};
use serde::{Deserialize, Serialize};

/// One signature rule. It matches an event when any of its matchers matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRule {
    /// Unique name, quoted in evidence.
    pub name: String,
    /// The category this signature votes for.
    pub category: Category,
    /// Strength of the vote in (0, 1].
    pub weight: f64,
    /// Whose failure the signature describes.
    #[serde(default)]
    pub about: About,
    /// Whose failure the signature describes on an event that names the
    /// upstream it called (`upstream` set); defaults to `about`. A 429 a
    /// caller got back describes the upstream's overload; a 429 a service
    /// logs as it sheds its own load describes the service.
    #[serde(default)]
    pub calling: Option<About>,
    /// Regex over `message` and `stack_trace` (use `(?i)` for case-insensitive).
    #[serde(default)]
    pub message: Option<String>,
    /// Regex over `error_type`.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Exact HTTP statuses.
    #[serde(default)]
    pub http_status: Vec<i32>,
    /// Exact process exit codes, read from `attributes.exit_code` (e.g. 137 = SIGKILL, usually the OOM killer).
    #[serde(default)]
    pub exit_code: Vec<i32>,
}
