//! The ops API's hardening (`[telemetry.api]`), over real HTTP against the
//! in-process server: body limit (413), per-client rate limit on the
//! mutating routes (429 + Retry-After), bearer token access (401 +
//! WWW-Authenticate, 403 without a configured token), the optional token on
//! read-only routes, the request timeout (408; a connection that never
//! finishes its headers is closed), and JSON error bodies
//! `{"error", "message"}` throughout.

use reflex::config::telemetry::{ApiConfig, TelemetryConfig};
use reflex::model::DurationMs;
use reflex::telemetry::approvals::ApprovalOutcome;
use reflex::telemetry::{server, Readiness, Telemetry};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "s3cret-token";
/// The one action the fake pipeline knows; every other id is not found.
const PENDING: &str = "act-pending";

struct Server {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

/// Serves a hub with `api` limits; `token` configured or not. A drain task
/// plays the pipeline thread: [`PENDING`] is approved once, then already
/// decided; anything else is not found.
fn serve(api: ApiConfig, token: Option<&str>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = TelemetryConfig {
        api,
        ..TelemetryConfig::default()
    };
    let t = Arc::new(Telemetry::new(Arc::default(), Readiness::embedded(), &cfg));
    t.set_api_token(token.map(|t| t.as_bytes().to_vec()));
    t.approvals.attach();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(server::serve(listener, t.clone()));
    rt.spawn(async move {
        let mut decided = false;
        loop {
            for cmd in t.approvals.drain() {
                let outcome = match (cmd.action_id.as_str(), decided) {
                    (PENDING, false) => {
                        decided = true;
                        ApprovalOutcome::Done
                    }
                    (PENDING, true) => ApprovalOutcome::AlreadyDecided,
                    _ => ApprovalOutcome::NotFound,
                };
                let _ = cmd.reply.send(outcome);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    Server { addr, _rt: rt }
}

/// A parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The JSON error body; panics unless it is one of the API's.
    fn error(&self) -> (String, String) {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("application/json"), "{self:?}");
        let v: Value = serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"));
        let kind = v["error"].as_str().unwrap_or_else(|| panic!("{self:?}"));
        let msg = v["message"].as_str().unwrap_or_else(|| panic!("{self:?}"));
        assert!(!msg.is_empty(), "{self:?}");
        (kind.to_string(), msg.to_string())
    }
}

/// Sends `head` (request line and headers, without the blank line) then
/// `body` and reads the whole answer (`Connection: close`).
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (and stop reading) before the body is all sent.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

fn parse(buf: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1");
    if let Some(t) = token {
        head.push_str(&format!("\r\nAuthorization: Bearer {t}"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ));
    }
    raw(addr, &head, body.as_bytes())
}

fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Answer {
    request(addr, "POST", path, token, body)
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    request(addr, "GET", path, token, "")
}

fn approve_path(id: &str) -> String {
    format!("/api/actions/{id}/approve")
}

#[test]
fn an_oversized_body_is_refused_with_413_whether_declared_or_streamed() {
    let s = serve(
        ApiConfig {
            max_body_bytes: 256,
            ..ApiConfig::default()
        },
        Some(TOKEN),
    );
    let big = format!("{{\"by\": \"{}\"}}", "x".repeat(2000));
    // Declared too large: refused before the body is read.
    let a = post(s.addr, &approve_path(PENDING), Some(TOKEN), &big);
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.error().0, "payload_too_large");
    // No length declared (chunked): cut off while reading.
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let a = raw(
        s.addr,
        &format!(
            "POST {} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked",
            approve_path(PENDING)
        ),
        chunked.as_bytes(),
    );
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.error().0, "payload_too_large");
    // Nothing was decided by those: a small body still approves.
    let a = post(
        s.addr,
        &approve_path(PENDING),
        Some(TOKEN),
        r#"{"by": "ops"}"#,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["decision"], "approved");
    assert_eq!(v["by"], "ops");
}

#[test]
fn a_burst_beyond_the_limit_is_refused_with_429_and_retry_after() {
    // Refill of one an hour: nothing comes back during the test.
    let s = serve(
        ApiConfig {
            mutating_burst: 3,
            mutating_refill: DurationMs(3_600_000),
            ..ApiConfig::default()
        },
        Some(TOKEN),
    );
    for i in 0..3 {
        let a = post(s.addr, &approve_path("act-unknown"), Some(TOKEN), "");
        assert_eq!(a.status, 404, "request {i}: {a:?}");
        assert_eq!(a.error().0, "not_found");
    }
    let a = post(s.addr, &approve_path(PENDING), Some(TOKEN), "");
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.error().0, "rate_limited");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {a:?}"));
    assert!((3000..=3600).contains(&retry), "{retry}");
    // The reject route shares the client's bucket, and the limit comes
    // before the token check (guessing tokens is limited too).
    let a = post(s.addr, "/api/actions/act-unknown/reject", Some("guess"), "");
    assert_eq!(a.status, 429, "{a:?}");
    // Read-only routes are not limited.
    let a = get(s.addr, "/api/incidents", None);
    assert_eq!(a.status, 200, "{a:?}");
    // Both refusals are counted.
    let m = get(s.addr, "/metrics", None);
    assert!(
        m.body
            .contains("reflex_api_requests_refused_total{reason=\"rate_limited\"} 2\n"),
        "{}",
        m.body
    );
}

#[test]
fn a_missing_or_wrong_token_is_401_and_no_configured_token_is_403() {
    let s = serve(ApiConfig::default(), Some(TOKEN));
    let a = post(s.addr, &approve_path(PENDING), None, "");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.error().0, "unauthorized");
    assert!(
        a.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{a:?}"
    );
    let a = post(s.addr, &approve_path(PENDING), Some("wrong"), "");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.error().0, "unauthorized");
    let a = post(
        s.addr,
        "/api/actions/act-pending/reject",
        Some(&TOKEN[..TOKEN.len() - 1]),
        "",
    );
    assert_eq!(a.status, 401, "a prefix of the token: {a:?}");

    // With the token: the decision outcomes, as JSON too.
    let a = post(s.addr, &approve_path(PENDING), Some(TOKEN), "");
    assert_eq!(a.status, 200, "{a:?}");
    let a = post(s.addr, &approve_path(PENDING), Some(TOKEN), "");
    assert_eq!((a.status, a.error().0.as_str()), (409, "conflict"), "{a:?}");
    let a = post(s.addr, &approve_path(PENDING), Some(TOKEN), "{not json");
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (400, "bad_request"),
        "{a:?}"
    );

    let m = get(s.addr, "/metrics", None).body;
    assert!(
        m.contains("reflex_api_requests_refused_total{reason=\"unauthorized\"} 3\n"),
        "{m}"
    );

    let closed = serve(ApiConfig::default(), None);
    let a = post(closed.addr, &approve_path(PENDING), Some(TOKEN), "");
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(a.error().0, "forbidden");
}

