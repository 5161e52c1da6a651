"""Static check: no chapter cell calls a model directly (``python scripts/check_chapter_code.py``).

``training.cached_model`` puts a model on CUDA when there is one, and the data sets are CPU
tensors, so a cell that writes ``model(x)`` works on a laptop and fails on every GPU runtime.
Chapters go through package functions that move the inputs to the model's device
(``features.logits``, ``training.evaluate``, ``membership.per_sample_loss``...).

A call is reported when what is called is

* an attribute ``.model``, ``.net`` or ``.forward`` (``result.model(x)``, ``m.forward(x)``), or
* a name ``model`` / ``net``, or a name the chapter binds to a model: assigned from a call of a
  function whose name ends in ``model`` (``build_model``, ``cached_model(...).model``...) or
  from an attribute ``.model``.

Exits 1 listing ``chapter: cell K: line L: call``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_MAGIC = re.compile(r"^\s*[%!]")


def _parse(source: str) -> ast.AST | None:
    code = "\n".join("pass" if _MAGIC.match(line) else line for line in source.split("\n"))
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _binds_model(value) -> bool:
    """True when an assigned value is (most likely) a model."""
    if isinstance(value, ast.Attribute) and value.attr == "model":
        return True
    if isinstance(value, ast.Call):
        name = _name(value.func) or ""
        return name.lower().endswith("model") and not name.startswith("_")
    return False


def model_names(sources: list[str]) -> set[str]:
    names = {"model", "net"}
    for src in sources:
        tree = _parse(src)
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Assign) and _binds_model(node.value):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def direct_calls(sources: list[str]) -> list[tuple[int, int, str]]:
    """``(cell, line, text)`` for every direct model call in a chapter's code cells."""
    names = model_names(sources)
    found = []
    for k, src in enumerate(sources):
        tree = _parse(src)
        for node in ast.walk(tree) if tree else ():
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            hit = (isinstance(f, ast.Attribute) and f.attr in ("model", "net", "forward")) or \
                  (isinstance(f, ast.Name) and f.id in names)
            if hit:
                found.append((k, node.lineno, ast.unparse(node)[:80]))
    return found


def chapter_sources(md: Path) -> list[str]:
    import jupytext

    return [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from scripts.make_notebooks import chapters

    book = Path(argv[0]) if argv else ROOT / "book"
    problems = [f"{md.name}: code cell {k}: line {line}: {text}"
                for md in chapters(book) for k, line, text in direct_calls(chapter_sources(md))]
    if problems:
        print(f"check_chapter_code: {len(problems)} direct model call(s); use features.logits(model, x) "
              "or another package function that moves the inputs to the model's device:")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"check_chapter_code: no direct model calls in {len(chapters(book))} chapters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
