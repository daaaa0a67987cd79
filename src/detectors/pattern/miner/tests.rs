//! Tests of the template miner: masking, generalisation, stable ids,
//! snapshots, eviction.

use super::*;
use crate::detectors::pattern::mask::WILDCARD;
use proptest::prelude::*;

fn miner() -> TemplateMiner {
    TemplateMiner::new(&MinerConfig::default())
}

/// Glob match of a whole template against a whole message.
fn matches(template: &str, message: &str) -> bool {
    let norm: Vec<&str> = message.split_ascii_whitespace().collect();
    let norm = norm.join(" ");
    let pat: Vec<String> = template.split(WILDCARD).map(regex::escape).collect();
    let re = regex::Regex::new(&format!("^(?s:{})$", pat.join("(?s:.*)"))).unwrap();
    re.is_match(&norm)
}

#[test]
fn id_displays_short_and_stable() {
    let mut m = miner();
    let id = m.observe("Connection closed by 10.0.0.1 port 22");
    let s = id.to_string();
    assert_eq!(s.len(), 9);
    assert!(s.starts_with('T'));
    assert_eq!(
        s,
        miner()
            .observe("Connection closed by 10.9.9.9 port 80")
            .to_string()
    );
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn masked_variables_share_a_template() {
    let mut m = miner();
    let a = m.observe_detailed("Took 1.5 seconds to spawn the instance");
    let b = m.observe_detailed("Took 19.05 seconds to spawn the instance");
    assert!(a.created);
    assert!(!b.created);
    assert_eq!(a.id, b.id);
    assert_eq!(m.template(a.id), Some("Took <*> to spawn the instance"));
    assert_eq!(m.count(a.id), Some(2));
}

#[test]
fn few_distinct_words_stay_separate_templates() {
    let mut m = miner();
    let s = m.observe("VM Started (Lifecycle Event)");
    let p = m.observe("VM Paused (Lifecycle Event)");
    let r = m.observe("VM Resumed (Lifecycle Event)");
    assert_ne!(s, p);
    assert_ne!(p, r);
    assert_eq!(m.len(), 3);
    assert_eq!(m.template(p), Some("VM Paused (Lifecycle Event)"));
}

#[test]
fn many_distinct_words_generalise() {
    let mut m = miner();
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let ids: Vec<TemplateId> = users
        .iter()
        .map(|u| m.observe(&format!("session opened for user {u} by root")))
        .collect();
    let last = m.resolve(ids[5]);
    for id in &ids {
        assert_eq!(m.resolve(*id), last);
    }
    // The id is the one of the first template created.
    assert_eq!(last, ids[0]);
    assert_eq!(
        m.template(ids[1]),
        Some("session opened for user <*> by root")
    );
    assert_eq!(m.len(), 1);
}

#[test]
fn key_value_values_generalise_sooner() {
    let mut m = miner();
    let a = m.observe("login failed user=root");
    m.observe("login failed user=guest");
    let c = m.observe("login failed user=test");
    assert_eq!(m.resolve(a), c);
    assert_eq!(m.template(a), Some("login failed user=<*>"));
}

#[test]
fn a_numeric_slot_absorbs_earlier_words() {
    let mut m = miner();
    let a = m.observe("Invalid user webmaster from 1.2.3.4");
    let b = m.observe("Invalid user test9 from 1.2.3.5");
    assert_eq!(m.resolve(a), m.resolve(b));
    assert_eq!(m.template(a), Some("Invalid user <*> from <*>"));
}

fn corpus() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..500u32 {
        v.push(format!(
            "Received block blk_{} of size {} from /10.0.{}.{}",
            i * 7919,
            i * 13,
            i % 7,
            i % 251
        ));
        v.push(format!(
            "worker {} state {}",
            i % 3,
            ["running", "blocked", "idle"][(i % 3) as usize]
        ));
        v.push(format!(
            "user u{} logged in from host{}.example.com",
            i % 17,
            i % 5
        ));
        v.push(format!("shape{} a b c", i % 40));
    }
    v
}

