//! The streaming template miner: clusters masked messages into templates.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::config::MinerConfig;
use super::mask::{mask_message, WILDCARD};

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

/// Removes `idx` from the list under `key`.
fn unlist<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: K, idx: usize) {
    if let Some(v) = map.get_mut(&key) {
        if let Some(p) = v.iter().position(|&i| i == idx) {
            v.swap_remove(p);
        }
        if v.is_empty() {
            map.remove(&key);
        }
    }
}

fn join(tokens: &[Box<str>]) -> String {
    let mut s = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Does a template keep at least one fully constant token? Templates that
/// do not only match messages of exactly their shape.
fn has_constant(tokens: &[Box<str>]) -> bool {
    tokens.iter().any(|t| !t.contains(WILDCARD))
}

/// Nouns that introduce a value in prose (`for user alice`, `host db1`):
/// the next token is treated like the value of a `key=value` token.
const VALUE_NOUNS: [&str; 13] = [
    "user",
    "username",
    "account",
    "login",
    "host",
    "hostname",
    "client",
    "peer",
    "server",
    "file",
    "filename",
    "path",
    "directory",
];

fn names_a_value(prev: &str) -> bool {
    let p = prev.trim_end_matches([':', ',']);
    p.len() <= 9 && VALUE_NOUNS.iter().any(|w| w.eq_ignore_ascii_case(p))
}

/// `key` of a `key=value` token.
fn kv_key(tok: &str) -> Option<&str> {
    let eq = tok.find('=')?;
    let key = &tok[..eq];
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    .then_some(key)
}

/// Does template token `t` cover the masked token `m`? `<*>` in `t` matches
/// any run of text and `<*>`s of `m`; a `<*>` of `m` is matched only by a
/// `<*>` of `t` (so covering composes with masking).
pub fn tok_match(t: &str, m: &str) -> bool {
    if t == m {
        return true;
    }
    if !t.contains(WILDCARD) {
        return false;
    }
    let (tb, mb) = (t.as_bytes(), m.as_bytes());
    let unit = |b: &[u8], i: usize| -> (bool, usize) {
        if b[i..].starts_with(WILDCARD.as_bytes()) {
            (true, WILDCARD.len())
        } else {
            (false, 1)
        }
    };
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while j < mb.len() {
        if i < tb.len() {
            let (tw, tl) = unit(tb, i);
            if tw {
                star = Some((i + tl, j));
                i += tl;
                continue;
            }
            let (mw, _) = unit(mb, j);
            if !mw && tb[i] == mb[j] {
                i += 1;
                j += 1;
                continue;
            }
        }
        match star {
            Some((si, sj)) => {
                let (_, l) = unit(mb, sj);
                star = Some((si, sj + l));
                i = si;
                j = sj + l;
            }
            None => return false,
        }
    }
    while i < tb.len() {
        let (tw, tl) = unit(tb, i);
        if !tw {
            return false;
        }
        i += tl;
    }
    true
}

/// `prefix<*>suffix`, keeping the common prefix/suffix of `col` up to a
/// punctuation boundary (`user=root`, `user=guest` → `user=<*>`).
fn affix_wildcard(col: &[&str]) -> String {
    let Some(first) = col.first() else {
        return WILDCARD.to_string();
    };
    let mut pre = first.len();
    let mut suf = first.len();
    for t in col.iter().skip(1) {
        pre = pre.min(
            first
                .bytes()
                .zip(t.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
        suf = suf.min(
            first
                .bytes()
                .rev()
                .zip(t.bytes().rev())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let shortest = col.iter().map(|t| t.len()).min().unwrap_or(0);
    // Cut the prefix back to just after its last delimiter.
    let mut p = &first[..floor_char(first, pre)];
    p = match p.rfind(|c: char| !c.is_alphanumeric() && c != '_') {
        Some(i) => &p[..i + p[i..].chars().next().map_or(1, char::len_utf8)],
        None => "",
    };
    let mut sfx = &first[ceil_char(first, first.len() - suf)..];
    sfx = match sfx.find(|c: char| !c.is_alphanumeric() && c != '_') {
        Some(i) => &sfx[i..],
        None => "",
    };
    if p.contains(WILDCARD) || sfx.contains(WILDCARD) || p.ends_with('<') || sfx.starts_with('>') {
        return WILDCARD.to_string();
    }
    if p.len() + sfx.len() > shortest {
        return WILDCARD.to_string();
    }
    format!("{p}{WILDCARD}{sfx}")
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Index key of a token: 0 when it holds a `<*>` (it may cover many
/// tokens), else a non-zero hash of its text.
const WILD_KEY: u64 = 0;

fn token_key<T: AsRef<str>>(t: Option<&T>) -> u64 {
    match t {
        None => 1,
        Some(t) if t.as_ref().contains(WILDCARD) => WILD_KEY,
        Some(t) => fnv1a64(t.as_ref().as_bytes()) | 2,
    }
}

/// At most this many templates (the newest) of one index bucket are
/// compared with a message of a never-seen shape: bounds the cost of a miss
/// when a very large number of templates share a length and first token.
const MAX_SCAN: usize = 256;

fn bucket(m: &HashMap<(usize, u64), Vec<usize>>, n: usize, k: u64) -> &[usize] {
    let b = m.get(&(n, k)).map_or(&[][..], Vec::as_slice);
    &b[b.len().saturating_sub(MAX_SCAN)..]
}

fn first_key<T: AsRef<str>>(tokens: &[T]) -> u64 {
    token_key(tokens.first())
}

fn last_key<T: AsRef<str>>(tokens: &[T]) -> u64 {
    token_key(tokens.last())
}

/// Hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

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

fn shape_hash(toks: &[std::borrow::Cow<'_, str>]) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(&MinerConfig::default())
    }

    /// Glob match of a whole template against a whole message.
    fn matches(template: &str, message: &str) -> bool {
        let norm: Vec<&str> = message.split_ascii_whitespace().collect();
        let norm = norm.join(" ");
        let pat: Vec<String> = template.split(WILDCARD).map(regex::escape).collect();
        let re = regex::Regex::new(&format!("^(?s:{})$", pat.join("(?s:.*)"))).unwrap();
        re.is_match(&norm)
    }

    #[test]
    fn id_displays_short_and_stable() {
        let mut m = miner();
        let id = m.observe("Connection closed by 10.0.0.1 port 22");
        let s = id.to_string();
        assert_eq!(s.len(), 9);
        assert!(s.starts_with('T'));
        assert_eq!(
            s,
            miner()
                .observe("Connection closed by 10.9.9.9 port 80")
                .to_string()
        );
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn masked_variables_share_a_template() {
        let mut m = miner();
        let a = m.observe_detailed("Took 1.5 seconds to spawn the instance");
        let b = m.observe_detailed("Took 19.05 seconds to spawn the instance");
        assert!(a.created);
        assert!(!b.created);
        assert_eq!(a.id, b.id);
        assert_eq!(m.template(a.id), Some("Took <*> to spawn the instance"));
        assert_eq!(m.count(a.id), Some(2));
    }

    #[test]
    fn few_distinct_words_stay_separate_templates() {
        let mut m = miner();
        let s = m.observe("VM Started (Lifecycle Event)");
        let p = m.observe("VM Paused (Lifecycle Event)");
        let r = m.observe("VM Resumed (Lifecycle Event)");
        assert_ne!(s, p);
        assert_ne!(p, r);
        assert_eq!(m.len(), 3);
        assert_eq!(m.template(p), Some("VM Paused (Lifecycle Event)"));
    }

    #[test]
    fn many_distinct_words_generalise() {
        let mut m = miner();
        let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let ids: Vec<TemplateId> = users
            .iter()
            .map(|u| m.observe(&format!("session opened for user {u} by root")))
            .collect();
        let last = m.resolve(ids[5]);
        for id in &ids {
            assert_eq!(m.resolve(*id), last);
        }
        // The id is the one of the first template created.
        assert_eq!(last, ids[0]);
        assert_eq!(
            m.template(ids[1]),
            Some("session opened for user <*> by root")
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn key_value_values_generalise_sooner() {
        let mut m = miner();
        let a = m.observe("login failed user=root");
        m.observe("login failed user=guest");
        let c = m.observe("login failed user=test");
        assert_eq!(m.resolve(a), c);
        assert_eq!(m.template(a), Some("login failed user=<*>"));
    }

    #[test]
    fn a_numeric_slot_absorbs_earlier_words() {
        let mut m = miner();
        let a = m.observe("Invalid user webmaster from 1.2.3.4");
        let b = m.observe("Invalid user test9 from 1.2.3.5");
        assert_eq!(m.resolve(a), m.resolve(b));
        assert_eq!(m.template(a), Some("Invalid user <*> from <*>"));
    }

    fn corpus() -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..500u32 {
            v.push(format!(
                "Received block blk_{} of size {} from /10.0.{}.{}",
                i * 7919,
                i * 13,
                i % 7,
                i % 251
            ));
            v.push(format!(
                "worker {} state {}",
                i % 3,
                ["running", "blocked", "idle"][(i % 3) as usize]
            ));
            v.push(format!(
                "user u{} logged in from host{}.example.com",
                i % 17,
                i % 5
            ));
            v.push(format!("shape{} a b c", i % 40));
        }
        v
    }

    #[test]
    fn ids_are_stable_across_runs() {
        let run = || {
            let mut m = miner();
            let ids: Vec<TemplateId> = corpus().iter().map(|l| m.observe(l)).collect();
            ids.iter().map(|i| m.resolve(*i)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn ids_survive_snapshot_and_restore() {
        let lines = corpus();
        let cfg = MinerConfig::default();
        let mut straight = TemplateMiner::new(&cfg);
        let ids: Vec<TemplateId> = lines.iter().map(|l| straight.observe(l)).collect();

        let (first, second) = lines.split_at(lines.len() / 2);
        let mut before = TemplateMiner::new(&cfg);
        let mut ids2: Vec<TemplateId> = first.iter().map(|l| before.observe(l)).collect();
        let json = serde_json::to_string(&before.snapshot()).unwrap();
        let state: MinerState = serde_json::from_str(&json).unwrap();
        let mut after = TemplateMiner::restore(&cfg, state);
        assert_eq!(after.len(), before.len());
        ids2.extend(second.iter().map(|l| after.observe(l)));
        for (a, b) in ids.iter().zip(&ids2) {
            assert_eq!(straight.resolve(*a), after.resolve(*b));
            assert_eq!(straight.template(*a), after.template(*b));
        }
        assert_eq!(straight.snapshot(), after.snapshot());
    }

    #[test]
    fn eviction_bounds_the_number_of_templates() {
        let cfg = MinerConfig {
            max_templates: 32,
            ..MinerConfig::default()
        };
        let mut m = TemplateMiner::new(&cfg);
        let words = ["alpha", "beta", "gamma", "delta", "kappa", "omega"];
        for i in 0..5000usize {
            let l = format!(
                "{} {} {}",
                words[i % 6],
                words[(i / 6) % 6],
                "x".repeat(i % 50 + 1)
            );
            m.observe(&l);
            assert!(m.len() <= 32);
        }
        // A hot template survives.
        let hot = m.observe("alpha beta x");
        for i in 0..200usize {
            m.observe(&format!(
                "fresh{} thing{}",
                "y".repeat(i % 40),
                "z".repeat(i % 7)
            ));
            m.observe("alpha beta x");
        }
        assert!(m.template(hot).is_some());
        assert!(m.len() <= 32);
        assert!(m.snapshot().aliases.len() <= 2 * 32);
    }

    #[test]
    fn evicted_template_comes_back_with_the_same_id() {
        let cfg = MinerConfig {
            max_templates: 4,
            ..MinerConfig::default()
        };
        let mut m = TemplateMiner::new(&cfg);
        let first = m.observe("disk full on volume 7");
        for w in ["alpha", "beta", "gamma", "delta", "kappa", "omega"] {
            m.observe(&format!("{w} event happened"));
        }
        assert!(m.template(first).is_none());
        assert_eq!(m.observe("disk full on volume 9"), first);
        // A snapshot restored under a smaller cap keeps only the newest.
        let small = MinerConfig {
            max_templates: 2,
            ..MinerConfig::default()
        };
        let r = TemplateMiner::restore(&small, m.snapshot());
        assert!(r.len() <= 2);
        assert!(r.template(first).is_some());
    }

    #[test]
    fn empty_and_whitespace_messages() {
        let mut m = miner();
        let a = m.observe("");
        let b = m.observe("   \t ");
        assert_eq!(a, b);
        assert_eq!(m.template(a), Some(""));
    }

    proptest! {
        #[test]
        fn observe_never_panics_and_template_matches(lines in proptest::collection::vec(".{0,80}", 1..40)) {
            let mut m = miner();
            let mut ids = Vec::new();
            for l in &lines {
                let id = m.observe(l);
                let t = m.template(id).unwrap().to_string();
                prop_assert!(matches(&t, l), "template {:?} vs message {:?}", t, l);
                ids.push(id);
            }
            // Final templates still match every message assigned to them.
            for (l, id) in lines.iter().zip(&ids) {
                if let Some(t) = m.template(*id) {
                    prop_assert!(matches(t, l), "final template {:?} vs message {:?}", t, l);
                }
            }
        }

        #[test]
        fn structured_lines_match_their_templates(
            words in proptest::collection::vec("[a-z]{1,6}|[0-9]{1,5}|[a-f0-9:.=/()-]{1,12}", 1..12),
            n in 1usize..30,
        ) {
            let mut m = miner();
            for i in 0..n {
                let mut w = words.clone();
                let k = i % w.len();
                w[k] = format!("{}{}", w[k], i);
                let l = w.join(" ");
                let id = m.observe(&l);
                let t = m.template(id).unwrap();
                prop_assert!(matches(t, &l), "template {:?} vs message {:?}", t, l);
            }
        }
    }
}
