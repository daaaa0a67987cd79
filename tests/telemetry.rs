//! Observability end to end through the real binary: `/metrics` scraped from
//! a running `reflex run --http` (checked by `promtool check metrics`),
//! readiness and the live `/api/stream`, and one incident's spans arriving
//! as one trace at an in-test OTLP/gRPC receiver.

#[path = "support/otlp.rs"]
mod otlp;

use reflex::config::EMBEDDED_CONFIG;
use reflex::sim::gen::{generate, to_jsonl, Fault, GenConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn reflex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reflex"))
}

/// A small shop for 3 hours with an out-of-memory fault in `payments` at 1 h.
fn fault_events() -> Vec<u8> {
    let mut cfg = GenConfig::shop(7, 3 * 3_600_000);
    cfg.faults.push(Fault {
        service: "payments".into(),
        start: cfg.start.plus_ms(3_600_000),
        duration_ms: 8 * 60_000,
        rate: 3.0,
        message: "java.lang.OutOfMemoryError: Java heap space (request {id})".into(),
        error_type: Some("java.lang.OutOfMemoryError".into()),
        with_deploy: false,
    });
    to_jsonl(&generate(&cfg))
}

/// The embedded config with one event per batch, so stdin input is
/// processed line by line as the test writes it.
fn line_by_line_config(dir: &Path) -> std::path::PathBuf {
    let text = EMBEDDED_CONFIG.replace("batch_size = 1024", "batch_size = 1");
    assert_ne!(text, EMBEDDED_CONFIG);
    let p = dir.join("reflex.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `reflex run --http 127.0.0.1:0 ...`, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], stdin: bool) -> Running {
    let mut child = reflex()
        .args(["run", "--http", "127.0.0.1:0"])
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.strip_prefix("reflex: http listening on ") {
                let _ = tx.send(a.trim().parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(DEADLINE)
        .expect("reflex did not report its http address");
    let stdin = child.stdin.take();
    Running { child, addr, stdin }
}

/// A plain HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = get_with_head(addr, path);
    (status, body)
}

/// A plain HTTP/1.1 GET: (status, response head, body).
fn get_with_head(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body.as_bytes())
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut b: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
    String::from_utf8(out).unwrap()
}

/// Polls `f` until it returns `Some`, or panics at the deadline.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// The value of one sample (`name{labels}` exactly as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn promtool() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
}

#[test]
fn metrics_scrape_passes_promtool_and_counters_move_with_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = line_by_line_config(dir.path());
    let out = dir.path().join("out");
    let mut r = start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            "-",
            "--output-dir",
            out.to_str().unwrap(),
            "--hold",
        ],
        true,
    );
    let events = fault_events();
    let lines: Vec<&[u8]> = events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let half = lines.len() / 2;
    let events_in = "reflex_events_in_total{topic=\"errors\"}";

    let (status, head, m0) = get_with_head(r.addr, "/metrics");
    assert_eq!(status, 200);
    // The body is text format 0.0.4 (what promtool reads below), and says so.
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(!m0.contains("# EOF"), "OpenMetrics served as text 0.0.4");
    assert_eq!(sample(&m0, events_in), Some(0.0), "{m0}");

    let mut stdin = r.stdin.take().unwrap();
    for l in &lines[..half] {
        stdin.write_all(l).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    stdin.write_all(b"{not json\n").unwrap();
    stdin.write_all(b"{\"id\":\"x\"}\n").unwrap();
    stdin.flush().unwrap();
    let expect_half = (half + 2) as f64;
    poll("the first half to be counted", || {
        let (_, m) = get(r.addr, "/metrics");
        (sample(&m, events_in) == Some(expect_half)).then_some(())
    });
    for l in &lines[half..] {
        stdin.write_all(l).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin); // end of input: the run flushes and --hold keeps serving
    let total = (lines.len() + 2) as f64;
    let m = poll("every event to be counted and the run to finish", || {
        let (_, m) = get(r.addr, "/metrics");
        let done = sample(&m, events_in) == Some(total)
            && sample(
                &m,
                "reflex_incidents_opened_total{category=\"memory_exhaustion\"}",
            ) == Some(1.0);
        done.then_some(m)
    });
    let s = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("{series} missing:\n{m}"));
    assert_eq!(
        s("reflex_dead_letters_total{reason_kind=\"invalid_json\"}"),
        1.0
    );
    assert_eq!(
        s("reflex_dead_letters_total{reason_kind=\"invalid_event\"}"),
        1.0
    );
    assert_eq!(s("reflex_events_out_total{topic=\"reflex.dlq\"}"), 2.0);
    assert!(s("reflex_detections_total{detector=\"threshold\"}") >= 1.0);
    assert!(s("reflex_events_out_total{topic=\"reflex.detections\"}") >= 1.0);
    assert!(s("reflex_events_out_total{topic=\"reflex.incidents\"}") >= 1.0);
    assert_eq!(
        s("reflex_actions_total{type=\"restart\",decision=\"auto\"}"),
        1.0,
        "{m}"
    );
    assert!(s("reflex_stage_batch_duration_seconds_count{stage=\"detect\"}") > 0.0);
    assert_eq!(s("reflex_consumer_lag_records{topic=\"errors\"}"), 0.0);
    assert_eq!(s("reflex_ready"), 1.0);
    assert!(s("reflex_state_entries{store=\"detector_keys\"}") > 0.0);
    assert!(m.contains("# TYPE reflex_guard_holds_total counter"));
    assert!(m.contains("reflex_circuit_breaker_open{breaker=\"recovery\"} 0"));

    match promtool() {
        Some(p) => {
            let mut c = Command::new(p)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "promtool check metrics failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            // Lint findings go to stderr with exit 0 in some versions: none allowed.
            let lint = String::from_utf8_lossy(&o.stderr);
            assert!(lint.trim().is_empty(), "promtool findings:\n{lint}");
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("promtool is not on PATH (apt-get install prometheus); required under CI=true")
        }
        None => {
            eprintln!("SKIPPED promtool check: promtool not on PATH (apt-get install prometheus)")
        }
    }
    drop(r);
}

