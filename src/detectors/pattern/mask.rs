//! Masking of variable tokens (pure functions, no I/O).
//!
//! A message is split on whitespace; every token is then examined:
//!
//! * whole-token classes become `<*>`: URLs (`scheme://...`), file paths
//!   (`/a/b`, `./a`, `~/a`, `C:\a`), e-mail addresses, `host:port`;
//! * otherwise the token is cut into word runs (`[A-Za-z0-9_-]+`) and
//!   delimiters; a run is a variable when it holds a digit (numbers, hex,
//!   UUIDs, IPs, dates, times, durations, sizes, ids), is a long hex string,
//!   or is `true`/`false`/`null`. Adjacent variable runs joined only by
//!   `. : / # + @ , \` collapse to one `<*>` (`10.1.2.3:80` → `<*>`,
//!   `12:01:33.5` → `<*>`), while keys survive (`uid=0` → `uid=<*>`,
//!   `core.2275` → `core.<*>`);
//! * month and weekday names next to a variable are variables (dates);
//! * optionally, runs of adjacent `<*>` tokens collapse into one.

use std::borrow::Cow;

/// The wildcard that marks a variable part of a template.
pub const WILDCARD: &str = "<*>";

/// A `key="quoted value"` may span at most this many further tokens.
const MAX_QUOTED_TOKENS: usize = 8;

const MONTHS_DAYS: [&str; 19] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "wed", "thu", "fri", "sat",
];
const LONG_NAMES: [&str; 19] = [
    "sun",
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Is `t` exactly the wildcard?
#[inline]
pub fn is_wild(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 3 && b[0] == b'<' && b[1] == b'*' && b[2] == b'>'
}

/// Byte offset of the first `first` immediately followed by `rest`.
fn find_pair(s: &str, first: u8, rest: &[u8]) -> Option<usize> {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .find(|&(i, &c)| c == first && b[i + 1..].starts_with(rest))
        .map(|(i, _)| i)
}

fn is_run_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn is_collapse_delim(c: char) -> bool {
    matches!(c, '.' | ':' | '/' | '#' | '+' | '@' | ',' | '\\')
}

const UNITS: [&str; 33] = [
    "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "byte", "bytes", "ms", "us", "µs", "ns", "s",
    "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "h", "hr", "hrs",
    "hour", "hours", "day", "days", "%", "kbps", "mbps",
];

fn is_unit(tok: &str) -> bool {
    tok.len() <= 7 && UNITS.iter().any(|u| u.eq_ignore_ascii_case(tok))
}

/// True when `tok` is a month or weekday name (any case, 3-letter or full).
pub fn is_date_word(tok: &str) -> bool {
    if tok.len() > 10 || tok.len() < 3 {
        return false;
    }
    if !matches!(
        tok.as_bytes()[0].to_ascii_lowercase(),
        b'j' | b'f' | b'm' | b'a' | b's' | b'o' | b'n' | b'd' | b't' | b'w'
    ) {
        return false;
    }
    let t = tok.trim_end_matches([',', '.']);
    MONTHS_DAYS
        .iter()
        .chain(LONG_NAMES.iter())
        .any(|w| w.eq_ignore_ascii_case(t))
}

fn run_is_variable(run: &str) -> bool {
    if run.len() < 4 {
        return run.bytes().any(|c| c.is_ascii_digit());
    }
    let mut has_digit = false;
    let mut all_hex = true;
    for c in run.chars() {
        if c.is_ascii_digit() {
            has_digit = true;
            break;
        }
        if !c.is_ascii_hexdigit() {
            all_hex = false;
        }
    }
    if has_digit {
        return true;
    }
    if all_hex && run.len() >= 8 {
        return true;
    }
    run.eq_ignore_ascii_case("true")
        || run.eq_ignore_ascii_case("false")
        || run.eq_ignore_ascii_case("null")
}

fn is_path(core: &str) -> bool {
    let b = core.as_bytes();
    if b.len() < 2 {
        return false;
    }
    if b[0] == b'/' {
        return b[1..].iter().any(|c| c.is_ascii_alphanumeric());
    }
    if core.starts_with("./")
        || core.starts_with("../")
        || core.starts_with("~/")
        || core.starts_with("\\\\")
    {
        return true;
    }
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\'
}

fn is_email(core: &str) -> bool {
    let Some(at) = core.find('@') else {
        return false;
    };
    let (local, domain) = (&core[..at], &core[at + 1..]);
    !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-'))
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'))
}

/// IPv6 addresses: hex groups and at least two colons (`fe80::1`).
fn is_ipv6(core: &str) -> bool {
    core.len() >= 3
        && core.bytes().filter(|&c| c == b':').count() >= 2
        && core
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        && core.bytes().any(|c| c.is_ascii_hexdigit())
}

/// File names with a number in them: `[2017-07-03]-Logs-001.txt`.
fn is_numbered_file(core: &str) -> bool {
    let Some(dot) = core.rfind('.') else {
        return false;
    };
    let ext = &core[dot + 1..];
    (1..=5).contains(&ext.len())
        && ext.as_bytes()[0].is_ascii_lowercase()
        && ext
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && core[..dot].bytes().any(|c| c.is_ascii_digit())
        && !core.contains(['=', ':', '(', ')'])
}

fn is_whole_variable(core: &str) -> bool {
    let (mut digit, mut colons, mut dots, mut slash, mut at) =
        (false, 0usize, 0usize, false, false);
    for b in core.bytes() {
        match b {
            b'0'..=b'9' => digit = true,
            b':' => colons += 1,
            b'.' => dots += 1,
            b'/' | b'\\' => slash = true,
            b'@' => at = true,
            _ => {}
        }
    }
    (colons >= 2 && is_ipv6(core))
        || (digit && dots >= 1 && is_numbered_file(core))
        || (colons >= 1 && slash && find_pair(core, b':', b"//").is_some())
        || (slash && is_path(core))
        || (at && is_email(core))
        || (digit && colons >= 1 && dots >= 1 && is_host_port(core))
        || (dots >= 2 && is_dotted_name(core))
}

/// Host names and dotted ids: `ns.example.com`, `a-1-2.rev.isp.net`,
/// `v6.1.7601.23505`: only `[A-Za-z0-9._-]`, at least two dots, and either a
/// digit or a lower-case top-level label of 2..=3 letters.
fn is_dotted_name(core: &str) -> bool {
    if core.bytes().filter(|&c| c == b'.').count() < 2
        || core.starts_with('.')
        || core.ends_with('.')
    {
        return false;
    }
    if !core
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return false;
    }
    if find_pair(core, b'.', b".").is_some() {
        return false;
    }
    if core.bytes().any(|c| c.is_ascii_digit()) {
        return true;
    }
    let last = core.rsplit('.').next().unwrap_or("");
    (2..=3).contains(&last.len())
        && last.bytes().all(|c| c.is_ascii_lowercase())
        && core.bytes().all(|c| !c.is_ascii_uppercase() && c != b'_')
}

