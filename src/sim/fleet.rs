//! The simulated fleet: services in namespaces with a dependency graph,
//! instances (pods) placed on nodes, external dependencies (managed
//! databases, third-party APIs), the language each service is written in
//! (which decides how its errors read), and the daily traffic shape.
//!
//! The topology is fixed in shape (a web shop: edge, storefront, orders,
//! payments, platform) but everything random about it — replica counts, pod
//! names, placement on nodes, versions — comes from the seed. It is not the
//! example catalog in `topology/services.yaml`: reflex sees this fleet only
//! through its events, as it would a real one.

use super::gen::Rng;
use super::text::k8s_suffix;
use crate::model::EventTime;
use std::collections::BTreeMap;

/// How a service's log lines read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lang {
    Java,
    Go,
    Python,
    Node,
    /// An edge proxy (Envoy/nginx style lines).
    Proxy,
}

/// How a producer encodes its events (all valid per SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 3339 time, canonical severities.
    Canonical,
    /// Epoch-millisecond time, upper-case severity aliases (`WARN`, `FATAL`),
    /// extra unknown fields.
    Legacy,
    /// RFC 3339 in local time with an offset (`+02:00`) and microseconds,
    /// lower-case runtime severities (`warn`, `panic`) — a Go logger.
    Zoned,
    /// What a log shipper (Filebeat, Fluent Bit) forwards: `@timestamp`,
    /// nested `kubernetes`/`log`/`agent` objects, `Error`/`WARN`/`FATAL`.
    Shipper,
}

/// One pod of a service.
#[derive(Debug, Clone)]
pub struct Instance {
    pub pod: String,
    pub node: String,
}

/// One service of the fleet.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub lang: Lang,
    pub encoding: Encoding,
    /// Internal services it calls.
    pub calls: Vec<String>,
    /// External hosts it calls.
    pub externals: Vec<String>,
    pub instances: Vec<Instance>,
    pub replicas: i64,
    pub version: String,
    /// Background events per second at peak traffic.
    pub noise_rate: f64,
    /// Share of background events at severity error (the rest warning/info).
    pub error_share: f64,
    /// Consumes a queue (no synchronous callers; bad inputs arrive here).
    pub consumer: bool,
}

/// The fleet and its graph.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// By name (sorted: deterministic iteration).
    pub services: BTreeMap<String, Service>,
    pub nodes: Vec<String>,
    /// External host → the services that call it.
    pub externals: BTreeMap<String, Vec<String>>,
    /// Node → its availability zone (empty in the demo profile).
    pub zones: BTreeMap<String, String>,
}

struct Spec {
    name: &'static str,
    ns: &'static str,
    lang: Lang,
    calls: &'static [&'static str],
    externals: &'static [&'static str],
    replicas: (i64, i64),
    noise: f64,
    consumer: bool,
}

const SPECS: [Spec; 16] = [
    Spec {
        name: "web-gateway",
        ns: "edge",
        lang: Lang::Proxy,
        calls: &["storefront-api", "checkout-api", "account-api"],
        externals: &[],
        replicas: (3, 5),
        noise: 3.0,
        consumer: false,
    },
    Spec {
        name: "storefront-api",
        ns: "storefront",
        lang: Lang::Node,
        calls: &["catalog", "search", "recommendations", "cart"],
        externals: &[],
        replicas: (3, 4),
        noise: 2.0,
        consumer: false,
    },
    Spec {
        name: "catalog",
        ns: "storefront",
        lang: Lang::Java,
        calls: &["pricing"],
        externals: &["catalog-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com"],
        replicas: (2, 4),
        noise: 1.5,
        consumer: false,
    },
    Spec {
        name: "search",
        ns: "storefront",
        lang: Lang::Java,
        calls: &["catalog"],
        externals: &["search-prod.es.eu-west-1.aws.found.io"],
        replicas: (2, 3),
        noise: 1.2,
        consumer: false,
    },
    Spec {
        name: "recommendations",
        ns: "storefront",
        lang: Lang::Python,
        calls: &["catalog"],
        externals: &[],
        replicas: (2, 3),
        noise: 1.0,
        consumer: false,
    },
    Spec {
        name: "checkout-api",
        ns: "orders",
        lang: Lang::Java,
        calls: &["cart", "pricing", "inventory", "payment-gateway"],
        externals: &[],
        replicas: (3, 4),
        noise: 1.8,
        consumer: false,
    },
    Spec {
        name: "cart",
        ns: "orders",
        lang: Lang::Go,
        calls: &["pricing"],
        externals: &["cart-cache.x1y2z3.ng.0001.euw1.cache.amazonaws.com"],
        replicas: (2, 4),
        noise: 1.4,
        consumer: false,
    },
    Spec {
        name: "pricing",
        ns: "orders",
        lang: Lang::Go,
        calls: &[],
        externals: &[],
        replicas: (2, 3),
        noise: 1.0,
        consumer: false,
    },
    Spec {
        name: "inventory",
        ns: "orders",
        lang: Lang::Java,
        calls: &[],
        externals: &["orders-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com"],
        replicas: (2, 3),
        noise: 1.2,
        consumer: false,
    },
    Spec {
        name: "order-events",
        ns: "orders",
        lang: Lang::Python,
        calls: &["inventory", "notifications"],
        externals: &[],
        replicas: (2, 2),
        noise: 0.8,
        consumer: true,
    },
    Spec {
        name: "payment-gateway",
        ns: "payments",
        lang: Lang::Go,
        calls: &["fraud-check", "ledger"],
        externals: &["api.stripe.com"],
        replicas: (2, 3),
        noise: 1.2,
        consumer: false,
    },
    Spec {
        name: "fraud-check",
        ns: "payments",
        lang: Lang::Python,
        calls: &[],
        externals: &[],
        replicas: (2, 3),
        noise: 0.8,
        consumer: false,
    },
    Spec {
        name: "ledger",
        ns: "payments",
        lang: Lang::Java,
        calls: &[],
        externals: &["ledger-db.c7xk2m9q1z.eu-west-1.rds.amazonaws.com"],
        replicas: (2, 2),
        noise: 0.7,
        consumer: false,
    },
    Spec {
        name: "account-api",
        ns: "platform",
        lang: Lang::Node,
        calls: &["auth"],
        externals: &[],
        replicas: (2, 3),
        noise: 1.0,
        consumer: false,
    },
    Spec {
        name: "auth",
        ns: "platform",
        lang: Lang::Go,
        calls: &[],
        externals: &["idp.login-provider.example.net"],
        replicas: (2, 3),
        noise: 1.0,
        consumer: false,
    },
    Spec {
        name: "notifications",
        ns: "platform",
        lang: Lang::Node,
        calls: &[],
        externals: &["api.sendgrid.com", "api.twilio.com"],
        replicas: (2, 2),
        noise: 0.6,
        consumer: true,
    },
];

