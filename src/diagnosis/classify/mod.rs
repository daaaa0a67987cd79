//! The learned category classifier (SPEC §3 categories), its model file,
//! `reflex train`, and the calibrated confidence of the combined answer.
//!
//! **Model.** A multinomial logistic regression (linfa-logistic, L2
//! regularised, L-BFGS) over the features of [`super::features`]: signature
//! hint weights per category (rules are features, so the model learns how far
//! to trust each), structural facts, HTTP status classes and hashed tokens of
//! the root's and its callers' masked messages and error types. At run time
//! only the fitted weights are used (a sparse dot product and a softmax: no
//! linfa, microseconds per incident).
//!
//! **Combination with the rules.** [`Policy`] says who decides the category:
//! the rules alone, the model alone, the model except for structural answers
//! (an external root ⇒ `dependency_failure`, a recent change ⇒ `bad_deploy`
//! or `config_error`, node-local network trouble ⇒ `network`: facts about the
//! incident, not about its messages), or the rules except when they have no
//! answer (`unknown`). `reflex train` measures all four on out-of-fold
//! predictions (5-fold cross-validation) and stores the best in the model
//! file; for the built-in model that is `model` (0.996 out of fold against
//! 0.861 for the rules alone and 0.942 for `model_unless_structural`; on the
//! held-out demo seeds 1–20 the category is right for 97.7% of faults
//! against 86.8% with the rules alone). Training also adds, per incident, a
//! copy without text features (so vocabulary a real fleet uses and the
//! simulator does not falls back on the general signature features) and,
//! except for `bad_deploy`, a copy without its recent change (a bad config or
//! an outage is what it is with or without a deploy); and, for an external
//! root, the view from its two loudest callers labelled
//! `dependency_failure`, so that a diagnosis stopping at a caller still
//! escalates instead of acting on it.
//!
//! **Calibration.** The confidence reported with a category is not the
//! softmax probability but how often *this kind of answer* was right on
//! held-out data: a table, fitted by `reflex train` on the out-of-fold
//! predictions, from (do the rules agree with the answer, bin of the model's
//! probability of the answer) to the observed accuracy (Laplace-smoothed
//! towards the group's accuracy, then made non-decreasing in probability by
//! pool-adjacent-violators). The incident's confidence is that value, capped
//! by what the root-cause ranking knows about the root (a silent root nothing
//! explains, a root only its callers vouch for, a narrow lead over the
//! runner-up candidate, the classifier overruling rules that found no
//! evidence or doing so with a probability below 0.6: training only sees
//! true roots, so such answers go to a human first).
//!
//! **Model file** (JSON): `format` (1), `hash_dims`, `dense` (must equal
//! [`features::DENSE`]), `categories` (the classes), `intercept`, `weights`
//! (sparse: `[feature index, [weight per class]]`), `policy`, `calibration`
//! and a `summary` of the training run. The built-in model
//! (`topology/models/category.json`) is compiled in; `diagnosis.model`
//! overrides it and a bad file is a configuration error (file and key).
//!
//! **LABELLED.jsonl** (input of `reflex train`): one labelled incident per
//! line, `{"category": "<SPEC §3 category>", "root_cause_service": "<root>",
//! "events": [<ErrorEvent>, ...]}` with the error events of the root and of
//! its callers around the onset (and the root's `change` events before it).
//! The root may be an external host (no events of its own: callers name it as
//! `upstream`). `reflex demo --export DIR` writes `DIR/labelled.jsonl` in this
//! format from its ground truth.

mod examples;
mod infer;
mod labelled;
mod model;
mod rules;
#[cfg(test)]
pub(crate) mod tests;
mod train;

pub use examples::{examples_from_labelled, signals_from_events, Example};
pub use infer::Decision;
pub use labelled::{labelled_line, parse_labelled, read_labelled, LabelledIncident, TrainError};
pub use model::{
    builtin, Calibration, CategoryModel, ModelError, Policy, TrainSummary, BINS, BUILTIN_MODEL,
    DEFAULT_HASH_DIMS, FORMAT, MAX_CONFIDENCE,
};
pub use rules::UNSURE_MODEL;
pub use train::{isotonic, train, TrainReport};
