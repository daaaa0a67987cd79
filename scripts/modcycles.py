#!/usr/bin/env python3
"""Module-cycle check for a Rust crate's src/ tree (no dependencies beyond Python 3).

Builds the dependency graph from `use` declarations and `crate::`/`super::`/
`self::`-rooted paths (and paths through names those `use`s bind), with
re-exports (`pub use`) followed to the module that defines the item, then
checks two kinds of graph for cycles:

- between the top-level modules of src/ (src/X.rs or src/X/);
- between sibling modules inside every folder (src/a/x ⇄ src/a/y), where the
  folder's own mod.rs counts as a sibling for the items it defines itself
  (its `mod` declarations and `pub use` re-exports are structure, not use).

Test-only code (`#[cfg(test)]` items) and comments are ignored: the check is
about the shipped architecture. main.rs (the binary) is outside the graph.

Usage:
  python3 scripts/modcycles.py [SRC_DIR]     # default: src; exit 1 on a cycle
  (with the default, cycles listed in scripts/modcycles.allow are reported but
  tolerated; an entry that matches no cycle any more is an error)
  python3 scripts/modcycles.py --self-test   # the checker's own fixtures
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_RE = re.compile(
    r"\b(?:fn|struct|enum|trait|type|const|static|union|mod)\s+(" + IDENT + r")"
    r"|\bmacro_rules!\s*(" + IDENT + r")"
)


# --- lexing -------------------------------------------------------------------


def strip_code(text):
    """Comments and string/char literals blanked out (newlines kept for line
    numbers), so a path inside a string or a doc link is not a dependency."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        m = re.match(r'(?:b?r)(#*)"', text[i:i + 260]) if c in "rb" else None
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == "'":
            # A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", text[i:i + 12])
            if m:
                out.append(" " * m.end())
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def matching_brace(text, open_idx):
    depth = 0
    for j in range(open_idx, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


def strip_cfg_test(text):
    """Blank out items under #[cfg(test)] (a `mod tests { .. }`, a test-only fn or use)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", text)
        if not m:
            return text
        j = m.end()
        # The item ends at the first `;` before any `{`, or at the matching `}`.
        semi = text.find(";", j)
        brace = text.find("{", j)
        if brace < 0 or (0 <= semi < brace):
            end = semi if semi >= 0 else len(text) - 1
        else:
            end = matching_brace(text, brace)
        text = text[: m.start()] + re.sub(r"[^\n]", " ", text[m.start(): end + 1]) + text[end + 1:]


# --- use trees ------------------------------------------------------------------


def uses_in(code):
    """[(line, [(segments, bound_name)], is_pub)] for every `use` declaration."""
    out = []
    for m in re.finditer(r"(?<![A-Za-z0-9_])(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);", code):
        tree = parse_use_tree(m.group(2))
        out.append((code.count("\n", 0, m.start()) + 1, tree, bool(m.group(1)), m.start(), m.end()))
    return out


def parse_use_tree(body):
    """`a::{b, c::d as e, f::*}` -> [([a,b], b), ([a,c,d], e), ([a,f,*], None)]."""
    # Replace ` as ` with a marker that survives whitespace removal.
    body = re.sub(r"\s+as\s+", " @AS@ ", body)
    body = re.sub(r"\s+", "", body)
    results = []

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def walk(prefix, s):
        for p in split_top(s):
            if not p:
                continue
            k = p.find("{")
            if k >= 0:
                head = p[:k].rstrip(":")
                segs = [x for x in head.split("::") if x] if head else []
                walk(prefix + segs, p[k + 1: p.rfind("}")])
                continue
            alias = None
            if "@AS@" in p:
                p, alias = p.split("@AS@", 1)
            segs = [x for x in p.split("::") if x]
            if segs and segs[-1] == "self":
                segs = segs[:-1]
                name = alias or (segs[-1] if segs else None)
            elif segs and segs[-1] == "*":
                name = None
            else:
                name = alias or (segs[-1] if segs else None)
            if name == "_":
                name = None
            results.append((prefix + segs, name))

    walk([], body)
    return results


# --- the crate ------------------------------------------------------------------


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of segments below the crate root
        self.file = file
        self.code = ""
        self.items = set()  # names defined here
        self.children = set()
        self.reexports = {}  # name -> absolute target path (list)
        self.globs = []  # absolute module paths re-exported with *
        self.uses = []


def load_crate(src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            if rel == "main.rs" or rel.startswith("bin/"):
                continue
            parts = rel[:-3].split("/")
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods[tuple(parts)] = Module(tuple(parts), rel)
    test_only = set()
    for path, m in mods.items():
        if path:
            parent = mods.get(path[:-1])
            if parent is not None:
                parent.children.add(path[-1])
        with open(os.path.join(src, m.file), encoding="utf-8") as fh:
            code = strip_code(fh.read())
        # `#[cfg(test)] mod tests;`: that file (and what is under it) is test-only.
        for t in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+([A-Za-z0-9_]+)\s*;", code):
            test_only.add(path + (t.group(1),))
        m.code = strip_cfg_test(code)
    for t in test_only:
        for p in [p for p in mods if p[: len(t)] == t]:
            del mods[p]
        parent = mods.get(t[:-1])
        if parent is not None:
            parent.children.discard(t[-1])
    for m in mods.values():
        for im in ITEM_RE.finditer(m.code):
            m.items.add(im.group(1) or im.group(2))
        m.uses = uses_in(m.code)
    # Resolve `use`s (needs every module's children first), then re-exports.
    for m in mods.values():
        m.bound = {}
        resolved_uses = []
        for line, tree, is_pub, s, e in m.uses:
            res = []
            for segs, name in tree:
                absp = absolutise(mods, m, segs)
                if absp is None:
                    continue
                res.append((absp, name))
                if name is not None:
                    m.bound[name] = absp
                if is_pub:
                    if name is None and segs and segs[-1] == "*":
                        m.globs.append(absp[:-1])
                    elif name is not None:
                        m.reexports[name] = absp
            resolved_uses.append((line, res, is_pub, s, e))
        m.uses = resolved_uses
    return mods


def absolutise(mods, m, segs):
    """Absolute path (list below the crate root) of a path written in module m, or None if extern."""
    if not segs:
        return None
    if segs[0] == "crate":
        return list(segs[1:])
    if segs[0] in ("self", "super"):
        base = list(m.path)
        i = 0
        while i < len(segs) and segs[i] in ("self", "super"):
            if segs[i] == "super":
                if not base:
                    return None
                base.pop()
            i += 1
        return base + list(segs[i:])
    if segs[0] in m.children:
        return list(m.path) + list(segs)
    return None


def resolve(mods, absp, depth=0):
    """(module path, item name or None) that an absolute path lands on, following re-exports."""
    best = ()
    for k in range(len(absp), -1, -1):
        if tuple(absp[:k]) in mods:
            best = tuple(absp[:k])
            break
    rest = absp[len(best):]
    if not rest or depth > 8:
        return best, None
    name = rest[0]
    mod = mods[best]
    if name in mod.reexports and name not in mod.items:
        return resolve(mods, mod.reexports[name] + rest[1:], depth + 1)
    if name not in mod.items:
        for g in mod.globs:
            gm = mods.get(tuple(g))
            if gm is not None and (name in gm.items or name in gm.reexports):
                return resolve(mods, list(g) + rest, depth + 1)
    return best, name


PATH_RE = re.compile(r"(?<![A-Za-z0-9_:])(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)")


def references(mods, m):
    """[((target module path, item), line)] for every reference m makes. A
    `pub use` counts (a re-export depends on what it re-exports); a name used
    through a re-export lands on the module that defines it."""
    refs = []
    code = m.code
    use_spans = []
    for line, res, is_pub, s, e in m.uses:
        use_spans.append((s, e))
        for absp, _ in res:
            refs.append((resolve(mods, absp), line))
    for pm in PATH_RE.finditer(code):
        if any(s <= pm.start() < e for s, e in use_spans):
            continue
        head = pm.group(1)
        tail = [x.strip() for x in pm.group(2).split("::") if x.strip()]
        if head in ("crate", "self", "super") or head in m.children:
            absp = absolutise(mods, m, [head] + tail)
        elif head in m.bound:
            absp = m.bound[head] + tail
        else:
            continue
        if absp is None:
            continue
        refs.append((resolve(mods, absp), code.count("\n", 0, pm.start()) + 1))
    return refs


# --- graphs and cycles ------------------------------------------------------------


def build_graphs(mods):
    """{graph name: {node: {node: (file, line)}}} — the top-level graph and one per folder."""
    graphs = {}

    def add(gname, a, b, ev):
        g = graphs.setdefault(gname, {})
        g.setdefault(a, {})
        g.setdefault(b, {})
        if b not in g[a]:
            g[a][b] = ev

    for m in mods.values():
        for (tpath, item), line in references(mods, m):
            src, dst = m.path, tpath
            ev = (m.file, line)
            if src and dst and src[0] != dst[0]:
                add("src/", src[0], dst[0], ev)
            # Sibling graphs: at every folder that is a common ancestor.
            k = 0
            while k < min(len(src), len(dst)) and src[k] == dst[k]:
                k += 1
            folder = src[:k]
            if folder not in mods or not mods[folder].children:
                continue
            gname = "src/" + "/".join(folder) + ("/" if folder else "")
            if not folder:
                continue  # the top-level graph above covers the crate root
            if len(src) > k and len(dst) > k:
                add(gname, src[k], dst[k], ev)
    return graphs


def sccs(g):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            strong(v)
    return [c for c in out if len(c) > 1]


def one_cycle(g, comp):
    """A shortest cycle through the component's first node."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(g[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    path.reverse()
                    return path + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp + [comp[0]]


def load_allowed(path):
    """{(graph, members)} from an allow file: `src/sim/: a b` per line, `#` comments."""
    allowed = set()
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.split("#", 1)[0].strip()
                if line:
                    graph, _, members = line.partition(":")
                    allowed.add((graph.strip() + ":", tuple(sorted(members.split()))))
    return allowed


def check(src, out=sys.stdout, allowed=frozenset()):
    """Number of problems: cycles not allowed, plus allow entries that no longer
    match a cycle (so a fixed cycle's entry is removed). Each cycle is printed
    with the file and line of every edge."""
    mods = load_crate(src)
    graphs = build_graphs(mods)
    found, seen = 0, set()
    for gname in sorted(graphs):
        g = graphs[gname]
        for comp in sccs(g):
            key = (gname + ":" if not gname.endswith(":") else gname, tuple(sorted(comp)))
            known = key in allowed
            seen.add(key)
            found += 0 if known else 1
            cyc = one_cycle(g, comp)
            label = (lambda n: n) if gname == "src/" else (lambda n: gname[4:] + n)
            tag = "allowed module cycle (known, listed in the allow file)" if known else "module cycle"
            print(f"{tag} in {gname}: " + " -> ".join(label(n) for n in cyc), file=out)
            for a, b in zip(cyc, cyc[1:]):
                f, line = g[a][b]
                print(f"    {label(a)} -> {label(b)}: {os.path.join(src, f)}:{line}", file=out)
            if len(comp) > 2:
                print(f"    (strongly connected: {', '.join(comp)})", file=out)
    for graph, members in sorted(allowed - seen):
        found += 1
        print(f"stale allow entry {graph} {' '.join(members)}: no such cycle any more; remove it", file=out)
    return found


def self_test():
    import io

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modcycles_fixtures")
    failures = []
    cases = [
        ("cyclic", {"module cycle in src/: a -> b -> a", "module cycle in src/b/: b/x -> b/y -> b/x"}),
        ("acyclic", set()),
    ]
    for name, want in cases:
        buf = io.StringIO()
        n = check(os.path.join(here, name, "src"), buf)
        got = {l for l in buf.getvalue().splitlines() if not l.startswith(" ")}
        if got != want or n != len(want):
            failures.append(f"{name}: expected {sorted(want)}, got {sorted(got)}")
    # The allow list: an allowed cycle is tolerated, a stale entry is not.
    entry = ("src/:", ("a", "b"))
    n = check(os.path.join(here, "cyclic", "src"), io.StringIO(), allowed={entry})
    if n != 1:
        failures.append(f"cyclic with a..b allowed: expected 1 problem, got {n}")
    n = check(os.path.join(here, "acyclic", "src"), io.StringIO(), allowed={entry})
    if n != 1:
        failures.append(f"acyclic with a stale entry: expected 1 problem, got {n}")
    for f in failures:
        print("modcycles self-test FAILED: " + f)
    if not failures:
        print("modcycles self-test ok")
    return 1 if failures else 0


def main(argv):
    if argv[1:2] == ["--self-test"]:
        return self_test()
    src = argv[1] if len(argv) > 1 else "src"
    allow = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modcycles.allow")
    n = check(src, allowed=load_allowed(allow) if len(argv) <= 1 else frozenset())
    if n:
        print(f"{n} module cycle problem(s) in {src}/ (a module must not depend on one that depends on it)")
        return 1
    print(f"no module cycles in {src}/ (beyond any listed in scripts/modcycles.allow)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
