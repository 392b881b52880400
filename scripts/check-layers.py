#!/usr/bin/env python3
"""The shape check of src/ (ARCHITECTURE.md, "Layers"): every import between the files of the
crate, read from `use` lines and `crate::`/`super::` paths (test modules after `#[cfg(test)]` and
comments left out), must

  1. form no cycle: no file imports one that imports it back, directly or through others (a
     folder's mod.rs using its own children is how Rust folders are built and does not count);
  2. run down the layers below: a module imports only modules of a lower layer, or its own files.

Prints every cycle and every upward import with the names that cause it; exits 1 when there is
one. Fast (no compiler), so CI runs it before building.

A second opinion from the compiler's view: cargo-modules (`cargo install cargo-modules`) draws the
crate's modules and their `use` edges as rust-analyzer resolves them. Its own `--acyclic` flag is
unusable here (it reports every trait method implemented for a type as a cycle between the type
and the method, regexident/cargo-modules#307), so give its graph to this script instead, which
checks the module-to-module `uses` edges for cycles and layer order:

    cargo modules dependencies --lib --no-externs --no-sysroot --no-fns --no-traits \
        --no-types > modules.dot && scripts/check-layers.py --dot modules.dot

    scripts/check-layers.py [SRC_DIR]      # default: src
"""
import os
import re
import sys

# Top to bottom. A module may import the modules of the layers below its own, never above, and
# not the other modules of its own layer. Entries are top-level modules, or a file below one
# (`model/error`) when that file is what lower layers may use.
LAYERS = [
    ["<main>"],
    ["app", "cli"],
    ["discovery"],
    ["http", "grpc"],
    ["oip"],
    ["predict"],
    ["state"],
    ["reload"],
    ["promote"],
    ["queue"],
    ["live"],
    ["payload"],
    ["route", "security", "accept", "access"],
    ["config"],
    ["model"],
    ["registry"],
    ["protocol"],
    ["telemetry"],
    ["metrics", "files", "sdnotify", "failpoints"],
]
# The crate root declares the modules; it sits above everything.
ROOT = ()


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--dot":
        return check_dot(sys.argv[2])
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                rel = os.path.relpath(p, src)[:-3].split(os.sep)
                if rel[-1] == "mod":
                    rel = rel[:-1]
                if rel == ["lib"]:
                    rel = []
                elif rel == ["main"]:
                    rel = ["<main>"]
                files[tuple(rel)] = p
    for mod, path in files.items():
        text = strip(open(path, errors="replace").read())
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for p in expand(re.sub(r"\s+", " ", m.group(1))):
                if not p.startswith(("crate::", "super::", "self::")):
                    p = "self::" + p
                source = resolve(mod, p, files, follow=False)
                name = re.split(r"\s+as\s+", p.split("::")[-1])
                exported = name[-1].strip()
                if source is not None and source != mod and exported != "*":
                    REEXPORTS.setdefault(mod, {})[exported] = source
    edges = {mod: imports(mod, path, files) for mod, path in files.items()}
    # A module using its own children is how Rust folders are built, not an import back.
    for mod in edges:
        edges[mod] = {t: u for t, u in edges[mod].items() if t[: len(mod)] != mod}
    problems = 0
    for i, comp in enumerate(cycles(edges), 1):
        problems += 1
        print(f"cycle {i}: {len(comp)} files")
        for a in sorted(comp):
            for b, used in sorted(edges[a].items()):
                if b in comp:
                    print(f"  {files[a]} -> {files[b]}: {', '.join(sorted(used)[:6])}")
    rank = {}
    for level, names in enumerate(LAYERS):
        for name in names:
            rank[tuple(name.split("/"))] = level

    def layer(mod):
        for n in range(len(mod), 0, -1):
            if mod[:n] in rank:
                return mod[:n], rank[mod[:n]]
        return None, None

    unplaced = sorted({mod[:1] for mod in files if mod and layer(mod)[0] is None})
    for mod in unplaced:
        problems += 1
        print(f"{'/'.join(mod)}: not in any layer; add it to LAYERS in {sys.argv[0]}")
    for a, targets in sorted(edges.items()):
        if a == ROOT:
            continue
        (home_a, level_a) = layer(a)
        for b, used in sorted(targets.items()):
            (home_b, level_b) = layer(b)
            if None in (level_a, level_b) or home_a == home_b or b[: len(home_a)] == home_a:
                continue
            if level_b <= level_a:
                problems += 1
                how = "up" if level_b < level_a else "across"
                print(
                    f"{files[a]} imports {how} into {files[b]} "
                    f"({'/'.join(home_a)} is layer {level_a}, {'/'.join(home_b)} layer {level_b}): "
                    f"{', '.join(sorted(used)[:6])}"
                )
    print(f"{problems} problem(s) among {len(files)} files")
    sys.exit(1 if problems else 0)


