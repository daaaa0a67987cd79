//! `reflex train`: fits the multinomial logistic regression (linfa-logistic)
//! on training examples with text and change dropout copies, chooses the
//! regularisation and the [`Policy`] on 5-fold out-of-fold predictions and
//! fits the calibration table on them, then fits the final weights on
//! everything.
//!
//! Guarantees: deterministic folds (stratified round robin); the returned
//! model has passed the model file's checks.

use super::super::features;
use super::examples::Example;
use super::labelled::TrainError;
use super::model::{
    bin, Calibration, CategoryModel, Policy, TrainSummary, BINS, FORMAT, MAX_CONFIDENCE,
};
use crate::model::Category;
use std::collections::BTreeMap;

/// What `reflex train` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub summary: TrainSummary,
    pub policy: Policy,
    /// (bin, n, mean model probability, observed accuracy) of the chosen policy's answers.
    pub reliability: Vec<(usize, usize, f64, f64)>,
}

/// Fitted classes (indices into [`Category::ALL`]), weights and intercepts.
type Fitted = (Vec<usize>, ndarray::Array2<f64>, ndarray::Array1<f64>);

/// Out-of-fold figures of one regularisation: (accuracy, alpha, probabilities).
type FoldResult = (f64, f64, Vec<Vec<f64>>);

fn fit(x: &ndarray::Array2<f64>, y: &[usize], alpha: f64) -> Result<Fitted, TrainError> {
    use linfa::prelude::*;
    let ds = linfa::Dataset::new(x.clone(), ndarray::Array1::from(y.to_vec()));
    let m = linfa_logistic::MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(200)
        .fit(&ds)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    Ok((
        m.classes().to_vec(),
        m.params().to_owned(),
        m.intercept().to_owned(),
    ))
}

fn to_model(
    classes: &[usize],
    w: &ndarray::Array2<f64>,
    b: &ndarray::Array1<f64>,
    hash_dims: usize,
) -> CategoryModel {
    let round = |v: f64| (v * 1e4).round() / 1e4;
    let mut weights = Vec::new();
    for (i, row) in w.rows().into_iter().enumerate() {
        let r: Vec<f64> = row.iter().map(|v| round(*v)).collect();
        if r.iter().any(|v| *v != 0.0) {
            weights.push((i, r));
        }
    }
    CategoryModel {
        format: FORMAT,
        hash_dims,
        dense: features::DENSE,
        categories: classes
            .iter()
            .map(|c| Category::ALL.get(*c).copied().unwrap_or(Category::Unknown))
            .collect(),
        intercept: b.iter().map(|v| round(*v)).collect(),
        weights,
        policy: Policy::ModelUnlessStructural,
        calibration: Calibration {
            agree: vec![0.5; BINS],
            disagree: vec![0.5; BINS],
        },
        summary: TrainSummary::default(),
    }
}

