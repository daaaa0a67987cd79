//! Codec round trips for every record type (JSON ↔ Avro ↔ Confluent wire
//! format), and the decoder's never-panic / never-lose property.

use proptest::prelude::*;
use reflex::codec::avro::{self, RecordType};
use reflex::codec::{decode_input, json, wire, DecodeErrorKind};
use reflex::model::*;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

fn t(ms: i64) -> EventTime {
    EventTime(ms)
}

fn full_event() -> ErrorEvent {
    let mut e = ErrorEvent::new(
        "e-1",
        t(1_767_225_600_123),
        "payments",
        Severity::Critical,
        "OOMKilled",
    );
    e.kind = EventKind::Change;
    e.namespace = Some("shop".into());
    e.cluster = Some("eu-1".into());
    e.environment = Some("prod".into());
    e.instance = Some("payments-7d9f".into());
    e.node = Some("node-3".into());
    e.version = Some("v42".into());
    e.error_type = Some("java.lang.OutOfMemoryError".into());
    e.stack_trace = Some("at Foo.bar(Foo.java:1)".into());
    e.http_status = Some(503);
    e.latency_ms = Some(12.5);
    e.upstream = Some("payments-db".into());
    e.trace_id = Some("abc".into());
    e.span_id = Some("def".into());
    e.attributes = BTreeMap::from([("region".to_string(), "eu".to_string())]);
    e
}

fn detection() -> Detection {
    Detection {
        detection_id: "det-1".into(),
        detector: DetectorKind::Threshold,
        rule: "error_burst".into(),
        key: "service=payments".into(),
        service: "payments".into(),
        namespace: Some("shop".into()),
        score: 0.87,
        window: Window {
            start: t(0),
            end: t(60_000),
        },
        evidence: "payments: 42 events".into(),
        count: 42,
        first_seen: t(1_000),
        hints: vec![CategoryHint {
            category: Category::MemoryExhaustion,
            weight: 0.9,
            source: "oom".into(),
            about: About::Dependency,
        }],
        upstreams: vec![Counted {
            value: "db".into(),
            count: 3,
        }],
        error_types: vec![Counted {
            value: "OOM".into(),
            count: 2,
        }],
        http_statuses: vec![],
        nodes: vec![Counted {
            value: "n1".into(),
            count: 1,
        }],
        instances: vec![],
        trace_ids: vec!["t1".into()],
        samples: vec!["boom".into()],
        version: None,
    }
}

fn incident() -> Incident {
    Incident {
        incident_id: "inc-1".into(),
        status: IncidentStatus::Resolved,
        opened_at: t(1_000),
        updated_at: t(2_000),
        resolved_at: Some(t(3_000)),
        root_cause_service: "payments".into(),
        category: Category::BadDeploy,
        confidence: 0.9,
        services: vec!["checkout".into(), "payments".into()],
        summary: "payments broke".into(),
        evidence: vec!["a".into(), "b".into()],
        namespace: None,
        severity: Severity::Error,
    }
}

fn action() -> RecoveryAction {
    RecoveryAction {
        action_id: "act-1".into(),
        incident_id: "inc-1".into(),
        created_at: t(5),
        action_type: ActionType::Scale,
        target: Target {
            service: "payments".into(),
            namespace: Some("shop".into()),
            kind: "Deployment".into(),
            name: "payments".into(),
        },
        params: ActionParams {
            replicas: Some(4),
            args: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..ActionParams::default()
        },
        risk: 0.3,
        decision: Decision::ApprovalRequired,
        idempotency_key: "idem-1".into(),
        reason: "because".into(),
        expires_at: t(900_005),
        signature: Some("00ff".into()),
    }
}

fn escalation() -> Escalation {
    Escalation {
        escalation_id: "esc-1".into(),
        incident_id: "inc-1".into(),
        created_at: t(7),
        severity: Severity::Critical,
        reason: "tls".into(),
        team: Some("payments".into()),
        summary: "cert expired".into(),
        suggested_actions: vec!["rotate".into()],
    }
}

fn result() -> ActionResult {
    ActionResult {
        action_id: "act-1".into(),
        idempotency_key: "idem-1".into(),
        status: ActionStatus::SkippedDuplicate,
        detail: "seen".into(),
        finished_at: t(9),
        executor: "kube".into(),
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        raw: vec![0, 159, 146, 150, b'{'],
        raw_length: 5,
        raw_sha256: "ab".repeat(32),
        reason: "not UTF-8".into(),
        reason_kind: DeadLetterKind::InvalidJson,
        source_topic: "errors".into(),
        source_partition: Some(3),
        source_offset: Some(77),
    }
}

