"""The package's shape, read from the source without importing it: no import cycles, imports only
go down the layer table below, modules stay short and each says what it is for.

Every import counts: at module level, inside functions and under ``if TYPE_CHECKING:``. Not
counted: imports made BY the facade ``ptune/__init__.py`` (it re-exports the public API lazily),
and the implicit import of a parent package (``import ptune.tasks.base`` runs ``ptune/tasks``).
"""

from __future__ import annotations

import ast
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
FACADE = "ptune"
MAX_LINES = 450  # the aim is about 400

# An import may go to the same or a lower layer. The data path runs up the table: text is read
# (data), batched (batch), read out by a head (heads) as a task kind says (tasks), inside the
# prompted backbone (model); storage, training/inference, applications and the CLI sit on top.
LAYERS = {
    "ptune.errors": 0, "ptune.bounds": 0, "ptune.config": 0, "ptune.lazy": 0,
    "ptune.data": 1,
    "ptune.batch": 2,
    "ptune.heads": 3,
    "ptune.tasks": 4,
    "ptune.model": 5,  # PromptModel = backbone + prompt + the task kind's head
    "ptune.storage": 6,
    "ptune.training": 7, "ptune.infer": 7,
    "ptune.serve": 8, "ptune.analysis": 8, "ptune.interop": 8,
    "ptune.cli": 9,
    FACADE: 9,  # importing from the facade may load anything: library code imports a name's home module
}
# Same-layer imports that are still refused: (importer, imported) -> why.
FORBIDDEN = {("ptune.infer", "ptune.training"): "training evaluates on dev through infer, never the reverse"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


@functools.cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under src/ptune."""
    out = {}
    for path in sorted((SRC / "ptune").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


@functools.cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name][0].read_text(encoding="utf-8"))


def _known(name: str) -> str:
    """``name`` or its closest enclosing module that exists (``ptune.x.missing`` -> ``ptune.x``)."""
    while name not in modules() and "." in name:
        name = name.rpartition(".")[0]
    return name


def _targets(name: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the module's package, one step up per extra dot
        base = name if is_package else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    # `from ptune.model import prompts` imports the submodule when there is one
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules() else source for alias in node.names]


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of a ptune module by a ptune module other than the facade."""
    found = []
    for name, (path, is_package) in modules().items():
        if name == FACADE:
            continue
        for node in ast.walk(tree(name)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, is_package, node):
                    if target == FACADE or target.startswith(FACADE + "."):
                        found.append(Import(name, _known(target), path, node.lineno))
    return tuple(dict.fromkeys(found))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer(name: str) -> int | None:
    """The layer of the longest LAYERS entry that is ``name`` or a package above it (the facade: itself only)."""
    owners = [key for key in LAYERS if _within(name, key) and (key != FACADE or name == FACADE)]
    return LAYERS[max(owners, key=len)] if owners else None


def _tangles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports (strongly connected, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each tangled group, as [a, b, ..., a]."""
    return [_loop(edges, group[0], set(group)) for group in _tangles(edges)]


def _loop(edges: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself through ``members`` (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    return paths[node] + [start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")


def test_every_module_has_a_layer():
    missing = sorted(name for name in modules() if layer(name) is None)
    assert not missing, ("modules in no layer; add their package to LAYERS in tests/test_layout.py:\n  "
                         + "\n  ".join(missing))


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    for edge in imports():
        edges.setdefault(edge.importer, set()).add(edge.imported)
    where: dict[tuple[str, str], str] = {}
    for edge in imports():
        where.setdefault((edge.importer, edge.imported), edge.where())  # the first line that imports it
    lines = []
    for group in _tangles(edges):
        cycle = _loop(edges, group[0], set(group))
        at = ", ".join(where[pair] for pair in itertools.pairwise(cycle))
        lines.append(" -> ".join(cycle) + "\n      at " + at)
        if len(group) > len(cycle) - 1:
            lines.append(f"  (one of several cycles among: {', '.join(group)})")
    assert not lines, "import cycles among ptune modules:\n  " + "\n  ".join(lines)


def test_imports_follow_the_layers():
    wrong = []
    for edge in imports():
        here, there = layer(edge.importer), layer(edge.imported)
        if here is None or there is None:
            continue  # reported by test_every_module_has_a_layer
        if there > here:
            wrong.append(f"{edge.where()}: {edge.importer} (layer {here}) -> {edge.imported} (layer {there})")
        for (importer, imported), why in FORBIDDEN.items():
            if _within(edge.importer, importer) and _within(edge.imported, imported):
                wrong.append(f"{edge.where()}: {edge.importer} -> {edge.imported}: {why}")
    table = "\n".join(f"  {n}: {', '.join(k for k, v in LAYERS.items() if v == n)}"
                      for n in sorted(set(LAYERS.values())))
    assert not wrong, ("imports against the layer order (an import may only go to the same or a lower layer):\n  "
                       + "\n  ".join(wrong) + "\nlayers:\n" + table)


def test_modules_are_short():
    long = []
    for path, _ in modules().values():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            long.append(f"{path.relative_to(SRC.parent)}: {count} lines")
    assert not long, f"modules over {MAX_LINES} lines (aim for about 400; split by concern):\n  " + "\n  ".join(long)


def test_every_module_has_a_docstring():
    bare = [str(path.relative_to(SRC.parent)) for name, (path, _) in modules().items()
            if not ast.get_docstring(tree(name))]
    assert not bare, "modules without a docstring (say what the module is for in two lines):\n  " + "\n  ".join(bare)


def test_the_checker_sees_cycles_and_nested_imports():
    """The checker itself: a cycle is found, and imports inside functions and TYPE_CHECKING count."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ptune.cli\n"
              "def f():\n    from .. import config\n")
    found = [t for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))
             for t in _targets("ptune.tasks.base", False, node)]
    assert found == ["typing", "ptune.cli", "ptune.config"]
    assert layer("ptune.model.prompts.deep") == 5 and layer(FACADE) == 9 and layer("ptune.nowhere") is None