/// Reads server-sent events (chunked) as (event, data) pairs.
struct SseReader {
    s: BufReader<TcpStream>,
    buf: String,
}

impl SseReader {
    fn open(addr: SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            s,
            "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut s = BufReader::new(s);
        let mut line = String::new();
        s.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "{line}");
        let mut chunked = false;
        loop {
            line.clear();
            s.read_line(&mut line).unwrap();
            if line
                .to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
            {
                chunked = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        assert!(chunked, "expected a chunked event stream");
        SseReader {
            s,
            buf: String::new(),
        }
    }

    fn next_chunk(&mut self) {
        let mut size = String::new();
        self.s.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        assert!(n > 0, "stream ended");
        let mut data = vec![0u8; n + 2];
        self.s.read_exact(&mut data).unwrap();
        self.buf.push_str(std::str::from_utf8(&data[..n]).unwrap());
    }

    /// The next event with a name (keep-alive comments are skipped).
    fn next(&mut self) -> (String, String) {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for l in block.lines() {
                    if let Some(v) = l.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = l.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !event.is_empty() {
                    return (event, data);
                }
            }
            self.next_chunk();
        }
    }
}

#[test]
fn stream_delivers_an_incident_and_its_action_live_and_ready_waits_for_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = line_by_line_config(dir.path());
    let out = dir.path().join("out");
    let mut r = start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            "-",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        true,
    );
    assert_eq!(get(r.addr, "/health").0, 200);
    // Nothing has been written to stdin: the pipeline has no input yet.
    let (status, body) = get(r.addr, "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("pipeline"), "{body}");

    let mut sse = SseReader::open(r.addr);
    assert_eq!(sse.next().0, "subscribed");

    // Feed events up to 30 minutes of event time after the fault began, and
    // keep stdin open: whatever arrives now happens while we watch.
    let events = fault_events();
    let start_ms = GenConfig::shop(7, 0).start.millis();
    let cutoff = start_ms + 3_600_000 + 30 * 60_000;
    let mut stdin = r.stdin.take().unwrap();
    for l in events.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let t = reflex::model::EventTime::parse_rfc3339(v["time"].as_str().unwrap())
            .map(|t| t.millis())
            .or_else(|| v["time"].as_i64())
            .unwrap();
        if t > cutoff {
            break;
        }
        stdin.write_all(l).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    stdin.flush().unwrap();

    let mut incident: Option<Value> = None;
    let mut action: Option<Value> = None;
    while incident.is_none() || action.is_none() {
        let (event, data) = sse.next();
        let v: Value = serde_json::from_str(&data).unwrap();
        match event.as_str() {
            "incident" if v["status"] == "open" && incident.is_none() => incident = Some(v),
            "action" => action = Some(v),
            _ => {}
        }
    }
    let (incident, action) = (incident.unwrap(), action.unwrap());
    assert_eq!(incident["root_cause_service"], "payments");
    assert_eq!(incident["category"], "memory_exhaustion");
    assert_eq!(action["incident_id"], incident["incident_id"]);
    assert_eq!(action["type"], "restart");
    assert_eq!(action["target"]["service"], "payments");
    // The process is still reading stdin, so this happened live.
    assert!(r.child.try_wait().unwrap().is_none());

    let (status, body) = get(r.addr, "/ready");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(r.addr, "/api/incidents?status=open&service=payments");
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&Value> = listed["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["incident_id"])
        .collect();
    assert_eq!(ids, vec![&incident["incident_id"]], "{body}");
    let (_, body) = get(r.addr, "/api/incidents?service=nobody");
    assert_eq!(body, r#"{"incidents":[]}"#);
    assert_eq!(get(r.addr, "/api/incidents?status=bogus").0, 400);

    drop(stdin);
    let status = poll("reflex to exit at end of input", || {
        r.child.try_wait().unwrap()
    });
    assert!(status.success());
}

#[test]
fn one_incident_arrives_as_one_trace_at_an_otlp_receiver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, received) = rt.block_on(otlp::start(true));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, fault_events()).unwrap();
    let out = dir.path().join("out");
    let o = reflex()
        .args(["run", "--input"])
        .arg(&input)
        .arg("--output-dir")
        .arg(&out)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let incidents: Vec<Value> = std::fs::read_to_string(out.join("incidents.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id = incidents[0]["incident_id"].as_str().unwrap().to_string();
    assert!(
        received
            .metric_requests
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0,
        "the pipeline counters are exported over OTLP too (final flush at shutdown)"
    );
    let spans = received.spans.lock().unwrap().clone();
    let mine: Vec<_> = spans
        .iter()
        .filter(|(_, s)| otlp::attrs(s).get("incident.id") == Some(&id))
        .collect();
    assert!(
        !mine.is_empty(),
        "no span of {id} among {} spans",
        spans.len()
    );
    assert!(mine.iter().all(|(svc, _)| svc == "reflex"));

    // One trace, and its id is derived from the incident id.
    let trace_ids: std::collections::BTreeSet<&Vec<u8>> =
        mine.iter().map(|(_, s)| &s.trace_id).collect();
    assert_eq!(
        trace_ids.len(),
        1,
        "spans of one incident in several traces"
    );
    let expect = {
        use sha2::Digest;
        sha2::Sha256::digest(id.as_bytes())[..16].to_vec()
    };
    assert_eq!(*trace_ids.iter().next().unwrap(), &expect);
    // Nothing else is in that trace.
    assert_eq!(
        spans.iter().filter(|(_, s)| s.trace_id == expect).count(),
        mine.len()
    );

    let named = |n: &str| {
        mine.iter()
            .filter(|(_, s)| s.name == n)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    let root = named("incident");
    assert_eq!(root.len(), 1, "one root span");
    let root = root[0];
    assert!(
        root.parent_span_id.is_empty(),
        "the incident span is the root"
    );
    let ra = otlp::attrs(root);
    assert_eq!(ra["incident.category"], "memory_exhaustion");
    assert_eq!(ra["incident.root_cause_service"], "payments");
    for n in ["detection", "diagnosis", "decision", "action"] {
        assert!(
            !named(n).is_empty(),
            "no {n} span: {:?}",
            mine.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
    }
    for (_, s) in &mine {
        if s.name != "incident" && s.name != "action" {
            assert_eq!(
                s.parent_span_id, root.span_id,
                "{} hangs off the root",
                s.name
            );
        }
    }
    let det = otlp::attrs(named("detection")[0]);
    assert!(det.contains_key("detection.detector") && det.contains_key("detection.score"));
    let diag = otlp::attrs(named("diagnosis")[0]);
    assert_eq!(diag["incident.category"], "memory_exhaustion");
    let action = named("action")[0];
    let aa = otlp::attrs(action);
    assert_eq!(aa["action.type"], "restart");
    assert_eq!(aa["action.target.service"], "payments");
    assert_eq!(aa["action.decision"], "auto");
    let decision = named("decision")[0];
    assert_eq!(
        action.parent_span_id, decision.span_id,
        "the action hangs off its decision"
    );
    // Timestamps are event time: the root starts when the incident opened.
    let opened =
        reflex::model::EventTime::parse_rfc3339(incidents[0]["opened_at"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        root.start_time_unix_nano,
        opened.millis() as u64 * 1_000_000
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_stage_spans_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, fault_events()).unwrap();
    let o = reflex()
        .args(["run", "--input"])
        .arg(&input)
        .arg("--output-dir")
        .arg(dir.path().join("out"))
        .env("REFLEX_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success());
    let logs: Vec<Value> = String::from_utf8(o.stderr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let opened = logs
        .iter()
        .find(|l| l["fields"]["message"] == "incident" && l["fields"]["status"] == "open")
        .expect("an incident log record");
    assert_eq!(opened["span"]["stage"], "decide");
    assert_eq!(opened["fields"]["category"], "memory_exhaustion");
    assert_eq!(opened["fields"]["root_cause"], "payments");
    assert!(logs
        .iter()
        .any(|l| l["fields"]["message"] == "action" && l["fields"]["decision"] == "auto"));
}
