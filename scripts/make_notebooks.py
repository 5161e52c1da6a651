"""Generate the reader notebooks ``notebooks/NAME.ipynb`` from the chapters ``book/NAME.md``.

``python scripts/make_notebooks.py`` (``make notebooks``) writes them; ``--check`` only
compares, and exits 1 naming every notebook that is missing, stale or has no chapter (the fix
is ``make notebooks``).

The chapters are MyST Markdown, which plain Jupyter and Colab do not understand.  Each code
cell is copied as it is (same source, same tags: nbval and the book build execute the same
code), and every markdown cell is rewritten into plain Markdown:

* ``{include}`` blocks are replaced by the included file, itself rewritten;
* an ``{exercise}`` (sphinx-exercise) becomes a heading ``### Exercise N: title`` followed by
  its text, N counting the chapter's exercises from 1 as the book does; a ``{solution}``, and
  the text of a gated ``{solution-start}`` ... ``{solution-end}`` solution up to the end of its
  markdown cell, are folded in an HTML ``<details>`` block (the gated solution's code cells
  follow it, as in the book); ``{ref}`label``` to an exercise becomes "Exercise N";
* a ``{hint}`` and a dropdown admonition are folded in ``<details>`` too; any other
  admonition becomes a block quote with its title in bold;
* ``{cite}`key``` becomes author-year text linking to the book's bibliography page,
  ``{doc}`name``` a link to that chapter in the published book, ``{math}`x``` becomes
  ``$x$``, ``(label)=`` targets and the labels of ``$$ ... $$ (label)`` equations are dropped;
* ``{{ repository_url }}``, ``{{ branch }}``, ``{{ book_url }}`` and ``{{ requirement }}``
  become the values of :mod:`pmi_tutorial.repository` (in code cells too: the install cell);
* a code cell with a ``mystnb.figure.caption`` is followed by a markdown cell with the
  caption, so that a notebook reader sees it too.

Anything else MyST-only (another directive or role) is an error naming the file and the line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pmi_tutorial import repository  # noqa: E402

ADMONITIONS = {"admonition", "note", "warning", "tip", "hint", "important", "caution",
               "attention", "danger", "error", "seealso"}
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*?)\s*$")
_PLAIN_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?![`~]*\{)")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)\s*$")
_ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<text>[^`]*)`")
_INLINE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<text>[^`]*)`|(?P<code>`+)[^`].*?(?P=code)")
_TARGET = re.compile(r"^\([\w:.-]+\)=\s*$")
_EQ_LABEL = re.compile(r"^(\s*\$\$)\s*\([\w:.-]+\)\s*$")  # "$$ (eq-name)": MyST's equation label
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_EXERCISE = re.compile(r"^(?P<fence>:{3,}|`{3,})\{exercise\}.*\n:label:[ \t]*(?P<label>\S+)", re.M)
_GATED = "\x00solution-start\x00"  # where a gated solution's text begins in a markdown cell
EXERCISE_DIRECTIVES = ("exercise", "solution", "solution-start", "solution-end")


def exercise_labels(text: str) -> dict[str, int]:
    """``label -> N`` for the ``{exercise}`` directives of one chapter, numbered from 1."""
    return {m.group("label"): k + 1 for k, m in enumerate(_EXERCISE.finditer(text))}


def substitute(text: str, where: str) -> str:
    """``text`` with the repository values put in (:func:`pmi_tutorial.repository.substitute`)."""
    return repository.substitute(text)


# ---------------------------------------------------------------------------- bibliography
def _latex_to_text(s: str) -> str:
    s = re.sub(r"\\[\"'`^~]\{?(\w)\}?", r"\1", s)  # {\"o} -> o (accents dropped, letters kept)
    return s.replace("{", "").replace("}", "").replace("~", " ").strip()


def author_year(bib_path: Path) -> dict[str, tuple[str, str]]:
    """``key -> (authors, year)`` for every entry of a BibTeX file, e.g. ``("Gretton et al.", "2012")``."""
    from pybtex.database import parse_file

    out = {}
    for key, entry in parse_file(str(bib_path)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not last:
            names = _latex_to_text(entry.fields.get("title", key))
        elif len(last) == 1:
            names = last[0]
        elif len(last) == 2:
            names = f"{last[0]} and {last[1]}"
        else:
            names = f"{last[0]} et al."
        out[key] = (names, entry.fields.get("year", "n.d."))
    return out


# ---------------------------------------------------------------------------- the rewriter
class Rewriter:
    """Rewrites the MyST Markdown of one book into plain Markdown (see the module docstring)."""

    def __init__(self, book_dir: Path, bib_path: Path):
        self.book_dir = book_dir
        self.cites = author_year(bib_path)
        self.book_url = repository.pages_url()
        # the built book keeps the source folders: book/NAME.md becomes book/NAME.html
        self.pages = f"{self.book_url}{book_dir.resolve().relative_to(ROOT).as_posix()}/"
        self.titles = {md.stem: chapter_title(md) for md in book_dir.glob("*.md")}
        self.exercises: dict[str, int] = {}  # label -> N in the chapter being rewritten
        self.n_exercise = 0

    def start_chapter(self, text: str) -> None:
        """Reset the exercise numbering for the chapter whose MyST source is ``text``."""
        self.exercises = exercise_labels(text)
        self.n_exercise = 0

    # roles ------------------------------------------------------------------------------
    def role(self, name: str, text: str, where: str) -> str:
        if name in ("cite", "cite:p", "cite:t", "cite:ps", "cite:ts"):
            links = []
            for key in (k.strip() for k in text.split(",")):
                if key not in self.cites:
                    raise ValueError(f"{where}: {{cite}}`{key}` is not in references.bib")
                names, year = self.cites[key]
                url = f"{self.pages}bibliography.html"
                links.append(f"[{names} ({year})]({url})" if name.startswith("cite:t")
                             else f"[{names}, {year}]({url})")
            return "; ".join(links) if name.startswith("cite:t") else "(" + "; ".join(links) + ")"
        if name == "doc":
            m = _EXPLICIT.match(text)
            label, target = (m.group("text"), m.group("target")) if m else (None, text)
            target = target.strip().removesuffix(".md").lstrip("./")
            if Path(target).name not in self.titles:
                raise ValueError(f"{where}: {{doc}}`{text}` names no chapter in {self.book_dir}")
            label = label or f"*{self.titles[Path(target).name]}*"
            return f"[{label}]({self.pages}{target}.html)"
        if name == "math":
            return f"${text}$"
        if name == "ref":
            m = _EXPLICIT.match(text)
            label, target = (m.group("text"), m.group("target")) if m else (None, text)
            if target not in self.exercises:
                raise ValueError(f"{where}: {{ref}}`{text}` names no exercise of this chapter; "
                                 "the reader notebooks resolve {ref} to exercises only")
            return label or f"Exercise {self.exercises[target]}"
        raise ValueError(f"{where}: the MyST role {{{name}}}`{text}` has no plain-Markdown form; "
                         "add one to scripts/make_notebooks.py or write plain Markdown")

    def inline(self, line: str, where: str) -> str:
        # roles are rewritten, code spans left alone (one left-to-right scan finds both)
        def one(m):
            if m.group("code"):
                return m.group(0)
            return self.role(m.group("name"), m.group("text"), where)

        return substitute(_INLINE.sub(one, line), where)

    # blocks -----------------------------------------------------------------------------
    def markdown(self, text: str, where: str) -> str:
        lines = text.split("\n")
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            plain = None if _OPEN.match(line) else _PLAIN_FENCE.match(line)
            if plain:  # an ordinary code block: copied verbatim up to its closing fence
                fence = plain.group("fence")
                j = i + 1
                while j < len(lines) and not (lines[j].startswith(fence[0] * len(fence))
                                              and lines[j].strip(fence[0]) == ""):
                    j += 1
                out.extend(substitute(x, where) for x in lines[i:j + 1])
                i = j + 1
                continue
            opened = _OPEN.match(line)
            if opened:
                fence, name, arg = opened.group("fence"), opened.group("name"), opened.group("arg")
                j = i + 1
                options: dict[str, str] = {}
                while j < len(lines) and _OPTION.match(lines[j]):
                    o = _OPTION.match(lines[j])
                    options[o.group("key")] = o.group("value")
                    j += 1
                body_start = j
                while j < len(lines) and lines[j].rstrip() != fence:
                    j += 1
                if j == len(lines):
                    raise ValueError(f"{where}: line {i + 1}: {{{name}}} opened with {fence} is never closed")
                body = "\n".join(lines[body_start:j]).strip("\n")
                out += ["", self.directive(name, arg, options, body, f"{where}: line {i + 1}"), ""]
                i = j + 1
                continue
            if _TARGET.match(line):
                i += 1
                continue
            if _EQ_LABEL.match(line):
                out.append(_EQ_LABEL.sub(r"\1", line))
                i += 1
                continue
            out.append(self.inline(line, where))
            i += 1
        text = "\n".join(out)
        if _GATED in text:  # a gated solution's text runs to the end of its markdown cell
            before, after = text.split(_GATED, 1)
            text = (f"{before}\n<details>\n<summary><strong>Solution</strong></summary>\n\n"
                    f"{after.strip()}\n\n</details>")
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")

    def directive(self, name: str, arg: str, options: dict, body: str, where: str) -> str:
        if name == "include":
            path = (self.book_dir / arg.strip()).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"{where}: {{include}} {arg}: no such file {path}")
            return self.markdown(path.read_text(encoding="utf-8"), str(path))
        if name == "math":
            return f"$$\n{body}\n$$"
        if name in EXERCISE_DIRECTIVES:
            return self.exercise_directive(name, arg, options, body, where)
        if name not in ADMONITIONS:
            raise ValueError(f"{where}: the MyST directive {{{name}}} has no plain-Markdown form; "
                             "add one to scripts/make_notebooks.py or write plain Markdown")
        title = self.inline(arg, where) if name == "admonition" else name.capitalize()
        classes = options.get("class", "").split()
        inner = self.markdown(body, where)
        if re.match(r"Exercise\b", title):
            if not re.match(r"Exercise \d+", title):
                raise ValueError(f"{where}: exercise {title!r} has no number; title it 'Exercise N: ...'")
            return f"### {title}\n\n{inner}"
        if "dropdown" in classes or name == "hint" or title.startswith("Solution"):
            return f"<details>\n<summary><strong>{title}</strong></summary>\n\n{inner}\n\n</details>"
        quoted = "\n".join(f"> {x}" if x else ">" for x in inner.split("\n"))
        return f"> **{title}**\n>\n{quoted}"


    def exercise_directive(self, name: str, arg: str, options: dict, body: str, where: str) -> str:
        if name == "exercise":
            self.n_exercise += 1
            label = options.get("label")
            if not label:
                raise ValueError(f"{where}: an {{exercise}} needs a :label: (e.g. ex-CHAPTER-N) "
                                 "so that its solution and {ref} can name it")
            if self.exercises.get(label) != self.n_exercise:
                raise ValueError(f"{where}: exercise {label!r} is not the chapter's exercise "
                                 f"{self.n_exercise}; is its :label: used twice?")
            title = self.inline(arg, where).strip()
            heading = f"### Exercise {self.n_exercise}" + (f": {title}" if title else "")
            return f"{heading}\n\n{self.markdown(body, where)}"
        target = arg.strip()
        if name in ("solution", "solution-start") and target not in self.exercises:
            raise ValueError(f"{where}: {{{name}}} {target} names no exercise of this chapter; "
                             "give it the :label: of its {exercise}")
        if name == "solution":
            return (f"<details>\n<summary><strong>Solution</strong></summary>\n\n"
                    f"{self.markdown(body, where)}\n\n</details>")
        if name == "solution-start":
            return _GATED
        return ""  # solution-end: the gated solution's code cells are already in place


def book_title() -> str:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["title"]


def chapter_title(md: Path) -> str:
    for line in md.read_text(encoding="utf-8").split("\n"):
        if line.startswith("# "):
            return line[2:].strip()
    return md.stem


def is_notebook_page(md: Path) -> bool:
    """A MyST page is a notebook when its front matter has a jupytext header or a kernelspec."""
    text = md.read_text(encoding="utf-8")
    if not text.startswith("---") or text.count("---") < 2:
        return False
    front = text.split("---", 2)[1]
    return "kernelspec:" in front or "jupytext:" in front


def chapters(book_dir: Path) -> list[Path]:
    return sorted(md for md in book_dir.glob("*.md") if is_notebook_page(md))


def reader_notebook(md: Path, rewriter: Rewriter) -> nbformat.NotebookNode:
    """The reader notebook of one chapter (no outputs)."""
    source = jupytext.read(md)
    rewriter.start_chapter(md.read_text(encoding="utf-8"))
    cells = []
    page = f"{rewriter.pages}{md.stem}.html"
    cells.append(nbformat.v4.new_markdown_cell(
        f"*This notebook is a chapter of the book [{book_title()}]"
        f"({repository.pages_url()}); [read this chapter as a web page]({page}).*"))
    for k, cell in enumerate(source.cells):
        where = f"{md.name}: cell {k}"
        text = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(rewriter.markdown(text, where)))
        elif cell.cell_type == "code":
            meta = {key: v for key, v in cell.metadata.items() if key in ("tags", "mystnb")}
            cells.append(nbformat.v4.new_code_cell(substitute(text, where), metadata=meta))
            caption = (cell.metadata.get("mystnb") or {}).get("figure", {}).get("caption")
            if caption:
                cells.append(nbformat.v4.new_markdown_cell(
                    "*Figure: " + rewriter.markdown(" ".join(caption.split()), where) + "*"))
        else:
            cells.append(nbformat.v4.new_raw_cell(text))
    for k, cell in enumerate(cells):
        cell["id"] = f"{md.stem[:40]}-{k}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": []},
    }
    return nb


def render(nb) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def generate(book_dir: Path, nb_dir: Path, bib_path: Path, check: bool) -> list[str]:
    rewriter = Rewriter(book_dir, bib_path)
    problems = []
    names = set()
    for md in chapters(book_dir):
        names.add(md.stem)
        target = nb_dir / f"{md.stem}.ipynb"
        text = render(reader_notebook(md, rewriter))
        if check:
            if not target.exists():
                problems.append(f"{target}: missing")
            elif target.read_text(encoding="utf-8") != text:
                problems.append(f"{target}: differs from what {md} generates")
        elif not target.exists() or target.read_text(encoding="utf-8") != text:
            nb_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
            print(f"make_notebooks: wrote {target}")
    for ipynb in sorted(nb_dir.glob("*.ipynb")):
        if ipynb.stem not in names:
            problems.append(f"{ipynb}: no chapter {book_dir / (ipynb.stem + '.md')} generates it")
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when stale")
    ap.add_argument("--book", type=Path, default=ROOT / "book")
    ap.add_argument("--out", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--bib", type=Path, default=ROOT / "references.bib")
    args = ap.parse_args(argv)
    try:
        problems = generate(args.book, args.out, args.bib, args.check)
    except (ValueError, FileNotFoundError) as exc:
        print(f"make_notebooks: {exc}", file=sys.stderr)
        return 1
    if problems:
        print(f"make_notebooks: {len(problems)} problem(s); run `make notebooks`:")
        for p in problems:
            print(f"  {p}")
        return 1
    n = len(chapters(args.book))
    print(f"make_notebooks: {n} reader notebook(s) in {args.out} {'up to date' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
