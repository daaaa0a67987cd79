//! The `production` profile of `reflex demo`: a fleet as hostile as a real
//! one (project issue 14).
//!
//! The demo profile's background is isolated and steady; a production
//! fleet's is *chronic*. This module adds, on top of the demo machinery:
//!
//! - a bigger fleet ([`fleet`]): 36 services in 7 namespaces (edge,
//!   storefront, orders, payments, identity, platform, data), 9 nodes in 3
//!   zones (`attributes.zone`), 17 external hosts (managed databases and
//!   caches, SaaS APIs), a deep call graph (ingress → gateway → BFFs →
//!   domain services → shared platform services such as auth, config and
//!   ledger), every runtime (Java, Go, Python, Node, ingress-nginx/envoy);
//! - the chronic background ([`Chronic`]): every dependency edge fails a
//!   small, slowly drifting, diurnal share of calls all day, in the very
//!   phrasings callers use during faults (timeouts, 5xx, refused), with
//!   `upstream` set and the upstream's own harmless error on the same trace;
//!   proxies log the 5xx they pass on; short retry storms on one edge;
//!   cron batch jobs that fail loudly for a few minutes at fixed times;
//!   Kubernetes warning events (probe failures, BackOff,
//!   FailedScheduling); three services with high chronic error rates;
//! - harmless deploys, ConfigMap changes and autoscaler events all day,
//!   some right before a fault on *another* service ([`changes`]);
//! - a fault schedule ([`plan`]) with onsets 20-45 minutes apart, some
//!   overlapping (two at once, some on services sharing a caller), some
//!   intermittent, some on noisy services, some whose callers are far
//!   louder than the root;
//! - producers' variety ([`encode_zoned`], [`encode_shipper`]): local-time
//!   offsets, microseconds, epoch milliseconds, runtime severities, log
//!   shipper envelopes with nested unknown fields.
//!
//! Faults stay discoverable: they raise the affected edges' error rates
//! several times above their chronic baseline, and the root's own evidence
//! (OOM lines, x509 errors, parse errors...) is in its logs except for
//! silent roots and external dependencies. Everything is a function of the
//! seed; the demo profile draws nothing from here.

use super::faults::{
    self, caller_lines, external_lines, FaultKind, FaultPlan, RootKind, Shape, Symptom,
};
use super::fleet::{daily_traffic, Encoding, Fleet, Instance, Lang, Service};
use super::gen::Rng;
use super::noise::{self, t, Tpl, GO_TRACE, JAVA_STACK, NODE_STACK, PY_TRACE};
use super::text::{k8s_suffix, trace_id};
use super::world::{make, pick_dep, pick_instance, uniform_time, World};
use crate::model::{Category, ErrorEvent, EventKind, EventTime, Severity};
use std::collections::BTreeMap;

use Severity::{Error as E, Warning as W};

/// Which simulated fleet `reflex demo` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The small web shop with isolated, steady background noise (the
    /// default; its output is the project's golden figures).
    #[default]
    Demo,
    /// A production-like fleet with chronic background noise, overlapping
    /// and intermittent faults and varied producers.
    Production,
}

impl Profile {
    /// `demo` or `production`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "demo" => Some(Profile::Demo),
            "production" | "prod" => Some(Profile::Production),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Demo => "demo",
            Profile::Production => "production",
        }
    }

    /// Default simulated hours.
    pub fn default_hours(self) -> f64 {
        match self {
            Profile::Demo => 8.0,
            Profile::Production => 7.0,
        }
    }

    /// Default number of faults.
    pub fn default_faults(self) -> usize {
        match self {
            Profile::Demo => 11,
            Profile::Production => 12,
        }
    }
}

// ------------------------------------------------------------------ fleet

struct P {
    name: &'static str,
    ns: &'static str,
    lang: Lang,
    calls: &'static [&'static str],
    ext: &'static [&'static str],
    replicas: (i64, i64),
    /// Background events/s at peak (all severities).
    noise: f64,
    consumer: bool,
}

const CATALOG_DB: &str = "catalog-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com";
const ORDERS_DB: &str = "orders-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com";
const LEDGER_DB: &str = "ledger-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com";
const USERS_DB: &str = "users-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com";
const CACHE: &str = "shop-cache.x1y2z3.ng.0001.euw1.cache.amazonaws.com";
const FEATURES: &str = "features.x1y2z3.ng.0002.euw1.cache.amazonaws.com";
const ES: &str = "search-prod.es.eu-west-1.aws.found.io";
const STRIPE: &str = "api.stripe.com";
const ADYEN: &str = "checkout-live.adyen.com";
const SIFT: &str = "api.sift.com";
const IDP: &str = "idp.login-provider.example.net";
const SENDGRID: &str = "api.sendgrid.com";
const TWILIO: &str = "api.twilio.com";
const FLAGS: &str = "app.launchdarkly.com";
const BIGQUERY: &str = "bigquery.googleapis.com";
const SHIPENGINE: &str = "api.shipengine.com";
const SNOWFLAKE: &str = "xy12345.eu-west-1.snowflakecomputing.com";
const S3: &str = "shop-media.s3.eu-west-1.amazonaws.com";

const fn p(
    name: &'static str,
    ns: &'static str,
    lang: Lang,
    calls: &'static [&'static str],
    ext: &'static [&'static str],
    noise: f64,
) -> P {
    P {
        name,
        ns,
        lang,
        calls,
        ext,
        replicas: (2, 4),
        noise,
        consumer: false,
    }
}

const fn consumer(mut x: P) -> P {
    x.consumer = true;
    x
}

const fn replicas(mut x: P, lo: i64, hi: i64) -> P {
    x.replicas = (lo, hi);
    x
}

use Lang::{Go, Java, Node, Proxy, Python};

