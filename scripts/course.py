"""The course edition: autograded assignments built from the chapters, and their grading.

``python scripts/course.py assign`` (``make assignments``) builds, for every chapter with an
autograded exercise, an otter-grader assignment under ``_build/assignments``:

* ``src/NAME.ipynb``: the otter-format master notebook, generated from ``book/NAME.md`` (the
  chapter is the one source of truth: exercise text, solution code and checks);
* ``NAME/student/NAME.ipynb``: the student notebook, solution code replaced by placeholders,
  with the public checks (``grader.check``) a student can run;
* ``NAME/autograder/NAME.ipynb`` and ``NAME/autograder/*.zip``: the instructor's solution
  notebook and the autograder (public and hidden checks).

An exercise is autograded when its gated solution (``{solution-start}`` ... ``{solution-end}``)
holds code cells tagged ``check`` (public) or ``check-hidden`` (hidden). Its other code cells
are the solution; the student sees each ``def`` with its docstring and ``...`` as the body, and
each top-level assignment ``name = ...``. A ``check-hidden`` cell that defines
``part_NAME(student, g)`` functions declares graded hidden parts, run on the submission's
behaviour by :mod:`scripts.coursework.behaviour` (never by otter, in the student's process);
any other check is an otter test. Checks test results (numbers with tolerances, properties),
never the text of a solution, and print nothing. The assignment's setup is the chapter's
import statements.

``python scripts/course.py grade DIR --roster R.csv`` (``make grade SUBMISSIONS=DIR
ROSTER=R.csv``) grades every ``STUDENT_ASSIGNMENT.ipynb`` in DIR (:mod:`scripts.coursework.workflow`):
feedback per submission, ``grades.csv`` and a weighted ``gradebook.csv`` in ``DIR/graded``.
``student-book`` builds the student edition (:mod:`scripts.coursework.edition`).
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts import make_notebooks as mk  # noqa: E402
from scripts.coursework import behaviour, edition, workflow  # noqa: E402

CHECK_TAGS = {"check": False, "check-hidden": True}  # tag -> hidden
_START = re.compile(r"^[`:]{3,}\{solution-start\}\s*(?P<label>\S+)", re.M)
_END = re.compile(r"^[`:]{3,}\{solution-end\}", re.M)
_EXERCISE = re.compile(r"^(?P<fence>[`:]{3,})\{exercise\}[ \t]*(?P<title>[^\n]*)\n:label:[ \t]*(?P<label>\S+)\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)


@dataclass
class Exercise:
    label: str
    number: int
    title: str
    text: str  # MyST
    solution: list[str] = field(default_factory=list)  # code cells
    checks: list[tuple[str, bool]] = field(default_factory=list)  # (code, hidden): run by otter
    parts: str | None = None  # a check-hidden cell of graded parts (coursework.behaviour)


def exercises(md: Path) -> list[Exercise]:
    """Every exercise of a chapter, with the code cells and checks of its gated solution."""
    text = md.read_text(encoding="utf-8")
    found = [Exercise(m.group("label"), k + 1, m.group("title").strip(), m.group("body").strip())
             for k, m in enumerate(_EXERCISE.finditer(text))]
    by_label = {e.label: e for e in found}
    current = None
    for cell in jupytext.read(md).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.split("\n"):
                if (m := _START.match(line)):
                    if m.group("label") not in by_label:
                        raise ValueError(f"{md}: {{solution-start}} {m.group('label')} names no exercise")
                    current = by_label[m.group("label")]
                elif _END.match(line):
                    current = None
            continue
        if cell.cell_type != "code" or current is None:
            continue
        tags = set(cell.metadata.get("tags", []))
        check = tags & set(CHECK_TAGS)
        if check:
            if re.search(r"\bprint\(", cell.source):
                raise ValueError(f"{md}: a check of {current.label} prints; checks must only assert "
                                 "(otter compares printed output as text)")
            hidden = CHECK_TAGS[check.pop()]
            if hidden and behaviour.is_parts_cell(cell.source):
                if current.parts is not None:
                    raise ValueError(f"{md}: {current.label} has two check-hidden cells of parts; "
                                     "put every part_NAME(student, g) in one cell")
                current.parts = cell.source
            else:
                current.checks.append((cell.source, hidden))
        else:
            current.solution.append(cell.source)
    return found


def autograded(md: Path) -> list[Exercise]:
    return [e for e in exercises(md) if e.checks or e.parts]


def parts_spec(md: Path, e: Exercise) -> behaviour.Spec | None:
    """The graded hidden parts of exercise ``e`` (None if it has none)."""
    return behaviour.spec(e.parts, setup_code(md), f"{md.stem}: {e.label}") if e.parts else None


def prompt(code: str) -> str:
    """The student's placeholder for a solution cell: signatures and names, bodies ``...``."""
    tree = ast.parse(code)
    lines = code.split("\n")
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            head = "\n".join(lines[node.lineno - 1:node.body[0].lineno - 1])
            if (doc := ast.get_docstring(node)) is not None:
                first = node.body[0]
                head = "\n".join(lines[node.lineno - 1:first.end_lineno])
            out.append(f"{head}\n    ...")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.append(f"{target.id} = ...")
                elif isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
                    out.append(", ".join(e.id for e in target.elts) + " = " + ", ".join("..." for _ in target.elts))
    return "\n\n".join(out)


