//! The incident board in a real browser: headless Chromium loads the board
//! served by `reflex demo --http` on a loopback port, sees an incident and
//! its decision arrive through the stream, approves the pending action with
//! the API token, sees the approved action and its result, checks that the
//! console stayed clean and nothing was fetched from another origin, writes
//! a screenshot (`target/tmp/board/board.png`), then drops the stream
//! (stale, reconnecting) and reconnects to a new server on the same port.
//!
//! Without `chromium` on PATH the test is skipped, unless `CI` is set.

#[path = "support/cdp.rs"]
mod cdp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

const TOKEN: &str = "board-test-token";

/// The embedded configuration with every remedy needing approval (auto
/// limit 0) and pending actions valid for two simulated hours.
fn approval_config(dir: &Path) -> PathBuf {
    let base = reflex::config::EMBEDDED_CONFIG;
    assert!(base.contains("auto_max_risk = 0.5") && base.contains("action_ttl = \"15m\""));
    let text = base
        .replacen("auto_max_risk = 0.5", "auto_max_risk = 0.0", 1)
        .replacen("action_ttl = \"15m\"", "action_ttl = \"2h\"", 1);
    let p = dir.join("approval.toml");
    std::fs::write(&p, text).expect("config");
    p
}

/// A demo process, killed when dropped (also when a check panics).
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `reflex demo` with `args`; returns the child and its HTTP address.
fn demo(args: &[&str]) -> (Demo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .arg("demo")
        .args(args)
        .env("REFLEX_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting reflex demo");
    let stderr = child.stderr.take().expect("stderr");
    let child = Demo(child);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("reflex: http listening on ") {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("reflex demo printed its HTTP address");
    (child, addr)
}

fn stop(c: Demo) {
    drop(c);
}

#[test]
fn board_follows_the_stream_and_takes_an_approval() {
    let Some(exe) = cdp::chromium() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = approval_config(dir.path());
    let cfg = cfg.to_str().expect("utf-8 path");
    let (child, addr) = demo(&[
        "--config",
        cfg,
        "--http",
        "127.0.0.1:0",
        "--speed",
        "60",
        "--hold",
    ]);
    let mut b = cdp::Browser::launch(&exe, 1280, 1100);
    b.goto(&format!("http://{addr}/?stale_ms=8000"));
    b.eval_wait(
        "document.getElementById('conn').dataset.state === 'live'",
        Duration::from_secs(30),
    );
    // An incident with its diagnosis and decision, from the stream.
    b.eval_wait(
        "document.querySelector('.incident li[data-kind=diagnosis]') && document.querySelector('.incident li[data-kind=decision]')",
        Duration::from_secs(240),
    );
    let graph = b.eval("document.querySelector('.incident .graph svg').textContent");
    assert!(
        graph.as_str().is_some_and(|t| t.contains("root")),
        "the graph marks the root: {graph}"
    );
    // A pending approval: approve it with the token.
    b.eval_wait(
        "document.querySelector('#pending .pending-item button.approve:not([disabled])')",
        Duration::from_secs(60),
    );
    let action_id = b.eval("document.querySelector('#pending .pending-item').dataset.actionId");
    let action_id = action_id.as_str().expect("an action id").to_string();
    let incident_id = b.eval("document.querySelector('#pending .pending-item').dataset.incidentId");
    let incident_id = incident_id.as_str().expect("the incident").to_string();
    b.eval(&format!(
        "document.querySelector('#pending [data-action-id=\"{action_id}\"] button.approve').click(); true"
    ));
    b.eval_wait(
        "!document.getElementById('modal').hidden",
        Duration::from_secs(10),
    );
    b.eval(&format!(
        "document.getElementById('token-input').value = '{TOKEN}'; document.getElementById('modal-ok').click(); true"
    ));
    // The approved action comes back through the stream, and then its result.
    let card = format!("document.querySelector('.incident[data-id=\"{incident_id}\"]')");
    b.eval_wait(
        &format!(
            "[...{card}.querySelectorAll('li[data-kind=action]')].some(li => li.textContent.includes('Approved') && li.textContent.includes('by board'))"
        ),
        Duration::from_secs(30),
    );
    b.eval_wait(
        &format!("!document.querySelector('#pending [data-action-id=\"{action_id}\"]')"),
        Duration::from_secs(15),
    );
    b.eval_wait(
        &format!("{card}.querySelector('li[data-kind=result]')"),
        Duration::from_secs(60),
    );
    let shown = b.eval("document.body.innerText");
    assert!(
        !shown.as_str().unwrap_or("").contains("undefined"),
        "a field the page reads is missing: {shown}"
    );
    let toast = b.eval("document.getElementById('toast').textContent");
    assert!(
        toast.as_str().is_some_and(|t| t.contains("approved")),
        "the page confirms the approval: {toast}"
    );
    // The value report of the same process counts the approval.
    let approved = b.eval("fetch('/api/report').then(r => r.json()).then(j => j.overall.approved)");
    assert_eq!(
        approved,
        serde_json::json!(1),
        "/api/report sees the approved fix"
    );
    let html = b.eval("fetch('/api/report?format=html&since=1h').then(r => r.text())");
    assert!(html
        .as_str()
        .is_some_and(|h| h.contains("<svg") && h.contains("reflex value report")));
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("board/board.png");
    b.screenshot(&shot);
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
    eprintln!("screenshot: {}", shot.display());

    b.drain_events();
    assert!(b.errors.is_empty(), "console errors: {:#?}", b.errors);
    // (A refused query is logged by the browser, so it comes after the check.)
    let bad = b.eval("fetch('/api/report?since=whenever').then(r => r.status)");
    assert_eq!(bad, serde_json::json!(400));

    // Drop the stream: the page says so, then reconnects to a new server
    // (the refused connections in between are logged by the browser).
    stop(child);
    b.eval_wait(
        "['reconnecting', 'stale'].includes(document.getElementById('conn').dataset.state)",
        Duration::from_secs(15),
    );
    b.eval_wait(
        "document.getElementById('conn').dataset.state === 'stale'",
        Duration::from_secs(30),
    );
    let (child, addr2) = demo(&["--http", &addr, "--hold", "--hours", "1", "--faults", "0"]);
    assert_eq!(addr2, addr);
    b.eval_wait(
        "document.getElementById('conn').dataset.state === 'live'",
        Duration::from_secs(60),
    );
    b.drain_events();
    stop(child);
    let foreign: Vec<&String> = b
        .requests
        .iter()
        .filter(|u| !u.starts_with(&format!("http://{addr}/")))
        .collect();
    assert!(foreign.is_empty(), "fetched from outside: {foreign:?}");
}
