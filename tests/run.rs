//! End-to-end tests of `reflex run` (embedded mode) through the real binary:
//! incidents and decisions from a fault, dead letters, determinism, config
//! errors.

use reflex::model::{Category, EventTime};
use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn reflex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reflex"))
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let o = reflex()
        .args(["run", "--input"])
        .arg(input)
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "reflex run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn oom_fault(cfg: &GenConfig, service: &str, at_ms: i64) -> Fault {
    Fault {
        service: service.into(),
        start: cfg.start.plus_ms(at_ms),
        duration_ms: 8 * 60_000,
        rate: 3.0,
        message: "java.lang.OutOfMemoryError: Java heap space (request {id})".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    }
}

#[test]
fn error_burst_on_one_service_becomes_one_incident_and_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::shop(7, 3 * 3_600_000);
    cfg.faults.push(oom_fault(&cfg, "payments", 3_600_000));
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, to_jsonl(&generate(&cfg))).unwrap();
    let out = dir.path().join("out");
    let o = run(&input, &out, &[]);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("events/s"), "{summary}");

    let incidents = read_jsonl(&out.join("incidents.jsonl"));
    let ids: std::collections::BTreeSet<&str> = incidents
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "exactly one incident for one fault: {incidents:#?}"
    );
    let first = &incidents[0];
    assert_eq!(first["status"], "open");
    assert_eq!(
        first["root_cause_service"], "payments",
        "callers (checkout) are louder but not the cause"
    );
    assert_eq!(first["category"], Category::MemoryExhaustion.as_str());
    let opened = EventTime::parse_rfc3339(first["opened_at"].as_str().unwrap()).unwrap();
    assert!(opened >= cfg.start.plus_ms(3_600_000) && opened <= cfg.start.plus_ms(3_660_000));
    assert!(
        incidents.iter().any(|i| i["status"] == "resolved"),
        "quiet after the fault ⇒ resolved"
    );
    assert!(first["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "checkout"));
    assert!(!first["evidence"].as_array().unwrap().is_empty());

    let actions = read_jsonl(&out.join("actions.jsonl"));
    let escalations = read_jsonl(&out.join("escalations.jsonl"));
    assert!(!actions.is_empty() || !escalations.is_empty());
    for a in &actions {
        assert_eq!(a["target"]["service"], "payments", "never act on a victim");
        assert_eq!(a["type"], "restart");
        assert_eq!(a["incident_id"], first["incident_id"]);
    }
}

#[test]
fn noise_alone_opens_no_incident() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::shop(11, 6 * 3_600_000);
    cfg.noise_rate = 0.3; // ~18 background events per minute per service
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, to_jsonl(&generate(&cfg))).unwrap();
    let out = dir.path().join("out");
    run(&input, &out, &[]);
    assert_eq!(
        read_jsonl(&out.join("incidents.jsonl")),
        Vec::<Value>::new()
    );
}

#[test]
fn malformed_lines_become_exactly_that_many_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::shop(3, 2 * 3_600_000);
    cfg.faults.push(oom_fault(&cfg, "payments", 1_800_000));
    let good = to_jsonl(&generate(&cfg));
    let good_lines: Vec<&[u8]> = good
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let bad: Vec<&[u8]> = vec![
        b"{this is not json",
        b"[\"an\", \"array\"]",
        br#"{"id":"x","time":0,"severity":"error","message":"no service"}"#,
        br#"{"id":"x","time":"soon","service":"a","severity":"error","message":"m"}"#,
        br#"{"id":"x","time":0,"service":"a","severity":"apocalyptic","message":"m"}"#,
        br#"{"id":"x","time":0,"service":"a","severity":"error","message":"m","http_status":true}"#,
        &[0xc3, 0x28, b'{', b'}'],
        b"42",
    ];
    let mut input = Vec::new();
    let mut bad_line_numbers = Vec::new();
    let stride = good_lines.len() / (bad.len() + 1);
    let mut b = 0;
    for (i, l) in good_lines.iter().enumerate() {
        if b < bad.len() && i > 0 && i % stride == 0 {
            input.extend_from_slice(bad[b]);
            input.push(b'\n');
            bad_line_numbers.push(i as i64 + b as i64 + 1);
            b += 1;
        }
        input.extend_from_slice(l);
        input.extend_from_slice(b"\r\n");
    }
    assert_eq!(b, bad.len());
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, &input).unwrap();
    let out = dir.path().join("out");
    let o = run(&path, &out, &[]);
    let dlq = read_jsonl(&out.join("dlq.jsonl"));
    assert_eq!(dlq.len(), bad.len(), "one dead letter per bad line");
    use base64::Engine;
    for (d, (raw, line)) in dlq.iter().zip(bad.iter().zip(&bad_line_numbers)) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(d["raw"].as_str().unwrap())
            .unwrap();
        assert_eq!(&decoded[..], *raw, "raw bytes preserved");
        assert_eq!(
            d["source_offset"].as_i64(),
            Some(*line),
            "line number recorded"
        );
        assert!(!d["reason"].as_str().unwrap().is_empty());
        assert!(d["reason_kind"].is_string());
    }
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains(&format!("dead letters {:>15}", bad.len()))
            || summary.contains(&format!("{}", bad.len()))
    );
    // The good events around them still flowed.
    let incidents = read_jsonl(&out.join("incidents.jsonl"));
    assert!(incidents
        .iter()
        .any(|i| i["root_cause_service"] == "payments"));
}

