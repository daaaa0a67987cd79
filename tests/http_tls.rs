//! TLS of the outbound HTTP clients (the webhook executor and the Schema
//! Registry client) against local HTTPS servers (axum behind a rustls
//! accept loop) with a test CA made by rcgen:
//! - with the CA configured, delivery and schema lookups succeed;
//! - an expired certificate, a certificate for another host name, and (with
//!   no CA configured) the test CA's certificate are refused, with an error
//!   that names the certificate problem, and the refusal is retried per
//!   policy: the server counts one failed handshake per attempt and never
//!   sees a request.

use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reflex::codec::registry::{RegistryErrorKind, RegistryOptions, SchemaRegistry};
use reflex::executors::webhook::{HttpUrl, WebhookExecutor, WebhookSettings};
use reflex::executors::{Ledger, ManualClock};
use reflex::http::RetryPolicy;
use reflex::model::{ActionStatus, Escalation, EventTime, Severity};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A test CA and the PEM file holding its certificate.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem_file: tempfile::NamedTempFile,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(pem_file.path(), cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem_file,
        }
    }

    fn path(&self) -> PathBuf {
        self.pem_file.path().to_path_buf()
    }

    /// A server certificate for `names`, valid now unless `expired`.
    fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// Handshakes the test server saw: (failed, succeeded).
type Handshakes = watch::Receiver<(usize, usize)>;