#[test]
fn ids_are_stable_across_runs() {
    let run = || {
        let mut m = miner();
        let ids: Vec<TemplateId> = corpus().iter().map(|l| m.observe(l)).collect();
        ids.iter().map(|i| m.resolve(*i)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn ids_survive_snapshot_and_restore() {
    let lines = corpus();
    let cfg = MinerConfig::default();
    let mut straight = TemplateMiner::new(&cfg);
    let ids: Vec<TemplateId> = lines.iter().map(|l| straight.observe(l)).collect();

    let (first, second) = lines.split_at(lines.len() / 2);
    let mut before = TemplateMiner::new(&cfg);
    let mut ids2: Vec<TemplateId> = first.iter().map(|l| before.observe(l)).collect();
    let json = serde_json::to_string(&before.snapshot()).unwrap();
    let state: MinerState = serde_json::from_str(&json).unwrap();
    let mut after = TemplateMiner::restore(&cfg, state);
    assert_eq!(after.len(), before.len());
    ids2.extend(second.iter().map(|l| after.observe(l)));
    for (a, b) in ids.iter().zip(&ids2) {
        assert_eq!(straight.resolve(*a), after.resolve(*b));
        assert_eq!(straight.template(*a), after.template(*b));
    }
    assert_eq!(straight.snapshot(), after.snapshot());
}

#[test]
fn eviction_bounds_the_number_of_templates() {
    let cfg = MinerConfig {
        max_templates: 32,
        ..MinerConfig::default()
    };
    let mut m = TemplateMiner::new(&cfg);
    let words = ["alpha", "beta", "gamma", "delta", "kappa", "omega"];
    for i in 0..5000usize {
        let l = format!(
            "{} {} {}",
            words[i % 6],
            words[(i / 6) % 6],
            "x".repeat(i % 50 + 1)
        );
        m.observe(&l);
        assert!(m.len() <= 32);
    }
    // A hot template survives.
    let hot = m.observe("alpha beta x");
    for i in 0..200usize {
        m.observe(&format!(
            "fresh{} thing{}",
            "y".repeat(i % 40),
            "z".repeat(i % 7)
        ));
        m.observe("alpha beta x");
    }
    assert!(m.template(hot).is_some());
    assert!(m.len() <= 32);
    assert!(m.snapshot().aliases.len() <= 2 * 32);
}

#[test]
fn evicted_template_comes_back_with_the_same_id() {
    let cfg = MinerConfig {
        max_templates: 4,
        ..MinerConfig::default()
    };
    let mut m = TemplateMiner::new(&cfg);
    let first = m.observe("disk full on volume 7");
    for w in ["alpha", "beta", "gamma", "delta", "kappa", "omega"] {
        m.observe(&format!("{w} event happened"));
    }
    assert!(m.template(first).is_none());
    assert_eq!(m.observe("disk full on volume 9"), first);
    // A snapshot restored under a smaller cap keeps only the newest.
    let small = MinerConfig {
        max_templates: 2,
        ..MinerConfig::default()
    };
    let r = TemplateMiner::restore(&small, m.snapshot());
    assert!(r.len() <= 2);
    assert!(r.template(first).is_some());
}

#[test]
fn empty_and_whitespace_messages() {
    let mut m = miner();
    let a = m.observe("");
    let b = m.observe("   \t ");
    assert_eq!(a, b);
    assert_eq!(m.template(a), Some(""));
}

proptest! {
    #[test]
    fn observe_never_panics_and_template_matches(lines in proptest::collection::vec(".{0,80}", 1..40)) {
        let mut m = miner();
        let mut ids = Vec::new();
        for l in &lines {
            let id = m.observe(l);
            let t = m.template(id).unwrap().to_string();
            prop_assert!(matches(&t, l), "template {:?} vs message {:?}", t, l);
            ids.push(id);
        }
        // Final templates still match every message assigned to them.
        for (l, id) in lines.iter().zip(&ids) {
            if let Some(t) = m.template(*id) {
                prop_assert!(matches(t, l), "final template {:?} vs message {:?}", t, l);
            }
        }
    }

    #[test]
    fn structured_lines_match_their_templates(
        words in proptest::collection::vec("[a-z]{1,6}|[0-9]{1,5}|[a-f0-9:.=/()-]{1,12}", 1..12),
        n in 1usize..30,
    ) {
        let mut m = miner();
        for i in 0..n {
            let mut w = words.clone();
            let k = i % w.len();
            w[k] = format!("{}{}", w[k], i);
            let l = w.join(" ");
            let id = m.observe(&l);
            let t = m.template(id).unwrap();
            prop_assert!(matches(t, &l), "template {:?} vs message {:?}", t, l);
        }
    }
}
