//! Unit tests of the classifier: the built-in model, inference, rules
//! combination, labelled input, training.

use super::super::features::{self, Context};
use super::super::rootcause::{self, ServiceSignals};
use super::*;
use crate::config::Config;
use crate::detectors::signature::Signatures;
use crate::model::DetectorKind;
use crate::model::{Category, ErrorEvent, EventKind, EventTime, Severity};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A failing event (hand-written texts, not the simulator's).
pub(crate) fn ev(
    service: &str,
    t: i64,
    message: &str,
    error_type: Option<&str>,
    status: Option<i32>,
    upstream: Option<&str>,
    node: &str,
) -> ErrorEvent {
    let mut e = ErrorEvent::new(
        format!("{service}-{t}-{}", message.len()),
        EventTime(t),
        service,
        Severity::Error,
        message,
    );
    e.error_type = error_type.map(str::to_string);
    e.http_status = status;
    e.upstream = upstream.map(str::to_string);
    e.node = Some(node.to_string());
    e
}

/// `n` events a second apart from `t0`, cycling through `msgs`.
pub(crate) fn burst(
    service: &str,
    t0: i64,
    n: usize,
    msgs: &[(&str, Option<&str>, Option<i32>)],
    upstream: Option<&str>,
    node: &str,
) -> Vec<ErrorEvent> {
    (0..n)
        .map(|i| {
            let (m, et, st) = msgs[i % msgs.len()];
            let m = m.replace("{i}", &(1000 + i * 37).to_string());
            ev(service, t0 + i as i64 * 1000, &m, et, st, upstream, node)
        })
        .collect()
}

const T0: i64 = 1_800_000_000_000;

/// Hand-written realistic incidents, one per category (and variant).
pub(crate) fn realistic() -> Vec<LabelledIncident> {
    use Category::*;
    let mut v = Vec::new();
    let mut add = |category, root: &str, events: Vec<ErrorEvent>| {
        v.push(LabelledIncident {
            category,
            root_cause_service: root.to_string(),
            events,
        })
    };
    let mut oom = burst(
        "payments",
        T0,
        30,
        &[
            (
                "Container payments was OOMKilled (exit code 137), restarting",
                None,
                None,
            ),
            (
                "java.lang.OutOfMemoryError: Java heap space",
                Some("java.lang.OutOfMemoryError"),
                None,
            ),
            (
                "GC overhead limit exceeded in worker-{i}",
                Some("java.lang.OutOfMemoryError"),
                None,
            ),
        ],
        None,
        "n1",
    );
    oom.extend(burst(
        "checkout",
        T0 + 2_000,
        20,
        &[("upstream connect error or disconnect/reset before headers. reset reason: connection failure", None, Some(503))],
        Some("payments"),
        "n2",
    ));
    add(MemoryExhaustion, "payments", oom);
    add(
        ResourceExhaustion,
        "orders",
        burst(
            "orders",
            T0,
            30,
            &[
                (
                    "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                    Some("java.sql.SQLTransientConnectionException"),
                    Some(500),
                ),
                ("accept4: too many open files; retrying in 1s", None, None),
            ],
            None,
            "n1",
        ),
    );
    add(
        Overload,
        "search",
        burst(
            "search",
            T0,
            40,
            &[
                (
                    "429 Too Many Requests: rate limit exceeded for tenant {i}",
                    None,
                    Some(429),
                ),
                (
                    "request rejected: server overloaded, queue full (1024 pending)",
                    None,
                    Some(503),
                ),
            ],
            None,
            "n1",
        ),
    );
    let mut unavail = burst(
        "cart",
        T0,
        25,
        &[("no healthy upstream", None, Some(503))],
        Some("inventory"),
        "n2",
    );
    unavail.extend(burst(
        "web",
        T0 + 500,
        25,
        &[(
            "dial tcp 10.0.4.{i}:8080: connect: connection refused",
            Some("ECONNREFUSED"),
            Some(503),
        )],
        Some("inventory"),
        "n3",
    ));
    let mut change = ev(
        "inventory",
        T0 - 60_000,
        "scaled deployment inventory to 0 replicas",
        None,
        None,
        None,
        "n1",
    );
    change.kind = EventKind::Change;
    change
        .attributes
        .insert("change_type".into(), "scale".into());
    unavail.push(change);
    add(Unavailable, "inventory", unavail);
    add(
        ConfigError,
        "billing",
        burst(
            "billing",
            T0,
            20,
            &[
                ("Error: missing required environment variable STRIPE_API_KEY", None, None),
                ("failed to parse config file /etc/billing/config.yaml: yaml: line {i}: mapping values are not allowed here", None, None),
            ],
            None,
            "n1",
        ),
    );
    add(
        CertificateExpired,
        "auth",
        burst(
            "auth",
            T0,
            20,
            &[
                ("x509: certificate has expired or is not yet valid: current time 2026-11-23T10:00:{i}Z is after 2026-11-22T23:59:59Z", None, None),
                ("javax.net.ssl.SSLHandshakeException: PKIX path validation failed: validity check failed", Some("javax.net.ssl.SSLHandshakeException"), None),
            ],
            None,
            "n1",
        ),
    );
    add(
        DependencyFailure,
        "api.stripe.com",
        burst(
            "payments",
            T0,
            30,
            &[
                (
                    "POST https://api.stripe.com/v1/charges failed: 502 Bad Gateway",
                    None,
                    Some(502),
                ),
                (
                    "stripe: request failed after 3 retries: status 500",
                    None,
                    Some(500),
                ),
            ],
            Some("api.stripe.com"),
            "n1",
        ),
    );
    let mut net = burst(
        "orders",
        T0,
        20,
        &[(
            "dial tcp: lookup inventory.shop.svc.cluster.local on 10.96.0.10:53: no such host",
            None,
            None,
        )],
        None,
        "node-7",
    );
    net.extend(burst(
        "cart",
        T0 + 700,
        20,
        &[(
            "read tcp 10.1.7.{i}:43210->10.1.2.3:5432: read: connection reset by peer",
            Some("ECONNRESET"),
            None,
        )],
        None,
        "node-7",
    ));
    add(Network, "node-7", net);
    add(
        DataError,
        "ingest",
        burst(
            "ingest",
            T0,
            25,
            &[
                ("ValidationError: field 'amount' must be a positive number (record {i})", Some("ValidationError"), Some(422)),
                ("com.fasterxml.jackson.core.JsonParseException: Unexpected character ('}' (code 125)) at line {i}", Some("com.fasterxml.jackson.core.JsonParseException"), None),
            ],
            None,
            "n1",
        ),
    );
    let mut deploy = burst(
        "catalog",
        T0,
        30,
        &[
            ("TypeError: Cannot read properties of undefined (reading 'price') at render (/app/dist/item.js:{i})", Some("TypeError"), Some(500)),
            ("java.lang.NullPointerException at com.shop.catalog.Item.total(Item.java:{i})", Some("java.lang.NullPointerException"), Some(500)),
        ],
        None,
        "n1",
    );
    let mut d = ev(
        "catalog",
        T0 - 120_000,
        "deployed catalog v2.14.0",
        None,
        None,
        None,
        "n1",
    );
    d.kind = EventKind::Change;
    d.version = Some("v2.14.0".into());
    deploy.push(d);
    add(BadDeploy, "catalog", deploy);
    v
}

/// A second set of hand-written incidents in other runtimes' words.
pub(crate) fn realistic_other() -> Vec<LabelledIncident> {
    use Category::*;
    let mut v = Vec::new();
    let mut add = |category, root: &str, events: Vec<ErrorEvent>| {
        v.push(LabelledIncident {
            category,
            root_cause_service: root.to_string(),
            events,
        })
    };
    add(
        MemoryExhaustion,
        "reports",
        burst(
            "reports",
            T0,
            25,
            &[
                ("fatal error: runtime: out of memory", None, None),
                (
                    "Out of memory: Killed process {i} (python3) total-vm:8123456kB",
                    Some("MemoryError"),
                    None,
                ),
            ],
            None,
            "n1",
        ),
    );
    add(
        ResourceExhaustion,
        "accounts",
        burst(
            "accounts",
            T0,
            25,
            &[
                ("psycopg2.OperationalError: FATAL: sorry, too many clients already", Some("psycopg2.OperationalError"), Some(500)),
                ("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30", None, Some(500)),
            ],
            None,
            "n1",
        ),
    );
    add(
        Overload,
        "gateway",
        burst(
            "gateway",
            T0,
            40,
            &[
                (
                    "rate limited: too many requests from client {i}, retry after 30s",
                    None,
                    Some(429),
                ),
                (
                    "load shedding: request queue full, dropping request",
                    None,
                    Some(503),
                ),
            ],
            None,
            "n1",
        ),
    );
    add(
        ConfigError,
        "mailer",
        burst(
            "mailer",
            T0,
            20,
            &[
                ("panic: invalid configuration: missing key 'smtp.host'", None, None),
                ("failed to load config: unknown configuration key 'retry_backof' in /etc/mailer/app.toml", None, None),
            ],
            None,
            "n1",
        ),
    );
    add(
        CertificateExpired,
        "ledger",
        burst(
            "ledger",
            T0,
            20,
            &[
                ("tls: failed to verify certificate: x509: certificate has expired or is not yet valid", None, None),
                ("ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired", Some("ssl.SSLCertVerificationError"), None),
            ],
            None,
            "n1",
        ),
    );
    add(
        DataError,
        "importer",
        burst(
            "importer",
            T0,
            25,
            &[
                (
                    "invalid input syntax for type integer: \"abc{i}\"",
                    Some("DataError"),
                    Some(400),
                ),
                (
                    "schema validation failed: /items/{i}/sku is required",
                    Some("ValidationError"),
                    Some(400),
                ),
            ],
            None,
            "n1",
        ),
    );
    add(
        DependencyFailure,
        "api.twilio.com",
        burst(
            "notify",
            T0,
            30,
            &[
                (
                    "POST https://api.twilio.com/2010-04-01/Messages.json: 503 Service Unavailable",
                    None,
                    Some(503),
                ),
                (
                    "twilio request failed: context deadline exceeded",
                    None,
                    None,
                ),
            ],
            Some("api.twilio.com"),
            "n1",
        ),
    );
    v
}

fn sigs() -> Signatures {
    Config::embedded().expect("embedded config").signatures
}

#[test]
fn the_builtin_model_loads_and_is_small() {
    let m = builtin().expect("the built-in model loads");
    assert!(
        BUILTIN_MODEL.len() < 300_000,
        "{} bytes",
        BUILTIN_MODEL.len()
    );
    assert!(m.categories.len() >= 10);
    let cfg = Config::embedded().expect("embedded config");
    assert!(cfg.diagnosis.category_model.is_some());
}

#[test]
fn the_builtin_model_classifies_realistic_messages() {
    let m = builtin().expect("built-in model");
    let s = sigs();
    let mut wrong = Vec::new();
    for inc in realistic().into_iter().chain(realistic_other()) {
        let e = signals_from_events(&inc, &s);
        let x = features::features(&e.services, &e.root, e.ctx, m.hash_dims);
        let d = m.decide_with(m.policy, &x, &e.rule, e.structural());
        if d.category != inc.category {
            wrong.push(format!(
                "{}: got {} (model {} p={:.2}, rules {})",
                inc.category, d.category, d.model_category, d.model_probability, e.rule.category
            ));
        }
        assert!((0.0..=1.0).contains(&d.confidence));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_stage_uses_the_classifier_unless_switched_off() {
    use crate::model::{About, CategoryHint, Counted, Detection, Window};
    use crate::stage::Stage;
    let det = Detection {
        detection_id: "d1".into(),
        detector: DetectorKind::Threshold,
        rule: "error_burst".into(),
        key: "service=payments".into(),
        service: "payments".into(),
        namespace: None,
        score: 0.9,
        window: Window {
            start: EventTime(T0),
            end: EventTime(T0 + 60_000),
        },
        evidence: "payments: 40 events".into(),
        count: 40,
        first_seen: EventTime(T0),
        hints: vec![CategoryHint {
            category: Category::MemoryExhaustion,
            weight: 0.9,
            source: "oom".into(),
            about: About::Itself,
        }],
        upstreams: vec![],
        error_types: vec![Counted {
            value: "java.lang.OutOfMemoryError".into(),
            count: 30,
        }],
        http_statuses: vec![],
        nodes: vec![],
        instances: vec![],
        trace_ids: vec![],
        samples: vec!["java.lang.OutOfMemoryError: Java heap space".into()],
        version: None,
    };
    let run = |classifier: bool| {
        let cfg = super::super::DiagnosisConfig {
            classifier,
            ..Default::default()
        };
        let mut st = super::super::DiagnosisStage::new(
            cfg,
            std::sync::Arc::new(super::super::catalog::Catalog::default()),
            std::sync::Arc::new(crate::stage::stats::Stats::default()),
        );
        let mut out = Vec::new();
        // Two windows of the fault (one window alone is a blip), and a
        // caller failing on it (a service nobody calls is capped).
        let mut again = det.clone();
        again.window = Window {
            start: EventTime(T0 + 60_000),
            end: EventTime(T0 + 120_000),
        };
        let mut caller = det.clone();
        caller.service = "checkout".into();
        caller.hints.clear();
        caller.error_types.clear();
        caller.samples = vec!["upstream payments returned 503".into()];
        caller.upstreams = vec![Counted {
            value: "payments".into(),
            count: 40,
        }];
        st.process(det.clone(), &mut out);
        st.process(caller, &mut out);
        st.process(again, &mut out);
        st.on_watermark(EventTime(T0 + 10 * 60_000), &mut out);
        out.into_iter().next().expect("an incident")
    };
    let on = run(true);
    let off = run(false);
    assert_eq!(on.category, Category::MemoryExhaustion);
    assert_eq!(off.category, Category::MemoryExhaustion);
    assert!(on.evidence.iter().any(|e| e.starts_with("classifier:")));
    assert!(!off.evidence.iter().any(|e| e.starts_with("classifier:")));
    assert!(
        on.confidence <= MAX_CONFIDENCE && on.confidence > 0.6,
        "{on:?}"
    );
}

#[test]
fn labelled_input_errors_name_the_line() {
    let good = r#"{"category":"overload","root_cause_service":"a","events":[{"id":"1","time":1,"service":"a","severity":"error","message":"queue full"}]}"#;
    let text =
        format!("{good}\n\n{{\"category\":\"nope\",\"root_cause_service\":\"a\",\"events\":[]}}\n");
    let e = parse_labelled(&text, "x.jsonl").unwrap_err().to_string();
    assert!(
        e.starts_with("x.jsonl:3:") && e.contains("unknown category"),
        "{e}"
    );
    let bad_event = r#"{"category":"overload","root_cause_service":"a","events":[{"id":"1"}]}"#;
    let e = parse_labelled(bad_event, "y").unwrap_err().to_string();
    assert!(e.starts_with("y:1:") && e.contains("events[0]"), "{e}");
    assert!(parse_labelled("[1]", "z")
        .unwrap_err()
        .to_string()
        .starts_with("z:1:"));
    assert_eq!(parse_labelled(good, "g").map(|v| v.len()).ok(), Some(1));
}

#[test]
fn a_bad_model_file_is_rejected_without_panicking() {
    assert!(CategoryModel::from_json("{}").is_err());
    assert!(CategoryModel::from_json("not json").is_err());
    let mut m = builtin().expect("built-in").clone();
    m.weights.push((usize::MAX, vec![0.0; m.categories.len()]));
    let text = serde_json::to_string(&m).expect("serialises");
    assert!(CategoryModel::from_json(&text).is_err());
    let mut m = builtin().expect("built-in").clone();
    m.calibration.agree[0] = 1.5;
    let text = serde_json::to_string(&m).expect("serialises");
    assert!(CategoryModel::from_json(&text).is_err());
}

#[test]
fn training_on_a_small_labelled_set_classifies_held_out_incidents() {
    let s = sigs();
    // Three variants of each realistic incident, shifted in time, as training data.
    let mut train_set = Vec::new();
    for k in 0..3i64 {
        for mut inc in realistic() {
            for e in &mut inc.events {
                e.time = EventTime(e.time.millis() + k * 3_600_000 + k * 17);
                if k == 1 {
                    e.message.push_str(" (retry)");
                }
            }
            train_set.push(signals_from_events(&inc, &s));
        }
    }
    let (model, report) = train(&train_set, 256).expect("trains");
    let text = serde_json::to_string(&model).expect("serialises");
    let loaded = CategoryModel::from_json(&text).expect("loads");
    assert_eq!(report.summary.examples, train_set.len());
    for inc in realistic() {
        let e = signals_from_events(&inc, &s);
        let x = features::features(&e.services, &e.root, e.ctx, loaded.hash_dims);
        let d = loaded.decide_with(Policy::Model, &x, &e.rule, e.structural());
        assert_eq!(d.category, inc.category, "{d:?}");
    }
}

#[test]
fn isotonic_is_monotone_and_bounded() {
    let v = isotonic(&[0.9, 0.2, 0.5, 0.4, 1.0], &[1.0, 1.0, 2.0, 1.0, 1.0]);
    assert_eq!(v.len(), 5);
    assert!(v.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{v:?}");
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
}

proptest! {
    #[test]
    fn features_are_deterministic_and_bounded(
        msgs in proptest::collection::vec("[a-zA-Z0-9 :./_-]{0,60}", 0..6),
        hints in proptest::collection::vec((0usize..11, 0.0f64..1.0, any::<bool>()), 0..6),
        statuses in proptest::collection::vec((100i32..600, 1i64..50), 0..4),
        count in 0i64..100_000,
        ext in any::<bool>(),
        changed in any::<bool>(),
    ) {
        let mut s = ServiceSignals { count, ..ServiceSignals::default() };
        for m in &msgs {
            features::bump(&mut s.templates, &features::template(m), 1, features::MAX_TEMPLATES);
        }
        for (c, w, own) in &hints {
            let about = if *own { crate::model::About::Itself } else { crate::model::About::Dependency };
            rootcause::add_hint(&mut s, Category::ALL[*c], *w, about);
        }
        for (st, n) in &statuses {
            features::bump(&mut s.statuses, &st.to_string(), *n, features::MAX_VALUES);
            features::bump(&mut s.error_types, &format!("E{st}"), *n, features::MAX_VALUES);
        }
        let mut caller = s.clone();
        caller.upstreams.insert("r".into(), 3);
        let mut m = BTreeMap::new();
        m.insert("r".to_string(), s);
        m.insert("c".to_string(), caller);
        let ctx = Context { external: ext, changed, node_local: false };
        let a = features::features(&m, "r", ctx, 128);
        let b = features::features(&m, "r", ctx, 128);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.len(), features::DENSE + 128);
        prop_assert!(a.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
        // Probabilities of the built-in model sum to 1; calibration is bounded.
        if let Some(model) = builtin() {
            let x = features::features(&m, "r", ctx, model.hash_dims);
            let p = model.probabilities(&x);
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            prop_assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            let mut last = (0.0, 0.0);
            for k in 0..=20 {
                let q = k as f64 / 20.0;
                let (ca, cd) = (model.calibrated(q, true), model.calibrated(q, false));
                prop_assert!((0.0..=1.0).contains(&ca) && (0.0..=1.0).contains(&cd));
                prop_assert!(ca + 1e-12 >= last.0 && cd + 1e-12 >= last.1, "calibration decreases");
                last = (ca, cd);
            }
        }
    }
}
