//! `reflex report` against the demo: the report of a demo's export equals
//! the report of the demo's own records (one function, [`report::compute`]),
//! its counts agree with the demo's scored report, the escalation phrases
//! the report classifies are the ones the recovery stage writes, and the
//! HTML form renders in headless Chromium with a clean console and nothing
//! fetched (skipped without Chromium unless `CI` is set).

#[path = "support/cdp.rs"]
mod cdp;

use reflex::config::Config;
use reflex::model::{Category, Decision};
use reflex::report::{self, Records, ReportOptions};
use reflex::sim::demo::{self, DemoOptions};
use reflex::sinks::Output;
use std::process::Command;
use std::time::Duration;

#[test]
fn report_of_the_export_equals_the_demos_own_and_renders_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cats = [
        Category::MemoryExhaustion,
        Category::CertificateExpired,
        Category::Overload,
    ];
    let opts = DemoOptions {
        seed: 31,
        faults: cats.len(),
        hours: 1.25 + cats.len() as f64 * 0.6 + 0.01,
        narrate: false,
        volume: 0.5,
        categories: cats.to_vec(),
        export: Some(dir.path().to_path_buf()),
        ..DemoOptions::default()
    };
    let cfg = Config::embedded().expect("embedded config");
    let run = demo::run(&cfg, &opts, &mut std::io::sink()).expect("demo runs");
    let own = report::compute(
        &Records::from_outputs(&run.outputs, &run.results),
        &ReportOptions::default(),
    );

    // The command, on the export, as JSON.
    let out = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["report", "--format", "json", "--input"])
        .arg(dir.path())
        .output()
        .expect("reflex report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmd: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let own_json: serde_json::Value =
        serde_json::from_str(&report::render::json(&own)).expect("JSON");
    assert_eq!(
        cmd, own_json,
        "the export's report differs from the demo's own"
    );

    // Its counts are the demo's scored report's.
    let r = &run.report;
    assert_eq!(own.overall.incidents, r.incidents, "{}", r);
    assert_eq!(own.records.actions, r.actions);
    assert_eq!(own.records.auto_actions, r.auto_actions);
    assert_eq!(own.records.escalations, r.escalations);
    let verified = r.rows.iter().filter(|x| x.outcome == "verified").count();
    assert_eq!(
        own.overall.verified_fixes,
        verified,
        "{}",
        report::render::text(&own)
    );
    assert!(
        own.overall.automatic >= 1,
        "the scenario fixes something automatically"
    );
    assert_eq!(own.overall.undos, 0);
    // Certificate expiry is escalated by policy: held back as not automated.
    assert!(
        own.held_back
            .iter()
            .any(|h| h.category == Category::CertificateExpired && h.reason == "not_automated"),
        "{:?}",
        own.held_back
    );
    // Every hold-like escalation of the run is classified (no phrase drifted).
    for o in &run.outputs {
        if let Output::Escalation(e) = o {
            let looks_held = e.reason.contains("held by guard")
                || e.reason.contains("not remediated automatically")
                || e.reason.starts_with("approval required")
                || e.reason.contains("is above the approval limit")
                || e.reason.contains("was rejected by")
                || e.reason.starts_with("remedy ladder exhausted");
            assert_eq!(
                report::HoldReason::of_escalation(&e.reason).is_some(),
                looks_held,
                "{}",
                e.reason
            );
        }
        if let Output::Action(a) = o {
            assert_eq!(a.decision, Decision::Auto);
        }
    }

    // The text form names every category; `--since` after the end keeps nothing.
    let text = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["report", "--since", "2100-01-01T00:00:00Z", "--input"])
        .arg(dir.path())
        .output()
        .expect("reflex report runs");
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("value report: 0 incidents"));
    let bad = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["report", "--input"])
        .arg(dir.path().join("nowhere"))
        .output()
        .expect("reflex report runs");
    assert_eq!(bad.status.code(), Some(2));

    // The HTML file, in a browser.
    let html = dir.path().join("report.html");
    let st = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["report", "--format", "html", "--output"])
        .arg(&html)
        .arg("--input")
        .arg(dir.path())
        .status()
        .expect("reflex report runs");
    assert!(st.success());
    let Some(exe) = cdp::chromium() else { return };
    let mut b = cdp::Browser::launch(&exe, 1100, 1400);
    let url = format!("file://{}", html.display());
    b.goto(&url);
    b.eval_wait(
        "document.querySelectorAll('svg rect').length > 4 && document.querySelector('#categories tr.total')",
        Duration::from_secs(20),
    );
    let kpi = b.eval("document.querySelector('[data-kpi=\"incidents\"] b').textContent");
    assert_eq!(kpi, serde_json::json!(own.overall.incidents.to_string()));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("board/report.png");
    b.screenshot(&shot);
    b.drain_events();
    assert!(b.errors.is_empty(), "console errors: {:#?}", b.errors);
    assert!(
        b.requests.iter().all(|u| u == &url),
        "the report fetched something: {:?}",
        b.requests
    );
}

/// The dashboard's value row reads only metrics reflex exports (by name).
#[test]
fn grafana_value_row_uses_exported_metrics() {
    use reflex::telemetry::metrics as m;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/reflex.json"
    ))
    .expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let panels = d["panels"].as_array().expect("panels");
    let row = panels
        .iter()
        .position(|p| {
            p["type"] == "row" && p["title"].as_str().is_some_and(|t| t.starts_with("Value"))
        })
        .expect("a Value row");
    let known = [
        m::INCIDENTS_OPENED,
        m::ACTIONS,
        m::ESCALATIONS,
        m::VERIFICATIONS,
        m::GUARD_HOLDS,
    ];
    let names = regex::Regex::new(r"reflex_[a-z_]+").expect("regex");
    let mut seen = 0;
    for p in &panels[row + 1..] {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            for n in names.find_iter(expr) {
                assert!(
                    known.contains(&n.as_str()),
                    "{} is not exported: {expr}",
                    n.as_str()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 10, "the value row has its queries");
}