const FLEET: &[P] = &[
    // edge
    replicas(
        p(
            "ingress-nginx",
            "edge",
            Proxy,
            &["api-gateway", "admin-portal"],
            &[],
            0.5,
        ),
        3,
        4,
    ),
    replicas(
        p(
            "api-gateway",
            "edge",
            Proxy,
            &["web-bff", "mobile-bff", "partner-api"],
            &[],
            0.5,
        ),
        3,
        5,
    ),
    p(
        "partner-api",
        "edge",
        Java,
        &["catalog", "inventory", "orders-api", "auth"],
        &[],
        0.25,
    ),
    // storefront
    replicas(
        p(
            "web-bff",
            "storefront",
            Node,
            &[
                "catalog",
                "search",
                "recommendations",
                "cart",
                "account-api",
                "feature-flags",
                "analytics-collector",
                "reviews",
            ],
            &[],
            0.4,
        ),
        3,
        5,
    ),
    p(
        "mobile-bff",
        "storefront",
        Node,
        &[
            "catalog",
            "search",
            "cart",
            "checkout-api",
            "account-api",
            "feature-flags",
            "analytics-collector",
        ],
        &[],
        0.35,
    ),
    p(
        "catalog",
        "storefront",
        Java,
        &["pricing", "media-service", "config-service"],
        &[CATALOG_DB],
        0.3,
    ),
    p("search", "storefront", Java, &["catalog"], &[ES], 0.25),
    p(
        "recommendations",
        "storefront",
        Python,
        &["catalog", "feature-store"],
        &[],
        0.2,
    ),
    p(
        "reviews",
        "storefront",
        Go,
        &["auth", "user-profile"],
        &[],
        0.15,
    ),
    p("media-service", "storefront", Go, &[], &[S3], 0.15),
    // orders
    p(
        "cart",
        "orders",
        Go,
        &["pricing", "inventory", "session-store"],
        &[CACHE],
        0.3,
    ),
    p(
        "checkout-api",
        "orders",
        Java,
        &[
            "cart",
            "pricing",
            "inventory",
            "payment-gateway",
            "orders-api",
            "shipping",
            "auth",
        ],
        &[],
        0.3,
    ),
    p(
        "orders-api",
        "orders",
        Java,
        &["ledger", "inventory", "config-service", "audit-log"],
        &[ORDERS_DB],
        0.25,
    ),
    p(
        "pricing",
        "orders",
        Go,
        &["promotions", "config-service"],
        &[],
        0.2,
    ),
    p(
        "promotions",
        "orders",
        Node,
        &["config-service", "feature-flags"],
        &[],
        0.15,
    ),
    p(
        "inventory",
        "orders",
        Java,
        &["config-service"],
        &[ORDERS_DB],
        0.25,
    ),
    consumer(p(
        "order-events",
        "orders",
        Python,
        &["inventory", "notifications", "ledger"],
        &[],
        0.15,
    )),
    p(
        "shipping",
        "orders",
        Go,
        &["config-service"],
        &[SHIPENGINE],
        0.15,
    ),
    // payments
    p(
        "payment-gateway",
        "payments",
        Go,
        &["fraud-check", "ledger", "auth", "audit-log"],
        &[STRIPE, ADYEN],
        0.25,
    ),
    p(
        "fraud-check",
        "payments",
        Python,
        &["feature-store"],
        &[SIFT],
        0.15,
    ),
    p(
        "ledger",
        "payments",
        Java,
        &["config-service", "audit-log"],
        &[LEDGER_DB],
        0.2,
    ),
    consumer(p(
        "refunds",
        "payments",
        Java,
        &["ledger", "payment-gateway", "notifications"],
        &[],
        0.1,
    )),
    replicas(
        p(
            "ledger-reconcile",
            "payments",
            Java,
            &["ledger"],
            &[LEDGER_DB],
            0.05,
        ),
        1,
        1,
    ),
    // identity
    replicas(
        p(
            "auth",
            "identity",
            Go,
            &["user-profile", "session-store", "config-service"],
            &[IDP],
            0.3,
        ),
        3,
        4,
    ),
    p(
        "account-api",
        "identity",
        Node,
        &["auth", "user-profile", "notifications"],
        &[],
        0.2,
    ),
    p(
        "user-profile",
        "identity",
        Java,
        &["config-service"],
        &[USERS_DB],
        0.2,
    ),
    p("session-store", "identity", Go, &[], &[CACHE], 0.15),
    // platform
    replicas(p("config-service", "platform", Go, &[], &[], 0.1), 2, 3),
    p(
        "feature-flags",
        "platform",
        Node,
        &["config-service"],
        &[FLAGS],
        0.15,
    ),
    consumer(p(
        "notifications",
        "platform",
        Node,
        &[],
        &[SENDGRID, TWILIO],
        0.15,
    )),
    p("audit-log", "platform", Go, &[], &[], 0.1),
    replicas(
        p(
            "admin-portal",
            "platform",
            Python,
            &["catalog", "orders-api", "auth", "user-profile"],
            &[],
            0.1,
        ),
        1,
        2,
    ),
    // data
    p("feature-store", "data", Python, &[], &[FEATURES], 0.15),
    replicas(
        p(
            "reporting-batch",
            "data",
            Python,
            &["orders-api"],
            &[ORDERS_DB, SNOWFLAKE],
            0.05,
        ),
        1,
        1,
    ),
    consumer(p("search-indexer", "data", Java, &["catalog"], &[ES], 0.1)),
    p("analytics-collector", "data", Go, &[], &[BIGQUERY], 0.2),
];

/// The production fleet for a seed; `volume` scales every background rate.
pub fn fleet(rng: &mut Rng, volume: f64) -> Fleet {
    let zones = ["a", "b", "c"];
    let mut nodes = Vec::new();
    let mut zone_of = BTreeMap::new();
    for i in 0..9 {
        let z = zones[i % 3];
        let n = format!(
            "ip-10-20-{}-{}.eu-west-1.compute.internal",
            16 * (i % 3) + rng.int(1, 15) as usize,
            rng.int(10, 250)
        );
        zone_of.insert(n.clone(), format!("eu-west-1{z}"));
        nodes.push(n);
    }
    let mut services = BTreeMap::new();
    let mut externals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in FLEET {
        let replicas = rng.int(s.replicas.0, s.replicas.1);
        let rs = format!("{}{}", rng.int(5, 9), k8s_suffix(rng, 8));
        let instances = (0..replicas)
            .map(|_| Instance {
                pod: format!("{}-{rs}-{}", s.name, k8s_suffix(rng, 5)),
                node: rng.pick(&nodes).clone(),
            })
            .collect();
        for e in s.ext {
            externals
                .entry((*e).to_string())
                .or_default()
                .push(s.name.to_string());
        }
        let version = match s.lang {
            Go | Proxy => format!("v1.{}.{}", rng.int(2, 30), rng.int(0, 9)),
            Java => format!("{}.{}.{}", rng.int(2, 5), rng.int(0, 20), rng.int(0, 9)),
            Python | Node => format!("{}{}", rng.int(2024, 2026), k8s_suffix(rng, 7)),
        };
        let r = rng.f64();
        let encoding = match s.lang {
            Go if r < 0.8 => Encoding::Zoned,
            Java if r < 0.7 => Encoding::Shipper,
            Node if r < 0.5 => Encoding::Shipper,
            Proxy if r < 0.5 => Encoding::Shipper,
            Python | Proxy => Encoding::Legacy,
            _ => Encoding::Canonical,
        };
        services.insert(
            s.name.to_string(),
            Service {
                name: s.name.to_string(),
                namespace: s.ns.to_string(),
                lang: s.lang,
                encoding,
                calls: s.calls.iter().map(|c| c.to_string()).collect(),
                externals: s.ext.iter().map(|c| c.to_string()).collect(),
                instances,
                replicas,
                version,
                noise_rate: s.noise * volume * rng.range(0.8, 1.2),
                error_share: rng.range(0.04, 0.1),
                consumer: s.consumer,
            },
        );
    }
    Fleet {
        services,
        nodes,
        externals,
        zones: zone_of,
    }
}

