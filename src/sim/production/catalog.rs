//! The production fleet's catalogue: 36 services in 7 namespaces with
//! their runtimes, calls, external hosts, replica ranges and background
//! rates (the `FLEET` table, data), and [`fleet`], which builds a seeded
//! [`Fleet`] from it: 9 nodes in 3 zones, pods, versions, producer
//! encodings.
//!
//! Guarantees: every call names a service of the table; the fleet is a
//! function of the seed and `volume` only.

use crate::sim::fleet::{Encoding, Fleet, Instance, Lang, Service};
use crate::sim::gen::Rng;
use crate::sim::text::k8s_suffix;
use std::collections::BTreeMap;

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
