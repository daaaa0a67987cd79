//! Held-out evaluation of diagnosis: runs `reflex demo` (default options)
//! over a range of seeds and prints category accuracy, root-cause accuracy,
//! a confusion list, the calibration of the stated confidence
//! (reliability per bin, Brier score), incidents per fault, time from onset
//! to incident (event time), and false incidents per hour in fault-free runs
//! (`REFLEX_EVAL_NOISE_HOURS`, default 24, three seeds; 0 skips them).
//!
//! `cargo run --release --example diagnosis_eval -- 1 20`
//! (`REFLEX_EVAL_MODEL=model.json` evaluates another model file,
//! `REFLEX_EVAL_RULES=1` the signature rules alone).

use reflex::config::Config;
use reflex::model::Category;
use reflex::sim::demo::{self, DemoOptions};
use std::collections::BTreeMap;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (lo, hi) = (
        args.first().copied().unwrap_or(1),
        args.get(1).copied().unwrap_or(20),
    );
    let cfg = match Config::embedded() {
        Ok(mut c) => {
            // REFLEX_EVAL_MODEL=PATH: evaluate another model file;
            // REFLEX_EVAL_RULES=1: the signature rules alone (no classifier).
            if let Ok(p) = std::env::var("REFLEX_EVAL_MODEL") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                match reflex::diagnosis::classify::CategoryModel::from_json(&text) {
                    Ok(m) => c.diagnosis.category_model = Some(std::sync::Arc::new(m)),
                    Err(e) => {
                        eprintln!("{p}: {e}");
                        std::process::exit(2);
                    }
                }
            }
            if std::env::var("REFLEX_EVAL_RULES").is_ok_and(|v| v == "1") {
                c.diagnosis.classifier = false;
            }
            c
        }
        Err(e) => {
            eprintln!("config: {e}");
            std::process::exit(2);
        }
    };
    let (mut n, mut cat_ok, mut root_ok, mut both_ok) = (0usize, 0usize, 0usize, 0usize);
    let (mut wrong, mut false_inc, mut fixed, mut remediable) = (0usize, 0usize, 0usize, 0usize);
    let mut per_cat: BTreeMap<Category, (usize, usize)> = BTreeMap::new();
    let mut confusions: BTreeMap<(Category, Category), usize> = BTreeMap::new();
    // (confidence, category right, root and category right)
    let mut stated: Vec<(f64, bool, bool)> = Vec::new();
    let (mut incidents, mut ttd) = (0usize, Vec::<i64>::new());
    for seed in lo..=hi {
        let opts = DemoOptions {
            seed,
            narrate: false,
            ..DemoOptions::default()
        };
        let r = match demo::run(&cfg, &opts, &mut std::io::sink()) {
            Ok(r) => r.report,
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                std::process::exit(1);
            }
        };
        let (mut sc, mut sr) = (0, 0);
        wrong += r.wrong_actions.len();
        for w in &r.wrong_actions {
            println!("seed {seed}: wrong action: {w}");
        }
        false_inc += r.false_incidents.len();
        incidents += r.incidents - r.false_incidents.len();
        ttd.extend(r.rows.iter().filter_map(|x| x.time_to_detect_ms));
        let (f, m) = r.auto_remediation();
        fixed += f;
        remediable += m;
        for row in &r.rows {
            n += 1;
            let got = row.diagnosed.as_ref().map(|d| d.1);
            let ok = got == Some(row.category);
            cat_ok += ok as usize;
            sc += ok as usize;
            root_ok += row.root_found as usize;
            sr += row.root_found as usize;
            both_ok += (ok && row.root_found) as usize;
            let e = per_cat.entry(row.category).or_default();
            e.0 += 1;
            e.1 += ok as usize;
            if let Some(g) = got.filter(|g| *g != row.category) {
                *confusions.entry((row.category, g)).or_default() += 1;
            }
            if let Some(c) = row.confidence {
                stated.push((c, ok, ok && row.root_found));
            }
        }
        println!(
            "seed {seed:>4}: {} faults, category {sc}, root {sr}",
            r.rows.len()
        );
    }
    let pct = |a: usize| 100.0 * a as f64 / n.max(1) as f64;
    println!();
    println!("faults {n}");
    println!("category accuracy   {cat_ok}/{n} = {:.1}%", pct(cat_ok));
    println!("root-cause accuracy {root_ok}/{n} = {:.1}%", pct(root_ok));
    println!("both right          {both_ok}/{n} = {:.1}%", pct(both_ok));
    println!(
        "incidents per fault {:.3}",
        incidents as f64 / n.max(1) as f64
    );
    ttd.sort_unstable();
    let q = |p: f64| {
        ttd.get(((ttd.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |t| *t as f64 / 1000.0)
    };
    println!(
        "onset to incident   median {:.0}s, p90 {:.0}s, max {:.0}s",
        q(0.5),
        q(0.9),
        q(1.0)
    );
    let noise_hours: f64 = std::env::var("REFLEX_EVAL_NOISE_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24.0);
    if noise_hours > 0.0 {
        let mut noise = 0usize;
        for seed in [101u64, 102, 103] {
            let opts = DemoOptions {
                seed,
                faults: 0,
                hours: noise_hours,
                narrate: false,
                ..DemoOptions::default()
            };
            match demo::run(&cfg, &opts, &mut std::io::sink()) {
                Ok(r) => noise += r.report.incidents,
                Err(e) => {
                    eprintln!("noise seed {seed}: {e}");
                    std::process::exit(1);
                }
            }
        }
        println!(
            "noise               {noise} incidents in {:.0} fault-free hours = {:.3}/hour",
            3.0 * noise_hours,
            noise as f64 / (3.0 * noise_hours)
        );
    }
    println!(
        "auto-remediated {fixed}/{remediable}, wrong actions {wrong}, false incidents {false_inc}"
    );
    println!("per category (right/all):");
    for (c, (all, ok)) in &per_cat {
        println!("  {:<20} {ok}/{all}", c.as_str());
    }
    println!("confusions (truth -> diagnosed):");
    for ((t, g), k) in &confusions {
        println!("  {:<20} -> {:<20} {k}", t.as_str(), g.as_str());
    }
    for (label, idx) in [("category right", 1), ("root and category right", 2)] {
        println!("calibration of the stated confidence vs {label}:");
        println!("  bin        n   mean conf   observed");
        let mut brier = 0.0;
        for b in 0..5 {
            let (lo, hi) = (b as f64 * 0.2, (b + 1) as f64 * 0.2);
            let xs: Vec<&(f64, bool, bool)> = stated
                .iter()
                .filter(|s| s.0 >= lo && (s.0 < hi || (b == 4 && s.0 <= 1.0)))
                .collect();
            if xs.is_empty() {
                continue;
            }
            let m = xs.iter().map(|s| s.0).sum::<f64>() / xs.len() as f64;
            let o = xs
                .iter()
                .filter(|s| if idx == 1 { s.1 } else { s.2 })
                .count() as f64
                / xs.len() as f64;
            println!("  {lo:.1}-{hi:.1}  {:>4}   {m:.3}       {o:.3}", xs.len());
        }
        for s in &stated {
            let y = if idx == 1 { s.1 } else { s.2 } as u8 as f64;
            brier += (s.0 - y).powi(2);
        }
        let mean_conf = stated.iter().map(|s| s.0).sum::<f64>() / stated.len().max(1) as f64;
        let acc = stated
            .iter()
            .filter(|s| if idx == 1 { s.1 } else { s.2 })
            .count() as f64
            / stated.len().max(1) as f64;
        println!(
            "  mean confidence {mean_conf:.3}, observed {acc:.3}, Brier {:.4} (n={})",
            brier / stated.len().max(1) as f64,
            stated.len()
        );
    }
}
