//! Interop: a client that is not ours (Python `confluent-kafka`, installed
//! by scripts/test.sh into target/test-env/venv) produces JSON and
//! Confluent-framed Avro events and reads reflex's outputs back. The Avro
//! events are written with an *evolved* schema (one extra field) served by a
//! Confluent-compatible Schema Registry (an axum server in this test):
//! reflex fetches it by id once, caches it, and resolves it against its own.
//!
//! Also here: the Schema Registry client against the same server.

mod common;

use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use reflex::codec::registry::{RegistryErrorKind, SchemaRegistry};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const EVOLVED_ID: u32 = 43;

fn evolved_schema() -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../schemas/error_event.avsc")).unwrap();
    v["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "region", "type": "string", "default": "eu"}));
    v.to_string()
}

/// Serves `GET /schemas/ids/{id}`; returns (base url, hit counter).
fn start_registry() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            async fn schema(
                State(hits): State<Arc<AtomicUsize>>,
                AxPath(id): AxPath<u32>,
            ) -> Result<Json<serde_json::Value>, StatusCode> {
                hits.fetch_add(1, Ordering::SeqCst);
                if id == EVOLVED_ID {
                    Ok(Json(serde_json::json!({ "schema": evolved_schema() })))
                } else {
                    Err(StatusCode::NOT_FOUND)
                }
            }
            let app = Router::new()
                .route("/schemas/ids/{id}", get(schema))
                .with_state(h);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), hits)
}

#[test]
fn registry_client_fetches_caches_and_reports_missing_ids() {
    let (url, hits) = start_registry();
    let reg = SchemaRegistry::new(&url).unwrap();
    let s = reg.schema(EVOLVED_ID).unwrap();
    assert!(s.canonical_form().contains("region"));
    reg.schema(EVOLVED_ID).unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "second lookup must be cached"
    );
    assert_eq!(reg.schema(7).unwrap_err().kind, RegistryErrorKind::NotFound);
    let dead = SchemaRegistry::new("http://127.0.0.1:1").unwrap();
    assert_eq!(
        dead.schema(1).unwrap_err().kind,
        RegistryErrorKind::Unreachable
    );
}

fn python() -> Option<String> {
    match std::env::var("REFLEX_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
                panic!("REFLEX_TEST_PYTHON is not set but CI is: run `bash scripts/test.sh`");
            }
            eprintln!("skipping: REFLEX_TEST_PYTHON is not set (run `bash scripts/test.sh`)");
            None
        }
    }
}

#[test]
fn python_confluent_kafka_client_interoperates() {
    let Some(b) = brokers() else { return };
    let Some(py) = python() else { return };
    let (url, hits) = start_registry();
    let prefix = unique("interop");
    create_topics(&b, &prefix, &[("reflex.detections", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &prefix, "");
    // The registry URL goes in [kafka]; append it as a second [kafka] key via a fresh file.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[kafka]\n",
        &format!("[kafka]\nschema_registry_url = \"{url}\"\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    let schema_file = dir.path().join("evolved.avsc");
    std::fs::write(&schema_file, evolved_schema()).unwrap();
    let r = Reflex::start(&b, &cfg, "all", dir.path().join("reflex.log"));
    let n = 15;
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/client.py"
        ))
        .args([
            &b,
            &format!("{prefix}.errors"),
            &format!("{prefix}.reflex.detections"),
            &format!("{prefix}.reflex.dlq"),
        ])
        .arg(&schema_file)
        .args([EVOLVED_ID.to_string(), n.to_string()])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\nreflex log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log_text()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python summary");
    let produced: Vec<String> = v["produced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(produced.len(), 2 * n);
    let got: BTreeSet<String> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["detection_id"].as_str().map(String::from))
        .collect();
    for id in &produced {
        let det = reflex::util::stable_id("chg-", &[id.as_bytes(), b"pysvc"]);
        assert!(
            got.contains(&det),
            "no detection for {id} read back by python; log:\n{}",
            r.log_text()
        );
    }
    // Avro events kept their fields through schema resolution.
    assert!(v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["version"] == "a3"));
    let dlq = v["dlq"].as_array().unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["source_offset"], (2 * n) as i64);
    assert_eq!(dlq[0]["source_partition"], 0);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "schema fetched once, then cached"
    );
    assert!(r.terminate().success());
}
