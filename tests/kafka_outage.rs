//! Broker unavailable: reflex reaches its broker through a TCP proxy that
//! the test cuts mid-stream (every connection dropped, new ones refused)
//! and restores. reflex must keep running, report the outage in its logs,
//! and resume without loss (same accounting as tests/kafka_crash.rs).
//! A dedicated tansu is started here, advertised at the proxy's port.

mod common;

use common::accounting::*;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Proxy {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listen: TcpListener, target: u16) -> Proxy {
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listen.incoming().flatten() {
                if !u.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut g = c.lock().unwrap();
                    g.push(client.try_clone().unwrap());
                    g.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn tansu() -> Option<String> {
    if let Ok(t) = std::env::var("REFLEX_TEST_TANSU") {
        return Some(t);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = format!("{home}/.cargo/bin/tansu");
    if std::path::Path::new(&p).exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("no tansu binary (REFLEX_TEST_TANSU) under CI");
    }
    None
}

#[test]
fn broker_outage_mid_stream_resumes_without_loss() {
    let Some(_) = brokers() else { return };
    let Some(tansu) = tansu() else { return };
    let proxy_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy_l.local_addr().unwrap().port();
    let real_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Command::new(tansu)
        .args(["broker", "--storage-engine", "memory://tansu/"])
        .arg(format!("--listener-url=tcp://127.0.0.1:{real_port}"))
        .arg(format!(
            "--advertised-listener-url=tcp://127.0.0.1:{proxy_port}"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("tansu.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", real_port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let proxy = Proxy::start(proxy_l, real_port);
    let b = format!("127.0.0.1:{proxy_port}");

    let prefix = unique("outage");
    create_topics(&b, &prefix, &[("errors", 3)]);
    let cfg = write_config(
        dir.path(),
        &prefix,
        "\"reconnect.backoff.max.ms\" = \"500\"\n",
    );
    let input = build_input(3, 6, 3);
    let topic = format!("{prefix}.errors");
    let prod = producer(&b);
    let mut det = Reader::new(&b, &format!("{prefix}.reflex.detections"));
    let mut dlq = Reader::new(&b, &format!("{prefix}.reflex.dlq"));
    produce(&prod, &topic, &input.chunks[0]);
    let mut r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    assert!(
        det.until(Duration::from_secs(60), |x| x.len() > 5),
        "{}",
        r.log_text()
    );
    produce(&prod, &topic, &input.chunks[1]);

    let before = r.log_text().matches("error").count();
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.log_text().matches("error").count() <= before {
        assert!(
            Instant::now() < deadline,
            "outage not reported:\n{}",
            r.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        r.child.try_wait().unwrap().is_none(),
        "reflex died during the outage"
    );
    proxy.restore();

    produce(&prod, &topic, &input.chunks[2]);
    let total = (input.expected.len(), input.malformed.len());
    let mut last = (0, 0);
    let ok = det.until(Duration::from_secs(120), |recs| {
        dlq.poll_some();
        last = accounted(&input, recs, &dlq.records);
        last == total
    });
    assert!(
        ok,
        "accounted {last:?} of {total:?}; log:\n{}",
        r.log_text()
    );
    let st = r.terminate();
    assert!(st.success(), "exit {st:?}");
    let _ = broker.kill();
    let _ = broker.wait();
}
