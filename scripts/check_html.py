"""Check the built book: ``python scripts/check_html.py [_build/html]``.

Problems found, each listed; the exit status is 1 when there is any:

* a page named in ``_toc.yml`` was not built;
* a local ``href``/``src`` points at a file that does not exist, or at an ``#anchor`` that the
  target page does not have;
* an ``<img>`` file is missing or empty;
* a chapter whose source has math (``$...$``, ``$$...$$``, ``{math}``) has no math markup for
  MathJax (``<span class="math">\\(...\\)</span>`` / ``<div class="math">\\[...\\]</div>``), a
  page with math markup does not load MathJax, or a page loads MathJax from anywhere but the
  book's own ``_static/mathjax`` (``book/_ext/offline_mathjax.py``);
* the Colab launch button of a chapter does not point at its reader notebook ``notebooks/NAME.ipynb``
  (or that notebook is missing from the repository);
* a page of the toc lacks the header links derived from the repository setting
  (:mod:`pmi_tutorial.repository`): the repository button and the published book;
* equation numbers: "Eq. N" always means the paper's Eq. N, and the paper has 15 equations, so a
  page fails when it cites "Eq. N" for N outside 1-15, when a display carries a plain number
  outside 1-15, or when the paragraph that leads into a display cites "Eq. N" while the display
  is numbered with another plain number (the book's own displays are numbered B1, B2, ...;
  ``book/_ext/equation_numbers.py``).
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com/github/"
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, mailto:, data:, //cdn...


class Page(HTMLParser):
    """Collects links, images, ids, math elements and scripts of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (tag.attr, url)
        self.imgs: list[str] = []
        self.ids: set[str] = set()
        self.scripts: list[str] = []
        self.math: list[tuple[str, str]] = []  # (tag, text)
        self._math_stack: list[list] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None and tag in ("a", "link", "img", "script", "iframe", "source"):
                self.links.append((f"{tag}.{key}", a[key]))
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        classes = (a.get("class") or "").split()
        if tag in ("span", "div") and "math" in classes:
            self._math_stack.append([tag, ""])
        elif self._math_stack:  # a nested element inside math; "eqno": a labelled equation's number
            self._math_stack[-1].append("eqno" if "eqno" in classes else None)

    def handle_endtag(self, tag):
        if not self._math_stack:
            return
        top = self._math_stack[-1]
        if len(top) > 2:
            top.pop()
            return
        if tag == top[0]:
            self.math.append((top[0], top[1].strip()))
            self._math_stack.pop()

    def handle_data(self, data):
        if self._math_stack and "eqno" not in self._math_stack[-1][2:]:
            self._math_stack[-1][1] += data


PAPER_EQUATIONS = 15  # the paper numbers its equations (1)-(15)
_CITE = re.compile(r"\bEqs?\.\s*\(?(\d+)\)?(?:\s*(?:-|\u2013|and|to)\s*\(?(\d+)\)?)?")
_DISPLAY = re.compile(r'<div class="math[^"]*"[^>]*>(.*?)</div>', re.S)
_EQNO = re.compile(r'<span class="eqno">\(([^<]*)\)')
_MJ_TAG = re.compile(r"\\tag\*?\{([^{}]*)\}")
_PARA = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S)
_TAGS = re.compile(r"<[^>]+>")


def cited_equations(text: str) -> set[int]:
    """The paper's equation numbers that a text cites as "Eq. N", "Eqs. N-M", "Eq. (N)"."""
    out: set[int] = set()
    for a, b in _CITE.findall(text):
        lo, hi = int(a), int(b) if b else int(a)
        out.update(range(lo, hi + 1) if 0 < hi - lo < 20 else (lo, hi))
    return out