fn is_host_port(core: &str) -> bool {
    let Some(colon) = core.rfind(':') else {
        return false;
    };
    let (host, port) = (&core[..colon], &core[colon + 1..]);
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|c| c.is_ascii_digit())
        && host.contains('.')
        && !host.starts_with('.')
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Masks one whitespace-free token. Returns the token itself when nothing
/// in it is variable.
pub fn mask_token(tok: &str, max_len: usize) -> Cow<'_, str> {
    if tok.len() > max_len {
        return Cow::Borrowed(WILDCARD);
    }
    // Fast path: a plain word.
    if tok.bytes().all(|c| c.is_ascii_alphabetic()) {
        return if run_is_variable(tok) {
            Cow::Borrowed(WILDCARD)
        } else {
            Cow::Borrowed(tok)
        };
    }
    let core_start = tok
        .bytes()
        .position(|b| !matches!(b, b'(' | b'[' | b'{' | b'<' | b'"' | b'\''))
        .unwrap_or(tok.len());
    let rest = &tok[core_start..];
    let core_len = rest
        .bytes()
        .rposition(|b| {
            !matches!(
                b,
                b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.' | b'!' | b'?'
            )
        })
        .map_or(0, |i| i + 1);
    let core = &rest[..core_len];
    if core.is_empty() {
        // An empty value in brackets or quotes: `()`, `[]`, `""`.
        return match tok {
            "()" => Cow::Borrowed("(<*>)"),
            "[]" => Cow::Borrowed("[<*>]"),
            "\"\"" => Cow::Borrowed("\"<*>\""),
            "''" => Cow::Borrowed("'<*>'"),
            _ => Cow::Borrowed(tok),
        };
    }
    let (mut digit, mut special, mut dots) = (false, false, 0usize);
    for b in core.bytes() {
        match b {
            b'0'..=b'9' => digit = true,
            b'/' | b'\\' | b'@' | b'=' => special = true,
            b'.' => dots += 1,
            _ => {}
        }
    }
    if !digit && !special && dots < 2 && !core.split(|c: char| !is_run_char(c)).any(run_is_variable)
    {
        return Cow::Borrowed(tok);
    }
    if (digit || special || dots >= 2) && is_whole_variable(core) {
        return wrap(tok, core_start, core_start + core_len, WILDCARD);
    }
    // `key=value` where the value as a whole is a variable.
    if let Some(eq) = core.find('=') {
        let (key, value) = (&core[..eq], &core[eq + 1..]);
        if !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
            && is_whole_variable(value)
        {
            return wrap(tok, core_start + eq + 1, core_start + core_len, WILDCARD);
        }
    }
    // Comparison prefixes: `<1`, `>=5`.
    if core_start > 0
        && tok[..core_start].chars().all(|c| c == '<' || c == '>')
        && core.chars().all(|c| c.is_ascii_digit() || c == '.')
        && core_len == rest.len()
    {
        return Cow::Borrowed(WILDCARD);
    }
    // Segment-level masking.
    if !core.chars().any(|c| c.is_ascii_digit())
        && !core.split(|c: char| !is_run_char(c)).any(run_is_variable)
    {
        return Cow::Borrowed(tok);
    }
    let mut out = String::with_capacity(tok.len());
    out.push_str(&tok[..core_start]);
    // `pending_delim` holds delimiters seen since the last variable, so that
    // `var delim var` collapses to one variable.
    let mut last_was_var = false;
    let mut pending = String::new();
    let mut i = 0;
    let bytes = core;
    while i < bytes.len() {
        let c = bytes[i..].chars().next().unwrap_or(' ');
        if is_run_char(c) {
            let end = bytes[i..]
                .find(|c: char| !is_run_char(c))
                .map_or(bytes.len(), |e| i + e);
            let run = &bytes[i..end];
            if run_is_variable(run) {
                if last_was_var && pending.chars().all(is_collapse_delim) {
                    pending.clear();
                } else {
                    out.push_str(&pending);
                    pending.clear();
                    out.push_str(WILDCARD);
                }
                last_was_var = true;
            } else {
                out.push_str(&pending);
                pending.clear();
                out.push_str(run);
                last_was_var = false;
            }
            i = end;
        } else {
            pending.push(c);
            i += c.len_utf8();
        }
    }
    out.push_str(&pending);
    out.push_str(&tok[core_start + core_len..]);
    Cow::Owned(out)
}

