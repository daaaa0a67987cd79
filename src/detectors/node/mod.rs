//! Per-node detector: a node's own-failure errors of one class (network by
//! default: DNS failures, resets, unreachable hosts) per window, against
//! that node's learned normal. A fault of a node's network spreads thin:
//! every pod there loses a few connections, each service too few to stand
//! out against its own background, but together far above what the node
//! normally logs. Chronic noise spread over the fleet is each node's
//! normal; only a significant rise fires.
//!
//! Emits, per firing window, one `node` detection per service that logged
//! at least `min_service_events` of the counted errors on the node (at
//! least `min_services` of them), each with that service's facts on the
//! node and the node-wide count in its evidence: the diagnosis then opens
//! (or feeds) the node's incident from services it can track. A rise must
//! last `min_windows` consecutive windows; until then its detections are
//! held (and dropped if it ends sooner: a blip that healed itself).
//!
//! Keying: per node (the event's `node` field; events without one are not
//! counted). With several detect instances each counts the services of its
//! own input partitions, and learns that share's normal. Bounded: at most
//! `max_nodes` normals (silent ones evicted after `idle_eviction`) and
//! [`MAX_SERVICES`] services' facts per node and open window.
//!
//! Guarantees: a window is evaluated once, after the watermark passed its
//! end; a late event is folded into the oldest open window (as the
//! threshold detector does); output order is deterministic (nodes, then
//! services, sorted).

pub mod config;

pub use config::NodeConfig;

use super::facts::{Facts, Head, SignatureMeta};
use super::normal::Normal;
use super::threshold::poisson_sf;
use super::{Detector, FromConfig, Observed};
use crate::model::{About, Detection, DetectorKind, EventTime, Window};
use std::collections::{BTreeMap, HashMap};

/// Services whose facts one node's window keeps.
pub const MAX_SERVICES: usize = 64;

/// One node's open window.
#[derive(Debug, Default)]
struct NodeWindow {
    count: u64,
    services: BTreeMap<String, Facts>,
}

/// A node's normal, when it last logged a counted error, and its rise so
/// far: consecutive firing windows up to `last_fired` and their held
/// detections (until the rise has lasted `min_windows`).
#[derive(Debug, Clone)]
struct NodeNormal {
    normal: Normal,
    last_seen: i64,
    last_fired: Option<i64>,
    streak: u32,
    held: Vec<Detection>,
}

/// The per-node detector.
pub struct NodeDetector {
    cfg: NodeConfig,
    meta: SignatureMeta,
    /// Per signature rule: (counts on events that name no upstream, counts
    /// on events that do): the rule has the configured category and says
    /// the service itself failed.
    counts: Vec<(bool, bool)>,
    open: BTreeMap<i64, HashMap<String, NodeWindow>>,
    normals: HashMap<String, NodeNormal>,
}

impl NodeDetector {
    /// Builds the detector; `signatures` says which rules name the class.
    pub fn new(cfg: &NodeConfig, signatures: &super::signature::Signatures) -> Self {
        let counts = signatures
            .rules()
            .iter()
            .map(|r| {
                let ours = cfg.enabled && r.category == cfg.category;
                (
                    ours && r.about == About::Itself,
                    ours && r.calling.unwrap_or(r.about) == About::Itself,
                )
            })
            .collect();
        NodeDetector {
            cfg: cfg.clone(),
            meta: SignatureMeta::new(signatures),
            counts,
            open: BTreeMap::new(),
            normals: HashMap::new(),
        }
    }

    fn close_window(
        &mut self,
        start: i64,
        nodes: HashMap<String, NodeWindow>,
        out: &mut Vec<Detection>,
    ) {
        let c = &self.cfg;
        let w = c.window.0;
        let mut nodes: Vec<(String, NodeWindow)> = nodes.into_iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        for (node, win) in nodes {
            let n = self.normals.entry(node.clone()).or_insert(NodeNormal {
                normal: Normal::new(start, w, 0),
                last_seen: start,
                last_fired: None,
                streak: 0,
                held: Vec::new(),
            });
            n.normal.catch_up(start, w, c.baseline_alpha);
            n.last_seen = start;
            let normal = n.normal.mean;
            let value = win.count as f64;
            let bar = c.baseline_factor * normal;
            let spread = win
                .services
                .values()
                .filter(|f| f.matched >= c.min_service_events)
                .count();
            let fired = !n.normal.warming(c.warmup_windows)
                && win.count >= c.min_count
                && value >= bar
                && spread >= c.min_services
                && poisson_sf(win.count, normal) <= c.significance;
            n.normal
                .learn(start, value, fired, c.warmup_windows, c.baseline_alpha);
            if !fired {
                n.streak = 0;
                n.held.clear();
                continue;
            }
            if n.last_fired != Some(start - w) {
                n.streak = 0;
                n.held.clear();
            }
            n.last_fired = Some(start);
            n.streak = n.streak.saturating_add(1);
            let ratio = value / bar.max(c.min_count as f64);
            let score = (ratio / (ratio + 1.0)).clamp(0.0, 1.0);
            for (service, facts) in win.services {
                if facts.matched < c.min_service_events {
                    continue;
                }
                let head = Head {
                    detector: DetectorKind::Node,
                    rule: format!("node_{}", c.category.as_str()),
                    key: format!("node={node},service={service}"),
                    score,
                    window: Window {
                        start: EventTime(start),
                        end: EventTime(start + w),
                    },
                    evidence: format!(
                        "node {node}: {} {} errors of their own from {spread} services in {}s \
                         (normal {normal:.1}); {service}: {}",
                        win.count,
                        c.category.as_str(),
                        w / 1000,
                        facts.matched
                    ),
                };
                n.held.push(facts.into_detection(&self.meta, head));
            }
            if n.streak >= c.min_windows {
                out.append(&mut n.held);
            }
        }
    }
}