// ------------------------------------------------------------ the schedule

/// Minutes kept after the last onset (the last fault runs and settles).
const TAIL_MIN: i64 = 40;
/// Onset spacing of faults that do not overlap, in minutes.
const GAP_MIN: (i64, i64) = (20, 45);

/// The most faults that fit in `hours` of the production profile.
pub fn max_faults(hours: f64) -> usize {
    let usable = hours * 60.0 - (faults::WARMUP_MIN + TAIL_MIN) as f64;
    // Three in four faults take at least GAP_MIN.0 (less when compressed, 15).
    ((usable / 12.0).floor().max(0.0) as usize).saturating_add(1)
}

/// The services with a high chronic error rate (noisy baselines).
pub fn noisy_services() -> impl Iterator<Item = &'static str> {
    HOT.iter().map(|h| h.0)
}

fn is_overlap(i: usize) -> bool {
    i % 4 == 2
}

/// Plans `n` faults over `[start, start + hours)`: categories cycle through
/// the taxonomy in a seeded order (or through `only`), onsets 20-45 minutes
/// apart except that every fourth fault starts 2-8 minutes after the one
/// before (overlapping; every other such pair on services sharing a
/// caller). Some faults are intermittent, some sit on a noisy service,
/// some have a quiet root with loud callers.
pub fn plan(
    rng: &mut Rng,
    fleet: &Fleet,
    start: EventTime,
    hours: f64,
    n: usize,
    only: &[Category],
) -> Vec<FaultPlan> {
    let mut cats: Vec<Category> = Category::ALL.to_vec();
    for i in (1..cats.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        cats.swap(i, j);
    }
    if !only.is_empty() {
        cats = only.to_vec();
    }
    // Onsets.
    let mut gaps: Vec<i64> = (0..n)
        .map(|i| match i {
            0 => 0,
            _ if is_overlap(i) => rng.int(2, 8),
            _ => rng.int(GAP_MIN.0, GAP_MIN.1),
        })
        .collect();
    let avail = (hours * 60.0) as i64 - faults::WARMUP_MIN - TAIL_MIN;
    let total: i64 = gaps.iter().sum();
    if total > avail && total > 0 {
        let long: i64 = (0..n)
            .filter(|&i| i > 0 && !is_overlap(i))
            .map(|i| gaps[i])
            .sum();
        let short = total - long;
        let scale = (avail - short).max(0) as f64 / long.max(1) as f64;
        for (i, g) in gaps.iter_mut().enumerate() {
            if i > 0 && !is_overlap(i) {
                *g = ((*g as f64 * scale) as i64).max(10);
            }
        }
    }
    let called: Vec<String> = fleet
        .services
        .keys()
        .filter(|s| !fleet.callers(s).is_empty())
        .cloned()
        .collect();
    let all: Vec<String> = fleet.services.keys().cloned().collect();
    let consumers: Vec<String> = fleet
        .services
        .values()
        .filter(|s| s.consumer)
        .map(|s| s.name.clone())
        .collect();
    let externals: Vec<String> = fleet.externals.keys().cloned().collect();
    // Noisy roots: the called services erring up to twice a second all day
    // (a fault there runs at 3-4 times that).
    let hot: Vec<String> = HOT
        .iter()
        .filter(|h| h.1 <= 2.0 && called.iter().any(|c| c == h.0))
        .map(|h| h.0.to_string())
        .collect();
    let mut out: Vec<FaultPlan> = Vec::with_capacity(n);
    let mut onset_min = faults::WARMUP_MIN;
    for (i, gap) in gaps.iter().enumerate() {
        onset_min += gap;
        let cat = cats[i % cats.len()];
        let kind = *rng.pick(FaultKind::of(cat));
        let onset = start.plus_ms(onset_min * 60_000 + rng.int(0, 59_000));
        let busy: Vec<String> = out
            .iter()
            .filter(|f| f.human_fix_at.plus_ms(30 * 60_000) > onset)
            .map(|f| f.root.clone())
            .collect();
        let service_root = !matches!(
            kind,
            FaultKind::ExternalDown | FaultKind::NodeNetwork | FaultKind::PoisonMessages
        );
        // A sibling of the previous root: both called by one service.
        let sibling = if is_overlap(i) && i % 8 == 2 && service_root {
            out.last().and_then(|prev| {
                let shared: Vec<&Service> = fleet.callers(&prev.root);
                let mut cands: Vec<String> = shared
                    .iter()
                    .flat_map(|c| c.calls.iter())
                    .filter(|s| **s != prev.root && !busy.contains(s))
                    .cloned()
                    .collect();
                cands.sort();
                cands.dedup();
                (!cands.is_empty()).then(|| rng.pick(&cands).clone())
            })
        } else {
            None
        };
        let noisy = (i % 5 == 3) && service_root && kind != FaultKind::ScaledToZero;
        let (root, root_kind) = match sibling {
            Some(s) => (s, RootKind::Service),
            None => {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let (r, k) = match kind {
                        FaultKind::ExternalDown => {
                            (rng.pick(&externals).clone(), RootKind::External)
                        }
                        FaultKind::NodeNetwork => (rng.pick(&fleet.nodes).clone(), RootKind::Node),
                        FaultKind::PoisonMessages => {
                            (rng.pick(&consumers).clone(), RootKind::Service)
                        }
                        _ if noisy && !hot.is_empty() => {
                            (rng.pick(&hot).clone(), RootKind::Service)
                        }
                        FaultKind::Opaque => (rng.pick(&all).clone(), RootKind::Service),
                        _ => (rng.pick(&called).clone(), RootKind::Service),
                    };
                    if !busy.contains(&r) || tries > 50 {
                        break (r, k);
                    }
                }
            }
        };
        let intermittent = (i % 3 == 1).then(|| (rng.int(60, 180) * 1000, rng.int(60, 240) * 1000));
        let mut shape = Shape {
            intermittent,
            ..Shape::default()
        };
        let on_noisy = noisy_services().any(|h| h == root);
        if i % 4 == 1 && !on_noisy && root_kind == RootKind::Service {
            shape.root_share = rng.range(0.1, 0.3);
            shape.caller_repeat = rng.int(3, 5) as u32;
        }
        let long = if shape.intermittent.is_some() { 2 } else { 1 };
        let natural_end = kind
            .self_ending()
            .then(|| onset.plus_ms(rng.int(8 * 60, 20 * 60) * 1000 * long));
        let human_fix_at = onset.plus_ms(rng.int(14 * 60, 30 * 60) * 1000 * long);
        let mut rate = rng.range(1.0, 2.5);
        if on_noisy {
            // Several times the noisy service's own chronic error rate.
            let base = HOT.iter().find(|h| h.0 == root).map_or(1.0, |h| h.1);
            rate = rate.max(base * rng.range(3.0, 4.0));
        }
        out.push(FaultPlan {
            id: format!("F{:02}", i + 1),
            kind,
            root,
            root_kind,
            onset,
            natural_end,
            human_fix_at,
            rate,
            shape,
        });
    }
    out
}

