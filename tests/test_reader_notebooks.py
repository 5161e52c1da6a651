"""The reader notebooks (notebooks/*.ipynb) read well in plain Jupyter and Colab.

They are generated from book/*.md by scripts/make_notebooks.py; these tests check both the
generator on small inputs and every committed notebook.
"""

import re
from pathlib import Path

import nbformat
import pytest

from pmi_tutorial import repository
from scripts import make_notebooks as mk

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CHAPTERS = mk.chapters(BOOK)
MYST_ONLY = (":::", "{cite}", "{cite:", "{doc}", "{ref}", ":class:", "{include}", "{admonition}",
             "{hint}", "{{")


@pytest.fixture(scope="module")
def rewriter():
    return mk.Rewriter(BOOK, ROOT / "references.bib")


def _read(name):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


def _markdown(nb):
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def test_every_chapter_has_its_notebook_and_they_are_up_to_date(tmp_path):
    assert len(CHAPTERS) >= 8
    problems = mk.generate(BOOK, ROOT / "notebooks", ROOT / "references.bib", check=True)
    assert problems == [], "run `make notebooks`: " + "; ".join(problems)


def test_check_mode_notices_a_stale_notebook(tmp_path):
    assert mk.generate(BOOK, tmp_path, ROOT / "references.bib", check=False) == []
    stale = tmp_path / "mmd.ipynb"
    stale.write_text(stale.read_text().replace("Maximum mean discrepancy", "MMD"))
    (tmp_path / "orphan.ipynb").write_text("{}")
    problems = mk.generate(BOOK, tmp_path, ROOT / "references.bib", check=True)
    assert any("mmd.ipynb: differs" in p for p in problems)
    assert any("orphan.ipynb: no chapter" in p for p in problems)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_myst_only_syntax_in_markdown_cells(md):
    for k, text in enumerate(_markdown(_read(md.stem))):
        for token in MYST_ONLY:
            assert token not in text, f"{md.stem}.ipynb markdown cell {k} contains {token!r}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_exercises_are_numbered_headings_and_solutions_are_folded(md):
    source = md.read_text(encoding="utf-8")
    n_exercises = len(re.findall(r"^[:`]{3,}\{exercise\}", source, re.M))
    n_solutions = len(re.findall(r"^[:`]{3,}\{solution(-start)?\}", source, re.M))
    assert "{admonition} Exercise" not in source, "exercises are {exercise} directives now"
    text = "\n".join(_markdown(_read(md.stem)))
    headings = re.findall(r"^### Exercise (\d+):", text, re.M)
    assert [int(h) for h in headings] == list(range(1, n_exercises + 1))
    folded = re.findall(r"<details>\n<summary><strong>Solution</strong></summary>\n(.*?)</details>", text, re.S)
    assert len(folded) == n_solutions
    outside = re.sub(r"<details>.*?</details>", "", text, flags=re.S)
    assert "**Solution**" not in outside and "<strong>Solution" not in outside


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_citations_are_author_year_links_to_the_bibliography(md):
    keys = [k.strip() for group in re.findall(r"\{cite[:a-z]*\}`([^`]*)`", md.read_text(encoding="utf-8"))
            for k in group.split(",")]
    text = "\n".join(_markdown(_read(md.stem)))
    links = re.findall(r"\[([^\]]+), (\d{4})\]\(" + re.escape(repository.pages_url()) + r"book/bibliography\.html\)", text)
    assert len(links) == len(keys)


@pytest.mark.parametrize("md", [m for m in CHAPTERS if "{include} _admonitions/gpu.md" in m.read_text()],
                         ids=lambda p: p.stem)
def test_included_admonition_is_inlined(md):
    text = "\n".join(_markdown(_read(md.stem)))
    assert "> **The `paper` profile needs a GPU**" in text
    assert "Change runtime type" in text


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_code_cells_are_the_chapters_code_with_the_install_cell_filled_in(md):
    import jupytext

    expected = [repository.substitute(c.source) for c in jupytext.read(md).cells if c.cell_type == "code"]
    actual = [c.source for c in _read(md.stem).cells if c.cell_type == "code"]
    assert actual == expected
    assert f'%pip install -q --no-deps "{repository.requirement()}"' in actual[0]


