//! Token text of templates: joining, constant tokens, `key=value` and
//! "noun value" slots, whether a template token matches a message token,
//! and the affix wildcard a generalised column becomes (`user<*>`).
//!
//! Pure functions over strings; char-boundary safe.

use super::super::mask::WILDCARD;

pub(super) fn join(tokens: &[Box<str>]) -> String {
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
pub(super) fn has_constant(tokens: &[Box<str>]) -> bool {
    tokens.iter().any(|t| !t.contains(WILDCARD))
}

/// Nouns that introduce a value in prose (`for user alice`, `host db1`):
/// the next token is treated like the value of a `key=value` token.
pub(super) const VALUE_NOUNS: [&str; 13] = [
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

pub(super) fn names_a_value(prev: &str) -> bool {
    let p = prev.trim_end_matches([':', ',']);
    p.len() <= 9 && VALUE_NOUNS.iter().any(|w| w.eq_ignore_ascii_case(p))
}

/// `key` of a `key=value` token.
pub(super) fn kv_key(tok: &str) -> Option<&str> {
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
pub(super) fn affix_wildcard(col: &[&str]) -> String {
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

pub(super) fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(super) fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