#[test]
fn read_only_routes_need_the_token_only_when_protected_and_probes_stay_open() {
    let open = serve(ApiConfig::default(), Some(TOKEN));
    assert_eq!(get(open.addr, "/api/incidents", None).status, 200);
    assert_eq!(get(open.addr, "/api/board", None).status, 200);

    let s = serve(
        ApiConfig {
            protect_read_only: true,
            ..ApiConfig::default()
        },
        Some(TOKEN),
    );
    for path in ["/api/incidents", "/api/board", "/api/report", "/api/stream"] {
        let a = get(s.addr, path, None);
        assert_eq!(a.status, 401, "{path}: {a:?}");
        assert_eq!(a.error().0, "unauthorized");
        assert_eq!(get(s.addr, path, Some("wrong")).status, 401, "{path}");
    }
    let a = get(s.addr, "/api/incidents", Some(TOKEN));
    assert_eq!(a.status, 200, "{a:?}");
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert!(v["incidents"].is_array(), "{a:?}");
    assert_eq!(get(s.addr, "/api/board", Some(TOKEN)).status, 200);

    // Probes, scrapers and the page itself stay open.
    let a = get(s.addr, "/health", None);
    assert_eq!((a.status, a.body.as_str()), (200, "ok\n"), "{a:?}");
    let a = get(s.addr, "/metrics", None);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("reflex_ready"), "{a:?}");
    assert_eq!(get(s.addr, "/", None).status, 200);
    // Not ready (no pipeline runs here): 503, JSON naming what it waits for.
    let a = get(s.addr, "/ready", None);
    assert_eq!(a.status, 503, "{a:?}");
    let (kind, msg) = a.error();
    assert_eq!(kind, "unavailable");
    assert!(msg.contains("pipeline"), "{msg}");
}

#[test]
fn a_request_that_does_not_complete_in_time_is_408() {
    let s = serve(
        ApiConfig {
            request_timeout: DurationMs(300),
            ..ApiConfig::default()
        },
        Some(TOKEN),
    );
    // Ten bytes announced, two sent: the server gives up at its deadline.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{{}}",
        approve_path(PENDING)
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let a = parse(&buf);
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.error().0, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let s = serve(
        ApiConfig {
            request_timeout: DurationMs(300),
            ..ApiConfig::default()
        },
        Some(TOKEN),
    );
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // No blank line: the headers never end.
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = c.read_to_end(&mut buf);
    assert!(read.is_ok(), "not closed by the server: {read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The server still serves others.
    assert_eq!(get(s.addr, "/health", None).status, 200);
}

#[test]
fn errors_from_routing_and_extractors_are_json_too() {
    let s = serve(ApiConfig::default(), Some(TOKEN));
    let a = get(s.addr, "/api/nope", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (404, "not_found"),
        "{a:?}"
    );
    let a = get(s.addr, "/api/incidents?status=bogus", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (400, "bad_request"),
        "{a:?}"
    );
    let a = get(s.addr, "/api/incidents?unknown=1", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (400, "bad_request"),
        "{a:?}"
    );
    let a = get(s.addr, "/api/report?format=pdf", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (400, "bad_request"),
        "{a:?}"
    );
    // A mutating route is guarded whatever the method: the token first.
    assert_eq!(get(s.addr, &approve_path(PENDING), None).status, 401);
    let a = get(s.addr, &approve_path(PENDING), Some(TOKEN));
    assert_eq!(a.status, 405, "{a:?}");
    assert_eq!(a.error().0, "method_not_allowed");
    assert!(a.header("allow").is_some(), "{a:?}");
}