# ------------------------------------------------------------------ the rewriter on small inputs
def test_rewriter_admonitions(rewriter):
    src = ("````{admonition} Exercise 2: try it\n:class: tip\n\nDo $x$.\n:::{hint}\nLook.\n:::\n````\n\n"
           ":::{admonition} Solution\n:class: dropdown\n\nDone.\n:::\n\n:::{note}\nA note.\n:::")
    out = rewriter.markdown(src, "t")
    assert out.startswith("### Exercise 2: try it\n\nDo $x$.")
    assert "<details>\n<summary><strong>Hint</strong></summary>\n\nLook.\n\n</details>" in out
    assert "<details>\n<summary><strong>Solution</strong></summary>\n\nDone.\n\n</details>" in out
    assert "> **Note**\n>\n> A note." in out


def test_rewriter_exercises_and_solutions(rewriter):
    src = ("````{exercise} Try it\n:label: ex-t-a\n\nDo $x$.\n````\n\n"
           "````{solution} ex-t-a\n:class: dropdown\n\nDone.\n````\n\n"
           "````{exercise}\n:label: ex-t-b\n\nAgain, as in {ref}`ex-t-a`.\n````\n\n"
           "```{solution-start} ex-t-b\n:class: dropdown\n```\n\nThe code below.")
    rewriter.start_chapter(src)
    out = rewriter.markdown(src, "t")
    assert out.startswith("### Exercise 1: Try it\n\nDo $x$.")
    assert "<details>\n<summary><strong>Solution</strong></summary>\n\nDone.\n\n</details>" in out
    assert "### Exercise 2\n\nAgain, as in Exercise 1." in out
    assert out.endswith("<details>\n<summary><strong>Solution</strong></summary>\n\nThe code below.\n\n</details>")
    assert rewriter.markdown("```{solution-end}\n```", "t") == ""


@pytest.mark.parametrize("src, match", [
    ("````{exercise} No label\n````", "needs a :label:"),
    ("````{solution} ex-nowhere\n````", "names no exercise"),
    ("{ref}`ex-nowhere`", "names no exercise"),
])
def test_exercise_mistakes_are_errors(rewriter, src, match):
    rewriter.start_chapter(src)
    with pytest.raises(ValueError, match=match):
        rewriter.markdown(src, "t")


def test_rewriter_roles_and_code_spans(rewriter):
    out = rewriter.markdown("See {doc}`mmd`, {doc}`the clustering <clustering>` and "
                            "{cite}`wu2022pmi,gretton2012kernel`; `{cite}` stays code.", "t")
    book = repository.pages_url() + "book/"
    assert f"[*Maximum mean discrepancy*]({book}mmd.html)" in out
    assert f"[the clustering]({book}clustering.html)" in out
    assert f"([Wu, 2022]({book}bibliography.html); [Gretton et al., 2012]({book}bibliography.html))" in out
    assert "`{cite}` stays code" in out


def test_equation_labels_and_targets_are_dropped(rewriter):
    out = rewriter.markdown("(sec-x)=\n## X\n\n$$\na = b\n$$ (eq-ab)\n", "t")
    assert out == "## X\n\n$$\na = b\n$$"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_no_equation_label_left(md):
    for text in _markdown(_read(md.stem)):
        assert not re.search(r"\$\$\s*\([\w:.-]+\)", text)


def test_plain_code_blocks_are_copied_verbatim(rewriter):
    src = "```python\n:::{note}\n{cite}`x`\n```"
    assert rewriter.markdown(src, "t") == src


@pytest.mark.parametrize("src, match", [
    (":::{figure} a.png\n:::", "directive"),
    ("{eq}`e1`", "role"),
    ("{cite}`nobody2000`", "references.bib"),
    ("{doc}`nochapter`", "no chapter"),
    (":::{admonition} Exercise: unnumbered\n:::", "no number"),
    (":::{note}\nnever closed", "never closed"),
])
def test_unknown_myst_is_an_error(rewriter, src, match):
    with pytest.raises(ValueError, match=match):
        rewriter.markdown(src, "t")


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_links_into_the_book_name_built_pages(md):
    """Every link to the published book names a page of _toc.yml (book/NAME.html)."""
    from scripts.check_html import toc_files

    pages = set(toc_files(ROOT / "_toc.yml"))
    text = "\n".join(_markdown(_read(md.stem)))
    urls = re.findall(re.escape(repository.pages_url()) + r"([^)\s#]*)", text)
    assert urls, "no link to the book"
    for url in urls:
        if url:  # the book's front page is ""
            assert url.endswith(".html") and url[:-5] in pages, f"{url} is not a page of the book"