/// TCP accept + rustls handshake; failed handshakes are counted and skipped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    counts: watch::Sender<(usize, usize)>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => {
                    self.counts.send_modify(|c| c.1 += 1);
                    return (tls, addr);
                }
                Err(_) => self.counts.send_modify(|c| c.0 += 1),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` over TLS with `leaf` on 127.0.0.1 (on the current runtime).
async fn serve_tls(
    app: Router,
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> (SocketAddr, Handshakes) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.0], leaf.1)
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (counts, rx) = watch::channel((0, 0));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        counts,
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

/// Waits (event-driven, bounded) until `failed` handshakes were counted.
async fn failed_handshakes(rx: &mut Handshakes, failed: usize) -> (usize, usize) {
    let seen = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| c.0 >= failed))
        .await
        .expect("the server counted the failed handshakes")
        .unwrap();
    *seen
}

/// A webhook receiver recording every body.
fn hook_app() -> (Router, Arc<Mutex<Vec<Bytes>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    (app, got)
}

fn executor(url: &str, ca_file: Option<PathBuf>, attempts: u32) -> WebhookExecutor {
    WebhookExecutor::new(
        WebhookSettings {
            name: "webhook-tls-test".into(),
            urls: vec![HttpUrl::parse(url).unwrap()],
            template: None,
            secret: None,
            timeout: Duration::from_secs(5),
            ca_file,
            retry: RetryPolicy {
                max_attempts: attempts,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
        },
        Ledger::new(100),
        Arc::new(ManualClock::at(EventTime(1_795_000_000_000))),
    )
    .unwrap()
}

fn escalation() -> Escalation {
    Escalation {
        escalation_id: "esc-tls".into(),
        incident_id: "inc-tls".into(),
        created_at: EventTime(1_795_000_000_000),
        severity: Severity::Critical,
        reason: "certificate_expired: rotation is manual".into(),
        team: Some("payments".into()),
        summary: "payments TLS certificate expired".into(),
        suggested_actions: vec![],
    }
}

#[tokio::test]
async fn webhook_delivers_over_https_with_the_configured_ca() {
    let ca = Ca::new("reflex test CA");
    let (app, got) = hook_app();
    let (addr, mut hs) = serve_tls(app, ca.leaf(&["127.0.0.1", "localhost"], false)).await;
    let mut ex = executor(&format!("https://{addr}/hook"), Some(ca.path()), 3);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Succeeded, "{}", res.detail);
    assert!(
        res.detail.contains("answered 204 after 1 attempt(s)"),
        "{}",
        res.detail
    );
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(v["type"], "reflex.escalation");
    assert_eq!(v["escalation"]["escalation_id"], "esc-tls");
    assert_eq!(*hs.borrow_and_update(), (0, 1), "one successful handshake");
}

/// Delivers to a server presenting `leaf`; asserts the refusal names
/// `problem`, took `attempts` attempts (= failed handshakes) and sent nothing.
async fn refused(
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ca_file: Option<PathBuf>,
    problem: &str,
) {
    let (app, got) = hook_app();
    let (addr, mut hs) = serve_tls(app, leaf).await;
    let mut ex = executor(&format!("https://{addr}/hook"), ca_file, 3);
    let res = ex.process(&escalation()).await;
    assert_eq!(res.status, ActionStatus::Failed, "{}", res.detail);
    assert!(
        res.detail
            .contains("failed after 3 attempt(s): TLS certificate refused"),
        "{}",
        res.detail
    );
    assert!(res.detail.contains(problem), "{}", res.detail);
    assert_eq!(failed_handshakes(&mut hs, 3).await, (3, 0));
    assert!(got.lock().unwrap().is_empty(), "no request got through");
    assert!(
        !ex.ledger.contains("esc-tls"),
        "a failure is not recorded as delivered"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_and_retried_per_policy() {
    let ca = Ca::new("reflex test CA");
    refused(ca.leaf(&["127.0.0.1"], true), Some(ca.path()), "expired").await;
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = Ca::new("reflex test CA");
    refused(
        ca.leaf(&["pager.example.com"], false),
        Some(ca.path()),
        "not valid for this host name",
    )
    .await;
}

#[tokio::test]
async fn without_the_ca_configured_the_test_ca_is_not_trusted() {
    let ca = Ca::new("reflex test CA");
    refused(ca.leaf(&["127.0.0.1"], false), None, "unknown issuer").await;
    // Nor is another CA's certificate when a CA file is configured.
    let other = Ca::new("another CA");
    refused(
        ca.leaf(&["127.0.0.1"], false),
        Some(other.path()),
        "unknown issuer",
    )
    .await;
}

const SCHEMA: &str = r#"{"type":"record","name":"E","fields":[{"name":"id","type":"string"}]}"#;

/// A Schema Registry over TLS on its own thread (the client is blocking).
fn start_registry(
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> (SocketAddr, Arc<Mutex<usize>>, Handshakes) {
    let hits = Arc::new(Mutex::new(0usize));
    let h = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            async fn schema(
                State(hits): State<Arc<Mutex<usize>>>,
                AxPath(id): AxPath<u32>,
            ) -> Result<Json<serde_json::Value>, StatusCode> {
                *hits.lock().unwrap() += 1;
                if id == 42 {
                    Ok(Json(serde_json::json!({ "schema": SCHEMA })))
                } else {
                    Err(StatusCode::NOT_FOUND)
                }
            }
            let app = Router::new()
                .route("/api/schemas/ids/{id}", get(schema))
                .with_state(h);
            let served = serve_tls(app, leaf).await;
            tx.send(served).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (addr, handshakes) = rx.recv().unwrap();
    (addr, hits, handshakes)
}

fn registry_options(ca_file: Option<PathBuf>) -> RegistryOptions {
    RegistryOptions {
        timeout: Duration::from_secs(5),
        ca_file,
        retry: RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
    }
}

#[test]
fn schema_registry_over_https_with_the_configured_ca() {
    let ca = Ca::new("reflex test CA");
    let (addr, hits, _) = start_registry(ca.leaf(&["127.0.0.1"], false));
    let url = format!("https://{addr}/api/");
    let reg = SchemaRegistry::with_options(&url, registry_options(Some(ca.path()))).unwrap();
    let s = reg.schema(42).unwrap();
    assert!(s.canonical_form().contains("\"id\""));
    reg.schema(42).unwrap();
    assert_eq!(*hits.lock().unwrap(), 1, "second lookup is cached");
    let missing = reg.schema(7).unwrap_err();
    assert_eq!(missing.kind, RegistryErrorKind::NotFound);
    assert_eq!(missing.attempts, 1, "a 404 is not retried");

    // Without the CA: refused as a certificate problem, retried per policy.
    let reg = SchemaRegistry::with_options(&url, registry_options(None)).unwrap();
    let e = reg.schema(42).unwrap_err();
    assert_eq!(e.kind, RegistryErrorKind::Certificate, "{e}");
    assert_eq!(e.attempts, 2, "{e}");
    assert!(e.to_string().contains("unknown issuer"), "{e}");
    assert_eq!(*hits.lock().unwrap(), 2, "no request passed the handshake");
}

#[test]
fn schema_registry_refuses_an_expired_certificate() {
    let ca = Ca::new("reflex test CA");
    let (addr, hits, mut hs) = start_registry(ca.leaf(&["127.0.0.1"], true));
    let reg = SchemaRegistry::with_options(
        &format!("https://{addr}/api"),
        registry_options(Some(ca.path())),
    )
    .unwrap();
    let e = reg.schema(42).unwrap_err();
    assert_eq!(e.kind, RegistryErrorKind::Certificate, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(e.attempts, 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(failed_handshakes(&mut hs, 2)), (2, 0));
    assert_eq!(*hits.lock().unwrap(), 0);
}

/// The blocking client also works when called (and dropped) inside an
/// async runtime (it then runs its request on a helper thread).
#[tokio::test]
async fn schema_registry_client_works_inside_an_async_runtime() {
    let ca = Ca::new("reflex test CA");
    let (addr, hits, _) = start_registry(ca.leaf(&["127.0.0.1"], false));
    let reg = SchemaRegistry::with_options(
        &format!("https://{addr}/api"),
        registry_options(Some(ca.path())),
    )
    .unwrap();
    assert!(reg.schema(42).is_ok());
    assert_eq!(reg.cached(), 1);
    assert_eq!(*hits.lock().unwrap(), 1);
    drop(reg);
}