impl Fleet {
    /// Builds the fleet for `seed`; `volume` scales every background rate.
    pub fn new(rng: &mut Rng, volume: f64) -> Fleet {
        let zones = ["a", "b", "c"];
        let nodes: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    "ip-10-0-{}-{}.eu-west-1{}.compute.internal",
                    i % 3 + 1,
                    rng.int(10, 250),
                    zones[i % 3]
                )
            })
            .collect();
        let mut services = BTreeMap::new();
        let mut externals: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, s) in SPECS.iter().enumerate() {
            let replicas = rng.int(s.replicas.0, s.replicas.1);
            let rs = format!("{}{}", rng.int(5, 9), k8s_suffix(rng, 8));
            let instances = (0..replicas)
                .map(|i| Instance {
                    pod: format!("{}-{rs}-{}", s.name, k8s_suffix(rng, 5)),
                    node: nodes[(k + i as usize * 2 + rng.below(2) as usize) % nodes.len()].clone(),
                })
                .collect();
            for e in s.externals {
                externals
                    .entry((*e).to_string())
                    .or_default()
                    .push(s.name.to_string());
            }
            let version = match s.lang {
                Lang::Go | Lang::Proxy => format!("v1.{}.{}", rng.int(2, 30), rng.int(0, 9)),
                Lang::Java => format!("{}.{}.{}", rng.int(2, 5), rng.int(0, 20), rng.int(0, 9)),
                Lang::Python | Lang::Node => {
                    format!("{}{}", rng.int(2024, 2026), k8s_suffix(rng, 7))
                }
            };
            services.insert(
                s.name.to_string(),
                Service {
                    name: s.name.to_string(),
                    namespace: s.ns.to_string(),
                    lang: s.lang,
                    encoding: if matches!(s.lang, Lang::Python | Lang::Proxy) {
                        Encoding::Legacy
                    } else {
                        Encoding::Canonical
                    },
                    calls: s.calls.iter().map(|c| c.to_string()).collect(),
                    externals: s.externals.iter().map(|c| c.to_string()).collect(),
                    instances,
                    replicas,
                    version,
                    noise_rate: s.noise * volume * rng.range(0.8, 1.2),
                    error_share: rng.range(0.04, 0.08),
                    consumer: s.consumer,
                },
            );
        }
        Fleet {
            services,
            nodes,
            externals,
            zones: BTreeMap::new(),
        }
    }

    /// The service called `name`.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// Services that call `name` synchronously (consumers are not callers).
    pub fn callers(&self, name: &str) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| s.calls.iter().any(|c| c == name))
            .collect()
    }

    /// Services that call the external host `host`.
    pub fn external_callers(&self, host: &str) -> Vec<&Service> {
        self.externals
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|s| self.services.get(s))
            .collect()
    }

    /// Every (service, pod) running on `node`.
    pub fn pods_on(&self, node: &str) -> Vec<(&Service, &Instance)> {
        self.services
            .values()
            .flat_map(|s| {
                s.instances
                    .iter()
                    .filter(|x| x.node == node)
                    .map(move |x| (s, x))
            })
            .collect()
    }
    /// Namespace of a service, or `""` for an external host.
    pub fn namespace_of(&self, name: &str) -> &str {
        self.services.get(name).map_or("", |s| s.namespace.as_str())
    }
}

/// The daily traffic shape at `t`: 0.25 around 03:00 UTC, 1.0 around 15:00.
pub fn daily_traffic(t: EventTime) -> f64 {
    let day_ms = 86_400_000i64;
    let h = t.millis().rem_euclid(day_ms) as f64 / 3_600_000.0;
    let c = (2.0 * std::f64::consts::PI * (h - 3.0) / 24.0).cos();
    0.25 + 0.75 * (1.0 - c) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_is_deterministic_and_connected() {
        let a = Fleet::new(&mut Rng::new(3), 1.0);
        let b = Fleet::new(&mut Rng::new(3), 1.0);
        assert_eq!(
            a.services.values().map(|s| &s.version).collect::<Vec<_>>(),
            b.services.values().map(|s| &s.version).collect::<Vec<_>>()
        );
        for s in a.services.values() {
            for c in &s.calls {
                assert!(a.services.contains_key(c), "{} calls unknown {c}", s.name);
            }
            assert_eq!(s.instances.len() as i64, s.replicas);
        }
        assert!(!a.callers("pricing").is_empty());
        assert!(daily_traffic(EventTime(15 * 3_600_000)) > 0.99);
        assert!(daily_traffic(EventTime(3 * 3_600_000)) < 0.26);
    }
}
