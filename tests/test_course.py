"""scripts/course.py and book/_ext/course_edition.py: assignments, grading, the two editions."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from scripts import course

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    assert course.assign(out, ["mmd"]) == ["mmd"]
    return out


def _cells(path):
    return nbformat.read(path, as_version=4).cells


# Chapters split into one lesson a page: the exercises moved with their lessons, so the three
# exercises are counted over the pages of the chapter they came from.
SPLIT = {"reproduce_tables": ("table1_forensics",),
         "beyond_the_paper": ("calibrated_test", "ownership_study"),
         "dataset_inference": ("di_head_to_head", "di_seed_study")}


def test_every_chapter_has_three_exercises_and_api_pages_none():
    pages = {md.stem: len(course.exercises(md)) for md in course.mk.chapters(BOOK)}
    for first, rest in SPLIT.items():
        for name in rest:
            pages[first] += pages.pop(name)
    for name, n in pages.items():
        assert n >= 3, f"{name} has {n} exercises"




def test_solution_full_marks_blank_zero(built):
    sol = course.grade_one(built / "mmd" / "autograder" / "mmd.ipynb", built, "mmd")
    blank = course.grade_one(built / "mmd" / "student" / "mmd.ipynb", built, "mmd")
    assert sol and all(got == most > 0 for got, most in sol.values())
    assert all(got == 0 for q, (got, _) in blank.items() if q not in course.BLANK_MAY_PASS)


def test_planted_wrong_answer_loses_its_marks(built, tmp_path):
    """The biased estimator where the unbiased one is asked."""
    nb = nbformat.read(built / "mmd" / "autograder" / "mmd.ipynb", as_version=4)
    planted = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "def unbiased_linear_mmd2" in cell.source:
            cell.source = cell.source.replace(
                "(np.sum(D.sum(0) ** 2) - np.sum(D**2)) / (n * (n - 1))", "np.sum(D.sum(0) ** 2) / n**2")
            planted += 1
    assert planted == 1
    path = tmp_path / "mmd_wrong.ipynb"
    nbformat.write(nb, path)
    got, most = course.grade_one(path, built, "mmd")["ex-mmd-4"]
    assert most > 0 and got == 0


def test_student_notebook_holds_no_solution_line(built):
    student = "\n".join(c.source for c in _cells(built / "mmd" / "student" / "mmd.ipynb"))
    lines = set().union(*(course.solution_lines(e) for e in course.autograded(BOOK / "mmd.md")))
    assert lines, "no solution lines found"
    leaked = [x for x in lines if x in student]
    assert leaked == []
    solution = "\n".join(c.source for c in _cells(built / "mmd" / "autograder" / "mmd.ipynb"))
    assert all(x in solution for x in lines)  # the comparison can fail: they are in the solution
    assert course.leaked_lines(built, "mmd") == []


def test_a_solution_line_in_a_student_notebook_is_reported(tmp_path, monkeypatch):
    # a placeholder that gives the body away (the whole solution) must be caught
    monkeypatch.setattr(course, "prompt", lambda code: code)
    assert course.assign(tmp_path / "out", ["mmd"]) == ["mmd"]
    monkeypatch.undo()
    leaked = course.leaked_lines(tmp_path / "out", "mmd")
    assert "return float((np.sum(D.sum(0) ** 2) - np.sum(D**2)) / (n * (n - 1)))" in leaked


def test_lines_the_exercise_text_gives_are_not_solution_lines():
    (e,) = course.autograded(BOOK / "dataset_inference.md")
    lines = course.solution_lines(e)
    assert "a = g.normal(0.3, 1, 40)" in e.text and "a = g.normal(0.3, 1, 40)" not in lines
    assert any("sqrt" in x or "**" in x for x in lines)  # the formula itself stays secret


def test_grade_command_writes_a_table(built, tmp_path):
    shutil.copy(built / "mmd" / "student" / "mmd.ipynb", tmp_path / "mmd_alice.ipynb")
    run = subprocess.run([sys.executable, "scripts/course.py", "grade", str(tmp_path), "--assignments", str(built)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    table = (tmp_path / "grades.csv").read_text()
    assert "mmd_alice.ipynb,mmd,0.0," in table


def test_grade_rejects_a_submission_of_no_assignment(built, tmp_path):
    (tmp_path / "essay.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="starts with no assignment"):
        course.grade(tmp_path, built)


def test_prompt_keeps_signatures_and_names_only():
    code = 'def f(x):\n    """Doc."""\n    return 2 * x\n\n\nfor k in range(3):\n    pass\ny = f(3)\n'
    assert course.prompt(code) == 'def f(x):\n    """Doc."""\n    ...\n\ny = ...'


def test_setup_has_the_chapters_imports_but_not_the_checks():
    setup = course.setup_code(BOOK / "reproduce_tables.md")
    assert "import numpy as np" in setup
    assert "binom" not in setup  # imported by a hidden check only


def test_prompt_names_every_target_of_a_tuple_assignment():
    assert course.prompt("a, b = 1, 2\nc = d = 3\n") == "a, b = ..., ...\n\nc = ...\n\nd = ..."


def test_a_printing_check_is_an_error(tmp_path):
    md = tmp_path / "x.md"
    md.write_text((BOOK / "mmd.md").read_text().replace(
        "# public check: the estimate", "print('x')\n# public check: the estimate"))
    with pytest.raises(ValueError, match="prints"):
        course.exercises(md)


# ------------------------------------------------------------------ the two editions
def _fixture_book(tmp_path, hide):
    """Two chapters built with the real _config.yml's exercise setup and edition setting."""
    real = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert real["sphinx"]["config"]["hide_solutions"] is False  # the published book: instructor
    assert "sphinx_exercise" in real["sphinx"]["extra_extensions"]
    assert real["sphinx"]["local_extensions"]["course_edition"] == "book/_ext"
    (tmp_path / "book" / "_ext").mkdir(parents=True)
    shutil.copy(BOOK / "_ext" / "course_edition.py", tmp_path / "book" / "_ext")
    config = {"title": "fixture", "only_build_toc_files": True, "execute": {"execute_notebooks": "off"},
              "sphinx": {"extra_extensions": ["sphinx_exercise"],
                         "local_extensions": {"course_edition": "book/_ext"},
                         "config": {"hide_solutions": False}}}
    text = course.edition_config(yaml.safe_dump(config), hide)
    (tmp_path / "_config.yml").write_text(text)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/a\nchapters:\n  - file: book/b\n")
    head = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n" \
           "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"
    for ch in "ab":
        (tmp_path / "book" / f"{ch}.md").write_text(
            f"{head}# Chapter {ch}\n\n````{{exercise}} First\n:label: ex-{ch}-1\n\nAsk {ch}.\n````\n\n"
            f"````{{solution}} ex-{ch}-1\n:class: dropdown\n\nSOLUTIONTEXT{ch}\n````\n\n"
            f"````{{exercise}} Second\n:label: ex-{ch}-2\n\nSee {{ref}}`ex-{ch}-1`.\n````\n\n"
            f"```{{solution-start}} ex-{ch}-2\n:class: dropdown\n```\n\nSOLUTIONGATED{ch}\n\n"
            f"```{{code-cell}} ipython3\ny = 'SOLUTIONCODE{ch}'\n```\n\n```{{solution-end}}\n```\n")
    jb = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {ch: (tmp_path / "_build" / "html" / "book" / f"{ch}.html").read_text() for ch in "ab"}


