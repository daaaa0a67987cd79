use reflex::config::Config;
use reflex::model::Category::*;
use reflex::sim::demo::{self, DemoOptions};
use reflex::sinks::Output;
fn main() {
    let cats = vec![Unavailable, ConfigError, Unknown, Unavailable];
    let mut cfg = Config::embedded().unwrap();
    if std::env::var("RULES").is_ok() { cfg.diagnosis.classifier = false; }
    let o = DemoOptions { seed: 13, faults: 4, hours: 1.25 + 4.0 * 0.6 + 0.01, narrate: false, volume: 0.5, categories: cats, ..DemoOptions::default() };
    let r = demo::run(&cfg, &o, &mut std::io::sink()).unwrap();
    for x in r.outputs.iter() {
        match x {
            Output::Incident(i) => println!("INC {} {:?} {} {} {} {:?}", i.incident_id, i.status, i.root_cause_service, i.category, i.confidence, &i.evidence[..i.evidence.len().min(8)]),
            Output::Action(a) => println!("ACT {} {} {:?} risk {}", a.action_type.as_str(), a.target.service, a.decision, a.risk),
            _ => {}
        }
    }
}
