#!/usr/bin/env python3
"""Import circles among a crate's modules, from its source text (scripts/check-purity.sh).

For every non-test file under SRC, each `crate::a::b` and `super::x` path it uses becomes an edge
between sibling modules: at the top level (`ingest` -> `store`) and inside each module directory
(`store::commit` -> `store::reject`). A parent's `mod.rs` and its children are not siblings (the
parent declares and re-exports them), so those edges are left out. Prints each circle found and
exits 1 if there is one."""
import re
import sys
from pathlib import Path


def module_of(src: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def code_of(file: Path) -> str:
    text = file.read_text()
    cut = text.find("#[cfg(test)]")  # test modules sit at the end of a file by convention
    text = text if cut < 0 else text[:cut]
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


def edges(src: Path) -> dict[tuple, set]:
    graph: dict[tuple, set] = {}
    modules = {tuple(module_of(src, f)) for f in src.rglob("*.rs")}
    for file in src.rglob("*.rs"):
        if file.name == "tests.rs" or "tests" in file.relative_to(src).parts[:-1]:
            continue
        me = module_of(src, file)
        code = code_of(file)
        targets = [m.split("::") for m in re.findall(r"\bcrate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)", code)]
        parent = me[:-1] if file.name != "mod.rs" else me[:-1]
        for s in re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", code):
            targets.append(parent + [s])
        # `use crate::x::{a, b}` groups: count the group's members as siblings too
        for base, group in re.findall(r"\bcrate::([a-z_:]+)::\{([^}]*)\}", code):
            for item in re.findall(r"\b([a-z_][a-z0-9_]*)\b", group):
                targets.append(base.split("::") + [item])
        for t in targets:
            # the deepest module the path names
            while t and tuple(t) not in modules:
                t = t[:-1]
            if not t:
                continue
            # the level where me and t diverge: siblings there
            i = 0
            while i < len(me) and i < len(t) and me[i] == t[i]:
                i += 1
            if i == len(me) or i == len(t):
                continue  # parent/child or self
            a, b = tuple(me[: i + 1]), tuple(t[: i + 1])
            graph.setdefault(a, set()).add(b)
    return graph


def cycles(graph: dict[tuple, set]) -> list[list[tuple]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


status = 0
for src in sys.argv[1:]:
    for c in cycles(edges(Path(src))):
        print(f"cycle in {src}: " + " -> ".join("::".join(m) for m in c), file=sys.stderr)
        status = 1
sys.exit(status)
