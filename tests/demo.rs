//! `reflex demo` end to end: floors on the report over several seeds, and
//! event-time determinism of the exported stream (a replay through the
//! embedded runtime reproduces the demo's incidents, actions and escalations).
//!
//! Sized to stay well under a minute in a debug build: shorter runs at half
//! the background volume, with the categories split across seeds so that
//! together they cover the whole taxonomy.

use reflex::config::Config;
use reflex::model::{Category, Decision};
use reflex::pipeline::embedded::{self, DecideOptions};
use reflex::sim::demo::{self, DemoOptions, DemoRun};
use reflex::sinks::{MemorySink, Output};
use reflex::sources::file::LineReader;

fn run(opts: &DemoOptions) -> DemoRun {
    let cfg = Config::embedded().expect("embedded config");
    demo::run(&cfg, opts, &mut std::io::sink()).expect("demo runs")
}

fn small(seed: u64, categories: &[Category]) -> DemoOptions {
    DemoOptions {
        seed,
        faults: categories.len(),
        hours: 1.25 + categories.len() as f64 * 0.6 + 0.01,
        narrate: false,
        volume: 0.5,
        categories: categories.to_vec(),
        ..DemoOptions::default()
    }
}

#[test]
fn report_floors_hold_over_several_seeds() {
    use Category::*;
    let groups: [(u64, &[Category]); 3] = [
        (
            11,
            &[BadDeploy, MemoryExhaustion, DependencyFailure, Network],
        ),
        (
            12,
            &[ResourceExhaustion, Overload, CertificateExpired, DataError],
        ),
        (13, &[Unavailable, ConfigError, Unknown, Unavailable]),
    ];
    let (mut faults, mut roots, mut categories) = (0, 0, 0);
    for (seed, cats) in groups {
        let r = run(&small(seed, cats)).report;
        let shown = format!("seed {seed}:\n{r}");
        assert_eq!(r.rows.len(), cats.len(), "{shown}");
        assert!(
            r.rows.iter().all(|x| x.detected),
            "a fault went undetected; {shown}"
        );
        assert!(
            r.wrong_actions.is_empty(),
            "wrong automatic action; {shown}"
        );
        assert!(
            r.false_incidents.is_empty(),
            "incident outside any fault; {shown}"
        );
        assert!(
            r.dead_letters > 0,
            "malformed events must reach the DLQ; {shown}"
        );
        // Every remediable fault gets an automatic action that fixes it.
        let (fixed, remediable) = r.auto_remediation();
        assert!(
            fixed * 10 >= remediable * 8,
            "auto remediation too low; {shown}"
        );
        faults += r.rows.len();
        roots += r.roots_found();
        categories += r
            .rows
            .iter()
            .filter(|x| x.diagnosed.as_ref().is_some_and(|d| d.1 == x.category))
            .count();
    }
    assert!(
        roots * 10 >= faults * 9,
        "root cause found for {roots}/{faults} faults (< 90%)"
    );
    assert!(
        categories * 100 >= faults * 85,
        "category right for {categories}/{faults} faults (< 85%)"
    );
}

fn records(outs: &[Output]) -> Vec<String> {
    let mut v = Vec::new();
    for o in outs {
        if matches!(
            o,
            Output::Detection(_) | Output::Incident(_) | Output::Action(_) | Output::Escalation(_)
        ) {
            let mut b = Vec::new();
            o.to_json(&mut b).expect("encodes");
            v.push(String::from_utf8(b).expect("utf8"));
        }
    }
    v
}

