//! Configuration of the streaming template miner.

use serde::{Deserialize, Serialize};

/// Settings of [`super::miner::TemplateMiner`]. One default serves every kind
/// of log; nothing here is meant to be tuned per data set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Minimum share of token positions (0..=1) a message must have in common
    /// with a template (equal constant tokens or `<*>` positions) to join it.
    pub similarity_threshold: f64,
    /// Maximum number of templates kept in memory. When a new template would
    /// exceed the cap, the least recently seen templates are evicted first.
    pub max_templates: usize,
    /// Messages longer than this many tokens are truncated (the tail is kept
    /// as a single `<*>`), which bounds the size of one template.
    pub max_tokens: usize,
    /// Tokens longer than this many bytes are treated as variables (`<*>`).
    pub max_token_len: usize,
    /// Collapse runs of adjacent `<*>` tokens into one `<*>`, so that a
    /// variable spanning a varying number of words (dates, sizes) still maps
    /// to one template.
    pub collapse_wildcards: bool,
    /// A position becomes a variable once this many templates differ from
    /// each other only by the constant at that position.
    pub min_distinct_for_variable: usize,
    /// The same, for the value of a `key=value` token (values are more
    /// often variables than free words are).
    pub min_distinct_for_key_value: usize,
    /// The same, for the first token of a message, which is rarely a free
    /// variable (it names the event, component or command).
    pub min_distinct_for_first_token: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.5,
            max_templates: 10_000,
            max_tokens: 256,
            max_token_len: 512,
            collapse_wildcards: true,
            min_distinct_for_variable: 5,
            min_distinct_for_key_value: 3,
            min_distinct_for_first_token: 10,
        }
    }
}
