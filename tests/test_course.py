"""scripts/course.py and book/_ext/course_edition.py: assignments, grading, the two editions."""

import csv
import json
import os
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
    assert course.assign(out, ["mmd"]) == ["mmd"]  # as make assignments builds: otter runs the checks
    return out


def _cells(path):
    return nbformat.read(path, as_version=4).cells


# Chapters split into one lesson a page: the exercises moved with their lessons, so the three
# exercises are counted over the pages of the chapter they came from.
SPLIT = {"reproduce_tables": ("table1_forensics",),
         "beyond_the_paper": ("calibrated_test", "ownership_study", "confirmatory_study"),
         "dataset_inference": ("di_head_to_head", "di_positive_control", "di_seed_study")}


def test_every_chapter_has_three_exercises_and_api_pages_none():
    pages = {md.stem: len(course.exercises(md)) for md in course.mk.chapters(BOOK)}
    for first, rest in SPLIT.items():
        for name in rest:
            pages[first] += pages.pop(name)
    for name, n in pages.items():
        assert n >= 3, f"{name} has {n} exercises"




def test_planted_wrong_answer_loses_its_marks(built, tmp_path):
    """The biased estimator where the unbiased one is asked: it keeps the memory part only."""
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
    got = course.grade_one(path, built, "mmd")
    assert {q: s for q, (s, _) in got.items()} == {"ex-mmd-4": 0.0, "ex-mmd-4:eq11": 0.0,
                                                   "ex-mmd-4:memory": 1.0, "ex-mmd-4:null_mean": 0.0}


def test_autograder_installs_the_pinned_release_and_cpu_torch(built):
    import zipfile

    with zipfile.ZipFile(course.autograder_zip(built, "mmd")) as z:
        env = z.read("environment.yml").decode()
    version = course.version()
    assert f"@v{version}" in env and course.pinned_requirement() in env
    assert "download.pytorch.org/whl/cpu" in env and "torch" in env
    # the release tag names the version in pyproject.toml, and nothing installs from a branch
    assert "@main" not in env
    nb = nbformat.read(built / "mmd" / "colab" / "mmd.ipynb", as_version=4)
    assert course.pinned_requirement() in nb.cells[0].source and "@main" not in nb.cells[0].source
    # otter's export cell is on in the student notebook
    student = "\n".join(c.source for c in _cells(built / "mmd" / "student" / "mmd.ipynb"))
    assert "grader.export(" in student and "STUDENT_mmd.ipynb" in student


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
    assert course.assign(tmp_path / "out", ["mmd"], run_tests=False) == ["mmd"]  # the student notebook is what counts
    monkeypatch.undo()
    leaked = course.leaked_lines(tmp_path / "out", "mmd")
    assert "return float((np.sum(D.sum(0) ** 2) - np.sum(D**2)) / (n * (n - 1)))" in leaked


def test_lines_the_exercise_text_gives_are_not_solution_lines():
    (e,) = course.autograded(BOOK / "dataset_inference.md")
    lines = course.solution_lines(e)
    assert "a = g.normal(0.3, 1, 40)" in e.text and "a = g.normal(0.3, 1, 40)" not in lines
    assert any("sqrt" in x or "**" in x for x in lines)  # the formula itself stays secret