#[test]
fn exported_stream_replays_to_the_same_incidents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = small(21, &[Category::MemoryExhaustion, Category::BadDeploy]);
    opts.export = Some(dir.path().to_path_buf());
    let live = run(&opts);
    let auto = live
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Action(a) if a.decision == Decision::Auto));
    assert!(auto, "the scenario must exercise the executor");
    assert!(!live.results.is_empty(), "the executor reported results");

    let truth = reflex::sim::truth::load(&dir.path().join("truth.jsonl")).expect("truth");
    assert_eq!(truth, live.truth);

    // The executor's results, as `reflex run --action-results` loads them.
    let results = embedded::load_action_results(&dir.path().join("action-results.jsonl"))
        .expect("action results");
    assert_eq!(results.len(), live.results.len());
    let cfg = Config::embedded().expect("embedded config");
    let reader = LineReader::open(&dir.path().join("events.jsonl")).expect("events file");
    let mut sink = MemorySink::default();
    let opts = DecideOptions {
        action_results: results,
        ..DecideOptions::default()
    };
    let summary = embedded::run(&cfg, &opts, reader, "replay", &mut sink).expect("replay");
    assert_eq!(summary.events, live.report.events);
    assert_eq!(summary.dead_letters, live.report.dead_letters);
    let (a, b) = (records(&live.outputs), records(&sink.records));
    assert!(a.iter().any(|r| r.contains("\"status\":\"open\"")));
    assert!(
        a.iter().any(|r| r.contains("\"verified: ")),
        "the replay must exercise verification"
    );
    assert_eq!(a.len(), b.len(), "same number of records");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
}

#[test]
fn same_seed_same_run_and_bad_options_are_usage_errors() {
    let opts = small(5, &[Category::ConfigError]);
    let (a, b) = (run(&opts), run(&opts));
    assert_eq!(records(&a.outputs), records(&b.outputs));
    assert_eq!(a.truth, b.truth);

    let cfg = Config::embedded().expect("embedded config");
    let too_many = DemoOptions {
        faults: 40,
        hours: 2.0,
        ..DemoOptions::default()
    };
    let err = demo::run(&cfg, &too_many, &mut std::io::sink()).expect_err("must not fit");
    assert!(matches!(err, demo::DemoError::Usage(_)), "{err}");
}

