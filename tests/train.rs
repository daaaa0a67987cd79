//! `reflex train` end to end: a labelled file exported by `reflex demo`
//! trains a model that loads and classifies held-out incidents; bad input and
//! a bad `diagnosis.model` are usage errors (exit 2) naming file and line/key.

use reflex::config::Config;
use reflex::diagnosis::classify::{self, CategoryModel};
use reflex::diagnosis::features;
use reflex::model::Category;
use reflex::sim::demo::{self, DemoOptions};
use std::path::Path;
use std::process::Command;

fn reflex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reflex"))
}

const CATS: [Category; 4] = [
    Category::MemoryExhaustion,
    Category::ResourceExhaustion,
    Category::CertificateExpired,
    Category::DataError,
];

/// Exports a small demo run and returns its labelled.jsonl text.
fn labelled(seed: u64, dir: &Path) -> String {
    let cfg = Config::embedded().expect("embedded config");
    let opts = DemoOptions {
        seed,
        faults: CATS.len(),
        hours: 1.25 + CATS.len() as f64 * 0.6 + 0.01,
        narrate: false,
        volume: 0.5,
        categories: CATS.to_vec(),
        export: Some(dir.to_path_buf()),
        ..DemoOptions::default()
    };
    demo::run(&cfg, &opts, &mut std::io::sink()).expect("demo runs");
    std::fs::read_to_string(dir.join("labelled.jsonl")).expect("labelled.jsonl written")
}

#[test]
fn train_on_demo_labels_then_classify_held_out_incidents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for seed in [2001, 2002, 2003] {
        text.push_str(&labelled(seed, &tmp.path().join(format!("s{seed}"))));
    }
    let input = tmp.path().join("labelled.jsonl");
    std::fs::write(&input, &text).expect("write");
    let model_path = tmp.path().join("model.json");
    let o = reflex()
        .args(["train", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&model_path)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("chosen"), "{stdout}");
    let model = CategoryModel::from_json(&std::fs::read_to_string(&model_path).expect("model"))
        .expect("the trained model loads");

    // Held out: another seed, never trained on.
    let held = classify::parse_labelled(&labelled(2004, &tmp.path().join("held")), "held")
        .expect("parses");
    assert_eq!(held.len(), CATS.len());
    let sigs = Config::embedded().expect("config").signatures;
    for inc in &held {
        let e = classify::signals_from_events(inc, &sigs);
        let x = features::features(&e.services, &e.root, e.ctx, model.hash_dims);
        let p = model.probabilities(&x);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let best = model
            .categories
            .iter()
            .zip(&p)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, _)| *c);
        assert_eq!(best, Some(inc.category), "{p:?}");
    }

    // The model is usable as `diagnosis.model`.
    let cfg = tmp.path().join("reflex.toml");
    std::fs::write(&cfg, "[diagnosis]\nmodel = \"model.json\"\n").expect("write");
    let o = reflex()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_labelled_input_and_bad_models_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"category\":\"overload\",\"root_cause_service\":\"a\",\"events\":[]}\n{\"category\":\"overload\",\"events\":[]}\n",
    )
    .expect("write");
    let o = reflex()
        .args(["train", "--input"])
        .arg(&input)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("root_cause_service"),
        "{err}"
    );

    let o = reflex()
        .args(["train", "--input"])
        .arg(tmp.path().join("missing.jsonl"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));

    // Too few incidents to train on.
    std::fs::write(
        &input,
        "{\"category\":\"overload\",\"root_cause_service\":\"a\",\"events\":[]}\n",
    )
    .expect("write");
    let o = reflex()
        .args(["train", "--input"])
        .arg(&input)
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A model file that is not one is a configuration error naming the key.
    std::fs::write(tmp.path().join("model.json"), "{\"format\": 7}").expect("write");
    let cfg = tmp.path().join("reflex.toml");
    std::fs::write(&cfg, "[diagnosis]\nmodel = \"model.json\"\n").expect("write");
    let o = reflex()
        .arg("validate")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        err.contains("diagnosis.model") && err.contains("reflex.toml"),
        "{err}"
    );
}