@pytest.mark.parametrize("hide", [False, True], ids=["instructor", "student"])
def test_editions(tmp_path, hide):
    pages = _fixture_book(tmp_path, hide)
    for ch, html in pages.items():
        # numbered per chapter: both chapters have Exercise 1 and 2, none has 3
        assert {"Exercise 1", "Exercise 2"} <= set(re.findall(r"Exercise \d+", html))
        assert "Exercise 3" not in html
        for secret in (f"SOLUTIONTEXT{ch}", f"SOLUTIONGATED{ch}", f"SOLUTIONCODE{ch}"):
            assert (secret in html) != hide, f"{secret} in the {'student' if hide else 'instructor'} edition"


def test_edition_config_needs_the_setting():
    with pytest.raises(ValueError, match="hide_solutions"):
        course.edition_config("title: x\n", True)


def test_colab_edition_fetches_public_checks_only_and_grades_like_the_other(built, tmp_path):
    import zipfile

    from pmi_tutorial import repository

    nb = nbformat.read(built / "mmd" / "colab" / "mmd.ipynb", as_version=4)
    first = nb.cells[0].source
    assert course.colab_url("mmd") in first and repository.requirement() in first
    assert 'if "google.colab" in sys.modules:' in first  # elsewhere (the grader) it does nothing
    assert course.colab_url("mmd") == repository.pages_url() + "assignments/mmd_tests.zip"
    with zipfile.ZipFile(built / "mmd" / "colab" / "mmd_tests.zip") as z:
        assert z.namelist() == ["tests/ex-mmd-4.py"]
        public = z.read("tests/ex-mmd-4.py").decode()
    assert "mmd2_unbiased(_X, _Y)" in public and "null_mean" not in public  # no hidden check
    # a Colab submission is graded with the same autograder: blank zero, solved full marks
    assert course.grade_one(built / "mmd" / "colab" / "mmd.ipynb", built, "mmd") == {"ex-mmd-4": (0.0, 2.0)}
    filled = 0
    for e in course.autograded(BOOK / "mmd.md"):
        for code in e.solution:
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.source.strip() == course.prompt(code).strip():
                    cell.source, filled = code, filled + 1
    assert filled == 1
    nbformat.write(nb, tmp_path / "mmd_colab.ipynb")
    assert course.grade_one(tmp_path / "mmd_colab.ipynb", built, "mmd") == {"ex-mmd-4": (2.0, 2.0)}
    # published beside the book, where the notebook fetches them
    files = course.publish(built, tmp_path / "html")
    assert sorted(f.name for f in files) == ["mmd.ipynb", "mmd_tests.zip"]
    assert (tmp_path / "html" / "assignments" / "mmd_tests.zip").read_bytes() == (
        built / "mmd" / "colab" / "mmd_tests.zip").read_bytes()


