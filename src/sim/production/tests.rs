//! Tests of the production profile: the fleet's promised shape, every
//! producer encoding decoding to the same event, and a schedule that
//! overlaps, covers the taxonomy and fits the run.

use super::*;
use crate::codec::json::decode_event;
use crate::model::{Category, ErrorEvent, EventTime, Severity};
use crate::sim::gen::Rng;

#[test]
fn production_fleet_has_the_promised_shape() {
    let f = fleet(&mut Rng::new(4), 1.0);
    assert!(f.services.len() >= 30);
    let ns: std::collections::BTreeSet<&str> =
        f.services.values().map(|s| s.namespace.as_str()).collect();
    assert!(ns.len() >= 4);
    assert!(f.nodes.len() >= 6);
    let zones: std::collections::BTreeSet<&String> = f.zones.values().collect();
    assert!(zones.len() >= 2);
    assert!(f.externals.len() >= 5);
    for s in f.services.values() {
        for c in &s.calls {
            assert!(f.services.contains_key(c), "{} calls unknown {c}", s.name);
        }
    }
    for h in noisy_services() {
        assert!(f.get(h).is_some(), "{h}");
    }
}

#[test]
fn every_encoding_decodes_to_the_same_event() {
    let mut ev = ErrorEvent::new(
        "id-1",
        EventTime(1_772_431_200_123),
        "cart",
        Severity::Critical,
        "boom",
    );
    ev.namespace = Some("orders".into());
    ev.instance = Some("cart-1".into());
    ev.upstream = Some("pricing".into());
    ev.attributes.insert("zone".into(), "eu-west-1a".into());
    let mut rng = Rng::new(1);
    for line in [
        encode_zoned(&ev).expect("zoned"),
        encode_shipper(&ev, &mut rng).expect("shipper"),
        encode_shipper(&ev, &mut rng).expect("shipper"),
        encode_shipper(&ev, &mut rng).expect("shipper"),
    ] {
        let d = decode_event(&line).expect("decodes");
        assert_eq!(d.time, ev.time, "{}", String::from_utf8_lossy(&line));
        assert_eq!(d.severity, ev.severity);
        assert_eq!(d.upstream, ev.upstream);
        assert_eq!(
            d.attributes.get("zone").map(String::as_str),
            Some("eu-west-1a")
        );
    }
}

#[test]
fn plan_overlaps_cycles_and_fits() {
    let f = fleet(&mut Rng::new(5), 1.0);
    let start = EventTime(1_772_431_200_000);
    let p = plan(&mut Rng::new(6), &f, start, 7.0, 12, &[]);
    assert_eq!(p.len(), 12);
    let cats: std::collections::BTreeSet<Category> = p.iter().map(|x| x.kind.category()).collect();
    assert_eq!(cats.len(), 11);
    let overlapping = p
        .windows(2)
        .filter(|w| {
            w[1].onset
                < w[0]
                    .human_fix_at
                    .min(w[0].natural_end.unwrap_or(w[0].human_fix_at))
        })
        .count();
    assert!(overlapping >= 2, "{overlapping}");
    assert!(p.iter().any(|x| x.shape.intermittent.is_some()));
    assert!(p.iter().any(|x| x.shape.root_share < 1.0));
    let end = start.plus_ms(7 * 3_600_000);
    assert!(p.iter().all(|x| x.onset < end.plus_ms(-20 * 60_000)));
}
