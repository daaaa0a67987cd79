//! Typed metric labels: the [`Label`] trait, which makes an enum a fixed
//! label set (its name and every value), and [`Counts`] / [`Grid`], relaxed
//! atomic counters indexed by such enums, so a count is bumped by the value
//! it is about (`dead_letters.add(kind)`), never by a hand-kept index.
//!
//! Guarantees: the set of values is the enum's, so label cardinality is
//! bounded whatever the input; a `Counts<L, N>` whose `N` is not the number
//! of `L`'s values does not compile (a const assertion); adding and reading
//! never lock or allocate.

use crate::model::DetectorKind;
use crate::model::{ActionType, Category, DeadLetterKind, Decision};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// An enum that is a fixed metric label set.
pub trait Label: Copy + 'static {
    /// The label's name (`reason_kind`, `guard`, ...).
    const KEY: &'static str;
    /// Every value, in index order: `ALL[v.index()] == v`.
    const ALL: &'static [Self];
    /// The value's position in [`Self::ALL`].
    fn index(self) -> usize;
    /// The label value as exported.
    fn value(self) -> &'static str;
}

/// Something that can be read as one number: a counter, or a labelled
/// family of counters read as its total over every label.
pub trait Total {
    /// The current value (the sum over every label, for a family).
    fn total(&self) -> u64;
}