def _plain_numbers(number: str) -> set[int] | None:
    """{13} for "13", {10, 11} for "10-11"; None for a number of the book's own scheme ("B3")."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[-\u2013,]\s*(\d+))?\s*", number)
    if not m:
        return None
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    return set(range(lo, hi + 1))


def equation_problems(html: str) -> list[str]:
    """Equation-number problems of one page (see the module's docstring)."""
    import html as _html

    problems = []
    main = html.split("<main", 1)[-1].split("</main>", 1)[0] if "<main" in html else html
    text = _html.unescape(_TAGS.sub(" ", _DISPLAY.sub(" ", main)))
    for n in sorted(cited_equations(text)):
        if not 1 <= n <= PAPER_EQUATIONS:
            problems.append(f"cites Eq. {n}, but the paper's equations are Eq. 1-{PAPER_EQUATIONS}")
    for m in _DISPLAY.finditer(main):
        eqno = _EQNO.search(m.group(1)) or _MJ_TAG.search(m.group(1))
        if not eqno:
            continue
        number = _html.unescape(eqno.group(1))
        plain = _plain_numbers(number)
        if plain is None:
            continue  # the book's own scheme
        if not plain <= set(range(1, PAPER_EQUATIONS + 1)):
            problems.append(f"a display numbered ({number}): the paper's equations are (1)-({PAPER_EQUATIONS}); "
                            "number the book's own displays in its own scheme (leave them untagged)")
            continue
        before = main[:m.start()]
        end = before.rfind("</p>")
        if end < 0 or before[end + 4:].strip():
            continue  # no paragraph right before the display
        start = before.rfind("<p", 0, end)
        lead = _html.unescape(_TAGS.sub(" ", before[start:end]))
        cited = cited_equations(lead)
        if cited and not cited & plain:
            problems.append(f"the display numbered ({number}) follows a paragraph citing "
                            f"Eq. {', '.join(map(str, sorted(cited)))}: "
                            + " ".join(lead.split())[-90:])
    return problems


def mathjax_source_problems(scripts: list[str]) -> list[str]:
    """MathJax must come from the book's own ``_static/mathjax`` (offline readers, firewalls)."""
    return [f"loads MathJax from outside the book: {src[:80]}" for src in scripts
            if "mathjax" in src.lower() and (_EXTERNAL.match(src) or "_static/mathjax/" not in src)]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def toc_files(toc_path: Path) -> list[str]:
    """Every ``file`` in a jupyter-book ``_toc.yml`` (root first), without suffix."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    out = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb|rst)$", "", f) for f in out]


_CODE_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_MATH_SOURCE = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^\s$][^$\n]*?\$|\{math\}|```\{math\}", re.S)


def source_has_math(src: Path) -> bool:
    if not src.exists():
        return False
    text = src.read_text(encoding="utf-8")
    if "```{math}" in text or "{math}`" in text:
        return True
    text = _CODE_BLOCK.sub("", text)
    return bool(_MATH_SOURCE.search(text))


def is_notebook_source(src: Path) -> bool:
    if not src.exists():
        return False
    text = src.read_text(encoding="utf-8")
    front = text.split("---", 2)[1] if text.startswith("---") and text.count("---") >= 2 else ""
    return "kernelspec:" in front


def check(html_dir: Path, root: Path) -> list[str]:
    problems: list[str] = []
    pages = {p: parse(p) for p in sorted(html_dir.rglob("*.html")) if not {"_sources", "_static"} & set(p.relative_to(html_dir).parts)}

    # 1. every page of the toc was built
    toc = toc_files(root / "_toc.yml")
    for name in toc:
        if not (html_dir / f"{name}.html").exists():
            problems.append(f"{name}.html: in _toc.yml but not built")

    # 2. local links and 3. images
    for path, page in pages.items():
        rel = path.relative_to(html_dir)
        for kind, url in page.links:
            if not url or _EXTERNAL.match(url):
                continue
            parts = urlsplit(url)
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: broken {kind} {url!r}")
                continue
            if parts.fragment and target.suffix == ".html" and target in pages:
                if unquote(parts.fragment) not in pages[target].ids:
                    problems.append(f"{rel}: {kind} {url!r}: no id {parts.fragment!r} in {target.name}")
        for src in page.imgs:
            if not src:
                problems.append(f"{rel}: <img> without src")
                continue
            if _EXTERNAL.match(src):
                if not src.startswith("data:"):
                    problems.append(f"{rel}: <img> loads from outside the book: {src[:80]}")
                continue
            target = (path.parent / unquote(urlsplit(src).path)).resolve()
            if not target.is_file() or target.stat().st_size == 0:
                problems.append(f"{rel}: <img> file missing or empty: {src}")

    # 4. math
    for path, page in pages.items():
        rel = path.relative_to(html_dir)
        name = str(rel.with_suffix(""))
        if name in toc and source_has_math(root / f"{name}.md") and not page.math:
            problems.append(f"{rel}: the source has math but the page has no MathJax math markup")
        for tag, text in page.math:
            ok = (text.startswith("\\(") and text.endswith("\\)")) if tag == "span" else (
                (text.startswith("\\[") and text.endswith("\\]")) or text.startswith("\\begin"))
            if not ok:
                problems.append(f"{rel}: <{tag} class=math> not in MathJax delimiters: {text[:60]!r}")
                break
        if page.math and not any("mathjax" in s.lower() for s in page.scripts):
            problems.append(f"{rel}: has math but does not load MathJax")
        problems += [f"{rel}: {p}" for p in mathjax_source_problems(page.scripts)]

    # 5. Colab buttons
    for path, page in pages.items():
        rel = path.relative_to(html_dir)
        name = str(rel.with_suffix(""))
        colab = [url for _, url in page.links if url.startswith(COLAB)]
        expected_nb = f"notebooks/{Path(name).name}.ipynb"
        for url in colab:
            if not url.endswith("/" + expected_nb):
                problems.append(f"{rel}: Colab button points at {url}, expected .../{expected_nb}")
        if name in toc and is_notebook_source(root / f"{name}.md"):
            if not colab:
                problems.append(f"{rel}: chapter has no Colab launch button")
            if not (root / expected_nb).exists():
                problems.append(f"{rel}: the Colab button's notebook {expected_nb} is not in the repository")
    # 6. header links from the one repository setting
    sys.path.insert(0, str(ROOT))
    from pmi_tutorial import repository

    for path, page in pages.items():
        rel = path.relative_to(html_dir)
        if str(rel.with_suffix("")) not in toc:
            continue
        urls = {url for _, url in page.links}
        if repository.URL not in urls:
            problems.append(f"{rel}: no repository button linking {repository.URL}")
        if repository.pages_url() not in urls:
            problems.append(f"{rel}: no header link to the published book {repository.pages_url()}")
    # 7. equation numbers: "Eq. N" is the paper's Eq. N
    for path in pages:
        rel = path.relative_to(html_dir)
        if str(rel.with_suffix("")) in toc:
            problems += [f"{rel}: {p}" for p in equation_problems(path.read_text(encoding="utf-8"))]
    return problems


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0] if argv else ROOT / "_build" / "html").resolve()
    root = html_dir.parent.parent if (html_dir.parent.parent / "_toc.yml").exists() else ROOT
    if not (html_dir / "index.html").exists():
        print(f"check_html: {html_dir} holds no built book (index.html missing); run `make book`")
        return 1
    problems = list(dict.fromkeys(check(html_dir, root)))  # each problem once
    n_pages = len([p for p in html_dir.rglob("*.html") if not {"_sources", "_static"} & set(p.relative_to(html_dir).parts)])
    if problems:
        print(f"check_html: {len(problems)} problem(s) in {html_dir}:")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"check_html: {n_pages} pages OK (toc, links, images, math, Colab buttons, equation numbers)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