/// JSON → value → Avro → wire → Avro → value → JSON: all equal.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    rt: RecordType,
    v: &T,
) {
    let js = json::encode(v).unwrap();
    let back: T = serde_json::from_slice(&js).unwrap();
    assert_eq!(&back, v, "{rt:?} JSON round trip");
    let body = avro::encode(rt, v).unwrap();
    let framed = wire::frame(42, &body);
    let (id, body2) = wire::unframe(&framed).unwrap();
    assert_eq!(id, 42);
    let from_avro: T = avro::decode(rt, body2).unwrap();
    assert_eq!(&from_avro, v, "{rt:?} Avro round trip");
    assert_eq!(
        json::encode(&from_avro).unwrap(),
        js,
        "{rt:?} JSON after Avro"
    );
}

#[test]
fn every_output_record_round_trips() {
    round_trip(RecordType::Detection, &detection());
    round_trip(RecordType::Incident, &incident());
    round_trip(RecordType::RecoveryAction, &action());
    round_trip(RecordType::Escalation, &escalation());
    round_trip(RecordType::ActionResult, &result());
    round_trip(RecordType::DeadLetter, &dead_letter());
}

#[test]
fn typed_rollback_and_drain_parameters_round_trip() {
    let mut a = action();
    a.action_type = ActionType::Rollback;
    a.params = ActionParams {
        direction: Some(RollbackDirection::Forward),
        ..ActionParams::default()
    };
    round_trip(RecordType::RecoveryAction, &a);
    assert_eq!(
        serde_json::to_value(&a).unwrap()["params"],
        serde_json::json!({"direction": "forward"})
    );
    a.action_type = ActionType::DrainNode;
    a.params = ActionParams {
        node: Some("node-3".into()),
        drain: Some(DrainOptions {
            grace_period_seconds: Some(30),
            delete_emptydir_data: true,
        }),
        ..ActionParams::default()
    };
    round_trip(RecordType::RecoveryAction, &a);
    a.params.drain = Some(DrainOptions::default());
    round_trip(RecordType::RecoveryAction, &a);
}

#[test]
fn unknown_action_parameters_survive_decoding_for_the_gate_to_refuse() {
    let raw = br#"{"action_id":"act-1","incident_id":"inc-1","created_at":"2026-03-02T06:00:00Z",
        "type":"scale","target":{"service":"p","namespace":"shop","kind":"Deployment","name":"p"},
        "params":{"replicas":3,"force":"true"},"risk":0.2,"decision":"auto","idempotency_key":"idem-1",
        "reason":"r","expires_at":"2026-03-02T06:15:00Z"}"#;
    let a: RecoveryAction = serde_json::from_slice(raw).unwrap();
    assert_eq!(a.params.unknown, vec!["force".to_string()]);
    assert!(a
        .params
        .check(a.action_type)
        .unwrap_err()
        .contains("params.force"));
}

#[test]
fn dry_run_decision_and_skipped_dry_run_status_round_trip() {
    let mut a = action();
    a.decision = Decision::DryRun;
    round_trip(RecordType::RecoveryAction, &a);
    assert_eq!(
        serde_json::to_value(&a).unwrap()["decision"],
        serde_json::json!("dry_run")
    );
    let mut r = result();
    r.status = ActionStatus::SkippedDryRun;
    round_trip(RecordType::ActionResult, &r);
    assert_eq!(
        serde_json::to_value(&r).unwrap()["status"],
        serde_json::json!("skipped_dry_run")
    );
}

#[test]
fn dead_letters_are_cut_with_the_length_and_hash_of_the_whole_input() {
    use sha2::Digest;
    let big = format!("{{\"id\": \"{}", "x".repeat(800_000)).into_bytes();
    let e = decode_input(&big).unwrap_err();
    let dl = e.into_dead_letter_max(&big, 1000, "errors", Some(0), Some(7));
    assert_eq!(dl.raw, &big[..1000]);
    assert!(dl.is_cut());
    assert_eq!(dl.raw_length, big.len() as i64);
    assert_eq!(dl.raw_sha256, hex::encode(sha2::Sha256::digest(&big)));
    round_trip(RecordType::DeadLetter, &dl);
    // Small inputs are kept whole.
    let dl = decode_input(b"{x")
        .unwrap_err()
        .into_dead_letter(b"{x", "t", None, None);
    assert_eq!(
        (dl.raw.as_slice(), dl.raw_length, dl.is_cut()),
        (&b"{x"[..], 2, false)
    );
    // A reason quoting a huge value is cut too.
    let quoted = format!(
        r#"{{"id":"1","time":0,"service":"s","severity":"info","message":"m","http_status":"{}"}}"#,
        "9".repeat(500_000)
    );
    let dl = decode_input(quoted.as_bytes())
        .unwrap_err()
        .into_dead_letter(quoted.as_bytes(), "t", None, None);
    assert!(
        dl.reason.len() <= DeadLetter::MAX_REASON_BYTES,
        "{}",
        dl.reason.len()
    );
    assert!(dl.reason.contains("http_status"), "{}", &dl.reason[..100]);
}

