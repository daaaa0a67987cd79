//! Tests of the pattern detector: new templates, sequences, cascades.

use super::*;
use crate::detectors::pattern::miner::TemplateMiner;
use crate::detectors::TemplateRef;
use crate::model::ErrorEvent;
use crate::model::{About, Category};

struct Rig {
    miner: TemplateMiner,
    sigs: Signatures,
    det: PatternStream,
    out: Vec<Detection>,
}

fn rig(seqs: Vec<SequenceRule>) -> Rig {
    let sigs = Signatures::new(vec![crate::detectors::signature::SignatureRule {
        name: "oom".into(),
        category: Category::MemoryExhaustion,
        weight: 0.9,
        about: About::Itself,
        calling: None,
        message: Some("(?i)oomkilled".into()),
        error_type: None,
        http_status: vec![],
        exit_code: vec![],
    }])
    .unwrap();
    let cfg = PatternConfig {
        warmup: DurationMs(60_000),
        ..PatternConfig::default()
    };
    Rig {
        miner: TemplateMiner::new(&cfg.miner),
        det: PatternStream::new(&cfg, &sigs, &seqs),
        sigs,
        out: Vec::new(),
    }
}

impl Rig {
    fn feed(&mut self, ev: ErrorEvent) {
        let mut m = Vec::new();
        self.sigs.matches(&ev, &mut m);
        let obs = self.miner.observe_detailed(&ev.message);
        let text = self.miner.template(obs.id).unwrap_or("").to_string();
        let o = Observed {
            event: &ev,
            template: Some(TemplateRef {
                id: obs.id,
                created: obs.created,
                novel: obs.created,
                text: &text,
            }),
            signatures: &m,
            late: false,
            watermark: EventTime(0),
        };
        self.det.observe(&o, &mut self.out);
    }
    fn wm(&mut self, t: i64) {
        self.det.on_watermark(EventTime(t), &mut self.out);
    }
    fn rules(&self, rule: &str) -> Vec<&Detection> {
        self.out.iter().filter(|d| d.rule == rule).collect()
    }
}

fn ev(t: i64, svc: &str, sev: Severity, msg: &str) -> ErrorEvent {
    ErrorEvent::new(format!("{svc}-{t}"), EventTime(t), svc, sev, msg)
}

#[test]
fn new_error_template_after_warmup_only() {
    let mut r = rig(vec![]);
    r.feed(ev(
        0,
        "api",
        Severity::Error,
        "disk quota exceeded for volume 7",
    ));
    r.wm(120_000);
    assert!(
        r.rules("new_template").is_empty(),
        "during warm-up everything is new"
    );
    r.feed(ev(
        130_000,
        "api",
        Severity::Warning,
        "cache warm-up slow: 12 ms",
    ));
    r.feed(ev(
        131_000,
        "api",
        Severity::Error,
        "disk quota exceeded for volume 9",
    ));
    r.wm(240_000);
    assert!(
        r.rules("new_template").is_empty(),
        "a warning and a known template are not news"
    );
    r.feed(ev(
        250_000,
        "api",
        Severity::Error,
        "segfault in libfoo at 0x7f3a",
    ));
    r.wm(360_000);
    let d = r.rules("new_template");
    assert_eq!(d.len(), 1);
    assert!(d[0].evidence.contains("segfault"), "{}", d[0].evidence);
    assert!(d[0].score < 0.5, "weak on its own");
}

fn seq(count: u64) -> SequenceRule {
    SequenceRule {
        name: "change_then_errors".into(),
        first: EventMatch {
            kind: Some(EventKind::Change),
            ..EventMatch::default()
        },
        then: EventMatch {
            min_severity: Some(Severity::Error),
            ..EventMatch::default()
        },
        count,
        within: DurationMs(300_000),
        scope: SequenceScope::Service,
        category: Category::BadDeploy,
        weight: 0.8,
    }
}

fn change(t: i64, svc: &str) -> ErrorEvent {
    let mut e = ev(t, svc, Severity::Info, "deployed v2");
    e.kind = EventKind::Change;
    e
}