/// Harmless changes all day: deploys, ConfigMap changes and autoscaler
/// events every 5-15 minutes, plus a change on a neighbour of every other
/// fault's root 1-5 minutes before its onset. Never on a fault's root from
/// 30 minutes before its onset to 15 minutes after its fix (so a change on
/// the root before its fault is the fault's own change).
pub fn changes(
    rng: &mut Rng,
    fleet: &Fleet,
    plans: &[&FaultPlan],
    start: EventTime,
    end: EventTime,
) -> Vec<(EventTime, String, &'static str)> {
    let names: Vec<String> = fleet.services.keys().cloned().collect();
    let clash = |s: &str, t: EventTime| {
        plans.iter().any(|f| {
            f.root == s
                && t.millis() >= f.onset.millis() - 30 * 60_000
                && t <= f.human_fix_at.plus_ms(15 * 60_000)
        })
    };
    let mut out = Vec::new();
    let mut t = start.plus_ms(rng.int(3, 10) * 60_000);
    while t < end {
        let s = rng.pick(&names).clone();
        let r = rng.f64();
        let what = if r < 0.55 {
            "deploy"
        } else if r < 0.8 {
            "config"
        } else {
            "scale"
        };
        if !clash(&s, t) {
            out.push((t, s, what));
        }
        t = t.plus_ms(rng.int(5, 15) * 60_000 + rng.int(0, 59_000));
    }
    for (i, f) in plans.iter().enumerate() {
        if i % 2 == 1 {
            continue;
        }
        let mut near: Vec<String> = match f.root_kind {
            RootKind::Service => fleet
                .callers(&f.root)
                .iter()
                .map(|s| s.name.clone())
                .chain(fleet.get(&f.root).into_iter().flat_map(|s| s.calls.clone()))
                .collect(),
            RootKind::External => fleet
                .external_callers(&f.root)
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            RootKind::Node => Vec::new(),
        };
        if near.is_empty() {
            near = names.clone();
        }
        let at = f.onset.plus_ms(-rng.int(60, 300) * 1000);
        let s = rng.pick(&near).clone();
        if s != f.root && !clash(&s, at) {
            out.push((at, s, if rng.chance(0.6) { "deploy" } else { "config" }));
        }
    }
    out
}

// ------------------------------------------------------ chronic background

/// One dependency edge and its chronic failure rate.
#[derive(Debug, Clone)]
struct Edge {
    caller: String,
    upstream: String,
    external: bool,
    /// Failures/s at peak traffic.
    base: f64,
    symptom: Symptom,
    /// Slow drift: (amplitude, period ms, phase) pairs.
    drift: [(f64, f64, f64); 2],
}

impl Edge {
    fn rate(&self, t: EventTime, traffic: f64) -> f64 {
        let x = t.millis() as f64;
        let d: f64 = self
            .drift
            .iter()
            .map(|(a, p, ph)| a * (2.0 * std::f64::consts::PI * x / p + ph).sin())
            .sum();
        self.base * traffic * (1.0 + d).max(0.05)
    }
}

/// A short burst of retries on one edge.
#[derive(Debug, Clone)]
struct Storm {
    start: EventTime,
    end: EventTime,
    edge: usize,
    /// Events/s while it lasts.
    rate: f64,
    traces: Vec<String>,
}

/// A window during which a cron job runs and fails loudly.
#[derive(Debug, Clone)]
struct CronRun {
    service: &'static str,
    start: EventTime,
    end: EventTime,
    rate: f64,
    /// A Kubernetes CronJob run logs from a pod of its own, named as the Job
    /// controller names it (`<cronjob>-<scheduled minute>-<5 chars>`); a
    /// scheduled task inside a long-running service logs from that
    /// service's pods (`None`).
    pod: Option<Instance>,
}

/// A Kubernetes warning event repeating on one workload.
#[derive(Debug, Clone)]
struct K8sEpisode {
    service: String,
    start: EventTime,
    end: EventTime,
    /// Mean seconds between repeats.
    every_s: f64,
    reason: usize,
}

/// The chronic background of a production fleet, planned in advance.
#[derive(Debug, Clone)]
pub struct Chronic {
    edges: Vec<Edge>,
    storms: Vec<Storm>,
    crons: Vec<CronRun>,
    k8s: Vec<K8sEpisode>,
    volume: f64,
}

const HOT_ANALYTICS: &[Tpl] = &[
    t(E, "dropping event {uuid}: schema validation failed: field \"{field}\" is required").ty("SchemaValidationError"),
    t(E, "dropping event {uuid}: payload too large ({n} bytes > 65536)"),
    t(E, "insert batch of {n3} rows to {dep} failed: googleapi: Error 400: Invalid value for field '{field}', invalid").up(),
    t(W, "event {uuid} arrived {small}h late, routing to late-events"),
];
const HOT_RECS: &[Tpl] = &[
    t(E, "FeatureLookupError: no feature vector for user {user}").ty("FeatureLookupError"),
    t(
        E,
        "ValueError: Input contains NaN, infinity or a value too large for dtype('float32').",
    )
    .ty("ValueError")
    .stack(PY_TRACE),
    t(
        E,
        "model returned {small} recommendations, expected 10; padding with bestsellers",
    ),
];
const HOT_PARTNER: &[Tpl] = &[
    t(E, "Invalid API key for partner {id} (key prefix pk_live_{id})").st(401),
    t(E, "429 Too Many Requests: rate limit exceeded for partner {id} ({n3} req/min)").st(429),
    t(E, "Malformed partner payload: com.fasterxml.jackson.core.JsonParseException: Unexpected character ('<' (code 60)): expected a valid value")
        .ty("com.fasterxml.jackson.core.JsonParseException")
        .st(400),
    t(E, "Partner {id} requested unknown SKU {sku}").st(404),
];

/// Services with high chronic error rates: (service, errors/s at peak,
/// follows traffic, lines).
const HOT: &[(&str, f64, bool, &[Tpl])] = &[
    ("analytics-collector", 5.0, false, HOT_ANALYTICS),
    ("recommendations", 2.0, true, HOT_RECS),
    ("partner-api", 1.2, true, HOT_PARTNER),
];

