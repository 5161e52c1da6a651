"""The student edition: a copy of the book's sources with every solution cut out, built.

The instructor edition hides nothing; the student edition must leave no path to a solution,
so it is not enough to hide solutions when rendering (the download button serves the page's
source and notebook, the launch button opens a notebook). :func:`student_sources` copies the
repository's files into a folder of its own with every ``{solution}`` block and every gated
``{solution-start}`` ... ``{solution-end}`` block (its text, code and checks) removed from
the chapters, and generates the reader notebooks from those chapters. Jupyter Book builds
that copy, so its pages, ``_sources`` and downloads hold no solution; :func:`point_launch_buttons`
then points every Colab button at the solution-free notebooks, which the Pages workflow
publishes on the branch :data:`STUDENT_BRANCH`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDENT_BRANCH = "student-edition"  # where the workflow publishes notebooks/*.ipynb, solution-free
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{(?P<name>[\w:-]+)\}")
# a Colab link to a chapter's source or reader notebook on any branch
_COLAB = re.compile(r"(https://colab\.research\.google\.com/github/[^/\"']+/[^/\"']+/blob/)"
                    r"[^/\"']+/(?:book|notebooks)/([\w.-]+?)\.(?:md|ipynb)")


def strip_solutions(text: str, where: str = "") -> str:
    """A chapter's MyST text without its ``{solution}`` and gated solution blocks."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m and m.group("name") == "solution":
            close = m.group("fence")
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != close:
                j += 1
            if j == len(lines):
                raise ValueError(f"{where}:{i + 1}: a {{solution}} block is never closed with {close}")
            i = j + 1
            continue
        if m and m.group("name") == "solution-start":
            j = i + 1
            while j < len(lines) and not ((e := _OPEN.match(lines[j])) and e.group("name") == "solution-end"):
                j += 1
            if j == len(lines):
                raise ValueError(f"{where}:{i + 1}: a {{solution-start}} has no {{solution-end}}")
            close = _OPEN.match(lines[j]).group("fence")
            k = j + 1
            while k < len(lines) and lines[k].rstrip() != close:
                k += 1
            i = k + 1
            continue
        out.append(lines[i])
        i += 1
    return re.sub(r"\n{4,}", "\n\n\n", "\n".join(out))


def _source_files(root: Path) -> list[Path]:
    """The repository's files (tracked, or new and not ignored), relative to ``root``."""
    run = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=root, capture_output=True, text=True)
    if run.returncode != 0:  # not a git checkout: every file but build outputs
        return [p.relative_to(root) for p in root.rglob("*") if p.is_file()
                and not set(p.relative_to(root).parts) & {"_build", ".git", ".venv", "__pycache__"}]
    return [Path(f) for f in run.stdout.split("\0") if f and (root / f).is_file()]


def student_sources(out: Path, root: Path = ROOT) -> Path:
    """Copy the book's sources into ``out`` with the solutions cut out of every chapter and
    the reader notebooks regenerated from them; returns ``out``."""
    sys.path.insert(0, str(ROOT))
    from scripts import make_notebooks as mk

    if out.exists():
        shutil.rmtree(out)
    for rel in _source_files(root):
        if rel.parts[0] in ("notebooks", "_build") or rel.name.endswith(".ipynb"):
            continue
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    for md in (out / "book").rglob("*.md"):
        md.write_text(strip_solutions(md.read_text(encoding="utf-8"), str(md.relative_to(out))), encoding="utf-8")
    saved, mk.ROOT = mk.ROOT, out.resolve()  # links to the book are relative to the copy's root
    try:
        problems = mk.generate(out / "book", out / "notebooks", out / "references.bib", check=False)
    finally:
        mk.ROOT = saved
    if problems:
        raise RuntimeError("the student notebooks could not be generated: " + "; ".join(problems))
    return out


def point_launch_buttons(html: Path, branch: str = STUDENT_BRANCH) -> int:
    """Point every Colab link of the built pages at ``notebooks/NAME.ipynb`` on ``branch``
    (the solution-free notebooks); returns the number of links rewritten."""
    count = 0
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new, n = _COLAB.subn(lambda m: f"{m.group(1)}{branch}/notebooks/{m.group(2)}.ipynb", text)
        if n:
            page.write_text(new, encoding="utf-8")
            count += n
    return count


def colab_targets(html: Path) -> list[str]:
    """Every Colab link in the built pages."""
    found = set()
    for page in html.rglob("*.html"):
        found |= set(re.findall(r"https://colab\.research\.google\.com/[^\"'<> ]+", page.read_text(encoding="utf-8")))
    return sorted(found)
