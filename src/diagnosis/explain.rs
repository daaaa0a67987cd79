//! Whether a service's failure is explained by an incident: pure rules
//! over its counts, the upstreams it names and its own hints (no state, no
//! I/O), shared by routing (`explains`) and splitting.

/// A self-describing hint this strong, of another category than the
/// incident's, says a service fails "in its own way".
pub(super) const OWN_WAY: f64 = 0.3;

/// A service fails "in its own way" for an incident of `category`: its
/// strongest self-describing hint is of another category, at least
/// [`OWN_WAY`] strong (a stray signature hit next to stronger evidence of the
/// incident's own kind does not count).
pub(super) fn own_way(
    self_hints: impl Iterator<Item = (crate::model::Category, f64)>,
    category: crate::model::Category,
) -> bool {
    let (mut same, mut other) = (0.0f64, 0.0f64);
    for (c, w) in self_hints {
        if c == category {
            same = same.max(w);
        } else {
            other = other.max(w);
        }
    }
    other >= OWN_WAY && other > same
}

/// Whether a service's failure (`failing` events, `upstreams` it names with
/// counts, `own_way`: evidence of a failure of its own of another kind) is
/// explained by a set of failing services (`member`): most of the calls it
/// blames go to members and they are a third of its failing events (two
/// thirds when it also fails in its own way); without upstream data (none
/// listed: upstreams listed at 0 are data, at their edges' normal), it
/// calls a member (`calls_member`) and shows nothing of its own. A caller
/// failing a few calls to a member while failing mostly for other reasons
/// is not explained: that is chronic background, not this fault.
pub(super) fn explained_by<'a>(
    failing: i64,
    upstreams: impl Iterator<Item = (&'a str, i64)>,
    own_way: bool,
    member: impl Fn(&str) -> bool,
    calls_member: impl FnOnce() -> bool,
) -> bool {
    let (mut named, mut total, mut listed) = (0i64, 0i64, false);
    for (u, c) in upstreams {
        listed = true;
        total += c;
        if member(u) {
            named += c;
        }
    }
    // Upstreams listed at 0 are at their edges' normal: the failure is not
    // about them, so the graph does not explain it either.
    if listed {
        let failing = failing.max(total);
        named > 0
            && 2 * named >= total
            && 3 * named >= failing
            && (!own_way || 3 * named >= 2 * failing)
    } else {
        !own_way && calls_member()
    }
}