const CRON_REPORTING: &[Tpl] = &[
    t(E, "psycopg2.errors.QueryCanceled: canceling statement due to statement timeout")
        .ty("psycopg2.errors.QueryCanceled")
        .stack(PY_TRACE),
    t(E, "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)")
        .ty("requests.exceptions.ReadTimeout")
        .up(),
    t(E, "row {n} skipped: invalid date '{word}' in column created_at"),
    t(W, "export of partition {small} to {dep} retried ({small}/5)").up(),
];
const CRON_RECONCILE: &[Tpl] = &[
    t(
        E,
        "Reconciliation mismatch for account {id}: ledger {n} != processor {n}",
    ),
    t(
        E,
        "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
    )
    .ty("java.sql.SQLTransientConnectionException")
    .stack(JAVA_STACK),
    t(
        E,
        "org.postgresql.util.PSQLException: ERROR: canceling statement due to lock timeout",
    )
    .ty("org.postgresql.util.PSQLException"),
];
const CRON_INDEXER: &[Tpl] = &[
    t(E, "bulk request to {dep} failed: 429 es_rejected_execution_exception: rejected execution of coordinating operation (queue capacity 200)")
        .st(429)
        .up(),
    t(E, "java.net.SocketTimeoutException: Read timed out (GET http://{dep}:8080/api/v2/products)")
        .ty("java.net.SocketTimeoutException")
        .up(),
    t(W, "reindex of products: {n} documents, {n3} failures so far"),
];

/// One scheduled job: (service, every N hours, at minute, minutes long
/// (lo, hi), errors/s while running, lines, a Kubernetes CronJob (its own
/// pod per run) rather than a task inside the service's pods).
type Cron = (
    &'static str,
    i64,
    i64,
    (i64, i64),
    f64,
    &'static [Tpl],
    bool,
);

/// The scheduled jobs of the fleet.
const CRONS: &[Cron] = &[
    ("reporting-batch", 1, 5, (3, 6), 2.0, CRON_REPORTING, true),
    ("ledger-reconcile", 2, 45, (4, 8), 1.2, CRON_RECONCILE, true),
    ("search-indexer", 3, 20, (4, 8), 1.5, CRON_INDEXER, false),
];

