#!/usr/bin/env python3
"""Prints the crate's file-level import circles (strongly connected
components of more than one file), largest first.

A file imports another when it names a path under `crate::` (or `super::`)
that resolves to that file's module. Usage: scripts/import_graph.py [src]
Exit status 1 when a circle has more than MAX files."""
import os, re, sys

MAX = 3
# Where a file's unit tests start; `pub mod tests` too (log/batch.rs shares
# its test helpers with other modules' tests).
TESTS = r"#\[cfg\(test\)\]\s*(?:pub(?:\([\w ]+\))?\s+)?mod tests"
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
root = os.path.abspath(root)

def module_of(path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)

files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            files[module_of(p)] = p
# main.rs is its own crate: it imports the library as `portcullis::`.
mods = set(files)

# (module, item) -> the module a `pub use` re-export takes the item from, so
# that `crate::api::RequestContext` counts as an import of api/context.rs,
# not of api/mod.rs.
reexports = {}

def resolve(parts):
    """The longest module prefix of parts that is a file, following
    re-exports."""
    for n in range(len(parts), 0, -1):
        m = tuple(parts[:n])
        if m in mods:
            if n < len(parts) and (m, parts[n]) in reexports:
                return reexports[(m, parts[n])]
            return m
    return None

def strip_comments(src):
    src = re.sub(r"//[^\n]*", "", src)
    return re.sub(r"/\*.*?\*/", "", src, flags=re.S)

def expand_use(tree):
    """Expands a use tree `a::{b, c::{d}}` into paths."""
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)::\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{": depth += 1
        if ch == "}": depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if not p: continue
        if p == "self":
            out.append(prefix)
        else:
            out.extend(prefix + "::" + q for q in expand_use(p))
    return out

def sources():
    for m, p in files.items():
        if m == () and p.endswith("main.rs"):
            continue
        src = strip_comments(open(p).read())
        cut = re.search(TESTS, src)
        yield m, p, src[:cut.start()] if cut else src

for m, p, src in sources():
    if not (p.endswith("mod.rs") or p.endswith("lib.rs")):
        continue
    for u in re.findall(r"\bpub(?:\([\w ]+\))?\s+use\s+([^;]+);", src):
        for path in expand_use(u):
            segs = [x for x in path.split("::") if x]
            if segs and segs[0] in ("self", "crate"):
                segs = segs[1:] if segs[0] == "self" else segs
            base = list(m) + segs[:-1] if segs and segs[0] != "crate" else segs[1:-1]
            n = len(base)
            while n > 0 and tuple(base[:n]) not in mods:
                n -= 1
            if n > 0 and tuple(base[:n]) != m:
                item = path.split(" as ")[-1].split("::")[-1].strip()
                reexports[(m, item)] = tuple(base[:n])

edges = {m: set() for m in mods}
for m, p in files.items():
    if m == () and p.endswith("main.rs"):
        continue
    src = strip_comments(open(p).read())
    # cfg(test) modules are not part of the layering.
    cut = re.search(TESTS, src)
    if cut:
        src = src[:cut.start()]
    paths = []
    for u in re.findall(r"\buse\s+([^;]+);", src):
        paths.extend(expand_use(u))
    # Paths in code; `use` trees were expanded above (a brace group would
    # otherwise count as an import of its prefix module).
    code = re.sub(r"\buse\s+[^;]+;", "", src)
    paths.extend(re.findall(r"(?<![:\w])(?:crate|super|\w+)(?:::\w+)+", code))
    here = list(m) if p.endswith("mod.rs") or p.endswith("lib.rs") else list(m[:-1])
    for path in paths:
        segs = [s for s in path.split("::") if s]
        if not segs: continue
        if segs[0] == "crate":
            target = resolve(segs[1:])
        elif segs[0] == "super":
            # `self` is the file's own module (`log::partition` for
            # log/partition.rs, not `log`), `super` its parent: counting
            # from `here` skipped a level and lost every `use super::x`
            # edge of a file that is not a mod.rs.
            base = list(m)
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            target = resolve(base + segs)
        elif segs[0] == "self":
            target = resolve(list(m) + segs[1:])
        elif tuple(here + [segs[0]]) in mods:
            # 2018-edition relative path to a child module (`use partition::X`).
            target = resolve(list(here) + segs)
        else:
            continue
        if target is not None and target != m and target != ():
            edges[m].add(target)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in sorted(mods):
    if v not in index:
        strong(v)
circles = sorted((c for c in sccs if len(c) > 1), key=len, reverse=True)
name = lambda m: "/".join(m) or "lib"
for c in circles:
    print(f"{len(c)} files: " + ", ".join(sorted(name(m) for m in c)))
worst = max((len(c) for c in circles), default=0)
print(f"largest circle: {worst} files ({len(mods)} files in the crate)")
sys.exit(1 if worst > MAX else 0)