fn wrap<'a>(tok: &'a str, start: usize, end: usize, mid: &str) -> Cow<'a, str> {
    if start == 0 && end == tok.len() {
        return Cow::Borrowed(WILDCARD);
    }
    let mut s = String::with_capacity(tok.len() - (end - start) + mid.len());
    s.push_str(&tok[..start]);
    s.push_str(mid);
    s.push_str(&tok[end..]);
    Cow::Owned(s)
}

/// Splits `message` on whitespace and masks every token (see module docs).
/// At most `max_tokens` tokens are returned; a longer tail becomes one `<*>`.
pub fn mask_message(
    message: &str,
    max_tokens: usize,
    max_token_len: usize,
    collapse: bool,
) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    let mut any_masked = false;
    let mut it = message.split_ascii_whitespace();
    while let Some(tok) = it.next() {
        if out.len() + 1 >= max_tokens.max(1) {
            any_masked = true;
            out.push(Cow::Borrowed(WILDCARD));
            break;
        }
        // `key="a quoted value"` spanning several tokens is one value.
        if let Some(q) = tok
            .as_bytes()
            .contains(&b'"')
            .then(|| find_pair(tok, b'=', b"\""))
            .flatten()
        {
            let after = &tok[q + 2..];
            if !after.contains('"') {
                let mut look = it.clone();
                let mut joined = None;
                for _ in 0..MAX_QUOTED_TOKENS {
                    let Some(next) = look.next() else { break };
                    if let Some(close) = next.find('"') {
                        joined = Some(format!("{}=\"{WILDCARD}{}", &tok[..q], &next[close..]));
                        break;
                    }
                }
                if let Some(j) = joined {
                    any_masked = true;
                    out.push(Cow::Owned(j));
                    it = look;
                    continue;
                }
            }
        }
        let m = mask_token(tok, max_token_len);
        any_masked |= m.as_ptr() != tok.as_ptr();
        out.push(m);
    }
    if !any_masked {
        return out;
    }
    // Month / weekday names adjacent to a variable are part of a date.
    let n = out.len();
    if out.iter().any(|t| is_wild(t)) {
        for i in (0..n).rev().chain(0..n) {
            let prev = i > 0 && is_wild(&out[i - 1]);
            let next = i + 1 < n && is_wild(&out[i + 1]);
            if (prev || next) && !is_wild(&out[i]) && is_date_word(&out[i]) {
                out[i] = Cow::Borrowed(WILDCARD);
            }
        }
    }
    // Units after a variable belong to it: `12 ms`, `(1.2 KB)`.
    let mut i = 1;
    while i < out.len() {
        let prev_var = out[i - 1].ends_with(WILDCARD);
        if prev_var {
            let t = &out[i];
            let core = t.trim_end_matches([')', ']', ',', ';', '.']);
            if is_unit(core) {
                let merged = format!("{}{}", out[i - 1], &t[core.len()..]);
                out.remove(i);
                // `N unit (M unit)`: the bracketed alternative is the same value.
                if merged.starts_with("(<*>)")
                    && merged.len() <= 6
                    && i >= 2
                    && is_wild(&out[i - 2])
                {
                    let m2 = format!("{}{}", WILDCARD, &merged[5..]);
                    out[i - 2] = Cow::Owned(m2);
                    out.remove(i - 1);
                    i -= 1;
                } else {
                    out[i - 1] = Cow::Owned(merged);
                }
                continue;
            }
        }
        i += 1;
    }
    if collapse {
        out.dedup_by(|a, b| is_wild(a) && is_wild(b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        mask_message(s, 256, 512, true).join(" ")
    }

    #[test]
    fn masks_numbers_hex_and_ids() {
        assert_eq!(m("took 123 ms"), "took <*>");
        assert_eq!(m("value -24.5 at 0x7fed806eb5d"), "value <*> at <*>");
        assert_eq!(m("mask ffffffff deadbeef01"), "mask <*>");
        assert_eq!(m("generating core.2275"), "generating core.<*>");
        assert_eq!(m("block blk_-1727475099218615100 done"), "block <*> done");
    }

    #[test]
    fn masks_uuids_ips_and_ports() {
        assert_eq!(
            m("instance b9000564-fe1a-409b-b8cc-1e88b294cd1d up"),
            "instance <*> up"
        );
        assert_eq!(m("from 10.251.42.84:50010 ok"), "from <*> ok");
        assert_eq!(m("to /10.10.34.11:45307"), "to <*>");
        assert_eq!(m("via proxy.example.com:5070 ok"), "via <*> ok");
        assert_eq!(
            m("addr FE80:0000:0000:0000:D8A5:90FF:FEF5:7FFF end"),
            "addr <*> end"
        );
    }

    #[test]
    fn masks_paths_urls_and_emails() {
        assert_eq!(m("open /var/lib/nova/x failed"), "open <*> failed");
        assert_eq!(m("load C:\\Windows\\x.dll now"), "load <*> now");
        assert_eq!(m("GET http://example.org/a?b=c ok"), "GET <*> ok");
        assert_eq!(m("mail to alice@example.com sent"), "mail to <*> sent");
        assert_eq!(
            m("image at (/var/lib/x): checking"),
            "image at (<*>): checking"
        );
    }

    #[test]
    fn masks_dates_times_and_durations() {
        assert_eq!(m("at Fri Jun 17 07:07:00 2005"), "at <*>");
        assert_eq!(m("at 2016-09-28 04:30:31,455 done"), "at <*> done");
        assert_eq!(m("lifetime 00:01"), "lifetime <*>");
        assert_eq!(m("lifetime <1 sec"), "lifetime <*>");
        assert_eq!(m("sent 1190 bytes (1.16 KB) ok"), "sent <*> ok");
        assert_eq!(m("the March report"), "the March report");
    }

    #[test]
    fn masks_key_values_hosts_and_quoted_empties() {
        assert_eq!(m("uid=0 euid=0 tty=ssh"), "uid=<*> euid=<*> tty=ssh");
        assert_eq!(m("rhost=5.36.59.76.dynamic.example.net"), "rhost=<*>");
        assert_eq!(m("ready=true,policy=3"), "ready=<*>,policy=<*>");
        assert_eq!(m("lookup ns.example.com failed"), "lookup <*> failed");
        assert_eq!(m("connection from x () at"), "connection from x (<*>) at");
        assert_eq!(
            m("value 'Connection closed.'"),
            "value 'Connection closed.'"
        );
        assert_eq!(
            m("acquire tag=\"View Lock\", uid=7"),
            "acquire tag=\"<*>\", uid=<*>"
        );
        assert_eq!(m("numbered Logs-001.txt done"), "numbered <*> done");
    }

    #[test]
    fn keeps_plain_words_and_class_names() {
        let s = "org.apache.hadoop.mapreduce.Job started for com.android.systemui";
        assert_eq!(m(s), s);
        assert_eq!(
            m("Send worker leaving thread"),
            "Send worker leaving thread"
        );
    }

    #[test]
    fn truncates_long_messages_and_tokens() {
        let long = "a ".repeat(1000);
        let t = mask_message(&long, 10, 512, true);
        assert_eq!(t.len(), 10);
        assert_eq!(t[9], WILDCARD);
        let tok = "x".repeat(600);
        assert_eq!(mask_token(&tok, 512), WILDCARD);
    }
}