/// Kubernetes warning events (`reason`, message).
const K8S_WARN: &[(&str, Tpl)] = &[
    ("Unhealthy", t(W, "Readiness probe failed: Get \"http://{ip}:8080/ready\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
    ("Unhealthy", t(W, "Liveness probe failed: HTTP probe failed with statuscode: 503")),
    ("Unhealthy", t(W, "Readiness probe failed: HTTP probe failed with statuscode: 503 (pod {pod})")),
    ("BackOff", t(W, "Back-off restarting failed container {svc} in pod {pod}")),
    ("BackOff", t(W, "Back-off pulling image \"registry.example.com/shop/{svc}:canary\"")),
    ("FailedScheduling", t(W, "0/9 nodes are available: 3 Insufficient memory, 6 node(s) didn't match pod anti-affinity rules. preemption: 0/9 nodes are available: 9 No preemption victims found for incoming pod.")),
    ("FailedMount", t(W, "MountVolume.SetUp failed for volume \"kube-api-access-{id}\" : object \"{ns}\"/\"kube-root-ca.crt\" not registered")),
];

/// Harmless errors an upstream logs on a request its caller saw fail.
const UPSTREAM_OWN: [&[Tpl]; 5] = [
    &[
        t(E, "Unhandled exception for request {uuid}: java.lang.IllegalStateException: request {id} already completed")
            .ty("java.lang.IllegalStateException")
            .st(500)
            .stack(JAVA_STACK),
        t(E, "Servlet.service() for servlet [dispatcherServlet] threw exception: java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"token\" is null")
            .ty("java.lang.NullPointerException")
            .st(500)
            .stack(JAVA_STACK),
        t(W, "Request processing exceeded {ms}ms, client likely gave up"),
    ],
    &[
        t(E, "request {uuid} failed: context canceled").ty("context.Canceled"),
        t(E, "handler error: {path}: upstream returned status 500").st(500),
        t(E, "http: panic serving {ip}:{port}: runtime error: invalid memory address or nil pointer dereference")
            .st(500)
            .stack(GO_TRACE),
    ],
    &[
        t(E, "Internal Server Error: {path}").st(500).stack(PY_TRACE),
        t(E, "asyncio.exceptions.CancelledError: request {uuid} cancelled by client"),
    ],
    &[
        t(E, "Error: request aborted (client closed connection) {path}").ty("ECONNRESET"),
        t(E, "TypeError: Cannot read properties of undefined (reading 'id')")
            .ty("TypeError")
            .st(500)
            .stack(NODE_STACK),
    ],
    &[t(E, "\"GET {path} HTTP/1.1\" 500 0 \"-\" \"okhttp/4.12.0\" {qms}ms").st(500)],
];

/// Warning lines of a caller retrying a failing dependency (retry storms).
const RETRY: [&[Tpl]; 5] = [
    &[t(W, "Retrying call to {dep} (attempt {small}/5) after java.net.SocketTimeoutException: Read timed out").up()],
    &[t(W, "retrying after error: rpc error: code = Unavailable desc = connection error (attempt {small})").up()],
    &[t(W, "Retrying (Retry(total={small}, connect=None, read=None, redirect=None, status=None)) after connection broken by 'ReadTimeoutError(\"HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)\")': {path}").up()],
    &[t(W, "retrying request to {dep} after ETIMEDOUT (attempt {small} of 5)").up()],
    &[t(W, "upstream {dep} retry {small}/3: upstream request timeout").up()],
];

fn lang_index(l: Lang) -> usize {
    match l {
        Java => 0,
        Go => 1,
        Python => 2,
        Node => 3,
        Proxy => 4,
    }
}

fn drift(rng: &mut Rng) -> [(f64, f64, f64); 2] {
    [
        (
            rng.range(0.3, 0.7),
            rng.range(60.0, 240.0) * 60_000.0,
            rng.range(0.0, std::f64::consts::TAU),
        ),
        (
            rng.range(0.15, 0.35),
            rng.range(10.0, 30.0) * 60_000.0,
            rng.range(0.0, std::f64::consts::TAU),
        ),
    ]
}

impl Chronic {
    /// Plans the chronic background of `fleet` over `[start, end)`.
    pub fn new(
        rng: &mut Rng,
        fleet: &Fleet,
        start: EventTime,
        end: EventTime,
        volume: f64,
    ) -> Chronic {
        let mut edges = Vec::new();
        for s in fleet.services.values() {
            let deps = s
                .calls
                .iter()
                .map(|c| (c, false))
                .chain(s.externals.iter().map(|e| (e, true)));
            for (u, external) in deps {
                let base = if external {
                    (rng.range(0.003f64.ln(), 0.02f64.ln())).exp()
                } else if rng.chance(0.1) {
                    rng.range(0.05, 0.12)
                } else {
                    (rng.range(0.002f64.ln(), 0.03f64.ln())).exp()
                };
                let r = rng.f64();
                let symptom = if r < 0.45 {
                    Symptom::Timeout
                } else if r < 0.8 {
                    Symptom::ServerError
                } else if r < 0.92 {
                    Symptom::Refused
                } else {
                    Symptom::NoHealthy
                };
                edges.push(Edge {
                    caller: s.name.clone(),
                    upstream: u.clone(),
                    external,
                    base,
                    symptom,
                    drift: drift(rng),
                });
            }
        }
        let mut storms = Vec::new();
        let mut t = start.plus_ms(rng.int(5, 20) * 60_000);
        while t < end && !edges.is_empty() {
            let len = rng.int(5, 60) * 1000;
            let count = rng.int(20, 100) as f64;
            let traces = (0..rng.int(3, 8)).map(|_| trace_id(rng)).collect();
            storms.push(Storm {
                start: t,
                end: t.plus_ms(len),
                edge: rng.below(edges.len() as u64) as usize,
                rate: count / (len as f64 / 1000.0),
                traces,
            });
            t = t.plus_ms(rng.int(8, 30) * 60_000 + rng.int(0, 59_000));
        }
        let mut crons = Vec::new();
        let hour_ms = 3_600_000;
        let first_hour = start.millis().div_euclid(hour_ms) * hour_ms;
        for &(service, every, minute, (lo, hi), rate, _, cronjob) in CRONS {
            let Some(svc) = fleet.get(service) else {
                continue;
            };
            let mut h = first_hour;
            while h < end.millis() {
                let hour_of_day = h.rem_euclid(86_400_000) / hour_ms;
                if hour_of_day % every == 0 {
                    let scheduled = h + minute * 60_000;
                    let s = EventTime(scheduled + rng.int(0, 20_000));
                    if s >= start && s < end {
                        let pod = (cronjob && !svc.instances.is_empty()).then(|| Instance {
                            pod: format!("{service}-{}-{}", scheduled / 60_000, k8s_suffix(rng, 5)),
                            node: rng.pick(&svc.instances).node.clone(),
                        });
                        crons.push(CronRun {
                            service,
                            start: s,
                            end: s.plus_ms(rng.int(lo * 60, hi * 60) * 1000),
                            rate: rate * rng.range(0.7, 1.3),
                            pod,
                        });
                    }
                }
                h += hour_ms;
            }
        }
        let mut k8s = Vec::new();
        for s in fleet.services.values() {
            let mut t = start.plus_ms(rng.int(0, 90) * 60_000);
            while t < end {
                let len = rng.int(1, 10) * 60_000;
                k8s.push(K8sEpisode {
                    service: s.name.clone(),
                    start: t,
                    end: t.plus_ms(len),
                    every_s: rng.range(20.0, 90.0),
                    reason: rng.below(K8S_WARN.len() as u64) as usize,
                });
                t = t.plus_ms(rng.int(30, 120) * 60_000);
            }
        }
        Chronic {
            edges,
            storms,
            crons,
            k8s,
            volume,
        }
    }
}

fn overlap(a0: EventTime, a1: EventTime, b0: EventTime, b1: EventTime) -> f64 {
    let lo = a0.max(b0).millis();
    let hi = a1.min(b1).millis();
    ((hi - lo).max(0)) as f64 / 1000.0
}

fn random_symptom(rng: &mut Rng) -> Symptom {
    *rng.pick(&[
        Symptom::Timeout,
        Symptom::ServerError,
        Symptom::Refused,
        Symptom::Timeout,
        Symptom::ServerError,
    ])
}

impl World {
    /// Emits the chronic background of `[t0, t1)` (production profile).
    pub(super) fn chronic_background(&mut self, t0: EventTime, t1: EventTime, dt_s: f64) {
        let Some(ch) = self.chronic.take() else {
            return;
        };
        let mid = EventTime((t0.millis() + t1.millis()) / 2);
        let traffic = daily_traffic(mid);
        let mut out = Vec::new();
        for e in &ch.edges {
            let n = self.rng.poisson(e.rate(mid, traffic) * ch.volume * dt_s);
            for _ in 0..n {
                let t = uniform_time(&mut self.rng, t0, t1);
                let sym = if self.rng.chance(0.7) {
                    e.symptom
                } else {
                    random_symptom(&mut self.rng)
                };
                let trace = trace_id(&mut self.rng);
                self.edge_failure(e, sym, t, &trace, false, &mut out);
            }
        }
        for s in &ch.storms {
            let secs = overlap(s.start, s.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let Some(e) = ch.edges.get(s.edge) else {
                continue;
            };
            let (a, b) = (s.start.max(t0), s.end.min(t1));
            for _ in 0..self.rng.poisson(s.rate * secs) {
                let t = uniform_time(&mut self.rng, a, b);
                let trace = self.rng.pick(&s.traces).clone();
                let sym = if self.rng.chance(0.6) {
                    Symptom::Timeout
                } else {
                    e.symptom
                };
                self.edge_failure(e, sym, t, &trace, true, &mut out);
            }
        }
        for c in &ch.crons {
            let secs = overlap(c.start, c.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let lines = CRONS
                .iter()
                .find(|x| x.0 == c.service)
                .map_or(&[][..], |x| x.5);
            let Some(svc) = self.fleet.get(c.service) else {
                continue;
            };
            if lines.is_empty() {
                continue;
            }
            let (a, b) = (c.start.max(t0), c.end.min(t1));
            for _ in 0..self.rng.poisson(c.rate * secs * ch.volume) {
                let t = uniform_time(&mut self.rng, a, b);
                let tpl = *self.rng.pick(lines);
                let dep = pick_dep(&mut self.rng, svc);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let inst = match &c.pod {
                    Some(pod) => Some(pod),
                    None => pick_instance(&mut self.rng, svc),
                };
                let trace = trace_id(&mut self.rng);
                let mut ev = make(
                    &mut self.rng,
                    t,
                    svc,
                    inst,
                    &tpl,
                    &dep,
                    &dep_ns,
                    Some(trace.clone()),
                );
                if tpl.upstream && !dep.is_empty() {
                    ev.upstream = Some(dep.clone());
                    // The called service logs the slow request too.
                    if let Some(us) = self.fleet.get(&dep) {
                        if self.rng.chance(0.4) {
                            let own = *self.rng.pick(UPSTREAM_OWN[lang_index(us.lang)]);
                            let inst = pick_instance(&mut self.rng, us);
                            let tu = t.plus_ms(-self.rng.int(5, 400));
                            out.push(make(&mut self.rng, tu, us, inst, &own, "", "", Some(trace)));
                        }
                    }
                }
                ev.attributes
                    .insert("job".into(), format!("{}-cron", c.service));
                out.push(ev);
            }
        }
        for k in &ch.k8s {
            let secs = overlap(k.start, k.end, t0, t1);
            if secs <= 0.0 {
                continue;
            }
            let Some(svc) = self.fleet.get(&k.service) else {
                continue;
            };
            let (reason, tpl) = K8S_WARN[k.reason % K8S_WARN.len()];
            let (a, b) = (k.start.max(t0), k.end.min(t1));
            for _ in 0..self.rng.poisson(secs / k.every_s) {
                let t = uniform_time(&mut self.rng, a, b);
                let inst = pick_instance(&mut self.rng, svc);
                let mut ev = make(&mut self.rng, t, svc, inst, &tpl, "", "", None);
                if reason == "FailedScheduling" {
                    ev.instance = None;
                    ev.node = None;
                }
                ev.version = None;
                ev.attributes.insert("reason".into(), reason.into());
                ev.attributes
                    .insert("source".into(), "kubernetes-event-exporter".into());
                ev.attributes.insert("involved_object".into(), "Pod".into());
                out.push(ev);
            }
        }
        for &(name, rate, diurnal, lines) in HOT {
            let Some(svc) = self.fleet.get(name) else {
                continue;
            };
            let shape = if diurnal {
                traffic
            } else {
                0.8 + 0.2 * traffic
            };
            for _ in 0..self.rng.poisson(rate * shape * ch.volume * dt_s) {
                let t = uniform_time(&mut self.rng, t0, t1);
                let tpl = *self.rng.pick(lines);
                let dep = pick_dep(&mut self.rng, svc);
                let dep_ns = self.fleet.namespace_of(&dep).to_string();
                let inst = pick_instance(&mut self.rng, svc);
                let trace = self.rng.chance(0.5).then(|| trace_id(&mut self.rng));
                let mut ev = make(&mut self.rng, t, svc, inst, &tpl, &dep, &dep_ns, trace);
                if tpl.upstream && !dep.is_empty() {
                    ev.upstream = Some(dep);
                }
                out.push(ev);
            }
        }
        self.buf.extend(out);
        self.chronic = Some(ch);
    }

    /// One failed call on edge `e`: the upstream's own harmless error, the
    /// caller's error naming the upstream, and the 5xx passed further up.
    fn edge_failure(
        &mut self,
        e: &Edge,
        sym: Symptom,
        t: EventTime,
        trace: &str,
        storm: bool,
        out: &mut Vec<ErrorEvent>,
    ) {
        let Some(cs) = self.fleet.get(&e.caller) else {
            return;
        };
        let dep_ns = self.fleet.namespace_of(&e.upstream).to_string();
        if !e.external && !storm {
            let p_own = match sym {
                Symptom::ServerError => 0.6,
                Symptom::Timeout => 0.4,
                _ => 0.1,
            };
            if let Some(us) = self.fleet.get(&e.upstream) {
                if self.rng.chance(p_own) {
                    let tpl = if self.rng.chance(0.6) {
                        *self.rng.pick(UPSTREAM_OWN[lang_index(us.lang)])
                    } else {
                        *self.rng.pick(noise::templates(us.lang).0)
                    };
                    let dep = pick_dep(&mut self.rng, us);
                    let dns = self.fleet.namespace_of(&dep).to_string();
                    let inst = pick_instance(&mut self.rng, us);
                    let tu = t.plus_ms(-self.rng.int(5, 600));
                    let mut ev = make(
                        &mut self.rng,
                        tu,
                        us,
                        inst,
                        &tpl,
                        &dep,
                        &dns,
                        Some(trace.to_string()),
                    );
                    if tpl.upstream && !dep.is_empty() {
                        ev.upstream = Some(dep);
                    }
                    out.push(ev);
                }
            }
        }
        let tpl = if storm && self.rng.chance(0.3) {
            *self.rng.pick(RETRY[lang_index(cs.lang)])
        } else if e.external {
            *self.rng.pick(external_lines(&e.upstream, cs.lang))
        } else {
            *self.rng.pick(caller_lines(sym, cs.lang))
        };
        let inst = pick_instance(&mut self.rng, cs);
        let mut ev = make(
            &mut self.rng,
            t,
            cs,
            inst,
            &tpl,
            &e.upstream,
            &dep_ns,
            Some(trace.to_string()),
        );
        if self.rng.chance(0.92) {
            ev.upstream = Some(e.upstream.clone());
        }
        out.push(ev);
        if !storm && self.rng.chance(0.35) {
            self.propagate(&e.caller, t, trace, out);
        }
    }

    /// A failure at `failed` surfaces as a 5xx at its callers, hop by hop;
    /// a proxy logs every one it passes on.
    fn propagate(&mut self, failed: &str, t: EventTime, trace: &str, out: &mut Vec<ErrorEvent>) {
        let mut failed = failed.to_string();
        let mut t = t;
        for _ in 0..3 {
            let callers: Vec<String> = self
                .fleet
                .callers(&failed)
                .iter()
                .map(|s| s.name.clone())
                .collect();
            if callers.is_empty() {
                return;
            }
            let g = self.rng.pick(&callers).clone();
            let Some(gs) = self.fleet.get(&g) else {
                return;
            };
            t = t.plus_ms(self.rng.int(5, 300));
            let proxy = gs.lang == Proxy;
            if proxy || self.rng.chance(0.5) {
                let tpl = *self.rng.pick(caller_lines(Symptom::ServerError, gs.lang));
                let ns = self.fleet.namespace_of(&failed).to_string();
                let inst = pick_instance(&mut self.rng, gs);
                let mut ev = make(
                    &mut self.rng,
                    t,
                    gs,
                    inst,
                    &tpl,
                    &failed,
                    &ns,
                    Some(trace.to_string()),
                );
                ev.upstream = Some(failed.clone());
                out.push(ev);
            }
            if !proxy && !self.rng.chance(0.5) {
                return;
            }
            failed = g;
        }
    }

    /// Proxies in front of `svc` log the 5xx it returned (each with
    /// probability `p`), and proxies in front of them in turn.
    pub(super) fn proxies_log(
        &mut self,
        svc: &str,
        t: EventTime,
        trace: &str,
        p: f64,
        out: &mut Vec<ErrorEvent>,
    ) {
        let mut front = vec![(svc.to_string(), t)];
        for _ in 0..2 {
            let mut next = Vec::new();
            for (s, ts) in &front {
                let proxies: Vec<String> = self
                    .fleet
                    .callers(s)
                    .iter()
                    .filter(|c| c.lang == Proxy)
                    .map(|c| c.name.clone())
                    .collect();
                for px in proxies {
                    if !self.rng.chance(p) {
                        continue;
                    }
                    let Some(ps) = self.fleet.get(&px) else {
                        continue;
                    };
                    let tp = ts.plus_ms(self.rng.int(5, 200));
                    let tpl = *self.rng.pick(caller_lines(Symptom::ServerError, Proxy));
                    let ns = self.fleet.namespace_of(s).to_string();
                    let inst = pick_instance(&mut self.rng, ps);
                    let mut ev = make(
                        &mut self.rng,
                        tp,
                        ps,
                        inst,
                        &tpl,
                        s,
                        &ns,
                        Some(trace.to_string()),
                    );
                    ev.upstream = Some(s.clone());
                    out.push(ev);
                    next.push((px, tp));
                }
            }
            front = next;
        }
    }
}

// -------------------------------------------------------------- encodings

/// Adds what the production fleet's producers attach: the node's zone.
pub fn decorate(ev: &mut ErrorEvent, fleet: &Fleet) {
    if let Some(z) = ev.node.as_deref().and_then(|n| fleet.zones.get(n)) {
        ev.attributes.insert("zone".into(), z.clone());
    }
}

fn put_common(m: &mut serde_json::Map<String, serde_json::Value>, ev: &ErrorEvent) {
    use serde_json::Value;
    let mut s = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    };
    s("namespace", &ev.namespace);
    s("cluster", &ev.cluster);
    s("environment", &ev.environment);
    s("instance", &ev.instance);
    s("node", &ev.node);
    s("version", &ev.version);
    s("error_type", &ev.error_type);
    s("stack_trace", &ev.stack_trace);
    s("upstream", &ev.upstream);
    s("trace_id", &ev.trace_id);
    s("span_id", &ev.span_id);
    if let Some(h) = ev.http_status {
        m.insert("http_status".into(), Value::from(h));
    }
    if let Some(l) = ev.latency_ms {
        m.insert("latency_ms".into(), Value::from(l));
    }
    if ev.kind == EventKind::Change {
        m.insert("kind".into(), Value::from("change"));
    }
    if !ev.attributes.is_empty() {
        m.insert(
            "attributes".into(),
            Value::Object(
                ev.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
}

fn rfc3339_at(ms: i64, offset_s: i32, micros: bool) -> String {
    use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return EventTime(ms).to_rfc3339();
    };
    let fmt = if micros {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Millis
    };
    match FixedOffset::east_opt(offset_s) {
        Some(o) if offset_s != 0 => t.with_timezone(&o).to_rfc3339_opts(fmt, false),
        _ => t.to_rfc3339_opts(fmt, true),
    }
}

/// A Go service logging local time (`+02:00`, microseconds) with its
/// logger's severities (`warn`, `error`, `panic`) and a `caller` field.
pub fn encode_zoned(ev: &ErrorEvent) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::Value;
    let mut m = serde_json::Map::new();
    m.insert(
        "time".into(),
        Value::String(rfc3339_at(ev.time.millis(), 7200, true)),
    );
    m.insert("id".into(), Value::String(ev.id.clone()));
    m.insert("service".into(), Value::String(ev.service.clone()));
    let sev = match ev.severity {
        Severity::Debug => "debug",
        Severity::Info => "info",
        Severity::Warning => "warn",
        Severity::Error => "error",
        Severity::Critical => "panic",
    };
    m.insert("severity".into(), Value::from(sev));
    m.insert("message".into(), Value::String(ev.message.clone()));
    m.insert(
        "caller".into(),
        Value::String(format!("server/handler.go:{}", 40 + ev.message.len() % 300)),
    );
    put_common(&mut m, ev);
    serde_json::to_vec(&Value::Object(m))
}

/// What a log shipper forwards: `@timestamp`, `time` with microseconds,
/// `Error`/`Warning`/`WARN`/`FATAL`, nested `kubernetes`, `log`, `agent`
/// objects (unknown to reflex, ignored) and dotted keys (`log.file.path`).
pub fn encode_shipper(ev: &ErrorEvent, rng: &mut Rng) -> Result<Vec<u8>, serde_json::Error> {
    use serde_json::{json, Value};
    let mut m = serde_json::Map::new();
    let ts = rfc3339_at(ev.time.millis(), 0, true);
    m.insert(
        "@timestamp".into(),
        Value::String(rfc3339_at(ev.time.millis(), 0, false)),
    );
    m.insert("id".into(), Value::String(ev.id.clone()));
    // Half the shippers forward epoch milliseconds, half the string.
    if rng.chance(0.3) {
        m.insert("time".into(), Value::from(ev.time.millis()));
    } else {
        m.insert("time".into(), Value::String(ts));
    }
    m.insert("service".into(), Value::String(ev.service.clone()));
    let upper = rng.chance(0.5);
    let sev = match (ev.severity, upper) {
        (Severity::Debug, _) => "DEBUG",
        (Severity::Info, true) => "INFO",
        (Severity::Info, false) => "Info",
        (Severity::Warning, true) => "WARN",
        (Severity::Warning, false) => "Warning",
        (Severity::Error, true) => "ERROR",
        (Severity::Error, false) => "Error",
        (Severity::Critical, true) => "FATAL",
        (Severity::Critical, false) => "Critical",
    };
    m.insert("severity".into(), Value::from(sev));
    m.insert("message".into(), Value::String(ev.message.clone()));
    put_common(&mut m, ev);
    let pod = ev.instance.clone().unwrap_or_default();
    let ns = ev.namespace.clone().unwrap_or_default();
    let path = format!(
        "/var/log/containers/{pod}_{ns}_{}-{}.log",
        ev.service,
        &ev.id[..8.min(ev.id.len())]
    );
    m.insert(
        "kubernetes".into(),
        json!({
            "pod_name": pod,
            "namespace_name": ns,
            "container_name": ev.service,
            "host": ev.node.clone().unwrap_or_default(),
            "labels": {"app.kubernetes.io/name": ev.service, "app.kubernetes.io/part-of": "shop"},
        }),
    );
    if rng.chance(0.5) {
        m.insert(
            "log".into(),
            json!({"file": {"path": path}, "offset": rng.int(1000, 90_000_000)}),
        );
    } else {
        m.insert("log.file.path".into(), Value::String(path));
    }
    m.insert("stream".into(), Value::from("stderr"));
    m.insert(
        "agent".into(),
        json!({"type": "filebeat", "version": "8.14.3"}),
    );
    serde_json::to_vec(&Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::decode_event;

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
        let cats: std::collections::BTreeSet<Category> =
            p.iter().map(|x| x.kind.category()).collect();
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
}