/// Pool-adjacent-violators: the non-decreasing fit of `v` weighted by `n`.
pub fn isotonic(v: &[f64], n: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new(); // (mean, weight, len)
    for (x, w) in v.iter().zip(n) {
        blocks.push((*x, w.max(1e-9), 1));
        while blocks.len() >= 2 {
            let k = blocks.len();
            if blocks[k - 2].0 <= blocks[k - 1].0 {
                break;
            }
            let (b, a) = (blocks[k - 1], blocks[k - 2]);
            let wt = a.1 + b.1;
            blocks.truncate(k - 2);
            blocks.push(((a.0 * a.1 + b.0 * b.1) / wt, wt, a.2 + b.2));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(m, _, l)| std::iter::repeat_n(m.clamp(0.0, 1.0), l))
        .collect()
}

/// Fits a model on labelled examples: 5-fold out-of-fold predictions choose
/// the regularisation and the policy and fit the calibration table, then the
/// final weights are fitted on everything.
pub fn train(
    examples: &[Example],
    hash_dims: usize,
) -> Result<(CategoryModel, TrainReport), TrainError> {
    let n = examples.len();
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for e in examples {
        *per_category.entry(e.category.to_string()).or_default() += 1;
    }
    if n < 10 || per_category.len() < 2 {
        return Err(TrainError::Data(format!(
            "need at least 10 labelled incidents of at least 2 categories (got {n} of {})",
            per_category.len()
        )));
    }
    let d = features::DENSE + hash_dims;
    let label = |c: Category| {
        Category::ALL
            .iter()
            .position(|x| *x == c)
            .unwrap_or(Category::ALL.len() - 1)
    };
    // Rows: every example, then augmented copies (used for fitting only,
    // never for held-out scoring), each remembering its example.
    let mut rows: Vec<(Vec<f64>, usize, usize)> = Vec::with_capacity(3 * n);
    for (i, e) in examples.iter().enumerate() {
        rows.push((
            features::features(&e.services, &e.root, e.ctx, hash_dims),
            label(e.category),
            i,
        ));
    }
    for (i, e) in examples.iter().enumerate() {
        // Text dropout: the same incident seen through the signature hints
        // and structure alone, so that vocabulary the training fleet never
        // used (real fleets) still lands on the right category.
        let mut f = rows[i].0.clone();
        f[features::DENSE..].iter_mut().for_each(|v| *v = 0.0);
        rows.push((f, label(e.category), i));
        // Change dropout: only `bad_deploy` is defined by a change; a bad
        // config or an outage without one is still what it is.
        if e.ctx.changed && e.category != Category::BadDeploy {
            let alt = Example::of(
                e.services.clone(),
                &e.root,
                e.ctx.external,
                None,
                e.category,
            );
            rows.push((
                features::features(&alt.services, &alt.root, alt.ctx, hash_dims),
                label(e.category),
                i,
            ));
        }
    }
    let mut x = ndarray::Array2::<f64>::zeros((rows.len(), d));
    let mut y_all = Vec::with_capacity(rows.len());
    let mut origin = Vec::with_capacity(rows.len());
    for (r, (f, l, o)) in rows.into_iter().enumerate() {
        for (j, v) in f.into_iter().enumerate() {
            x[[r, j]] = v;
        }
        y_all.push(l);
        origin.push(o);
    }
    let y: Vec<usize> = y_all[..n].to_vec();
    // Deterministic folds, stratified by category (round robin within each).
    let folds = 5usize;
    let mut fold = vec![0usize; n];
    let mut next: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..n {
        let k = next.entry(y[i]).or_default();
        fold[i] = *k % folds;
        *k += 1;
    }
    let mut best: Option<FoldResult> = None;
    for alpha in [0.1, 1.0] {
        let mut oof: Vec<Vec<f64>> = vec![Vec::new(); n];
        for f in 0..folds {
            let tr: Vec<usize> = (0..origin.len())
                .filter(|r| fold[origin[*r]] != f)
                .collect();
            let te: Vec<usize> = (0..n).filter(|i| fold[*i] == f).collect();
            if te.is_empty() {
                continue;
            }
            let xt = x.select(ndarray::Axis(0), &tr);
            let yt: Vec<usize> = tr.iter().map(|i| y_all[*i]).collect();
            let (classes, w, b) = fit(&xt, &yt, alpha)?;
            let m = to_model(&classes, &w, &b, hash_dims);
            // Probabilities over every category, so folds are comparable.
            for i in te {
                let p = m.probabilities(x.row(i).as_slice().unwrap_or(&[]));
                let mut full = vec![0.0; Category::ALL.len()];
                for (c, pc) in m.categories.iter().zip(p) {
                    if let Some(k) = Category::ALL.iter().position(|a| a == c) {
                        full[k] = pc;
                    }
                }
                oof[i] = full;
            }
        }
        let acc = (0..n)
            .filter(|i| {
                oof[*i]
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(k, _)| k)
                    == Some(y[*i])
            })
            .count() as f64
            / n as f64;
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, alpha, oof));
        }
    }
    let Some((_, alpha, oof)) = best else {
        return Err(TrainError::Fit("no fold could be fitted".into()));
    };
    // An "all categories" model shell to evaluate policies on the OOF probabilities.
    let shell = CategoryModel {
        categories: Category::ALL.to_vec(),
        intercept: vec![0.0; Category::ALL.len()],
        weights: Vec::new(),
        ..to_model(
            &[],
            &ndarray::Array2::zeros((0, 0)),
            &ndarray::Array1::zeros(0),
            hash_dims,
        )
    };
    let decide = |policy: Policy, i: usize| -> (Category, f64, bool) {
        let e = &examples[i];
        let p = &oof[i];
        let (mi, _) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(&a.0)))
            .unwrap_or((Category::ALL.len() - 1, &0.0));
        let mc = Category::ALL[mi];
        let by_rules = match policy {
            Policy::Rules => true,
            Policy::Model => false,
            Policy::ModelUnlessStructural => e.structural(),
            Policy::RulesUnlessUnknown => e.rule.category != Category::Unknown,
        };
        let c = if by_rules { e.rule.category } else { mc };
        let pc = shell.prob_of(p, c);
        (c, pc, e.rule.category == c && mc == c)
    };
    let mut held_out = BTreeMap::new();
    let mut chosen = (Policy::ModelUnlessStructural, -1.0);
    for policy in Policy::ALL {
        let acc = (0..n)
            .filter(|i| decide(policy, *i).0 == examples[*i].category)
            .count() as f64
            / n as f64;
        held_out.insert(policy.as_str().to_string(), (acc * 1e4).round() / 1e4);
        if acc > chosen.1 + 1e-9 {
            chosen = (policy, acc);
        }
    }
    let policy = chosen.0;
    // Calibration: accuracy per (agree, bin), smoothed towards the group's mean.
    let mut tables = Vec::new();
    let mut reliability = Vec::new();
    for agree in [true, false] {
        let mut hit = [0.0; BINS];
        let mut cnt = [0.0; BINS];
        let mut psum = [0.0; BINS];
        for (i, e) in examples.iter().enumerate() {
            let (c, p, a) = decide(policy, i);
            if a != agree {
                continue;
            }
            let b = bin(p);
            cnt[b] += 1.0;
            psum[b] += p;
            hit[b] += f64::from(u8::from(c == e.category));
        }
        let total: f64 = cnt.iter().sum();
        let prior = if total > 0.0 {
            (hit.iter().sum::<f64>() + 1.0) / (total + 2.0)
        } else {
            0.5
        };
        let k = 2.0;
        let raw: Vec<f64> = (0..BINS)
            .map(|b| (hit[b] + k * prior) / (cnt[b] + k))
            .collect();
        let w: Vec<f64> = cnt.iter().map(|c| c + k).collect();
        let iso = isotonic(&raw, &w);
        if agree {
            for b in 0..BINS {
                if cnt[b] > 0.0 {
                    reliability.push((b, cnt[b] as usize, psum[b] / cnt[b], hit[b] / cnt[b]));
                }
            }
        }
        tables.push(
            iso.into_iter()
                .map(|v| (v.min(MAX_CONFIDENCE) * 1e4).round() / 1e4)
                .collect::<Vec<_>>(),
        );
    }
    let calibration = Calibration {
        disagree: tables.pop().unwrap_or_else(|| vec![0.5; BINS]),
        agree: tables.pop().unwrap_or_else(|| vec![0.5; BINS]),
    };
    let (classes, w, b) = fit(&x, &y_all, alpha)?;
    let mut model = to_model(&classes, &w, &b, hash_dims);
    model.policy = policy;
    model.calibration = calibration;
    // Brier score of the calibrated confidence on the OOF predictions.
    let mut brier = 0.0;
    for (i, e) in examples.iter().enumerate() {
        let (c, p, a) = decide(policy, i);
        let conf = model.calibrated(p, a);
        let yv = f64::from(u8::from(c == e.category));
        brier += (conf - yv).powi(2);
    }
    let summary = TrainSummary {
        examples: n,
        per_category,
        held_out_accuracy: held_out,
        brier: ((brier / n as f64) * 1e4).round() / 1e4,
        alpha,
    };
    model.summary = summary.clone();
    model.check().map_err(|e| TrainError::Fit(e.to_string()))?;
    Ok((
        model,
        TrainReport {
            summary,
            policy,
            reliability,
        },
    ))
}