/// The production profile's *shape* (no floors on diagnosis quality): a big
/// fleet, at least ten faults over six hours or more with an overlapping
/// pair, and a chronic background — thousands of caller errors that name
/// an upstream happen outside every fault window. Generates the events only
/// (no pipeline), at half volume, so it stays fast in a debug build.
#[test]
fn production_profile_is_big_overlapping_and_chronically_noisy() {
    use reflex::codec::json::decode_event;
    use reflex::model::{EventKind, Severity};
    use reflex::sim::demo::{Profile, START};
    use std::collections::BTreeSet;

    let opts = DemoOptions {
        seed: 7,
        narrate: false,
        volume: 0.5,
        ..DemoOptions::for_profile(Profile::Production)
    };
    let mut world = demo::world(&opts);
    let fleet = world.fleet.clone();
    assert!(
        fleet.services.len() >= 30,
        "{} services",
        fleet.services.len()
    );
    let namespaces: BTreeSet<&str> = fleet
        .services
        .values()
        .map(|s| s.namespace.as_str())
        .collect();
    assert!(namespaces.len() >= 4, "{namespaces:?}");
    assert!(fleet.nodes.len() >= 6);
    assert!(fleet.zones.values().collect::<BTreeSet<_>>().len() >= 2);
    assert!(fleet.externals.len() >= 5);

    let end = START.plus_ms((opts.hours * 3_600_000.0) as i64);
    let mut lines = Vec::new();
    let mut t = START;
    while t < end {
        t = t.plus_ms(60_000).min(end);
        world.advance(t, &mut lines);
    }
    world.drain(&mut lines);

    let faults: Vec<(i64, i64)> = world
        .faults
        .iter()
        .map(|f| (f.plan.onset.millis(), f.end().0.millis()))
        .collect();
    assert!(
        opts.hours >= 6.0 && faults.len() >= 10,
        "{} faults",
        faults.len()
    );
    let overlapping = faults
        .iter()
        .enumerate()
        .any(|(i, a)| faults[i + 1..].iter().any(|b| b.0 < a.1 && a.0 < b.1));
    assert!(overlapping, "no two faults overlap: {faults:?}");
    let cats: BTreeSet<_> = world
        .faults
        .iter()
        .map(|f| f.plan.kind.category())
        .collect();
    assert_eq!(
        cats.len(),
        Category::ALL.len(),
        "every category once at least"
    );

    let (mut bad, mut stacks, mut upstream_errors, mut outside) = (0usize, 0usize, 0usize, 0usize);
    let mut events = Vec::new();
    for l in &lines {
        match decode_event(l) {
            Ok(e) => events.push(e),
            Err(_) => bad += 1,
        }
    }
    for e in &events {
        stacks += e.stack_trace.is_some() as usize;
        if e.kind == EventKind::Error && e.severity >= Severity::Error && e.upstream.is_some() {
            upstream_errors += 1;
            let m = e.time.millis();
            let in_fault = faults
                .iter()
                .any(|(a, b)| m >= a - 60_000 && m <= b + 5 * 60_000);
            outside += (!in_fault) as usize;
        }
    }
    let n = events.len();
    assert!(n > 50_000, "{n} events");
    assert!(bad > 0 && bad * 500 < n, "{bad} malformed of {n}");
    assert!(stacks * 20 > n, "stack traces on {stacks} of {n}");
    // Faults are loud, so most such errors fall in fault windows; the
    // chronic share is still thousands of errors, all day.
    assert!(
        outside * 10 >= upstream_errors && outside > 2_000,
        "chronic edge noise: {outside} of {upstream_errors} caller errors naming an upstream are outside fault windows"
    );
    let text = |needle: &str| {
        lines
            .iter()
            .any(|l| l.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    for needle in [
        "+02:00\"",
        "\"@timestamp\"",
        "\"time\":17",
        "\"WARN\"",
        "\"zone\"",
        "\"reason\":\"BackOff\"",
    ] {
        assert!(text(needle), "no event carries {needle}");
    }
}

/// Floors on the production profile (chronic edge noise, cron jobs, retry
/// storms, overlapping faults), shortened to three hours at half volume so
/// a debug build stays within a few minutes. Seeds 31 and 32 are test seeds:
/// neither tuned on (101-110) nor among the scorecard's evaluation seeds
/// (1-20). The full scorecard is `examples/diagnosis_eval.rs`.
#[test]
fn production_profile_floors_hold() {
    use reflex::sim::demo::Profile;
    let (mut faults, mut own, mut roots, mut false_incidents, mut hours) = (0, 0, 0, 0, 0.0);
    for seed in [31, 32] {
        let opts = DemoOptions {
            seed,
            faults: 5,
            hours: 3.0,
            narrate: false,
            volume: 0.5,
            ..DemoOptions::for_profile(Profile::Production)
        };
        let r = run(&opts).report;
        let shown = format!("seed {seed}:\n{r}");
        assert!(
            r.rows.iter().all(|x| x.detected),
            "a fault went undetected; {shown}"
        );
        assert!(
            r.overstayed.is_empty(),
            "an incident stayed open 30 minutes past its fault; {shown}"
        );
        assert!(r.largest_incident <= 30, "{shown}");
        faults += r.rows.len();
        own += r.own_within_5m();
        roots += r.roots_found();
        false_incidents += r.false_incidents.len();
        hours += r.sim_hours;
    }
    assert!(
        own * 10 >= faults * 8,
        "own incident within 5 minutes for {own}/{faults}"
    );
    assert!(
        roots * 10 >= faults * 8,
        "root cause found for {roots}/{faults}"
    );
    assert!(
        (false_incidents as f64) <= 1.5 * hours,
        "{false_incidents} false incidents in {hours} hours"
    );
}

/// With `[recovery] dry_run = true` the simulated executor, like the real
/// ones, refuses every action (all have the decision `dry_run`) and reports
/// `skipped_dry_run`; nothing in the simulated fleet is changed.
#[test]
fn dry_run_actions_are_skipped_by_the_simulated_executor() {
    let mut cfg = Config::embedded().expect("embedded config");
    cfg.recovery.dry_run = true;
    let opts = small(3, &[Category::MemoryExhaustion]);
    let run = demo::run(&cfg, &opts, &mut std::io::sink()).expect("demo runs");
    let actions: Vec<_> = run
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Action(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(!actions.is_empty(), "the fault was diagnosed and acted on");
    assert!(actions.iter().all(|a| a.decision == Decision::DryRun));
    assert_eq!(run.results.len(), actions.len(), "{:?}", run.results);
    assert!(run
        .results
        .iter()
        .all(|r| r.status == reflex::model::ActionStatus::SkippedDryRun));
}