#[test]
fn old_dead_letters_without_length_and_hash_still_decode() {
    let old =
        br#"{"raw":"e3g=","reason":"r","reason_kind":"invalid_json","source_topic":"errors"}"#;
    let dl: DeadLetter = serde_json::from_slice(old).unwrap();
    assert_eq!(dl.raw, b"{x");
    assert_eq!((dl.raw_length, dl.raw_sha256.as_str()), (0, ""));
}

#[test]
fn over_long_identifiers_are_dead_letters_naming_the_field() {
    let ev = format!(
        r#"{{"id":"1","time":0,"service":"{}","severity":"info","message":"m"}}"#,
        "s".repeat(100_000)
    );
    let e = decode_input(ev.as_bytes()).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::InvalidEvent);
    assert!(
        e.reason.starts_with("field `service`: 100000 bytes"),
        "{}",
        e.reason
    );
    // A long message is not an identifier: accepted.
    let ev = format!(
        r#"{{"id":"1","time":0,"service":"s","severity":"info","message":"{}"}}"#,
        "m".repeat(100_000)
    );
    assert!(decode_input(ev.as_bytes()).is_ok());
}

#[test]
fn old_json_actions_without_the_new_fields_still_decode() {
    // As written before the `dry_run` decision: the old marker argument.
    let old = br#"{"action_id":"act-1","incident_id":"inc-1","created_at":"2026-03-02T06:00:00Z",
        "type":"restart","target":{"service":"payments","namespace":"shop","kind":"Deployment","name":"payments"},
        "params":{"args":{"dry_run":"true"}},"risk":0.2,"decision":"auto","idempotency_key":"idem-1",
        "reason":"r","expires_at":"2026-03-02T06:15:00Z"}"#;
    let a: RecoveryAction = serde_json::from_slice(old).unwrap();
    assert_eq!(a.decision, Decision::Auto);
    assert!(
        reflex::report::is_dry_run(&a),
        "old dry runs still read as dry runs"
    );
    let minimal =
        br#"{"action_id":"act-1","incident_id":"inc-1","created_at":"2026-03-02T06:00:00Z",
        "type":"scale","target":{"service":"p","kind":"Deployment","name":"p"},
        "params":{},"risk":0.2,"decision":"approval_required","idempotency_key":"idem-1",
        "reason":"r","expires_at":"2026-03-02T06:15:00Z"}"#;
    let a: RecoveryAction = serde_json::from_slice(minimal).unwrap();
    assert_eq!(a.decision, Decision::ApprovalRequired);
    assert!(!reflex::report::is_dry_run(&a));
}

#[test]
fn optional_fields_absent_round_trip_too() {
    let mut i = incident();
    i.resolved_at = None;
    i.namespace = Some("x".into());
    round_trip(RecordType::Incident, &i);
    let mut a = action();
    a.signature = None;
    a.params = ActionParams::default();
    a.target.namespace = None;
    round_trip(RecordType::RecoveryAction, &a);
    let mut e = escalation();
    e.team = None;
    round_trip(RecordType::Escalation, &e);
}

#[test]
fn event_round_trips_json_avro_wire() {
    for ev in [
        full_event(),
        ErrorEvent::new("x", t(-5), "s", Severity::Debug, ""),
    ] {
        let js = json::encode(&ev).unwrap();
        assert_eq!(decode_input(&js).unwrap(), ev);
        let framed = wire::frame(7, &avro::encode_event(&ev).unwrap());
        assert_eq!(decode_input(&framed).unwrap(), ev);
    }
}