#[test]
fn same_input_gives_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::shop(5, 3 * 3_600_000);
    cfg.faults.push(oom_fault(&cfg, "payments", 1_800_000));
    cfg.faults.push(Fault {
        with_deploy: true,
        message: "NullPointerException in OrderService.place".into(),
        error_type: Some("java.lang.NullPointerException".into()),
        ..oom_fault(&cfg, "catalog", 7_200_000)
    });
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, to_jsonl(&generate(&cfg))).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&input, &a, &[]);
    run(&input, &b, &[]);
    let mut nonempty = 0;
    for f in ["detections", "incidents", "actions", "escalations", "dlq"] {
        let x = std::fs::read(a.join(format!("{f}.jsonl"))).unwrap();
        let y = std::fs::read(b.join(format!("{f}.jsonl"))).unwrap();
        assert_eq!(x, y, "{f}.jsonl differs between two runs");
        nonempty += usize::from(!x.is_empty());
    }
    assert!(
        nonempty >= 3,
        "the determinism check must cover real output"
    );
    // The deploy before the catalog fault makes it a bad deploy with a rollback.
    let incidents = read_jsonl(&a.join("incidents.jsonl"));
    assert!(incidents
        .iter()
        .any(|i| i["root_cause_service"] == "catalog" && i["category"] == "bad_deploy"));
}

#[test]
fn stdin_input_works() {
    let dir = tempfile::tempdir().unwrap();
    let line = br#"{"id":"1","time":0,"service":"a","severity":"error","message":"m"}"#;
    let mut child = reflex()
        .args(["run", "--input", "-", "--output-dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\nnot json\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(read_jsonl(&dir.path().join("dlq.jsonl")).len(), 1);
    assert_eq!(
        read_jsonl(&dir.path().join("dlq.jsonl"))[0]["source_topic"],
        "-"
    );
}

#[test]
fn config_errors_are_all_reported_with_file_and_key_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        r#"
[pipeline]
batch_size = 0
[detectors.threshold]
[[detectors.threshold.rules]]
name = "a"
threshold = -1
window = "1 fortnight"
[diagnosis]
min_open_score = 7
signatures = "missing.yaml"
[recovery]
auto_max_risk = 0.9
approval_max_risk = 0.5
bogus = 1
[surprise]
x = 1
"#,
    )
    .unwrap();
    let o = reflex()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "pipeline.batch_size",
        "detectors.threshold.rules[0].window",
        "diagnosis.min_open_score",
        "diagnosis.signatures",
        "recovery.bogus",
        "surprise",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains("bad.toml"), "{err}");
    // `run` refuses the same config with the same exit code.
    let o = reflex()
        .args(["run", "--input", "-", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // The embedded default is valid.
    let o = reflex().arg("validate").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_rule_files_are_reported_per_item() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sig.yaml"),
        "- {name: a, category: memory_exhaustion, weight: 0.5, message: '('}\n- {name: b, category: not_a_category, weight: 0.5, message: x}\n- {name: c, category: overload, weight: 3, message: y}\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[diagnosis]\nsignatures = \"sig.yaml\"\n").unwrap();
    let o = reflex()
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sig.yaml: [1]"), "{err}");
    assert!(err.contains("sig.yaml: [2].weight"), "{err}");
}

#[test]
fn action_results_file_feeds_verification_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::shop(7, 3 * 3_600_000);
    cfg.faults.push(oom_fault(&cfg, "payments", 3_600_000));
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, to_jsonl(&generate(&cfg))).unwrap();
    let plain = dir.path().join("plain");
    run(&input, &plain, &[]);
    let actions = read_jsonl(&plain.join("actions.jsonl"));
    let a = actions
        .iter()
        .find(|a| a["decision"] == "auto")
        .expect("an automatic action");
    let created = EventTime::parse_rfc3339(a["created_at"].as_str().unwrap()).unwrap();
    let result = serde_json::json!({
        "action_id": a["action_id"],
        "idempotency_key": a["idempotency_key"],
        "status": "succeeded",
        "detail": "restarted",
        "finished_at": created.plus_ms(60_000).to_rfc3339(),
        "executor": "test",
    });
    let results = dir.path().join("results.jsonl");
    std::fs::write(&results, format!("{result}\n\n")).unwrap();
    let arg = results.to_str().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    run(&input, &one, &["--action-results", arg]);
    run(&input, &two, &["--action-results", arg]);
    for topic in ["incidents", "actions", "escalations"] {
        let f = format!("{topic}.jsonl");
        assert_eq!(
            std::fs::read(one.join(&f)).unwrap(),
            std::fs::read(two.join(&f)).unwrap(),
            "{topic} differ between identical replays"
        );
    }
    // The result was used: verification ran (the fault outlived the restart,
    // so the ladder moved on), which the run without results never does.
    assert_ne!(
        std::fs::read(plain.join("actions.jsonl")).unwrap(),
        std::fs::read(one.join("actions.jsonl")).unwrap()
    );

    std::fs::write(&results, "{not json\n").unwrap();
    let o = reflex()
        .args(["run", "--input"])
        .arg(&input)
        .arg("--output-dir")
        .arg(dir.path().join("bad"))
        .args(["--action-results", arg])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 1"));
}
