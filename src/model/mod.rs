//! The contract types of SPEC §1–3: the input event, the output records and
//! the diagnosis taxonomy, and the action signature both reflex (signing)
//! and executors (verifying) must agree on ([`sign`]). Everything else here
//! is plain data; behaviour lives in the stages.

pub mod event;
pub mod params;
pub mod records;
pub mod sign;
pub mod time;

pub use event::{ErrorEvent, EventKind, Severity};
pub use params::{ActionParams, DrainOptions, RollbackDirection};
pub use records::*;
pub use time::{DurationMs, EventTime};