impl Total for AtomicU64 {
    fn total(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

/// One relaxed counter per value of `L` (`N` must be `L::ALL.len()`).
#[derive(Debug)]
pub struct Counts<L: Label, const N: usize> {
    counts: [AtomicU64; N],
    label: PhantomData<fn(L)>,
}

impl<L: Label, const N: usize> Counts<L, N> {
    /// Evaluated on construction: a mis-sized family fails to compile.
    const SIZED: () = assert!(N == L::ALL.len(), "Counts<L, N> needs N == L::ALL.len()");

    /// Adds `n` to the counter of `l`.
    pub fn add(&self, l: L, n: u64) {
        if let Some(c) = self.counts.get(l.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The counter of `l`.
    pub fn get(&self, l: L) -> u64 {
        self.counts
            .get(l.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl<L: Label, const N: usize> Default for Counts<L, N> {
    fn default() -> Self {
        let () = Self::SIZED;
        Counts {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            label: PhantomData,
        }
    }
}

impl<L: Label, const N: usize> Total for Counts<L, N> {
    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One relaxed counter per pair of values of `A` and `B` (`NA`, `NB` their
/// numbers of values).
#[derive(Debug)]
pub struct Grid<A: Label, B: Label, const NA: usize, const NB: usize> {
    rows: [Counts<B, NB>; NA],
    label: PhantomData<fn(A)>,
}

impl<A: Label, B: Label, const NA: usize, const NB: usize> Grid<A, B, NA, NB> {
    const SIZED: () = assert!(NA == A::ALL.len(), "Grid<A, ..> needs NA == A::ALL.len()");

    /// Adds `n` to the counter of (`a`, `b`).
    pub fn add(&self, a: A, b: B, n: u64) {
        if let Some(r) = self.rows.get(a.index()) {
            r.add(b, n);
        }
    }

    /// The counter of (`a`, `b`).
    pub fn get(&self, a: A, b: B) -> u64 {
        self.rows.get(a.index()).map_or(0, |r| r.get(b))
    }
}

impl<A: Label, B: Label, const NA: usize, const NB: usize> Default for Grid<A, B, NA, NB> {
    fn default() -> Self {
        let () = Self::SIZED;
        Grid {
            rows: std::array::from_fn(|_| Counts::default()),
            label: PhantomData,
        }
    }
}

impl<A: Label, B: Label, const NA: usize, const NB: usize> Total for Grid<A, B, NA, NB> {
    fn total(&self) -> u64 {
        self.rows.iter().map(Total::total).sum()
    }
}

/// The detector that made a detection, as a label: the detectors' names,
/// anything else `other` (so a new detector cannot grow the label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorName {
    Threshold,
    Anomaly,
    Pattern,
    Node,
    Change,
    Other,
}

impl DetectorName {
    /// The label of a detector.
    pub fn of(kind: DetectorKind) -> Self {
        match kind {
            DetectorKind::Threshold => DetectorName::Threshold,
            DetectorKind::Anomaly => DetectorName::Anomaly,
            DetectorKind::Pattern => DetectorName::Pattern,
            DetectorKind::Node => DetectorName::Node,
            DetectorKind::Change => DetectorName::Change,
            DetectorKind::Train | DetectorKind::Other => DetectorName::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorName::Threshold => "threshold",
            DetectorName::Anomaly => "anomaly",
            DetectorName::Pattern => "pattern",
            DetectorName::Node => "node",
            DetectorName::Change => "change",
            DetectorName::Other => "other",
        }
    }
}

/// Makes a fieldless enum a [`Label`]: its `KEY`, every value in
/// declaration order (`ALL`), its discriminant as its index and `name` as
/// its value. `every_label_enum_indexes_its_values_in_order` checks that
/// `ALL` follows the discriminants.
macro_rules! label_set {
    ($t:ty, $key:literal, $all:expr, $name:expr) => {
        impl $crate::stage::labels::Label for $t {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = $all;
            fn index(self) -> usize {
                self as usize
            }
            fn value(self) -> &'static str {
                ($name)(self)
            }
        }
    };
}
pub(crate) use label_set;

label_set!(
    DetectorName,
    "detector",
    &[
        DetectorName::Threshold,
        DetectorName::Anomaly,
        DetectorName::Pattern,
        DetectorName::Node,
        DetectorName::Change,
        DetectorName::Other,
    ],
    DetectorName::as_str
);
label_set!(
    DeadLetterKind,
    "reason_kind",
    &DeadLetterKind::ALL,
    DeadLetterKind::as_str
);
label_set!(Category, "category", &Category::ALL, Category::as_str);
label_set!(
    ActionType,
    "type",
    &[
        ActionType::Restart,
        ActionType::DeletePod,
        ActionType::Scale,
        ActionType::Rollback,
        ActionType::DrainNode,
        ActionType::RunRunbook,
    ],
    ActionType::as_str
);
label_set!(
    Decision,
    "decision",
    &[Decision::Auto, Decision::ApprovalRequired, Decision::DryRun],
    Decision::as_str
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::stats::{Guard, KafkaErrorKind, Outcome, StageName};

    /// `ALL[i].index() == i` and distinct, non-empty snake_case values.
    fn is_a_label_set<L: Label + std::fmt::Debug + PartialEq>() {
        let mut seen = std::collections::BTreeSet::new();
        for (i, &l) in L::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{l:?}");
            let v = l.value();
            assert!(
                !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
                "{v}"
            );
            assert!(seen.insert(v), "duplicate {v}");
        }
        assert!(!L::KEY.is_empty());
    }

    #[test]
    fn every_label_enum_indexes_its_values_in_order() {
        is_a_label_set::<DetectorName>();
        is_a_label_set::<DeadLetterKind>();
        is_a_label_set::<Category>();
        is_a_label_set::<ActionType>();
        is_a_label_set::<Decision>();
        is_a_label_set::<Guard>();
        is_a_label_set::<Outcome>();
        is_a_label_set::<StageName>();
        is_a_label_set::<KafkaErrorKind>();
        is_a_label_set::<crate::sinks::Topic>();
    }

    #[test]
    fn counts_are_per_value_and_total_is_their_sum() {
        let c: Counts<Category, { Category::ALL.len() }> = Counts::default();
        c.add(Category::Network, 2);
        c.add(Category::Unknown, 1);
        c.add(Category::Network, 1);
        assert_eq!(c.get(Category::Network), 3);
        assert_eq!(c.get(Category::Unknown), 1);
        assert_eq!(c.get(Category::BadDeploy), 0);
        assert_eq!(c.total(), 4);
        let g: Grid<ActionType, Decision, 6, 3> = Grid::default();
        g.add(ActionType::Scale, Decision::Auto, 1);
        g.add(ActionType::Scale, Decision::ApprovalRequired, 2);
        g.add(ActionType::RunRunbook, Decision::Auto, 5);
        assert_eq!(g.get(ActionType::Scale, Decision::ApprovalRequired), 2);
        assert_eq!(g.get(ActionType::Scale, Decision::Auto), 1);
        assert_eq!(g.get(ActionType::Restart, Decision::Auto), 0);
        assert_eq!(g.total(), 8);
    }

    #[test]
    fn unknown_detectors_are_other() {
        assert_eq!(
            DetectorName::of(DetectorKind::Pattern),
            DetectorName::Pattern
        );
        assert_eq!(DetectorName::of(DetectorKind::Train), DetectorName::Other);
        // A name this version does not know decodes as `other`.
        let d: DetectorKind = serde_json::from_str("\"signature\"").unwrap();
        assert_eq!(DetectorName::of(d), DetectorName::Other);
    }
}
