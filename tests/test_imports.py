"""The package's import graph, read from the code: no module takes part in a cycle.

Every ``import`` and ``from ... import`` counts, at module level or inside a function (a lazy
import still ties the two modules together).  Cycles are the strongly connected components of
that graph (Tarjan).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pmi_tutorial"



def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, from the source of ``root``."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {name: set() for name in files}

    def resolve(target: str) -> str | None:  # the module, or the package that holds a name
        while target and target not in files:
            target = target.rpartition(".")[0]
        return target or None

    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # "from mod import x" loads x when it is a module, and mod itself (already
                # loaded when it is a package above this module: no edge for that)
                targets = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in files]
                if not targets or not name.startswith(mod + "."):
                    targets.append(mod)
            for target in targets:
                hit = resolve(target)
                if hit is not None and hit != name:
                    graph[name].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_detector_sees_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (pkg / "c.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert cycles(graph) == [{"pkg.a", "pkg.sub", "pkg.sub.b"}]


def test_no_cycle():
    graph = import_graph(PACKAGE)
    assert "pmi_tutorial.verification" not in graph["pmi_tutorial.fingerprint"]
    found = cycles(graph)
    assert not found, ("import cycles (break each: move what both modules need into one that "
                       f"both import): {sorted(map(sorted, found))}")


def test_fingerprint_names_the_new_home_of_verify_ownership():
    from pmi_tutorial import fingerprint
    from pmi_tutorial.verification import verify_ownership

    assert callable(verify_ownership)
    with pytest.raises(AttributeError, match=r"import it from pmi_tutorial\.verification"):
        fingerprint.verify_ownership
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        fingerprint.nothing_here


def test_importing_fingerprint_imports_neither_verification_nor_stats():
    code = ("import sys, pmi_tutorial.fingerprint; "
            "bad = [m for m in ('pmi_tutorial.verification', 'pmi_tutorial.stats', "
            "'pmi_tutorial.ownership') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
