//! Human approval of `approval_required` actions (placeholder until the
//! recovery orchestrator lands: every approval is answered "not found").

use super::{RecoveryOutput, RecoveryStage};

/// Why an approval could not be applied.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("no pending approval with that action id")]
    NotFound,
    #[error("the action was already approved or rejected")]
    AlreadyDecided,
    #[error("the action has expired")]
    Expired,
}

impl RecoveryStage {
    /// A human approved (`approve = true`) or rejected a pending `approval_required` action.
    pub fn approval(
        &mut self,
        _action_id: &str,
        _approve: bool,
        _by: &str,
        _out: &mut Vec<RecoveryOutput>,
    ) -> Result<(), ApprovalError> {
        Err(ApprovalError::NotFound)
    }
}