#[test]
fn event_time_both_forms_and_severity_aliases() {
    let a = decode_input(br#"{"id":"1","time":"2026-01-01T01:00:00+01:00","service":"s","severity":"WARN","message":"m"}"#).unwrap();
    let b = decode_input(
        br#"{"id":"1","time":1767225600000,"service":"s","severity":"warning","message":"m"}"#,
    )
    .unwrap();
    assert_eq!(a.time, b.time);
    assert_eq!(a.severity, Severity::Warning);
    for (alias, sev) in [
        ("Fatal", Severity::Critical),
        ("panic", Severity::Critical),
        ("ERROR", Severity::Error),
    ] {
        let line =
            format!(r#"{{"id":"1","time":0,"service":"s","severity":"{alias}","message":"m"}}"#);
        assert_eq!(decode_input(line.as_bytes()).unwrap().severity, sev);
    }
}

#[test]
fn unknown_fields_are_kept_as_attributes() {
    let ev = decode_input(br#"{"id":"1","time":0,"service":"s","severity":"info","message":"m","pod_ip":"10.0.0.1","retries":3,"nested":{"a":1},"attributes":{"pod_ip":"explicit"}}"#).unwrap();
    assert_eq!(
        ev.attributes.get("pod_ip").map(String::as_str),
        Some("explicit")
    );
    assert_eq!(ev.attributes.get("retries").map(String::as_str), Some("3"));
    assert!(!ev.attributes.contains_key("nested"));
}

#[test]
fn malformed_inputs_get_precise_reasons() {
    let cases: [(&[u8], DecodeErrorKind, &str); 8] = [
        (b"{not json", DecodeErrorKind::InvalidJson, ""),
        (b"[1,2]", DecodeErrorKind::InvalidEvent, "not an object"),
        (br#"{"id":"1","time":0,"severity":"info","message":"m"}"#, DecodeErrorKind::InvalidEvent, "service"),
        (br#"{"id":"1","time":"yesterday","service":"s","severity":"info","message":"m"}"#, DecodeErrorKind::InvalidEvent, "time"),
        (br#"{"id":"1","time":0,"service":"s","severity":"loud","message":"m"}"#, DecodeErrorKind::InvalidEvent, "severity"),
        (br#"{"id":"1","time":0,"service":"s","severity":"info","message":"m","http_status":"500"}"#, DecodeErrorKind::InvalidEvent, "http_status"),
        (&[0xff, 0xfe, b'{'], DecodeErrorKind::InvalidJson, "UTF-8"),
        (&[0, 0, 0, 0, 1, 0xff], DecodeErrorKind::InvalidAvro, ""),
    ];
    for (bytes, kind, needle) in cases {
        let e = decode_input(bytes).unwrap_err();
        assert_eq!(
            e.kind,
            kind,
            "{:?}: {}",
            String::from_utf8_lossy(bytes),
            e.reason
        );
        assert!(
            e.reason.contains(needle),
            "reason {:?} should name {needle:?}",
            e.reason
        );
        let dl = e.into_dead_letter(bytes, "errors", Some(1), Some(9));
        assert_eq!(dl.raw, bytes);
        // The dead letter survives its own codec: raw bytes are never lost.
        let js = json::encode(&dl).unwrap();
        let back: DeadLetter = serde_json::from_slice(&js).unwrap();
        assert_eq!(back.raw, bytes);
    }
    let missing = decode_input(br#"{"time":0}"#).unwrap_err();
    assert!(
        missing.reason.contains("id") && missing.reason.contains("message"),
        "{}",
        missing.reason
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode_input(&bytes) {
            Ok(ev) => prop_assert!(!ev.id.is_empty() && !ev.service.is_empty()),
            Err(e) => {
                prop_assert!(!e.reason.is_empty());
                let dl = e.into_dead_letter(&bytes, "t", None, None);
                prop_assert_eq!(dl.raw, bytes);
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_json_shaped_input(
        keys in proptest::collection::vec(prop_oneof![
            Just("id"), Just("time"), Just("service"), Just("severity"), Just("message"),
            Just("http_status"), Just("latency_ms"), Just("attributes"), Just("kind"), Just("x")], 0..8),
        vals in proptest::collection::vec(prop_oneof![
            Just("\"a\"".to_string()), Just("1".to_string()), Just("-1.5e300".to_string()),
            Just("null".to_string()), Just("{}".to_string()), Just("[1]".to_string()),
            Just("\"2026-01-01T00:00:00Z\"".to_string()), Just("\"error\"".to_string()),
            "\"[^\"\\\\]{0,8}\"".prop_map(|s| s)], 0..8),
    ) {
        let body: Vec<String> = keys.iter().zip(vals.iter()).map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let text = format!("{{{}}}", body.join(","));
        let _ = decode_input(text.as_bytes());
    }

    #[test]
    fn corrupted_avro_never_panics(flip in 0usize..200, byte: u8) {
        let mut framed = wire::frame(1, &avro::encode_event(&full_event()).unwrap());
        let i = 5 + flip % (framed.len() - 5);
        framed[i] = byte;
        let _ = decode_input(&framed);
    }
}