def solution_lines(e: Exercise) -> set[str]:
    """The solution's own lines (stripped), less those of its placeholder and those the
    exercise's text gives (``set t to its answer for `a = g.normal(0.3, 1, 40)```): what no
    student notebook may contain."""
    keep = set()
    for code in e.solution:
        shown = {x.strip() for x in prompt(code).split("\n")}
        shown |= {ast.unparse(n) for n in ast.parse(code).body if isinstance(n, (ast.Import, ast.ImportFrom))}
        for line in code.split("\n"):
            s = line.strip()
            if s and not s.startswith("#") and s not in shown and len(s) > 3 and s not in e.text:
                keep.add(s)
    return keep


def setup_code(md: Path) -> str:
    """The chapter's import statements, in order, once each; not those of its checks (a
    check imports what it needs itself, and its imports would hint at the hidden checks)."""
    seen, out = set(), []
    for cell in jupytext.read(md).cells:
        if cell.cell_type != "code" or set(cell.metadata.get("tags", [])) & set(CHECK_TAGS):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # the install cell's %pip
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                line = ast.unparse(node)
                if line not in seen:
                    seen.add(line)
                    out.append(line)
    return "\n".join(out)


def version() -> str:
    """The package's version, from ``pyproject.toml``."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def pinned_requirement() -> str:
    """The pip requirement of the package's release ``vVERSION`` (its git tag), not a branch."""
    from pmi_tutorial import repository

    return repository.requirement(branch=f"v{version()}")


def autograder_requirements() -> str:
    """The autograder's ``requirements.txt``: CPU torch and the package at its pinned release."""
    return ("--extra-index-url https://download.pytorch.org/whl/cpu\n"
            "torch\n"
            f"{pinned_requirement()}\n")


