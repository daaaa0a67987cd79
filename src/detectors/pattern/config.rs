//! Configuration of the streaming template miner.

use serde::{Deserialize, Serialize};

/// Settings of [`super::miner::TemplateMiner`]. One default serves every kind
/// of log; nothing here is meant to be tuned per data set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Maximum number of templates kept in memory (at least 1). When a new
    /// template would exceed the cap, the least recently seen 1/16 of the
    /// templates are evicted. Also bounds the alias table (2×) and the
    /// lookup cache (4×).
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
    /// A position becomes a variable once this many templates (counting
    /// the new message) differ from each other only by the constant word at
    /// that position. Fewer distinct words stay separate templates
    /// (`VM Started` / `VM Paused`). At least 2.
    pub min_distinct_for_variable: usize,
    /// The same, for values: the value of `key=value` tokens (up to three
    /// such values may differ at once) and the word after a noun that
    /// introduces a value (`user alice`, `host db`, `file x`). At least 2.
    pub min_distinct_for_key_value: usize,
    /// The same, for the first token of a message, which is rarely a free
    /// variable (it names the event, component or command). At least 2.
    pub min_distinct_for_first_token: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
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
