//! Filling simulated log-line templates with random variable parts.
//!
//! A template is plain text with `{name}` placeholders (lower-case letters,
//! digits and `_`, at most 12 characters); anything else in braces, such as
//! a JSON body, is kept literally. Every placeholder draws from the seeded
//! [`Rng`], so the same seed gives the same text. Unknown names are kept as
//! written (a template bug shows up in the output instead of panicking).

use super::gen::Rng;
use crate::model::EventTime;

/// What a template may refer to besides random values.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The service writing the line.
    pub svc: &'a str,
    pub ns: &'a str,
    /// The dependency the line is about (a service or an external host).
    pub dep: &'a str,
    /// The dependency's namespace (empty for external hosts).
    pub dep_ns: &'a str,
    pub pod: &'a str,
    pub node: &'a str,
    pub now: EventTime,
}

const PATHS: [&str; 14] = [
    "/api/v1/orders",
    "/api/v1/cart/items",
    "/api/v2/products",
    "/api/v1/prices/quote",
    "/api/v1/stock/reserve",
    "/v1/charge",
    "/v1/accounts/me",
    "/internal/health",
    "/graphql",
    "/api/v1/search",
    "/api/v1/recommendations",
    "/v1/ledger/entries",
    "/api/v1/checkout/submit",
    "/api/v1/users/sessions",
];

const CLASSES: [&str; 10] = [
    "OrderService",
    "CartController",
    "PriceCalculator",
    "StockReservationHandler",
    "PaymentClient",
    "LedgerWriter",
    "ProductRepository",
    "SessionFilter",
    "SearchIndexer",
    "CheckoutFacade",
];

const FIELDS: [&str; 8] = [
    "amount",
    "currency",
    "quantity",
    "sku",
    "customer_id",
    "shipping.postcode",
    "items[0].price",
    "created_at",
];

const WORDS: [&str; 8] = [
    "N/A",
    "-0.00",
    "null",
    "",
    "1e309",
    "twelve",
    "2026-13-45",
    "NaN",
];

fn hex(rng: &mut Rng, n: usize, out: &mut String) {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut bits = rng.next_u64();
    for i in 0..n {
        if i % 16 == 15 {
            bits = rng.next_u64();
        }
        out.push(H[(bits & 15) as usize] as char);
        bits >>= 4;
    }
}

/// A random RFC 4122-shaped id (version 4 layout).
pub fn uuid(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(36);
    hex(rng, 8, &mut s);
    s.push('-');
    hex(rng, 4, &mut s);
    s.push_str("-4");
    hex(rng, 3, &mut s);
    s.push('-');
    s.push(['8', '9', 'a', 'b'][rng.below(4) as usize]);
    hex(rng, 3, &mut s);
    s.push('-');
    hex(rng, 12, &mut s);
    s
}

/// A 32-hex-digit trace id.
pub fn trace_id(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(32);
    hex(rng, 32, &mut s);
    s
}

/// A 16-hex-digit span id.
pub fn span_id(rng: &mut Rng) -> String {
    let mut s = String::with_capacity(16);
    hex(rng, 16, &mut s);
    s
}

/// Lower-case alphanumeric suffix of Kubernetes pod names.
pub fn k8s_suffix(rng: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| A[rng.below(A.len() as u64) as usize] as char)
        .collect()
}

fn resolve(name: &str, rng: &mut Rng, c: &Ctx<'_>, out: &mut String) -> bool {
    use std::fmt::Write;
    let _ = match name {
        "id" => {
            hex(rng, 8, out);
            Ok(())
        }
        "hex" => {
            hex(rng, 12, out);
            Ok(())
        }
        "uuid" => {
            out.push_str(&uuid(rng));
            Ok(())
        }
        "n" => write!(out, "{}", rng.int(1, 9999)),
        "n3" => write!(out, "{}", rng.int(100, 999)),
        "small" => write!(out, "{}", rng.int(2, 9)),
        "ms" => write!(out, "{}", rng.int(1_000, 30_000)),
        "qms" => write!(out, "{}", rng.int(120, 4_800)),
        "line" => write!(out, "{}", rng.int(12, 940)),
        "ip" => write!(
            out,
            "10.{}.{}.{}",
            rng.int(0, 3),
            rng.int(0, 255),
            rng.int(2, 254)
        ),
        "port" => write!(out, "{}", rng.int(32_768, 60_999)),
        "offset" => write!(out, "{}", rng.int(100_000, 9_999_999)),
        "user" => write!(out, "u_{}", rng.int(10_000, 999_999)),
        "order" => write!(out, "ord_{}", rng.int(1_000_000, 9_999_999)),
        "sku" => write!(out, "SKU-{:05}", rng.int(1, 99_999)),
        "path" => {
            out.push_str(rng.pick::<&str>(&PATHS));
            Ok(())
        }
        "class" => {
            out.push_str(rng.pick::<&str>(&CLASSES));
            Ok(())
        }
        "field" => {
            out.push_str(rng.pick::<&str>(&FIELDS));
            Ok(())
        }
        "word" => {
            out.push_str(rng.pick::<&str>(&WORDS));
            Ok(())
        }
        "svc" => {
            out.push_str(c.svc);
            Ok(())
        }
        "ns" => {
            out.push_str(c.ns);
            Ok(())
        }
        "dep" => {
            out.push_str(c.dep);
            Ok(())
        }
        "depns" => {
            out.push_str(c.dep_ns);
            Ok(())
        }
        "pod" => {
            out.push_str(c.pod);
            Ok(())
        }
        "node" => {
            out.push_str(c.node);
            Ok(())
        }
        "now" => {
            out.push_str(&c.now.to_rfc3339());
            Ok(())
        }
        _ => return false,
    };
    true
}

/// Fills `template`'s placeholders.
pub fn fill(template: &str, rng: &mut Rng, ctx: &Ctx<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 48);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = after
            .find('}')
            .filter(|&j| {
                j > 0
                    && j <= 12
                    && after[..j]
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .filter(|&j| resolve(&after[..j], rng, ctx, &mut out));
        match name_len {
            Some(j) => rest = &after[j + 1..],
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            svc: "cart",
            ns: "orders",
            dep: "pricing",
            dep_ns: "orders",
            pod: "cart-1",
            node: "n1",
            now: EventTime(0),
        }
    }

    #[test]
    fn placeholders_are_filled_and_json_kept() {
        let mut r = Rng::new(7);
        let s = fill(
            "call to {dep}.{depns} from {svc} failed: {\"error\":\"x\"} {bogus} {",
            &mut r,
            &ctx(),
        );
        assert_eq!(
            s,
            "call to pricing.orders from cart failed: {\"error\":\"x\"} {bogus} {"
        );
        let a = fill("{uuid} {ip}", &mut Rng::new(1), &ctx());
        let b = fill("{uuid} {ip}", &mut Rng::new(1), &ctx());
        assert_eq!(a, b);
        assert_eq!(uuid(&mut r).len(), 36);
    }
}
