//! Index keys of the miner's template buckets: per-token keys (wildcards
//! share one), bounded bucket scans, shape hashes of masked messages, and
//! a pass-through hasher for keys that are hashes already.
//!
//! Guarantees: keys are deterministic across runs (FNV-1a, no random state).

use super::super::mask::WILDCARD;
use super::fnv1a64;
use std::collections::HashMap;
use std::hash::Hasher;

/// Removes `idx` from the list under `key`.
pub(super) fn unlist<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<usize>>,
    key: K,
    idx: usize,
) {
    if let Some(v) = map.get_mut(&key) {
        if let Some(p) = v.iter().position(|&i| i == idx) {
            v.swap_remove(p);
        }
        if v.is_empty() {
            map.remove(&key);
        }
    }
}

/// Index key of a token: 0 when it holds a `<*>` (it may cover many
/// tokens), else a non-zero hash of its text.
pub(super) const WILD_KEY: u64 = 0;

pub(super) fn token_key<T: AsRef<str>>(t: Option<&T>) -> u64 {
    match t {
        None => 1,
        Some(t) if t.as_ref().contains(WILDCARD) => WILD_KEY,
        Some(t) => fnv1a64(t.as_ref().as_bytes()) | 2,
    }
}

/// At most this many templates (the newest) of one index bucket are
/// compared with a message of a never-seen shape: bounds the cost of a miss
/// when a very large number of templates share a length and first token.
pub(super) const MAX_SCAN: usize = 256;

pub(super) fn bucket(m: &HashMap<(usize, u64), Vec<usize>>, n: usize, k: u64) -> &[usize] {
    let b = m.get(&(n, k)).map_or(&[][..], Vec::as_slice);
    &b[b.len().saturating_sub(MAX_SCAN)..]
}

pub(super) fn first_key<T: AsRef<str>>(tokens: &[T]) -> u64 {
    token_key(tokens.first())
}

pub(super) fn last_key<T: AsRef<str>>(tokens: &[T]) -> u64 {
    token_key(tokens.last())
}

/// Hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(super) fn shape_hash(toks: &[std::borrow::Cow<'_, str>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in toks {
        for &b in t.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