def check_dot(path):
    """Cycles and layer order of the module-to-module `uses` edges of a cargo-modules graph."""
    edges = {}
    pattern = re.compile(r'"([^"]+)" -> "([^"]+)" \[label="uses"')
    for line in open(path):
        m = pattern.search(line)
        if not m:
            continue
        a, b = (tuple(name.split("::")[1:]) for name in m.groups())
        # A module using its own children (or itself) is how Rust folders are built.
        if b[: len(a)] == a:
            continue
        edges.setdefault(a, {}).setdefault(b, set()).add("use")
        edges.setdefault(b, {})
    problems = 0
    for i, comp in enumerate(cycles(edges), 1):
        problems += 1
        names = sorted("::".join(m) or "crate" for m in comp)
        print(f"cycle {i} among modules: {', '.join(names)}")
    rank = {tuple(n.split("/")): level for level, names in enumerate(LAYERS) for n in names}

    def layer(mod):
        for n in range(len(mod), 0, -1):
            if mod[:n] in rank:
                return mod[:n], rank[mod[:n]]
        return None, None

    for a, targets in sorted(edges.items()):
        home_a, level_a = layer(a)
        for b in sorted(targets):
            home_b, level_b = layer(b)
            if None in (level_a, level_b) or home_a == home_b:
                continue
            if level_b <= level_a:
                problems += 1
                print(f"{'::'.join(a)} uses {'::'.join(b)} (layer {level_a} -> {level_b})")
    print(f"{problems} problem(s) among {len(edges)} modules (cargo-modules graph)")
    sys.exit(1 if problems else 0)


def strip(text):
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand(tree):
    """'a::{b, c::{d, e}}' -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = tree.strip()
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [prefix + q for p in parts if p.strip() for q in expand(p.strip())]


# Re-exports: for each file, the names it re-exports (`pub use child::Name;`) and the file they
# come from, so that an import of `config::Config` counts as an import of `config/settings.rs`,
# where `Config` is defined (filled by `main`).
REEXPORTS = {}


def resolve(mod, path, files, follow=True):
    target = resolve_file(mod, path, files)
    if target is None or not follow:
        return target
    name = re.split(r"\s+as\s+", path.split("::")[-1])[0].strip()
    seen = set()
    while name in REEXPORTS.get(target, {}) and target not in seen:
        seen.add(target)
        target = REEXPORTS[target][name]
    return target


def resolve_file(mod, path, files):
    segs = [s for s in re.split(r"::", path) if s and s != "*"]
    segs = [re.split(r"\s+as\s+", s)[0].strip() for s in segs]
    if not segs:
        return None
    if segs[0] in ("crate", "hotserve"):
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(mod)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super" and base:
                base.pop()
            segs = segs[1:]
    else:
        return None
    full = base + segs
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in files:
            return tuple(full[:n])
    return None


def imports(mod, path, files):
    text = strip(open(path, errors="replace").read())
    targets = {}

    def add(p):
        t = resolve(mod, p, files)
        if t is not None and t != mod:
            targets.setdefault(t, set()).add(p.split("::")[-1])

    for m in re.finditer(r"\buse\s+((?:crate|super|self|hotserve)::[^;]+);", text):
        for p in expand(re.sub(r"\s+", " ", m.group(1))):
            add(p)
    for m in re.finditer(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
        add(m.group(1))
    # Children declared here (`mod x;`) and used by their bare name (`x::f`, `use x::T`).
    for child in re.findall(
        r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", text, re.M
    ):
        for m in re.finditer(
            r"(?<![:\w])" + child + r"((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{[^;]*?\})", text
        ):
            for p in expand("crate::" + "::".join(mod + (child,)) + m.group(1)):
                add(p)
    return targets


def cycles(edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                found.append(comp)

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    main()
