//! The streaming template miner: clusters masked messages into templates.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use super::config::MinerConfig;
use super::mask::mask_message;

mod index;
mod text;
use index::{bucket, first_key, last_key, shape_hash, unlist, PreHashed, MAX_SCAN, WILD_KEY};
pub use text::tok_match;
use text::{affix_wildcard, has_constant, join, kv_key, names_a_value};

/// Siblings that differ only in the values of `key=value` tokens (at most
/// this many) form one group.
const MAX_KV_DIFFS: usize = 3;
const KV_GROUP: usize = usize::MAX;

/// Stable id of a template: FNV-1a of the template text as first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub u32);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{:08x}", self.0)
    }
}

/// 64-bit FNV-1a; stable across platforms and Rust versions.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn id_for(text: &str, salt: u32) -> TemplateId {
    let mut h = fnv1a64(text.as_bytes());
    if salt > 0 {
        for b in salt.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    TemplateId((h ^ (h >> 32)) as u32)
}

/// What one call of [`TemplateMiner::observe_detailed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The template the message was assigned to.
    pub id: TemplateId,
    /// The template was created by this message (never seen before).
    pub created: bool,
    /// An existing template was generalised (a position became `<*>`).
    pub generalized: bool,
}

#[derive(Debug, Clone)]
struct Cluster {
    id: TemplateId,
    tokens: Vec<Box<str>>,
    text: String,
    count: u64,
    last_seen: u64,
    created: u64,
    /// Slot is free (the template was merged away or evicted).
    dead: bool,
    /// At least one token has no `<*>` (see [`has_constant`]).
    has_const: bool,
}

/// One template in a [`MinerState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateState {
    /// Template id.
    pub id: TemplateId,
    /// Template text (tokens joined by one space).
    pub template: String,
    /// Messages assigned so far.
    pub count: u64,
    /// Sequence number of the last message assigned.
    pub last_seen: u64,
    /// Sequence number of the message that created it.
    pub created: u64,
}

/// Serialisable state of a miner, for restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerState {
    /// Format version of this record.
    pub version: u32,
    /// Messages observed so far.
    pub seq: u64,
    /// Live templates.
    pub templates: Vec<TemplateState>,
    /// Ids of templates merged into another one: `(old, new)`.
    pub aliases: Vec<(TemplateId, TemplateId)>,
}

/// Streaming, one-pass template miner. See the module docs of `pattern`.
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    cfg: MinerConfig,
    /// Slab of templates; indices stay valid until a slot is freed.
    clusters: Vec<Cluster>,
    free: Vec<usize>,
    live: usize,
    by_id: HashMap<TemplateId, usize>,
    by_len: HashMap<usize, Vec<usize>>,
    /// (length, first-token key) -> templates; see [`first_key`].
    by_first: HashMap<(usize, u64), Vec<usize>>,
    /// (length, last-token key) -> templates.
    by_last: HashMap<(usize, u64), Vec<usize>>,
    aliases: HashMap<TemplateId, TemplateId>,
    /// Masked shape hash -> template, a bounded lookup cache (not state).
    cache: HashMap<u64, TemplateId, BuildHasherDefault<PreHashed>>,
    seq: u64,
}

impl TemplateMiner {
    /// An empty miner.
    pub fn new(cfg: &MinerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            clusters: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_id: HashMap::new(),
            by_len: HashMap::new(),
            by_first: HashMap::new(),
            by_last: HashMap::new(),
            aliases: HashMap::new(),
            cache: HashMap::default(),
            seq: 0,
        }
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No template yet.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The current text of a template, `None` when unknown or evicted.
    pub fn template(&self, id: TemplateId) -> Option<&str> {
        self.by_id
            .get(&self.resolve(id))
            .map(|&i| self.clusters[i].text.as_str())
    }

    /// Messages assigned to a template so far.
    pub fn count(&self, id: TemplateId) -> Option<u64> {
        self.by_id
            .get(&self.resolve(id))
            .map(|&i| self.clusters[i].count)
    }

    /// Assigns `message` to a template and returns its id.
    pub fn observe(&mut self, message: &str) -> TemplateId {
        self.observe_detailed(message).id
    }