def test_grade_command_runs_a_course_batch(built, tmp_path):
    """make grade: a roster, STUDENT_ASSIGNMENT names, a broken notebook and a stray file in the
    batch; feedback per submission, grades.csv and the gradebook across students. The solution
    (alice) gets full marks on every check, public and hidden, the untouched student notebook
    (bob) zero on every one."""
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(built / "mmd" / "autograder" / "mmd.ipynb", subs / "alice_mmd.ipynb")
    shutil.copy(built / "mmd" / "student" / "mmd.ipynb", subs / "bob_mmd.ipynb")
    (subs / "carol_mmd.ipynb").write_text("not a notebook")
    shutil.copy(built / "mmd" / "student" / "mmd.ipynb", subs / "essay.ipynb")
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name\nalice,A\nbob,B\ncarol,C\ndave,D\n")
    config = tmp_path / "course.yml"
    config.write_text("weights:\n  mmd: 2\n")
    run = subprocess.run(["make", "-s", f"VENV={Path(sys.executable).parent.parent}", "grade",
                          f"SUBMISSIONS={subs}", f"ROSTER={roster}", f"CONFIG={config}", f"ASSIGNMENTS={built}"],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert "essay.ipynb: not named STUDENT_ASSIGNMENT.ipynb" in run.stderr
    out = subs / "graded"
    with open(out / "gradebook.csv") as f:
        book = {r["student"]: r for r in csv.DictReader(f)}
    assert list(book) == ["alice", "bob", "carol", "dave"]
    col = "mmd (of 4, weight 2)"
    assert [book[s][col] for s in book] == ["4", "0", "0", "0"]
    assert book["alice"]["total %"] == "100.0" and book["dave"]["total %"] == "0.0"
    with open(out / "grades.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alice", "bob", "carol"} and "not a readable notebook" in rows["carol"]["problems"]
    fb = (out / "feedback" / "bob_mmd.md").read_text()
    assert "Score: **0 / 4**" in fb and "not answered yet" in fb and "(seed " in fb
    assert "failed: TypeError" in fb  # the public check's failure, not a bare AssertionError
    assert (out / "feedback" / "carol_mmd.md").exists()
    sol, blank = ({c["key"]: (c["score"], c["max"]) for c in json.loads(
        (out / "results" / f"{who}_mmd.json").read_text())["checks"]} for who in ("alice", "bob"))
    assert set(sol) == {"ex-mmd-4", "ex-mmd-4:eq11", "ex-mmd-4:memory", "ex-mmd-4:null_mean"}
    assert sol and all(got == most > 0 for got, most in sol.values())
    assert set(blank) == set(sol)
    assert all(got == 0 for q, (got, _) in blank.items() if q not in course.BLANK_MAY_PASS)


def test_grade_rejects_a_bad_roster_and_bad_weights(built, tmp_path):
    from scripts.coursework import workflow

    (tmp_path / "r.csv").write_text("id\nalice\n")
    with pytest.raises(ValueError, match="column `student`"):
        workflow.read_roster(tmp_path / "r.csv")
    (tmp_path / "c.yml").write_text("weights:\n  mdm: 1\n")
    with pytest.raises(ValueError, match="mdm, which is no assignment"):
        workflow.read_weights(tmp_path / "c.yml", ["mmd"])
    run = subprocess.run([sys.executable, "scripts/course.py", "grade", str(tmp_path), "--assignments", str(built),
                          "--roster", str(tmp_path / "missing.csv")], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "no such roster" in run.stderr


def test_submission_names():
    from scripts.coursework import workflow

    names = ["mmd", "pmi_end_to_end", "end_to_end"]
    assert workflow.parse_name(Path("alice_mmd.ipynb"), names) == ("alice", "mmd")
    assert workflow.parse_name(Path("s123_pmi_end_to_end.zip"), names) == ("s123", "pmi_end_to_end")
    for bad in ("mmd.ipynb", "mmd_alice.ipynb", "_mmd.ipynb"):
        with pytest.raises(ValueError, match="STUDENT_ASSIGNMENT"):
            workflow.parse_name(Path(bad), names)


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
    assert course.colab_url("mmd") in first and course.pinned_requirement() in first
    assert 'if "google.colab" in sys.modules:' in first  # elsewhere (the grader) it does nothing
    assert course.colab_url("mmd") == repository.pages_url() + "assignments/mmd_tests.zip"
    with zipfile.ZipFile(built / "mmd" / "colab" / "mmd_tests.zip") as z:
        assert z.namelist() == ["tests/ex-mmd-4.py"]
        public = z.read("tests/ex-mmd-4.py").decode()
    assert "mmd2_unbiased(_X, _Y)" in public and "null_mean" not in public  # no hidden check
    # a Colab submission is graded with the same autograder: blank zero, solved full marks
    blank = course.grade_one(built / "mmd" / "colab" / "mmd.ipynb", built, "mmd")
    assert len(blank) == 4 and all(got == 0 for got, _ in blank.values())
    filled = 0
    for e in course.autograded(BOOK / "mmd.md"):
        for code in e.solution:
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.source.strip() == course.prompt(code).strip():
                    cell.source, filled = code, filled + 1
    assert filled == 1
    nbformat.write(nb, tmp_path / "mmd_colab.ipynb")
    solved = course.grade_one(tmp_path / "mmd_colab.ipynb", built, "mmd")
    assert solved.keys() == blank.keys() and all(got == most for got, most in solved.values())
    # published beside the book, where the notebook fetches them
    files = course.publish(built, tmp_path / "html")
    assert sorted(f.name for f in files) == ["mmd.ipynb", "mmd_tests.zip"]
    assert (tmp_path / "html" / "assignments" / "mmd_tests.zip").read_bytes() == (
        built / "mmd" / "colab" / "mmd_tests.zip").read_bytes()


# chapter: (exercise, a line of its solution, the planted wrong line, the public points it keeps).
# A wrong answer keeps the public check's mark where that check is a sanity check the planted
# error passes; the hidden parts (tests/test_course_cheats.py) catch it. Graded here end to end,
# through otter and the hidden parts, as `make grade` grades.
PLANTED = {
    "membership_inference": ("ex-membership_inference-4",
                             "last_of_tie = np.r_[values[1:] != values[:-1], True]",
                             "last_of_tie = np.ones(len(values), bool)", 0.0, 1.0),  # ties split
    "reproduce_tables": ("ex-reproduce_tables-1", ".max(axis=1) / t", "[:, 0] / t", 1.0, 0.0),  # one class
}


@pytest.fixture(scope="module")
def built_planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments_planted")
    # two processes, in order; without otter's run of the solutions (make test's check-assignments
    # grades every solution: full marks)
    assert course.assign(out, sorted(PLANTED), jobs=2, run_tests=False) == sorted(PLANTED)
    return out


@pytest.mark.parametrize("chapter", sorted(PLANTED))
def test_planted_wrong_answer_loses_its_marks_in_every_new_exercise(built_planted, chapter, tmp_path):
    label, right, wrong, public, hidden = PLANTED[chapter]
    nb = nbformat.read(built_planted / chapter / "autograder" / f"{chapter}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and right in c.source]
    assert len(cells) == 1
    cells[0].source = cells[0].source.replace(right, wrong)
    path = tmp_path / f"{chapter}_wrong.ipynb"
    nbformat.write(nb, path)
    got = course.grade_one(path, built_planted, chapter)
    assert got[label] == (public, 1.0)
    assert sum(s for q, (s, _) in got.items() if q.startswith(label + ":")) == hidden
    assert sum(m for q, (_, m) in got.items() if q.startswith(label + ":")) == 3


# ------------------------------------------------------------------ no path to a solution
SECRETS = ("SOLUTIONTEXT", "SOLUTIONGATED", "SOLUTIONCODE", "SOLUTIONCHECK")


def _fixture_repo(root):
    """A two-chapter book like the real one: exercises, a {solution}, a gated solution with a
    code cell and a check, launch buttons to Colab and a repository."""
    (root / "book" / "_ext").mkdir(parents=True)
    shutil.copy(BOOK / "_ext" / "course_edition.py", root / "book" / "_ext")
    config = {"title": "fixture", "only_build_toc_files": True, "execute": {"execute_notebooks": "force"},
              "exclude_patterns": ["_build", "notebooks/*"],
              "launch_buttons": {"notebook_interface": "classic", "colab_url": "https://colab.research.google.com"},
              "repository": {"url": "https://github.com/owner/fixture", "branch": "main"},
              "html": {"use_repository_button": True},
              "sphinx": {"extra_extensions": ["sphinx_exercise"],
                         "local_extensions": {"course_edition": "book/_ext"},
                         "config": {"hide_solutions": False}}}
    (root / "_config.yml").write_text(yaml.safe_dump(config))
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/a\nchapters:\n  - file: book/b\n")
    (root / "references.bib").write_text("")
    head = "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n" \
           "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"
    for ch in "ab":
        (root / "book" / f"{ch}.md").write_text(
            f"{head}# Chapter {ch}\n\n```{{code-cell}} ipython3\nx = 1\n```\n\n"
            f"````{{exercise}} First\n:label: ex-{ch}-1\n\nAsk {ch}.\n````\n\n"
            f"````{{solution}} ex-{ch}-1\n:class: dropdown\n\nSOLUTIONTEXT{ch}\n\n```python\ny = 2\n```\n````\n\n"
            f"````{{exercise}} Second\n:label: ex-{ch}-2\n\nSee {{ref}}`ex-{ch}-1`.\n````\n\n"
            f"```{{solution-start}} ex-{ch}-2\n:class: dropdown\n```\n\nSOLUTIONGATED{ch}\n\n"
            f"```{{code-cell}} ipython3\ny = 'SOLUTIONCODE{ch}'\n```\n\n"
            f"```{{code-cell}} ipython3\n:tags: [check]\n\nassert y != 'SOLUTIONCHECK{ch}'\n```\n\n"
            f"```{{solution-end}}\n```\n\nAfter the exercises.\n")


def test_student_edition_leaves_no_path_to_a_solution(tmp_path):
    """Pages, _sources, downloads, the notebooks the launch buttons open: no solution anywhere,
    and every Colab button opens a solution-free notebook."""
    from scripts.coursework import edition

    repo = tmp_path / "repo"
    _fixture_repo(repo)
    html = course.student_book(tmp_path / "out", root=repo, strict=True)
    pages = sorted(html.rglob("*"))
    assert any(p.name == "a.html" for p in pages) and any("_sources" in p.parts for p in pages)
    for p in pages:
        if p.is_file() and p.suffix in (".html", ".md", ".ipynb", ".txt", ".js", ".json", ".py"):
            text = p.read_text(encoding="utf-8", errors="replace")
            assert not any(s in text for s in SECRETS), f"{p.relative_to(html)} holds a solution"
    assert "After the exercises." in (html / "book" / "a.html").read_text()  # what follows stays
    # the launch buttons: the notebooks on the student branch, which the workflow fills from
    # the student sources' notebooks/, themselves solution-free
    targets = edition.colab_targets(html)
    assert targets and all(f"/blob/{edition.STUDENT_BRANCH}/notebooks/" in t for t in targets)
    for t in targets:
        nb = tmp_path / "out" / "src" / "notebooks" / t.rsplit("/", 1)[1]
        assert nb.exists(), t
        assert not any(s in nb.read_text() for s in SECRETS)
        assert "Ask" in nb.read_text()  # the exercises are there
    # the same sources built as the instructor edition do show the solutions (the search can fail)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(repo), "-n", "--keep-going"], check=True, capture_output=True)
    instructor = (repo / "_build" / "html" / "book" / "a.html").read_text()
    assert all(f"{s}a" in instructor for s in ("SOLUTIONTEXT", "SOLUTIONGATED", "SOLUTIONCODE"))


def test_the_real_chapters_student_sources_hold_no_solution_line(tmp_path):
    """Every chapter's student source and notebook lack every line of every gated solution
    and of every check (the sources the student edition is built from)."""
    from scripts.coursework import edition

    src = edition.student_sources(tmp_path / "src")
    checked = 0
    for md in course.mk.chapters(BOOK):
        lines = set()
        for e in course.exercises(md):
            for code in e.solution + [c for c, _ in e.checks] + ([e.parts] if e.parts else []):
                lines |= {x.strip() for x in code.split("\n") if len(x.strip()) > 12
                          and not x.strip().startswith(("import ", "from ", "#")) and x.strip() not in e.text}
        student_md = (src / "book" / md.name).read_text()
        student_nb = (src / "notebooks" / f"{md.stem}.ipynb").read_text()
        instructor_nb = (ROOT / "notebooks" / f"{md.stem}.ipynb").read_text()
        for x in lines:
            if md.read_text().count(x) == 1:  # a line only the solution has
                assert x not in student_md, f"{md.stem}: {x!r}"
                assert json.dumps(x)[1:-1] not in student_nb, f"{md.stem} notebook: {x!r}"
                checked += 1
        assert "{exercise}" in student_md or not course.exercises(md)
        assert "{solution" not in student_md, md.stem  # no solution directive left
        if "{solution" in md.read_text():  # a chapter with solutions loses them
            assert len(instructor_nb) > len(student_nb), md.stem
        else:  # a page without exercises is the same for both
            assert instructor_nb == student_nb, md.stem
    assert checked > 100


def test_colab_assignments_hold_no_solution_line(built):
    import zipfile

    lines = set().union(*(course.solution_lines(e) for e in course.autograded(BOOK / "mmd.md")))
    parts = course.autograded(BOOK / "mmd.md")[0].parts
    for f in (built / "mmd" / "colab" / "mmd.ipynb", built / "mmd" / "student" / "mmd.ipynb"):
        text = "\n".join(c.source for c in _cells(f))
        assert not [x for x in lines if x in text], f
        assert "part_eq11" not in text and "_eq11" not in text  # nor the hidden parts
    with zipfile.ZipFile(built / "mmd" / "colab" / "mmd_tests.zip") as z:
        text = "\n".join(z.read(n).decode() for n in z.namelist())
    assert not [x for x in lines if x in text] and "part_" not in text
    assert "part_eq11" in parts  # the comparison can fail: the parts exist


def _pid_and_square(x):
    return os.getpid(), x * x


def test_parallel_keeps_the_order_in_processes_of_their_own():
    got = course._parallel(_pid_and_square, [3, 1, 2, 5], jobs=2)
    assert [sq for _, sq in got] == [9, 1, 4, 25]
    assert os.getpid() not in {pid for pid, _ in got}
    assert course._parallel(_pid_and_square, [4], jobs=2) == [(os.getpid(), 16)]  # one item: here


def test_jobs_must_be_positive(capsys):
    assert course.main(["check", "--jobs", "0", "--out", "unused"]) == 2
    assert "--jobs must be a positive integer, got 0" in capsys.readouterr().err


def test_check_builds_without_otters_run_of_the_checks_and_assign_with_it(monkeypatch, tmp_path):
    """``check`` grades the solution with every check (and the hidden parts) right after the
    build, so it skips ``otter assign``'s own run of the checks; ``assign`` keeps it."""
    commands = []
    monkeypatch.setattr(course.subprocess, "run",
                        lambda cmd, **kw: commands.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    course._otter_assign(tmp_path / "a.ipynb", tmp_path / "a")
    course._otter_assign(tmp_path / "b.ipynb", tmp_path / "b", run_tests=False)
    assert [("--no-run-tests" in c, c[-2:]) for c in commands] == [
        (False, [str(tmp_path / "a.ipynb"), str(tmp_path / "a")]),
        (True, [str(tmp_path / "b.ipynb"), str(tmp_path / "b")])]

    builds = []

    def build(md, out, book, run_tests=True):
        builds.append(run_tests)
        raise RuntimeError("built")
    monkeypatch.setattr(course, "_build", build)
    with pytest.raises(RuntimeError, match="built"):
        course.check_one(BOOK / "mmd.md", tmp_path)
    assert builds == [False]
