//! A deterministic event-stream generator.
//!
//! Services call each other along a fixed graph; each emits harmless
//! background errors at a low rate. A [`Fault`] makes one service fail with
//! a given message for a period, and its callers report failed calls to it
//! (`upstream` = the faulty service) a little later — a cascade whose callers
//! can be louder than the culprit. Same seed ⇒ same stream.
//!
//! [`Rng`] is the one random source of the whole simulator ([`crate::sim`]):
//! SplitMix64, identical on every platform.

use crate::model::{ErrorEvent, EventKind, EventTime, Severity};

/// A tiny, fast, seedable PRNG (SplitMix64): deterministic across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A uniformly chosen element; `items` must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A standard normal variate (Box–Muller).
    pub fn gauss(&mut self) -> f64 {
        let u1 = (1.0 - self.f64()).max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A Poisson variate with mean `lambda` (Knuth below 30, normal above).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda.is_nan() || lambda <= 0.0 || !lambda.is_finite() {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u64;
            let mut p = 1.0;
            loop {
                p *= self.f64();
                if p <= limit {
                    return k;
                }
                k += 1;
            }
        }
        (lambda + lambda.sqrt() * self.gauss()).round().max(0.0) as u64
    }

    /// An independent generator derived from this one and `salt` (so adding
    /// draws to one part of the simulation does not shift another's).
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next_u64() ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: String,
    pub start: EventTime,
    pub duration_ms: i64,
    /// Errors per second the faulty service emits.
    pub rate: f64,
    pub message: String,
    pub error_type: Option<String>,
    /// Deploy a new version of the service just before the fault.
    pub with_deploy: bool,
}

/// The generator's settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    pub start: EventTime,
    pub duration_ms: i64,
    /// (service, the services it calls).
    pub services: Vec<(String, Vec<String>)>,
    /// Background errors per second per service.
    pub noise_rate: f64,
    pub faults: Vec<Fault>,
    pub namespace: String,
}

impl GenConfig {
    /// A small shop: frontend → checkout → payments, frontend → catalog.
    pub fn shop(seed: u64, duration_ms: i64) -> Self {
        let s = |n: &str, d: &[&str]| (n.to_string(), d.iter().map(|x| x.to_string()).collect());
        GenConfig {
            seed,
            start: EventTime(1_767_225_600_000), // 2026-01-01T00:00:00Z
            duration_ms,
            services: vec![
                s("frontend", &["checkout", "catalog"]),
                s("checkout", &["payments", "inventory"]),
                s("payments", &[]),
                s("catalog", &[]),
                s("inventory", &[]),
            ],
            noise_rate: 0.05,
            faults: Vec::new(),
            namespace: "shop".into(),
        }
    }
}

const NOISE: [&str; 6] = [
    "request {id} cancelled by client",
    "cache miss for key user:{id}",
    "retrying idempotent call {id} after transient error",
    "slow query took {n} ms",
    "deprecated API version used by client {id}",
    "GET /api/items/{id} returned 404",
];

fn fill(t: &str, rng: &mut Rng) -> String {
    t.replace("{id}", &format!("{:08x}", rng.next_u64() as u32))
        .replace("{n}", &(100 + rng.below(900)).to_string())
}

/// Generates the whole stream, sorted by event time.
pub fn generate(cfg: &GenConfig) -> Vec<ErrorEvent> {
    let mut rng = Rng::new(cfg.seed);
    let mut out = Vec::new();
    let end = cfg.start.millis() + cfg.duration_ms;
    let mut seq = 0u64;
    let mut next_id = |rng: &mut Rng| {
        seq += 1;
        format!("{:016x}-{seq}", rng.next_u64())
    };
    // Background: Poisson-ish arrivals via exponential gaps.
    for (svc, _) in &cfg.services {
        let mut t = cfg.start.millis() as f64;
        loop {
            t += -(1.0 - rng.f64()).ln() / cfg.noise_rate * 1000.0;
            if t as i64 >= end {
                break;
            }
            let sev = if rng.below(4) == 0 {
                Severity::Error
            } else {
                Severity::Warning
            };
            let msg = fill(NOISE[rng.below(NOISE.len() as u64) as usize], &mut rng);
            let mut ev = ErrorEvent::new(next_id(&mut rng), EventTime(t as i64), svc, sev, msg);
            ev.namespace = Some(cfg.namespace.clone());
            ev.instance = Some(format!("{svc}-{}", rng.below(3)));
            out.push(ev);
        }
    }
    for f in &cfg.faults {
        if f.with_deploy {
            let mut ev = ErrorEvent::new(
                next_id(&mut rng),
                f.start.plus_ms(-30_000),
                &f.service,
                Severity::Info,
                "deployment rolled out",
            );
            ev.kind = EventKind::Change;
            ev.version = Some(format!("v{}", 2 + rng.below(50)));
            ev.namespace = Some(cfg.namespace.clone());
            out.push(ev);
        }
        let callers: Vec<&String> = cfg
            .services
            .iter()
            .filter(|(_, deps)| deps.contains(&f.service))
            .map(|(s, _)| s)
            .collect();
        let stop = (f.start.millis() + f.duration_ms).min(end);
        let mut t = f.start.millis() as f64;
        loop {
            t += -(1.0 - rng.f64()).ln() / f.rate * 1000.0;
            if t as i64 >= stop {
                break;
            }
            let trace = format!(
                "{:032x}",
                u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
            );
            let mut ev = ErrorEvent::new(
                next_id(&mut rng),
                EventTime(t as i64),
                &f.service,
                Severity::Error,
                fill(&f.message, &mut rng),
            );
            ev.error_type.clone_from(&f.error_type);
            ev.namespace = Some(cfg.namespace.clone());
            ev.instance = Some(format!("{}-{}", f.service, rng.below(3)));
            ev.trace_id = Some(trace.clone());
            out.push(ev);
            // Each failure surfaces at 1–2 callers ~50–500 ms later, so callers
            // together are louder than the culprit.
            for c in &callers {
                for _ in 0..(1 + rng.below(2)) {
                    let delay = 50 + rng.below(450) as i64;
                    let mut ce = ErrorEvent::new(
                        next_id(&mut rng),
                        EventTime(t as i64 + delay),
                        c.as_str(),
                        Severity::Error,
                        format!(
                            "call to {} failed: upstream request timeout after {} ms",
                            f.service,
                            1000 + rng.below(4000)
                        ),
                    );
                    ce.upstream = Some(f.service.clone());
                    ce.http_status = Some(504);
                    ce.namespace = Some(cfg.namespace.clone());
                    ce.trace_id = Some(trace.clone());
                    out.push(ce);
                }
            }
        }
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The stream as JSON Lines.
pub fn to_jsonl(events: &[ErrorEvent]) -> Vec<u8> {
    let mut buf = Vec::new();
    for e in events {
        if serde_json::to_writer(&mut buf, e).is_ok() {
            buf.push(b'\n');
        }
    }
    buf
}
