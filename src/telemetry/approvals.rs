//! Access to the approval endpoints (`POST /api/actions/{id}/approve` and
//! `.../reject`); the queue they feed is the pipeline's
//! ([`crate::pipeline::approvals`], re-exported here).
//!
//! Access: a bearer token (`REFLEX_API_TOKEN`, or the file named by
//! `telemetry.api_token_file`). Without a token the endpoints refuse every
//! request: approving production changes must never be open by default.
//! Tokens are compared in constant time.

pub use crate::pipeline::approvals::{ApprovalCommand, ApprovalOutcome, ApprovalQueue, MAX_QUEUED};

/// Constant-time comparison of a presented token with the configured one.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() || expected.is_empty() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly_and_empty_never_matches() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cres", b"s3cret"));
        assert!(!token_matches(b"s3cret!", b"s3cret"));
        assert!(!token_matches(b"", b""));
    }
}