def master_notebook(md: Path, rewriter: mk.Rewriter, colab: bool = False,
                    requirements: Path | None = None) -> nbformat.NotebookNode:
    """The otter-format master notebook of one chapter's autograded exercises; ``colab``: for
    the Colab edition (otter's Colab mode: the public checks as files in ``tests/``)."""
    name = md.stem
    found = autograded(md)
    if not found:
        raise ValueError(f"{md}: no autograded exercise (a gated solution with a code cell "
                         "tagged check or check-hidden)")
    rewriter.start_chapter(md.read_text(encoding="utf-8"))
    config = {"name": name, "init_cell": True, "check_all_cell": False,
              "export_cell": {"pdf": False, "run_tests": True, "instructions":
                              f"Save the notebook, then rename the file to `STUDENT_{name}.ipynb` "
                              "(STUDENT: your student id) and hand it in; the zip this cell makes "
                              "holds the same notebook."},
              # the Colab edition's checks are the same cells: otter runs them against the
              # solution once, when it builds the main edition
              "run_tests": not colab, "solutions_pdf": False, "template_pdf": False,
              "generate": {"pdf": False}, "tests": {"files": colab}}
    if requirements is not None:
        config["requirements"] = str(requirements)
        config["overwrite_requirements"] = False
    if colab:
        config["runs_on"] = "colab"
    import yaml

    cells = [nbformat.v4.new_raw_cell("# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False)),
             nbformat.v4.new_markdown_cell(
                 f"# Assignment: {mk.chapter_title(md)}\n\nThe autograded exercises of the chapter "
                 f"[*{mk.chapter_title(md)}*]({rewriter.pages}{name}.html). Replace each `...` with "
                 "your code and run `grader.check` to run the public checks; more checks are run "
                 "when it is graded."),
             nbformat.v4.new_code_cell(setup_code(md))]
    for e in found:
        head = f"Exercise {e.number}" + (f": {rewriter.inline(e.title, name)}" if e.title else "")
        cells.append(nbformat.v4.new_raw_cell(
            f"# BEGIN QUESTION\nname: {e.label}\npoints: {len(e.checks)}"))
        if (sp := parts_spec(md, e)) is not None:
            e.text += ("\n\nWhen it is graded, more checks call your code on new inputs "
                       f"({len(sp.parts)} point(s): " + "; ".join(p.description for p in sp.parts) + ")"
                       + (f"; code that uses {', '.join(f'`{f}`' for f in sp.forbidden)} gets none of them."
                          if sp.forbidden else "."))
        cells.append(nbformat.v4.new_markdown_cell(f"## {head}\n\n{rewriter.markdown(e.text, name)}"))
        cells.append(nbformat.v4.new_raw_cell("# BEGIN SOLUTION"))
        for code in e.solution:
            cells.append(nbformat.v4.new_code_cell(
                f"''' # BEGIN PROMPT\n{prompt(code)}\n''' # END PROMPT\n"
                f"# BEGIN SOLUTION NO PROMPT\n{code}\n# END SOLUTION"))
        cells.append(nbformat.v4.new_raw_cell("# END SOLUTION"))
        cells.append(nbformat.v4.new_raw_cell("# BEGIN TESTS"))
        for code, hidden in e.checks:
            cfg = f'""" # BEGIN TEST CONFIG\nhidden: {str(hidden).lower()}\n""" # END TEST CONFIG\n'
            cells.append(nbformat.v4.new_code_cell(cfg + code))
        cells.append(nbformat.v4.new_raw_cell("# END TESTS"))
        cells.append(nbformat.v4.new_raw_cell("# END QUESTION"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    return nb


def colab_url(name: str) -> str:
    """Where the published book serves the public checks of assignment ``name`` (a zip)."""
    from pmi_tutorial import repository

    return f"{repository.pages_url()}assignments/{name}_tests.zip"


def colab_setup_cell(name: str) -> nbformat.NotebookNode:
    """The Colab edition's first cell: on Colab, install the package and fetch the public
    checks from the published book; anywhere else (Jupyter, the grader) it does nothing."""
    return nbformat.v4.new_code_cell(
        "# On Colab: install the companion package and fetch this assignment's public checks\n"
        "import os\nimport sys\n\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q --no-deps "{pinned_requirement()}"\n'
        '    if not os.path.isdir("tests"):\n'
        "        import io\n        import urllib.request\n        import zipfile\n\n"
        f'        _url = "{colab_url(name)}"\n'
        "        zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(_url).read())).extractall()")


def _colab_edition(md: Path, rewriter: mk.Rewriter, out: Path) -> None:
    """``out/NAME/colab/NAME.ipynb`` (the student notebook for Colab) and
    ``out/NAME/colab/NAME_tests.zip`` (its public checks, ``tests/LABEL.py``)."""
    import tempfile
    import zipfile

    name = md.stem
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{name}.ipynb"
        nbformat.write(master_notebook(md, rewriter, colab=True), src)
        _otter_assign(src, Path(tmp) / "dist")
        student = Path(tmp) / "dist" / "student"
        nb = nbformat.read(student / f"{name}.ipynb", as_version=4)
        nb.cells.insert(0, colab_setup_cell(name))
        dest = out / name / "colab"
        dest.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / f"{name}.ipynb")
        with zipfile.ZipFile(dest / f"{name}_tests.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted((student / "tests").glob("*.py")):
                z.write(f, f"tests/{f.name}")


def publish(assignments: Path, html: Path) -> list[Path]:
    """Copy every Colab student notebook and its public checks into the built book
    (``html/assignments/``), where the Colab notebooks fetch them; returns the files."""
    import shutil

    names = sorted(p.parent.parent.name for p in assignments.glob("*/colab/*_tests.zip"))
    if not names:
        raise FileNotFoundError(f"no Colab assignment in {assignments}; run `make assignments`")
    dest = html / "assignments"
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        for f in (f"{name}.ipynb", f"{name}_tests.zip"):
            shutil.copy(assignments / name / "colab" / f, dest / f)
            copied.append(dest / f)
    return copied


def _otter_assign(src: Path, dist: Path, run_tests: bool = True) -> None:
    """``otter assign src dist`` (the package importable), or a RuntimeError with its output;
    ``run_tests=False``: without otter's run of the checks against the solution notebook."""
    cmd = [_otter(), "assign", *([] if run_tests else ["--no-run-tests"]), str(src), str(dist)]
    run = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise RuntimeError(f"otter assign {src} failed:\n{run.stdout}\n{run.stderr}")


def _otter() -> str:
    exe = Path(sys.executable).with_name("otter")
    return str(exe) if exe.exists() else "otter"


def jobs_default() -> int:
    """Assignments built and graded at once: one per CPU core, at least two (most of a build is
    waiting for a kernel to start and for otter's subprocesses)."""
    return max(2, os.cpu_count() or 1)


def _build(md: Path, out: Path, book: Path, run_tests: bool = True) -> str:
    """Build the assignment of one chapter into ``out/NAME`` (main and Colab editions);
    ``run_tests``: otter runs the checks against the solution notebook as it builds (``check``
    skips that run: it grades the solution with the same checks, and the hidden parts, next)."""
    rewriter = mk.Rewriter(book, ROOT / "references.bib")  # one per chapter: it keeps state
    src = out / "src" / f"{md.stem}.ipynb"
    nbformat.write(master_notebook(md, rewriter, requirements=out / "src" / "requirements.txt"), src)
    dist = out / md.stem
    subprocess.run(["rm", "-rf", str(dist)], check=True)
    _otter_assign(src, dist, run_tests)
    _write_parts(md, dist / "autograder" / PARTS_FILE)
    _colab_edition(md, rewriter, out)
    print(f"course: assignment {md.stem}: {len(autograded(md))} autograded exercise(s) in {dist}", flush=True)
    return md.stem


def _chapters(names: list[str] | None, book: Path) -> list[Path]:
    """The chapters with autograded exercises (those in ``names`` when given)."""
    found = [md for md in mk.chapters(book) if (not names or md.stem in names) and autograded(md)]
    if names and set(names) - {md.stem for md in found}:
        raise ValueError(f"no autograded exercise in chapter(s) {sorted(set(names) - {md.stem for md in found})}; "
                         "tag a check cell in their gated solutions")
    return found


def _prepare(out: Path) -> None:
    (out / "src").mkdir(parents=True, exist_ok=True)
    (out / "src" / "requirements.txt").write_text(autograder_requirements())


def _parallel(fn, items: list, jobs: int) -> list:
    """``[fn(x) for x in items]``, ``jobs`` at a time, each in a process of its own (spawned:
    the grader starts sandboxed subprocesses, which threads would make unsafe)."""
    if jobs <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(items)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, items))


def assign(out: Path, names: list[str] | None = None, book: Path = ROOT / "book",
           jobs: int = 1, run_tests: bool = True) -> list[str]:
    """Build the assignments (``jobs`` at a time; ``run_tests``: otter runs the checks against
    each solution as it builds); returns the chapter names built."""
    chapters = _chapters(names, book)
    _prepare(out)
    return _parallel(functools.partial(_build, out=out, book=book, run_tests=run_tests), chapters, jobs)


PARTS_FILE = "hidden_parts.json"


def _write_parts(md: Path, path: Path) -> None:
    """The hidden parts of the assignment, as released: ``{label: {setup, code}}``."""
    from pmi_tutorial import files

    parts = {e.label: {"setup": setup_code(md), "code": e.parts} for e in autograded(md) if e.parts}
    files.write_json_atomic(path, parts)


def autograder_zip(assignments: Path, name: str) -> Path:
    zips = sorted((assignments / name / "autograder").glob("*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder for {name!r} in {assignments}; run `make assignments`")
    return zips[-1]


def grade_one(notebook: Path, assignments: Path, name: str, seed: int = 0) -> dict[str, tuple[float, float]]:
    """``check -> (score, max)`` for one submission: ``LABEL`` for a question's otter checks,
    ``LABEL:PART`` for each hidden part (graded on inputs drawn from ``seed``)."""
    g = workflow.grade_submission(notebook, assignments, name, seed)
    if g.problems:
        raise RuntimeError(f"{notebook}: " + "; ".join(g.problems))
    return {c.key: (c.score, c.max) for c in g.checks}


def edition_config(config_text: str, hide_solutions: bool) -> str:
    """``_config.yml`` with its one edition setting, ``hide_solutions``, set."""
    pattern = re.compile(r"^(\s*hide_solutions:)\s*\S+", re.M)
    if len(pattern.findall(config_text)) != 1:
        raise ValueError("_config.yml must set sphinx.config.hide_solutions exactly once")
    return pattern.sub(lambda m: f"{m.group(1)} {str(hide_solutions).lower()}", config_text)


def student_book(out: Path = ROOT / "_build" / "student", root: Path = ROOT, strict: bool = False) -> Path:
    """Build the student edition into ``out/_build/html`` from a copy of the sources with every
    solution cut out (``out/src``, its reader notebooks too), then point its Colab buttons at
    the solution-free notebooks (``edition.STUDENT_BRANCH``)."""
    src = edition.student_sources(out / "src", root)
    config = src / "_config.yml"
    config.write_text(edition_config(config.read_text(encoding="utf-8"), True), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(src), "--path-output", str(out), "--all", "-n", "--keep-going"]
    run = subprocess.run(cmd + (["-W"] if strict else []), capture_output=strict, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        raise RuntimeError(f"the student edition's build failed{':' + run.stdout[-3000:] if strict else ''}")
    html = out / "_build" / "html"
    edition.point_launch_buttons(html)
    return html


# Checks that a blank answer passes, by question name: none so far. A check listed here may
# score on an untouched student notebook; every other must give it zero.
BLANK_MAY_PASS: set[str] = set()


def leaked_lines(assignments: Path, name: str, book: Path = ROOT / "book") -> list[str]:
    """The lines of solution code (:func:`solution_lines`) found in assignment ``name``'s
    student notebook: none, or the assignment gives answers away."""
    student = "\n".join(c.source for c in nbformat.read(
        assignments / name / "student" / f"{name}.ipynb", as_version=4).cells)
    return sorted(x for e in autograded(book / f"{name}.md") for x in solution_lines(e)
                  if x in student)


def check_one(md: Path, assignments: Path, book: Path = ROOT / "book") -> list[str]:
    """Build one chapter's assignment, check that its student notebook holds no line of
    solution code, grade its solution (full marks expected) and its untouched student notebook
    (zero expected, except BLANK_MAY_PASS); returns the problems."""
    name = _build(md, assignments, book, run_tests=False)  # the grading below runs every check
    problems = [f"{name}: the student notebook holds the solution line {x!r}"
                for x in leaked_lines(assignments, name, book)]
    for kind, expect_full in (("autograder", True), ("student", False)):
        scores = grade_one(assignments / name / kind / f"{name}.ipynb", assignments, name)
        for q, (got, most) in scores.items():
            if expect_full and got != most:
                problems.append(f"{name}: the solution scores {got} of {most} on {q}")
            if not expect_full and got > 0 and q not in BLANK_MAY_PASS:
                problems.append(f"{name}: the untouched student notebook scores {got} on {q}")
    print(f"course: {name}: graded the solution and the blank student notebook", flush=True)
    return problems


def check(assignments: Path, book: Path = ROOT / "book", jobs: int = 1) -> list[str]:
    """:func:`check_one` for every assignment, ``jobs`` at a time; returns the problems, in
    the chapters' order."""
    chapters = _chapters(None, book)
    _prepare(assignments)
    return [p for found in _parallel(functools.partial(check_one, assignments=assignments, book=book),
                                     chapters, jobs)
            for p in found]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assign", help="build the assignments")
    a.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    a.add_argument("names", nargs="*", help="chapters (default: every chapter with autograded exercises)")
    a.add_argument("--jobs", type=int, default=jobs_default(), help="assignments built at once "
                                                                    "(default: the CPU cores, at least 2)")
    g = sub.add_parser("grade", help="grade a folder of submissions STUDENT_ASSIGNMENT.ipynb")
    g.add_argument("submissions", type=Path)
    g.add_argument("--assignments", type=Path, default=ROOT / "_build" / "assignments")
    g.add_argument("--roster", type=Path, help="CSV with a column `student` (ids as in the file names)")
    g.add_argument("--config", type=Path, default=ROOT / "docs" / "course" / "course.yml",
                   help="YAML with `weights: {ASSIGNMENT: weight}` for the gradebook")
    g.add_argument("--out", type=Path, help="where feedback/, results/, grades.csv and gradebook.csv "
                                            "go (default SUBMISSIONS/graded)")
    g.add_argument("--seed", type=int, help="the hidden checks' inputs (default: drawn for this run)")
    g.add_argument("--timeout", type=float, default=workflow.TIMEOUT, help="seconds per notebook")
    c = sub.add_parser("check", help="build, then grade every solution and blank student notebook")
    c.add_argument("--out", type=Path, default=ROOT / "_build" / "assignments")
    c.add_argument("--jobs", type=int, default=jobs_default(), help="assignments built and graded at "
                                                                    "once (default: the CPU cores, at least 2)")
    sb = sub.add_parser("student-book", help="build the student edition of the book (no solutions)")
    sb.add_argument("--publish", type=Path, help="also copy the built edition there (the Pages "
                                                 "workflow: _build/html/student)")
    pub = sub.add_parser("publish", help="copy the Colab student notebooks and their public "
                                         "checks into the built book (HTML/assignments/)")
    pub.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html")
    pub.add_argument("--assignments", type=Path, default=ROOT / "_build" / "assignments")
    args = ap.parse_args(argv)
    try:
        if getattr(args, "jobs", 1) < 1:
            raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
        if args.cmd == "student-book":
            html = student_book()
            print(f"course: student edition in {html}; its notebooks (for the branch "
                  f"{edition.STUDENT_BRANCH}) in {html.parent.parent / 'src' / 'notebooks'}")
            if args.publish:
                import shutil

                shutil.rmtree(args.publish, ignore_errors=True)
                shutil.copytree(html, args.publish)
                print(f"course: copied to {args.publish}")
            return 0
        if args.cmd == "check":
            problems = check(args.out, jobs=args.jobs)
            for p in problems:
                print(f"course: {p}", file=sys.stderr)
            return 1 if problems else 0
        if args.cmd == "assign":
            assign(args.out, args.names, jobs=args.jobs)
            return 0
        if args.cmd == "publish":
            files = publish(args.assignments, args.html)
            print(f"course: {len(files)} file(s) in {args.html / 'assignments'}")
            return 0
        if args.roster is not None and not args.roster.is_file():
            raise FileNotFoundError(f"{args.roster}: no such roster (a CSV with a column `student`)")
        t0 = time.perf_counter()
        summary = workflow.grade_folder(args.submissions, args.assignments, args.out, args.roster,
                                        args.config if args.config and args.config.exists() else None,
                                        args.seed, args.timeout)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2
    out = summary["out"]
    print(f"course: graded {summary['graded']} submission(s) in {time.perf_counter() - t0:.1f} s "
          f"(hidden-check seed {summary['seed']}); feedback in {out / 'feedback'}, tables "
          f"{out / 'grades.csv'} and {out / 'gradebook.csv'}")
    for s in summary["skipped"]:
        print(f"course: skipped {s}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