impl FromConfig for NodeDetector {
    type Config = NodeConfig;
    fn from_config(cfg: &NodeConfig, ctx: super::BuildContext<'_>) -> Self {
        NodeDetector::new(cfg, ctx.signatures)
    }
}

impl Detector for NodeDetector {
    fn hold_ms(&self) -> i64 {
        // A window's detections may wait for `min_windows - 1` more.
        if self.cfg.enabled {
            self.cfg.window.0 * i64::from(self.cfg.min_windows.max(1))
        } else {
            0
        }
    }

    fn observe(&mut self, o: &Observed<'_>, _out: &mut Vec<Detection>) {
        let ev = o.event;
        if !self.cfg.enabled || ev.severity < self.cfg.min_severity {
            return;
        }
        let Some(node) = ev.node.as_deref() else {
            return;
        };
        let calling = ev.upstream.is_some();
        let counted = o.signatures.iter().any(|&s| {
            self.counts
                .get(s)
                .is_some_and(|c| if calling { c.1 } else { c.0 })
        });
        if !counted {
            return;
        }
        let start = o.window_start(self.cfg.window.0);
        let max_nodes = self.cfg.max_nodes;
        let known = self.normals.len();
        let accs = self.open.entry(start).or_default();
        let win = match accs.get_mut(node) {
            Some(x) => x,
            None => {
                if known.max(accs.len()) >= max_nodes && !self.normals.contains_key(node) {
                    return;
                }
                accs.entry(node.to_string()).or_default()
            }
        };
        win.count += 1;
        if let Some(f) = win.services.get_mut(&ev.service) {
            f.add(o);
        } else if win.services.len() < MAX_SERVICES {
            let mut f = Facts::for_event(o);
            f.add(o);
            win.services.insert(ev.service.clone(), f);
        }
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Vec<Detection>) {
        let w = self.cfg.window.0;
        let mut closed = false;
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + w > wm.millis() {
                break;
            }
            let start = *entry.key();
            let nodes = entry.remove();
            self.close_window(start, nodes, out);
            closed = true;
        }
        if closed {
            let horizon = wm.millis() - self.cfg.idle_eviction.0;
            self.normals.retain(|_, n| n.last_seen >= horizon);
        }
    }

    fn flush(&mut self, out: &mut Vec<Detection>) {
        while let Some((start, nodes)) = self.open.pop_first() {
            self.close_window(start, nodes, out);
        }
    }

    fn state_keys(&self) -> usize {
        self.normals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::signature::{SignatureRule, Signatures};
    use crate::model::{Category, ErrorEvent, Severity};

    /// Rule 0: network, the caller's own failure whoever it called; rule 1:
    /// network about the dependency (not the node's trouble).
    fn signatures() -> Signatures {
        let rule = |name: &str, about| SignatureRule {
            name: name.into(),
            category: Category::Network,
            weight: 0.8,
            about,
            calling: None,
            message: Some(format!("(?i){name}")),
            error_type: None,
            http_status: vec![],
            exit_code: vec![],
        };
        Signatures::new(vec![
            rule("connection reset", About::Itself),
            rule("upstream refused", About::Dependency),
        ])
        .expect("compiles")
    }

    fn detector() -> NodeDetector {
        NodeDetector::new(&NodeConfig::default(), &signatures())
    }

    /// One minute `m`: per (service, node, rule index, events).
    fn minute(d: &mut NodeDetector, m: i64, load: &[(&str, &str, usize, i64)]) -> Vec<Detection> {
        let mut out = Vec::new();
        let mut k = 0;
        for &(svc, node, rule, n) in load {
            for _ in 0..n {
                k += 1;
                let mut ev =
                    ErrorEvent::new("x", EventTime(m * 60_000 + k), svc, Severity::Error, "e");
                ev.node = Some(node.to_string());
                ev.upstream = (k % 3 == 0).then(|| "orders".to_string());
                d.observe(
                    &Observed {
                        event: &ev,
                        template: None,
                        signatures: &[rule],
                        late: false,
                        watermark: EventTime(m * 60_000),
                    },
                    &mut out,
                );
            }
        }
        d.on_watermark(EventTime((m + 1) * 60_000), &mut out);
        out
    }

    /// Chronic background: a few resets a minute over the fleet's nodes.
    fn background(m: i64) -> Vec<(&'static str, &'static str, usize, i64)> {
        vec![
            ("cart", "n1", 0, 1 + m % 2),
            ("orders", "n1", 0, m % 3),
            ("search", "n2", 0, 2),
            ("web", "n2", 1, 6),
        ]
    }

    #[test]
    fn a_node_wide_rise_fires_once_per_service_there_and_chronic_noise_does_not() {
        let mut d = detector();
        for m in 0..30 {
            assert!(minute(&mut d, m, &background(m)).is_empty(), "minute {m}");
        }
        // n1's network breaks: four services there lose a few calls each,
        // none of them many. The first window is held (it may be a blip),
        // the second confirms it: both come out.
        let broken = |m: i64| {
            let mut load = background(m);
            load.extend([
                ("cart", "n1", 0, 4),
                ("orders", "n1", 0, 4),
                ("ledger", "n1", 0, 3),
                ("auth", "n1", 0, 3),
                ("search", "n2", 0, 1),
            ]);
            load
        };
        assert!(minute(&mut d, 30, &broken(30)).is_empty(), "held");
        let out = minute(&mut d, 31, &broken(31));
        let services: Vec<(&str, i64)> = out
            .iter()
            .map(|x| (x.service.as_str(), x.window.start.millis() / 60_000))
            .collect();
        let want: Vec<(&str, i64)> = [30, 31]
            .iter()
            .flat_map(|m| ["auth", "cart", "ledger", "orders"].map(|s| (s, *m)))
            .collect();
        assert_eq!(services, want, "{out:?}");
        for x in &out {
            assert_eq!(x.detector, DetectorKind::Node);
            assert_eq!(x.nodes.len(), 1);
            assert_eq!(x.nodes[0].value, "n1");
            assert!(x.key.starts_with("node=n1,service="));
            assert!(x
                .hints
                .iter()
                .any(|h| h.category == Category::Network && h.about == About::Itself));
        }
        assert!(out.iter().any(|x| x.service == "cart" && x.count >= 5));
        // Back to normal: quiet again.
        assert!(minute(&mut d, 32, &background(32)).is_empty());
        // A blip: one window of the same trouble that heals by itself.
        assert!(minute(&mut d, 40, &broken(40)).is_empty());
        assert!(
            minute(&mut d, 41, &background(41)).is_empty(),
            "dropped, never emitted"
        );
    }

    #[test]
    fn one_service_or_dependency_errors_are_not_the_nodes_trouble() {
        let mut d = detector();
        for m in 0..30 {
            assert!(minute(&mut d, m, &background(m)).is_empty());
        }
        // One service alone, however loud: its own trouble.
        let mut load = background(30);
        load.push(("cart", "n1", 0, 60));
        assert!(minute(&mut d, 30, &load).is_empty());
        // Many services blaming what they call: not their node's network.
        let mut load = background(31);
        load.extend([
            ("cart", "n1", 1, 20),
            ("orders", "n1", 1, 20),
            ("auth", "n1", 1, 20),
        ]);
        assert!(minute(&mut d, 31, &load).is_empty());
    }

    #[test]
    fn a_node_with_a_high_chronic_level_needs_a_rise_above_it() {
        let mut d = detector();
        let busy = |m: i64| {
            vec![
                ("cart", "n1", 0, 8 + m % 3),
                ("orders", "n1", 0, 6),
                ("auth", "n1", 0, 5),
            ]
        };
        for m in 0..40 {
            assert!(minute(&mut d, m, &busy(m)).is_empty(), "minute {m}");
        }
        let rise = |m: i64| {
            let mut load = busy(m);
            load.extend([
                ("cart", "n1", 0, 30),
                ("orders", "n1", 0, 30),
                ("auth", "n1", 0, 30),
            ]);
            load
        };
        assert!(minute(&mut d, 40, &rise(40)).is_empty());
        assert_eq!(minute(&mut d, 41, &rise(41)).len(), 6);
    }

    #[test]
    fn nodes_are_bounded_and_silent_ones_forgotten() {
        let cfg = NodeConfig {
            max_nodes: 2,
            idle_eviction: crate::model::DurationMs(10 * 60_000),
            ..NodeConfig::default()
        };
        let mut d = NodeDetector::new(&cfg, &signatures());
        minute(
            &mut d,
            0,
            &[("a", "n1", 0, 1), ("a", "n2", 0, 1), ("a", "n3", 0, 1)],
        );
        assert_eq!(d.state_keys(), 2);
        // n1, silent for 20 minutes, is forgotten …
        minute(&mut d, 20, &[("a", "n2", 0, 1)]);
        assert_eq!(d.state_keys(), 1);
        // … which makes room for n3.
        minute(&mut d, 21, &[("a", "n3", 0, 1)]);
        assert_eq!(d.state_keys(), 2);
    }
}