    /// Assigns `message` to a template; also says whether it is new.
    pub fn observe_detailed(&mut self, message: &str) -> Observation {
        self.seq += 1;
        let seq = self.seq;
        let toks = mask_message(
            message,
            self.cfg.max_tokens,
            self.cfg.max_token_len,
            self.cfg.collapse_wildcards,
        );
        let n = toks.len();
        // 0. Fast path: this masked shape was assigned before.
        let key = shape_hash(&toks);
        if let Some(&cid) = self.cache.get(&key) {
            let live = self.resolve(cid);
            if let Some(&ci) = self.by_id.get(&live) {
                let c = &mut self.clusters[ci];
                if c.tokens.len() == n
                    && c.tokens
                        .iter()
                        .zip(toks.iter())
                        .all(|(t, m)| tok_match(t, m))
                {
                    c.count += 1;
                    c.last_seen = seq;
                    return Observation {
                        id: c.id,
                        created: false,
                        generalized: false,
                    };
                }
            }
        }
        let obs = self.observe_slow(&toks, seq);
        if self.cache.len() >= self.cfg.max_templates.max(1).saturating_mul(4) {
            self.cache.clear();
        }
        self.cache.insert(key, obs.id);
        obs
    }

    fn observe_slow(&mut self, toks: &[std::borrow::Cow<'_, str>], seq: u64) -> Observation {
        let n = toks.len();
        // 1. A template that matches every token (most exact tokens wins).
        let mut best: Option<(usize, usize)> = None;
        // Siblings: templates differing from the message at exactly one
        // position: (position, cluster index).
        let mut siblings: Vec<(usize, usize)> = Vec::new();
        // Candidates: a template covering the message, or differing from it
        // at one position other than the first, has the same first token
        // (or a first token with `<*>`); one differing only at the first
        // position has the same last token.
        let (k0, kl) = (first_key(toks), last_key(toks));
        let mut cands: Vec<usize> = Vec::new();
        cands.extend_from_slice(bucket(&self.by_first, n, k0));
        if k0 != WILD_KEY {
            cands.extend_from_slice(bucket(&self.by_first, n, WILD_KEY));
        }
        if n >= 2 {
            for k in [kl, WILD_KEY] {
                cands.extend(bucket(&self.by_last, n, k).iter().copied().filter(|&ci| {
                    let f = first_key(&self.clusters[ci].tokens);
                    f != k0 && f != WILD_KEY
                }));
                if kl == WILD_KEY {
                    break;
                }
            }
        }
        {
            for &ci in &cands {
                let c = &self.clusters[ci];
                let mut exact = 0usize;
                let mut diff_pos = [usize::MAX; MAX_KV_DIFFS];
                let mut diffs = 0usize;
                let mut all_kv = true;
                for (i, (t, m)) in c.tokens.iter().zip(toks.iter()).enumerate() {
                    if **t == **m {
                        exact += 1;
                    } else if !tok_match(t, m) {
                        if diffs < MAX_KV_DIFFS {
                            diff_pos[diffs] = i;
                        }
                        diffs += 1;
                        all_kv = all_kv && kv_key(t).is_some() && kv_key(t) == kv_key(m);
                        if diffs > MAX_KV_DIFFS || (diffs > 1 && !all_kv) {
                            break;
                        }
                    }
                }
                let all_wild = !c.has_const;
                if diffs == 0 && (!all_wild || exact == n) {
                    let better = best.is_none_or(|(bi, be)| {
                        let b = &self.clusters[bi];
                        exact > be || (exact == be && (c.created, c.id) < (b.created, b.id))
                    });
                    if better {
                        best = Some((ci, exact));
                    }
                } else if exact > 0 && !all_wild && diffs <= MAX_KV_DIFFS {
                    if all_kv {
                        siblings.push((KV_GROUP, ci));
                    } else if diffs == 1 {
                        siblings.push((diff_pos[0], ci));
                    }
                }
            }
        }
        if let Some((ci, _)) = best {
            let c = &mut self.clusters[ci];
            c.count += 1;
            c.last_seen = seq;
            return Observation {
                id: c.id,
                created: false,
                generalized: false,
            };
        }
        // 2. Enough templates differ only at one position: it is a variable.
        if !siblings.is_empty() {
            siblings.sort_unstable();
            let mut start = 0;
            let mut chosen: Option<(usize, usize)> = None; // (start, end)
            while start < siblings.len() {
                let pos = siblings[start].0;
                let mut end = start;
                while end < siblings.len() && siblings[end].0 == pos {
                    end += 1;
                }
                let value_like =
                    pos == KV_GROUP || (pos > 0 && pos < n && names_a_value(&toks[pos - 1]));
                let need = if value_like {
                    self.cfg.min_distinct_for_key_value
                } else if pos == 0 {
                    self.cfg.min_distinct_for_first_token
                } else {
                    self.cfg.min_distinct_for_variable
                }
                .max(2);
                if end - start + 1 >= need && chosen.is_none_or(|(s0, e0)| end - start > e0 - s0) {
                    chosen = Some((start, end));
                }
                start = end;
            }
            if let Some((s0, e0)) = chosen {
                let members: Vec<usize> = siblings[s0..e0].iter().map(|&(_, ci)| ci).collect();
                let tokens = self.generalize(&members, Some(toks));
                // Never generalise into a template without any constant token.
                if has_constant(&tokens) {
                    let id = self.absorb(&members, tokens, 1, seq);
                    return Observation {
                        id,
                        created: false,
                        generalized: true,
                    };
                }
            }
        }
        let tokens: Vec<Box<str>> = toks.iter().map(|t| Box::<str>::from(&**t)).collect();
        let text = join(&tokens);
        let id = self.insert(tokens, text, 1, seq, seq);
        let generalized = self.sweep(id, seq);
        let live = self.resolve(id);
        // When the new template absorbed older ones, the older id survives
        // and the template is not new.
        Observation {
            id: live,
            created: live == id,
            generalized,
        }
    }

    /// Merges into `id` every template it covers; true when any was merged.
    fn sweep(&mut self, id: TemplateId, seq: u64) -> bool {
        let mut merged = false;
        let mut cur = id;
        for _ in 0..8 {
            let Some(&k) = self.by_id.get(&cur) else {
                break;
            };
            let g = &self.clusters[k].tokens;
            if !has_constant(g) {
                break;
            }
            let n = g.len();
            let cands = if first_key(g) != WILD_KEY {
                bucket(&self.by_first, n, first_key(g))
            } else if last_key(g) != WILD_KEY {
                bucket(&self.by_last, n, last_key(g))
            } else {
                let b = self.by_len.get(&n).map_or(&[][..], Vec::as_slice);
                &b[b.len().saturating_sub(MAX_SCAN)..]
            };
            let victims: Vec<usize> = cands
                .iter()
                .copied()
                .filter(|&ci| {
                    ci != k
                        && self.clusters[ci]
                            .tokens
                            .iter()
                            .zip(g.iter())
                            .all(|(c, t)| tok_match(t, c))
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            let mut members = victims;
            members.push(k);
            let tokens = g.clone();
            cur = self.absorb(&members, tokens, 0, seq);
            merged = true;
        }
        merged
    }

    /// The most specific template covering all `members` (and `extra`).
    fn generalize(
        &self,
        members: &[usize],
        extra: Option<&[std::borrow::Cow<'_, str>]>,
    ) -> Vec<Box<str>> {
        let Some(&first) = members.first() else {
            return Vec::new();
        };
        let n = self.clusters[first].tokens.len();
        let mut out = Vec::with_capacity(n);
        for j in 0..n {
            let mut col: Vec<&str> = members
                .iter()
                .map(|&ci| &*self.clusters[ci].tokens[j])
                .collect();
            if let Some(e) = extra {
                if let Some(t) = e.get(j) {
                    col.push(t);
                }
            }
            let t0 = col[0];
            if col.iter().all(|t| *t == t0) {
                out.push(Box::from(t0));
            } else if let Some(g) = col.iter().find(|g| col.iter().all(|t| tok_match(g, t))) {
                out.push(Box::from(*g));
            } else {
                out.push(affix_wildcard(&col).into());
            }
        }
        out
    }

    /// Merges `members` into the oldest of them, with template `tokens`.
    fn absorb(
        &mut self,
        members: &[usize],
        tokens: Vec<Box<str>>,
        extra: u64,
        seq: u64,
    ) -> TemplateId {
        let Some(&keep) = members
            .iter()
            .min_by_key(|&&ci| (self.clusters[ci].created, self.clusters[ci].id))
        else {
            return TemplateId(0);
        };
        let count = extra
            + members
                .iter()
                .map(|&ci| self.clusters[ci].count)
                .sum::<u64>();
        let keep_id = self.clusters[keep].id;
        for &ci in members {
            if ci != keep {
                self.aliases.insert(self.clusters[ci].id, keep_id);
                self.remove(ci);
            }
        }
        self.unindex(keep);
        {
            let k = &mut self.clusters[keep];
            k.text = join(&tokens);
            k.tokens = tokens;
            k.count = count;
            k.last_seen = seq;
        }
        let toks = std::mem::take(&mut self.clusters[keep].tokens);
        self.index(keep, &toks);
        self.clusters[keep].tokens = toks;
        self.trim_aliases();
        keep_id
    }

    fn trim_aliases(&mut self) {
        if self.aliases.len() > self.cfg.max_templates.max(1) {
            let live = &self.by_id;
            self.aliases.retain(|_, to| live.contains_key(to));
            if self.aliases.len() > 2 * self.cfg.max_templates.max(1) {
                self.aliases.clear();
            }
        }
    }

    /// The live id an (old, merged) id now maps to.
    pub fn resolve(&self, id: TemplateId) -> TemplateId {
        let mut cur = id;
        for _ in 0..64 {
            match self.aliases.get(&cur) {
                Some(&next) if next != cur => cur = next,
                _ => break,
            }
        }
        cur
    }

    fn insert(
        &mut self,
        tokens: Vec<Box<str>>,
        text: String,
        count: u64,
        last_seen: u64,
        created: u64,
    ) -> TemplateId {
        if self.live >= self.cfg.max_templates.max(1) {
            self.evict();
        }
        let mut salt = 0u32;
        let mut id = id_for(&text, salt);
        while self.by_id.contains_key(&id) {
            salt += 1;
            id = id_for(&text, salt);
        }
        let cluster = Cluster {
            id,
            tokens,
            text,
            count,
            last_seen,
            created,
            dead: false,
            has_const: false,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.clusters[i] = cluster;
                i
            }
            None => {
                self.clusters.push(cluster);
                self.clusters.len() - 1
            }
        };
        let toks = std::mem::take(&mut self.clusters[idx].tokens);
        self.index(idx, &toks);
        self.clusters[idx].tokens = toks;
        self.by_id.insert(id, idx);
        self.live += 1;
        id
    }

    /// Evicts the coldest 1/16 of the templates (at least one).
    fn evict(&mut self) {
        let cap = self.cfg.max_templates.max(1);
        let mut order: Vec<(u64, usize)> = self
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.dead)
            .map(|(i, c)| (c.last_seen, i))
            .collect();
        let k = (cap / 16).max(1).min(order.len());
        if k == 0 {
            return;
        }
        order.select_nth_unstable(k - 1);
        for &(_, i) in &order[..k] {
            self.remove(i);
        }
    }

    /// Frees slot `ci`.
    fn remove(&mut self, ci: usize) {
        if self.clusters[ci].dead {
            return;
        }
        self.unindex(ci);
        let c = &mut self.clusters[ci];
        self.by_id.remove(&c.id);
        c.dead = true;
        c.tokens = Vec::new();
        c.text = String::new();
        self.free.push(ci);
        self.live -= 1;
    }

    fn index(&mut self, idx: usize, tokens: &[Box<str>]) {
        let n = tokens.len();
        self.clusters[idx].has_const = has_constant(tokens);
        self.by_len.entry(n).or_default().push(idx);
        self.by_first
            .entry((n, first_key(tokens)))
            .or_default()
            .push(idx);
        self.by_last
            .entry((n, last_key(tokens)))
            .or_default()
            .push(idx);
    }

    fn unindex(&mut self, idx: usize) {
        let tokens = &self.clusters[idx].tokens;
        let n = tokens.len();
        let (k0, kl) = (first_key(tokens), last_key(tokens));
        unlist(&mut self.by_len, n, idx);
        unlist(&mut self.by_first, (n, k0), idx);
        unlist(&mut self.by_last, (n, kl), idx);
    }

    /// Serialisable state for restart.
    pub fn snapshot(&self) -> MinerState {
        MinerState {
            version: 1,
            seq: self.seq,
            templates: self
                .live_sorted()
                .into_iter()
                .map(|c| TemplateState {
                    id: c.id,
                    template: c.text.clone(),
                    count: c.count,
                    last_seen: c.last_seen,
                    created: c.created,
                })
                .collect(),
            aliases: {
                let mut a: Vec<(TemplateId, TemplateId)> =
                    self.aliases.iter().map(|(&k, &v)| (k, v)).collect();
                a.sort_unstable();
                a
            },
        }
    }

    /// Rebuilds a miner from a snapshot; ids are kept as saved.
    pub fn restore(cfg: &MinerConfig, state: MinerState) -> Self {
        let mut m = Self::new(cfg);
        m.seq = state.seq;
        for t in state.templates {
            if m.by_id.contains_key(&t.id) {
                continue;
            }
            let tokens: Vec<Box<str>> =
                t.template.split_ascii_whitespace().map(Box::from).collect();
            let idx = m.clusters.len();
            m.clusters.push(Cluster {
                id: t.id,
                tokens: Vec::new(),
                text: t.template,
                count: t.count,
                last_seen: t.last_seen,
                created: t.created,
                dead: false,
                has_const: false,
            });
            m.index(idx, &tokens);
            m.clusters[idx].tokens = tokens;
            m.by_id.insert(t.id, idx);
            m.live += 1;
        }
        while m.live > m.cfg.max_templates.max(1) {
            m.evict();
        }
        m.aliases = state.aliases.into_iter().collect();
        m.trim_aliases();
        m
    }

    /// Live templates, oldest first.
    fn live_sorted(&self) -> Vec<&Cluster> {
        let mut v: Vec<&Cluster> = self.clusters.iter().filter(|c| !c.dead).collect();
        v.sort_unstable_by_key(|c| (c.created, c.id));
        v
    }
}

#[cfg(test)]
mod tests;
