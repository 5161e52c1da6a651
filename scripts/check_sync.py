"""Check that every chapter book/NAME.md has an up-to-date paired notebook notebooks/NAME.ipynb.

``python scripts/check_sync.py [BOOK_DIR [NOTEBOOK_DIR]]`` (defaults: book/ and notebooks/ of
this repository).  For each MyST notebook in BOOK_DIR (a ``.md`` with a jupytext header and a
kernelspec) it converts the ``.md`` with jupytext, as ``jupytext --sync`` would, and compares the
result cell by cell with the ``.ipynb``: cell type, source and tags (``nbval-skip``,
``remove-input``...).  Outputs, execution counts, ids and other metadata are ignored.  A
notebook in NOTEBOOK_DIR without a chapter is reported too.  Exits 1 listing every file that
is missing or differs; the fix is ``make sync``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent


def is_notebook_page(md: Path) -> bool:
    """A MyST page is a notebook when its front matter has a jupytext header or a kernelspec."""
    text = md.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    return "kernelspec:" in front or "jupytext:" in front


def cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    """The comparable content of a notebook: (type, source, tags) of each cell."""
    out = []
    for cell in nb.cells:
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        tags = tuple(sorted(cell.get("metadata", {}).get("tags", [])))
        out.append((cell.cell_type, source.strip("\n"), tags))
    return out


def describe(expected, actual) -> str:
    """A short description of the first difference between two cell lists."""
    if len(expected) != len(actual):
        return f"{len(actual)} cells, expected {len(expected)}"
    for k, (e, a) in enumerate(zip(expected, actual)):
        if e == a:
            continue
        if e[0] != a[0]:
            return f"cell {k}: type {a[0]!r}, expected {e[0]!r}"
        if e[2] != a[2]:
            return f"cell {k}: tags {list(a[2])}, expected {list(e[2])}"
        diff = difflib.unified_diff(e[1].splitlines(), a[1].splitlines(), "book", "notebook", lineterm="", n=0)
        lines = [line for line in diff if not line.startswith(("---", "+++", "@@"))][:4]
        return f"cell {k}: source differs: " + " | ".join(lines)
    return "differs"


def check(book_dir: Path, nb_dir: Path) -> list[str]:
    problems = []
    chapters = sorted(md for md in book_dir.glob("*.md") if is_notebook_page(md))
    for md in chapters:
        ipynb = nb_dir / (md.stem + ".ipynb")
        if not ipynb.exists():
            problems.append(f"{ipynb}: missing (paired with {md})")
            continue
        expected = cells(jupytext.read(md))
        actual = cells(jupytext.read(ipynb))
        if expected != actual:
            problems.append(f"{ipynb}: out of sync with {md}: {describe(expected, actual)}")
    names = {md.stem for md in chapters}
    for ipynb in sorted(nb_dir.glob("*.ipynb")):
        if ipynb.stem not in names:
            problems.append(f"{ipynb}: no chapter {book_dir / (ipynb.stem + '.md')} to pair with")
    return problems


def main(argv: list[str]) -> int:
    book_dir = Path(argv[0]) if argv else ROOT / "book"
    nb_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "notebooks"
    if not book_dir.is_dir():
        print(f"check_sync: {book_dir} is not a folder", file=sys.stderr)
        return 2
    problems = check(book_dir, nb_dir)
    if problems:
        print(f"check_sync: {len(problems)} notebook(s) out of sync; run `make sync`:")
        for p in problems:
            print(f"  {p}")
        return 1
    n = sum(1 for md in book_dir.glob("*.md") if is_notebook_page(md))
    print(f"check_sync: {n} chapter(s) in sync with {nb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
