//! A minimal Chrome DevTools Protocol client for browser tests: headless
//! Chromium driven over `--remote-debugging-pipe` (fd 3 in, fd 4 out,
//! NUL-separated JSON), std only.
//!
//! Locating the browser: `REFLEX_TEST_CHROMIUM`, else `chromium` /
//! `chromium-browser` on PATH. [`Browser::find`] returns `None` when there
//! is none and `CI` is unset (the caller skips); under `CI=true` a missing
//! browser panics.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Where Chromium is, or `None` (skip) outside CI.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("REFLEX_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") {
        panic!("CI is set and no chromium was found (scripts/test.sh installs Debian's chromium)");
    }
    eprintln!("skipping the browser checks: no chromium on PATH (set CI=true to make this fail)");
    None
}

/// A headless browser with one page attached.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Every console error, uncaught exception and error log entry so far.
    pub errors: Vec<String>,
    /// Every URL the page requested.
    pub requests: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `exe` headless with an empty profile and opens a blank page.
    pub fn launch(exe: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // The shell maps our pipes to fds 3 and 4, where Chromium expects them.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >/dev/null")
            .arg(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(0, &mut buf) {
                if n == 0 {
                    break;
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            stdin,
            rx,
            next_id: 0,
            session: String::new(),
            errors: Vec::new(),
            requests: Vec::new(),
            _profile: profile,
        };
        let t = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target = t["targetId"].as_str().expect("targetId").to_string();
        let s = b.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = s["sessionId"].as_str().expect("sessionId").to_string();
        for m in [
            "Runtime.enable",
            "Page.enable",
            "Log.enable",
            "Network.enable",
        ] {
            b.call(m, json!({}));
        }
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("encode");
        bytes.push(0);
        self.stdin.write_all(&bytes).expect("writing to chromium");
        self.stdin.flush().expect("flush");
        self.next_id
    }

    fn note(&mut self, ev: &Value) {
        let p = &ev["params"];
        match ev["method"].as_str().unwrap_or("") {
            "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                self.errors
                    .push(format!("console.{}: {}", p["type"], p["args"]));
            }
            "Runtime.exceptionThrown" => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]));
            }
            "Network.requestWillBeSent" => {
                if let Some(u) = p["request"]["url"].as_str() {
                    self.requests.push(u.to_string());
                }
            }
            _ => {}
        }
    }

    fn wait_reply(&mut self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v["id"].as_u64() == Some(id) => {
                    if let Some(e) = v.get("error") {
                        panic!("CDP error: {e}");
                    }
                    return v["result"].clone();
                }
                Ok(v) => self.note(&v),
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer in {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium went away"),
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, false);
        self.wait_reply(id, Duration::from_secs(30))
    }

    /// A command to the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, true);
        self.wait_reply(id, Duration::from_secs(60))
    }

    /// Navigates and waits for the load event.
    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.eval_wait(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
        );
    }

    /// Evaluates `expr` in the page (promises awaited); its value as JSON.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits in the page until the JS expression `cond` is truthy (checked on
    /// every DOM change and at least every 100 ms); panics after `timeout`
    /// with what the page shows.
    pub fn eval_wait(&mut self, cond: &str, timeout: Duration) {
        let js = format!(
            "new Promise((resolve) => {{
               const check = () => {{ try {{ return !!({cond}); }} catch (e) {{ return false; }} }};
               if (check()) return resolve(true);
               const end = Date.now() + {ms};
               const obs = new MutationObserver(() => {{ if (check()) {{ obs.disconnect(); clearInterval(iv); resolve(true); }} }});
               obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
               const iv = setInterval(() => {{
                 if (check()) {{ obs.disconnect(); clearInterval(iv); resolve(true); }}
                 else if (Date.now() > end) {{ obs.disconnect(); clearInterval(iv); resolve(false); }}
               }}, 100);
             }})",
            ms = timeout.as_millis()
        );
        let ok = self.eval(&js);
        if ok != json!(true) {
            let text = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''");
            panic!(
                "timed out after {timeout:?} waiting for `{cond}`; the page shows:\n{}",
                text.as_str().unwrap_or("")
            );
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("base64");
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).expect("artefact dir");
        }
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// Takes the events that arrived so far into `errors`/`requests`.
    pub fn drain_events(&mut self) {
        while let Ok(v) = self.rx.try_recv() {
            self.note(&v);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send("Browser.close", json!({}), false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