# chapter: (exercise, a line of its solution, the planted wrong line, the marks it keeps). A wrong
# answer keeps at most the public check's mark where that check is a sanity check (numbers in
# range, a clear shift found) that the planted error passes; the hidden check catches it.
PLANTED = {
    "membership_inference": ("ex-membership_inference-4",
                             "last_of_tie = np.r_[values[1:] != values[:-1], True]",
                             "last_of_tie = np.ones(len(values), bool)", 0.0),  # ties split
    "pmi_end_to_end": ("ex-pmi_end_to_end-4", "Z = (F - mean) / np.where(sd > 0, sd, 1.0)",
                       "Z = F", 1.0),  # no normalisation (Eq. 5-6)
    "reproduce_tables": ("ex-reproduce_tables-1", ".max(axis=1) / 100", "[:, 0] / 100", 1.0),  # one class
    "robustness": ("ex-robustness-1", "    model = copy.deepcopy(model)\n",
                   "    return attacks.prune(model, rate)\n", 0.0),  # global, not per layer
}


@pytest.fixture(scope="module")
def built_planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments_planted")
    assert course.assign(out, sorted(PLANTED)) == sorted(PLANTED)
    return out


@pytest.mark.parametrize("chapter", sorted(PLANTED))
def test_planted_wrong_answer_loses_its_marks_in_every_new_exercise(built_planted, chapter, tmp_path):
    label, right, wrong, kept = PLANTED[chapter]
    nb = nbformat.read(built_planted / chapter / "autograder" / f"{chapter}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and right in c.source]
    assert len(cells) == 1
    cells[0].source = cells[0].source.replace(right, wrong)
    path = tmp_path / f"{chapter}_wrong.ipynb"
    nbformat.write(nb, path)
    got, most = course.grade_one(path, built_planted, chapter)[label]
    assert most == 2.0 and got == kept