#[test]
fn sequence_fires_when_the_burst_follows_in_time_on_the_same_service() {
    let mut r = rig(vec![seq(3)]);
    r.feed(change(0, "api"));
    r.feed(ev(1_000, "web", Severity::Error, "boom"));
    r.feed(ev(2_000, "api", Severity::Error, "boom"));
    r.feed(ev(3_000, "api", Severity::Warning, "meh"));
    r.feed(ev(4_000, "api", Severity::Error, "boom"));
    assert!(
        r.rules("sequence:change_then_errors").is_empty(),
        "2 of 3, and web is not api"
    );
    r.feed(ev(5_000, "api", Severity::Error, "boom"));
    let d = r.rules("sequence:change_then_errors");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].service, "api");
    assert_eq!(d[0].hints[0].category, Category::BadDeploy);
    assert_eq!(d[0].first_seen, EventTime(0));
}

#[test]
fn sequence_does_not_fire_after_its_time_limit() {
    let mut r = rig(vec![seq(2)]);
    r.feed(change(0, "api"));
    r.feed(ev(10_000, "api", Severity::Error, "boom"));
    r.wm(400_000);
    r.feed(ev(400_001, "api", Severity::Error, "boom"));
    r.feed(ev(400_002, "api", Severity::Error, "boom"));
    assert!(r.rules("sequence:change_then_errors").is_empty());
}

#[test]
fn sequences_can_name_signatures_and_bad_names_are_rejected() {
    let mut s = seq(1);
    s.first = EventMatch {
        signature: Some("nope".into()),
        ..EventMatch::default()
    };
    let sigs = rig(vec![]).sigs;
    let errs = compile_sequences(&[s.clone()], &sigs).unwrap_err();
    assert_eq!(errs[0].0, 0);
    assert_eq!(errs[0].1, "first");
    s.first.signature = Some("oom".into());
    assert!(compile_sequences(&[s], &sigs).is_ok());
}

fn call(t: i64, from: &str, to: &str, trace: &str) -> ErrorEvent {
    let mut e = ev(t, from, Severity::Error, "call failed: timeout");
    e.upstream = Some(to.into());
    e.trace_id = Some(trace.into());
    e
}

#[test]
fn cascade_needs_the_upstream_to_fail_too() {
    let mut r = rig(vec![]);
    for i in 0..6 {
        r.feed(call(i * 1_000, "web", "api", &format!("t{i}")));
    }
    r.wm(60_000);
    assert!(
        r.rules("cascade").is_empty(),
        "api reports nothing: no cascade"
    );
    for i in 0..6 {
        r.feed(call(60_000 + i * 1_000, "web", "api", &format!("u{i}")));
        let mut own = ev(59_000 + i * 1_000, "api", Severity::Error, "OOMKilled");
        own.trace_id = Some(format!("u{i}"));
        r.feed(own);
    }
    r.wm(120_000);
    let c = r.rules("cascade");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].service, "web");
    assert_eq!(c[0].upstreams[0].value, "api");
    let t = r.rules("trace_cascade");
    assert_eq!(t.len(), 1, "{:?}", r.out);
    assert_eq!(
        t[0].service, "web",
        "web erred after api in the shared traces"
    );
    assert_eq!(t[0].upstreams[0].value, "api", "so web depends on api");
    assert!(
        t[0].evidence.contains("erred first in api, then in web"),
        "{}",
        t[0].evidence
    );
}

#[test]
fn a_recurring_new_template_of_its_own_kind_is_strong_a_victims_is_not() {
    // After the warm-up, "consumer" logs a never-seen error of its own kind
    // (the rig's only signature, oom) three times a minute: a slow failure
    // below any rate threshold. "web" logs a never-seen error that says
    // nothing about itself just as often: a victim's complaint, not a fault
    // of its own. Events naming an upstream never count.
    let mut r = rig(vec![]);
    r.feed(ev(0, "consumer", Severity::Error, "warm-up"));
    r.wm(120_000);
    for m in 2..7 {
        for i in 0..3 {
            let t = m * 60_000 + i * 1_000;
            r.feed(ev(
                t,
                "consumer",
                Severity::Error,
                &format!("worker {i} OOMKilled on batch"),
            ));
            r.feed(ev(
                t,
                "web",
                Severity::Error,
                &format!("render {i} failed, retry later"),
            ));
            let mut call = ev(
                t,
                "edge",
                Severity::Error,
                &format!("call {i} OOMKilled upstream"),
            );
            call.upstream = Some("consumer".into());
            r.feed(call);
        }
        r.wm((m + 1) * 60_000);
    }
    let rec = r.rules("recurring_new_template");
    assert!(!rec.is_empty(), "{:#?}", r.out);
    assert!(rec.iter().all(|d| d.service == "consumer"), "{rec:#?}");
    assert!(
        rec.iter().all(|d| d.score >= 0.5),
        "strong enough to open: {rec:#?}"
    );
}
