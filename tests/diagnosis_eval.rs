//! The diagnosis scorecard on the project's own labelled corpus (not a CI
//! gate: it takes a minute in release). Faults come from the simulator's
//! held-out seeds 1–20 (the built-in category model trains on seeds ≥ 1000);
//! noise comes from fault-free runs.
//!
//! ```text
//! cargo test --release --test diagnosis_eval -- --ignored --nocapture
//! ```
//!
//! Figures: incidents per fault (goal 1.0), root-cause accuracy, category
//! accuracy, median and 90th percentile time from onset to the incident
//! (event time), false incidents per hour of noise, and the automatic
//! actions that were right/wrong.

use reflex::config::Config;
use reflex::model::Category;
use reflex::sim::demo::{self, DemoOptions};
use std::collections::BTreeMap;

#[test]
#[ignore]
fn diagnosis_scorecard() {
    let cfg = Config::embedded().expect("embedded config");
    let seeds: Vec<u64> = std::env::var("REFLEX_EVAL_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some((a.parse().ok()?..=b.parse().ok()?).collect())
        })
        .unwrap_or_else(|| (1..=20).collect());
    let (mut faults, mut matched_incidents, mut roots, mut cats) = (0usize, 0usize, 0, 0);
    let (mut false_inc, mut auto, mut wrong) = (0usize, 0usize, 0usize);
    let (mut fixed, mut remediable) = (0usize, 0usize);
    let mut ttd: Vec<i64> = Vec::new();
    let mut per_cat: BTreeMap<Category, (usize, usize, usize)> = BTreeMap::new();
    for &seed in &seeds {
        let run = demo::run(
            &cfg,
            &DemoOptions {
                seed,
                narrate: false,
                ..DemoOptions::default()
            },
            &mut std::io::sink(),
        )
        .expect("demo");
        let r = &run.report;
        faults += r.rows.len();
        matched_incidents += r.incidents - r.false_incidents.len();
        false_inc += r.false_incidents.len();
        roots += r.roots_found();
        auto += r.auto_actions;
        wrong += r.wrong_actions.len();
        let (f, rem) = r.auto_remediation();
        fixed += f;
        remediable += rem;
        for row in &r.rows {
            let cat_ok = row.diagnosed.as_ref().is_some_and(|d| d.1 == row.category);
            cats += usize::from(cat_ok);
            let e = per_cat.entry(row.category).or_default();
            e.0 += 1;
            e.1 += usize::from(row.root_found);
            e.2 += usize::from(cat_ok);
            if let Some(t) = row.time_to_detect_ms {
                ttd.push(t);
            }
            if !(row.root_found && cat_ok) {
                println!(
                    "  seed {seed} {}: {} on {} diagnosed as {:?}",
                    row.id, row.category, row.root, row.diagnosed
                );
            }
        }
        for w in &r.wrong_actions {
            println!("  seed {seed} wrong action: {w}");
        }
        for w in &r.false_incidents {
            println!("  seed {seed} false incident: {w}");
        }
    }
    ttd.sort_unstable();
    let pct = |p: f64| {
        ttd.get(((ttd.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    // Noise: fault-free runs, every incident is a false one.
    let noise_hours = 24.0;
    let mut noise_incidents = 0usize;
    let noise_seeds = [101u64, 102, 103];
    for &seed in &noise_seeds {
        let run = demo::run(
            &cfg,
            &DemoOptions {
                seed,
                faults: 0,
                hours: noise_hours,
                narrate: false,
                ..DemoOptions::default()
            },
            &mut std::io::sink(),
        )
        .expect("noise run");
        noise_incidents += run.report.incidents;
    }
    let f = faults as f64;
    println!(
        "diagnosis scorecard over seeds {:?}..{:?} ({faults} faults)",
        seeds.first(),
        seeds.last()
    );
    println!(
        "  incidents per fault     {:.3}",
        matched_incidents as f64 / f
    );
    println!(
        "  root-cause accuracy     {:.3} ({roots}/{faults})",
        roots as f64 / f
    );
    println!(
        "  category accuracy       {:.3} ({cats}/{faults})",
        cats as f64 / f
    );
    println!(
        "  time to incident        median {:.0}s, p90 {:.0}s",
        pct(0.5).unwrap_or(0) as f64 / 1000.0,
        pct(0.9).unwrap_or(0) as f64 / 1000.0
    );
    println!("  false incidents         {false_inc} in the fault runs");
    println!(
        "  noise                   {noise_incidents} incidents in {:.0} fault-free hours = {:.3}/hour",
        noise_hours * noise_seeds.len() as f64,
        noise_incidents as f64 / (noise_hours * noise_seeds.len() as f64)
    );
    println!("  automatic actions       {auto}, wrong {wrong}; remediable faults fixed without a human {fixed}/{remediable}");
    println!("  per category (faults, root right, category right):");
    for (c, (n, r, k)) in &per_cat {
        println!("    {:<20} {n:>3} {r:>3} {k:>3}", c.as_str());
    }
}
